"""The customer archive API: create, read, update, list, search, history, contacts."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from server.node import Node
from tests.conftest import add_user, login

Client = AsyncTestClient[Any]


async def _create(client: Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/v1/customers", json={"name": "张三", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_create_returns_201_with_uuid7_id_and_normalised_fields(
    client: Client, clerk: dict[str, str]
) -> None:
    body = await _create(client, clerk, mobile="138 0000 1111", id_number="11010519491231002x",
                         tags=["会员", "会员", "VIP"], email=" A@Example.COM ",
                         contacts=[{"name": "李四", "mobile": "+86-139-0000-2222"}])
    assert body["id"][14] == "7"  # UUID version 7
    assert body["mobile"] == "+8613800001111"
    assert body["id_number"] == "11010519491231002X"
    assert body["email"] == "a@example.com"
    assert body["tags"] == ["VIP", "会员"]
    assert body["contacts"][0]["mobile"] == "+8613900002222"
    r = await client.get(f"/api/v1/customers/{body['id']}", headers=clerk)
    assert r.status_code == 200 and r.json()["contacts"][0]["name"] == "李四"


async def test_patch_changes_only_sent_fields_and_keeps_history(
    client: Client, clerk: dict[str, str]
) -> None:
    c = await _create(client, clerk, address="上海市黄浦区南京东路1号", industry="零售")
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=clerk,
                           json={"address": "上海市静安区1号", "customer_class": "key"})
    assert r.status_code == 200, r.text
    assert r.json()["industry"] == "零售" and r.json()["customer_class"] == "key"
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=clerk,
                           json={"industry": None})
    assert r.json()["industry"] is None
    r = await client.get(f"/api/v1/customers/{c['id']}/history", headers=clerk)
    items = r.json()["items"]
    changes = {(i["column_name"], i["old_value"], i["new_value"]) for i in items}
    assert changes == {("address", "上海市黄浦区南京东路1号", "上海市静安区1号"),
                       ("customer_class", None, "key"), ("industry", "零售", None)}
    assert all(i["changed_by_name"] == "clerk" for i in items)
    assert items[0]["column_name"] == "industry"  # newest first


async def test_name_search_finds_chinese_substring_pinyin_and_initials(
    client: Client, clerk: dict[str, str]
) -> None:
    await _create(client, clerk, name="欧阳娜娜")
    await _create(client, clerk, name="张伟")
    for q in ("欧阳", "娜娜", "ouyang", "oynn", "OuYangNaNa"):
        r = await client.get("/api/v1/customers", params={"q": q}, headers=clerk)
        assert [i["name"] for i in r.json()["items"]] == ["欧阳娜娜"], q
    r = await client.get("/api/v1/customers", params={"q": "%"}, headers=clerk)
    assert r.json()["items"] == []  # LIKE wildcards are literal


async def test_exact_phone_search_accepts_any_local_form(client: Client,
                                                         clerk: dict[str, str]) -> None:
    await _create(client, clerk, name="王芳", mobile="13912345678")
    await _create(client, clerk, name="王芳", mobile="13912345679")
    for form in ("13912345678", "139 1234 5678", "+8613912345678"):
        r = await client.get("/api/v1/customers", params={"mobile": form}, headers=clerk)
        assert [i["mobile"] for i in r.json()["items"]] == ["+8613912345678"]


async def test_filters_use_the_fields_own_names(client: Client, clerk: dict[str, str],
                                                org: None) -> None:
    await _create(client, clerk, name="甲", branch="S001", customer_class="key",
                  source="call", tags=["会员"], lifecycle_stage="stable")
    await _create(client, clerk, name="乙", branch="S002", customer_class="ordinary",
                  source="referral", tags=["会员2"], lifecycle_stage="lost")
    cases = {"branch": "S001", "customer_class": "key", "source": "call", "tags": "会员",
             "lifecycle_stage": "stable"}
    for key, value in cases.items():
        r = await client.get("/api/v1/customers", params={key: value}, headers=clerk)
        assert [i["name"] for i in r.json()["items"]] == ["甲"], key


async def test_cursor_pagination_walks_every_customer_once(client: Client,
                                                           clerk: dict[str, str]) -> None:
    for i in range(7):
        await _create(client, clerk, name=f"客户{i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/customers", params=params, headers=clerk)).json()
        seen += [i["name"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"客户{i}" for i in reversed(range(7))]


async def test_contacts_can_be_added_listed_and_changed(client: Client,
                                                        clerk: dict[str, str]) -> None:
    c = await _create(client, clerk)
    r = await client.post(f"/api/v1/customers/{c['id']}/contacts", headers=clerk,
                          json={"name": "赵六", "title": "采购经理", "mobile": "13700001111"})
    assert r.status_code == 201
    contact = r.json()
    r = await client.patch(f"/api/v1/customers/{c['id']}/contacts/{contact['id']}",
                           headers=clerk, json={"title": "总经理"})
    assert r.status_code == 200 and r.json()["title"] == "总经理"
    r = await client.get(f"/api/v1/customers/{c['id']}/contacts", headers=clerk)
    assert [x["title"] for x in r.json()["items"]] == ["总经理"]


async def test_custom_fields_defined_at_run_time_are_validated_and_stored(
    client: Client, admin_headers: dict[str, str], clerk: dict[str, str]
) -> None:
    r = await client.post("/api/v1/custom-fields", headers=admin_headers, json={
        "name": "vip_level", "label": "会员等级", "field_type": "choice",
        "choices": ["普通", "金卡"], "required": True})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/custom-fields", headers=admin_headers, json={
        "name": "visits", "label": "到店次数", "field_type": "integer"})
    assert r.status_code == 201
    r = await client.post("/api/v1/customers", headers=clerk, json={"name": "孙七"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "custom.vip_level"
    r = await client.post("/api/v1/customers", headers=clerk,
                          json={"name": "孙七", "custom": {"vip_level": "钻石卡"}})
    assert r.status_code == 422
    c = await _create(client, clerk, name="孙七", custom={"vip_level": "金卡", "visits": 3})
    assert c["custom"] == {"vip_level": "金卡", "visits": 3}
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=clerk,
                           json={"custom": {"visits": "many"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "custom.visits"
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=clerk,
                           json={"custom": {"visits": 4, "nope": 1}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "custom.nope"
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=clerk,
                           json={"custom": {"visits": 4}})
    assert r.json()["custom"] == {"vip_level": "金卡", "visits": 4}


async def test_scope_rep_sees_own_manager_branch_hq_everything(
    client: Client, node: Node, org: None
) -> None:
    rep1 = await add_user(node, "rep1", "sales_rep", "S001", "销售部")
    await add_user(node, "rep2", "sales_rep", "S001", "销售部")
    await add_user(node, "mgr1", "dept_manager", "S001", "销售部")
    await add_user(node, "svc2", "customer_service", "S002")
    await add_user(node, "gm", "general_manager")
    h = {u: await login(client, u) for u in ("rep1", "rep2", "mgr1", "svc2", "gm")}
    mine = await _create(client, h["rep1"], name="一号客户")
    assert mine["owner_id"] == rep1.id and mine["branch"] == "S001"
    theirs = await _create(client, h["rep2"], name="二号客户")
    other = await _create(client, h["svc2"], name="杭州客户")

    async def names(user: str) -> set[str]:
        r = await client.get("/api/v1/customers", headers=h[user])
        return {i["name"] for i in r.json()["items"]}

    assert await names("rep1") == {"一号客户"}
    assert await names("mgr1") == {"一号客户", "二号客户"}
    assert await names("svc2") == {"杭州客户"}
    assert await names("gm") == {"一号客户", "二号客户", "杭州客户"}
    # Not visible means 404, for reading and for writing.
    assert (await client.get(f"/api/v1/customers/{theirs['id']}", headers=h["rep1"])
            ).status_code == 404
    r = await client.patch(f"/api/v1/customers/{other['id']}", headers=h["mgr1"],
                           json={"name": "改名"})
    assert r.status_code == 404
    r = await client.post("/api/v1/customers", headers=h["rep1"],
                          json={"name": "越权", "branch": "S002"})
    assert r.status_code == 403


async def test_roles_that_may_not_edit_archives_get_403(client: Client, node: Node,
                                                        clerk: dict[str, str]) -> None:
    c = await _create(client, clerk)
    await add_user(node, "aud", "auditor")
    h = await login(client, "aud")
    assert (await client.get(f"/api/v1/customers/{c['id']}", headers=h)).status_code == 200
    r = await client.patch(f"/api/v1/customers/{c['id']}", headers=h, json={"name": "x"})
    assert r.status_code == 403 and r.headers["content-type"].startswith(
        "application/problem+json")
    r = await client.post("/api/v1/customers", headers=h, json={"name": "x"})
    assert r.status_code == 403


async def test_organisation_and_users_are_managed_by_admin(
    client: Client, admin_headers: dict[str, str], clerk: dict[str, str]
) -> None:
    r = await client.post("/api/v1/regions", headers=admin_headers,
                          json={"code": "SOUTH", "name": "华南区"})
    assert r.status_code == 201
    r = await client.post("/api/v1/branches", headers=admin_headers,
                          json={"code": "s012", "name": "深圳店", "region": "SOUTH"})
    assert r.status_code == 201 and r.json()["code"] == "S012"
    r = await client.post("/api/v1/branches", headers=admin_headers,
                          json={"code": "S012", "name": "重复"})
    assert r.status_code == 409
    r = await client.post("/api/v1/departments", headers=admin_headers,
                          json={"name": "销售部", "branch": "S012"})
    assert r.status_code == 201
    r = await client.post("/api/v1/users", headers=admin_headers, json={
        "username": "s012.rep", "password": "long-enough-1", "role": "sales_rep",
        "branch": "S012", "department": "销售部"})
    assert r.status_code == 201 and r.json()["branch"] == "S012"
    r = await client.post("/api/v1/branches", headers=clerk, json={"code": "S013", "name": "x"})
    assert r.status_code == 403
    r = await client.get("/api/v1/branches", headers=clerk)
    assert [b["code"] for b in r.json()] == ["S012"]
