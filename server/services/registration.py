"""Registration (客户登记) and filing (备案) with their deadline, import with
de-duplication, handover (客户交接) and the notices users receive (domain.md §3)."""

from __future__ import annotations

import base64
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import (
    LOCAL_TZ,
    TABLES,
    add_working_days,
    end_of_local_day,
    local_day,
    new_id,
    search_keys,
    utcnow,
    working_deadline,
)
from server.node import Node
from server.services import customers as archive
from server.services.custom_fields import active_fields, check_custom
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.merges import name_match_key, same_value
from server.services.principal import Principal
from server.services.records import (
    customer_group,
    log_reads,
    page,
    show,
    survivor_id,
    visible_customer,
)
from server.services.scope import customer_scope, require_editor

customers = TABLES["customers"]
users = TABLES["users"]
contacts = TABLES["contacts"]
handovers = TABLES["handovers"]
notices = TABLES["notices"]

FILING_DAYS = archive.FILING_DAYS
HANDOVER_ROLES = frozenset({"dept_manager", "sales_director", "general_manager"})
Item = tuple[dict[str, Any], list[dict[str, Any]]]


# -- registration ---------------------------------------------------------------------

def _owner_rule(p: Principal, values: dict[str, Any]) -> str | None:
    """Apply the ownership rules to `values`; the owner a rule assigns, if any.

    A referral goes to the referring rep only if the customer asks for them; otherwise
    (and for every other source) the customer belongs to the rep registering it, and a
    manager registering one names its owner or owns it themself."""
    asked = bool(values.pop("asked_for_referrer", False))
    if asked:
        if values.get("source") != "referral":
            raise FieldError("asked_for_referrer", "only a referral can ask for a rep")
        if not values.get("referrer_user_id"):
            raise FieldError("referrer_user_id", "name the referring rep the customer "
                                                 "asked for")
        return str(values["referrer_user_id"])
    if p.role != "sales_rep" and values.get("owner_id") is None:
        values["owner_id"] = p.id
    return None


async def _taken(conn: AsyncConnection, node: Node, rows: list[dict[str, Any]]) -> None:
    """Refuse (409) a mobile number registered before on this node, naming who holds
    the customer and since when: the earlier registration owns it (撞单)."""
    for row in rows:
        mobile = row.get("mobile")
        if not mobile:
            continue
        found = await same_value(conn, node.db.vault, "mobile", mobile)
        if not found:
            continue
        first = min(found, key=lambda r: (r["registered_at"], r["id"]))
        owner_row = (await conn.execute(select(customers).where(
            customers.c.id == await survivor_id(conn, first["id"])))).mappings().one()
        owner = (await conn.execute(select(users.c.display_name).where(
            users.c.id == owner_row["owner_id"]))).scalar() or "no owner"
        when = first["registered_at"].astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
        raise ConflictError(
            f"mobile {first['mobile_mask']} is already registered (客户已登记): customer "
            f"{owner_row['id']} of {owner} ({owner_row['branch'] or 'HQ'}), registered "
            f"{when}; the earlier registration owns the customer")


async def _referrer_branch(conn: AsyncConnection, user_id: str, branch: str | None) -> None:
    found = (await conn.execute(select(users.c.branch, users.c.active).where(
        users.c.id == user_id))).first()
    if found is None or not found.active:
        raise FieldError("referrer_user_id", "no such active user")
    if found.branch is not None and found.branch != branch:
        raise FieldError("referrer_user_id", f"the referring rep works at {found.branch}; "
                                             "register the customer there")


