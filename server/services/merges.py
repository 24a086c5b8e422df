"""Duplicates and merges (客户合并), ownership collisions (撞单) decided by registration
time, and edits of a merged-away archive that the merge had not seen (sync/SPEC.md §16).

A merge keeps one archive (the survivor): the absorbed customer gets `merged_into`,
moves to the survivor's branch and keeps its own child rows, which every read of the
survivor shows (`records.customer_group`). Every field the merge decides is recorded as
a conflict row of policy `merge` whose id names the absorbed field's version, so a
version the merge had not seen (an edit made offline) is noticed later and never lost.
"""

from __future__ import annotations

import difflib
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from branches._client import after_sync
from schema import (
    SENSITIVE,
    TABLES,
    Database,
    UnitOfWork,
    Vault,
    local_day,
    node_meta,
    records,
    sync_cells,
    sync_rows,
    utcnow,
)
from schema._uow import jsonable
from server.node import Node
from server.services import audit as _audit
from server.services.errors import ConflictError, FieldError, ForbiddenError
from server.services.principal import Principal
from server.services.records import (
    customer_group,
    log_reads,
    show,
    survivor_id,
    visible_customer,
)
from server.services.scope import customer_scope

log = logging.getLogger("branchline.merges")
customers = TABLES["customers"]
users = TABLES["users"]

MERGE_NS = uuid.UUID("5b0f6f2e-8c1a-4c55-9d8e-2f4b1c7a9e31")
RULE_NODE = "00000000-0000-0000-0000-000000000000"
"""`node_id` of a collision merge: the rule made it, the same on every node."""
MERGERS = frozenset({"general_manager", "sales_director", "dept_manager", "archive_clerk"})
RESOLVERS = MERGERS | {"admin"}
REASONS = ("duplicate", "same_person", "collision", "other")
COPIED = ("enterprise_nature", "supervising_unit", "industry", "size", "address", "mobile",
          "phone", "email", "website", "id_number", "org_code", "bank_account", "birthday",
          "preferences", "notes", "referrer_customer_id", "referrer_user_id")
"""Fields an empty survivor takes from the absorbed archive."""
REVIEWED = ("name", *COPIED)
"""Fields whose every absorbed version the merge decides and records."""
FILLED = "merge: the survivor's empty field took the merged archive's value"
SAME = "merge: both archives hold this value"
KEPT = "merge: kept the survivor's value (chosen by the person who merged)"
COLLIDING = ("mobile",)
"""What makes two registrations one customer for the resolver. An ID number shared by
two archives is reported as a duplicate candidate (and by import), not merged."""
WATERMARK = "merges_seen_seq"
FULL_SCAN = 5000
_SEALED = object()
_HAN = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class How:
    """Who made a merge, and how a field that differs is recorded."""

    reason: str
    by: str | None
    node: str
    at: datetime
    open_differences: bool
    """An automatic merge leaves differing values open for review."""
    fill_sealed: bool = True
    """Whether to fill the survivor's empty confidential fields. Two nodes sealing the
    same plaintext write different ciphertexts, which would conflict; so automatic
    passes (which several nodes run) leave those fills to headquarters."""


def merge_id(absorbed: str) -> str:
    """The merge record of an absorbed customer: one per customer on every node."""
    return str(uuid.uuid5(MERGE_NS, absorbed))


def notice_id(absorbed: str) -> str:
    """The collision notice for an absorbed customer (the same on every node)."""
    return str(uuid.uuid5(MERGE_NS, f"collision|{absorbed}"))


def review_id(survivor: str, column: str, absorbed: str, version: tuple[int, str]) -> str:
    """The record of one decision: survivor, field, and the absorbed value's version."""
    return str(uuid.uuid5(MERGE_NS, f"review|{survivor}|{column}|{absorbed}|"
                                    f"{version[0]}|{version[1]}"))


# -- reading values -------------------------------------------------------------------

