"""/api/v1/analytics: RFM, the 80/20 curve, the customer pyramid, dormant customers,
class changes and churn, lifetime value, householding (domain.md §10).

Readable by the general manager, sales directors, department managers (their branch or
department), archive clerks, finance and auditors; each sees the customers of their
scope. Responses carry aggregates, customer ids and names — never a phone or ID number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from litestar import Controller, get
from litestar.params import FromQuery, Parameter, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.analytics_types import (
    Changes,
    Clv,
    Contribution,
    Dormant,
    Households,
    Pyramid,
    Rfm,
)
from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import to_out
from server.services import analytics_base, analytics_households, analytics_rfm

WindowDays = Annotated[int, Parameter(ge=1, le=3650)]
AsOf = Annotated[datetime | None, Parameter(
    description="the instant analysed (RFC 3339 with offset); default now")]
SchemeColumn = Literal["customer_class", "abc_class", "lifecycle_stage", "value_class",
                       "credit_class"]
Segment = Literal["champions", "loyal", "potential_loyalist", "new", "promising",
                  "need_attention", "about_to_sleep", "cant_lose", "at_risk", "hibernating",
                  "lost"]
Kind = Literal["id_number", "org_code", "mobile"]


class AnalyticsController(Controller):
    """Customer analytics over the customers you may see."""

    path = "/api/v1/analytics"
    tags = ["analytics"]

    @get("/rfm")
    async def rfm(self, request: Req, node: NodeDep, window_days: WindowDays = 365,
                  as_of: AsOf = None, segment: FromQuery[Segment | None] = None,
                  cursor: Cursor = None, limit: Limit = 50) -> Rfm:
        """RFM: recency, frequency and monetary quintile scores (5 best) and segments;
        customers and amounts per segment and a page of scored customers (largest
        amount first, `segment` filters)."""
        out = await analytics_rfm.rfm(node, request.user, window_days=window_days,
                                      as_of=as_of, segment=segment, cursor=cursor,
                                      limit=limit)
        return to_out(out, Rfm)

    @get("/contribution")
    async def contribution(self, request: Req, node: NodeDep, window_days: WindowDays = 365,
                           as_of: AsOf = None) -> Contribution:
        """The 80/20 contribution curve at each percentile of buyers, and the share of
        the amount from the top 20 %."""
        out = await analytics_rfm.contribution(node, request.user, window_days=window_days,
                                               as_of=as_of)
        return to_out(out, Contribution)

    @get("/pyramid")
    async def pyramid(self, request: Req, node: NodeDep,
                      scheme_column: FromQuery[SchemeColumn] = "customer_class",
                      window_days: WindowDays = 365, as_of: AsOf = None) -> Pyramid:
        """The customer pyramid: customers, buyers and amount per class."""
        out = await analytics_base.pyramid(node, request.user, scheme_column=scheme_column,
                                           window_days=window_days, as_of=as_of)
        return to_out(out, Pyramid)

    @get("/dormant")
    async def dormant(self, request: Req, node: NodeDep,
                      days: Annotated[int, Parameter(ge=1, le=3650)] = 180,
                      as_of: AsOf = None, cursor: Cursor = None, limit: Limit = 50
                      ) -> Dormant:
        """静止户: customers who bought before but not in the last `days` days."""
        out = await analytics_base.dormant(node, request.user, days=days, as_of=as_of,
                                           cursor=cursor, limit=limit)
        return to_out(out, Dormant)

    @get("/changes")
    async def changes(self, request: Req, node: NodeDep,
                      from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
                      to: FromQuery[datetime | None] = None) -> Changes:
        """客户异动 in [from, to) (default the last 30 days): class changes by scheme and
        old → new class, customers churned (moved to lost) and recovered."""
        out = await analytics_base.changes(node, request.user, from_=from_, to=to)
        return to_out(out, Changes)

    @get("/clv")
    async def clv(self, request: Req, node: NodeDep, window_days: WindowDays = 365,
                  as_of: AsOf = None,
                  lifetime_years: Annotated[float, Parameter(gt=0, le=100)] = 3.0,
                  margin: Annotated[float, Parameter(gt=0, le=1)] = 1.0,
                  scheme_column: FromQuery[SchemeColumn] = "customer_class",
                  cursor: Cursor = None, limit: Limit = 50) -> Clv:
        """Customer lifetime value = average order value × purchases per year ×
        `lifetime_years` × `margin`, per customer and averaged by class."""
        out = await analytics_rfm.clv(node, request.user, window_days=window_days,
                                      as_of=as_of, lifetime_years=lifetime_years,
                                      margin=margin, scheme_column=scheme_column,
                                      cursor=cursor, limit=limit)
        return to_out(out, Clv)

    @get("/households")
    async def households(self, request: Req, node: NodeDep,
                         kind: FromQuery[Kind | None] = None,
                         window_days: WindowDays = 365, as_of: AsOf = None,
                         cursor: Cursor = None, limit: Limit = 50) -> Households:
        """归户: archives sharing an ID number, credit code or mobile (confirmed by
        decrypting on the server; no value is shown), with their combined amounts."""
        out = await analytics_households.households(
            node, request.user, kind=kind, window_days=window_days, as_of=as_of,
            cursor=cursor, limit=limit)
        return to_out(out, Households)


ROUTES: list[ControllerRouterHandler] = [AnalyticsController]
"""The controllers of this module, registered by server/app.py."""
