"""HQ's background key work (crypto/THREATS.md §Rotation, §Re-classification).

* **Rewrap** after `keys rotate`: every data key still wrapped by an older version of its
  class key is rewrapped by the current one (values are untouched).
* **Retire**: once nothing is left to rewrap and every node holding the class has
  acknowledged the grant of the current version, the older versions are destroyed at HQ
  and their grants deleted on every replica.
* **Re-encrypt** fields HQ moved to another class (`keys policy --field`): each value
  sealed under its old class is opened and sealed again under the new one, as the
  version right after the one it replaces (`UnitOfWork.reseal`), so a concurrent edit
  elsewhere is never overwritten.
* **Grant** the classes a branch's users now need (a role's classes changed, or a user
  with another role joined the branch).

Each step works through a bounded batch in its own transaction, so it runs beside
normal traffic, can be interrupted anywhere, and resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select

from crypto import CLASS_CODES, MARKER, CryptoError, unwrap_data_key, wrap_data_key
from schema import (
    TABLES,
    Database,
    check_change,
    node_meta,
    nodes,
    peer_state,
    policy_id,
    sync_rows,
)
from schema._errors import SchemaError
from schema._produce import parse_cursor
from schema._uow import customer_of
from server.errors import NodeError
from server.keys import CLASSES, _label, grant_id, grants_for, record_grants
from server.services import audit

BATCH = 500
log = logging.getLogger("branchline.keys")


async def set_policy(db: Database, *, hq_node_id: str, kind: str, name: str,
                     classes: Iterable[str]) -> dict[str, Any]:
    """Change which class encrypts a field (`kind` "field", `name` "table.column") or
    which classes a role reads (`kind` "role"). Replicates to every node; re-encryption
    and new grants follow in the background."""
    value = check_change(kind, name, classes)
    pid = policy_id(kind, name)
    async with db.write(hq_node_id, None) as uow:
        if await uow.get("key_policies", pid) is None:
            await uow.insert("key_policies", {"id": pid, "kind": kind, "name": name,
                                              "classes": value})
        else:
            await uow.update("key_policies", pid, {"classes": value})
        await audit.append_for(uow, hq_node_id, None, "key_policy_changed",
                               object_table="key_policies", object_id=pid,
                               detail={"kind": kind, "name": name, "classes": value})
    if db.vault is not None:
        async with db.read() as conn:
            await db.vault.refresh_policy(conn)
    return {"kind": kind, "name": name, "classes": value.split(",")}


async def rewrap_step(db: Database, hq_node_id: str) -> int:
    """Rewrap one batch of data keys wrapped by an older version of their class key."""
    vault = db.vault
    if vault is None:
        return 0
    t = TABLES["data_keys"]
    done = 0
    for cls in CLASSES:
        current = vault.current.get(cls)
        if current is None:
            continue
        async with db.write(hq_node_id, None) as uow:
            batch = (await uow.conn.execute(select(t).where(
                t.c.cls == cls, t.c.key_version < current).order_by(t.c.id).limit(BATCH))
            ).all()
            for r in batch:
                old = vault.class_keys[cls].get(r.key_version)
                if old is None:  # a version retired before this key arrived: unreadable
                    continue
                dek = unwrap_data_key(old, r.wrapped, customer_id=r.customer_id, cls=cls,
                                      version=r.key_version)
                await uow.update("data_keys", r.id, {
                    "key_version": current,
                    "wrapped": wrap_data_key(vault.class_keys[cls][current], dek,
                                             customer_id=r.customer_id, cls=cls,
                                             version=current)})
                done += 1
    return done


async def _holders_acknowledged(db: Database, cls: str, version: int) -> bool:
    """Whether every node holding `cls` has applied the grant of `version`."""
    grants = TABLES["key_grants"]
    label = _label(cls, version)
    async with db.read() as conn:
        holders = [r.node_id for r in await conn.execute(
            select(grants.c.node_id).join(nodes, nodes.c.id == grants.c.node_id)
            .where(grants.c.label.like(f"class:{cls}:%"), nodes.c.revoked_at.is_(None))
            .distinct())]
        for node_id in holders:
            seq = (await conn.execute(select(sync_rows.c.seq).where(
                sync_rows.c.tbl == "key_grants",
                sync_rows.c.row_id == grant_id(node_id, label)))).scalar()
            if seq is None:
                return False
            acked = parse_cursor((await peer_state(db, node_id))["pushed"])[0]
            if acked < seq:
                return False
    return True


async def retire_step(db: Database, hq_node_id: str) -> list[str]:
    """Destroy older class key versions that nothing needs any more."""
    vault = db.vault
    if vault is None:
        return []
    t, grants = TABLES["data_keys"], TABLES["key_grants"]
    retired: list[str] = []
    for cls in CLASSES:
        current = vault.current.get(cls)
        if current is None:
            continue
        old = [v for v in vault.class_keys.get(cls, {}) if v < current]
        if not old:
            continue
        async with db.read() as conn:
            left = (await conn.execute(select(t.c.id).where(
                t.c.cls == cls, t.c.key_version < current).limit(1))).first()
        if left is not None or not await _holders_acknowledged(db, cls, current):
            continue
        labels = [_label(cls, v) for v in old]
        async with db.admin() as conn:
            await conn.execute(delete(node_meta).where(
                node_meta.c.key.in_([f"fkey:{label}" for label in labels])))
        async with db.write(hq_node_id, None) as uow:
            stale = [r.id for r in await uow.conn.execute(
                select(grants.c.id).where(grants.c.label.in_(labels)))]
            for gid in stale:
                await uow.delete("key_grants", gid)
            await audit.append_for(uow, hq_node_id, None, "key_retired",
                                   detail={"class": cls, "versions": sorted(old)})
        for v in old:
            del vault.class_keys[cls][v]
        retired += labels
    return retired


async def reencrypt_step(db: Database, hq_node_id: str) -> int:
    """Re-encrypt one batch of values sealed under a class their field no longer has."""
    vault = db.vault
    if vault is None:
        return 0
    done = 0
    for table, columns in vault.policy.fields.items():
        t = TABLES[table]
        for column, cls in columns.items():
            if not vault.holds(cls):
                continue
            c = t.c[column]
            last = ""
            while True:
                # The class letter follows the marker: a prefix match finds what is left.
                async with db.write(hq_node_id, None) as uow:
                    rows = (await uow.conn.execute(select(t).where(
                        t.c.id > last, c.like(f"{MARKER}%"),
                        ~c.like(f"{MARKER}{CLASS_CODES[cls]}%"))
                        .order_by(t.c.id).limit(BATCH))).all()
                    for r in rows:
                        row = dict(r._mapping)
                        customer = customer_of(table, row)
                        if customer is None:
                            continue
                        opened = await vault.open_rows(uow.conn, table, [(customer, row)],
                                                       frozenset({cls}))
                        if not opened:  # its data key is gone (erased): nothing to keep
                            continue
                        sealed = {column: row[column]}
                        created = await vault.seal_rows(uow.conn, table,
                                                        [(row["id"], customer, sealed)])
                        if created:
                            await uow.insert_many("data_keys", created)
                        await uow.reseal(table, row["id"], column, sealed[column])
                        done += 1
                if len(rows) < BATCH or done:
                    break
                last = rows[-1].id
            if done:
                return done
    return done


async def grant_step(db: Database, hq_node_id: str) -> int:
    """Grant each enrolled branch the classes its users' roles now read."""
    vault = db.vault
    if vault is None:
        return 0
    users, grants = TABLES["users"], TABLES["key_grants"]
    granted = 0
    async with db.read() as conn:
        branches = (await conn.execute(select(nodes).where(
            nodes.c.kind == "branch", nodes.c.revoked_at.is_(None),
            nodes.c.box_public_key.is_not(None)))).all()
        roles = {b.id: {r.role for r in await conn.execute(select(users.c.role).where(
            users.c.branch == b.branch, users.c.active.is_(True)))} for b in branches}
        held = {b.id: {r.label for r in await conn.execute(select(grants.c.label).where(
            grants.c.node_id == b.id))} for b in branches}
    for b in branches:
        needed = set().union(*(vault.readable(role) for role in roles[b.id]))
        missing = sorted(cls for cls in needed if vault.holds(cls)
                         and _label(cls, vault.current[cls]) not in held[b.id])
        if not missing:
            continue
        wrapped = grants_for(vault, b.box_public_key, missing)
        await record_grants(db, hq_node_id, b.id, b.branch,
                            {k: v for k, v in wrapped.items() if k not in held[b.id]})
        granted += len(missing)
    return granted