async def plaintext(conn: AsyncConnection, vault: Vault | None, rows: list[dict[str, Any]]
                    ) -> dict[str, dict[str, Any]]:
    """Copies of customer rows (by id) with the confidential values this node can open
    in plaintext; a value it cannot open reads as a marker that equals nothing."""
    copies = [dict(r) for r in rows]
    opened: dict[str, set[str]] = {}
    if vault is not None and copies:
        await vault.refresh_policy(conn)
        revealed = await vault.open_rows(conn, "customers", [(r["id"], r) for r in copies],
                                         frozenset(SENSITIVE["customers"].values()))
        opened = {row_id: set(cols) for _, row_id, cols in revealed}
    for r in copies:
        for c in SENSITIVE["customers"]:
            if r.get(c) is not None and c not in opened.get(r["id"], set()):
                r[c] = _SEALED
    return {r["id"]: r for r in copies}


async def same_value(conn: AsyncConnection, vault: Vault | None, column: str,
                     normalised: str) -> list[dict[str, Any]]:
    """Customers (merged or not) whose `column` (mobile, id_number) is `normalised`:
    found by the blind index, kept only if decrypting confirms it (the index is
    truncated and may collide). Nothing on a node without the index key."""
    if vault is None or vault.index_root is None:
        return []
    key = vault.index("customers", column, normalised)
    rows = [dict(r) for r in (await conn.execute(
        select(customers).where(customers.c[f"{column}_bidx"] == key))).mappings()]
    plain = await plaintext(conn, vault, rows)
    return [r for r in rows if plain[r["id"]].get(column) == normalised]


def name_key(name: str) -> str:
    """A name for comparison: NFC, case-folded, without spaces and punctuation."""
    text = unicodedata.normalize("NFC", name).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PZSC")


def _pinyin(name: str, keys: str | None) -> str | None:
    # search_keys is "name pinyin initials" for a Chinese name (schema.search_keys).
    if not keys or not _HAN.search(name):
        return None
    parts = keys.rsplit(" ", 2)
    return parts[1] if len(parts) == 3 and parts[1] else None


def name_match_key(name: str, keys: str | None) -> str:
    """A key equal for names `name_match` calls the same or homophones (import uses it
    to compare a batch with every customer at once)."""
    return _pinyin(name, keys) or name_key(name)


def name_match(a: str, a_keys: str | None, b: str, b_keys: str | None) -> str | None:
    """Why two names may be one customer: `same_name` (equal once normalised),
    `same_pinyin` (homophones: 张三 / 章三), `similar_name` (difflib ratio >= 0.8)."""
    ka, kb = name_key(a), name_key(b)
    if ka and ka == kb:
        return "same_name"
    pa = _pinyin(a, a_keys)
    if pa is not None and pa == _pinyin(b, b_keys):
        return "same_pinyin"
    m = difflib.SequenceMatcher(None, ka, kb)
    if m.real_quick_ratio() >= 0.8 and m.quick_ratio() >= 0.8 and m.ratio() >= 0.8:
        return "similar_name"
    return None


async def _versions(conn: AsyncConnection, row_id: str) -> dict[str, tuple[int, str]]:
    """The version (clock, origin) of each field of a customer ("*": the row stamp)."""
    base = (await conn.execute(select(sync_rows.c.clock, sync_rows.c.origin).where(
        sync_rows.c.tbl == "customers", sync_rows.c.row_id == row_id))).one()
    out = {"*": (int(base.clock), str(base.origin))}
    for c in await conn.execute(select(sync_cells.c.col, sync_cells.c.clock,
                                       sync_cells.c.origin).where(
            sync_cells.c.tbl == "customers", sync_cells.c.row_id == row_id)):
        out[c.col] = (int(c.clock), str(c.origin))
    return out


def _empty(value: Any) -> bool:
    return value is None or value == ""


async def _exists(conn: AsyncConnection, table: str, row_id: str) -> bool:
    return (await conn.execute(select(sync_rows.c.cl).where(
        sync_rows.c.tbl == table, sync_rows.c.row_id == row_id))).scalar() is not None


# -- merging --------------------------------------------------------------------------

