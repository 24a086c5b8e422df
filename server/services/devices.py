"""Devices: the offline web app enrolled as a leaf node of the sync protocol (SPEC §20).

A device is a row of kind `device` in this node's `nodes` registry (local, never
replicated), enrolled by a logged-in user on the node that serves the app — HQ or a
branch node. Its user is kept in `node_meta` (`device-user:<node id>` → user id):
the registry has no column for it and the schema is fixed. The field-key grants are
returned to the device, not replicated as `key_grants` rows: a dormant tablet then never
holds back the retirement of a rotated key, and the app asks again (enrolment is
idempotent) at every online login to pick up new key versions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from schema import TABLES, Scope, new_id, node_meta, nodes, utcnow
from server.keys import INDEX, grants_for
from server.node import Node
from server.services import audit
from server.services import nodes as node_service
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.records import page
from server.services.sync import SCHEMA_VERSION
from sync import PROTOCOL_VERSION

KIND = "device"
USER_META = "device-user:"
MANAGERS = frozenset({"admin", "general_manager", "dept_manager"})
users = TABLES["users"]


def _hex_key(field: str, value: str) -> str:
    """A raw 32-byte public key as 64 lowercase hex digits (as everywhere in crypto/)."""
    text = value.strip().lower()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise FieldError(field, "is not hexadecimal") from None
    if len(raw) != 32:
        raise FieldError(field, f"must be 32 bytes (64 hex digits), got {len(raw)}")
    return text


def _device_branch(node: Node, p: Principal) -> str | None:
    """The branch whose share the device holds: the user's. A branch node holds only its
    own branch; at HQ a user without a branch gets everything only if HQ-wide."""
    if node.role != "hq":
        own = node.settings.node.branch_code
        if p.branch != own:
            raise ForbiddenError(f"this node serves branch {own}; enrol the device at the "
                                 "node of your own branch or at headquarters")
        return own
    if p.branch is None and not p.hq_wide:
        raise ForbiddenError(f"a headquarters {p.role} has no branch share to hold offline")
    return p.branch


def _grants(node: Node, role: str, box_public_key: str
            ) -> tuple[list[dict[str, str]], dict[str, str] | None]:
    """Every held version of the class keys `role` reads, and the blind-index key when it
    reads any class (a mask-only role gets no index: it would test guessed numbers)."""
    vault = node.db.vault
    if vault is None:
        return [], None
    classes = sorted(c for c in vault.readable(role) if c in vault.class_keys)
    if not classes:
        return [], None
    wrapped = grants_for(vault, box_public_key, classes)
    grants = [{"label": label, "wrapped": w} for label, w in sorted(wrapped.items())
              if label != INDEX]
    index = {"label": INDEX, "wrapped": wrapped[INDEX]} if INDEX in wrapped else None
    return grants, index


async def _find(node: Node, public_key: str) -> dict[str, Any] | None:
    async with node.db.read() as conn:
        row = (await conn.execute(select(nodes).where(nodes.c.public_key == public_key))
               ).mappings().first()
        if row is None:
            return None
        user = (await conn.execute(select(node_meta.c.value).where(
            node_meta.c.key == USER_META + row["id"]))).scalar()
    return {**{str(k): v for k, v in row.items()}, "user_id": user}


async def enrol(node: Node, p: Principal, *, name: str, public_key: str,
                box_public_key: str) -> dict[str, Any]:
    """Register the caller's device (or return its registration again: the same key
    always gets the same node id) with the key grants its user's role reads."""
    public_key = _hex_key("public_key", public_key)
    box_public_key = _hex_key("box_public_key", box_public_key)
    name = name.strip()
    if not name:
        raise FieldError("name", "must not be empty")
    branch = _device_branch(node, p)
    found = await _find(node, public_key)
    if found is not None:
        if found["kind"] != KIND:
            raise ConflictError("this key belongs to another node, not a device")
        if found["revoked_at"] is not None:
            raise ForbiddenError("device revoked: "
                                 f"{found['revoked_reason'] or 'no reason given'}")
        if found["user_id"] != p.id:
            raise ConflictError("this device is enrolled for another user; log out on it "
                                "(which wipes it) before another user logs in")
        if found["box_public_key"] != box_public_key:
            raise ConflictError("this device key is enrolled with another box key")
        device = found
    else:
        device = {"id": new_id(), "kind": KIND, "name": name[:100], "branch": branch,
                  "public_key": public_key, "box_public_key": box_public_key, "url": None,
                  "enrolled_at": utcnow()}
        try:
            async with node.db.admin() as conn:
                await conn.execute(nodes.insert(), [device])
                await conn.execute(node_meta.insert(), [
                    {"key": USER_META + device["id"], "value": p.id}])
        except IntegrityError:
            raise ConflictError("this device is being enrolled already; retry") from None
        await audit.log(node, p, "device_enrolled", object_table="nodes",
                        object_id=device["id"], detail={"branch": branch, "role": p.role})
    grants, index = _grants(node, p.role, box_public_key)
    return {"node_id": device["id"], "name": device["name"], "branch": device["branch"],
            "user_id": p.id, "role": p.role, "enrolled_at": device["enrolled_at"],
            "upstream_node_id": node.node_id, "upstream_public_key": node.key.public_hex(),
            "hq_node_id": node.hq_node_id, "grants": grants, "index_grant": index,
            "protocol": PROTOCOL_VERSION, "schema": SCHEMA_VERSION}


