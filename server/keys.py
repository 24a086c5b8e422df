"""Where a node's field keys live, and how they reach it (crypto/THREATS.md).

* **HQ** creates the class keys (`confidential`, `secret`, `credit`, version 1) and the
  blind-index root at `init`, and keeps them in `node_meta` wrapped by its root key,
  which lives outside the data directory (a 0600 key file, or `BRANCHLINE_ROOT_KEY`).
* **A branch** gets, in its sealed enrolment file, an X25519 key pair made for it and
  *grants*: the class keys its users need and the index root, each wrapped to that
  X25519 key. It stores them so in `node_meta` (inside its SQLCipher database).

Either way the keys are unwrapped into a `Vault` only in memory, when the node opens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select

from crypto import (
    BoxKey,
    FieldCryptoError,
    new_key,
    unwrap_local,
    wrap_local,
    wrap_to,
)
from schema import KEY_CLASSES, TABLES, ClassPolicy, Database, Vault, load_policy, node_meta, nodes
from server.errors import NodeError
from server.services import audit

GRANT_NS = uuid.UUID("9d3f1a52-2c1e-4b8e-9a41-5f7c0b6e8d23")

CLASSES = KEY_CLASSES
"""Key classes: the two sensitivity classes, and credit status (finance reads it)."""
INDEX = "index"


def _label(cls: str, version: int) -> str:
    return f"class:{cls}:{version}"


async def create_hq_keys(db: Database, root_key: bytes) -> None:
    """Create version 1 of every class key and the blind-index root (HQ, at init)."""
    rows = [{"key": f"fkey:{_label(cls, 1)}",
             "value": wrap_local(root_key, new_key(), label=_label(cls, 1))} for cls in CLASSES]
    rows += [{"key": f"fkey-current:{cls}", "value": "1"} for cls in CLASSES]
    rows.append({"key": f"fkey:{INDEX}", "value": wrap_local(root_key, new_key(), label=INDEX)})
    async with db.admin() as conn:
        await conn.execute(node_meta.insert(), rows)


async def store_grants(db: Database, box_private_hex: str, grants: Mapping[str, str]) -> None:
    """Keep a branch's X25519 key and the grants HQ wrapped to it (replacing older ones)."""
    async with db.admin() as conn:
        await conn.execute(delete(node_meta).where(node_meta.c.key.like("fkey%")))
        await conn.execute(delete(node_meta).where(node_meta.c.key == "box_key"))
        await conn.execute(node_meta.insert(), [
            {"key": "box_key", "value": box_private_hex},
            *({"key": f"fkey:{label}", "value": wrapped} for label, wrapped in grants.items())])


def _parse(label: str) -> tuple[str, int] | None:
    parts = label.split(":")
    if len(parts) == 3 and parts[0] == "class" and parts[2].isdigit():
        return parts[1], int(parts[2])
    return None


def load_vault(meta: Mapping[str, str], *, role: str, root_key: bytes | None,
               grants: Mapping[str, str] | None = None,
               policy: ClassPolicy | None = None) -> Vault | None:
    """The node's field keys, unwrapped in memory; None if it holds none (a node without
    keys still stores and relays ciphertext, and shows masks). At a branch, replicated
    `grants` (label → wrapped), once any arrived, replace those of the enrolment file."""
    wrapped = {k[len("fkey:"):]: v for k, v in meta.items() if k.startswith("fkey:")}
    if role != "hq" and grants:
        wrapped = dict(grants)
    if not wrapped:
        return None
    if role == "hq":
        if root_key is None:
            return None

        def unwrap(label: str, value: str) -> bytes:
            assert root_key is not None
            return unwrap_local(root_key, value, label=label)
    else:
        if "box_key" not in meta:
            return None
        box = BoxKey.from_hex(meta["box_key"])

        def unwrap(label: str, value: str) -> bytes:
            return box.unwrap(value, label=label)
    vault = Vault() if policy is None else Vault(policy=policy)
    try:
        for label, value in wrapped.items():
            if label == INDEX:
                vault.index_root = unwrap(label, value)
                continue
            parsed = _parse(label)
            if parsed is None:
                continue
            cls, version = parsed
            vault.class_keys.setdefault(cls, {})[version] = unwrap(label, value)
    except FieldCryptoError as exc:
        hint = " (wrong root key?)" if role == "hq" else ""
        raise NodeError(f"cannot unwrap this node's field keys{hint}: {exc}") from None
    for cls, versions in vault.class_keys.items():
        current = meta.get(f"fkey-current:{cls}")
        vault.current[cls] = int(current) if current else max(versions)
    return vault


def grants_for(vault: Vault, box_public_hex: str, classes: Iterable[str]) -> dict[str, str]:
    """Every version of the given class keys, and the index root, wrapped to a node's
    X25519 key (what its enrolment file carries)."""
    out: dict[str, str] = {}
    for cls in classes:
        if cls not in vault.class_keys:
            raise NodeError(f"no {cls} key to grant")
        for version, key in vault.class_keys[cls].items():
            out[_label(cls, version)] = wrap_to(box_public_hex, key, label=_label(cls, version))
    if vault.index_root is not None:
        out[INDEX] = wrap_to(box_public_hex, vault.index_root, label=INDEX)
    return out