async def _seal_for(uow: UnitOfWork, row_id: str, column: str, value: Any) -> Any:
    """A confidential value sealed for the survivor's row, so the record of a decision
    opens like the survivor's own values (a ciphertext is bound to its row)."""
    if column not in SENSITIVE["customers"] or uow.vault is None or value is None:
        return value
    holder = {column: value}
    created = await uow.vault.seal_rows(uow.conn, "customers", [(row_id, row_id, holder)])
    if created:
        await uow.insert_many("data_keys", created)
    return holder[column]


async def review(uow: UnitOfWork, survivor: dict[str, Any], absorbed: dict[str, Any],
                 how: How) -> int:
    """Decide every field of `absorbed` whose current version has no decision yet: an
    empty survivor field takes the value, an equal one needs nothing, a different one
    stays the survivor's and is recorded (open for review unless a person merged)."""
    conn = uow.conn
    plain = await plaintext(conn, uow.vault, [survivor, absorbed])
    s, b = plain[survivor["id"]], plain[absorbed["id"]]
    versions = await _versions(conn, absorbed["id"])
    decided: list[tuple[str, str, tuple[int, str], str]] = []
    fills: dict[str, Any] = {}
    for f in REVIEWED:
        value, mine = b.get(f), s.get(f)
        if _empty(value) or value is _SEALED or mine is _SEALED:
            continue  # nothing to decide, or this node cannot read it (another will)
        version = versions.get(f, versions["*"])
        rid = review_id(survivor["id"], f, absorbed["id"], version)
        if await _exists(conn, "conflicts", rid):
            continue
        if _empty(mine):
            if f in SENSITIVE["customers"] and not how.fill_sealed:
                continue  # headquarters decides it (it holds every merged customer)
            fills[f] = value
            decided.append((rid, f, version, "filled"))
        else:
            decided.append((rid, f, version, "same" if mine == value else "kept"))
    row = await uow.update("customers", survivor["id"], fills) if fills else survivor
    mine_versions = await _versions(conn, survivor["id"])
    for rid, f, version, outcome in decided:
        winner = mine_versions.get(f, mine_versions["*"])
        open_ = outcome == "kept" and how.open_differences
        note = {"filled": FILLED, "same": SAME, "kept": KEPT}[outcome]
        loser = None if outcome == "filled" else await _seal_for(uow, survivor["id"], f,
                                                                 b[f])
        await uow.insert("conflicts", {
            "id": rid, "table_name": "customers", "row_id": survivor["id"], "column_name": f,
            "customer_id": survivor["id"], "branch": row["branch"], "policy": "merge",
            "winner_value": jsonable(row[f]), "loser_value": jsonable(loser),
            "winner_node": winner[1], "loser_node": version[1], "winner_clock": winner[0],
            "loser_clock": version[0], "detected_by": uow.node_id,
            "status": "open" if open_ else "resolved",
            "resolved_by": None if open_ else how.by, "resolution": None if open_ else note})
    return len(decided)


async def absorb(uow: UnitOfWork, survivor: dict[str, Any], absorbed: dict[str, Any],
                 how: How) -> None:
    """Merge `absorbed` into `survivor` inside `uow`: the merge record, the redirect,
    the move to the survivor's branch (with customers merged into it before), tags and
    custom fields united, and every field decided (`review`)."""
    values = {"customer_id": absorbed["id"], "survivor_id": survivor["id"],
              "reason": how.reason, "merged_by": how.by, "node_id": how.node,
              "merged_at": how.at}
    mid = merge_id(absorbed["id"])
    if await uow.get("customer_merges", mid) is None:
        await uow.insert("customer_merges", {"id": mid, **values, "created_at": how.at,
                                             "updated_at": how.at})
    else:  # merged before, then released from a merge cycle: a new merge cycle
        await uow.update("customer_merges", mid, values,
                         new_cycle=frozenset(values) - {"customer_id"})
    changes: dict[str, Any] = {"merged_into": survivor["id"]}
    if absorbed["branch"] != survivor["branch"]:
        changes["branch"] = survivor["branch"]
        for other in (await customer_group(uow.conn, absorbed["id"]))[1:]:
            await uow.update("customers", other, {"branch": survivor["branch"]})
    await uow.update("customers", absorbed["id"], changes)
    extra: dict[str, Any] = {}
    tags = sorted(set(survivor["tags"] or ()) | set(absorbed["tags"] or ()))
    if tags != sorted(survivor["tags"] or ()):
        extra["tags"] = tags
    custom = {**(absorbed["custom"] or {}), **(survivor["custom"] or {})}
    if custom != (survivor["custom"] or {}):
        extra["custom"] = custom
    if extra:
        survivor = await uow.update("customers", survivor["id"], extra)
    await review(uow, survivor, absorbed, how)


