"""Nodes headquarters trusts: enrolling branches, revoking them, checking requests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from branches import Enrolment, new_expiry, write_enrolment
from crypto import BoxKey, NodeKey, SignatureError, request_message, verify
from schema import TABLES, new_id, nodes, utcnow
from server.errors import AuthError, ForbiddenError, NodeError
from server.keys import CLASSES, grants_for, record_grants, revoke_grants
from server.node import Node
from server.services import audit, org
from server.services.bundles import own_box_public
from server.services.principal import Principal


async def add_branch(node: Node, *, code: str, name: str, out: Path, passphrase: str,
                     url: str | None, classes: list[str] | None = None) -> dict[str, Any]:
    """Register a branch node (and the branch, if new) and write its enrolment file,
    with grants of the field-key `classes` its users need (default: confidential)."""
    if node.role != "hq":
        raise NodeError("only headquarters enrols branches")
    classes = ["confidential"] if classes is None else classes
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise NodeError(f"unknown key classes {unknown}; choose from {', '.join(CLASSES)}")
    if node.db.vault is None:
        raise NodeError("headquarters' field keys are not available (root key missing?)")
    branches = TABLES["branches"]
    async with node.db.read() as conn:
        found = (await conn.execute(select(branches).where(branches.c.code == code.upper()))
                 ).mappings().first()
        existing: dict[str, Any] | None = dict(found) if found else None
        enrolled = (await conn.execute(select(nodes.c.id).where(
            nodes.c.branch == code.upper(), nodes.c.kind == "branch",
            nodes.c.revoked_at.is_(None)))).first()
    if enrolled is not None:
        raise NodeError(f"branch {code.upper()} already has an enrolled node; revoke it first")
    if existing is None:
        existing = await org.create_branch(node, None, {"code": code, "name": name,
                                                        "region": None, "address": None})
    key = NodeKey.generate()
    box = BoxKey.generate()
    grants = grants_for(node.db.vault, box.public_hex(), classes)
    node_id = new_id()
    async with node.db.admin() as conn:
        await conn.execute(nodes.insert(), [{
            "id": node_id, "kind": "branch", "name": name, "branch": existing["code"],
            "public_key": key.public_hex(), "box_public_key": box.public_hex(), "url": None,
            "enrolled_at": utcnow()}])
    async with node.db.write(node.node_id, None) as uow:
        await uow.update("branches", existing["id"], {"node_id": node_id})
        await audit.append(uow, node, None, "node_enrolled", object_table="nodes",
                           object_id=node_id, detail={"branch": existing["code"],
                                                      "classes": sorted(classes)})
    # The same grants replicate to the branch, so later key versions can follow them.
    await record_grants(node.db, node.node_id, node_id, existing["code"], grants)
    write_enrolment(out, Enrolment(
        node_id=node_id, node_key=key.private_hex(), branch_code=existing["code"],
        branch_name=name, hq_node_id=node.node_id, hq_public_key=node.key.public_hex(),
        hq_url=url or node.settings.node.public_url, expires_at=new_expiry(),
        box_key=box.private_hex(), grants=grants,
        hq_box_public_key=await own_box_public(node)), passphrase)
    return {"node_id": node_id, "branch": existing["code"]}


async def revoke(node: Node, *, node_id: str | None, branch: str | None, reason: str,
                 principal: Principal | None = None, action: str = "node_revoked") -> str:
    """Revoke a node: its requests and changes are refused from now on."""
    query = select(nodes).where(nodes.c.revoked_at.is_(None), nodes.c.id != node.node_id)
    if node_id:
        query = query.where(nodes.c.id == node_id)
    elif branch:  # the branch's node, not one of its users' devices
        query = query.where(nodes.c.branch == branch.upper(), nodes.c.kind == "branch")
    else:
        raise NodeError("name a node id or a branch code")
    async with node.db.admin() as conn:
        row = (await conn.execute(query)).first()
        if row is None:
            raise NodeError("no such active node")
        await conn.execute(update(nodes).where(nodes.c.id == row.id).values(
            revoked_at=utcnow(), revoked_reason=reason))
    await revoke_grants(node.db, node.node_id, str(row.id))  # no new key reaches it
    await audit.log(node, principal, action, object_table="nodes", object_id=str(row.id),
                    detail={"branch": row.branch, "reason": reason[:200]})
    return str(row.id)


async def list_nodes(node: Node) -> list[dict[str, Any]]:
    """Every node this node knows."""
    async with node.db.read() as conn:
        return [{str(k): v for k, v in r.items()}
                for r in (await conn.execute(select(nodes).order_by(nodes.c.branch)))
                .mappings()]


async def authenticate(node: Node, *, method: str, path: str, headers: dict[str, str],
                       body: bytes) -> dict[str, Any]:
    """The enrolled, unrevoked node that signed this request; 401/403 otherwise."""
    node_id = headers.get("x-branchline-node", "")
    try:
        millis = int(headers.get("x-branchline-time", ""))
    except ValueError:
        raise AuthError("missing or malformed request time") from None
    async with node.db.read() as conn:
        row = (await conn.execute(select(nodes).where(nodes.c.id == node_id))
               ).mappings().first()
    if row is None or row["id"] == node.node_id:
        raise AuthError("unknown node")
    try:
        verify(row["public_key"], headers.get("x-branchline-signature", ""),
               request_message(method, path, node_id, millis, body))
    except SignatureError:
        raise AuthError("request signature does not verify") from None
    if row["revoked_at"] is not None:
        raise ForbiddenError(f"node revoked: {row['revoked_reason'] or 'no reason given'}")
    skew = millis - int(time.time() * 1000)
    if abs(skew) > node.settings.max_skew_ms:
        raise AuthError(f"request clock is {skew / 1000:+.0f} s off this node's clock "
                        f"(limit {node.settings.max_skew_ms / 1000:.0f} s); fix the clock")
    return {str(k): v for k, v in row.items()}
