"""One test per sync rule of sync/SPEC.md, named after the rule id.

Replicas are real SQLCipher databases (tests/_sync_net.py); every batch goes through
the MessagePack codec on its way, as over HTTP.
"""

from __future__ import annotations

import time
import uuid

import msgspec
import pytest
from sqlalchemy import select

from schema import ConflictError, node_counters, sync_cells
from sync import (
    Merge,
    Stamp,
    beats,
    decide,
    pack,
    state_rank,
)
from tests._sync_net import Net, quarantine, replace_row, row, rows, stamp
from tests._sync_rules_net import agree, conflicts, everywhere, new_customer, update
from tests.sync_harness import customer

# -- §2 clocks --------------------------------------------------------------------------


async def test_clock_skew_quarantine(net: Net) -> None:
    ahead = await new_customer(net, "S001", "S001")
    fine = await new_customer(net, "S001", "S001")
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
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001")
    await update(net, "S001", "customers", c, {"industry": "零售"})
    await update(net, "hq", "customers", c, {"industry": "餐饮"})  # later clock
    await everywhere(net, "S001", "S001b")
    await everywhere(net, "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["industry"] == "餐饮", name
    await agree(net, "S001", "S001b")


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
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001")
    await update(net, "S001", "customers", c, {"industry": "branch"})
    batch = await net.push_batch("S001")
    await update(net, "hq", "customers", c, {"industry": "hq"})
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
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")  # all hold the row with owner_id empty
    await update(net, "S001", "customers", c, {"owner_id": "user-early"})
    await update(net, "hq", "customers", c, {"owner_id": "user-late"})
    await everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["owner_id"] == "user-early"
    found = await conflicts(net, "hq")
    assert [(x["column_name"], x["policy"], x["winner_value"], x["loser_value"])
            for x in found] == [("owner_id", "first_write", "user-early", "user-late")]
    await agree(net, "S001", "S001b")

    # A set first-write field changes only through a new cycle (a handover) …
    with pytest.raises(ConflictError):
        await update(net, "S001", "customers", c, {"owner_id": "someone-else"})
    await update(net, "hq", "customers", c, {"owner_id": "user-new"},
                  new_cycle=frozenset({"owner_id"}))
    await everywhere(net, "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["owner_id"] == "user-new"


async def test_counter_sums_per_node_totals(net: Net) -> None:
    c = await new_customer(net, "S001", "S001", points=10)
    await everywhere(net, "S001", "S001b")
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
    await everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["points"] == expected, name
    await agree(net, "S001", "S001b")


def test_state_furthest_wins_pure() -> None:
    filed, archived = Stamp(50, "a", state_rank(0, 1)), Stamp(40, "b", state_rank(0, 2))
    assert beats(Merge.STATE, archived, filed)  # further state, though older
    reopened = Stamp(30, "c", state_rank(1, 0))
    assert beats(Merge.STATE, reopened, archived)


async def test_state_furthest_wins(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001")
    await update(net, "hq", "customers", c, {"filing_status": "archived"})  # earlier
    await update(net, "S001", "customers", c, {"filing_status": "filed"})  # later
    await everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["filing_status"] == "archived"
    with pytest.raises(ConflictError):  # going back needs a new cycle
        await update(net, "S001", "customers", c, {"filing_status": "filed"})
    await agree(net, "S001", "S001b")


async def test_state_new_cycle_outranks(net: Net) -> None:
    c = await new_customer(net, "S001", "S001", filing_status="filed")
    await everywhere(net, "S001")
    # HQ archives while S001 re-opens the case: the new cycle wins, though its state
    # is behind and HQ wrote later.
    await update(net, "S001", "customers", c, {"filing_status": "registered"},
                  new_cycle=frozenset({"filing_status"}))
    await update(net, "hq", "customers", c, {"filing_status": "archived"})
    await everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["filing_status"] == "registered"
    # Within the new cycle the usual order holds again.
    await update(net, "S001b", "customers", c, {"filing_status": "filed"})
    await everywhere(net, "S001b", "S001")
    assert (await row(net["S001"], "customers", c) or {})["filing_status"] == "filed"
    await agree(net, "S001", "S001b")


async def test_append_only_noconflicts(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
    await update(net, "S001", "customers", c, {"industry": "零售"})
    await update(net, "S001b", "customers", c, {"notes": "老客户"})
    await update(net, "hq", "customers", c, {"size": "大"})
    results = []
    for name in ("S001", "S001b", "S001", "S001b"):
        results += await net.sync(name)
    assert sum(r.conflicts for r in results) == 0
    history = {(h["column_name"], h["node_id"]) for h in await rows(net.hq, "field_history")}
    assert {("industry", net["S001"].id), ("notes", net["S001b"].id),
            ("size", net.hq.id)} <= history
    for name in ("hq", "S001", "S001b"):
        assert await conflicts(net, name) == []
        assert {h["id"] for h in await rows(net[name], "field_history")} == {
            h["id"] for h in await rows(net.hq, "field_history")}
    h = (await rows(net["S001"], "field_history"))[0]
    with pytest.raises(ConflictError):
        await update(net, "S001", "field_history", h["id"], {"new_value": "x"})
    await agree(net, "S001", "S001b")


async def test_hq_authoritative(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001")
    # A branch's write becomes a request and does not take effect.
    await update(net, "S001", "customers", c, {"credit_limit_fen": 5_000_000})
    assert (await row(net["S001"], "customers", c) or {})["credit_limit_fen"] is None
    requests = await rows(net["S001"], "change_requests")
    assert [(r["column_name"], r["value"], r["status"]) for r in requests] == [
        ("credit_limit_fen", 5_000_000, "pending")]
    await everywhere(net, "S001")
    assert (await row(net.hq, "customers", c) or {})["credit_limit_fen"] is None
    assert [r["id"] for r in await rows(net.hq, "change_requests")] == [requests[0]["id"]]
    # HQ's write takes effect everywhere, and so does its decision on the request.
    await update(net, "hq", "customers", c, {"credit_limit_fen": 3_000_000})
    await update(net, "hq", "change_requests", requests[0]["id"], {"status": "rejected"})
    await everywhere(net, "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["credit_limit_fen"] == 3_000_000
        assert (await row(net[name], "change_requests", requests[0]["id"]) or {}
                )["status"] == "rejected"
    # A branch-origin value that reaches HQ anyway is ignored there.
    net["S001"].db.hq_authority = True
    try:
        await update(net, "S001", "customers", c, {"credit_limit_fen": 9_999_999})
    finally:
        net["S001"].db.hq_authority = False
    result = await net.push("S001")
    assert not any(r.quarantined for r in result)
    assert (await row(net.hq, "customers", c) or {})["credit_limit_fen"] == 3_000_000
    await everywhere(net, "S001b")
    assert (await row(net["S001b"], "customers", c) or {})["credit_limit_fen"] == 3_000_000


async def test_add_wins_set(net: Net) -> None:
    c = await new_customer(net, "S001", "S001", tags=["vip"])
    await everywhere(net, "S001")
    # HQ adds "new" and syncs it nowhere yet; S001 adds "new" too; HQ removes it (it
    # has seen only its own add). S001's add was concurrent: it survives.
    await update(net, "hq", "customers", c, {"tags": ["vip", "new"]})
    await update(net, "S001", "customers", c, {"tags": ["vip", "new"]})
    await update(net, "hq", "customers", c, {"tags": ["vip"]})
    await everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        assert sorted((await row(net[name], "customers", c) or {})["tags"]) == ["new", "vip"]
    # Concurrent remove of "vip" at S001b and re-add elsewhere: same, the add wins.
    await update(net, "S001b", "customers", c, {"tags": ["new"]})
    await update(net, "S001", "customers", c, {"tags": ["new"]})
    await update(net, "S001", "customers", c, {"tags": ["new", "vip"]})
    await everywhere(net, "S001b", "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert sorted((await row(net[name], "customers", c) or {})["tags"]) == ["new", "vip"]
    # A remove that has seen every add removes the tag everywhere.
    await update(net, "S001b", "customers", c, {"tags": ["vip"]})
    await everywhere(net, "S001b", "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        assert (await row(net[name], "customers", c) or {})["tags"] == ["vip"]
    await agree(net, "S001", "S001b")


# -- §6 deletes ---------------------------------------------------------------------------


async def test_delete_wins_over_concurrent_edit(net: Net) -> None:
    pushed_first = await new_customer(net, "S001", "S001", tags=["a"])
    pulled_first = await new_customer(net, "S001", "S001", tags=["a"])
    await everywhere(net, "S001", "S001b")
    for name, c in (("S001", pushed_first), ("S001b", pulled_first)):
        await update(net, name, "customers", c, {"industry": "零售", "tags": ["a", "b"]})
        async with await net[name].write() as uow:
            await uow.increment("customers", c, "points", 3)
        async with await net.hq.write() as uow:
            await uow.delete("customers", c)
    await net.push("S001")  # the edit reaches HQ after the delete
    await net.pull("S001")
    await net.pull("S001b")  # the delete reaches the editor before its edit left
    await net.push("S001b")
    await everywhere(net, "S001", "S001b")
    for name in ("hq", "S001", "S001b"):
        for c in (pushed_first, pulled_first):
            assert await row(net[name], "customers", c) is None, name
            assert (await stamp(net[name], "customers", c)).cl == 2
    assert await conflicts(net, "hq") == []
    await agree(net, "S001", "S001b")


async def test_recreate_after_delete(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
    await update(net, "S001b", "customers", c, {"industry": "旧"})  # cl 1, not yet sent
    async with await net["S001"].write() as uow:
        await uow.delete("customers", c)
    await everywhere(net, "S001")
    assert await row(net.hq, "customers", c) is None
    async with await net["S001"].write() as uow:
        await uow.insert("customers", customer("重建", "S001", id=c, tags=["again"]))
    await everywhere(net, "S001", "S001b", "S001")
    for name in ("hq", "S001", "S001b"):
        live = await row(net[name], "customers", c)
        assert live is not None and live["name"] == "重建" and live["tags"] == ["again"]
        assert live["industry"] is None  # the edit of the deleted generation is gone
        assert (await stamp(net[name], "customers", c)).cl == 3
    await agree(net, "S001", "S001b")


# -- §5 conflicts -------------------------------------------------------------------------


async def test_conflict_recorded_when_concurrent(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
    await update(net, "S001", "customers", c, {"industry": "零售"})
    await update(net, "S001b", "customers", c, {"industry": "餐饮"})  # later: wins
    await net.pull("S001b")  # reorder: S001b sees nothing new, pushes later
    for name in ("S001", "S001b", "S001", "S001b"):
        await net.sync(name)
    found = {name: await conflicts(net, name) for name in ("hq", "S001", "S001b")}
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
    await agree(net, "S001", "S001b")


async def test_conflict_recorded_when_concurrent_detected_at_a_branch(net: Net) -> None:
    """The branch that pulls before pushing detects it; HQ, seeing the merged lineage,
    does not record a second one."""
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
    await update(net, "S001", "customers", c, {"industry": "A"})
    await update(net, "S001b", "customers", c, {"industry": "B"})
    await net.sync("S001")
    pulled = await net.pull("S001b")
    assert sum(r.conflicts for r in pulled) == 1
    for name in ("S001b", "S001", "S001b", "S001"):
        await net.sync(name)
    ids = {name: [x["id"] for x in await conflicts(net, name)]
           for name in ("hq", "S001", "S001b")}
    assert len(ids["hq"]) == 1 and ids["S001"] == ids["hq"] == ids["S001b"]
    await agree(net, "S001", "S001b")


async def test_conflict_recorded_once_when_the_batch_carries_it_too(net: Net) -> None:
    """A row born on several nodes under one deterministic id (here a merge decision
    record) conflicts with itself. S001 pulls HQ's copy and records the conflict
    between the two (its id derives from the two stamps); HQ meanwhile merges
    S001b's copy, so neither lineage contains the other when S001 pushes, and HQ
    detects that very conflict while merging the row — from the batch that also
    carries S001's record of it. One record, no duplicate key (before: the push failed
    on `conflicts.id` every time, so the branch never got through)."""
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
    decision = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, c)), "table_name": "customers",
                "row_id": c, "column_name": "name", "customer_id": c, "branch": "S001",
                "policy": "merge", "winner_value": "甲", "loser_value": "乙",
                "winner_node": net.hq.id, "loser_node": net["S001"].id,
                "winner_clock": 1, "loser_clock": 1, "detected_by": net.hq.id}
    after = 0
    for at, status in (("S001b", "open"), ("hq", "resolved"), ("S001", "open")):
        async with await net[at].write() as uow:
            uow.observe(after)  # later than the previous copy, without having seen it
            await uow.insert("conflicts", {**decision, "status": status})
        after = (await stamp(net[at], "conflicts", decision["id"])).clock
    pulled = await net.pull("S001")
    about = {x["id"] for x in await conflicts(net, "S001") if x["row_id"] == decision["id"]}
    assert sum(r.conflicts for r in pulled) == len(about) == 1
    await net.push("S001b")

    pushed = await net.push("S001")

    assert sum(r.conflicts for r in pushed) == 0  # the batch brought it
    assert not [q for r in pushed for q in r.quarantined]
    assert {x["id"] for x in await conflicts(net, "hq")} >= about
    for name in ("S001", "S001b", "S001"):
        await net.sync(name)
    ids = {name: sorted(x["id"] for x in await conflicts(net, name))
           for name in ("hq", "S001", "S001b")}
    assert ids["hq"] == ids["S001"] == ids["S001b"]
    await agree(net, "S001", "S001b")


async def test_sequential_edit_no_conflict(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
    await update(net, "S001", "customers", c, {"industry": "A", "filing_status": "filed"})
    await everywhere(net, "S001", "S001b")  # S001b receives A's values …
    await update(net, "S001b", "customers", c, {"industry": "B", "owner_id": "u1",
                                                 "filing_status": "archived"})
    await everywhere(net, "S001b", "S001")  # … and edits after them: no conflict
    await update(net, "S001", "customers", c, {"industry": "C"})
    await everywhere(net, "S001")
    await update(net, "hq", "customers", c, {"industry": "D"})
    results = []
    for name in ("S001", "S001b", "S001"):
        results += await net.sync(name)
    assert sum(r.conflicts for r in results) == 0
    for name in ("hq", "S001", "S001b"):
        assert await conflicts(net, name) == []
        assert (await row(net[name], "customers", c) or {})["industry"] == "D"
    await agree(net, "S001", "S001b")


async def test_sequential_edit_no_conflict_relayed_to_another_branch(net: Net) -> None:
    """Branch → HQ → other branch (a transfer) → HQ → back: each edit saw the one
    before, so no conflict anywhere, whatever the route."""
    c = await new_customer(net, "S001", "S001", tags=["a"])
    await update(net, "S001", "customers", c, {"industry": "S001 wrote"})
    await everywhere(net, "S001")
    await update(net, "hq", "customers", c, {"branch": "S002"})
    await everywhere(net, "S002", "S001")
    await update(net, "S002", "customers", c, {"industry": "S002 wrote", "tags": ["b"]})
    await everywhere(net, "S002")
    await update(net, "hq", "customers", c, {"industry": "HQ wrote", "branch": "S001"})
    await everywhere(net, "S001", "S002")
    await update(net, "S001", "customers", c, {"industry": "S001 again"})
    results = []
    for name in ("S001", "S001b", "S002", "S001"):
        results += await net.sync(name)
    assert sum(r.conflicts for r in results) == 0
    for name in ("hq", "S001", "S001b", "S002"):
        assert await conflicts(net, name) == []
    assert (await row(net["S001b"], "customers", c) or {})["industry"] == "S001 again"
    await agree(net, "S001", "S001b", "S002")


