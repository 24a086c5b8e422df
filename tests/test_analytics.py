"""Analytics (domain.md §10) checked figure by figure against a small hand-computed
dataset: RFM quintiles and segments, the 80/20 curve, the class pyramid, dormant
customers (静止户), class changes and churn (客户异动), lifetime value, householding
(归户); scope by branch, merged customers, roles, and no secrets in responses.

The dataset (as of AS_OF, window 365 days; amounts in yuan, days before AS_OF):

    cust branch class     abc purchases                                R F M  segment
    c1   S001   key       A   5,30,60,90,120,150: 500 each; 600: 700   5 5 5  champions
    c11  S001 (merged into c1) 200: 1000  -> c1: F=7, M=4000
    c2   S001   key       A   10: 9000                                 5 2 5  potential_loyalist
    c3   S001   ordinary  B   20,50,80,110: 300 each                   4 4 4  champions
    c4   S001   ordinary  B   40,70,300: 200 each                      4 4 3  loyal
    c5   S002   ordinary  C   60,90: 150 each                          3 3 2  need_attention
    c6   S002   key       A   100,130,160,190,220: 500 each            3 5 4  loyal
    c7   S002   potential D   150: 100                                 2 2 2  hibernating
    c8   S002   potential C   200,250: 400 each                        2 3 3  at_risk
    c9   S002   potential D   400,700: 1000 each  (none in window)     1 1 1  lost
    c10  S001   potential D   500: 300            (none in window)     1 1 1  lost
    c12  S001   potential D   no purchases (registered 2 days before AS_OF)

Quintile score = 1 + floor(5·(rank−1)/10), rank = RANK() ascending (recency: oldest
first), so scores go 1,1,2,2,3,3,4,4,5,5 and ties share the lower one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from schema import FieldError
from server.node import Node
from server.services import analytics_base, analytics_households, analytics_rfm
from server.services import classification as classification_svc
from server.services.errors import ForbiddenError
from server.services.principal import Principal
from tests._nodes import colliding
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]
AS_OF = datetime(2025, 7, 1, tzinfo=UTC)
Y = 100  # fen per yuan

PURCHASES: dict[str, list[tuple[int, int]]] = {
    "c1": [(5, 500), (30, 500), (60, 500), (90, 500), (120, 500), (150, 500), (600, 700)],
    "c11": [(200, 1000)],
    "c2": [(10, 9000)],
    "c3": [(20, 300), (50, 300), (80, 300), (110, 300)],
    "c4": [(40, 200), (70, 200), (300, 200)],
    "c5": [(60, 150), (90, 150)],
    "c6": [(100, 500), (130, 500), (160, 500), (190, 500), (220, 500)],
    "c7": [(150, 100)],
    "c8": [(200, 400), (250, 400)],
    "c9": [(400, 1000), (700, 1000)],
    "c10": [(500, 300)],
}
CUSTOMERS = {  # name: (branch, customer_class, abc_class)
    "c1": ("S001", "key", "A"), "c2": ("S001", "key", "A"), "c3": ("S001", "ordinary", "B"),
    "c4": ("S001", "ordinary", "B"), "c5": ("S002", "ordinary", "C"),
    "c6": ("S002", "key", "A"), "c7": ("S002", "potential", "D"),
    "c8": ("S002", "potential", "C"), "c9": ("S002", "potential", "D"),
    "c10": ("S001", "potential", "D"), "c11": ("S001", "key", "A"),
    "c12": ("S001", "potential", "D"),
}


async def dataset(node: Node) -> dict[str, str]:
    """The customers and purchases of the module docstring; name -> id."""
    ids: dict[str, str] = {}
    async with node.db.write(node.node_id, None) as uow:
        for name, (branch, cls, abc) in CUSTOMERS.items():
            registered = AS_OF - timedelta(days=2 if name == "c12" else 1000)
            row = await uow.insert("customers", {
                "name": f"客户{name}", "customer_type": "person", "source": "call",
                "branch": branch, "customer_class": cls, "abc_class": abc,
                "registered_at": registered})
            ids[name] = row["id"]
        await uow.update("customers", ids["c11"], {"merged_into": ids["c1"]})
        await uow.insert_many("purchases", [
            {"customer_id": ids[name], "branch": CUSTOMERS[name][0],
             "purchased_at": AS_OF - timedelta(days=days), "items": [],
             "amount_fen": yuan * Y, "on_credit": False, "points": 0, "prepaid_fen": 0,
             "user_id": None}
            for name, bought in PURCHASES.items() for days, yuan in bought])
    return ids


@pytest.fixture
async def gm(node: Node, org: None) -> Principal:
    return await add_user(node, "gm", "general_manager")


def _by_name(ids: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in ids.items()}


# -- RFM --------------------------------------------------------------------------------

async def test_rfm_scores_are_quintiles_of_recency_frequency_monetary(
        node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    out = await analytics_rfm.rfm(node, gm, as_of=AS_OF, limit=500)
    names = _by_name(ids)
    got = {names[i["customer_id"]]: (i["r"], i["f"], i["m"]) for i in out["items"]}
    assert got == {"c1": (5, 5, 5), "c2": (5, 2, 5), "c3": (4, 4, 4), "c4": (4, 4, 3),
                   "c5": (3, 3, 2), "c6": (3, 5, 4), "c7": (2, 2, 2), "c8": (2, 3, 3),
                   "c9": (1, 1, 1), "c10": (1, 1, 1)}
    c1 = next(i for i in out["items"] if i["customer_id"] == ids["c1"])
    assert (c1["recency_days"], c1["frequency"], c1["monetary_fen"], c1["score"]) == (
        5, 7, 4000 * Y, "555")
    assert out["customers"] == 10 and out["next_cursor"] is None


async def test_rfm_segments_follow_the_documented_mapping(node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    out = await analytics_rfm.rfm(node, gm, as_of=AS_OF, limit=500)
    names = _by_name(ids)
    assert {names[i["customer_id"]]: i["segment"] for i in out["items"]} == {
        "c1": "champions", "c2": "potential_loyalist", "c3": "champions", "c4": "loyal",
        "c5": "need_attention", "c6": "loyal", "c7": "hibernating", "c8": "at_risk",
        "c9": "lost", "c10": "lost"}
    seg = {s["segment"]: (s["customers"], s["monetary_fen"], s["purchases"])
           for s in out["segments"]}
    assert seg["champions"] == (2, 5200 * Y, 11)
    assert seg["loyal"] == (2, 3100 * Y, 8)
    assert seg["lost"] == (2, 0, 0)
    assert seg["new"] == (0, 0, 0)
    assert [s["segment"] for s in out["segments"]] == list(analytics_rfm.SEGMENT_NAMES)
    assert sum(s["customers"] for s in out["segments"]) == 10
    for name in analytics_rfm.SEGMENT_NAMES:  # the SQL filter agrees with the mapping
        only = await analytics_rfm.rfm(node, gm, as_of=AS_OF, segment=name)
        assert {i["customer_id"] for i in only["items"]} == {
            i["customer_id"] for i in out["items"] if i["segment"] == name}, name
    cube = {(c["r"], c["f"], c["m"]): (c["customers"], c["monetary_fen"]) for c in out["cube"]}
    assert cube[(1, 1, 1)] == (2, 0) and cube[(5, 5, 5)] == (1, 4000 * Y) and len(cube) == 9


def test_every_score_triple_has_exactly_one_segment() -> None:
    names = {analytics_rfm.segment_of(r, f, m)
             for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert names == set(analytics_rfm.SEGMENT_NAMES)
    assert analytics_rfm.segment_of(2, 5, 5) == "cant_lose"
    assert analytics_rfm.segment_of(2, 5, 3) == "at_risk"
    assert analytics_rfm.segment_of(5, 1, 5) == "new"


async def test_rfm_list_pages_by_amount_and_filters_by_segment(node: Node, gm: Principal
                                                               ) -> None:
    ids = await dataset(node)
    names = _by_name(ids)
    seen: list[str] = []
    cursor = None
    while True:
        out = await analytics_rfm.rfm(node, gm, as_of=AS_OF, cursor=cursor, limit=3)
        seen += [names[i["customer_id"]] for i in out["items"]]
        cursor = out["next_cursor"]
        if cursor is None:
            break
    # Largest amount in the window first; equal amounts (c9, c10: 0) by id.
    assert seen[:8] == ["c2", "c1", "c6", "c3", "c8", "c4", "c5", "c7"]
    assert sorted(seen[8:]) == ["c10", "c9"] and len(seen) == 10
    lost = await analytics_rfm.rfm(node, gm, as_of=AS_OF, segment="lost")
    assert sorted(names[i["customer_id"]] for i in lost["items"]) == ["c10", "c9"]


# -- 80/20 --------------------------------------------------------------------------------

async def test_top_20_percent_share(node: Node, gm: Principal) -> None:
    await dataset(node)
    out = await analytics_rfm.contribution(node, gm, as_of=AS_OF)
    # Buyers in the window by amount: 9000, 4000, 2500, 1200, 800, 600, 300, 100 = 18500.
    assert (out["buyers"], out["total_fen"]) == (8, 18500 * Y)
    assert out["top_20_percent_fen"] == 13000 * Y  # top ceil(1.6) = 2 buyers
    assert out["top_20_percent_share"] == pytest.approx(13000 / 18500)
    assert out["customers_for_80_percent"] == 3  # 9000+4000+2500 = 15500 >= 14800
    cum = {p["percent"]: (p["customers"], p["cumulative_fen"]) for p in out["points"]}
    assert len(out["points"]) == 100
    assert cum[1] == (1, 9000 * Y) and cum[12] == (1, 9000 * Y)
    assert cum[13] == (2, 13000 * Y) and cum[25] == (2, 13000 * Y)
    assert cum[26] == (3, 15500 * Y) and cum[50] == (4, 16700 * Y)
    assert cum[51] == (5, 17500 * Y) and cum[75] == (6, 18100 * Y)
    assert cum[87] == (7, 18400 * Y) and cum[88] == (8, 18500 * Y)
    assert out["points"][-1]["share"] == 1.0


# -- pyramid, dormant, changes -------------------------------------------------------------

async def test_pyramid_counts_customers_and_revenue_by_class(node: Node, gm: Principal) -> None:
    await dataset(node)
    out = await analytics_base.pyramid(node, gm, as_of=AS_OF)
    levels = {lv["cls"]: (lv["customers"], lv["buyers"], lv["amount_fen"])
              for lv in out["levels"]}
    assert levels == {"key": (3, 3, 15500 * Y), "ordinary": (3, 3, 2100 * Y),
                      "potential": (5, 2, 900 * Y)}
    assert [lv["cls"] for lv in out["levels"]] == ["key", "ordinary", "potential"]
    assert (out["customers"], out["amount_fen"]) == (11, 18500 * Y)
    abc = await analytics_base.pyramid(node, gm, as_of=AS_OF, scheme_column="abc_class")
    assert {lv["cls"]: (lv["customers"], lv["amount_fen"]) for lv in abc["levels"]} == {
        "A": (3, 15500 * Y), "B": (2, 1800 * Y), "C": (2, 1100 * Y), "D": (4, 100 * Y)}


async def test_pyramid_levels_follow_the_scheme_order(node: Node, gm: Principal) -> None:
    await dataset(node)
    await classification_svc.install_defaults(node, gm)
    async with node.db.write(node.node_id, None) as uow:
        for cid, stage in (await _ids_stages(node)):
            await uow.update("customers", cid, {"lifecycle_stage": stage})
    out = await analytics_base.pyramid(node, gm, as_of=AS_OF, scheme_column="lifecycle_stage")
    # The lifecycle scheme's rules give potential, lost, new, old, then stable.
    assert [lv["cls"] for lv in out["levels"]] == ["potential", "lost", "stable"]


async def _ids_stages(node: Node) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from schema import TABLES
    c = TABLES["customers"]
    async with node.db.read() as conn:
        rows = (await conn.execute(select(c.c.id, c.c.name).where(
            c.c.merged_into.is_(None)))).all()
    stage = {"客户c9": "lost", "客户c12": "potential"}
    return [(r.id, stage.get(r.name, "stable")) for r in rows]


async def test_dormant_customers_bought_before_but_not_in_n_days(node: Node, gm: Principal
                                                                 ) -> None:
    ids = await dataset(node)
    names = _by_name(ids)
    out = await analytics_base.dormant(node, gm, as_of=AS_OF)
    # Last purchase over 180 days ago: c8 (200), c9 (400), c10 (500); c12 never bought.
    assert [names[i["customer_id"]] for i in out["items"]] == ["c9", "c8", "c10"]
    assert (out["dormant"], out["buyers"], out["lifetime_fen"]) == (3, 10, 3100 * Y)
    c9 = out["items"][0]
    assert (c9["days_since_purchase"], c9["purchases"], c9["lifetime_fen"]) == (
        400, 2, 2000 * Y)
    ninety = await analytics_base.dormant(node, gm, as_of=AS_OF, days=90, limit=2)
    assert ninety["dormant"] == 5 and len(ninety["items"]) == 2
    rest = await analytics_base.dormant(node, gm, as_of=AS_OF, days=90,
                                        cursor=ninety["next_cursor"])
    assert [names[i["customer_id"]] for i in ninety["items"] + rest["items"]] == [
        "c6", "c9", "c8", "c10", "c7"]


async def test_class_changes_and_churn_in_period(node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    await classification_svc.install_defaults(node, gm)
    moves = [("c9", "lifecycle", "stable", "lost", 10),
             ("c10", "lifecycle", "stable", "lost", 40),
             ("c8", "lifecycle", "lost", "stable", 5),
             ("c7", "tier", "ordinary", "potential", 3),
             ("c5", "tier", "potential", "ordinary", 20),
             ("c4", "tier", "potential", "ordinary", 1),
             ("c11", "lifecycle", "stable", "lost", 2)]
    async with node.db.write(node.node_id, None) as uow:
        for name, scheme, old, new, days in moves:
            await uow.insert("class_changes", {
                "customer_id": ids[name], "scheme": scheme, "old_class": old, "new_class": new,
                "source": "rule", "reason": "test", "changed_by": None,
                "changed_at": AS_OF - timedelta(days=days), "node_id": node.node_id})
    out = await analytics_base.changes(node, gm, from_=AS_OF - timedelta(days=30), to=AS_OF)
    # c10's move is before the period; c11 is merged away.
    assert out["changes"] == 5
    assert out["by_scheme"] == [{"scheme": "lifecycle", "changes": 2},
                                {"scheme": "tier", "changes": 3}]
    got = {(m["scheme"], m["old_class"], m["new_class"]): (m["changes"], m["customers"])
           for m in out["moves"]}
    assert got == {("tier", "potential", "ordinary"): (2, 2),
                   ("tier", "ordinary", "potential"): (1, 1),
                   ("lifecycle", "stable", "lost"): (1, 1),
                   ("lifecycle", "lost", "stable"): (1, 1)}
    assert (out["churned"], out["recovered"], out["registered"]) == (1, 1, 1)
    wider = await analytics_base.changes(node, gm, from_=AS_OF - timedelta(days=60), to=AS_OF)
    assert wider["churned"] == 2


# -- lifetime value ---------------------------------------------------------------------

async def test_clv_is_aov_times_frequency_times_lifetime_times_margin(
        node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    out = await analytics_rfm.clv(node, gm, as_of=AS_OF, limit=500)
    classes = {c["cls"]: c for c in out["classes"]}
    key = classes["key"]  # c1 (7 purchases, 4000), c2 (1, 9000), c6 (5, 2500)
    assert (key["customers"], key["purchases"], key["amount_fen"]) == (3, 13, 15500 * Y)
    assert key["avg_order_value_fen"] == 119231  # 1,550,000 / 13
    assert key["purchases_per_year"] == pytest.approx(13 / 3)
    assert key["avg_clv_fen"] == 1550000  # 15500 / 3 yuan x 3 years
    assert classes["potential"]["customers"] == 2  # c9 and c10 bought nothing in the window
    assert out["overall"]["customers"] == 8 and out["overall"]["amount_fen"] == 18500 * Y
    c1 = next(i for i in out["items"] if i["customer_id"] == ids["c1"])
    assert (c1["avg_order_value_fen"], c1["clv_fen"]) == (57143, 1200000)  # 400000/7; x3
    lean = await analytics_rfm.clv(node, gm, as_of=AS_OF, lifetime_years=2, margin=0.25)
    assert {c["cls"]: c["avg_clv_fen"] for c in lean["classes"]}["key"] == 258333
    assert lean["items"][0]["clv_fen"] == 9000 * Y // 2  # c2: 9000 x 2 x 0.25


# -- householding ------------------------------------------------------------------------

async def test_households_group_archives_sharing_an_id_number_confirmed_by_decrypting(
        node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    one, other = colliding(node, "id_number", lambda n: f"11010119900101{n:04d}")
    async with node.db.write(node.node_id, None) as uow:
        for name, value in (("c2", one), ("c5", one), ("c6", other), ("c11", one),
                            ("c7", "310101198001010000")):
            await uow.update("customers", ids[name], {"id_number": value})
        await uow.update("customers", ids["c3"], {"org_code": "91310000MA1FL0001X"})
        await uow.update("customers", ids["c4"], {"org_code": "91310000MA1FL0001X"})
    out = await analytics_households.households(node, gm, as_of=AS_OF)
    got = {(h["kind"], tuple(sorted(h["customer_ids"]))): h for h in out["items"]}
    # c6's number only shares c2's index, not its value; c11 is merged away.
    pair = ("id_number", tuple(sorted((ids["c2"], ids["c5"]))))
    org = ("org_code", tuple(sorted((ids["c3"], ids["c4"]))))
    assert set(got) == {pair, org}
    assert (got[pair]["count"], got[pair]["revenue_fen"]) == (2, 9300 * Y)
    assert got[org]["revenue_fen"] == 1800 * Y and got[org]["lifetime_fen"] == 1800 * Y
    assert out["next_cursor"] is None and out["unverifiable"] == 0
    first = await analytics_households.households(node, gm, as_of=AS_OF, limit=1)
    rest = await analytics_households.households(node, gm, as_of=AS_OF,
                                                 cursor=first["next_cursor"])
    assert len(first["items"]) == 1 and len(rest["items"]) == 1
    assert first["items"][0]["kind"] == "id_number" and rest["items"][0]["kind"] == "org_code"


# -- scope, merges, roles --------------------------------------------------------------------

async def test_branch_manager_sees_only_their_branch(node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    names = _by_name(ids)
    manager = await add_user(node, "mgr1", "dept_manager", branch="S001")
    rfm = await analytics_rfm.rfm(node, manager, as_of=AS_OF)
    assert sorted(names[i["customer_id"]] for i in rfm["items"]) == [
        "c1", "c10", "c2", "c3", "c4"]
    curve = await analytics_rfm.contribution(node, manager, as_of=AS_OF)
    assert (curve["buyers"], curve["total_fen"], curve["top_20_percent_fen"]) == (
        4, 14800 * Y, 9000 * Y)
    dormant = await analytics_base.dormant(node, manager, as_of=AS_OF)
    assert [names[i["customer_id"]] for i in dormant["items"]] == ["c10"]
    pyramid = await analytics_base.pyramid(node, manager, as_of=AS_OF)
    assert pyramid["customers"] == 6 and pyramid["amount_fen"] == 14800 * Y


async def test_merged_customers_are_excluded_and_their_purchases_count_for_the_survivor(
        node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    rfm = await analytics_rfm.rfm(node, gm, as_of=AS_OF, limit=500)
    assert ids["c11"] not in {i["customer_id"] for i in rfm["items"]}
    c1 = next(i for i in rfm["items"] if i["customer_id"] == ids["c1"])
    assert (c1["frequency"], c1["monetary_fen"]) == (7, 4000 * Y)
    pyramid = await analytics_base.pyramid(node, gm, as_of=AS_OF)
    assert pyramid["customers"] == 11  # 12 archives, one merged away
    # A chain: c1 merged into c2 later; c11's purchase now follows to c2 as well.
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("customers", ids["c1"], {"merged_into": ids["c2"]})
    rfm = await analytics_rfm.rfm(node, gm, as_of=AS_OF, limit=500)
    c2 = next(i for i in rfm["items"] if i["customer_id"] == ids["c2"])
    assert (c2["frequency"], c2["monetary_fen"], rfm["customers"]) == (8, 13000 * Y, 9)


async def test_roles_without_analytics_are_refused(node: Node, gm: Principal) -> None:
    rep = await add_user(node, "rep1", "sales_rep", branch="S001")
    tech = await add_user(node, "tech1", "technician", branch="S001")
    for who in (rep, tech):
        with pytest.raises(ForbiddenError):
            await analytics_rfm.rfm(node, who)
        with pytest.raises(ForbiddenError):
            await analytics_households.households(node, who)


async def test_bad_parameters_are_refused_naming_the_field(node: Node, gm: Principal) -> None:
    with pytest.raises(FieldError) as err:
        await analytics_rfm.rfm(node, gm, as_of=datetime(2025, 1, 1))  # no offset
    assert err.value.field == "as_of"
    with pytest.raises(FieldError) as err:
        await analytics_rfm.rfm(node, gm, cursor="not-a-cursor")
    assert err.value.field == "cursor"
    with pytest.raises(FieldError) as err:
        await analytics_base.changes(node, gm, from_=AS_OF, to=AS_OF)
    assert err.value.field == "from"
    with pytest.raises(FieldError) as err:
        await analytics_rfm.clv(node, gm, margin=1.5)
    assert err.value.field == "margin"


async def test_auditor_reads_analytics_over_http_without_phone_or_id(
        client: Client, node: Node, gm: Principal) -> None:
    ids = await dataset(node)
    async with node.db.write(node.node_id, None) as uow:
        for name in ("c2", "c5"):
            await uow.update("customers", ids[name], {
                "id_number": "110101199001011234", "mobile": "+8613800001111"})
    await add_user(node, "aud", "auditor")
    headers = await login(client, "aud")
    stamp = "2025-07-01T00:00:00Z"
    bodies = []
    for path in (f"rfm?as_of={stamp}", f"contribution?as_of={stamp}",
                 f"pyramid?as_of={stamp}&scheme_column=abc_class", f"dormant?as_of={stamp}",
                 "changes?from=2025-06-01T00:00:00Z&to=2025-07-01T00:00:00Z",
                 f"clv?as_of={stamp}&lifetime_years=2", f"households?as_of={stamp}"):
        r = await client.get(f"/api/v1/analytics/{path}", headers=headers)
        assert r.status_code == 200, (path, r.text)
        bodies.append(r.text)
    assert r.json()["items"][0]["customer_ids"] == sorted([ids["c2"], ids["c5"]])
    assert not any("13800001111" in b or "110101199001011234" in b for b in bodies)
    assert "8613800001111" not in "".join(bodies)
    r = await client.get(f"/api/v1/analytics/rfm?as_of={stamp}&segment=vip", headers=headers)
    assert r.status_code == 422
    r = await client.get("/api/v1/analytics/rfm?window_days=0", headers=headers)
    assert r.status_code == 422
    r = await client.get("/api/v1/analytics/rfm?as_of=2025-07-01T00:00:00", headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "as_of"
    await add_user(node, "rep2", "sales_rep", branch="S001")
    r = await client.get("/api/v1/analytics/rfm", headers=await login(client, "rep2"))
    assert r.status_code == 403


async def test_analytics_endpoints_are_in_openapi(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    for name in ("rfm", "contribution", "pyramid", "dormant", "changes", "clv", "households"):
        assert f"/api/v1/analytics/{name}" in paths, name
