"""Householding (归户, domain.md §10): live customer archives that belong to one person or
organisation — the same resident ID number, unified social credit code or mobile — with
their combined purchases.

The blind indexes (`*_bidx`) are deliberately truncated (16 bits, crypto/_fields.py):
equal indexes only name candidates. SQL groups the candidates (GROUP BY the index,
HAVING more than one archive), and the node confirms each group by decrypting the
members' values with its own keys; nothing decrypted ever leaves this module, a response
carries customer ids and names only. A value this node cannot open (it holds no key of
that class) is counted as `unverifiable`, never guessed.

Pages walk the candidate groups in index order (kinds in the order of `KINDS`); a page
stops at `limit` households or after examining `BUCKET_BUDGET` candidate groups, so a
page may hold fewer than `limit` households while `next_cursor` is still set.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.node import Node
from server.services.analytics import (
    Window,
    customers,
    live,
    purchases,
    require_analyst,
    window,
)
from server.services.errors import FieldError
from server.services.principal import Principal
from server.services.scope import customer_scope

KINDS = ("id_number", "org_code", "mobile")
BATCH = 200
"""Candidate groups decrypted per round trip."""
BUCKET_BUDGET = 2_000
"""Candidate groups examined per page at most (bounds the decryption work of a call)."""
HOUSEHOLD_NS = uuid.UUID("0b6c44f5-8e0b-4d39-9a55-6d1f0e2c7a31")


def _parse(cursor: str | None, kinds: tuple[str, ...]) -> tuple[int, str | None]:
    if cursor is None:
        return 0, None
    kind, colon, key = cursor.partition(":")
    if kind not in kinds or not colon:
        raise FieldError("cursor", "not a cursor of this list")
    return kinds.index(kind), key or None


async def _confirm(node: Node, conn: AsyncConnection, kind: str, rows: list[dict[str, Any]]
                   ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], int]:
    """Candidate rows grouped by (bucket, plaintext value); and how many could not be
    opened on this node."""
    vault = node.db.vault
    if vault is None:
        return {}, len(rows)
    await vault.refresh_policy(conn)
    policy = vault.policy.columns("customers")
    wanted = frozenset({policy[kind]}) if kind in policy else frozenset()
    copies = [{**{c: None for c in policy}, "id": r["id"], kind: r["value"],
               f"{kind}_mask": None} for r in rows]
    revealed = await vault.open_rows(conn, "customers", [(c["id"], c) for c in copies], wanted)
    opened = {row_id for _, row_id, cols in revealed if kind in cols}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r, c in zip(rows, copies, strict=True):
        if r["id"] in opened and isinstance(c[kind], str):
            groups.setdefault((r["bucket"], c[kind]), []).append(r)
    return groups, sum(1 for r in rows if r["id"] not in opened)


async def _absorbed(conn: AsyncConnection, ids: list[str]) -> dict[str, str]:
    """Each of `ids` to itself, and every archive merged into one of them to it."""
    root = {i: i for i in ids}
    frontier = list(ids)
    while frontier:
        found = []
        for i in range(0, len(frontier), 500):
            found += [r for r in await conn.execute(select(
                customers.c.id, customers.c.merged_into).where(
                customers.c.merged_into.in_(frontier[i:i + 500]))) if r.id not in root]
        for r in found:
            root[r.id] = root[r.merged_into]
        frontier = [r.id for r in found]
    return root


async def _revenue(conn: AsyncConnection, ids: list[str], w: Window
                   ) -> dict[str, tuple[int, int]]:
    """(amount in the window, amount before as_of) per customer, merged archives in."""
    root = await _absorbed(conn, ids)
    every = list(root)
    recent = purchases.c.purchased_at >= w.since
    out: dict[str, tuple[int, int]] = {}
    for i in range(0, len(every), 500):
        for r in await conn.execute(select(
                purchases.c.customer_id,
                cast(func.sum(case((recent, purchases.c.amount_fen), else_=0)),
                     BigInteger).label("m"),
                cast(func.sum(purchases.c.amount_fen), BigInteger).label("total"),
        ).where(purchases.c.customer_id.in_(every[i:i + 500]),
                purchases.c.purchased_at < w.as_of).group_by(purchases.c.customer_id)):
            m, t = out.get(root[r.customer_id], (0, 0))
            out[root[r.customer_id]] = (m + int(r.m or 0), t + int(r.total or 0))
    return out


async def households(node: Node, p: Principal, *, kind: str | None = None,
                     window_days: int = 365, as_of: datetime | None = None,
                     cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """Confirmed households among the customers `p` may see (see the module docstring)."""
    require_analyst(p)
    w = window(as_of, window_days)
    if kind is not None and kind not in KINDS:
        raise FieldError("kind", f"must be one of {', '.join(KINDS)}")
    kinds = (kind,) if kind is not None else KINDS
    start, key_after = _parse(cursor, kinds)
    found: list[dict[str, Any]] = []
    examined = unverifiable = 0
    next_at: str | None = None
    async with node.db.read() as conn:
        for k_index in range(start, len(kinds)):
            k = kinds[k_index]
            bidx = customers.c[f"{k}_bidx"]
            base = (live(), customer_scope(p), bidx.is_not(None))
            after = key_after if k_index == start else None
            while next_at is None:
                keys_q = select(bidx).where(*base).group_by(bidx).having(
                    func.count() > 1).order_by(bidx).limit(BATCH)
                if after is not None:
                    keys_q = keys_q.where(bidx > after)
                keys = [r[0] for r in await conn.execute(keys_q)]
                if not keys:
                    break
                rows = [dict(r._mapping) for r in await conn.execute(select(
                    customers.c.id, customers.c.name, customers.c.branch,
                    bidx.label("bucket"), customers.c[k].label("value")).where(
                    *base, bidx.in_(keys)).order_by(customers.c.id))]
                groups, lost = await _confirm(node, conn, k, rows)
                unverifiable += lost
                by_bucket: dict[str, list[list[dict[str, Any]]]] = {}
                for (bucket, _), members in sorted(groups.items()):
                    if len(members) > 1:
                        by_bucket.setdefault(bucket, []).append(members)
                for key in keys:
                    found_here = by_bucket.get(key, [])
                    if found and len(found) + len(found_here) > limit:
                        next_at = f"{k}:{after or ''}"
                        break
                    found += [{"kind": k, "members": m} for m in found_here]
                    examined += 1
                    after = key
                    if len(found) >= limit or examined >= BUCKET_BUDGET:
                        next_at = f"{k}:{key}"
                        break
            if next_at is not None:
                break
        ids = [m["id"] for h in found for m in h["members"]]
        revenue = await _revenue(conn, ids, w) if ids else {}
    items = []
    for h in found:
        members = h["members"]
        member_ids = sorted(m["id"] for m in members)
        items.append({
            "household_id": str(uuid.uuid5(HOUSEHOLD_NS, f"{h['kind']}|{'|'.join(member_ids)}")),
            "kind": h["kind"], "customer_ids": member_ids, "count": len(members),
            "names": sorted({m["name"] for m in members}),
            "branches": sorted({m["branch"] for m in members if m["branch"]}),
            "revenue_fen": sum(revenue.get(i, (0, 0))[0] for i in member_ids),
            "lifetime_fen": sum(revenue.get(i, (0, 0))[1] for i in member_ids),
        })
    return {"as_of": w.as_of, "window_days": w.days, "items": items,
            "candidate_groups_examined": examined, "unverifiable": unverifiable,
            "next_cursor": next_at}
