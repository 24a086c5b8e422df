"""/api/v1: classification schemes, overrides and class history (客户异动),
visit plans, visits, surveys, care and reception expenses (domain.md §4-§5).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.care_types import (
    ClassChangeOut,
    ClassChangePage,
    DueItem,
    DuePage,
    ExpenseCreate,
    ExpenseOut,
    ExpensePage,
    OverrideIn,
    OverrideList,
    OverrideOut,
    PlanCreate,
    PlanList,
    PlanOut,
    PlanPatch,
    RecomputeOut,
    SchemeCreate,
    SchemeList,
    SchemeOut,
    SchemePatch,
    SurveySummary,
    VisitCreate,
    VisitOut,
    VisitPage,
    rules_in,
)
from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import changes, to_out, values
from server.services import classification, reception, visits

Filter = Annotated[str | None, QueryParameter(max_length=64)]
Code = Annotated[str, PathParameter(max_length=32)]
From = Annotated[date | None, QueryParameter(name="from")]


class ClassSchemeController(Controller):
    """Classification schemes (客户分类), defined at headquarters."""

    path = "/api/v1/class-schemes"
    tags = ["classification"]

    @get("/")
    async def list(self, request: Req, node: NodeDep,
                   active: FromQuery[bool | None] = None) -> SchemeList:
        """Every scheme, by code."""
        rows = await classification.list_schemes(node, request.user, active)
        return SchemeList(items=[to_out(r, SchemeOut) for r in rows])

    @post("/")
    async def create(self, request: Req, node: NodeDep,
                     data: JSONBody[SchemeCreate]) -> SchemeOut:
        """Define a scheme (HQ: general manager, sales director, admin)."""
        body = values(data)
        body["rules"] = rules_in(data.rules)
        return to_out(await classification.create_scheme(node, request.user, body), SchemeOut)

    @get("/{code:str}")
    async def read(self, request: Req, node: NodeDep, code: Code) -> SchemeOut:
        """One scheme."""
        return to_out(await classification.get_scheme(node, request.user, code), SchemeOut)

    @patch("/{code:str}")
    async def update(self, request: Req, node: NodeDep, code: Code,
                     data: JSONBody[SchemePatch]) -> SchemeOut:
        """Change a scheme's name, rules, default class or active flag (HQ only)."""
        body = changes(data)
        if "rules" in body:
            body["rules"] = rules_in(body["rules"])
        return to_out(await classification.update_scheme(node, request.user, code, body),
                      SchemeOut)

    @post("/{code:str}/recompute", status_code=200)
    async def recompute(self, request: Req, node: NodeDep, code: Code
                        ) -> RecomputeOut:
        """Classify now: at HQ every customer (or the caller's branch), at a branch node
        its own customers. Overridden customers keep their class."""
        return to_out(await classification.recompute(node, request.user, code), RecomputeOut)


class CustomerCareController(Controller):
    """A customer's classes, class history, visits and reception expenses."""

    path = "/api/v1/customers"
    tags = ["classification", "visits", "reception"]

    @get("/{customer_id:uuid}/classes")
    async def classes(self, request: Req, node: NodeDep,
                      customer_id: FromPath[UUID]) -> OverrideList:
        """The customer's standing class overrides."""
        rows = await classification.overrides_of(node, request.user, str(customer_id))
        return OverrideList(items=[to_out(r, OverrideOut) for r in rows])

    @put("/{customer_id:uuid}/classes/{scheme:str}")
    async def override(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                       scheme: Code, data: JSONBody[OverrideIn]) -> OverrideOut:
        """Fix the customer's class under a scheme (general manager, sales director,
        department manager); recomputation keeps it until it is cleared."""
        row = await classification.set_override(node, request.user, str(customer_id), scheme,
                                                data.cls, data.reason)
        return to_out(row, OverrideOut)

    @delete("/{customer_id:uuid}/classes/{scheme:str}")
    async def clear(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                    scheme: Code,
                    reason: Annotated[str | None, QueryParameter(max_length=500)] = None) -> None:
        """Clear an override: the rules classify the customer again at once."""
        await classification.clear_override(node, request.user, str(customer_id), scheme,
                                            reason)

    @get("/{customer_id:uuid}/class-changes")
    async def class_changes(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                            scheme: Filter = None, cursor: Cursor = None,
                            limit: Limit = 50) -> ClassChangePage:
        """Class history (客户异动), newest first: old → new, by rule or override, why."""
        rows, nxt = await classification.class_changes(node, request.user, str(customer_id),
                                                       scheme, cursor, limit)
        return ClassChangePage(items=[to_out(r, ClassChangeOut) for r in rows], next_cursor=nxt)

    @post("/{customer_id:uuid}/visits")
    async def add_visit(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                        data: JSONBody[VisitCreate]) -> VisitOut:
        """Record a visit, return visit (回访), satisfaction survey or care contact."""
        row = await visits.record_visit(node, request.user, str(customer_id), values(data))
        return to_out(row, VisitOut)

    @get("/{customer_id:uuid}/visits")
    async def customer_visits(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                              kind: Filter = None, cursor: Cursor = None,
                              limit: Limit = 50) -> VisitPage:
        """The customer's visits, newest first."""
        rows, nxt = await visits.list_visits(
            node, request.user, {"customer_id": str(customer_id), "kind": kind}, cursor, limit)
        return VisitPage(items=[to_out(r, VisitOut) for r in rows], next_cursor=nxt)

    @post("/{customer_id:uuid}/reception-expenses")
    async def add_expense(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                          data: JSONBody[ExpenseCreate]) -> ExpenseOut:
        """Record a reception within its class's per-person cap and companion count;
        refused for a customer never registered (客户未登记)."""
        row = await reception.record_expense(node, request.user, str(customer_id),
                                             values(data))
        return to_out(row, ExpenseOut)

    @get("/{customer_id:uuid}/reception-expenses")
    async def customer_expenses(self, request: Req, node: NodeDep,
                                customer_id: FromPath[UUID], cursor: Cursor = None,
                                limit: Limit = 50) -> ExpensePage:
        """The customer's reception expenses, newest first."""
        rows, nxt = await reception.list_expenses(
            node, request.user, {"customer_id": str(customer_id)}, cursor, limit)
        return ExpensePage(items=[to_out(r, ExpenseOut) for r in rows], next_cursor=nxt)