async def merge_customers(node: Node, p: Principal, survivor: str, absorbed: str,
                          reason: str) -> str:
    """Merge customer `absorbed` into `survivor` in one transaction; the survivor's id.
    Managers and archive clerks merge customers they see; only headquarters-wide
    users merge customers of different branches."""
    if p.role not in MERGERS:
        raise ForbiddenError(f"a {p.role} cannot merge customer archives")
    if reason not in REASONS or reason == "collision":
        raise FieldError("reason", "must be duplicate, same_person or other")
    async with node.db.write(node.node_id, p.id) as uow:
        kept = await visible_customer(uow.conn, p, survivor)
        gone = await visible_customer(uow.conn, p, absorbed, follow_merges=False)
        if gone["merged_into"] is not None:
            raise ConflictError(f"customer {absorbed} was already merged into "
                                f"{await survivor_id(uow.conn, absorbed)}")
        if gone["id"] == kept["id"]:
            raise FieldError("absorbed_id", "is the surviving archive itself")
        if gone["branch"] != kept["branch"] and not p.hq_wide:
            raise ForbiddenError("only headquarters merges customers of different branches")
        await absorb(uow, kept, gone, How(reason, p.id, node.node_id, utcnow(), False))
        await _audit.append(uow, node, p, "merge", object_table="customers",
                            object_id=gone["id"], customer_id=kept["id"],
                            detail={"survivor_id": kept["id"], "absorbed_id": gone["id"],
                                    "reason": reason})
        return str(kept["id"])


# -- collisions (撞单) -----------------------------------------------------------------

async def _display(conn: AsyncConnection, user_id: str | None) -> str:
    if user_id is None:
        return "未指定负责人"
    name = (await conn.execute(select(users.c.display_name).where(users.c.id == user_id))
            ).scalar()
    return str(name or "其他同事")


async def _collide(uow: UnitOfWork, first: dict[str, Any], later: dict[str, Any],
                   column: str) -> None:
    """The later registration of one customer joins the earliest; its rep is told.
    Every value written is derived from the two rows, so two nodes resolving the same
    collision write the same rows (ids by uuid5) and converge without conflicts."""
    at = later["registered_at"]
    await absorb(uow, first, later, How("collision", None, RULE_NODE, at, True,
                                        fill_sealed=uow.hq_authority))
    nid = notice_id(later["id"])
    if await _exists(uow.conn, "notices", nid):
        return
    what = "手机" if column == "mobile" else "证件号"
    shown = later.get(f"{column}_mask") or "****"
    when = local_day(first["registered_at"]).isoformat()
    await uow.insert("notices", {
        "id": nid, "branch": later["branch"], "user_id": later["owner_id"],
        "kind": "collision", "subject_id": first["id"], "created_at": at, "updated_at": at,
        "message": (f"撞单提醒: 您登记的客户「{later['name']}」({what} {shown}) 已由"
                    f"{await _display(uow.conn, first['owner_id'])}于{when}"
                    f"在{first['branch'] or '总部'}先行登记。按登记时间先后归属先登记者, "
                    "您的登记已并入该档案。")})


