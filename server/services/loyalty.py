"""Loyalty points (积分, domain.md §5): earned and redeemed at any store, online or
offline, never lost or counted twice.

The ledger (`point_entries`) travels with the store where points moved; the balance is
the customers `points` counter (per-node totals, summed). An entry is *posted* — added
to the counter — exactly once, in the same transaction that sets its `posted_at`: at
once by a node that holds the member's archive, otherwise by HQ when the entry reaches
it (`post_pending`). A store that does not hold the member cannot know the balance, so
its redemption is recorded unposted; one that takes a balance below zero is flagged for
HQ after sync, never clamped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import CUSTOMER_EDITORS, TABLES, UnitOfWork, clean_text, utcnow
from server.node import Node
from server.services.errors import ConflictError, FieldError, ForbiddenError
from server.services.principal import Principal
from server.services.records import customer_group, survivor_id, visible_customer

entries = TABLES["point_entries"]
customers = TABLES["customers"]

FEN_PER_POINT = 100
"""One point per yuan spent (积分按消费金额: 1 元 = 1 分)."""
MAX_POINTS = 10**9
HQ_STORE = "HQ"
"""The `branch` of ledger entries made at headquarters for a customer of no store."""
LOYALTY_STAFF = CUSTOMER_EDITORS
"""Roles that earn and redeem points at the counter, for any store's member."""
FLAG_READERS = frozenset({"general_manager", "sales_director", "finance",
                          "customer_service", "archive_clerk", "auditor"})
STALE_AFTER = timedelta(days=1)
"""An entry still unposted after this long is flagged for HQ."""


def points_for(amount_fen: int) -> int:
    """Points a purchase of `amount_fen` earns."""
    return amount_fen // FEN_PER_POINT


def store_of(node: Node, p: Principal, customer: dict[str, Any] | None = None) -> str:
    """The store where something happens: a branch node's own branch; at HQ the
    user's branch, else the customer's, else HQ."""
    if node.role != "hq" and node.settings.node.branch_code:
        return node.settings.node.branch_code
    return p.branch or (customer or {}).get("branch") or HQ_STORE


async def holder(node: Node, conn: AsyncConnection, member_id: str) -> str | None:
    """The surviving archive of `member_id` if this node holds it (HQ holds every
    customer, a branch its own), else None."""
    survivor = await survivor_id(conn, member_id)
    row = (await conn.execute(select(customers.c.branch).where(customers.c.id == survivor))
           ).first()
    if row is None:
        return None
    if node.role == "hq" or row.branch == node.settings.node.branch_code:
        return survivor
    return None


async def balance(conn: AsyncConnection, survivor: str) -> int:
    """The points balance of an archive: its counter plus those merged into it."""
    group = await customer_group(conn, survivor)
    rows = await conn.execute(select(customers.c.points).where(customers.c.id.in_(group)))
    return sum(int(r.points or 0) for r in rows)


async def post(uow: UnitOfWork, survivor: str, values: dict[str, Any], posted_by: str | None
               ) -> dict[str, Any]:
    """Write a ledger entry already posted to `survivor`'s counter, both in `uow`'s
    transaction (so neither exists without the other)."""
    return (await post_many(uow, survivor, [values], posted_by))[0]


async def post_many(uow: UnitOfWork, survivor: str, many: list[dict[str, Any]],
                    posted_by: str | None) -> list[dict[str, Any]]:
    """`post` for several entries of one member: their sum moves the counter once."""
    if not many:
        return []
    now = utcnow()
    rows = await uow.insert_many("point_entries", [
        {**values, "posted_at": now, "posted_by": posted_by} for values in many])
    await uow.increment("customers", survivor, "points", sum(int(v["delta"]) for v in many))
    return rows


def _entry(node: Node, p: Principal, member_id: str, delta: int, reason: str,
           note: str | None, at: datetime | None = None,
           customer: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"branch": store_of(node, p, customer), "member_id": member_id, "delta": delta,
            "reason": reason, "note": note, "user_id": p.id, "at": at or utcnow()}


