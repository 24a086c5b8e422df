"""Customer archives (客户档案) and their contacts, field history and search."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, Text, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from crypto import is_token
from schema import (
    SENSITIVE,
    TABLES,
    UnitOfWork,
    clean_text,
    normalize_email,
    normalize_mobile,
    normalize_phone,
    readable_classes,
    utcnow,
    validate_id_number,
    validate_org_code,
    working_deadline,
)
from server.node import Node
from server.services import audit as _audit
from server.services import records
from server.services import retention as _retention
from server.services.custom_fields import active_fields, check_custom
from server.services.errors import FieldError, ForbiddenError, NotFoundError
from server.services.grants import granted_customers
from server.services.principal import Principal
from server.services.scope import customer_scope, in_scope, require_editor

customers = TABLES["customers"]
contacts = TABLES["contacts"]
users = TABLES["users"]
branches = TABLES["branches"]
history = TABLES["field_history"]

_NORMALISERS: dict[str, Callable[[str, str], str]] = {
    "mobile": normalize_mobile,
    "phone": normalize_phone,
    "email": normalize_email,
    "id_number": validate_id_number,
    "org_code": validate_org_code,
}
_REQUIRED = frozenset({"name", "customer_type", "source"})
REFS = ("branch", "owner_id", "referrer_user_id", "referrer_customer_id")
HIDDEN = frozenset({"search_keys"} | {f"{c}_{suffix}" for cols in SENSITIVE.values()
                                       for c in cols for suffix in ("mask", "bidx")})


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            if key in _REQUIRED:
                raise FieldError(key, "must not be empty")
            out[key] = None
        elif key in _NORMALISERS:
            out[key] = _NORMALISERS[key](key, value)
        elif key == "tags":
            tags = [clean_text("tags", t) for t in value]
            out[key] = sorted({t for t in tags if t})
        elif isinstance(value, str):
            out[key] = clean_text(key, value, required=key in _REQUIRED)
        else:
            out[key] = value
    return out


FILING_DAYS = 5
"""Filing (备案) within 5 working days of registration (domain.md §3)."""


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it; a customer also shows its filing deadline."""
    out = {k: v for k, v in row.items() if k not in HIDDEN}
    if "filing_status" in row and row.get("registered_at") is not None:
        out["filing_deadline"] = working_deadline(row["registered_at"], FILING_DAYS)
    return out


async def _readable(node: Node, conn: AsyncConnection, role: str) -> frozenset[str]:
    """The classes `role` reads under the class policy in force on this node."""
    vault = node.db.vault
    if vault is None:
        return readable_classes(role)
    return (await vault.refresh_policy(conn)).readable(role)


async def _show(node: Node, conn: AsyncConnection, p: Principal, table: str,
                rows: list[dict[str, Any]], audit: list[dict[str, Any]] | None = None
                ) -> list[dict[str, Any]]:
    """Rows as `p` may see them: plaintext of the classes their role reads (and this
    node holds), the write-time mask elsewhere; never a ciphertext. Plaintext reads
    are added to `audit` (written by `_log_reads` once the read is done)."""
    rows = [dict(r) for r in rows]
    pairs = [(r["id"] if table == "customers" else r["customer_id"], r) for r in rows]
    vault = node.db.vault
    if vault is not None:
        revealed = await vault.open_rows(conn, table, pairs, await _readable(node, conn, p.role))
        if audit is not None:
            now = utcnow()
            audit += [{"customer_id": customer, "table_name": table, "row_id": row_id,
                       "fields": fields, "user_id": p.id, "node_id": node.node_id,
                       "read_at": now} for customer, row_id, fields in revealed]
    else:
        for _, r in pairs:
            for c in SENSITIVE.get(table, {}):
                if r.get(c) is not None:
                    r[c] = r.get(f"{c}_mask")
    return [public(r) for r in rows]


async def _reveal(node: Node, conn: AsyncConnection, p: Principal, table: str, column: str,
                  row_id: str, customer_id: str, value: Any) -> Any:
    vault = node.db.vault
    if vault is None:
        return "(encrypted)" if is_token(value) else value
    return await vault.reveal(conn, table, column, row_id, customer_id, value,
                              await _readable(node, conn, p.role))


async def _log_reads(node: Node, p: Principal, audit: list[dict[str, Any]]) -> None:
    """Record plaintext reads of confidential fields (append-only, replicated)."""
    if audit:
        async with node.db.write(node.node_id, p.id) as uow:
            await uow.insert_many("read_audit", audit)
            await _audit.append(uow, node, p, "view", **_audit.view_fields(audit))


def _blind(node: Node, table: str, column: str, normalised: str) -> str:
    vault = node.db.vault
    if vault is None or vault.index_root is None:
        raise ForbiddenError("this node holds no search key for confidential fields")
    return vault.index(table, column, normalised)


