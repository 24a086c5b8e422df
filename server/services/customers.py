"""Customer archives (客户档案) and their contacts, field history and search."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, Text, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import (
    TABLES,
    UnitOfWork,
    clean_text,
    normalize_email,
    normalize_mobile,
    normalize_phone,
    utcnow,
    validate_id_number,
    validate_org_code,
)
from server.node import Node
from server.services.custom_fields import active_fields, check_custom
from server.services.errors import FieldError, ForbiddenError, NotFoundError
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
HIDDEN = frozenset({"search_keys"})


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


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A customer row as the API shows it."""
    return {k: v for k, v in row.items() if k not in HIDDEN}


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


def _prepare(p: Principal, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = _normalise(values)
    custom = values.pop("custom", None) or {}
    if p.role == "sales_rep":
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
    if not in_scope(p, values):
        raise ForbiddenError("the customer would be outside what you may see")
    return values, custom


async def create_customer(node: Node, p: Principal, values: dict[str, Any],
                          new_contacts: list[dict[str, Any]]) -> dict[str, Any]:
    """Register a customer (with optional contacts) owned and filed per the caller's role."""
    return (await create_customers(node, p, [(values, new_contacts)]))[0]


async def create_customers(node: Node, p: Principal,
                           items: list[tuple[dict[str, Any], list[dict[str, Any]]]]
                           ) -> list[dict[str, Any]]:
    """Register several customers in one transaction: all are written or none."""
    require_editor(p)
    prepared = [(*_prepare(p, values), contacts) for values, contacts in items]
    async with node.db.write(node.node_id, p.id) as uow:
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
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for c in added:
        by_customer.setdefault(c["customer_id"], []).append(c)
    return [{**public(row), "contacts": by_customer.get(row["id"], [])} for row in inserted]


async def _visible(conn: AsyncConnection, p: Principal, customer_id: str) -> dict[str, Any]:
    row = (await conn.execute(
        select(customers).where(customers.c.id == customer_id, customer_scope(p))
    )).mappings().first()
    if row is None:
        raise NotFoundError("customer not found")
    return dict(row)


async def get_customer(node: Node, p: Principal, customer_id: str) -> dict[str, Any]:
    """One customer archive with its contacts."""
    async with node.db.read() as conn:
        row = await _visible(conn, p, customer_id)
        found = await conn.execute(select(contacts).where(contacts.c.customer_id == customer_id)
                                   .order_by(contacts.c.id))
        return {**public(row), "contacts": [dict(c) for c in found.mappings()]}


async def update_customer(node: Node, p: Principal, customer_id: str,
                          changes: dict[str, Any]) -> dict[str, Any]:
    """Change fields of a customer archive; each change lands in its field history."""
    require_editor(p)
    changes = _normalise(changes)
    if "branch" in changes and not p.hq_wide:
        raise ForbiddenError("only headquarters moves customers between branches")
    async with node.db.write(node.node_id, p.id) as uow:
        old = await _visible(uow.conn, p, customer_id)
        if "custom" in changes:
            checked = check_custom(await active_fields(uow.conn, "customer"),
                                   changes["custom"] or {}, creating=False)
            merged = {**old["custom"], **checked}
            changes["custom"] = {k: v for k, v in merged.items() if v is not None}
        await _check_refs(uow.conn, changes)
        row = await uow.update("customers", customer_id, changes)
    return public(row)


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


async def list_customers(node: Node, p: Principal, filters: dict[str, Any], q: str | None,
                         cursor: str | None, limit: int
                         ) -> tuple[list[dict[str, Any]], str | None]:
    """Customers visible to `p`, newest first, filtered and searched."""
    query = select(customers).where(customer_scope(p))
    for key, value in filters.items():
        if value is None:
            continue
        if key == "tags":
            # JSON arrays are kept as text (non-ASCII unescaped) on both backends; match
            # the quoted element so `vip` does not find `vip2`.
            query = query.where(cast(customers.c.tags, Text).contains(
                json.dumps(value, ensure_ascii=False), autoescape=True))
        elif key == "mobile":
            query = query.where(customers.c.mobile == normalize_mobile("mobile", value))
        elif key == "id_number":
            query = query.where(customers.c.id_number == validate_id_number("id_number", value))
        else:
            query = query.where(customers.c[key] == value)
    if q:
        term = clean_text("q", q) or ""
        query = query.where(customers.c.search_keys.like(_like(term.lower()), escape="\\"))
    async with node.db.read() as conn:
        rows, next_cursor = await _page(conn, query, customers.c.id, cursor, limit)
    return [public(r) for r in rows], next_cursor


async def customer_history(node: Node, p: Principal, customer_id: str, cursor: str | None,
                           limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The field history of a customer: who changed what, when, old → new."""
    async with node.db.read() as conn:
        await _visible(conn, p, customer_id)
        query = select(history, users.c.display_name.label("changed_by_name")).outerjoin(
            users, users.c.id == history.c.changed_by
        ).where(history.c.table_name == "customers", history.c.row_id == customer_id)
        return await _page(conn, query, history.c.id, cursor, limit)


async def list_contacts(node: Node, p: Principal, customer_id: str) -> list[dict[str, Any]]:
    """The contacts of a visible customer."""
    async with node.db.read() as conn:
        await _visible(conn, p, customer_id)
        found = await conn.execute(select(contacts).where(contacts.c.customer_id == customer_id)
                                   .order_by(contacts.c.id))
        return [dict(c) for c in found.mappings()]


async def create_contact(node: Node, p: Principal, customer_id: str,
                         values: dict[str, Any]) -> dict[str, Any]:
    """Add a contact person to a customer."""
    require_editor(p)
    async with node.db.write(node.node_id, p.id) as uow:
        await _visible(uow.conn, p, customer_id)
        return await _add_contact(uow, customer_id, values)


async def update_contact(node: Node, p: Principal, customer_id: str, contact_id: str,
                         changes: dict[str, Any]) -> dict[str, Any]:
    """Change a contact person's fields."""
    require_editor(p)
    changes = _normalise(changes)
    async with node.db.write(node.node_id, p.id) as uow:
        await _visible(uow.conn, p, customer_id)
        current = await uow.get("contacts", contact_id)
        if current is None or current["customer_id"] != customer_id:
            raise NotFoundError("contact not found")
        return await uow.update("contacts", contact_id, changes)
