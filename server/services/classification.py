"""Customer classification (客户分类, domain.md §4): HQ's schemes, recomputation from
measurable facts on demand and on a schedule, overrides by authorised roles, and the
class history (客户异动) every change leaves behind.

Facts come from SQL aggregates per page of customers, never from loading everything.
Each customer is classified on the node that holds it: HQ's daily run covers customers
of branches without a node of their own, a branch node its own customers (it holds all
of their purchases, complaints and credit requests), so two nodes do not record the
same change twice. An on-demand recompute at HQ covers every customer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import TABLES, UnitOfWork, utcnow
from schema._rules import DEFAULT_SCHEMES, check_rules, classes_of, classify
from server.node import Node
from server.services.errors import ConflictError, FieldError, ForbiddenError, NotFoundError
from server.services.principal import Principal
from server.services.records import customer_group, page, visible_customer

log = logging.getLogger("branchline.classification")

customers = TABLES["customers"]
schemes = TABLES["class_schemes"]
overrides = TABLES["class_overrides"]
changes_t = TABLES["class_changes"]
purchases = TABLES["purchases"]
complaints = TABLES["complaints"]
credit_requests = TABLES["credit_requests"]
branches = TABLES["branches"]

SCHEME_WRITERS = frozenset({"general_manager", "sales_director", "admin"})
"""Who defines schemes and visit plans (HQ reference data)."""
RECOMPUTERS = SCHEME_WRITERS | {"dept_manager"}
OVERRIDERS = frozenset({"general_manager", "sales_director", "dept_manager"})
PAGE = 500
OVERRIDE_NS = uuid.UUID("6f1d2a0e-53c1-4b8e-9a57-0c2b8a7f4e11")


def override_id(customer_id: str, scheme: str) -> str:
    """The one override row of a customer under a scheme, named alike on every node."""
    return str(uuid.uuid5(OVERRIDE_NS, f"{customer_id}|{scheme}"))


def require_hq_reference(node: Node, p: Principal, what: str) -> None:
    """Refuse a write of HQ reference data away from HQ or by a role that may not."""
    if node.role != "hq":
        raise ForbiddenError(f"{what} are reference data written only at headquarters "
                             f"(总部); this is branch node {node.settings.node.branch_code}")
    if p.role not in SCHEME_WRITERS:
        raise ForbiddenError(f"a {p.role} cannot change {what}; ask the general manager "
                             "or the sales director")


# -- schemes --------------------------------------------------------------------------

async def _scheme(conn: AsyncConnection, code: str) -> dict[str, Any]:
    row = (await conn.execute(select(schemes).where(schemes.c.code == code))).mappings().first()
    if row is None:
        raise NotFoundError(f"no class scheme {code!r}")
    return dict(row)


async def _check_target_free(conn: AsyncConnection, target: str, code: str) -> None:
    """Two active schemes setting one column would overwrite each other for ever."""
    other = (await conn.execute(select(schemes.c.code).where(
        schemes.c.target == target, schemes.c.active, schemes.c.code != code))).scalar()
    if other is not None:
        raise FieldError("target", f"active scheme {other!r} already sets {target}; "
                         "deactivate it first")


async def list_schemes(node: Node, p: Principal, active: bool | None = None
                       ) -> list[dict[str, Any]]:
    """Every class scheme (reference data everyone may read), by code."""
    query = select(schemes).order_by(schemes.c.code)
    if active is not None:
        query = query.where(schemes.c.active == active)
    async with node.db.read() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def get_scheme(node: Node, p: Principal, code: str) -> dict[str, Any]:
    """One class scheme by code."""
    async with node.db.read() as conn:
        return await _scheme(conn, code)


async def create_scheme(node: Node, p: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Define a scheme at HQ: unknown facts, ops or targets are refused by field."""
    require_hq_reference(node, p, "class schemes")
    rules, default = check_rules(values["target"], values.get("rules") or [],
                                 values.get("default_class"))
    row = {"code": values["code"], "name": values["name"].strip(), "target": values["target"],
           "rules": rules, "default_class": default, "active": values.get("active", True)}
    async with node.db.write(node.node_id, p.id) as uow:
        if (await uow.conn.execute(select(schemes.c.id).where(
                schemes.c.code == row["code"]))).first() is not None:
            raise ConflictError(f"class scheme {row['code']!r} exists")
        if row["active"]:
            await _check_target_free(uow.conn, row["target"], row["code"])
        return await uow.insert("class_schemes", row)