async def _check_refs(conn: AsyncConnection, values: dict[str, Any]) -> None:
    if values.get("branch") is not None:
        found = await conn.execute(select(branches.c.id).where(branches.c.code == values["branch"]))
        if found.first() is None:
            raise FieldError("branch", f"no branch {values['branch']!r}")
    for key in ("owner_id", "referrer_user_id"):
        if values.get(key) is not None:
            found = await conn.execute(
                select(users.c.id).where(users.c.id == values[key], users.c.active))
            if found.first() is None:
                raise FieldError(key, "no such active user")
    if values.get("referrer_customer_id") is not None:
        found = await conn.execute(
            select(customers.c.id).where(customers.c.id == values["referrer_customer_id"]))
        if found.first() is None:
            raise FieldError("referrer_customer_id", "no such customer")


async def _add_contact(uow: UnitOfWork, customer_id: str, values: dict[str, Any]
                       ) -> dict[str, Any]:
    return await uow.insert("contacts", {**_normalise(values), "customer_id": customer_id})


SECRECY_SETTERS = frozenset({"general_manager", "archive_clerk"})
"""Roles that may mark an archive top secret (绝密) or lift the mark (domain.md §9)."""


def _check_secrecy(p: Principal, values: dict[str, Any]) -> None:
    if "secrecy" in values and p.role not in SECRECY_SETTERS:
        raise ForbiddenError("only the general manager or an archive clerk sets secrecy")


def _prepare(p: Principal, values: dict[str, Any], *, assigned_owner: str | None = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Normalised values and custom fields of a new customer, owned and placed per the
    caller's role. `assigned_owner` is an owner a rule names (a referral the customer
    asked to go to the referring rep): it stands even when the caller could not pick it,
    and the new customer may then be outside what the caller sees."""
    values = _normalise(values)
    _check_secrecy(p, {k: v for k, v in values.items() if k != "secrecy" or v != "ordinary"})
    values.update(_retention.derived(None, values))  # retention end, consent time
    custom = values.pop("custom", None) or {}
    if assigned_owner is not None:
        values["owner_id"] = assigned_owner
    elif p.role == "sales_rep":
        if values.get("owner_id") not in (None, p.id):
            raise ForbiddenError("a sales rep registers customers for themself")
        values["owner_id"] = p.id
    if p.branch is not None:
        if values.get("branch") not in (None, p.branch):
            raise ForbiddenError("you can only register customers for your own branch")
        values["branch"] = p.branch
    if values.get("department") is None:
        values["department"] = p.department
    if values.get("registered_at") is None:
        values["registered_at"] = utcnow()
    values["created_by"] = p.id
    if assigned_owner is None and not in_scope(p, values):
        raise ForbiddenError("the customer would be outside what you may see")
    return values, custom


async def create_customer(node: Node, p: Principal, values: dict[str, Any],
                          new_contacts: list[dict[str, Any]]) -> dict[str, Any]:
    """Register a customer (with optional contacts) owned and filed per the caller's role."""
    return (await create_customers(node, p, [(values, new_contacts)]))[0]


async def create_customers(node: Node, p: Principal,
                           items: list[tuple[dict[str, Any], list[dict[str, Any]]]], *,
                           assigned_owner: str | None = None,
                           check: Callable[[AsyncConnection, list[dict[str, Any]]],
                                           Awaitable[None]] | None = None
                           ) -> list[dict[str, Any]]:
    """Register several customers in one transaction: all are written or none.
    `check` sees the prepared rows inside the transaction before anything is written
    (registration refuses a mobile number registered before, atomically)."""
    require_editor(p)
    prepared = [(*_prepare(p, values, assigned_owner=assigned_owner), contacts)
                for values, contacts in items]
    async with node.db.write(node.node_id, p.id) as uow:
        if check is not None:
            await check(uow.conn, [values for values, _, _ in prepared])
        return await insert_prepared(uow, node, p, prepared)


async def insert_prepared(uow: UnitOfWork, node: Node, p: Principal,
                          prepared: list[tuple[dict[str, Any], dict[str, Any],
                                               list[dict[str, Any]]]]
                          ) -> list[dict[str, Any]]:
    """Write customers prepared by `_prepare` (values, custom, contacts) inside `uow`;
    the rows as `p` sees them, each with its contacts."""
    definitions = await active_fields(uow.conn, "customer")
    checked: set[tuple[Any, ...]] = set()
    rows = []
    for values, custom, _ in prepared:
        refs = tuple(values.get(k) for k in REFS)
        if refs not in checked:  # a batch usually shares branch and owner
            await _check_refs(uow.conn, values)
            checked.add(refs)
        extra = check_custom(definitions, custom, creating=True)
        rows.append({**values, "custom": {k: v for k, v in extra.items() if v is not None}})
    inserted = await uow.insert_many("customers", rows)
    contacts = [{**_normalise(c), "customer_id": row["id"]}
                for row, (_, _, cs) in zip(inserted, prepared, strict=True) for c in cs]
    added = await uow.insert_many("contacts", contacts) if contacts else []
    shown = await _show(node, uow.conn, p, "customers", inserted)
    shown_contacts = await _show(node, uow.conn, p, "contacts", added)
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for c in shown_contacts:
        by_customer.setdefault(c["customer_id"], []).append(c)
    return [{**row, "contacts": by_customer.get(row["id"], [])} for row in shown]


