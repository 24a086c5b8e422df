"""Real HQ and branch nodes for scenario tests: enrol a branch, sync it over HTTP, act
as one of its users. The HQ node and its test client come from the conftest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from branches import Upstream, read_enrolment, sync_once
from crypto import NodeKey
from schema import TABLES, utcnow
from server.node import Node, init_node
from server.services import nodes as node_service
from server.services.principal import Principal

PASS = "enrol-pass-1"


async def branch_node(tmp_path: Path, hq: Node, code: str) -> tuple[Node, Upstream]:
    """Enrol branch `code` at `hq` and open its node; the caller closes it."""
    file = tmp_path / f"{code}.enrol"
    await node_service.add_branch(hq, code=code, name=f"{code}店", out=file, passphrase=PASS,
                                  url="http://testserver.local")
    e = read_enrolment(file, PASS)
    trusted = [{"id": e.hq_node_id, "kind": "hq", "name": "hq", "branch": None,
                "public_key": e.hq_public_key, "url": e.hq_url, "enrolled_at": utcnow(),
                "box_public_key": e.hq_box_public_key}]
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    node, _ = await init_node(tmp_path / code, role="branch", name=e.branch_name, environ=env,
                              key_file=tmp_path / f"{code}.key", branch_code=code,
                              node_id=e.node_id, node_key=NodeKey.from_hex(e.node_key),
                              trusted=trusted, hq_node_id=e.hq_node_id,
                              upstream_url="http://testserver.local", admin=False,
                              grants=(e.box_key, e.grants))
    up = Upstream(url="http://testserver.local", node_id=e.node_id,
                  key=NodeKey.from_hex(e.node_key), hq_node_id=e.hq_node_id,
                  hq_public_key=e.hq_public_key, branch=code)
    return node, up


async def sync(node: Node, up: Upstream, client: httpx.AsyncClient) -> Any:
    """One full sync round of a branch with HQ (push then pull), through `client`."""
    return await sync_once(node.db, up, max_skew_ms=60_000, page_rows=100, client=client)


async def principal(node: Node, username: str) -> Principal:
    """The user `username` as services on `node` see them (after it replicated there)."""
    users = TABLES["users"]
    async with node.db.read() as conn:
        row = (await conn.execute(select(users).where(users.c.username == username))
               ).mappings().one()
    return Principal.from_row(row)


def colliding(node: Node, column: str, value: Callable[[int], str]) -> tuple[str, str]:
    """Two different values of customers' `column` (made by `value(n)`) whose 16-bit
    blind indexes collide on `node`."""
    vault = node.db.vault
    assert vault is not None
    seen: dict[str, str] = {}
    for n in range(100_000):
        made = value(n)
        key = vault.index("customers", column, made)
        if key in seen:
            return seen[key], made
        seen[key] = made
    raise AssertionError("no collision found")
