"""Classification (domain.md §4): the rule language, facts from SQL aggregates,
recomputation on demand and on a schedule, overrides, and the class history (客户异动)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from schema import TABLES, FieldError, utcnow
from schema._rules import DEFAULT_SCHEMES, check_rules, classify
from server.node import Node
from server.services import classification as svc
from server.services.errors import ForbiddenError
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]
customers = TABLES["customers"]
changes = TABLES["class_changes"]

TIER = {"code": "tier", "name": "客户等级", "target": "customer_class",
        "default_class": "potential", "rules": [
            {"class": "key", "all": [{"fact": "amount_365d_fen", "op": ">=", "value": 10_000_000}]},
            {"class": "ordinary", "all": [{"fact": "purchases_365d", "op": ">=", "value": 1}]},
        ]}


async def customer(node: Node, name: str, *, branch: str | None = None,
                   registered_at: datetime | None = None, **extra: Any) -> str:
    async with node.db.write(node.node_id, None) as uow:
        row = await uow.insert("customers", {
            "name": name, "customer_type": "person", "source": "call", "branch": branch,
            "registered_at": registered_at or utcnow(), **extra})
    return str(row["id"])


async def buy(node: Node, customer_id: str, amount_fen: int, days_ago: int = 1,
              on_credit: bool = False) -> None:
    async with node.db.write(node.node_id, None) as uow:
        await uow.insert("purchases", {
            "customer_id": customer_id, "branch": None, "amount_fen": amount_fen,
            "purchased_at": utcnow() - timedelta(days=days_ago), "items": [],
            "on_credit": on_credit, "points": 0, "user_id": None})


async def column(node: Node, customer_id: str, name: str) -> Any:
    async with node.db.read() as conn:
        return (await conn.execute(select(customers.c[name]).where(
            customers.c.id == customer_id))).scalar_one()


async def history(node: Node, customer_id: str) -> list[dict[str, Any]]:
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(select(changes).where(
            changes.c.customer_id == customer_id).order_by(changes.c.id))).mappings()]


# -- the rule language (pure) ---------------------------------------------------------

def test_first_matching_rule_wins_else_default_class() -> None:
    rules, default = check_rules("customer_class", TIER["rules"], "potential")
    assert classify(rules, default, {"amount_365d_fen": 20_000_000, "purchases_365d": 9})[0] \
        == "key"
    cls, reason = classify(rules, default, {"amount_365d_fen": 100, "purchases_365d": 1})
    assert cls == "ordinary" and reason.startswith("rule 2 (ordinary: purchases_365d >= 1")
    assert classify(rules, default, {"amount_365d_fen": 0, "purchases_365d": 0}) == (
        "potential", "no rule matched: default class")


def test_any_needs_one_condition_and_null_facts_match_only_equality() -> None:
    rules, _ = check_rules("lifecycle_stage", [
        {"class": "potential", "all": [{"fact": "recency_days", "op": "==", "value": None}]},
        {"class": "lost", "any": [{"fact": "recency_days", "op": ">", "value": 365},
                                  {"fact": "complaints_365d", "op": "in", "value": [7, 8]}]},
        {"class": "stable"},
    ], None)
    assert classify(rules, None, {"recency_days": None})[0] == "potential"
    assert classify(rules, None, {"recency_days": 400, "complaints_365d": 0})[0] == "lost"
    assert classify(rules, None, {"recency_days": 3, "complaints_365d": 8})[0] == "lost"
    assert classify(rules, None, {"recency_days": 3, "complaints_365d": 0})[0] == "stable"


@pytest.mark.parametrize(("target", "rules", "field"), [
    ("favourite_colour", [], "target"),
    ("customer_class", [{"class": "x", "all": [{"fact": "iq", "op": ">", "value": 1}]}],
     "rules[0].all[0].fact"),
    ("customer_class", [{"class": "x"}, {"class": "y", "any": [
        {"fact": "points", "op": "~=", "value": 1}]}], "rules[1].any[0].op"),
    ("customer_class", [{"class": "x", "all": [{"fact": "points", "op": ">", "value": None}]}],
     "rules[0].all[0].value"),
    ("abc_class", [{"class": "very_long_class"}], "rules[0].class"),
])
def test_unknown_fact_op_or_target_is_refused_naming_the_field(
        target: str, rules: list[Any], field: str) -> None:
    with pytest.raises(FieldError) as err:
        check_rules(target, rules, "x")
    assert err.value.field == field


def test_default_schemes_are_valid() -> None:
    for s in DEFAULT_SCHEMES:
        check_rules(s["target"], s["rules"], s["default_class"])


# -- schemes over HTTP ----------------------------------------------------------------

async def test_scheme_create_validates_and_only_hq_roles_write(
        client: Client, node: Node, admin_headers: dict[str, str], backend: str) -> None:
    bad = {**TIER, "rules": [{"class": "key", "all": [{"fact": "shoe_size", "op": ">=",
                                                        "value": 1}]}]}
    r = await client.post("/api/v1/class-schemes", json=bad, headers=admin_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "rules[0].all[0].fact"
    r = await client.post("/api/v1/class-schemes", json={**TIER, "target": "shoe_size"},
                          headers=admin_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "target"
    await add_user(node, "rep", "sales_rep", None)
    r = await client.post("/api/v1/class-schemes", json=TIER, headers=await login(client, "rep"))
    assert r.status_code == 403 and "general manager" in r.json()["detail"]
    await add_user(node, "gm", "general_manager")
    gm = await login(client, "gm")
    r = await client.post("/api/v1/class-schemes", json=TIER, headers=gm)
    assert r.status_code == 201, r.text
    assert r.json()["rules"][0]["class"] == "key" and r.json()["default_class"] == "potential"
    r = await client.post("/api/v1/class-schemes", json=TIER, headers=gm)
    assert r.status_code == 409
    twin = {**TIER, "code": "tier2"}
    r = await client.post("/api/v1/class-schemes", json=twin, headers=gm)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "target"
    r = await client.patch("/api/v1/class-schemes/tier", headers=gm,
                           json={"default_class": "ordinary", "name": "等级"})
    assert r.status_code == 200 and r.json()["default_class"] == "ordinary"
    r = await client.get("/api/v1/class-schemes", headers=await login(client, "rep"))
    assert [s["code"] for s in r.json()["items"]] == ["tier"]


async def test_default_schemes_install_once(node: Node, backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    assert await svc.install_defaults(node, gm) == 5
    assert await svc.install_defaults(node, gm) == 0
    targets = {s["target"] for s in await svc.list_schemes(node, gm)}
    assert targets == {"customer_class", "abc_class", "lifecycle_stage", "value_class",
                       "credit_class"}


# -- facts and recomputation ----------------------------------------------------------

async def test_facts_are_aggregated_from_purchases_complaints_credit_and_registration(
        node: Node, backend: str) -> None:
    c = await customer(node, "甲", registered_at=utcnow() - timedelta(days=400), points=0)
    other = await customer(node, "乙")
    await buy(node, c, 3_000_000, days_ago=10)
    await buy(node, c, 1_000_000, days_ago=100)
    await buy(node, c, 5_000_000, days_ago=500)  # counts for the total only
    await buy(node, other, 4_000_000, days_ago=2)
    now = utcnow()
    async with node.db.write(node.node_id, None) as uow:
        await uow.increment("customers", c, "points", 120)
        for days in (5, 30, 500):
            await uow.insert("complaints", {
                "customer_id": c, "number": f"T-{days}", "complainant": "甲", "demand": "refund",
                "content": "质量问题", "channel": "phone",
                "received_at": now - timedelta(days=days),
                "deadline_at": now - timedelta(days=days - 7)})
        for status in ("rejected", "rejected", "approved"):
            await uow.insert("credit_requests", {
                "customer_id": c, "amount_fen": 1, "over_fen": 1, "limit_fen": 1,
                "status": status})
    facts = await svc.facts_of(node, c)
    assert facts == {
        "recency_days": 10, "purchases_365d": 2, "amount_365d_fen": 4_000_000,
        "amount_total_fen": 9_000_000, "contribution_share": 0.5, "complaints_365d": 2,
        "credit_rejections": 2, "points": 120, "relationship_days": 400}
    assert (await svc.facts_of(node, await customer(node, "丙")))["recency_days"] is None


async def test_recompute_sets_the_target_column_and_records_why(node: Node, backend: str
                                                                ) -> None:
    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, TIER)
    big, small, none = [await customer(node, n) for n in ("大客户", "小客户", "新客户")]
    await buy(node, big, 12_000_000)
    await buy(node, small, 5_000)
    result = await svc.recompute(node, gm, "tier")
    assert result == {"scheme": "tier", "examined": 3, "changed": 3}
    assert [await column(node, c, "customer_class") for c in (big, small, none)] == [
        "key", "ordinary", "potential"]
    [h] = await history(node, big)
    assert (h["old_class"], h["new_class"], h["source"], h["changed_by"]) == (
        None, "key", "rule", gm.id)
    assert h["reason"] == "rule 1 (key: amount_365d_fen >= 10000000)"
    assert (await svc.recompute(node, gm, "tier"))["changed"] == 0  # nothing new: no history
    assert len(await history(node, big)) == 1


async def test_recompute_goes_page_by_page(node: Node, backend: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svc, "PAGE", 2)
    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, TIER)
    ids = [await customer(node, f"客户{i}") for i in range(5)]
    for c in ids[:3]:
        await buy(node, c, 100)
    assert await svc.recompute(node, gm, "tier") == {"scheme": "tier", "examined": 5,
                                                     "changed": 5}
    assert [await column(node, c, "customer_class") for c in ids] == ["ordinary"] * 3 + [
        "potential"] * 2


async def test_contribution_share_is_of_the_computation_scope(node: Node, org: None,
                                                              backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, {
        "code": "share", "name": "贡献", "target": "value_class", "default_class": "low",
        "rules": [{"class": "core", "all": [{"fact": "contribution_share", "op": ">=",
                                              "value": 0.5}]}]})
    a = await customer(node, "上海甲", branch="S001")
    b = await customer(node, "杭州乙", branch="S002")
    await buy(node, a, 300)
    await buy(node, b, 700)
    await svc.recompute(node, gm, "share")  # HQ: all customers, a has 30 %
    assert [await column(node, c, "value_class") for c in (a, b)] == ["low", "core"]
    manager = await add_user(node, "m1", "dept_manager", "S001")
    assert (await svc.recompute(node, manager, "share"))["examined"] == 1  # own branch only
    assert await column(node, a, "value_class") == "core"  # 100 % of S001


async def test_merged_customers_are_skipped_and_count_for_the_survivor(
        node: Node, backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, TIER)
    survivor = await customer(node, "存续")
    absorbed = await customer(node, "被合并")
    await buy(node, absorbed, 11_000_000)
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("customers", absorbed, {"merged_into": survivor})
    assert (await svc.recompute(node, gm, "tier"))["examined"] == 1
    assert await column(node, survivor, "customer_class") == "key"
    assert await column(node, absorbed, "customer_class") is None


async def test_recompute_needs_an_authorised_role_and_an_active_scheme(
        node: Node, backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    rep = await add_user(node, "rep", "sales_rep")
    await svc.create_scheme(node, gm, {**TIER, "active": False})
    with pytest.raises(ForbiddenError):
        await svc.recompute(node, rep, "tier")
    with pytest.raises(Exception, match="inactive"):
        await svc.recompute(node, gm, "tier")


async def test_scheduled_recompute_runs_every_active_scheme(node: Node, backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    await svc.install_defaults(node, gm)
    c = await customer(node, "定时")
    await buy(node, c, 12_000_000)
    task = svc.start_classification_schedule(node, 3600, first_delay_seconds=0)
    try:
        for _ in range(100):
            if len(await history(node, c)) == 5:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert [await column(node, c, k) for k in ("customer_class", "abc_class",
                                                "lifecycle_stage", "value_class",
                                                "credit_class")] == [
        "key", "A", "new", "core", "quality"]
    assert len(await history(node, c)) == 5


# -- overrides ------------------------------------------------------------------------

async def test_override_survives_recompute_and_clearing_reclassifies(
        client: Client, node: Node, org: None, backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, TIER)
    c = await customer(node, "战略伙伴", branch="S001", department="销售部")
    await add_user(node, "m1", "dept_manager", "S001", "销售部")
    m1 = await login(client, "m1")
    r = await client.put(f"/api/v1/customers/{c}/classes/tier", headers=m1,
                         json={"cls": "key", "reason": "集团战略客户"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == svc.override_id(c, "tier") and r.json()["cls"] == "key"
    assert await column(node, c, "customer_class") == "key"
    r = await client.post("/api/v1/class-schemes/tier/recompute", headers=m1)
    assert r.status_code == 200 and r.json() == {"scheme": "tier", "examined": 1, "changed": 0}
    assert await column(node, c, "customer_class") == "key"
    r = await client.put(f"/api/v1/customers/{c}/classes/tier", headers=m1,
                         json={"cls": "vip", "reason": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cls"
    r = await client.delete(f"/api/v1/customers/{c}/classes/tier", headers=m1,
                            params={"reason": "战略合作结束"})
    assert r.status_code == 204, r.text
    assert await column(node, c, "customer_class") == "potential"
    r = await client.get(f"/api/v1/customers/{c}/class-changes", headers=m1)
    items = r.json()["items"]
    assert [(i["source"], i["old_class"], i["new_class"]) for i in items] == [
        ("override", "key", "potential"), ("override", None, "key")]
    assert items[0]["reason"].startswith("override removed (战略合作结束)")
    assert items[1]["reason"] == "override: 集团战略客户"
    r = await client.delete(f"/api/v1/customers/{c}/classes/tier", headers=m1)
    assert r.status_code == 404


async def test_override_needs_an_authorised_role_within_scope(
        client: Client, node: Node, org: None, backend: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, TIER)
    elsewhere = await customer(node, "杭州客户", branch="S002")
    await add_user(node, "m1", "dept_manager", "S001")
    await add_user(node, "cs", "customer_service", "S002")
    body = {"cls": "key", "reason": "r"}
    r = await client.put(f"/api/v1/customers/{elsewhere}/classes/tier", json=body,
                         headers=await login(client, "m1"))
    assert r.status_code == 404
    r = await client.put(f"/api/v1/customers/{elsewhere}/classes/tier", json=body,
                         headers=await login(client, "cs"))
    assert r.status_code == 403
    assert await history(node, elsewhere) == []


# -- across real HQ and branch nodes --------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite"])
async def test_branch_classifies_its_customers_offline_and_hq_gets_the_history(
        tmp_path: Path, node: Node, client: Client, backend: str) -> None:
    from server.services import visits
    from tests._nodes import branch_node, principal, sync

    gm = await add_user(node, "gm", "general_manager")
    await svc.create_scheme(node, gm, TIER)
    await visits.create_plan(node, gm, {"scheme": "tier", "cls": "key", "every_days": 30,
                                        "care": []})
    branch, up = await branch_node(tmp_path, node, "S001")
    try:
        await add_user(node, "s1mgr", "dept_manager", "S001", "销售部")
        big = await customer(node, "大客户", branch="S001", department="销售部",
                             registered_at=utcnow() - timedelta(days=100))
        strategic = await customer(node, "战略客户", branch="S001", department="销售部")
        await sync(branch, up, client)
        manager = await principal(branch, "s1mgr")
        [scheme] = await svc.list_schemes(branch, manager)
        assert scheme["code"] == "tier" and scheme["rules"] == TIER["rules"]
        with pytest.raises(ForbiddenError, match="only at headquarters"):
            await svc.create_scheme(branch, manager, {**TIER, "code": "local"})
        # HQ unreachable: the branch sells, recomputes, overrides and visits on its own.
        await buy(branch, big, 12_000_000, days_ago=3)
        assert await svc.recompute(branch, manager, "tier") == {
            "scheme": "tier", "examined": 2, "changed": 2}
        await svc.set_override(branch, manager, strategic, "tier", "key", "总部战略合作")
        await visits.record_visit(branch, manager, big, {
            "kind": "survey", "satisfaction": 3, "content": "年度满意度调查"})
        assert await column(node, big, "customer_class") is None
        assert await svc.recompute_all(node) == 0  # S001 has its own node: it classifies
        await sync(branch, up, client)
        assert await column(node, big, "customer_class") == "key"
        assert await column(node, strategic, "customer_class") == "key"
        big_history = await history(node, big)
        assert [(h["new_class"], h["source"], h["node_id"]) for h in big_history] == [
            ("key", "rule", branch.node_id)]
        assert big_history[0]["changed_by"] == manager.id
        assert [(h["old_class"], h["new_class"], h["source"])
                for h in await history(node, strategic)] == [
            (None, "potential", "rule"), ("potential", "key", "override")]
        hq_gm = await principal(node, "gm")
        [v] = (await visits.list_visits(node, hq_gm, {"customer_id": big}, None, 50))[0]
        assert (v["kind"], v["satisfaction"], v["branch"]) == ("survey", 3, "S001")
        assert [o["cls"] for o in await svc.overrides_of(node, hq_gm, strategic)] == ["key"]
        due, _ = await visits.due_reminders(node, hq_gm, 14, None, 50)
        assert [i["customer_name"] for i in due] == []  # the branch's survey counts
        summary = await visits.survey_summary(node, hq_gm, None, None)
        assert (summary["count"], summary["below_target"]) == (1, 1)
        # HQ recomputing on demand finds nothing to change; the branch sees no echo.
        assert (await svc.recompute(node, hq_gm, "tier"))["changed"] == 0
        report = await sync(branch, up, client)
        assert report.quarantined == 0
    finally:
        await branch.close()
