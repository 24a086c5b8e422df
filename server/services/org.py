"""The organisation: regions, branches (门店 / 分公司) and departments."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from schema import ORG_ADMINS, TABLES, clean_text
from server.node import Node
from server.services.errors import ConflictError, FieldError, ForbiddenError
from server.services.principal import Principal

regions = TABLES["regions"]
branches = TABLES["branches"]
departments = TABLES["departments"]
_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,15}$")


def _require_admin(p: Principal | None) -> None:
    if p is not None and p.role not in ORG_ADMINS:
        raise ForbiddenError("only an administrator changes the organisation")


def _code(value: str) -> str:
    value = value.strip().upper()
    if not _CODE.match(value):
        raise FieldError("code", "use 2-16 capital letters and digits, starting with a letter")
    return value


async def list_regions(node: Node) -> list[dict[str, Any]]:
    """All regions."""
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(
            select(regions).order_by(regions.c.code))).mappings()]


async def create_region(node: Node, p: Principal | None, code: str, name: str
                        ) -> dict[str, Any]:
    """Add a region (区域)."""
    _require_admin(p)
    code = _code(code)
    async with node.db.write(node.node_id, p.id if p else None) as uow:
        if (await uow.conn.execute(select(regions.c.id).where(regions.c.code == code))).first():
            raise ConflictError(f"region {code} exists")
        return await uow.insert("regions", {"code": code,
                                            "name": clean_text("name", name, required=True)})


async def list_branches(node: Node) -> list[dict[str, Any]]:
    """All branches."""
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(
            select(branches).order_by(branches.c.code))).mappings()]


async def create_branch(node: Node, p: Principal | None, values: dict[str, Any]
                        ) -> dict[str, Any]:
    """Add a branch; codes are unique and never reused."""
    _require_admin(p)
    values = {**values, "code": _code(values["code"]),
              "name": clean_text("name", values["name"], required=True)}
    async with node.db.write(node.node_id, p.id if p else None) as uow:
        taken = await uow.conn.execute(select(branches.c.id).where(branches.c.code ==
                                                                   values["code"]))
        if taken.first() is not None:
            raise ConflictError(f"branch code {values['code']} is taken")
        if values.get("region") is not None:
            found = await uow.conn.execute(select(regions.c.id).where(regions.c.code ==
                                                                      values["region"]))
            if found.first() is None:
                raise FieldError("region", f"no region {values['region']!r}")
        return await uow.insert("branches", {**values, "active": True})


async def list_departments(node: Node) -> list[dict[str, Any]]:
    """All departments, HQ's (no branch) and each branch's."""
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(
            select(departments).order_by(departments.c.branch, departments.c.name))).mappings()]


async def create_department(node: Node, p: Principal | None, name: str, branch: str | None
                            ) -> dict[str, Any]:
    """Add a department at HQ (branch None) or in a branch."""
    _require_admin(p)
    clean = clean_text("name", name, required=True)
    async with node.db.write(node.node_id, p.id if p else None) as uow:
        if branch is not None and not (await uow.conn.execute(
                select(branches.c.id).where(branches.c.code == branch))).first():
            raise FieldError("branch", f"no branch {branch!r}")
        same = await uow.conn.execute(select(departments.c.id).where(
            departments.c.name == clean, departments.c.branch.is_(None) if branch is None
            else departments.c.branch == branch))
        if same.first() is not None:
            raise ConflictError(f"department {clean} exists")
        return await uow.insert("departments", {"name": clean, "branch": branch})
