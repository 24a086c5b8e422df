"""Shared fixtures: every database test runs on SQLCipher SQLite and on PostgreSQL.

PostgreSQL is required, never skipped: set BRANCHLINE_TEST_PG_URL to point elsewhere
than postgresql+asyncpg://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url

from server.app import create_app
from server.config import Settings, load_settings
from server.node import Node, init_node, open_node
from server.services.principal import Principal
from server.services.users import create_user

PG_URL = os.environ.get("BRANCHLINE_TEST_PG_URL",
                        "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "admin-pass-123"
PASSWORD = "user-pass-123"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(backend: str) -> AsyncIterator[str | None]:
    """None for SQLite (a file in the data dir); a fresh PostgreSQL database otherwise."""
    if backend == "sqlite":
        yield None
        return
    name = f"bl_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is required for the test suite: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield str(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def settings(tmp_path: Path, database_url: str | None) -> Settings:
    """A freshly initialised HQ node (closed again); its admin password is ADMIN_PASSWORD."""
    env = {"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    node, _ = await init_node(tmp_path / "data", role="hq", name="测试总部", environ=env,
                              key_file=tmp_path / "keys" / "hq.key", database_url=database_url)
    await node.close()
    return load_settings(tmp_path / "data", env)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """An HTTP client on the node's app (the node opens in the app's lifespan)."""
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


@pytest.fixture
async def node(settings: Settings) -> AsyncIterator[Node]:
    """The node's database opened in the test's own event loop (the test client runs
    the app's copy in another), for arranging data and checking what was written."""
    n = await open_node(settings)
    yield n
    await n.close()


async def login(client: AsyncTestClient[Any], username: str, password: str = PASSWORD
                ) -> dict[str, str]:
    """Authorization headers for a user."""
    r = await client.post("/api/v1/auth/login", json={"username": username,
                                                      "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def add_user(node: Node, username: str, role: str, branch: str | None = None,
                   department: str | None = None) -> Principal:
    """Create a user with PASSWORD and return them as a principal."""
    row = await create_user(node, None, username=username, password=PASSWORD, role=role,
                            branch=branch, department=department)
    return Principal.from_row(row)


@pytest.fixture
async def admin_headers(client: AsyncTestClient[Any]) -> dict[str, str]:
    return await login(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def org(node: Node) -> None:
    """Two branches with departments, for scope tests."""
    from server.services import org as org_service

    await org_service.create_region(node, None, "EAST", "华东区")
    for code, name in (("S001", "上海店"), ("S002", "杭州店")):
        await org_service.create_branch(node, None, {"code": code, "name": name,
                                                     "region": "EAST", "address": None})


@pytest.fixture
async def clerk(client: AsyncTestClient[Any], node: Node) -> dict[str, str]:
    """An HQ archive clerk (sees and edits every customer)."""
    await add_user(node, "clerk", "archive_clerk")
    return await login(client, "clerk")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Any]:
    """HQ, two replicas of branch S001 (a shop's two PCs) and one of S002."""
    from tests._sync_net import Net

    n = await Net.open(tmp_path, {"S001": "S001", "S001b": "S001", "S002": "S002"})
    yield n
    await n.close()