async def _archive(conn: AsyncConnection, p: Principal, customer_id: str,
                   reading: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The archive `customer_id` stands for (the survivor, if it was merged away) as `p`
    may see it, and the ids whose child rows it shows (itself and the absorbed).
    `reading`: a view grant in force (domain.md §9) admits it too."""
    row = await records.visible_customer(conn, p, customer_id, reading=reading)
    return row, await records.customer_group(conn, row["id"])


async def get_customer(node: Node, p: Principal, customer_id: str) -> dict[str, Any]:
    """One customer archive with its contacts. A customer merged into another answers
    with the surviving archive; `merged_ids` names the archives merged into it, whose
    contacts it shows too."""
    async with node.db.read() as conn:
        row, group = await _archive(conn, p, customer_id, reading=True)
        found = await conn.execute(select(contacts).where(contacts.c.customer_id.in_(group))
                                   .order_by(contacts.c.id))
        audit: list[dict[str, Any]] = []
        shown = (await _show(node, conn, p, "customers", [row], audit))[0]
        shown["contacts"] = await _show(node, conn, p, "contacts",
                                        [dict(c) for c in found.mappings()], audit)
        shown["merged_ids"] = group[1:]
    await _log_reads(node, p, audit)
    return shown


async def update_customer(node: Node, p: Principal, customer_id: str,
                          changes: dict[str, Any]) -> dict[str, Any]:
    """Change fields of a customer archive; each change lands in its field history."""
    require_editor(p)
    changes = _normalise(changes)
    _check_secrecy(p, changes)
    if "branch" in changes and not p.hq_wide:
        raise ForbiddenError("only headquarters moves customers between branches")
    async with node.db.write(node.node_id, p.id) as uow:
        # An edit of a merged-away customer goes to the archive that absorbed it.
        old = await records.visible_customer(uow.conn, p, customer_id)
        changes.update(_retention.derived(old, changes))  # retention end, consent time
        if "custom" in changes:
            checked = check_custom(await active_fields(uow.conn, "customer"),
                                   changes["custom"] or {}, creating=False)
            merged = {**old["custom"], **checked}
            changes["custom"] = {k: v for k, v in merged.items() if v is not None}
        await _check_refs(uow.conn, changes)
        row = await uow.update("customers", old["id"], changes)
        return (await _show(node, uow.conn, p, "customers", [row]))[0]


def _cursor_encode(row_id: str) -> str:
    return base64.urlsafe_b64encode(row_id.encode()).decode().rstrip("=")


def _cursor_decode(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise FieldError("cursor", "is not a cursor from this API") from None
    if len(value) != 36:
        raise FieldError("cursor", "is not a cursor from this API")
    return value


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _page(conn: AsyncConnection, query: Select[Any], id_col: Any, cursor: str | None,
                limit: int) -> tuple[list[dict[str, Any]], str | None]:
    if cursor is not None:
        query = query.where(id_col < _cursor_decode(cursor))
    rows = [dict(r) for r in (await conn.execute(
        query.order_by(id_col.desc()).limit(limit + 1))).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, _cursor_encode(rows[-1]["id"]) if more and rows else None


def filtered(node: Node, query: Select[Any], filters: dict[str, Any], q: str | None
             ) -> tuple[Select[Any], dict[str, str]]:
    """`query` narrowed by the customer list's filters (a column's own name, `tags`, the
    blind-indexed `mobile` / `id_number`) and name search `q`; with the exact values a
    blind-index match must be confirmed against (an index names a few candidates)."""
    exact: dict[str, str] = {}
    for key, value in filters.items():
        if value is None:
            continue
        if key == "tags":
            # JSON arrays are kept as text (non-ASCII unescaped) on both backends; match
            # the quoted element so `vip` does not find `vip2`.
            query = query.where(cast(customers.c.tags, Text).contains(
                json.dumps(value, ensure_ascii=False), autoescape=True))
        elif key in ("mobile", "id_number"):
            normalised = (normalize_mobile if key == "mobile" else validate_id_number)(key, value)
            exact[key] = normalised
            query = query.where(customers.c[f"{key}_bidx"] == _blind(node, "customers", key,
                                                                     normalised))
        elif key in customers.c:
            query = query.where(customers.c[key] == value)
        else:
            raise FieldError(key, "is not a filter of customers")
    if q:
        term = clean_text("q", q) or ""
        query = query.where(customers.c.search_keys.like(_like(term.lower()), escape="\\"))
    return query, exact


async def list_customers(node: Node, p: Principal, filters: dict[str, Any], q: str | None,
                         cursor: str | None, limit: int
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """Customers visible to `p`, newest first, filtered and searched."""
    # Merged-away customers are not listed: their survivor stands for them.
    query, exact = filtered(node, select(customers).where(
        or_(customer_scope(p), granted_customers(p)), customers.c.merged_into.is_(None)),
        filters, q)
    async with node.db.read() as conn:
        rows, next_cursor = await _page(conn, query, customers.c.id, cursor, limit)
        if exact:
            # A blind index names a few candidates; keep the ones that really match.
            plain = [dict(r) for r in rows]
            if node.db.vault is not None:
                await node.db.vault.open_rows(conn, "customers",
                                              [(r["id"], r) for r in plain],
                                              frozenset(SENSITIVE["customers"].values()))
            keep = {r["id"] for r in plain
                    if all(r.get(k) == v for k, v in exact.items())}
            rows = [r for r in rows if r["id"] in keep]
        audit: list[dict[str, Any]] = []
        shown = await _show(node, conn, p, "customers", rows, audit)
    await _log_reads(node, p, audit)
    return shown, next_cursor


async def customer_history(node: Node, p: Principal, customer_id: str, cursor: str | None,
                           limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The field history of a customer: who changed what, when, old → new."""
    async with node.db.read() as conn:
        _, group = await _archive(conn, p, customer_id)
        query = select(history, users.c.display_name.label("changed_by_name")).outerjoin(
            users, users.c.id == history.c.changed_by
        ).where(history.c.table_name == "customers", history.c.row_id.in_(group))
        rows, next_cursor = await _page(conn, query, history.c.id, cursor, limit)
        opened: set[str] = set()
        readable = await _readable(node, conn, p.role)
        for r in rows:
            column = r["column_name"]
            if column in SENSITIVE["customers"]:
                for key in ("old_value", "new_value"):
                    shown = await _reveal(node, conn, p, "customers", column, r["row_id"],
                                          r["row_id"], r[key])
                    if (is_token(r[key]) and shown != "(encrypted)"
                            and node.db.vault is not None
                            and node.db.vault.policy.columns("customers")[column] in readable):
                        opened.add(column)
                    r[key] = shown
    if opened:  # plaintext shown from the history is a read like any other
        await _log_reads(node, p, [{
            "customer_id": group[0], "table_name": "field_history", "row_id": group[0],
            "fields": sorted(opened), "user_id": p.id, "node_id": node.node_id,
            "read_at": utcnow()}])
    return rows, next_cursor


