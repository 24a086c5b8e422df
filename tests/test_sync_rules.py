"""One test per sync rule of sync/SPEC.md, named after the rule id.

Replicas are real SQLCipher databases (tests/_sync_net.py); every batch goes through
the MessagePack codec on its way, as over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from schema import ConflictError, node_counters, sync_cells
from sync import (
    Cell,
    Merge,
    Stamp,
    beats,
    decide,
    pack,
    state_rank,
)
from tests._sync_net import Net, quarantine, replace_row, row, rows, stamp
from tests.sync_harness import customer, snapshot


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    """HQ, two replicas of branch S001 (a shop's two PCs) and one of S002."""
    n = await Net.open(tmp_path, {"S001": "S001", "S001b": "S001", "S002": "S002"})
    yield n
    await n.close()


async def _new_customer(net: Net, at: str, branch: str, **extra: Any) -> str:
    async with await net[at].write() as uow:
        c = await uow.insert("customers", customer(f"客户{time.monotonic_ns() % 10_000}",
                                                   branch, **extra))
    return str(c["id"])


async def _update(net: Net, at: str, table: str, row_id: str, changes: dict[str, Any],
                  **kw: Any) -> None:
    async with await net[at].write() as uow:
        await uow.update(table, row_id, changes, **kw)


async def _everywhere(net: Net, *names: str) -> None:
    for name in names:
        await net.sync(name)


async def _agree(net: Net, *names: str) -> None:
    for name in names:
        assert await net.diff(name) == {}, name


async def _conflicts(net: Net, at: str) -> list[dict[str, Any]]:
    return await rows(net[at], "conflicts")


# -- §2 clocks --------------------------------------------------------------------------


async def test_clock_skew_quarantine(net: Net) -> None:
    ahead = await _new_customer(net, "S001", "S001")
    fine = await _new_customer(net, "S001", "S001")
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == ahead)
    future = pack(int(time.time() * 1000) + 10 * 60_000)
    batch = replace_row(batch, index, clock=future)

    result = await net.apply_at_hq("S001", batch)

    assert [(q.tbl, q.id) for q in result.quarantined] == [("customers", ahead)]
    assert "ahead" in result.quarantined[0].reason
    kept = await quarantine(net.hq)
    assert [(q["tbl"], q["row_id"]) for q in kept] == [("customers", ahead)]
    assert "ms ahead" in kept[0]["reason"]
    assert await row(net.hq, "customers", ahead) is None
    assert await row(net.hq, "customers", fine) is not None
    async with net.hq.db.read() as conn:
        clock = (await conn.execute(select(node_counters.c.value).where(
            node_counters.c.name == "clock"))).scalar_one()
    assert clock < future  # HQ's clock was not dragged into the future


# -- §4 merge policies --------------------------------------------------------------------


def test_lww_newest_wins_pure() -> None:
    old, new = Stamp(100, "b"), Stamp(101, "a")
    assert beats(Merge.LWW, new, old) and not beats(Merge.LWW, old, new)
    d = decide(Merge.LWW, old, {"b": 100}, "x", new, {"a": 101}, "y")
    assert d.take_incoming and d.conflict and d.lineage == {"a": 101, "b": 100}
    d = decide(Merge.LWW, new, {"a": 101}, "y", old, {"b": 100}, "x")
    assert not d.take_incoming and d.conflict


