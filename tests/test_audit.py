"""The audit log (sync/SPEC.md §Audit, domain.md §9): a hash chain per node."""

from __future__ import annotations

from sqlalchemy import select

from schema import TABLES, chain_breaks
from server.node import Node
from server.services import audit


async def test_audit_entries_form_an_intact_hash_chain(node: Node) -> None:
    for n in range(3):
        await audit.log(node, None, "test", actor_name="system", detail={"n": n})
    log = TABLES["audit_log"]
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(
            select(log).where(log.c.node_id == node.node_id).order_by(log.c.seq))).mappings()]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert chain_breaks(rows) == []
    rows[1]["detail"] = {"n": 99}
    assert any("altered" in b for b in chain_breaks(rows))
    del rows[1]
    assert any("missing" in b for b in chain_breaks(rows))
