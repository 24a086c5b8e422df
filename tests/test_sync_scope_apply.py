"""Sync rules of sync/SPEC.md §9 (scope) and §10 (applying a batch), one test per rule,
named after the rule id (the other sections: tests/test_sync_rules.py)."""

from __future__ import annotations

import msgspec
from sqlalchemy import select

from schema._tables import sync_members
from sync import (
    Cell,
)
from tests._sync_net import Net, quarantine, replace_row, row, rows, stamp
from tests._sync_rules_net import agree, everywhere, new_customer, update
from tests.sync_harness import customer, snapshot

# -- §9 scope -----------------------------------------------------------------------------


async def test_transfer_evicts_and_delivers_whole(net: Net) -> None:
    c = await new_customer(net, "S001", "S001", tags=["vip"])
    async with await net["S001"].write() as uow:
        contacts = [(await uow.insert("contacts", {"customer_id": c, "name": n}))["id"]
                    for n in ("李四", "王五")]
        await uow.increment("customers", c, "points", 12)
    await update(net, "S001", "customers", c, {"industry": "零售"})
    await update(net, "S001", "contacts", contacts[0], {"title": "经理"})
    await everywhere(net, "S001", "S001b", "S002")
    assert await row(net["S002"], "customers", c) is None

    await update(net, "hq", "customers", c, {"branch": "S002"})
    await update(net, "hq", "contacts", contacts[1], {"title": "会计"})  # changed too
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
    await agree(net, "S002", "S001")

    # And back: the first branch gets it whole again, its own increments included.
    async with await s2.write() as uow:
        await uow.increment("customers", c, "points", 1)
    await everywhere(net, "S002")
    await update(net, "hq", "customers", c, {"branch": "S001"})
    await everywhere(net, "S001", "S001b", "S002")
    for name in ("S001", "S001b"):
        back = await row(net[name], "customers", c)
        assert back is not None and back["points"] == 13
        assert {x["id"] for x in await rows(net[name], "contacts", customer_id=c)} == set(
            contacts)
    assert await row(s2, "customers", c) is None
    await agree(net, "S001", "S001b", "S002")


async def test_transfer_evicts_and_delivers_whole_away_and_back(net: Net) -> None:
    """Writes HQ refused while the customer belonged elsewhere are not stranded on the
    branch once the customer comes back before the branch pulled: all replicas agree."""
    c = await new_customer(net, "S001", "S001", tags=["a"])
    await everywhere(net, "S001")
    await update(net, "S001", "customers", c, {"industry": "X", "tags": ["a", "b"]})
    async with await net["S001"].write() as uow:
        await uow.increment("customers", c, "points", 5)
        contact = (await uow.insert("contacts", {"customer_id": c, "name": "李四"}))["id"]
    await update(net, "hq", "customers", c, {"branch": "S002"})
    refused = await net.push("S001")
    assert {q.tbl for r in refused for q in r.quarantined} >= {"customers", "contacts"}
    await update(net, "hq", "customers", c, {"branch": "S001"})
    assert await net.settle() <= 2
    await agree(net, "S001", "S001b", "S002")
    back = await row(net.hq, "customers", c)
    assert back is not None and back["industry"] == "X" and back["points"] == 5
    assert await row(net["S001b"], "contacts", contact) is not None


async def test_out_of_scope_push_quarantined(net: Net) -> None:
    theirs = await new_customer(net, "S002", "S002")
    await everywhere(net, "S002")
    own = await new_customer(net, "S001", "S001")
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
    await update(net, "hq", "branches", s001, {"name": "一店"})
    async with await net.hq.write() as uow:
        await uow.insert("branches", {"code": "S009", "name": "九店", "active": True})
    await update(net, "hq", "branches", s001, {"address": "北京"})
    async with await net.hq.write() as uow:
        c = (await uow.insert("customers", customer("新", "S001")))["id"]
        await uow.insert("branches", {"code": "S010", "name": "十店", "active": True})
    await update(net, "hq", "customers", c, {"industry": "零售"})
    results = await net.pull("S001", limit=1)
    assert [q for r in results for q in r.quarantined] == []
    mine = (await rows(net["S001"], "branches", code="S001"))[0]
    assert (mine["name"], mine["address"]) == ("一店", "北京")
    assert (await row(net["S001"], "customers", c) or {})["industry"] == "零售"
    await agree(net, "S001")