async def update_scheme(node: Node, p: Principal, code: str, changes: dict[str, Any]
                        ) -> dict[str, Any]:
    """Change a scheme's name, rules, default class or whether it is active."""
    require_hq_reference(node, p, "class schemes")
    async with node.db.write(node.node_id, p.id) as uow:
        old = await _scheme(uow.conn, code)
        merged = {**old, **changes}
        rules, default = check_rules(merged["target"], merged["rules"], merged["default_class"])
        if "rules" in changes:
            changes["rules"] = rules
        if "default_class" in changes:
            changes["default_class"] = default
        if "name" in changes:
            changes["name"] = changes["name"].strip()
        if merged["active"]:
            await _check_target_free(uow.conn, merged["target"], code)
        return await uow.update("class_schemes", old["id"], changes)


async def install_defaults(node: Node, p: Principal) -> int:
    """Install the default schemes (key/ordinary/potential, A-D, lifecycle, value,
    credit) that do not exist yet, and no second scheme for a column already set by
    an active one; returns how many were added."""
    require_hq_reference(node, p, "class schemes")
    added = 0
    async with node.db.write(node.node_id, p.id) as uow:
        taken = {(r.code, r.target, r.active) for r in await uow.conn.execute(
            select(schemes.c.code, schemes.c.target, schemes.c.active))}
        for s in DEFAULT_SCHEMES:
            if any(code == s["code"] or (active and target == s["target"])
                   for code, target, active in taken):
                continue
            await uow.insert("class_schemes", {**s, "active": True})
            added += 1
    return added


# -- recomputation --------------------------------------------------------------------

def _node_scope(node: Node, *, scheduled: bool = False) -> ColumnElement[bool]:
    """The customers this node classifies (see the module docstring)."""
    if node.role != "hq":
        return customers.c.branch == node.settings.node.branch_code
    if not scheduled:
        return true()
    with_node = select(branches.c.code).where(branches.c.node_id.is_not(None))
    return or_(customers.c.branch.is_(None), customers.c.branch.not_in(with_node))


async def _groups(conn: AsyncConnection, ids: list[str]) -> dict[str, str]:
    """Every customer merged (directly or not) into one of `ids`, mapped to it, so a
    survivor's facts include its absorbed archives' purchases and complaints."""
    root = {i: i for i in ids}
    frontier = list(ids)
    while frontier:
        found = (await conn.execute(select(customers.c.id, customers.c.merged_into).where(
            customers.c.merged_into.in_(frontier)))).all()
        found = [r for r in found if r.id not in root]
        for r in found:
            root[r.id] = root[r.merged_into]
        frontier = [r.id for r in found]
    return root


async def _facts(conn: AsyncConnection, rows: Sequence[Any], now: datetime, total: int
                 ) -> dict[str, dict[str, Any]]:
    """The facts of a page of customers, from three GROUP BY queries."""
    root = await _groups(conn, [r.id for r in rows])
    every = list(root)
    since = now - timedelta(days=365)
    recent = purchases.c.purchased_at >= since
    bought: dict[str, dict[str, Any]] = {}
    for r in await conn.execute(select(
            purchases.c.customer_id, func.max(purchases.c.purchased_at).label("last"),
            func.sum(case((recent, 1), else_=0)).label("n365"),
            func.sum(case((recent, purchases.c.amount_fen), else_=0)).label("a365"),
            func.sum(purchases.c.amount_fen).label("total"),
    ).where(purchases.c.customer_id.in_(every)).group_by(purchases.c.customer_id)):
        b = bought.setdefault(root[r.customer_id], {"last": None, "n": 0, "a": 0, "t": 0})
        b["last"] = r.last if b["last"] is None else max(b["last"], r.last)
        b["n"] += int(r.n365 or 0)
        b["a"] += int(r.a365 or 0)
        b["t"] += int(r.total or 0)
    counted: dict[tuple[str, str], int] = {}
    for kind, query in (
        ("complaints", select(complaints.c.customer_id, func.count().label("n")).where(
            complaints.c.customer_id.in_(every), complaints.c.received_at >= since
        ).group_by(complaints.c.customer_id)),
        ("rejections", select(credit_requests.c.customer_id, func.count().label("n")).where(
            credit_requests.c.customer_id.in_(every), credit_requests.c.status == "rejected"
        ).group_by(credit_requests.c.customer_id)),
    ):
        for r in await conn.execute(query):
            key = (kind, root[r.customer_id])
            counted[key] = counted.get(key, 0) + int(r.n)
    facts = {}
    for c in rows:
        b = bought.get(c.id, {"last": None, "n": 0, "a": 0, "t": 0})
        facts[c.id] = {
            "recency_days": None if b["last"] is None else max(0, (now - b["last"]).days),
            "purchases_365d": b["n"], "amount_365d_fen": b["a"], "amount_total_fen": b["t"],
            "contribution_share": b["a"] / total if total > 0 else 0.0,
            "complaints_365d": counted.get(("complaints", c.id), 0),
            "credit_rejections": counted.get(("rejections", c.id), 0),
            "points": int(c.points or 0),
            "relationship_days": max(0, (now - c.registered_at).days),
        }
    return facts


