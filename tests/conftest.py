"""Shared fixtures: every database test runs on SQLCipher SQLite and on PostgreSQL.

PostgreSQL is required, never skipped: set BRANCHLINE_TEST_PG_URL to point elsewhere
than postgresql+asyncpg://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import make_url

from server.app import create_app
from server.config import Settings, load_settings, read_config, write_config
from server.node import Node, init_node, open_node
from server.services.principal import Principal
from server.services.users import LoginThrottle, create_user

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


_TEMPLATES: dict[str, tuple[Path, str | None]] = {}
"""Per test process and backend: an initialised HQ (data and key directories) and, for
PostgreSQL, its database, which each test's database is cloned from."""


async def _create_database(name: str, template: str | None = None) -> str:
    try:
        admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is required for the test suite: {exc}")
    try:
        clone = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clone}')
    finally:
        await admin.close()
    return str(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))


async def _drop_database(name: str) -> None:
    admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _template(backend: str, factory: pytest.TempPathFactory) -> tuple[Path, str | None]:
    """`init hq` once per process and backend (migrations, keys, admin user take about a
    second); tests copy the result. `test_cli` and `test_storage` cover `init` itself."""
    if backend not in _TEMPLATES:
        root = factory.mktemp(f"hq-template-{backend}")
        name = f"bl_tmpl_{uuid.uuid4().hex[:12]}" if backend == "postgresql" else None
        url = await _create_database(name) if name else None
        env = {"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD, "XDG_CONFIG_HOME": str(root / "cfg")}
        node, _ = await init_node(root / "data", role="hq", name="测试总部", environ=env,
                                  key_file=root / "keys" / "hq.key", database_url=url)
        await node.close()
        _TEMPLATES[backend] = (root, name)
    return _TEMPLATES[backend]


@pytest.fixture(scope="session", autouse=True)
def _drop_templates() -> Iterator[None]:
    yield
    for _, name in _TEMPLATES.values():
        if name:
            asyncio.run(_drop_database(name))


@pytest.fixture
async def settings(tmp_path: Path, backend: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Settings]:
    """A freshly initialised HQ node (closed again); its admin password is ADMIN_PASSWORD.
    A copy of this process's template node: its own data directory, keys and database."""
    root, template = await _template(backend, tmp_path_factory)
    shutil.copytree(root / "data", tmp_path / "data")
    config = read_config(tmp_path / "data")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)

    def own_copy(path: str | None) -> str | None:
        if path is None:
            return None
        return str(shutil.copy2(path, keys / Path(path).name))

    name = f"bl_test_{uuid.uuid4().hex[:12]}" if template else None
    url = await _create_database(name, template) if name else None
    write_config(tmp_path / "data", msgspec.structs.replace(
        config, database_url=url, key_file=own_copy(config.key_file),
        root_key_file=own_copy(config.root_key_file)))
    env = {"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    yield load_settings(tmp_path / "data", env)
    if name:
        await _drop_database(name)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """An HTTP client on the node's app (the node opens in the app's lifespan)."""
    app = _apps.get(settings.max_body_bytes)
    if app is None:
        app = _apps[settings.max_body_bytes] = create_app(settings)
    app.state.settings = settings
    app.state.throttle = LoginThrottle(settings.login_max_failures,
                                       settings.login_window_seconds)
    async with AsyncTestClient(app=app) as c:
        yield c


_apps: dict[int, Litestar] = {}
"""One app per test process (building it registers every handler: about a second),
pointed at each test's node and given a fresh login throttle."""


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
