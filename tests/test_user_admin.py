"""Changing users at headquarters (`PATCH /api/v1/users/{id}`, `branchline user update`):
a new role, branch, department or a deactivation ends the user's sessions and revokes
their devices, which hold the field keys of the old rights and wipe themselves."""

from __future__ import annotations

import asyncio
from typing import Any

from click.testing import CliRunner
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from schema import TABLES
from server.config import Settings
from server.node import Node
from tests.conftest import PASSWORD, add_user, login
from tests.test_devices import Device, enrol, headers, pull_request, signed

Client = AsyncTestClient[Any]


async def _user(node: Node, user_id: str) -> dict[str, Any]:
    t = TABLES["users"]
    async with node.db.read() as conn:
        return dict((await conn.execute(select(t).where(t.c.id == user_id))).mappings().one())


async def test_role_change_ends_sessions_and_revokes_the_users_devices(
        client: Client, node: Node, org: None, admin_headers: dict[str, str]) -> None:
    rep = await add_user(node, "rep", "sales_rep", "S001", "销售部")
    other = await add_user(node, "rep2", "sales_rep", "S001", "销售部")
    dev = await enrol(client, node, rep, Device())
    kept = await enrol(client, node, other, Device())
    before = headers(node, rep)
    assert (await client.get("/api/v1/me", headers=before)).status_code == 200
    r = await client.patch(f"/api/v1/users/{rep.id}", headers=admin_headers,
                           json={"role": "customer_service", "department": "客服部"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["role"] == "customer_service" and body["devices_revoked"] == [dev.id]
    assert (await client.get("/api/v1/me", headers=before)).status_code == 401
    refused = await signed(client, dev, "/sync/v1/pull", pull_request(dev))
    assert refused.status_code == 403 and "revoked" in refused.json()["detail"]
    assert (await signed(client, kept, "/sync/v1/pull", pull_request(kept))).status_code == 200
    audit = TABLES["audit_log"]
    async with node.db.read() as conn:
        entry = (await conn.execute(select(audit.c.detail).where(
            audit.c.action == "user_updated", audit.c.object_id == rep.id))).scalar_one()
    assert "customer_service" in str(entry)
    # Signing in again gives the new rights (and a new device enrols afresh).
    fresh = await login(client, "rep")
    me = await client.get("/api/v1/me", headers=fresh)
    assert me.json()["role"] == "customer_service"


async def test_a_new_display_name_keeps_sessions_and_devices(
        client: Client, node: Node, org: None, admin_headers: dict[str, str]) -> None:
    rep = await add_user(node, "rep", "sales_rep", "S001")
    dev = await enrol(client, node, rep, Device())
    r = await client.patch(f"/api/v1/users/{rep.id}", headers=admin_headers,
                           json={"display_name": "王小明"})
    assert r.status_code == 200 and r.json()["devices_revoked"] == [], r.text
    assert (await client.get("/api/v1/me", headers=headers(node, rep))).status_code == 200
    assert (await signed(client, dev, "/sync/v1/pull", pull_request(dev))).status_code == 200


async def test_user_changes_are_refused_cleanly_and_write_nothing(
        client: Client, node: Node, org: None, admin_headers: dict[str, str]) -> None:
    rep = await add_user(node, "rep", "sales_rep", "S001")
    admin = await _user(node, (await client.get("/api/v1/me", headers=admin_headers)
                               ).json()["id"])
    before = await _user(node, rep.id)
    url = f"/api/v1/users/{rep.id}"
    cases = [
        (headers(node, rep), {"role": "admin"}, 403),
        (admin_headers, {"role": "wizard"}, 422),
        (admin_headers, {"branch": "S999"}, 422),
        (admin_headers, {"password_hash": "x"}, 422),
        (admin_headers, {"role": "auditor"}, 422),  # an auditor has no branch
        (admin_headers, "not json", 400),
    ]
    for h, body, status in cases:
        r = await client.patch(url, headers=h, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.patch("/api/v1/users/0190a2a0-0000-7000-8000-000000000000",
                           headers=admin_headers, json={"active": False})
    assert r.status_code == 404
    r = await client.patch(f"/api/v1/users/{admin['id']}", headers=admin_headers,
                           json={"active": False})
    assert r.status_code == 409
    assert await _user(node, rep.id) == before
    assert (await _user(node, admin["id"]))["active"] is True


async def test_cli_deactivates_and_reactivates_a_departing_employee(
        client: Client, node: Node, settings: Settings, org: None) -> None:
    await add_user(node, "rep", "sales_rep", "S001")
    env = {"XDG_CONFIG_HOME": str(settings.data_dir.parent / "cfg")}

    def cli(*args: str) -> Any:
        from server.cli import main

        return CliRunner().invoke(main, ["user", "update", "--data", str(settings.data_dir),
                                         *args], env=env)

    r = await asyncio.to_thread(cli, "--username", "rep", "--inactive")
    assert r.exit_code == 0 and "inactive" in r.output, r.output
    refused = await client.post("/api/v1/auth/login",
                                json={"username": "rep", "password": PASSWORD})
    assert refused.status_code == 401
    r = await asyncio.to_thread(cli, "--username", "rep", "--active", "--branch", "S002")
    assert r.exit_code == 0 and "S002" in r.output, r.output
    await login(client, "rep")
    r = await asyncio.to_thread(cli, "--username", "nobody", "--inactive")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    r = await asyncio.to_thread(cli, "--username", "rep")
    assert r.exit_code == 2, r.output
