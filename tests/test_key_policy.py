"""HQ changes the class policy while the system runs: a field moves to another key class
and is re-encrypted in the background; a role reads other classes; branches get the
classes their users now need. Plus HQ's root key from a passphrase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crypto import token_class
from schema import TABLES, PolicyError, utcnow
from server.key_jobs import maintain, pending, set_policy
from server.node import Node
from server.services.customers import get_customer
from server.services.principal import Principal
from tests.conftest import add_user
from tests.test_field_encryption import Client, _as, _customer
from tests.test_sync_http import _branch, _sync


def _principal(role: str, branch: str | None = None) -> Principal:
    return Principal(id="x", username="x", display_name="x", role=role, branch=branch,
                     department=None, token_version=0, created_at=utcnow())


async def _email_token(node: Node, customer_id: str) -> str:
    t = TABLES["customers"]
    async with node.db.read() as conn:
        return str((await conn.execute(select(t.c.email).where(t.c.id == customer_id)))
                   .scalar_one())


async def test_a_field_moved_to_another_class_is_re_encrypted_and_hidden_from_the_old_readers(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, up = await _branch(tmp_path, node, "S051")  # holds `confidential` only
    try:
        c = await _customer(client, clerk, branch="S051")
        await _sync(branch, up, client)
        rep = _principal("general_manager", "S051")
        assert (await get_customer(branch, rep, c["id"]))["email"] == "wang@example.com"
        await set_policy(node.db, hq_node_id=node.node_id, kind="field",
                         name="customers.email", classes=["secret"])
        # At once, before any re-encryption: the policy decides who reads, at HQ.
        service = await _as(client, node, "customer_service")
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=service)
        assert r.json()["email"] != "wang@example.com" and "*" in r.json()["email"]
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.json()["email"] == "wang@example.com"  # opens with the token's own class
        assert token_class(await _email_token(node, c["id"])) == "confidential"
        assert (await pending(node.db))["reencrypt"] == 1
        # The background job re-encrypts; every reader of `secret` still reads it.
        done = await maintain(node.db, node.node_id)
        assert done["reencrypted"] == 1 and (await pending(node.db))["reencrypt"] == 0
        assert token_class(await _email_token(node, c["id"])) == "secret"
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.json()["email"] == "wang@example.com"
        # The branch gets the policy and the new ciphertext; it holds no secret key.
        await _sync(branch, up, client)
        await _refresh(branch)
        assert token_class(await _email_token(branch, c["id"])) == "secret"
        shown = await get_customer(branch, _principal("general_manager", "S051"), c["id"])
        assert shown["email"] != "wang@example.com"
        assert shown["mobile"] == "+8613812345678"  # other confidential fields: unchanged
    finally:
        await branch.close()


async def test_re_encryption_never_overwrites_a_concurrent_edit(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, up = await _branch(tmp_path, node, "S052")
    try:
        c = await _customer(client, clerk, branch="S052")
        await _sync(branch, up, client)
        # The branch edits the e-mail offline (still `confidential` there) …
        async with branch.db.write(branch.node_id, None) as uow:
            await uow.update("customers", c["id"], {"email": "new@example.com"})
        # … while HQ moves the field to `secret` and re-encrypts the old value.
        await set_policy(node.db, hq_node_id=node.node_id, kind="field",
                         name="customers.email", classes=["secret"])
        assert (await maintain(node.db, node.node_id))["reencrypted"] == 1
        await _sync(branch, up, client)
        # The branch's edit wins (a later clock than the re-encryption); HQ's job then
        # re-encrypts the new value, and both replicas end alike.
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.json()["email"] == "new@example.com"
        assert token_class(await _email_token(node, c["id"])) == "confidential"
        assert (await maintain(node.db, node.node_id))["reencrypted"] == 1
        await _sync(branch, up, client)
        hq_token, branch_token = (await _email_token(node, c["id"]),
                                  await _email_token(branch, c["id"]))
        assert hq_token == branch_token and token_class(hq_token) == "secret"
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=clerk)
        assert r.json()["email"] == "new@example.com"
    finally:
        await branch.close()


async def test_a_role_change_applies_everywhere_and_grants_the_classes_branches_need(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, up = await _branch(tmp_path, node, "S053")
    try:
        c = await _customer(client, clerk, branch="S053")
        finance = await _as(client, node, "finance")
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=finance)
        assert r.json()["credit_status"] == "良好-甲级"
        await set_policy(node.db, hq_node_id=node.node_id, kind="role", name="finance",
                         classes=["confidential"])
        r = await client.get(f"/api/v1/customers/{c['id']}", headers=finance)
        assert r.json()["credit_status"] == "***"
        # A branch whose users need `secret` receives it from the key jobs.
        await add_user(node, "clerk53", "archive_clerk", "S053")
        assert (await maintain(node.db, node.node_id))["granted"] >= 1
        await _sync(branch, up, client)
        await _refresh(branch)
        assert branch.db.vault is not None and branch.db.vault.holds("secret")
        shown = await get_customer(branch, _principal("archive_clerk", "S053"), c["id"])
        assert shown["id_number"] == "11010519491231002X"
        # The finance role change reached the branch too.
        shown = await get_customer(branch, _principal("finance", "S053"), c["id"])
        assert shown["credit_status"] == "***"
    finally:
        await branch.close()


async def test_bad_policy_changes_are_refused(node: Node) -> None:
    for kind, name, classes, why in [
        ("field", "customers.name", ["secret"], "not an encrypted field"),
        ("field", "customers.email", ["secret", "credit"], "exactly one"),
        ("field", "customers.email", ["topsecret"], "unknown key class"),
        ("role", "janitor", ["secret"], "unknown role"),
    ]:
        with pytest.raises(PolicyError, match=why):
            await set_policy(node.db, hq_node_id=node.node_id, kind=kind, name=name,
                             classes=classes)


async def _refresh(branch: Node) -> None:
    from server.keys import refresh_vault

    await refresh_vault(branch.db, node_id=branch.node_id, role="branch", root_key=None)


def _cli(args: list[str], env: dict[str, str]) -> Any:
    from click.testing import CliRunner

    from server.cli import main

    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_root_key_from_a_passphrase_leaves_no_key_on_disk(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "BRANCHLINE_ADMIN_PASSWORD": "pw-1234567",
           "BRANCHLINE_ROOT_PASSPHRASE": "柜台钥匙 correct horse battery"}
    data = tmp_path / "hq"
    result = _cli(["init", "hq", "--data", str(data)], env)
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "cfg").rglob("*.root.key"))
    assert "root_key_salt" in (data / "node.json").read_text()
    ok = _cli(["keys", "status", "--data", str(data)], env)
    assert ok.exit_code == 0 and "confidential: versions 1" in ok.output, ok.output
    wrong = _cli(["keys", "status", "--data", str(data)],
                 {**env, "BRANCHLINE_ROOT_PASSPHRASE": "not the passphrase at all"})
    assert wrong.exit_code != 0
    assert "cannot unwrap" in wrong.output and "Traceback" not in wrong.output
    missing = _cli(["keys", "status", "--data", str(data)],
                   {k: v for k, v in env.items() if k != "BRANCHLINE_ROOT_PASSPHRASE"})
    assert missing.exit_code != 0 and "root key" in missing.output
    short = _cli(["init", "hq", "--data", str(tmp_path / "hq2")],
                 {**env, "BRANCHLINE_ROOT_PASSPHRASE": "short"})
    assert short.exit_code != 0 and "at least 12" in short.output