async def register_customer(node: Node, p: Principal, values: dict[str, Any],
                            new_contacts: list[dict[str, Any]]) -> dict[str, Any]:
    """Register a customer the same day they get in touch: source, intention, agency
    flag, referring customer and rep; ownership by the rules of `_owner_rule`. A
    mobile number registered before is refused with who holds it (409)."""
    values = dict(values)
    assigned = _owner_rule(p, values)

    async def check(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if assigned is not None:
            await _referrer_branch(conn, assigned, rows[0].get("branch"))
        await _taken(conn, node, rows)

    created = await archive.create_customers(node, p, [(values, new_contacts)],
                                             assigned_owner=assigned, check=check)
    return created[0]


# -- filing ---------------------------------------------------------------------------

async def file_customer(node: Node, p: Principal, customer_id: str) -> dict[str, Any]:
    """File (备案) a registered customer; 409 if it was filed or archived already."""
    require_editor(p)
    async with node.db.write(node.node_id, p.id) as uow:
        row = await visible_customer(uow.conn, p, customer_id)
        if row["filing_status"] != "registered":
            raise ConflictError(f"the customer is {row['filing_status']} already "
                                f"(filed at {row['filed_at']})")
        row = await uow.update("customers", row["id"], {"filing_status": "filed",
                                                        "filed_at": utcnow()})
        return (await show(node, uow.conn, p, "customers", [row]))[0]


def _last_day(limit: datetime) -> date:
    """The latest registration day whose filing deadline falls before `limit` (the
    deadline grows with the day, so earlier days are before it too)."""
    day = local_day(limit)
    while end_of_local_day(add_working_days(day, FILING_DAYS)) >= limit:
        day -= timedelta(days=1)
    return day


def deadline_flags(registered_at: datetime, now: datetime) -> dict[str, Any]:
    """The filing deadline of a registration and whether it is overdue or due within
    one working day."""
    deadline = working_deadline(registered_at, FILING_DAYS)
    soon = end_of_local_day(add_working_days(local_day(now), 1))
    return {"filing_deadline": deadline, "overdue": deadline < now,
            "due_soon": now <= deadline <= soon}


async def due_registrations(node: Node, p: Principal, *, overdue: bool | None,
                            due_soon: bool | None, cursor: str | None, limit: int
                            ) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's visible customers not filed yet, with their deadline and flags."""
    now = utcnow()
    late = end_of_local_day(_last_day(now))
    soon = end_of_local_day(_last_day(end_of_local_day(add_working_days(local_day(now), 1))
                                      + timedelta(microseconds=1)))
    query = select(customers).where(customer_scope(p), customers.c.merged_into.is_(None),
                                    customers.c.filing_status == "registered")
    registered = customers.c.registered_at
    if overdue is not None:
        query = query.where(registered <= late if overdue else registered > late)
    if due_soon is not None:
        window = and_(registered > late, registered <= soon)
        query = query.where(window if due_soon else ~window)
    audit: list[dict[str, Any]] = []
    async with node.db.read() as conn:
        rows, next_cursor = await page(conn, query, customers.c.id, cursor, limit)
        shown = await show(node, conn, p, "customers", rows, audit)
    await log_reads(node, p, audit)
    return [{**r, **deadline_flags(r["registered_at"], now)} for r in shown], next_cursor


# -- import ---------------------------------------------------------------------------

async def _classify(conn: AsyncConnection, node: Node, p: Principal,
                    items: list[Item | FieldError]
                    ) -> tuple[list[dict[str, Any]], list[tuple[int, Any]]]:
    """Per item: invalid (field, reason), duplicate (of whom, by what) or ok; and the
    prepared ok items (index, (values, custom, contacts))."""
    results: list[dict[str, Any]] = []
    ready: list[tuple[int, Any]] = []
    definitions = await active_fields(conn, "customer")
    seen: dict[tuple[str, str], int] = {}
    names = [(r.id, r.name, r.search_keys) for r in await conn.execute(
        select(customers.c.id, customers.c.name, customers.c.search_keys).where(
            customer_scope(p), customers.c.merged_into.is_(None)))]
    by_key: dict[str, str] = {}
    for cid, name, keys in names:
        by_key.setdefault(name_match_key(name, keys), cid)
    for index, item in enumerate(items):
        try:
            if isinstance(item, FieldError):
                raise item
            values, new_contacts = dict(item[0]), item[1]
            assigned = _owner_rule(p, values)
            prepared, custom = archive._prepare(p, values, assigned_owner=assigned)
            if assigned is not None:
                await _referrer_branch(conn, assigned, prepared.get("branch"))
            await archive._check_refs(conn, prepared)
            check_custom(definitions, custom, creating=True)
            for c in new_contacts:
                archive._normalise(c)
        except FieldError as exc:
            results.append({"index": index, "status": "invalid", "field": exc.field,
                            "reason": exc.message})
            continue
        except ForbiddenError as exc:  # an owner or branch this caller cannot give
            field = "branch" if "branch" in str(exc) else "owner_id"
            results.append({"index": index, "status": "invalid", "field": field,
                            "reason": str(exc)})
            continue
        duplicate = None
        for column in ("mobile", "id_number"):
            value = prepared.get(column)
            if not value:
                continue
            if (column, value) in seen:
                duplicate = {"duplicate_of": f"item {seen[(column, value)]}", "by": column}
                break
            found = await same_value(conn, node.db.vault, column, value)
            if found:
                first = min(found, key=lambda r: (r["registered_at"], r["id"]))
                duplicate = {"duplicate_of": await survivor_id(conn, first["id"]),
                             "by": column}
                break
        if duplicate is not None:
            results.append({"index": index, "status": "duplicate", **duplicate})
            continue
        for column in ("mobile", "id_number"):
            if prepared.get(column):
                seen[(column, prepared[column])] = index
        similar = by_key.get(name_match_key(prepared["name"], search_keys(prepared["name"])))
        results.append({"index": index, "status": "ok",
                        "similar_to": [similar] if similar else []})
        ready.append((index, (prepared, custom, new_contacts)))
    return results, ready


async def import_customers(node: Node, p: Principal, items: list[Item | FieldError], *,
                           dry_run: bool) -> tuple[list[dict[str, Any]], int]:
    """Check a batch of customers for import: per item ok, duplicate (of an existing
    customer or an earlier item, by mobile or ID number) or invalid (field, reason);
    unless `dry_run`, write the ok ones in one transaction. (results, created)."""
    require_editor(p)
    if dry_run:
        async with node.db.read() as conn:
            results, _ = await _classify(conn, node, p, items)
        return results, 0
    async with node.db.write(node.node_id, p.id) as uow:
        results, ready = await _classify(uow.conn, node, p, items)
        created = await archive.insert_prepared(uow, node, p, [r for _, r in ready]) \
            if ready else []
    ids = {index: row["id"] for (index, _), row in zip(ready, created, strict=True)}
    for r in results:
        if r["index"] in ids:
            r["id"] = ids[r["index"]]
    return results, len(created)


# -- handover (客户交接) ----------------------------------------------------------------

async def _user(conn: AsyncConnection, user_id: str, field: str) -> dict[str, Any]:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
    if row is None:
        raise FieldError(field, "no such user")
    return dict(row)


async def hand_over(node: Node, p: Principal, *, from_user: str, to_user: str,
                    customer_ids: list[str] | None, reason: str | None, notify: bool
                    ) -> dict[str, Any]:
    """Hand a rep's customers (all they own that `p` sees, or the ones named) to
    another rep: a new ownership cycle each, one log row per customer under one batch,
    a notice for the receiving rep. Returns the customers to tell (name and phone as
    `p` may see them) and the important (key) customers with fewer than two contacts."""
    if p.role not in HANDOVER_ROLES:
        raise ForbiddenError(f"a {p.role} cannot hand customers over")
    if from_user == to_user:
        raise FieldError("to_user", "is the rep handing over")
    async with node.db.write(node.node_id, p.id) as uow:
        conn = uow.conn
        giver = await _user(conn, from_user, "from_user")
        taker = await _user(conn, to_user, "to_user")
        if not taker["active"]:
            raise FieldError("to_user", "is not an active user")
        if p.role == "dept_manager" and (p.branch is None or giver["branch"] != p.branch
                                         or taker["branch"] != p.branch):
            raise ForbiddenError("a department manager hands over within their own branch")
        query = select(customers).where(customer_scope(p), customers.c.owner_id == from_user,
                                        customers.c.merged_into.is_(None))
        if customer_ids is not None:
            query = query.where(customers.c.id.in_(customer_ids))
        rows = [dict(r) for r in (await conn.execute(query.order_by(customers.c.id)))
                .mappings()]
        missing = sorted(set(customer_ids or ()) - {r["id"] for r in rows})
        if missing:
            raise FieldError("customer_ids", f"{missing[0]} is not a customer of from_user "
                                             "you may hand over")
        if not rows:
            raise FieldError("from_user", "owns no customers you may hand over")
        elsewhere = [r for r in rows if taker["branch"] is not None
                     and r["branch"] != taker["branch"]]
        if elsewhere:
            raise FieldError("to_user", f"works at {taker['branch']}, not at "
                                        f"{elsewhere[0]['branch']} where the customers are")
        batch, now = new_id(), utcnow()
        for r in rows:
            await uow.update("customers", r["id"], {"owner_id": to_user},
                             new_cycle=frozenset({"owner_id"}))
        await uow.insert_many("handovers", [{
            "customer_id": r["id"], "batch_id": batch, "from_user": from_user,
            "to_user": to_user, "reason": reason, "notify": notify, "handed_by": p.id,
            "handed_at": now} for r in rows])
        await uow.insert("notices", {
            "branch": taker["branch"], "user_id": to_user, "kind": "handover",
            "subject_id": batch,
            "message": f"客户交接: {giver['display_name']}的{len(rows)}位客户已交由您负责"
                       + (f" (原因: {reason})" if reason else "")
                       + ("。请尽快联系客户告知。" if notify else "。")})
        shown = await show(node, conn, p, "customers", rows)
        counts = await _contact_counts(conn, [r["id"] for r in rows
                                              if r["customer_class"] == "key"])
    return {
        "batch_id": batch, "count": len(rows),
        "notify": [{"id": r["id"], "name": r["name"], "mobile": r["mobile"],
                    "phone": r["phone"]} for r in shown] if notify else [],
        "needs_contacts": [{"id": r["id"], "name": r["name"], "contacts": counts[r["id"]]}
                           for r in shown
                           if r["customer_class"] == "key" and counts[r["id"]] < 2],
    }


async def _contact_counts(conn: AsyncConnection, ids: list[str]) -> dict[str, int]:
    """Contacts per customer, those of customers merged into it included."""
    out = {}
    for cid in ids:
        group = await customer_group(conn, cid)
        out[cid] = len((await conn.execute(select(contacts.c.id).where(
            contacts.c.customer_id.in_(group)))).all())
    return out


async def list_handovers(node: Node, p: Principal, filters: dict[str, Any],
                         cursor: str | None, limit: int
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """The handover log: a rep sees the handovers to or from them; others those of the
    customers they see."""
    query: Select[Any] = select(handovers)
    if p.role == "sales_rep":
        query = query.where(or_(handovers.c.from_user == p.id, handovers.c.to_user == p.id))
    else:
        query = query.join(customers, customers.c.id == handovers.c.customer_id).where(
            customer_scope(p))
    for key, value in filters.items():
        if value is not None:
            query = query.where(handovers.c[key] == value)
    async with node.db.read() as conn:
        return await page(conn, query, handovers.c.id, cursor, limit)


# -- notices --------------------------------------------------------------------------

def _notice_cursor(row: dict[str, Any]) -> str:
    text = f"{row['created_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _after(cursor: str) -> ColumnElement[bool]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, row_id = text.partition("|")
        at = datetime.fromisoformat(when)
    except (ValueError, UnicodeDecodeError):
        raise FieldError("cursor", "is not a cursor from this API") from None
    return or_(notices.c.created_at < at, and_(notices.c.created_at == at,
                                               notices.c.id < row_id))


async def list_notices(node: Node, p: Principal, *, unread: bool | None, kind: str | None,
                       cursor: str | None, limit: int
                       ) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's own notices (collisions 撞单, handovers), newest first."""
    conditions: list[ColumnElement[bool]] = [notices.c.user_id == p.id]
    if unread is not None:
        conditions.append(notices.c.read_at.is_(None) if unread
                          else notices.c.read_at.is_not(None))
    if kind is not None:
        conditions.append(notices.c.kind == kind)
    if cursor is not None:
        conditions.append(_after(cursor))
    async with node.db.read() as conn:
        rows = [dict(r) for r in (await conn.execute(
            select(notices).where(*conditions)
            .order_by(notices.c.created_at.desc(), notices.c.id.desc())
            .limit(limit + 1))).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, _notice_cursor(rows[-1]) if more and rows else None


async def read_notice(node: Node, p: Principal, notice_id: str) -> dict[str, Any]:
    """Mark one of the caller's notices read (reading it twice changes nothing)."""
    async with node.db.write(node.node_id, p.id) as uow:
        row = await uow.get("notices", notice_id)
        if row is None or row["user_id"] != p.id:
            raise NotFoundError("notice not found")
        if row["read_at"] is None:
            row = await uow.update("notices", notice_id, {"read_at": utcnow()})
        return row