async def maintain(db: Database, hq_node_id: str, *, until_idle: bool = True
                   ) -> dict[str, Any]:
    """Run the key jobs: one batch each, or (`until_idle`) until nothing is left."""
    if db.vault is None:
        raise NodeError("key jobs run at headquarters, with its root key")
    async with db.read() as conn:
        await db.vault.refresh_policy(conn)
    totals: dict[str, Any] = {"granted": 0, "reencrypted": 0, "rewrapped": 0, "retired": []}
    while True:
        granted = await grant_step(db, hq_node_id)
        reencrypted = await reencrypt_step(db, hq_node_id)
        rewrapped = await rewrap_step(db, hq_node_id)
        retired = await retire_step(db, hq_node_id)
        totals["granted"] += granted
        totals["reencrypted"] += reencrypted
        totals["rewrapped"] += rewrapped
        totals["retired"] += retired
        if not until_idle or not (granted or reencrypted or rewrapped or retired):
            return totals


async def pending(db: Database) -> dict[str, Any]:
    """What the key jobs still have to do (for `keys status` and health)."""
    vault = db.vault
    if vault is None:
        return {}
    t = TABLES["data_keys"]
    out: dict[str, Any] = {"rewrap": 0, "reencrypt": 0, "versions": {}}
    async with db.read() as conn:
        for cls in CLASSES:
            current = vault.current.get(cls)
            if current is None:
                continue
            out["versions"][cls] = sorted(vault.class_keys[cls])
            out["rewrap"] += len((await conn.execute(select(t.c.id).where(
                t.c.cls == cls, t.c.key_version < current))).all())
        for table, columns in vault.policy.fields.items():
            tt = TABLES[table]
            for column, cls in columns.items():
                c = tt.c[column]
                out["reencrypt"] += len((await conn.execute(select(tt.c.id).where(
                    c.like(f"{MARKER}%"), ~c.like(f"{MARKER}{CLASS_CODES[cls]}%")))).all())
    return out




def start_key_jobs(db: Database, hq_node_id: str, interval: float
                   ) -> asyncio.Task[None] | None:
    """At HQ with its keys, run the key jobs in the background until the server stops."""
    if db.vault is None or not db.hq_authority:
        return None

    async def loop() -> None:
        while True:
            try:
                done = await maintain(db, hq_node_id, until_idle=False)
            except (NodeError, SchemaError, CryptoError) as exc:
                log.warning("key jobs failed: %s", exc)
                done = {}
            busy = any(done.get(k) for k in ("granted", "reencrypted", "rewrapped"))
            await asyncio.sleep(0 if busy else interval)

    return asyncio.create_task(loop())
