"""Retention, destruction and consent (domain.md §9).

An archive is kept `RETENTION_YEARS` after the relationship ends: the customers service
derives `retention_until` from `relationship_ended_at` in the same unit of work
(`derived`). Destroying an archive goes requested → reviewed (the department head) →
erased (the general manager approves at HQ, which crypto-erases it through
`erasure.erase_in` in the same transaction and links the destruction record); a decline
at either step ends the request. Consent flags stamp `consent_at` when they change, and
`consent_clause` is what exports and campaign lists filter with. `subject_export` is the
data-subject access copy of everything held about one customer.

This module imports `records` and `customers` as modules (never names from them):
`customers` imports this one for `derived`, and module imports survive the cycle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, true

from schema import RETENTION_YEARS, TABLES, utcnow
from server.node import Node
from server.services import audit, erasure, records
from server.services import customers as customers_service
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.scope import customer_scope

customers = TABLES["customers"]
requests = TABLES["destruction_requests"]
contacts = TABLES["contacts"]

REQUESTERS = frozenset({"archive_clerk", "dept_manager", "general_manager"})
"""Roles that list archives due for destruction and ask for a destruction."""
VIEWERS = REQUESTERS | {"auditor"}
"""Roles that read destruction requests (auditors review who decided what)."""
SUBJECT_EXPORTERS = frozenset({"general_manager", "sales_director", "dept_manager",
                               "customer_service", "sales_rep", "archive_clerk"})
"""Roles that answer a customer's request for a copy of their data: those who keep
the relationship (an auditor or administrator reviews the system, not customers)."""
BASES = ("retention_expired", "customer_request")
OPEN = ("requested", "reviewed")
PURPOSES = ("marketing", "sharing", "internal")
CONSENTS = ("consent_marketing", "consent_sharing")
CHILD_TABLES = ("visits", "complaints", "tickets", "purchases")

__all__ = ["consent_clause", "decide_approval", "decide_review", "derived", "due",
           "get_request", "list_requests", "request_destruction", "retention_end",
           "subject_export"]


def retention_end(ended: datetime) -> datetime:
    """The end of an archive's retention: `RETENTION_YEARS` after the relationship
    ended, on the same calendar day (29 February → 28 February)."""
    try:
        return ended.replace(year=ended.year + RETENTION_YEARS)
    except ValueError:
        return ended.replace(year=ended.year + RETENTION_YEARS, day=28)


def derived(old: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    """Columns the retention and consent rules derive from a new archive (`old` None)
    or a change to one, to be written in the same unit of work:

    - `relationship_ended_at` set or changed → `retention_until` 10 years later
      (cleared with it);
    - `lifecycle_stage` moved to `lost` with no end date → the relationship ends now;
    - a consent flag given or changed → `consent_at` now.
    """
    now = utcnow()
    out: dict[str, Any] = {}
    ended_before = old.get("relationship_ended_at") if old is not None else None
    if (changes.get("lifecycle_stage") == "lost" and changes.get("relationship_ended_at") is None
            and ended_before is None):
        out["relationship_ended_at"] = now
    if "relationship_ended_at" in changes or out:
        ended = out.get("relationship_ended_at", changes.get("relationship_ended_at"))
        if ended is not None and (not isinstance(ended, datetime) or ended.tzinfo is None):
            raise FieldError("relationship_ended_at", "must be a time with a time zone")
        out["retention_until"] = retention_end(ended) if ended is not None else None
    for column in CONSENTS:
        if column in changes and bool(changes[column]) != bool((old or {}).get(column)):
            out["consent_at"] = now
    return out


def consent_clause(purpose: str) -> ColumnElement[bool]:
    """A WHERE clause on `customers` honouring consent for `purpose` (domain.md §9,
    privacy law): `marketing` (campaign lists, marketing exports) keeps customers who
    agreed to marketing, `sharing` (data given to third parties) those who agreed to
    sharing, `internal` (the company's own business use) everyone. Exports and
    campaigns add it to their query: `select(customers).where(scope, consent_clause(p))`."""
    if purpose == "marketing":
        return customers.c.consent_marketing.is_(True)
    if purpose == "sharing":
        return customers.c.consent_sharing.is_(True)
    if purpose == "internal":
        return true()
    raise FieldError("purpose", f"must be one of {', '.join(PURPOSES)}")


def _require(p: Principal, roles: frozenset[str], what: str) -> None:
    if p.role not in roles:
        raise ForbiddenError(f"a {p.role} does not {what}")


# -- retention --------------------------------------------------------------------------

async def due(node: Node, p: Principal, cursor: str | None, limit: int
              ) -> tuple[list[dict[str, Any]], str | None]:
    """Archives in `p`'s scope whose retention has run out, with the status of an open
    or finished destruction request (None: nobody asked yet); newest id first."""
    _require(p, REQUESTERS, "review retention")
    latest = (select(requests.c.status).where(requests.c.customer_id == customers.c.id)
              .order_by(requests.c.requested_at.desc()).limit(1).scalar_subquery())
    query = select(customers.c.id, customers.c.name, customers.c.branch,
                   customers.c.department, customers.c.lifecycle_stage,
                   customers.c.relationship_ended_at, customers.c.retention_until,
                   latest.label("destruction_status")).where(
        customer_scope(p), customers.c.merged_into.is_(None),
        customers.c.retention_until.is_not(None), customers.c.retention_until < utcnow())
    async with node.db.read() as conn:
        return await records.page(conn, query, customers.c.id, cursor, limit)


# -- destruction ------------------------------------------------------------------------

async def request_destruction(node: Node, p: Principal, customer_id: str, basis: str,
                              reason: str) -> dict[str, Any]:
    """Ask for an archive's destruction: `retention_expired` once its retention has run
    out (409 before), `customer_request` when the customer asks for erasure (privacy
    law). One open request per archive."""
    _require(p, REQUESTERS, "ask for destructions")
    if basis not in BASES:
        raise FieldError("basis", f"must be one of {', '.join(BASES)}")
    text = reason.strip()
    if not text:
        raise FieldError("reason", "must not be empty")
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await records.visible_customer(uow.conn, p, customer_id)
        if basis == "retention_expired" and (customer["retention_until"] is None
                                             or customer["retention_until"] > utcnow()):
            raise ConflictError("the archive's retention has not run out"
                                + ("" if customer["retention_until"] is None else
                                   f" (kept until {customer['retention_until']:%Y-%m-%d})"))
        existing = (await uow.conn.execute(select(requests.c.status).where(
            requests.c.customer_id == customer["id"],
            requests.c.status.in_((*OPEN, "erased"))))).scalars().first()
        if existing is not None:
            raise ConflictError(f"the archive already has a destruction request ({existing})")
        row = await uow.insert("destruction_requests", {
            "customer_id": customer["id"], "basis": basis, "reason": text[:1000],
            "requested_by": p.id, "requested_at": utcnow(), "status": "requested"})
        await audit.append(uow, node, p, "destruction_requested",
                           object_table="destruction_requests", object_id=row["id"],
                           customer_id=customer["id"], detail={"basis": basis})
        return row


async def _open(uow: Any, p: Principal, request_id: str, status: str
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request (404 unless its customer is visible to `p`) in state `status`
    (409 otherwise), and its customer."""
    row = await uow.get("destruction_requests", request_id)
    if row is None:
        raise NotFoundError("destruction request not found")
    customer = await records.visible_customer(uow.conn, p, row["customer_id"],
                                              follow_merges=False)
    if row["status"] != status:
        raise ConflictError(f"the request is {row['status']}, not {status}")
    return row, customer


def _note(note: str | None) -> str | None:
    text = (note or "").strip()
    return text[:500] or None


async def decide_review(node: Node, p: Principal, request_id: str, approve: bool,
                        note: str | None) -> dict[str, Any]:
    """The department head's review: the manager of the archive's department (an HQ
    department manager without a department reviews for every department). Approving
    passes it to the general manager; declining ends it."""
    _require(p, frozenset({"dept_manager"}), "review destructions")
    async with node.db.write(node.node_id, p.id) as uow:
        row, customer = await _open(uow, p, request_id, "requested")
        if not (p.department == customer["department"] if p.department is not None
                else p.branch is None):
            raise ForbiddenError("only the head of the archive's department reviews it")
        updated = await uow.update("destruction_requests", request_id, {
            "status": "reviewed" if approve else "declined", "reviewed_by": p.id,
            "reviewed_at": utcnow(), "decision_note": _note(note)})
        await audit.append(uow, node, p,
                           "destruction_reviewed" if approve else "destruction_declined",
                           object_table="destruction_requests", object_id=request_id,
                           customer_id=row["customer_id"], detail={"step": "review"})
        return updated


async def decide_approval(node: Node, p: Principal, request_id: str, approve: bool,
                          note: str | None) -> dict[str, Any]:
    """The general manager's decision on a reviewed request. Approving crypto-erases
    the archive at HQ in the same transaction (`erasure.erase_in`) and links the
    destruction record; declining ends the request."""
    _require(p, frozenset({"general_manager"}), "approve destructions")
    if approve and node.role != "hq":
        raise ForbiddenError("personal data is erased at headquarters")
    async with node.db.write(node.node_id, p.id) as uow:
        row, _ = await _open(uow, p, request_id, "reviewed")
        now = utcnow()
        changes: dict[str, Any] = {"approved_by": p.id, "approved_at": now,
                                   "decision_note": _note(note) or row["decision_note"]}
        detail: dict[str, Any] = {"step": "approval"}
        if approve:
            record = await erasure.erase_in(
                uow, node, row["customer_id"], reviewer_id=row["reviewed_by"],
                approver_id=p.id, reason=row["reason"], actor_id=p.id)
            changes.update(status="erased", record_id=record["id"])
            detail.update(record_id=record["id"], fields=len(record["fields"]))
        else:
            changes["status"] = "declined"
        updated = await uow.update("destruction_requests", request_id, changes)
        await audit.append(uow, node, p,
                           "destruction_approved" if approve else "destruction_declined",
                           object_table="destruction_requests", object_id=request_id,
                           customer_id=row["customer_id"], detail=detail)
    if approve:
        await node.db.purge_freed()
    return updated


def _visible_requests(p: Principal) -> Any:
    return select(requests).select_from(
        requests.join(customers, customers.c.id == requests.c.customer_id)
    ).where(customer_scope(p))


async def list_requests(node: Node, p: Principal, filters: dict[str, Any],
                        cursor: str | None, limit: int
                        ) -> tuple[list[dict[str, Any]], str | None]:
    """Destruction requests of archives `p` may see, newest first; filters: status,
    customer_id."""
    _require(p, VIEWERS, "read destruction requests")
    query = _visible_requests(p)
    if filters.get("status") is not None:
        query = query.where(requests.c.status == filters["status"])
    if filters.get("customer_id") is not None:
        query = query.where(requests.c.customer_id == filters["customer_id"])
    async with node.db.read() as conn:
        return await records.page(conn, query, requests.c.id, cursor, limit)


async def get_request(node: Node, p: Principal, request_id: str) -> dict[str, Any]:
    """One destruction request of an archive `p` may see."""
    _require(p, VIEWERS, "read destruction requests")
    async with node.db.read() as conn:
        row = (await conn.execute(_visible_requests(p).where(
            requests.c.id == request_id))).mappings().first()
    if row is None:
        raise NotFoundError("destruction request not found")
    return dict(row)


# -- subject access ---------------------------------------------------------------------

async def subject_export(node: Node, p: Principal, customer_id: str) -> dict[str, Any]:
    """Everything held about one customer, for the customer (privacy law): the archive,
    contacts, visits, complaints, service tickets, purchases, point entries, consents,
    retention and the archive's field history. Confidential values are in plaintext only
    for the classes `p`'s role reads (masks otherwise); plaintext reads are logged and
    the export is audited (`subject_export`, with counts)."""
    _require(p, SUBJECT_EXPORTERS, "export a customer's data")
    reads: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}
    async with node.db.read() as conn:
        row = await records.visible_customer(conn, p, customer_id)
        group = await records.customer_group(conn, row["id"])
        doc["archive"] = (await records.show(node, conn, p, "customers", [row], reads))[0]
        found = await conn.execute(select(contacts).where(contacts.c.customer_id.in_(group))
                                   .order_by(contacts.c.id))
        doc["contacts"] = await records.show(node, conn, p, "contacts",
                                             [dict(r) for r in found.mappings()], reads)
        for table in CHILD_TABLES:
            t = TABLES[table]
            found = await conn.execute(select(t).where(t.c.customer_id.in_(group))
                                       .order_by(t.c.id))
            doc[table] = await records.show(node, conn, p, table,
                                            [dict(r) for r in found.mappings()], reads)
        points = TABLES["point_entries"]
        doc["point_entries"] = [dict(r) for r in (await conn.execute(
            select(points).where(points.c.member_id.in_(group))
            .order_by(points.c.id))).mappings()]
    await records.log_reads(node, p, reads)
    doc["consents"] = {"marketing": row["consent_marketing"],
                       "sharing": row["consent_sharing"], "consent_at": row["consent_at"]}
    doc["retention"] = {"relationship_ended_at": row["relationship_ended_at"],
                        "retention_until": row["retention_until"]}
    history: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        rows, cursor = await customers_service.customer_history(node, p, row["id"], cursor,
                                                                500)
        history += rows
        if cursor is None:
            break
    doc["field_history"] = history
    counts = {k: len(v) for k, v in doc.items() if isinstance(v, list)}
    await audit.log(node, p, "subject_export", object_table="customers", object_id=row["id"],
                    customer_id=row["id"], detail={"counts": counts})
    return {"customer_id": row["id"], "merged_ids": group[1:], "generated_at": utcnow(),
            "generated_by": p.username, **doc}