async def _collisions(uow: UnitOfWork, changed: list[str] | None) -> int:
    """Merge live customers sharing a mobile number (confirmed by decrypting): the
    earliest registration (registered_at, then id) survives."""
    conn, vault = uow.conn, uow.vault
    if vault is None:
        return 0
    await vault.refresh_policy(conn)
    merged = 0
    live = customers.c.merged_into.is_(None)
    for column in COLLIDING:
        bidx = customers.c[f"{column}_bidx"]
        query = select(bidx).where(live, bidx.is_not(None)).group_by(bidx).having(
            func.count() > 1)
        if changed is not None:
            wanted: set[str] = set()
            for i in range(0, len(changed), 500):
                wanted |= {r[0] for r in await conn.execute(select(bidx).where(
                    customers.c.id.in_(changed[i:i + 500]), bidx.is_not(None), live))}
            if not wanted:
                continue
            query = query.where(bidx.in_(sorted(wanted)))
        # The index is 16 bits wide: at 100,000 customers most buckets hold several
        # different numbers. So candidates are read a few hundred buckets at a time, with
        # only the column to confirm, and opened in one call (not a query and a key
        # load per bucket: that took a minute at 100,000).
        buckets = [r[0] for r in await conn.execute(query.order_by(bidx))]
        groups: list[list[str]] = []
        for i in range(0, len(buckets), _BUCKETS_PER_READ):
            groups += await _same_plaintext(conn, vault, column,
                                            buckets[i:i + _BUCKETS_PER_READ])
        for ids in groups:
            rows = {r["id"]: dict(r) for r in (await conn.execute(
                select(customers).where(customers.c.id.in_(ids), live))).mappings()}
            group = sorted(rows.values(), key=lambda r: (r["registered_at"], r["id"]))
            for later in group[1:]:
                first = await uow.get("customers", group[0]["id"])
                assert first is not None
                await _collide(uow, first, later, column)
                merged += 1
    return merged


_BUCKETS_PER_READ = 500


async def _same_plaintext(conn: AsyncConnection, vault: Vault, column: str,
                          buckets: list[str]) -> list[list[str]]:
    """Among live customers in these blind-index `buckets`: the ids of each set of two or
    more whose `column` decrypts to the same value. A value this node cannot open
    takes part in nothing."""
    bidx = customers.c[f"{column}_bidx"]
    mask = f"{column}_mask"
    rows = [(r.id, {"id": r.id, column: r[1], mask: r[2]}, r[3]) for r in records(
        await conn.execute(select(customers.c.id, customers.c[column], customers.c[mask],
                                  bidx).where(customers.c.merged_into.is_(None),
                                              bidx.in_(buckets))))]
    revealed = await vault.open_rows(conn, "customers", [(i, v) for i, v, _ in rows],
                                     frozenset(SENSITIVE["customers"].values()))
    opened = {row_id for _, row_id, cols in revealed if column in cols}
    same: dict[tuple[str, str], list[str]] = {}
    for row_id, values, bucket in rows:
        value = values[column]
        if row_id in opened and isinstance(value, str):
            same.setdefault((bucket, value), []).append(row_id)
    return [ids for _, ids in sorted(same.items()) if len(ids) > 1]


async def _reconcile(uow: UnitOfWork, changed: list[str] | None) -> int:
    """Decide the versions of merged-away customers no merge has seen (edits made
    offline by a node that had not seen the merge), and undo a merge cycle (two
    nodes merged two customers each into the other): its earliest one survives."""
    conn = uow.conn
    query = select(customers).where(customers.c.merged_into.is_not(None))
    rows: list[dict[str, Any]] = []
    if changed is None:
        rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    else:
        for i in range(0, len(changed), 500):
            rows += [dict(r) for r in (await conn.execute(
                query.where(customers.c.id.in_(changed[i:i + 500])))).mappings()]
    decided = 0
    for gone in rows:
        target = await survivor_id(conn, gone["id"])
        if target == gone["id"]:
            await uow.update("customers", target, {"merged_into": None},
                             new_cycle=frozenset({"merged_into"}))
            continue
        kept = await uow.get("customers", target)
        if kept is None:
            continue
        if uow.hq_authority and gone["branch"] != kept["branch"]:
            gone = await uow.update("customers", gone["id"], {"branch": kept["branch"]})
        decided += await review(uow, kept, gone, How("collision", None, uow.node_id,
                                                     utcnow(), True,
                                                     fill_sealed=uow.hq_authority))
    return decided


async def _watermark(conn: AsyncConnection) -> int:
    value = (await conn.execute(select(node_meta.c.value).where(
        node_meta.c.key == WATERMARK))).scalar()
    return int(value) if value else 0


