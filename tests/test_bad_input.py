"""Bad input gets a 4xx problem+json naming the field, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from schema import sync_rows
from server.node import Node

Client = AsyncTestClient[Any]


async def _writes(node: Node) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(sync_rows)))
                   .scalar_one())


@pytest.mark.parametrize(("body", "field"), [
    ({"name": 123}, "name"),
    ({"name": "张三", "extra": 1}, "extra"),
    ({"name": "x" * 201}, "name"),
    ({"name": ""}, "name"),
    ({"name": "张三", "mobile": "12345"}, "mobile"),
    ({"name": "张三", "mobile": "1" * 41}, "mobile"),
    ({"name": "张三", "id_number": "110105194912310021"}, "id_number"),
    ({"name": "张三", "org_code": "91110000600037341M"}, "org_code"),
    ({"name": "张三", "email": "not-mail"}, "email"),
    ({"name": "张三", "birthday": "1990-02-30"}, "birthday"),
    ({"name": "张三", "source": "spam"}, "source"),
    ({"name": "张三", "tags": ["x"] * 31}, "tags"),
    ({"name": "张三", "owner_id": "not-a-uuid"}, "owner_id"),
    ({"name": "张三", "branch": "NOPE"}, "branch"),
    ({"name": "张三", "contacts": [{"name": "李四", "mobile": "abc"}]}, "mobile"),
    ({"name": "张\x00三"}, "name"),
])
async def test_invalid_customer_is_refused_naming_the_field(
    client: Client, clerk: dict[str, str], node: Node, body: dict[str, Any], field: str
) -> None:
    before = await _writes(node)
    r = await client.post("/api/v1/customers", json=body, headers=clerk)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert any(field in e["field"] for e in problem["errors"]), problem
    assert await _writes(node) == before


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b"{not json", b"", b"[]", b"null",
                                 b'{"name": "\xe5\xbc"}'])
async def test_malformed_bodies_are_400(client: Client, clerk: dict[str, str], node: Node,
                                        raw: bytes) -> None:
    before = await _writes(node)
    r = await client.post("/api/v1/customers", content=raw,
                          headers={**clerk, "content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await _writes(node) == before


async def test_huge_body_is_413(client: Client, clerk: dict[str, str]) -> None:
    r = await client.post("/api/v1/customers", content=b'{"name": "' + b"x" * 3_000_000 + b'"}',
                          headers={**clerk, "content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("path", "status"), [
    ("/api/v1/customers/not-a-uuid", (400, 404)),
    ("/api/v1/customers/01a2116f-0000-7000-8000-000000000000", (404,)),
    ("/api/v1/customers?limit=0", (400, 422)),
    ("/api/v1/customers?limit=501", (400, 422)),
    ("/api/v1/customers?cursor=%%%", (400, 422)),
    ("/api/v1/customers?cursor=bm90IGEgY3Vyc29y", (422,)),
    ("/api/v1/customers?mobile=abc", (422,)),
    ("/api/v1/customers?intention=maybe", (400, 422)),
    ("/api/v1/nowhere", (404,)),
])
async def test_bad_paths_and_parameters_are_4xx(client: Client, clerk: dict[str, str],
                                                path: str, status: tuple[int, ...]) -> None:
    r = await client.get(path, headers=clerk)
    assert r.status_code in status, (path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_patch_with_invalid_field_changes_nothing(client: Client, clerk: dict[str, str],
                                                        node: Node) -> None:
    c = (await client.post("/api/v1/customers", json={"name": "张三"}, headers=clerk)).json()
    before = await _writes(node)
    for body in ({"mobile": "999"}, {"name": None}, {"owner_id": c["id"]},
                 {"registered_at": "2020-01-01T00:00:00Z"}, {"name": "ok", "mobile": "1"}):
        r = await client.patch(f"/api/v1/customers/{c['id']}", json=body, headers=clerk)
        assert r.status_code in (400, 422), (body, r.text)
    assert await _writes(node) == before
    r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
    assert r.json()["name"] == "张三"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["name", "mobile", "id_number", "birthday", "tags", "custom",
                          "contacts", "source", "owner_id", "registered_at", "email", "x"])


@given(body=st.dictionaries(FIELDS, JSON, max_size=5))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_no_body_makes_the_server_fail(client: Client, clerk: dict[str, str],
                                             body: dict[str, Any]) -> None:
    r = await client.post("/api/v1/customers", json=body, headers=clerk)
    assert r.status_code < 500, r.text
