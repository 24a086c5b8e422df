"""Custom fields HQ defines at run time (自定义卡片), and checking values against them."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import CUSTOM_FIELD_ADMINS, TABLES
from server.node import Node
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal

defs = TABLES["custom_field_defs"]
FIELD_TYPES = ("text", "integer", "number", "date", "boolean", "choice")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _require_admin(p: Principal) -> None:
    if p.role not in CUSTOM_FIELD_ADMINS:
        raise ForbiddenError("only administrators, general managers and archive clerks "
                             "define custom fields")


async def list_fields(node: Node, entity: str = "customer") -> list[dict[str, Any]]:
    """Custom field definitions of `entity`, active and retired."""
    async with node.db.read() as conn:
        rows = await conn.execute(
            select(defs).where(defs.c.entity == entity).order_by(defs.c.created_at)
        )
        return [dict(r) for r in rows.mappings()]


async def create_field(node: Node, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Define a new custom field."""
    _require_admin(p)
    if not _NAME.match(values["name"]):
        raise FieldError("name", "use a lowercase identifier (letters, digits, _)")
    if values["field_type"] == "choice" and not values.get("choices"):
        raise FieldError("choices", "a choice field needs at least one choice")
    async with node.db.write(node.node_id, p.id) as uow:
        taken = await uow.conn.execute(select(defs.c.id).where(
            defs.c.entity == values["entity"], defs.c.name == values["name"]))
        if taken.first() is not None:
            raise ConflictError(f"custom field {values['name']!r} exists")
        return await uow.insert("custom_field_defs", values)


async def update_field(node: Node, p: Principal, field_id: str,
                       changes: dict[str, Any]) -> dict[str, Any]:
    """Change a custom field's label, requirement, choices or retire it."""
    _require_admin(p)
    async with node.db.write(node.node_id, p.id) as uow:
        if await uow.get("custom_field_defs", field_id) is None:
            raise NotFoundError("custom field not found")
        return await uow.update("custom_field_defs", field_id, changes)


async def active_fields(conn: AsyncConnection, entity: str) -> dict[str, dict[str, Any]]:
    """Active definitions of `entity` by name, read on an open connection."""
    rows = await conn.execute(select(defs).where(defs.c.entity == entity, defs.c.active))
    return {r["name"]: dict(r) for r in rows.mappings()}


def _check(d: dict[str, Any], value: Any) -> Any:
    name, kind = f"custom.{d['name']}", d["field_type"]
    if kind == "text":
        if not isinstance(value, str):
            raise FieldError(name, "must be text")
        if d["max_length"] and len(value) > d["max_length"]:
            raise FieldError(name, f"must have at most {d['max_length']} characters")
        return value.strip()
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise FieldError(name, "must be a whole number")
        return value
    if kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise FieldError(name, "must be a number")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FieldError(name, "must be true or false")
        return value
    if kind == "date":
        try:
            return date.fromisoformat(value).isoformat()
        except (TypeError, ValueError):
            raise FieldError(name, "must be a date YYYY-MM-DD") from None
    if value not in d["choices"]:
        raise FieldError(name, f"must be one of {', '.join(map(str, d['choices']))}")
    return value


def check_custom(definitions: dict[str, dict[str, Any]], values: dict[str, Any],
                 *, creating: bool) -> dict[str, Any]:
    """Validate custom values (None removes a value); required fields on create."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in definitions:
            raise FieldError(f"custom.{key}", "no such custom field")
        out[key] = None if value is None else _check(definitions[key], value)
    if creating:
        for key, d in definitions.items():
            if d["required"] and out.get(key) is None:
                raise FieldError(f"custom.{key}", "is required")
    return out