def grant_id(node_id: str, label: str) -> str:
    """The id of a grant row (the same wherever it is made)."""
    return str(uuid.uuid5(GRANT_NS, f"{node_id}|{label}"))


async def own_grants(db: Database, node_id: str) -> dict[str, str]:
    """The replicated grants addressed to this node (label → wrapped)."""
    t = TABLES["key_grants"]
    async with db.read() as conn:
        rows = await conn.execute(select(t.c.label, t.c.wrapped).where(t.c.node_id == node_id))
        return {r.label: r.wrapped for r in rows}


async def _load(db: Database, node_id: str, role: str, root_key: bytes | None
                ) -> Vault | None:
    async with db.read() as conn:
        meta = dict((await conn.execute(select(node_meta.c.key, node_meta.c.value))).all())
        policy = await load_policy(conn)
    grants = await own_grants(db, node_id) if role != "hq" else None
    return load_vault(meta, role=role, root_key=root_key, grants=grants, policy=policy)


async def refresh_vault(db: Database, *, node_id: str, role: str,
                        root_key: bytes | None) -> None:
    """Reload the node's field keys and class policy (after a sync brought new or retired
    grants, or a policy change)."""
    fresh = await _load(db, node_id, role, root_key)
    if fresh is not None and db.vault is not None:
        db.vault.adopt(fresh)  # in place: requests already holding it see the new keys
        return
    db.vault = fresh
    if fresh is not None:
        async def reload() -> Vault | None:
            return await _load(db, node_id, role, root_key)

        fresh.reloader = reload


async def record_grants(db: Database, hq_node_id: str, node_id: str, branch: str | None,
                        grants: Mapping[str, str]) -> None:
    """Replicate grants to a node (HQ): it receives them with its next sync."""
    async with db.write(hq_node_id, None) as uow:
        for label, wrapped in grants.items():
            await uow.insert("key_grants", {"id": grant_id(node_id, label), "node_id": node_id,
                                            "branch": branch, "label": label,
                                            "wrapped": wrapped})


async def revoke_grants(db: Database, hq_node_id: str, node_id: str) -> int:
    """Revoke every grant of a node: no key version reaches it any more."""
    t = TABLES["key_grants"]
    async with db.write(hq_node_id, None) as uow:
        ids = [r.id for r in await uow.conn.execute(select(t.c.id).where(t.c.node_id == node_id))]
        for gid in ids:
            await uow.delete("key_grants", gid)
    return len(ids)


async def rotate(db: Database, *, hq_node_id: str, root_key: bytes, cls: str) -> dict[str, Any]:
    """Add a version of a class key; new writes use it at once, and every node holding
    the class gets a grant of it. The background job (`server/key_jobs.py`) then
    rewraps every data key of the class (values are untouched) and, once each holder
    has acknowledged the new grant, destroys the older versions at HQ and deletes their
    grants, so a copy of an old wrapped data key (a backup, an old bundle) no longer
    opens."""
    vault = db.vault
    if cls not in CLASSES or vault is None or cls not in vault.class_keys:
        raise NodeError(f"no {cls} key to rotate (classes: {', '.join(CLASSES)})")
    old = sorted(vault.class_keys[cls])
    version = max(old) + 1
    key = new_key()
    label = _label(cls, version)
    async with db.admin() as conn:
        await conn.execute(node_meta.insert(), [
            {"key": f"fkey:{label}", "value": wrap_local(root_key, key, label=label)}])
        await conn.execute(delete(node_meta).where(node_meta.c.key == f"fkey-current:{cls}"))
        await conn.execute(node_meta.insert(), [{"key": f"fkey-current:{cls}",
                                                 "value": str(version)}])
    vault.class_keys[cls][version] = key
    vault.current[cls] = version
    grants = TABLES["key_grants"]
    async with db.read() as conn:
        holders = (await conn.execute(
            select(grants.c.node_id, grants.c.branch, nodes.c.box_public_key)
            .join(nodes, nodes.c.id == grants.c.node_id)
            .where(grants.c.label.like(f"class:{cls}:%"), nodes.c.revoked_at.is_(None),
                   nodes.c.box_public_key.is_not(None)).distinct())).all()
    for holder in holders:
        await record_grants(db, hq_node_id, holder.node_id, holder.branch,
                            {label: wrap_to(holder.box_public_key, key, label=label)})
    async with db.write(hq_node_id, None) as uow:
        await audit.append_for(uow, hq_node_id, None, "key_rotated",
                               detail={"class": cls, "version": version,
                                       "nodes_granted": len(holders)})
    return {"class": cls, "version": version, "nodes_granted": len(holders),
            "to_retire": old}