async def facts_of(node: Node, customer_id: str, now: datetime | None = None
                   ) -> dict[str, Any]:
    """One customer's facts as this node's recompute sees them (for explanations)."""
    now = now or utcnow()
    scope = _node_scope(node)
    async with node.db.read() as conn:
        row = (await conn.execute(select(customers.c.id, customers.c.points,
                                         customers.c.registered_at).where(
            customers.c.id == customer_id))).first()
        if row is None:
            raise NotFoundError("customer not found")
        return (await _facts(conn, [row], now, await _total(conn, scope, now)))[row.id]


async def _total(conn: AsyncConnection, scope: ColumnElement[bool], now: datetime) -> int:
    """The last 365 days' amount of every customer in scope (absorbed ones included)."""
    joined = purchases.join(customers, customers.c.id == purchases.c.customer_id)
    total = (await conn.execute(
        select(func.coalesce(func.sum(purchases.c.amount_fen), 0)).select_from(joined)
        .where(scope, purchases.c.purchased_at >= now - timedelta(days=365)))).scalar_one()
    return int(total or 0)


async def _record(uow: UnitOfWork, customer_id: str, scheme: dict[str, Any], old: str | None,
                  new: str | None, source: str, reason: str) -> None:
    if old != new:
        await uow.update("customers", customer_id, {scheme["target"]: new})
    await uow.insert("class_changes", {
        "customer_id": customer_id, "scheme": scheme["code"], "old_class": old,
        "new_class": new, "source": source, "reason": reason[:500],
        "changed_by": uow.actor_id, "changed_at": utcnow(), "node_id": uow.node_id})


async def _recompute(node: Node, actor_id: str | None, scheme: dict[str, Any],
                     scope: ColumnElement[bool], now: datetime) -> tuple[int, int]:
    """Classify every customer in `scope` under `scheme`, page by page (one transaction
    per page); returns (customers examined, classes changed)."""
    column = customers.c[scheme["target"]]
    async with node.db.read() as conn:
        total = await _total(conn, scope, now)
    examined = changed = 0
    after = ""
    while True:
        async with node.db.write(node.node_id, actor_id) as uow:
            rows = (await uow.conn.execute(
                select(customers.c.id, customers.c.points, customers.c.registered_at,
                       column.label("current")).where(
                    scope, customers.c.merged_into.is_(None), customers.c.id > after)
                .order_by(customers.c.id).limit(PAGE))).all()
            if not rows:
                break
            ids = [r.id for r in rows]
            kept = set((await uow.conn.execute(select(overrides.c.customer_id).where(
                overrides.c.scheme == scheme["code"], overrides.c.cls.is_not(None),
                overrides.c.customer_id.in_(ids)))).scalars())
            facts = await _facts(uow.conn, rows, now, total)
            for r in rows:
                if r.id in kept:
                    continue  # an authorised person's class stands until they clear it
                cls, reason = classify(scheme["rules"], scheme["default_class"], facts[r.id])
                if cls is None or cls == r.current:
                    continue
                await _record(uow, r.id, scheme, r.current, cls, "rule", reason)
                changed += 1
            examined += len(rows)
            after = rows[-1].id
        if len(rows) < PAGE:
            break
    return examined, changed


async def recompute(node: Node, p: Principal, code: str, now: datetime | None = None
                    ) -> dict[str, Any]:
    """Recompute one scheme on demand: at HQ every customer (or the caller's branch),
    at a branch node its own customers. Returns what was examined and changed."""
    if p.role not in RECOMPUTERS:
        raise ForbiddenError(f"a {p.role} cannot recompute classes")
    async with node.db.read() as conn:
        scheme = await _scheme(conn, code)
    if not scheme["active"]:
        raise ConflictError(f"class scheme {code!r} is inactive")
    scope = _node_scope(node)
    if p.branch is not None:
        scope = and_(scope, customers.c.branch == p.branch)
    examined, changed = await _recompute(node, p.id, scheme, scope, now or utcnow())
    return {"scheme": code, "examined": examined, "changed": changed}


