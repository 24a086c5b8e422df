"""SPEC §13 no-echo: what a node just took from a peer is not sent back to it, while
its own writes always are."""

from __future__ import annotations

from pathlib import Path

from schema import Scope, outgoing, peer_state
from tests.sync_harness import Replica, customer, open_replica, pull, push


async def _pending_for(r: Replica, hq: Replica) -> int:
    state = await peer_state(r.db, hq.id)
    batch = await outgoing(r.db, sender=r.id, peer=hq.id, scope=Scope(),
                           cursor=state["pushed"], limit=10_000)
    return len(batch.rows)


async def test_no_echo_relayed_rows_are_not_pushed_back(tmp_path: Path) -> None:
    hq = await open_replica(tmp_path / "hq.db")
    store = await open_replica(tmp_path / "store.db", "S001")
    tablet = await open_replica(tmp_path / "tablet.db", "S001")
    try:
        async with await store.write() as uow:
            for i in range(20):
                c = await uow.insert("customers", customer(f"客户{i}", "S001"))
                await uow.insert("contacts", {"customer_id": c["id"], "name": f"联系人{i}"})
        await push(store, hq)
        # The tablet bootstraps S001 from HQ: 40 rows written by the store, not by HQ.
        await pull(tablet, hq)
        assert await _pending_for(tablet, hq) == 0  # nothing to send back
        async with await tablet.write() as uow:
            await uow.insert("customers", customer("平板新客户", "S001"))
        assert await _pending_for(tablet, hq) == 1  # its own write still goes
    finally:
        for r in (hq, store, tablet):
            await r.close()


async def test_no_echo_never_hides_own_unpushed_writes(tmp_path: Path) -> None:
    hq = await open_replica(tmp_path / "hq.db")
    store = await open_replica(tmp_path / "store.db", "S001")
    tablet = await open_replica(tmp_path / "tablet.db", "S001")
    try:
        async with await store.write() as uow:
            await uow.insert("customers", customer("门店客户", "S001"))
        await push(store, hq)
        async with await tablet.write() as uow:  # written before the pull, not pushed
            await uow.insert("customers", customer("平板客户", "S001"))
        await pull(tablet, hq)
        # The pull may not move the tablet's acknowledgement past its own write: it
        # still goes (together with the pulled row, which HQ merges as a no-op).
        assert await _pending_for(tablet, hq) >= 1
        await push(tablet, hq)
        names = set()
        async with hq.db.read() as conn:
            from sqlalchemy import select

            from schema import TABLES
            names = {r.name for r in await conn.execute(select(TABLES["customers"].c.name))}
        assert names == {"门店客户", "平板客户"}
    finally:
        for r in (hq, store, tablet):
            await r.close()
