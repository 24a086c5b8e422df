"""SPEC §13 no-echo: what a node just took from a peer is not sent back to it, while
its own writes always are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from schema import Scope, outgoing, peer_state, sync_rows
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


async def test_echo_rows_are_skipped_unread(tmp_path: Path, monkeypatch: Any) -> None:
    """A store that never pulled pushes its offline work; its next pull skips those rows
    without reading them, yet still gets what others did to them and what HQ made."""
    import schema._produce as produce

    hq = await open_replica(tmp_path / "hq.db")
    store = await open_replica(tmp_path / "store.db", "S001")
    try:
        ids = []
        async with await store.write() as uow:
            for i in range(6):
                ids.append((await uow.insert("customers", customer(
                    f"客户{i}", "S001", tags=["vip"])))["id"])
        async with await hq.write() as uow:
            made = (await uow.insert("customers", customer("总部客户", "S001")))["id"]
        await push(store, hq)
        async with await hq.write() as uow:  # HQ touches one of the store's customers
            await uow.update("customers", ids[0], {"industry": "零售"})
        read: list[str] = []
        real, real_sides = produce._data, produce._sides

        async def spy(conn: Any, tbl: str, row_ids: list[str]) -> Any:
            read.extend(row_ids)
            return await real(conn, tbl, row_ids)

        async def spy_sides(conn: Any, tbl: str, row_ids: list[str]) -> Any:
            read.extend(row_ids)
            return await real_sides(conn, tbl, row_ids)

        monkeypatch.setattr(produce, "_data", spy)
        monkeypatch.setattr(produce, "_sides", spy_sides)
        state = await peer_state(store.db, hq.id)
        batch = await outgoing(hq.db, sender=hq.id, peer=store.id, scope=Scope(branch="S001"),
                               cursor=state["pulled"], limit=10_000)
        assert {r.id for r in batch.rows if r.tbl == "customers"} == {made, ids[0]}
        # The untouched five were never read, not even their cells: the page's query
        # left them out.
        assert set(read) & set(ids) == {ids[0]}
        await pull(store, hq)
        async with await store.write() as uow:
            held = await uow.get("customers", ids[0])
            assert held is not None and held["industry"] == "零售" and held["tags"] == ["vip"]
            assert await uow.get("customers", made) is not None
    finally:
        for r in (hq, store):
            await r.close()


async def test_echo_rows_take_no_place_in_a_page_and_the_round_passes_them(
        tmp_path: Path) -> None:
    """Echoes do not count against a page's limit, and the last page's cursor moves past
    the echoes after the last row sent: the next round starts at HQ's head."""
    import schema._produce as produce

    hq = await open_replica(tmp_path / "hq.db")
    store = await open_replica(tmp_path / "store.db", "S001")
    try:
        async with await hq.write() as uow:
            made = (await uow.insert("customers", customer("总部客户", "S001")))["id"]
        async with await store.write() as uow:
            for i in range(30):
                await uow.insert("customers", customer(f"客户{i}", "S001"))
        await push(store, hq)  # 30 echoes, after everything HQ has for the store
        cursor, pages, sent = "", 0, []
        while True:
            batch = await outgoing(hq.db, sender=hq.id, peer=store.id,
                                   scope=Scope(branch="S001"), cursor=cursor, limit=3)
            pages += 1
            sent += [r.id for r in batch.rows if r.tbl == "customers"]
            cursor = batch.cursor
            if not batch.more:
                break
        assert sent == [made]
        async with hq.db.read() as conn:
            head = await produce._head(conn)
        assert produce.parse_cursor(cursor) == head
        async with hq.db.read() as conn:  # 30 echoes would fill ten pages of three
            total = (await conn.execute(select(func.count()).select_from(sync_rows)
                                        .where(sync_rows.c.origin != store.id))).scalar_one()
        assert pages <= total // 3 + 1
        again = await outgoing(hq.db, sender=hq.id, peer=store.id, scope=Scope(branch="S001"),
                               cursor=cursor, limit=3)
        assert again.rows == [] and not again.more and again.cursor == cursor
    finally:
        for r in (hq, store):
            await r.close()