def _query() -> Any:
    return select(nodes, node_meta.c.value.label("user_id")).outerjoin(
        node_meta, node_meta.c.key == USER_META + nodes.c.id).where(nodes.c.kind == KIND)


def _sees_branch(p: Principal) -> bool:
    return p.role in MANAGERS


async def list_devices(node: Node, p: Principal, *, user_id: str | None,
                       revoked: bool | None, cursor: str | None, limit: int
                       ) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's devices; a manager's or administrator's whole branch (HQ-wide: all)."""
    query = _query()
    if not _sees_branch(p):
        query = query.where(node_meta.c.value == p.id)
    elif p.branch is not None:
        query = query.where(nodes.c.branch == p.branch)
    if user_id is not None:
        query = query.where(node_meta.c.value == user_id)
    if revoked is not None:
        query = query.where(nodes.c.revoked_at.is_not(None) if revoked
                            else nodes.c.revoked_at.is_(None))
    async with node.db.read() as conn:
        return await page(conn, query, nodes.c.id, cursor, limit)


async def _may_revoke(node: Node, p: Principal, device: dict[str, Any]) -> bool:
    """The device's user, an administrator, or a general or department manager whose
    scope holds the device's user (a department manager: that department)."""
    if p.role == "admin" or device["user_id"] == p.id:
        return True
    if p.role not in ("general_manager", "dept_manager"):
        return False
    if p.branch is not None and device["branch"] != p.branch:
        return False
    if p.role == "general_manager" or (p.department is None and p.branch is not None):
        return True
    async with node.db.read() as conn:
        department = (await conn.execute(select(users.c.department).where(
            users.c.id == device["user_id"]))).scalar()
    return p.department is not None and department == p.department


async def revoke(node: Node, p: Principal, node_id: str, reason: str) -> dict[str, Any]:
    """Revoke a device through the node registry's revocation: its next sync request is
    refused (403, "node revoked: …") and the app wipes its data."""
    async with node.db.read() as conn:
        row = (await conn.execute(_query().where(nodes.c.id == node_id))).mappings().first()
    device = {str(k): v for k, v in row.items()} if row is not None else None
    if device is None:
        raise NotFoundError(f"no device {node_id}")
    if not await _may_revoke(node, p, device):
        raise ForbiddenError("only the device's user, an administrator or their manager "
                             "may revoke it")
    if device["revoked_at"] is not None:
        raise ConflictError("this device is revoked already")
    reason = reason.strip() or "revoked"
    await node_service.revoke(node, node_id=node_id, branch=None, reason=reason,
                              principal=p, action="device_revoked")
    async with node.db.read() as conn:
        row = (await conn.execute(_query().where(nodes.c.id == node_id))).mappings().one()
    return {str(k): v for k, v in row.items()}


async def require_active_user(node: Node, device: dict[str, Any]) -> None:
    """A device syncs only while its user is active: a deactivated user's device is
    refused like a revoked one (403 naming `revoked`), so the app wipes itself."""
    async with node.db.read() as conn:
        active = (await conn.execute(
            select(users.c.active).select_from(node_meta.join(
                users, users.c.id == node_meta.c.value))
            .where(node_meta.c.key == USER_META + device["id"]))).scalar()
    if not active:
        raise ForbiddenError("node revoked: the device's user is no longer active")


async def scope_of(node: Node, device: dict[str, Any]) -> Scope:
    """What a device holds (SPEC §20 [device-rep-holds-own-customers]): its branch's
    share without the audit trail and others' key grants, narrowed as the API narrows
    what its user sees (server/services/scope.py): a sales rep's own customers, a
    department manager's department."""
    async with node.db.read() as conn:
        user = (await conn.execute(
            select(users.c.id, users.c.role, users.c.department).select_from(
                node_meta.join(users, users.c.id == node_meta.c.value))
            .where(node_meta.c.key == USER_META + device["id"]))).first()
    role = user.role if user is not None else None
    return Scope(device["branch"], owner=user.id if role == "sales_rep" and user else None,
                 department=user.department if role == "dept_manager" and user else None,
                 device=True)
