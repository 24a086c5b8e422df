"""SPEC §Schema versions: a node that does not know a column parks it, never drops it,
and applies it after it upgrades [unknown-column-parked]."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

import schema._plan as apply_module
from schema import TABLES, Scope, incoming, outgoing, quarantine_count, retry_parked
from schema._policy import Entity
from tests.sync_harness import customer, open_replica


async def test_unknown_column_is_parked_then_applied_after_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hq = await open_replica(tmp_path / "hq.db")
    branch = await open_replica(tmp_path / "b.db", "S001")
    try:
        async with hq.db.write(hq.id, None) as uow:
            await uow.insert("branches", {"code": "S001", "name": "一店", "active": True})
        async with branch.db.write(branch.id, None) as uow:
            row = await uow.insert("customers", customer("新字段客户", "S001",
                                                         website="https://example.cn"))
        batch = await outgoing(branch.db, sender=branch.id, peer=hq.id, scope=Scope(),
                               cursor="", limit=100)
        # HQ runs an older schema that has no `website` column yet.
        real = apply_module.ENTITIES["customers"]
        old = Entity("customers", tuple(f for f in real.fields if f.name != "website"),
                     keep_history=True)
        monkeypatch.setitem(apply_module.ENTITIES, "customers", old)
        monkeypatch.setitem(apply_module.PLANS, "customers", apply_module._plan(old))
        result = await incoming(hq.db, batch, node_id=hq.id, peer=branch.id, hq_node=hq.id,
                                writer_branch="S001", max_skew_ms=60_000)
        assert [q.reason for q in result.quarantined] == [
            "columns ['website'] unknown to this schema; parked until upgrade"]
        customers = TABLES["customers"]
        async with hq.db.read() as conn:
            assert (await conn.execute(select(customers.c.name, customers.c.website))
                    ).one() == ("新字段客户", None)
        # The upgrade: HQ now knows the column and applies what it parked.
        monkeypatch.setitem(apply_module.ENTITIES, "customers", real)
        monkeypatch.setitem(apply_module.PLANS, "customers", apply_module._plan(real))
        assert await retry_parked(hq.db, node_id=hq.id, hq_node=hq.id,
                                  writer_branches={branch.id: "S001"}) == 1
        async with hq.db.read() as conn:
            assert (await conn.execute(select(customers.c.website).where(
                customers.c.id == row["id"]))).scalar_one() == "https://example.cn"
        assert await quarantine_count(hq.db) == 0
    finally:
        await hq.close()
        await branch.close()