async def change_points(node: Node, p: Principal, member_id: str, points: int, reason: str,
                        note: str | None) -> dict[str, Any]:
    """Earn (`reason` earn) or redeem points for a member at this store. Posted at once
    if this node holds the member (a redemption may not take the balance it knows below
    zero: ConflictError); otherwise recorded unposted for HQ to post."""
    if p.role not in LOYALTY_STAFF:
        raise ForbiddenError(f"a {p.role} cannot earn or redeem points")
    if reason not in ("earn", "redeem"):
        raise FieldError("reason", "must be earn or redeem")
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= MAX_POINTS:
        raise FieldError("points", "must be a positive whole number")
    text = clean_text("note", note) if note is not None else None
    delta = points if reason == "earn" else -points
    async with node.db.write(node.node_id, p.id) as uow:
        survivor = await holder(node, uow.conn, member_id)
        if survivor is None:
            row = await uow.insert("point_entries", _entry(node, p, member_id, delta, reason,
                                                           text))
            return {"entry": row, "posted": False, "balance": None,
                    "message": "this store does not hold the member's archive and cannot "
                               "know the balance; headquarters posts the entry when it "
                               "arrives there"}
        known = await balance(uow.conn, survivor)
        if known + delta < 0:
            raise ConflictError(f"insufficient points: the balance is {known}")
        customer = await uow.get("customers", survivor)
        row = await post(uow, survivor, _entry(node, p, member_id, delta, reason, text,
                                               customer=customer), p.id)
        return {"entry": row, "posted": True, "balance": known + delta,
                "message": "posted to the member's balance"}


async def post_pending(node: Node) -> int:
    """At HQ, post every unposted ledger entry whose member is known here, exactly once
    (each one re-checked inside the write transaction that posts it, so concurrent or
    repeated runs never double a delta). Entries of unknown members stay unposted (see
    `flags`). Returns how many were posted; a branch node posts nothing."""
    if node.role != "hq":
        return 0
    async with node.db.read() as conn:
        ids = [r.id for r in await conn.execute(
            select(entries.c.id).where(entries.c.posted_at.is_(None)).order_by(entries.c.id))]
    posted = 0
    for i in range(0, len(ids), 200):
        async with node.db.write(node.node_id, None) as uow:
            rows = (await uow.conn.execute(select(entries).where(
                entries.c.id.in_(ids[i:i + 200]), entries.c.posted_at.is_(None)))).mappings()
            for row in list(rows):
                survivor = await holder(node, uow.conn, row["member_id"])
                if survivor is None:
                    continue
                await uow.increment("customers", survivor, "points", int(row["delta"]))
                # No user posts it: `posted_by` names the HQ node that did.
                await uow.update("point_entries", row["id"],
                                 {"posted_at": utcnow(), "posted_by": node.node_id})
                posted += 1
    return posted


async def member_points(node: Node, p: Principal, customer_id: str, limit: int
                        ) -> dict[str, Any]:
    """A member's balance (over merged archives), what this node holds of the ledger
    still unposted, and the latest ledger entries this node holds."""
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        group = await customer_group(conn, customer["id"])
        total = await balance(conn, customer["id"])
        rows = [dict(r) for r in (await conn.execute(
            select(entries).where(entries.c.member_id.in_(group))
            .order_by(entries.c.at.desc(), entries.c.id.desc()).limit(limit))).mappings()]
        unposted = (await conn.execute(select(entries.c.delta).where(
            entries.c.member_id.in_(group), entries.c.posted_at.is_(None)))).all()
    return {"customer_id": customer["id"], "balance": total,
            "unposted_delta": sum(int(r.delta) for r in unposted), "entries": rows}


async def flags(node: Node, p: Principal, limit: int = 500) -> dict[str, Any]:
    """For HQ: members whose balance is below zero (after sync; flagged, never
    clamped), entries unposted for more than a day, and entries whose member this node
    does not know."""
    if p.role not in FLAG_READERS or not p.hq_wide:
        raise ForbiddenError("loyalty flags are for headquarters staff")
    stale_before = utcnow() - STALE_AFTER
    async with node.db.read() as conn:
        # A group below zero has a member below zero: start from those.
        seeds = [r.id for r in await conn.execute(
            select(customers.c.id).where(customers.c.points < 0))]
        negative: dict[str, dict[str, Any]] = {}
        for seed in seeds:
            survivor = await survivor_id(conn, seed)
            if survivor in negative:
                continue
            total = await balance(conn, survivor)
            if total < 0:
                row = (await conn.execute(select(customers.c.name, customers.c.branch)
                                          .where(customers.c.id == survivor))).one()
                negative[survivor] = {"customer_id": survivor, "name": row.name,
                                      "branch": row.branch, "balance": total}
        pending = [dict(r) for r in (await conn.execute(
            select(entries).where(entries.c.posted_at.is_(None))
            .order_by(entries.c.at).limit(5000))).mappings()]
        unknown = [e for e in pending if await holder(node, conn, e["member_id"]) is None]
    stale = [e for e in pending if e["at"] < stale_before]
    return {"negative": sorted(negative.values(), key=lambda n: n["balance"])[:limit],
            "stale": stale[:limit], "unknown_members": unknown[:limit]}