async def recompute_all(node: Node, now: datetime | None = None) -> int:
    """The scheduled run: every active scheme over the customers this node classifies;
    returns how many classes changed."""
    async with node.db.read() as conn:
        active = [dict(r) for r in (await conn.execute(
            select(schemes).where(schemes.c.active).order_by(schemes.c.code))).mappings()]
    scope = _node_scope(node, scheduled=True)
    changed = 0
    for scheme in active:
        changed += (await _recompute(node, None, scheme, scope, now or utcnow()))[1]
    return changed


def start_classification_schedule(node: Node, interval_seconds: float = 86_400,
                                  first_delay_seconds: float = 60) -> asyncio.Task[None]:
    """Recompute every `interval_seconds` (daily by default) until cancelled; the first
    run waits a little so a node starts serving at once."""
    async def loop() -> None:
        await asyncio.sleep(first_delay_seconds)
        while True:
            try:
                changed = await recompute_all(node)
                log.info("classification recomputed: %d classes changed", changed)
            except Exception:  # a bad day must not stop tomorrow's run
                log.exception("classification recompute failed")
            await asyncio.sleep(interval_seconds)
    return asyncio.create_task(loop(), name="classification-schedule")


# -- overrides and history ------------------------------------------------------------

def _require_overrider(p: Principal) -> None:
    if p.role not in OVERRIDERS:
        raise ForbiddenError(f"a {p.role} cannot override a customer's class")


async def set_override(node: Node, p: Principal, customer_id: str, code: str, cls: str,
                       reason: str) -> dict[str, Any]:
    """Fix a customer's class under a scheme: recomputation keeps it until cleared."""
    _require_overrider(p)
    async with node.db.write(node.node_id, p.id) as uow:
        customer = await visible_customer(uow.conn, p, customer_id)
        scheme = await _scheme(uow.conn, code)
        allowed = classes_of(scheme["rules"], scheme["default_class"])
        if cls not in allowed:
            raise FieldError("cls", f"scheme {code!r} has no class {cls!r}; "
                             f"classes: {', '.join(allowed)}")
        row_id = override_id(customer["id"], code)
        values = {"cls": cls, "reason": reason, "set_by": p.id}
        if await uow.get("class_overrides", row_id) is None:
            row = await uow.insert("class_overrides", {
                "id": row_id, "customer_id": customer["id"], "scheme": code, **values})
        else:
            row = await uow.update("class_overrides", row_id, values)
        await _record(uow, customer["id"], scheme, customer[scheme["target"]], cls, "override",
                      f"override: {reason}")
        return row


async def clear_override(node: Node, p: Principal, customer_id: str, code: str,
                         reason: str | None) -> dict[str, Any]:
    """Remove an override; the rules classify the customer again at once."""
    _require_overrider(p)
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        scheme = await _scheme(conn, code)
    facts = await facts_of(node, customer["id"])
    async with node.db.write(node.node_id, p.id) as uow:
        row_id = override_id(customer["id"], code)
        current = await uow.get("class_overrides", row_id)
        if current is None or current["cls"] is None:
            raise NotFoundError(f"no override of {code!r} for this customer")
        row = await uow.update("class_overrides", row_id,
                               {"cls": None, "reason": reason, "set_by": p.id})
        cls, why = classify(scheme["rules"], scheme["default_class"], facts)
        old = (await uow.get("customers", customer["id"]) or {}).get(scheme["target"])
        await _record(uow, customer["id"], scheme, old, cls if cls is not None else old,
                      "override", f"override removed ({reason or 'no reason given'}); {why}")
        return row


async def class_changes(node: Node, p: Principal, customer_id: str, scheme: str | None,
                        cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A customer's class history (客户异动), newest first, absorbed archives included."""
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        group = await customer_group(conn, customer["id"])
        query = select(changes_t).where(changes_t.c.customer_id.in_(group))
        if scheme is not None:
            query = query.where(changes_t.c.scheme == scheme)
        return await page(conn, query, changes_t.c.id, cursor, limit)


async def overrides_of(node: Node, p: Principal, customer_id: str) -> list[dict[str, Any]]:
    """A customer's standing overrides."""
    async with node.db.read() as conn:
        customer = await visible_customer(conn, p, customer_id)
        return [dict(r) for r in (await conn.execute(select(overrides).where(
            overrides.c.customer_id == customer["id"], overrides.c.cls.is_not(None))
            .order_by(overrides.c.scheme))).mappings()]