async def list_contacts(node: Node, p: Principal, customer_id: str) -> list[dict[str, Any]]:
    """The contacts of a visible customer, with those of customers merged into it."""
    async with node.db.read() as conn:
        _, group = await _archive(conn, p, customer_id, reading=True)
        found = await conn.execute(select(contacts).where(contacts.c.customer_id.in_(group))
                                   .order_by(contacts.c.id))
        audit: list[dict[str, Any]] = []
        shown = await _show(node, conn, p, "contacts", [dict(c) for c in found.mappings()],
                            audit)
    await _log_reads(node, p, audit)
    return shown


async def create_contact(node: Node, p: Principal, customer_id: str,
                         values: dict[str, Any]) -> dict[str, Any]:
    """Add a contact person to a customer (to the survivor, if it was merged away)."""
    require_editor(p)
    async with node.db.write(node.node_id, p.id) as uow:
        row = await records.visible_customer(uow.conn, p, customer_id)
        added = await _add_contact(uow, row["id"], values)
        return (await _show(node, uow.conn, p, "contacts", [added]))[0]


async def update_contact(node: Node, p: Principal, customer_id: str, contact_id: str,
                         changes: dict[str, Any]) -> dict[str, Any]:
    """Change a contact person's fields."""
    require_editor(p)
    changes = _normalise(changes)
    async with node.db.write(node.node_id, p.id) as uow:
        _, group = await _archive(uow.conn, p, customer_id)
        current = await uow.get("contacts", contact_id)
        if current is None or current["customer_id"] not in group:
            raise NotFoundError("contact not found")
        updated = await uow.update("contacts", contact_id, changes)
        return (await _show(node, uow.conn, p, "contacts", [updated]))[0]