# -- §10 apply ----------------------------------------------------------------------------


async def test_idempotent_redelivery(net: Net) -> None:
    c = await new_customer(net, "S001", "S001", tags=["a"], points=1)
    gone = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001", "S001b")
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
    await everywhere(net, "S001", "S001b")
    await agree(net, "S001", "S001b")


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
    await everywhere(net, "S001")
    await agree(net, "S001")


async def test_children_before_parents_in_paged_push(net: Net) -> None:
    """A branch's change order may put a child before its customer (the customer was
    changed again later); small pages must still never make HQ refuse the child."""
    async with await net["S001"].write() as uow:
        c = (await uow.insert("customers", customer("分店建", "S001")))["id"]
        await uow.insert("contacts", {"customer_id": c, "name": "李四"})
    async with await net["S001"].write() as uow:
        await uow.insert("contacts", {"customer_id": c, "name": "王五"})
    await update(net, "S001", "customers", c, {"industry": "零售"})
    results = await net.push("S001", limit=1)
    assert [q for r in results for q in r.quarantined] == []
    await everywhere(net, "S001", "S001b")
    assert len(await rows(net.hq, "contacts", customer_id=c)) == 2
    await agree(net, "S001", "S001b")


async def test_unknown_column_parked(net: Net) -> None:
    c = await new_customer(net, "S001", "S001")
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
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001")
    await update(net, "S001", "customers", c, {"industry": "零售"})
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


async def test_unappliable_value_quarantined(net: Net) -> None:
    """A new row with a value its column cannot hold is quarantined alone: nothing of it
    is written (no stamp, no tag members), and the rest of the page applies."""
    bad = await new_customer(net, "S001", "S001", tags=["vip"])
    good = await new_customer(net, "S001", "S001", tags=["vip"])
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == bad)
    at = batch.columns["customers"].index("registered_at")
    values = list(batch.rows[index].values or [])
    values[at] = 20261127  # a number where an instant belongs
    result = await net.apply_at_hq("S001", replace_row(batch, index, values=values))
    assert [(q.tbl, q.id) for q in result.quarantined] == [("customers", bad)]
    assert result.quarantined[0].reason.startswith("unappliable: TypeError")
    assert await row(net.hq, "customers", bad) is None
    assert await stamp(net.hq, "customers", bad) is None
    async with net.hq.db.read() as conn:
        members = (await conn.execute(select(sync_members.c.elem).where(
            sync_members.c.row_id.in_([bad, good])))).scalars().all()
    assert members == ["vip"]  # the good customer's only
    assert (await row(net.hq, "customers", good) or {})["tags"] == ["vip"]


async def test_unappliable_recreation_keeps_the_old_generation(net: Net) -> None:
    """A re-created row whose new generation cannot be stored is quarantined before the
    old generation is dropped: the receiver keeps what it had."""
    c = await new_customer(net, "S001", "S001")
    await everywhere(net, "S001")
    async with await net["S001"].write() as uow:
        await uow.delete("customers", c)
    async with await net["S001"].write() as uow:
        await uow.insert("customers", customer("重建", "S001", id=c))
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == c)
    assert batch.rows[index].cl == 3
    values = list(batch.rows[index].values or [])
    values[batch.columns["customers"].index("registered_at")] = [2026]
    result = await net.apply_at_hq("S001", replace_row(batch, index, values=values))
    assert [(q.id, q.reason.split(":")[0]) for q in result.quarantined] == [(c, "unappliable")]
    held = await row(net.hq, "customers", c)
    assert held is not None and held["name"] != "重建"
    assert (await stamp(net.hq, "customers", c)).cl == 1


async def test_malformed_row_quarantined(net: Net) -> None:
    bad = await new_customer(net, "S001", "S001")
    good = await new_customer(net, "S001", "S001")
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
    await update(net, "S001", "customers", good, {"industry": "零售"})
    await net.ack_push("S001", batch)
    batch = await net.push_batch("S001")
    index = next(i for i, r in enumerate(batch.rows) if r.id == good)
    cells = [msgspec.structs.replace(c, origin=-1 - len(batch.nodes))
             for c in batch.rows[index].cells]
    result = await net.apply_at_hq("S001", replace_row(batch, index, cells=cells))
    assert [(q.id, q.reason) for q in result.quarantined] == [(good, "malformed row")]
    assert (await row(net.hq, "customers", good) or {})["industry"] is None
