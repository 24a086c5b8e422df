"""Reading the audit log (domain.md §9): search it and verify every node's hash chain.

Entries replicate with their branch (`audit_log` travels like a branch's records), so
headquarters holds every node's chain and checks each one; a branch node checks its
own and its replicas'. Who reads: auditors, general managers and administrators; one
bound to a branch reads that branch's entries only. Entries never hold a customer's
values (`server/services/audit.py`), so reading them reveals no secret.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Text, cast, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import LOCAL_TZ, TABLES, chain_breaks
from server.node import Node
from server.services.errors import ForbiddenError
from server.services.principal import Principal
from server.services.records import page

audit_log = TABLES["audit_log"]

READERS = frozenset({"auditor", "general_manager", "admin"})
"""The roles that read the audit log."""

BATCH = 1000
"""Entries read per query while checking a chain: memory stays bounded however long."""

FILTERS = ("action", "actor_id", "actor", "customer_id", "node_id", "branch", "from", "to")

__all__ = ["READERS", "require_reader", "search", "search_log", "verify", "verify_log"]


def require_reader(p: Principal) -> None:
    """Refuse anyone but an auditor, general manager or administrator."""
    if p.role not in READERS:
        raise ForbiddenError("only auditors, general managers and administrators read the "
                             "audit log")


def _instant(value: datetime | date, *, end: bool) -> datetime:
    """A filter bound: a day means local midnight (the day after it, for `to`); a time
    without a zone is local time."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=LOCAL_TZ)
    return datetime.combine(value + timedelta(days=1 if end else 0), time(), LOCAL_TZ)


def _entries(conn: Connection, node_id: str) -> Iterator[Mapping[str, Any]]:
    """One node's entries in chain order, fetched in batches (keyset on seq, id: an
    entry repeated under one number is still read, and reported)."""
    last: tuple[int, str] | None = None
    while True:
        query = select(audit_log).where(audit_log.c.node_id == node_id)
        if last is not None:
            query = query.where(tuple_(audit_log.c.seq, audit_log.c.id) > last)
        batch = conn.execute(query.order_by(audit_log.c.seq, audit_log.c.id)
                             .limit(BATCH)).mappings().all()
        yield from (dict(r) for r in batch)
        if len(batch) < BATCH:
            return
        last = (int(batch[-1]["seq"]), str(batch[-1]["id"]))


def _check(conn: Connection, node_id: str) -> list[str]:
    return chain_breaks(_entries(conn, node_id))


async def verify(conn: AsyncConnection, branch: str | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Every node's chain checked: node id → {branch, entries, head_seq, breaks}. With
    `branch`, only the nodes whose entries carry that branch. Chains are read one node
    at a time, in batches."""
    query = select(audit_log.c.node_id, func.count().label("entries"),
                   func.max(audit_log.c.seq).label("head_seq"),
                   func.max(audit_log.c.branch).label("branch")).group_by(audit_log.c.node_id)
    if branch is not None:
        query = query.where(audit_log.c.branch == branch)
    heads = (await conn.execute(query.order_by(audit_log.c.node_id))).all()
    out: dict[str, dict[str, Any]] = {}
    for head in heads:
        node_id = str(head.node_id)
        # chain_breaks is synchronous; run_sync hands it a synchronous view of this
        # same connection, so the batches stream through it without a second copy.
        breaks = await conn.run_sync(_check, node_id)
        out[node_id] = {"branch": head.branch, "entries": int(head.entries),
                        "head_seq": int(head.head_seq), "breaks": breaks}
    return out


async def verify_log(node: Node, p: Principal) -> list[dict[str, Any]]:
    """The chains `p` may check, each with `intact` and its breaks."""
    require_reader(p)
    async with node.db.read() as conn:
        chains = await verify(conn, p.branch)
    return [{"node_id": node_id, **chain, "intact": not chain["breaks"]}
            for node_id, chain in chains.items()]


async def search(conn: AsyncConnection, p: Principal, filters: Mapping[str, Any],
                 cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Entries `p` may read, newest first, one page. Filters (None: any): action,
    actor_id, actor (username), customer_id (also views that listed it among several),
    node_id, branch, from / to (instants, or local days)."""
    require_reader(p)
    query = select(audit_log)
    if p.branch is not None:
        query = query.where(audit_log.c.branch == p.branch)
    for key in ("action", "actor_id", "node_id", "branch"):
        if filters.get(key) is not None:
            query = query.where(audit_log.c[key] == filters[key])
    if filters.get("actor") is not None:
        query = query.where(audit_log.c.actor == str(filters["actor"]).strip().lower())
    if filters.get("customer_id") is not None:
        cid = str(filters["customer_id"])
        query = query.where(or_(audit_log.c.customer_id == cid,
                                cast(audit_log.c.detail, Text).contains(cid, autoescape=True)))
    if filters.get("from") is not None:
        query = query.where(audit_log.c.at >= _instant(filters["from"], end=False))
    if filters.get("to") is not None:
        bound = filters["to"]
        end = _instant(bound, end=True)
        # A day ends where the next begins; an instant is included.
        query = query.where(audit_log.c.at <= end if isinstance(bound, datetime)
                            else audit_log.c.at < end)
    # UUIDv7 ids start with their creation time: id order is time order, and a stable
    # cursor for entries that share a millisecond.
    return await page(conn, query, audit_log.c.id, cursor, limit)


async def search_log(node: Node, p: Principal, filters: Mapping[str, Any],
                     cursor: str | None, limit: int
                     ) -> tuple[list[dict[str, Any]], str | None]:
    """`search` on a read connection of its own."""
    require_reader(p)
    async with node.db.read() as conn:
        return await search(conn, p, filters, cursor, limit)