async def test_lww_newest_wins(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001")
    await _update(net, "S001", "customers", c, {"industry": "零售"})
    await _update(net, "hq", "customers", c, {"industry": "餐饮"})  # later clock
    await _everywhere(net, "S001", "S001b")
    await _everywhere(net, "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["industry"] == "餐饮", name
    await _agree(net, "S001", "S001b")


def test_lww_tie_breaks_by_node_id() -> None:
    a, b = Stamp(500, "node-a"), Stamp(500, "node-b")
    assert beats(Merge.LWW, b, a) and not beats(Merge.LWW, a, b)
    # Whichever arrives first, both replicas keep node-b's value.
    at_a = decide(Merge.LWW, a, {"node-a": 500}, "A", b, {"node-b": 500}, "B")
    at_b = decide(Merge.LWW, b, {"node-b": 500}, "B", a, {"node-a": 500}, "A")
    assert at_a.take_incoming and not at_b.take_incoming
    assert at_a.lineage == at_b.lineage
    assert at_a.conflict and at_b.conflict
    for policy in (Merge.HQ_AUTHORITATIVE, Merge.STATE):
        assert beats(policy, b, a)


async def test_lww_tie_breaks_by_node_id_across_replicas(net: Net) -> None:
    """Two writes with the very same clock: the larger node id wins on both sides."""
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001")
    await _update(net, "S001", "customers", c, {"industry": "branch"})
    batch = await net.push_batch("S001")
    await _update(net, "hq", "customers", c, {"industry": "hq"})
    async with net.hq.db.read() as conn:
        hq_cell = (await conn.execute(select(sync_cells).where(
            sync_cells.c.row_id == c, sync_cells.c.col == "industry"))).one()
    # Give the branch's cell exactly HQ's clock.
    index = next(i for i, r in enumerate(batch.rows) if r.id == c)
    cells = [msgspec.structs.replace(x, clock=hq_cell.clock, lineage=None)
             if x.col == "industry" else x for x in batch.rows[index].cells]
    batch = replace_row(batch, index, cells=cells)
    await net.apply_at_hq("S001", batch)
    expected = "branch" if net["S001"].id > net.hq.id else "hq"
    assert (await row(net.hq, "customers", c) or {})["industry"] == expected


def test_first_write_earliest_wins_pure() -> None:
    early, late = Stamp(10, "z"), Stamp(20, "a")
    assert beats(Merge.FIRST_WRITE, early, late)
    assert beats(Merge.FIRST_WRITE, Stamp(10, "a"), Stamp(10, "b"))  # tie: smaller id
    d = decide(Merge.FIRST_WRITE, early, {"z": 10}, "u1", late, {"a": 20}, "u2")
    assert not d.take_incoming and d.conflict
    d = decide(Merge.FIRST_WRITE, late, {"a": 20}, "u2", early, {"z": 10}, "u1")
    assert d.take_incoming and d.conflict
    handover = Stamp(30, "a", rank=1)  # a new cycle beats the first write
    assert beats(Merge.FIRST_WRITE, handover, early)
    d = decide(Merge.FIRST_WRITE, early, {"z": 10}, "u1", handover, {"z": 10, "a": 30}, "u3")
    assert d.take_incoming and not d.conflict


async def test_first_write_earliest_wins(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")  # all hold the row with owner_id empty
    await _update(net, "S001", "customers", c, {"owner_id": "user-early"})
    await _update(net, "hq", "customers", c, {"owner_id": "user-late"})
    await _everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["owner_id"] == "user-early"
    found = await _conflicts(net, "hq")
    assert [(x["column_name"], x["policy"], x["winner_value"], x["loser_value"])
            for x in found] == [("owner_id", "first_write", "user-early", "user-late")]
    await _agree(net, "S001", "S001b")

    # A set first-write field changes only through a new cycle (a handover) …
    with pytest.raises(ConflictError):
        await _update(net, "S001", "customers", c, {"owner_id": "someone-else"})
    await _update(net, "hq", "customers", c, {"owner_id": "user-new"},
                  new_cycle=frozenset({"owner_id"}))
    await _everywhere(net, "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["owner_id"] == "user-new"


async def test_counter_sums_per_node_totals(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001", points=10)
    await _everywhere(net, "S001", "S001b")
    deltas = {"S001": (5, -2, 4), "S001b": (7, 1), "hq": (100, -30)}
    for name, ds in deltas.items():
        for d in ds:
            async with await net[name].write() as uow:
                await uow.increment("customers", c, "points", d)
    expected = 10 + sum(sum(ds) for ds in deltas.values())
    # Deliver S001's push three times and S001b's pull twice, with lost acks.
    await net.push_page("S001", times=3, drop_ack=True)
    await net.push_page("S001", times=2)
    await net.push_page("S001b")
    await net.pull_page("S001b", times=2, drop_ack=True)
    await net.pull_page("S001b", times=2)
    await _everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["points"] == expected, name
    await _agree(net, "S001", "S001b")


def test_state_furthest_wins_pure() -> None:
    filed, archived = Stamp(50, "a", state_rank(0, 1)), Stamp(40, "b", state_rank(0, 2))
    assert beats(Merge.STATE, archived, filed)  # further state, though older
    reopened = Stamp(30, "c", state_rank(1, 0))
    assert beats(Merge.STATE, reopened, archived)


async def test_state_furthest_wins(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001")
    await _update(net, "hq", "customers", c, {"filing_status": "archived"})  # earlier
    await _update(net, "S001", "customers", c, {"filing_status": "filed"})  # later
    await _everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["filing_status"] == "archived"
    with pytest.raises(ConflictError):  # going back needs a new cycle
        await _update(net, "S001", "customers", c, {"filing_status": "filed"})
    await _agree(net, "S001", "S001b")


async def test_state_new_cycle_outranks(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001", filing_status="filed")
    await _everywhere(net, "S001")
    # HQ archives while S001 re-opens the case: the new cycle wins, though its state
    # is behind and HQ wrote later.
    await _update(net, "S001", "customers", c, {"filing_status": "registered"},
                  new_cycle=frozenset({"filing_status"}))
    await _update(net, "hq", "customers", c, {"filing_status": "archived"})
    await _everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["filing_status"] == "registered"
    # Within the new cycle the usual order holds again.
    await _update(net, "S001b", "customers", c, {"filing_status": "filed"})
    await _everywhere(net, "S001b", "S001")
    assert (await row(net["S001"], "customers", c) or {})["filing_status"] == "filed"
    await _agree(net, "S001", "S001b")


async def test_append_only_no_conflicts(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")
    await _update(net, "S001", "customers", c, {"industry": "零售"})
    await _update(net, "S001b", "customers", c, {"notes": "老客户"})
    await _update(net, "hq", "customers", c, {"size": "大"})
    results = []
    for name in ("S001", "S001b", "S001", "S001b"):
        results += await net.sync(name)
    assert sum(r.conflicts for r in results) == 0
    history = {(h["column_name"], h["node_id"]) for h in await rows(net.hq, "field_history")}
    assert {("industry", net["S001"].id), ("notes", net["S001b"].id),
            ("size", net.hq.id)} <= history
    for name in ("hq", "S001", "S001b"):
        assert await _conflicts(net, name) == []
        assert {h["id"] for h in await rows(net[name], "field_history")} == {
            h["id"] for h in await rows(net.hq, "field_history")}
    h = (await rows(net["S001"], "field_history"))[0]
    with pytest.raises(ConflictError):
        await _update(net, "S001", "field_history", h["id"], {"new_value": "x"})
    await _agree(net, "S001", "S001b")


async def test_hq_authoritative(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001")
    # A branch's write becomes a request and does not take effect.
    await _update(net, "S001", "customers", c, {"credit_limit_fen": 5_000_000})
    assert (await row(net["S001"], "customers", c) or {})["credit_limit_fen"] is None
    requests = await rows(net["S001"], "change_requests")
    assert [(r["column_name"], r["value"], r["status"]) for r in requests] == [
        ("credit_limit_fen", 5_000_000, "pending")]
    await _everywhere(net, "S001")
    assert (await row(net.hq, "customers", c) or {})["credit_limit_fen"] is None
    assert [r["id"] for r in await rows(net.hq, "change_requests")] == [requests[0]["id"]]
    # HQ's write takes effect everywhere, and so does its decision on the request.
    await _update(net, "hq", "customers", c, {"credit_limit_fen": 3_000_000})
    await _update(net, "hq", "change_requests", requests[0]["id"], {"status": "rejected"})
    await _everywhere(net, "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["credit_limit_fen"] == 3_000_000
        assert (await row(net[name], "change_requests", requests[0]["id"]) or {}
                )["status"] == "rejected"
    # A branch-origin value that reaches HQ anyway is ignored there.
    net["S001"].db.hq_authority = True
    try:
        await _update(net, "S001", "customers", c, {"credit_limit_fen": 9_999_999})
    finally:
        net["S001"].db.hq_authority = False
    result = await net.push("S001")
    assert not any(r.quarantined for r in result)
    assert (await row(net.hq, "customers", c) or {})["credit_limit_fen"] == 3_000_000
    await _everywhere(net, "S001b")
    assert (await row(net["S001b"], "customers", c) or {})["credit_limit_fen"] == 3_000_000


async def test_add_wins_set(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001", tags=["vip"])
    await _everywhere(net, "S001")
    # HQ adds "new" and syncs it nowhere yet; S001 adds "new" too; HQ removes it (it
    # has seen only its own add). S001's add was concurrent: it survives.
    await _update(net, "hq", "customers", c, {"tags": ["vip", "new"]})
    await _update(net, "S001", "customers", c, {"tags": ["vip", "new"]})
    await _update(net, "hq", "customers", c, {"tags": ["vip"]})
    await _everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert sorted((await row(net[name], "customers", c) or {})["tags"]) == ["new", "vip"]
    # Concurrent remove of "vip" at S001b and re-add elsewhere: same, the add wins.
    await _update(net, "S001b", "customers", c, {"tags": ["new"]})
    await _update(net, "S001", "customers", c, {"tags": ["new"]})
    await _update(net, "S001", "customers", c, {"tags": ["new", "vip"]})
    await _everywhere(net, "S001b", "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert sorted((await row(net[name], "customers", c) or {})["tags"]) == ["new", "vip"]
    # A remove that has seen every add removes the tag everywhere.
    await _update(net, "S001b", "customers", c, {"tags": ["vip"]})
    await _everywhere(net, "S001b", "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["tags"] == ["vip"]
    await _agree(net, "S001", "S001b")


# -- §6 deletes ---------------------------------------------------------------------------


async def test_delete_wins_over_concurrent_edit(net: Net) -> None:
    pushed_first = await _new_customer(net, "S001", "S001", tags=["a"])
    pulled_first = await _new_customer(net, "S001", "S001", tags=["a"])
    await _everywhere(net, "S001", "S001b")
    for name, c in (("S001", pushed_first), ("S001b", pulled_first)):
        await _update(net, name, "customers", c, {"industry": "零售", "tags": ["a", "b"]})
        async with await net[name].write() as uow:
            await uow.increment("customers", c, "points", 3)
        async with await net.hq.write() as uow:
            await uow.delete("customers", c)
    await net.push("S001")  # the edit reaches HQ after the delete
    await net.pull("S001")
    await net.pull("S001b")  # the delete reaches the editor before its edit left
    await net.push("S001b")
    await _everywhere(net, "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        for c in (pushed_first, pulled_first):
            assert await row(net[name], "customers", c) is None, name
            assert (await stamp(net[name], "customers", c)).cl == 2
    assert await _conflicts(net, "hq") == []
    await _agree(net, "S001", "S001b")


async def test_recreate_after_delete(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")
    await _update(net, "S001b", "customers", c, {"industry": "旧"})  # cl 1, not yet sent
    async with await net["S001"].write() as uow:
        await uow.delete("customers", c)
    await _everywhere(net, "S001")
    assert await row(net.hq, "customers", c) is None
    async with await net["S001"].write() as uow:
        await uow.insert("customers", customer("重建", "S001", id=c, tags=["again"]))
    await _everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        live = await row(net[name], "customers", c)
        assert live is not None and live["name"] == "重建" and live["tags"] == ["again"]
        assert live["industry"] is None  # the edit of the deleted generation is gone
        assert (await stamp(net[name], "customers", c)).cl == 3
    await _agree(net, "S001", "S001b")


# -- §5 conflicts -------------------------------------------------------------------------


async def test_conflict_recorded_when_concurrent(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")
    await _update(net, "S001", "customers", c, {"industry": "零售"})
    await _update(net, "S001b", "customers", c, {"industry": "餐饮"})  # later: wins
    await net.pull("S001b")  # reorder: S001b sees nothing new, pushes later
    for name in ("S001", "S001b", "S001", "S001b"):
        await net.sync(name)
    found = {name: await _conflicts(net, name) for name in ("hq", "S001", "S001b")}
    assert len(found["hq"]) == 1
    conflict = found["hq"][0]
    for name in ("S001", "S001b"):
        assert found[name] == found["hq"]
    assert conflict["table_name"] == "customers" and conflict["row_id"] == c
    assert conflict["column_name"] == "industry" and conflict["policy"] == "lww"
    assert conflict["customer_id"] == c and conflict["branch"] == "S001"
    assert (conflict["winner_value"], conflict["loser_value"]) == ("餐饮", "零售")
    assert (conflict["winner_node"], conflict["loser_node"]) == (net["S001b"].id,
                                                                  net["S001"].id)
    assert conflict["winner_clock"] > conflict["loser_clock"] > 0
    assert conflict["status"] == "open"
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["industry"] == "餐饮"
    await _agree(net, "S001", "S001b")


async def test_conflict_recorded_when_concurrent_detected_at_a_branch(net: Net) -> None:
    """The branch that pulls before pushing detects it; HQ, seeing the merged lineage,
    does not record a second one."""
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")
    await _update(net, "S001", "customers", c, {"industry": "A"})
    await _update(net, "S001b", "customers", c, {"industry": "B"})
    await net.sync("S001")
    pulled = await net.pull("S001b")
    assert sum(r.conflicts for r in pulled) == 1
    for name in ("S001b", "S001", "S001b", "S001"):
        await net.sync(name)
    ids = {name: [x["id"] for x in await _conflicts(net, name)]
           for name in ("hq", "S001", "S001b")}
    assert len(ids["hq"]) == 1 and ids["S001"] == ids["hq"] == ids["S001b"]
    await _agree(net, "S001", "S001b")


async def test_sequential_edit_no_conflict(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")
    await _update(net, "S001", "customers", c, {"industry": "A", "filing_status": "filed"})
    await _everywhere(net, "S001", "S001b")  # S001b receives A's values …
    await _update(net, "S001b", "customers", c, {"industry": "B", "owner_id": "u1",
                                                 "filing_status": "archived"})
    await _everywhere(net, "S001b", "S001")  # … and edits after them: no conflict
    await _update(net, "S001", "customers", c, {"industry": "C"})
    await _everywhere(net, "S001")
    await _update(net, "hq", "customers", c, {"industry": "D"})
    results = []
    for name in ("S001", "S001b", "S001"):
        results += await net.sync(name)
    assert sum(r.conflicts for r in results) == 0
    for name in ("hq", "S001", "S001b"):
        assert await _conflicts(net, name) == []
        assert (await row(net[name], "customers", c) or {})["industry"] == "D"
    await _agree(net, "S001", "S001b")


async def test_sequential_edit_no_conflict_relayed_to_another_branch(net: Net) -> None:
    """Branch → HQ → other branch (a transfer) → HQ → back: each edit saw the one
    before, so no conflict anywhere, whatever the route."""
    c = await _new_customer(net, "S001", "S001", tags=["a"])
    await _update(net, "S001", "customers", c, {"industry": "S001 wrote"})
    await _everywhere(net, "S001")
    await _update(net, "hq", "customers", c, {"branch": "S002"})
    await _everywhere(net, "S002", "S001")
    await _update(net, "S002", "customers", c, {"industry": "S002 wrote", "tags": ["b"]})
    await _everywhere(net, "S002")
    await _update(net, "hq", "customers", c, {"industry": "HQ wrote", "branch": "S001"})
    await _everywhere(net, "S001", "S002")
    await _update(net, "S001", "customers", c, {"industry": "S001 again"})
    results = []
    for name in ("S001", "S001b", "S002", "S001"):
        results += await net.sync(name)
    assert sum(r.conflicts for r in results) == 0
    for name in ("hq", "S001", "S001b", "S002"):
        assert await _conflicts(net, name) == []
    assert (await row(net["S001b"], "customers", c) or {})["industry"] == "S001 again"
    await _agree(net, "S001", "S001b", "S002")


# -- §9 scope -----------------------------------------------------------------------------


async def test_transfer_evicts_and_delivers_whole(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001", tags=["vip"])
    async with await net["S001"].write() as uow:
        contacts = [(await uow.insert("contacts", {"customer_id": c, "name": n}))["id"]
                    for n in ("李四", "王五")]
        await uow.increment("customers", c, "points", 12)
    await _update(net, "S001", "customers", c, {"industry": "零售"})
    await _update(net, "S001", "contacts", contacts[0], {"title": "经理"})
    await _everywhere(net, "S001", "S001b", "S002")
    assert await row(net["S002"], "customers", c) is None

    await _update(net, "hq", "customers", c, {"branch": "S002"})
    await _update(net, "hq", "contacts", contacts[1], {"title": "会计"})  # changed too
    results = await net.pull("S001")
    assert sum(r.evicted for r in results) == 1
    await net.pull("S002")
    history = {h["id"] for h in await rows(net.hq, "field_history", customer_id=c)}
    assert len(history) >= 4
    for name in ("S001",):
        assert await row(net[name], "customers", c) is None
        assert await rows(net[name], "contacts", customer_id=c) == []
        assert await rows(net[name], "field_history", customer_id=c) == []
        assert await stamp(net[name], "customers", c) is None  # evicted, no tombstone
    s2 = net["S002"]
    moved = await row(s2, "customers", c)
    assert moved is not None and moved["points"] == 12 and moved["tags"] == ["vip"]
    assert moved["industry"] == "零售" and moved["branch"] == "S002"
    assert {x["id"] for x in await rows(s2, "contacts", customer_id=c)} == set(contacts)
    assert {h["id"] for h in await rows(s2, "field_history", customer_id=c)} == history
    await _agree(net, "S002", "S001")

    # And back: the first branch gets it whole again, its own increments included.
    async with await s2.write() as uow:
        await uow.increment("customers", c, "points", 1)
    await _everywhere(net, "S002")
    await _update(net, "hq", "customers", c, {"branch": "S001"})
    await _everywhere(net, "S001", "S001b", "S002")
    for name in ("S001", "S001b"):
        back = await row(net[name], "customers", c)
        assert back is not None and back["points"] == 13
        assert {x["id"] for x in await rows(net[name], "contacts", customer_id=c)} == set(
            contacts)
    assert await row(s2, "customers", c) is None
    await _agree(net, "S001", "S001b", "S002")


async def test_transfer_evicts_and_delivers_whole_away_and_back(net: Net) -> None:
    """Writes HQ refused while the customer belonged elsewhere are not stranded on the
    branch once the customer comes back before the branch pulled: all replicas agree."""
    c = await _new_customer(net, "S001", "S001", tags=["a"])
    await _everywhere(net, "S001")
    await _update(net, "S001", "customers", c, {"industry": "X", "tags": ["a", "b"]})
    async with await net["S001"].write() as uow:
        await uow.increment("customers", c, "points", 5)
        contact = (await uow.insert("contacts", {"customer_id": c, "name": "李四"}))["id"]
    await _update(net, "hq", "customers", c, {"branch": "S002"})
    refused = await net.push("S001")
    assert {q.tbl for r in refused for q in r.quarantined} >= {"customers", "contacts"}
    await _update(net, "hq", "customers", c, {"branch": "S001"})
    assert await net.settle() <= 2
    await _agree(net, "S001", "S001b", "S002")
    back = await row(net.hq, "customers", c)
    assert back is not None and back["industry"] == "X" and back["points"] == 5
    assert await row(net["S001b"], "contacts", contact) is not None


async def test_out_of_scope_push_quarantined(net: Net) -> None:
    theirs = await _new_customer(net, "S002", "S002")
    await _everywhere(net, "S002")
    own = await _new_customer(net, "S001", "S001")
    async with await net["S001"].write() as uow:
        # A customer claimed for another branch, a forged copy of S002's customer with a
        # contact, and a change to the reference data only HQ may write.
        claimed = (await uow.insert("customers", customer("冒名", "S002")))["id"]
        await uow.insert("customers", customer("篡改", "S002", id=theirs))
        fake = (await uow.insert("contacts", {"customer_id": theirs, "name": "假联系人"}))["id"]
        await uow.insert("contacts", {"customer_id": own, "name": "真联系人"})
        branch = (await rows(net["S001"], "branches", code="S001"))[0]
        await uow.update("branches", branch["id"], {"name": "改名"})
    results = await net.push("S001")
    reasons = {(q.tbl, q.id): q.reason for r in results for q in r.quarantined}
    assert set(reasons) == {("customers", claimed), ("customers", theirs),
                            ("contacts", fake), ("branches", branch["id"])}
    assert "S002" in reasons[("customers", claimed)]
    assert "S002" in reasons[("customers", theirs)]
    assert "branches" in reasons[("branches", branch["id"])]
    kept = {(q["tbl"], q["row_id"]): q["reason"] for q in await quarantine(net.hq)}
    assert kept == reasons
    assert (await row(net.hq, "customers", theirs) or {})["name"] != "篡改"
    assert await row(net.hq, "customers", claimed) is None
    assert (await rows(net.hq, "branches", code="S001"))[0]["name"] == "S001店"
    # The rest of the batch applied.
    assert await row(net.hq, "customers", own) is not None
    assert [x["name"] for x in await rows(net.hq, "contacts", customer_id=own)] == ["真联系人"]


async def test_pages_of_a_round_lose_no_change(net: Net) -> None:
    """A row changed twice moves past rows a paged round has not reached yet; its first
    change must still travel (and a row the peer lacks must still arrive whole)."""
    s001 = (await rows(net.hq, "branches", code="S001"))[0]["id"]
    await _update(net, "hq", "branches", s001, {"name": "一店"})
    async with await net.hq.write() as uow:
        await uow.insert("branches", {"code": "S009", "name": "九店", "active": True})
    await _update(net, "hq", "branches", s001, {"address": "北京"})
    async with await net.hq.write() as uow:
        c = (await uow.insert("customers", customer("新", "S001")))["id"]
        await uow.insert("branches", {"code": "S010", "name": "十店", "active": True})
    await _update(net, "hq", "customers", c, {"industry": "零售"})
    results = await net.pull("S001", limit=1)
    assert [q for r in results for q in r.quarantined] == []
    mine = (await rows(net["S001"], "branches", code="S001"))[0]
    assert (mine["name"], mine["address"]) == ("一店", "北京")
    assert (await row(net["S001"], "customers", c) or {})["industry"] == "零售"
    await _agree(net, "S001")


# -- §10 apply ----------------------------------------------------------------------------


async def test_idempotent_redelivery(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001", tags=["a"], points=1)
    gone = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001", "S001b")
    async with await net["S001"].write() as uow:
        await uow.increment("customers", c, "points", 5)
        await uow.update("customers", c, {"industry": "零售", "tags": ["b"],
                                          "filing_status": "filed"})
        await uow.insert("contacts", {"customer_id": c, "name": "李四"})
        await uow.delete("customers", gone)
    batch = await net.push_batch("S001")
    first = await net.apply_at_hq("S001", batch)
    after_one = await snapshot(net.hq)
    for _ in range(2):
        again = await net.apply_at_hq("S001", batch)
        assert again.conflicts == 0 and again.quarantined == []
    assert await snapshot(net.hq) == after_one
    assert first.quarantined == []
    await net.ack_push("S001", batch)
    assert (await row(net.hq, "customers", c) or {})["points"] == 6

    async with await net.hq.write() as uow:
        await uow.increment("customers", c, "points", 10)
    pulled = await net.pull_batch("S001b")
    for _ in range(3):
        await net.apply_at("S001b", pulled)
    assert (await row(net["S001b"], "customers", c) or {})["points"] == 16
    await _everywhere(net, "S001", "S001b")
    await _agree(net, "S001", "S001b")


async def test_children_before_parents(net: Net) -> None:
    async with await net.hq.write() as uow:
        c = (await uow.insert("customers", customer("总部建", "S001")))["id"]
        contact = (await uow.insert("contacts", {"customer_id": c, "name": "李四"}))["id"]
    batch = await net.pull_batch("S001")
    children = [r for r in batch.rows if r.tbl != "customers"]
    parents = [r for r in batch.rows if r.tbl == "customers"]
    assert children and parents
    early = msgspec.structs.replace(batch, rows=children)
    result = await net.apply_at("S001", early)
    assert result.quarantined == [] and result.applied == len(children)
    assert await row(net["S001"], "contacts", contact) is not None
    assert await row(net["S001"], "customers", c) is None
    await net.apply_at("S001", msgspec.structs.replace(batch, rows=parents))
    await _everywhere(net, "S001")
    await _agree(net, "S001")


async def test_children_before_parents_in_paged_push(net: Net) -> None:
    """A branch's change order may put a child before its customer (the customer was
    changed again later); small pages must still never make HQ refuse the child."""
    async with await net["S001"].write() as uow:
        c = (await uow.insert("customers", customer("分店建", "S001")))["id"]
        await uow.insert("contacts", {"customer_id": c, "name": "李四"})
    async with await net["S001"].write() as uow:
        await uow.insert("contacts", {"customer_id": c, "name": "王五"})
    await _update(net, "S001", "customers", c, {"industry": "零售"})
    results = await net.push("S001", limit=1)
    assert [q for r in results for q in r.quarantined] == []
    await _everywhere(net, "S001", "S001b")
    assert len(await rows(net.hq, "contacts", customer_id=c)) == 2
    await _agree(net, "S001", "S001b")


async def test_unknown_column_parked(net: Net) -> None:
    c = await _new_customer(net, "S001", "S001")
    batch = await net.push_batch("S001")
    columns = {**batch.columns, "customers": [*batch.columns["customers"], "loyalty_tier"]}
    new_rows = [msgspec.structs.replace(r, values=[*r.values, "gold"])
                if r.tbl == "customers" and r.values is not None else r for r in batch.rows]
    batch = msgspec.structs.replace(batch, columns=columns, rows=new_rows)
    result = await net.apply_at_hq("S001", batch)
    assert [(q.tbl, q.id) for q in result.quarantined] == [("customers", c)]
    assert "loyalty_tier" in result.quarantined[0].reason
    assert "loyalty_tier" in (await quarantine(net.hq))[0]["reason"]
    assert (await row(net.hq, "customers", c) or {})["name"].startswith("客户")
    await net.ack_push("S001", batch)


async def test_unknown_column_parked_in_a_changed_cell(net: Net) -> None:
    """A newer schema's change to a column this node lacks is parked, not dropped."""
    c = await _new_customer(net, "S001", "S001")
    await _everywhere(net, "S001")
    await _update(net, "S001", "customers", c, {"industry": "零售"})
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == c)
    assert batch.rows[index].values is None
    extra = Cell("loyalty_tier", "gold", batch.rows[index].cells[0].clock,
                 batch.rows[index].cells[0].origin)
    batch = replace_row(batch, index, cells=[*batch.rows[index].cells, extra])
    result = await net.apply_at_hq("S001", batch)
    assert [(q.tbl, q.id) for q in result.quarantined] == [("customers", c)]
    assert "loyalty_tier" in result.quarantined[0].reason
    assert (await row(net.hq, "customers", c) or {})["industry"] == "零售"


async def test_malformed_row_quarantined(net: Net) -> None:
    bad = await _new_customer(net, "S001", "S001")
    good = await _new_customer(net, "S001", "S001")
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == bad)
    batch = replace_row(batch, index, values=(batch.rows[index].values or [])[:-1])
    result = await net.apply_at_hq("S001", batch)
    assert [(q.tbl, q.id, q.reason) for q in result.quarantined] == [
        ("customers", bad, "malformed row")]
    assert [(q["row_id"], q["reason"]) for q in await quarantine(net.hq)] == [
        (bad, "malformed row")]
    assert await row(net.hq, "customers", bad) is None
    assert await row(net.hq, "customers", good) is not None
    # A node index outside the batch's node list is malformed too, in a cell as well.
    batch = replace_row(batch, index, origin=len(batch.nodes) + 3)
    result = await net.apply_at_hq("S001", batch)
    assert [q.reason for q in result.quarantined] == ["malformed row"]
    await _update(net, "S001", "customers", good, {"industry": "零售"})
    await net.ack_push("S001", batch)
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == good)
    cells = [msgspec.structs.replace(c, origin=-1 - len(batch.nodes))
             for c in batch.rows[index].cells]
    result = await net.apply_at_hq("S001", replace_row(batch, index, cells=cells))
    assert [(q.id, q.reason) for q in result.quarantined] == [(good, "malformed row")]
    assert (await row(net.hq, "customers", good) or {})["industry"] is None