async def _set_watermark(conn: AsyncConnection, seq: int) -> None:
    if await conn.scalar(select(node_meta.c.key).where(node_meta.c.key == WATERMARK)):
        await conn.execute(update(node_meta).where(node_meta.c.key == WATERMARK)
                           .values(value=str(seq)))
    else:
        await conn.execute(node_meta.insert(), [{"key": WATERMARK, "value": str(seq)}])


async def settle(db: Database, node_id: str, *, full: bool = False,
                 settled_upstream: int = 0) -> tuple[int, int]:
    """Resolve collisions and decide unseen versions of merged customers among the
    customers changed since the last pass (all of them with `full`), in one
    transaction; (customers merged, decisions recorded).

    `settled_upstream`: changes up to this local sequence number were taken by the
    upstream in a push round it settled (SPEC §16): what it decided comes back in the
    pull, so they are not examined again here; only what changed after them is."""
    async with db.write(node_id, None) as uow:
        since = 0 if full else max(await _watermark(uow.conn), settled_upstream)
        changed: list[str] | None = None
        if since:
            changed = [r[0] for r in await uow.conn.execute(select(sync_rows.c.row_id).where(
                sync_rows.c.tbl == "customers", sync_rows.c.seq > since,
                sync_rows.c.cl % 2 == 1))]
            if len(changed) > FULL_SCAN:
                changed = None
        merged = decided = 0
        if changed is None or changed:
            merged = await _collisions(uow, changed)
            decided = await _reconcile(uow, changed)
        await _set_watermark(uow.conn, uow.seq - 1)
    return merged, decided


async def settle_after_sync(db: Database, node_id: str, settled_upstream: int = 0) -> None:
    """The step after every applied sync (HQ after a push, a branch after a pull or a
    bundle). It never fails the sync: an error is logged and the next pass retries
    (the watermark did not move)."""
    try:
        await settle(db, node_id, settled_upstream=settled_upstream)
    except Exception:
        log.exception("resolving collisions and merges after a sync failed")


after_sync(settle_after_sync)


async def resolve_now(node: Node, p: Principal) -> tuple[int, int]:
    """Run the collision resolver over every customer of this node, on demand."""
    if p.role not in RESOLVERS:
        raise ForbiddenError("only headquarters staff and managers resolve collisions")
    return await settle(node.db, node.node_id, full=True)


# -- duplicate candidates -------------------------------------------------------------

async def duplicates(node: Node, p: Principal, customer_id: str, limit: int = 50
                     ) -> list[dict[str, Any]]:
    """Customers `p` sees that may be the same as `customer_id`, each with `by`:
    `mobile` / `id_number` (blind index, confirmed) and name reasons (`name_match`)."""
    audit: list[dict[str, Any]] = []
    async with node.db.read() as conn:
        me = await visible_customer(conn, p, customer_id)
        group = await customer_group(conn, me["id"])
        mine = (await plaintext(conn, node.db.vault, [me]))[me["id"]]
        found: dict[str, set[str]] = {}
        for column in ("mobile", "id_number"):
            value = mine.get(column)
            if isinstance(value, str):
                for r in await same_value(conn, node.db.vault, column, value):
                    found.setdefault(r["id"], set()).add(column)
        live = [customer_scope(p), customers.c.merged_into.is_(None),
                customers.c.id.not_in(group)]
        for c in await conn.execute(select(customers.c.id, customers.c.name,
                                           customers.c.search_keys).where(*live)):
            why = name_match(me["name"], me["search_keys"], c.name, c.search_keys)
            if why is not None:
                found.setdefault(c.id, set()).add(why)
        ranked = sorted(found, key=lambda i: (-len(found[i]), i))
        rows = [dict(r) for r in (await conn.execute(select(customers).where(
            *live, customers.c.id.in_(ranked[:limit * 2])))).mappings()]
        shown = await show(node, conn, p, "customers", rows, audit)
    await log_reads(node, p, audit)
    out = [{**r, "by": sorted(found[r["id"]])} for r in shown]
    return sorted(out, key=lambda r: (-len(r["by"]), r["id"]))[:limit]