class VisitPlanController(Controller):
    """Visit plans per class (拜访计划), defined at headquarters."""

    path = "/api/v1/visit-plans"
    tags = ["visits"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, scheme: Filter = None,
                   active: FromQuery[bool | None] = None) -> PlanList:
        """Every plan, by scheme and class."""
        rows = await visits.list_plans(node, request.user, scheme, active)
        return PlanList(items=[to_out(r, PlanOut) for r in rows])

    @post("/")
    async def create(self, request: Req, node: NodeDep, data: JSONBody[PlanCreate]) -> PlanOut:
        """A plan for one class of one scheme: how often, which care (HQ only)."""
        return to_out(await visits.create_plan(node, request.user, values(data)), PlanOut)

    @patch("/{plan_id:uuid}")
    async def update(self, request: Req, node: NodeDep, plan_id: FromPath[UUID],
                     data: JSONBody[PlanPatch]) -> PlanOut:
        """Change a plan (HQ only)."""
        row = await visits.update_plan(node, request.user, str(plan_id), changes(data))
        return to_out(row, PlanOut)


class VisitController(Controller):
    """Visits across customers, and reminders."""

    path = "/api/v1/visits"
    tags = ["visits"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, user_id: Filter = None,
                   kind: Filter = None, branch: Filter = None, customer_id: Filter = None,
                   first: From = None, to: FromQuery[date | None] = None,
                   cursor: Cursor = None, limit: Limit = 50) -> VisitPage:
        """Visits of customers you may see, newest first; `from` / `to` are local days."""
        filters = {"user_id": user_id, "kind": kind, "branch": branch,
                   "customer_id": customer_id, "from": first, "to": to}
        rows, nxt = await visits.list_visits(node, request.user, filters, cursor, limit)
        return VisitPage(items=[to_out(r, VisitOut) for r in rows], next_cursor=nxt)

    @get("/due")
    async def due(self, request: Req, node: NodeDep,
                  days: Annotated[int, QueryParameter(ge=0, le=366)] = 14,
                  cursor: Cursor = None, limit: Limit = 50) -> DuePage:
        """Reminders within `days` days for customers with a plan for their class: due
        and overdue visits, birthdays (roles that read birthdays only), holidays."""
        rows, nxt = await visits.due_reminders(node, request.user, days, cursor, limit)
        return DuePage(items=[to_out(r, DueItem) for r in rows], next_cursor=nxt)


class SurveyController(Controller):
    """Satisfaction (满意度) across visible customers."""

    path = "/api/v1/surveys"
    tags = ["visits"]

    @get("/summary")
    async def summary(self, request: Req, node: NodeDep, first: From = None,
                      to: FromQuery[date | None] = None) -> SurveySummary:
        """Count, average, share below target (score < 4) with the responses to follow
        up, and yearly survey coverage of visible customers."""
        return to_out(await visits.survey_summary(node, request.user, first, to),
                      SurveySummary)


class ReceptionController(Controller):
    """Reception expenses (招待费) across customers."""

    path = "/api/v1/reception-expenses"
    tags = ["reception"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, customer_id: Filter = None,
                   branch: Filter = None, user_id: Filter = None,
                   reception_class: Filter = None, first: From = None,
                   to: FromQuery[date | None] = None, cursor: Cursor = None,
                   limit: Limit = 50) -> ExpensePage:
        """Expenses of customers you may see, newest first; `from` / `to` on the day spent."""
        filters = {"customer_id": customer_id, "branch": branch, "user_id": user_id,
                   "reception_class": reception_class, "from": first, "to": to}
        rows, nxt = await reception.list_expenses(node, request.user, filters, cursor, limit)
        return ExpensePage(items=[to_out(r, ExpenseOut) for r in rows], next_cursor=nxt)


ROUTES: list[ControllerRouterHandler] = [
    ClassSchemeController, CustomerCareController, VisitPlanController, VisitController,
    SurveyController, ReceptionController,
]
"""The controllers and handlers of this module, registered by server/app.py."""
