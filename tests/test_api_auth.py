"""Login, tokens, throttling and role checks on the HTTP surface."""

from __future__ import annotations

import time
from typing import Any

from litestar.testing import AsyncTestClient

from server.config import Settings
from server.node import Node, open_node
from tests.conftest import ADMIN_PASSWORD, add_user, login

Client = AsyncTestClient[Any]


async def test_login_returns_token_expiry_and_user(client: Client) -> None:
    r = await client.post("/api/v1/auth/login",
                          json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["role"] == "admin" and body["expires_at"].endswith("Z")
    assert "password_hash" not in body["user"]
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["username"] == "admin"


async def test_wrong_password_and_unknown_user_look_the_same(client: Client) -> None:
    a = await client.post("/api/v1/auth/login", json={"username": "admin", "password": "nope"})
    b = await client.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope"})
    assert a.status_code == b.status_code == 401
    assert a.json()["detail"] == b.json()["detail"]
    assert a.headers["content-type"].startswith("application/problem+json")


async def test_repeated_failures_are_throttled_with_retry_after(client: Client) -> None:
    for _ in range(5):
        r = await client.post("/api/v1/auth/login", json={"username": "admin", "password": "x"})
        assert r.status_code == 401
    r = await client.post("/api/v1/auth/login",
                          json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


async def test_every_api_route_needs_a_valid_token(client: Client) -> None:
    for path in ("/api/v1/customers", "/api/v1/me", "/api/v1/users", "/api/v1/branches",
                 "/api/v1/custom-fields"):
        assert (await client.get(path)).status_code == 401, path
        r = await client.get(path, headers={"Authorization": "Bearer forged.token"})
        assert r.status_code == 401, path
        r = await client.get(path, headers={"Authorization": "Basic YWRtaW46eA=="})
        assert r.status_code == 401, path
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/schema/openapi.json")).status_code == 200


async def test_expired_token_is_refused(client: Client, node: Node) -> None:
    user = await add_user(node, "short", "archive_clerk")
    token = node.signer.issue(user.id, user.token_version, int(time.time()) - 1)
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_token_from_another_node_is_refused(client: Client, settings: Settings,
                                                  node: Node) -> None:
    from crypto import TokenSigner

    user = await add_user(node, "elsewhere", "archive_clerk")
    token = TokenSigner(b"x" * 32).issue(user.id, 0, int(time.time()) + 60)
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_deactivated_user_loses_access(client: Client, node: Node) -> None:
    user = await add_user(node, "leaver", "sales_rep")
    headers = await login(client, "leaver")
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("users", user.id, {"active": False})
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_only_admin_creates_users(client: Client, node: Node,
                                        clerk: dict[str, str]) -> None:
    r = await client.post("/api/v1/users", headers=clerk, json={
        "username": "x1", "password": "long-enough-1", "role": "sales_rep"})
    assert r.status_code == 403


async def test_token_signing_secret_survives_restart(settings: Settings, node: Node) -> None:
    user = await add_user(node, "stay", "archive_clerk")
    token = node.signer.issue(user.id, 0, int(time.time()) + 60)
    again = await open_node(settings)
    try:
        assert again.signer.verify(token, int(time.time())).user_id == user.id
    finally:
        await again.close()
