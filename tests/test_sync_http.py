"""The sync protocol over HTTP: signed requests, enrolment, revocation, bad input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from branches import Upstream, UpstreamError
from crypto import NodeKey, request_message
from schema import TABLES, utcnow
from server.node import Node
from server.services import nodes as node_service
from sync import PROTOCOL_VERSION, PullRequest, encode
from tests._nodes import branch_node, sync

Client = AsyncTestClient[Any]
PASS = "enrol-pass-1"


_branch = branch_node
_sync = sync


async def test_branch_bootstraps_edits_offline_and_converges(
    tmp_path: Path, node: Node, client: Client, backend: str
) -> None:
    from tests.conftest import add_user

    branch, up = await _branch(tmp_path, node, "S012")
    try:
        await add_user(node, "rep12", "sales_rep", "S012")
        report = await _sync(branch, up, client)
        users = TABLES["users"]
        async with branch.db.read() as conn:
            names = {r.username for r in await conn.execute(select(users.c.username))}
        assert names == {"rep12"} and report.applied >= 2
        # Work offline at the branch, then sync: HQ holds it.
        async with branch.db.write(branch.node_id, None) as uow:
            c = await uow.insert("customers", {"name": "分店客户", "customer_type": "person",
                                               "source": "call", "registered_at": utcnow(),
                                               "branch": "S012"})
            await uow.insert("contacts", {"customer_id": c["id"], "name": "联系人"})
        report = await _sync(branch, up, client)
        assert report.pushed_rows == 2 and report.quarantined == 0
        async with node.db.read() as conn:
            got = (await conn.execute(select(TABLES["customers"].c.name).where(
                TABLES["customers"].c.id == c["id"]))).scalar_one()
        assert got == "分店客户"
        # Derived columns are computed where a row lands: HQ finds it by pinyin.
        async with node.db.read() as conn:
            found = (await conn.execute(select(TABLES["customers"].c.id).where(
                TABLES["customers"].c.search_keys.contains("fdkh")))).scalars().all()
        assert found == [c["id"]]
        # A second round moves nothing.
        report = await _sync(branch, up, client)
        assert (report.pushed_rows, report.applied) == (0, 0)
    finally:
        await branch.close()


async def test_revoked_node_is_refused_with_reason(tmp_path: Path, node: Node,
                                                   client: Client) -> None:
    branch, up = await _branch(tmp_path, node, "S013")
    try:
        await _sync(branch, up, client)
        await node_service.revoke(node, node_id=None, branch="S013", reason="tablet lost")
        with pytest.raises(UpstreamError, match="revoked: tablet lost"):
            await _sync(branch, up, client)
    finally:
        await branch.close()


def _signed(up: Upstream, body: bytes, millis: int | None = None,
            key: NodeKey | None = None) -> dict[str, str]:
    millis = int(time.time() * 1000) if millis is None else millis
    return {"content-type": "application/msgpack", "x-branchline-node": up.node_id,
            "x-branchline-time": str(millis),
            "x-branchline-signature": (key or up.key).sign(
                request_message("POST", "/sync/v1/pull", up.node_id, millis, body))}


async def test_bad_sync_requests_are_refused_cleanly(tmp_path: Path, node: Node,
                                                     client: Client) -> None:
    branch, up = await _branch(tmp_path, node, "S014")
    await branch.close()
    good = encode(PullRequest(protocol=PROTOCOL_VERSION, schema=1, node=up.node_id))
    cases = [
        (b"", _signed(up, b""), 400),                                   # empty body
        (b"\x93garbage", _signed(up, b"\x93garbage"), 400),             # malformed
        (good, _signed(up, good, key=NodeKey.generate()), 401),         # forged
        (good, _signed(up, good, millis=int(time.time() * 1000) + 3_600_000), 401),  # skew
        (good, {**_signed(up, good), "x-branchline-node": "nobody"}, 401),
        (good + b"x", _signed(up, good), 401),                          # body changed
        (encode(PullRequest(protocol=PROTOCOL_VERSION, schema=1, node=up.node_id,
                            cursor="not:a")),
         _signed(up, encode(PullRequest(protocol=PROTOCOL_VERSION, schema=1, node=up.node_id,
                                        cursor="not:a"))), 400),             # bad cursor
        (encode(PullRequest(protocol=99, schema=1, node=up.node_id)),
         _signed(up, encode(PullRequest(protocol=99, schema=1, node=up.node_id))), 400),
    ]
    for body, headers, status in cases:
        r = await client.post("/sync/v1/pull", content=body, headers=headers)
        assert r.status_code == status, (status, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_clock_offset_is_reported_in_health(tmp_path: Path, node: Node, client: Client,
                                                  admin_headers: dict[str, str]) -> None:
    branch, up = await _branch(tmp_path, node, "S015")
    try:
        await _sync(branch, up, client)
        r = await client.get("/api/v1/sync/health", headers=admin_headers)
        peers = {p["branch"]: p for p in r.json()["peers"]}
        assert peers["S015"]["last_contact"] is not None
        assert peers["S015"]["revoked"] is False
    finally:
        await branch.close()




async def test_peer_behind_collected_tombstones_rebuilds_from_snapshot(
    tmp_path: Path, node: Node, client: Client
) -> None:
    """SPEC §Garbage collection: a peer older than the GC horizon gets `reset`."""
    from schema import collect_tombstones

    branch, up = await _branch(tmp_path, node, "S016")
    try:
        async with node.db.write(node.node_id, None) as uow:
            gone = await uow.insert("customers", {"name": "将删除", "customer_type": "person",
                                                  "source": "call", "registered_at": utcnow(),
                                                  "branch": "S016"})
            stays = await uow.insert("customers", {"name": "保留", "customer_type": "person",
                                                   "source": "call", "registered_at": utcnow(),
                                                   "branch": "S016"})
        await _sync(branch, up, client)
        async with node.db.write(node.node_id, None) as uow:
            await uow.delete("customers", gone["id"])
            seq = uow.seq
        # The branch works offline meanwhile: its change must survive the rebuild.
        async with branch.db.write(branch.node_id, None) as uow:
            await uow.update("customers", stays["id"], {"industry": "离线修改"})
        assert await collect_tombstones(node.db, seq) == 1
        report = await _sync(branch, up, client)
        assert any("rebuilt" in m for m in report.messages)
        customers = TABLES["customers"]
        async with branch.db.read() as conn:
            rows = {r.name: r.industry for r in await conn.execute(
                select(customers.c.name, customers.c.industry))}
        assert rows == {"保留": "离线修改"}
        report = await _sync(branch, up, client)
        assert not report.messages and report.applied == 0
    finally:
        await branch.close()
