"""`branchline demo` exercises every workflow of customer work (issue 6's "done when")."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from schema import TABLES
from server.config import load_settings
from server.demo import build_demo
from server.node import open_node

WORK_TABLES = ("customer_merges", "handovers", "notices", "class_schemes", "class_overrides",
               "class_changes", "visit_plans", "visits", "complaints", "price_items", "tickets",
               "purchases", "point_entries", "credit_requests", "reception_expenses",
               "access_requests", "audit_log", "destruction_requests", "reports")


async def test_demo_data_exercises_every_customer_workflow(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    logins = await build_demo(tmp_path / "demo", 300, env)
    assert {role for _, role, _ in logins} >= {"general_manager", "sales_rep", "technician"}
    node = await open_node(load_settings(tmp_path / "demo", environ=env))
    try:
        async with node.db.read() as conn:
            counts = {t: (await conn.execute(select(func.count()).select_from(TABLES[t])))
                      .scalar_one() for t in WORK_TABLES}
            complaint_states = {r[0] for r in await conn.execute(
                select(TABLES["complaints"].c.status).distinct())}
            ticket_states = {r[0] for r in await conn.execute(
                select(TABLES["tickets"].c.status).distinct())}
            customers = TABLES["customers"]
            filing = {r[0] for r in await conn.execute(
                select(customers.c.filing_status).distinct())}
            merged = (await conn.execute(select(func.count()).where(
                customers.c.merged_into.is_not(None)))).scalar_one()
            unposted = (await conn.execute(select(func.count()).where(
                TABLES["point_entries"].c.posted_at.is_(None)))).scalar_one()
    finally:
        await node.close()
    assert all(counts.values()), {t: n for t, n in counts.items() if not n}
    assert complaint_states >= {"received", "declined", "accepted", "assigned", "investigated",
                                "reviewed", "replied", "closed", "return_visited"}
    assert ticket_states == {"undispatched", "dispatched", "confirmed", "done"}
    assert filing >= {"registered", "filed"} and merged >= 4 and unposted >= 1
