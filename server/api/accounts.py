"""/api/v1: purchases, loyalty points and credit
(domain.md §5, §8).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, Parameter, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.accounts_types import (
    CreditCheck,
    CreditDecision,
    CreditHistory,
    CreditLimitResult,
    CreditLimitSet,
    CreditRequestCreate,
    CreditRequestOut,
    CreditRequestPage,
    CreditStatus,
    LimitRequestOut,
    LimitRequestPage,
    LoyaltyFlags,
    MemberPoints,
    PointsChange,
    PointsResult,
    Preconditions,
    PurchaseCreate,
    PurchaseOut,
    PurchasePage,
)
from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import changes, to_out, values
from server.node import Node
from server.services import credit, credit_limits, loyalty, purchases

Code = Annotated[str | None, Parameter(max_length=16)]
CustomerId = FromQuery[UUID | None]
RequestState = Literal["requested", "rejected", "approved", "shipped"]
LimitState = Literal["pending", "granted", "denied"]


def _purchases(rows: list[dict[str, Any]], next_cursor: str | None) -> PurchasePage:
    return PurchasePage(items=[to_out(r, PurchaseOut) for r in rows], next_cursor=next_cursor)


class CustomerAccountsController(Controller):
    """A customer's purchases, points and credit."""

    path = "/api/v1/customers/{customer_id:uuid}"
    tags = ["purchases", "loyalty", "credit"]

    @post("/purchases")
    async def add_purchase(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                           data: JSONBody[PurchaseCreate]) -> PurchaseOut:
        """Record a purchase; it earns one point per yuan, posted at once. On credit it
        must pass the credit check (or ship against an approved over-limit request)."""
        body = values(data)
        body["items"] = [values(i) for i in data.items]
        row = await purchases.record_purchase(node, request.user, str(customer_id), body)
        return to_out(row, PurchaseOut)

    @get("/purchases")
    async def customer_purchases(self, request: Req, node: NodeDep,
                                 customer_id: FromPath[UUID], cursor: Cursor = None,
                                 limit: Limit = 50) -> PurchasePage:
        """The customer's purchases (with archives merged into it), latest recorded first."""
        rows, nxt = await purchases.list_purchases(
            node, request.user, {"customer_id": str(customer_id)}, cursor, limit)
        return _purchases(rows, nxt)

    @get("/points")
    async def points(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                     limit: Annotated[int, Parameter(ge=1, le=500)] = 20) -> MemberPoints:
        """The member's points balance over merged archives and the latest ledger
        entries this node holds."""
        out = await loyalty.member_points(node, request.user, str(customer_id), limit)
        return to_out(out, MemberPoints)

    @get("/credit")
    async def credit_status(self, request: Req, node: NodeDep,
                            customer_id: FromPath[UUID]) -> CreditStatus:
        """Credit limit, preconditions, billed in the last 30 days, available."""
        out = await credit.credit_status(node, request.user, str(customer_id))
        return to_out(out, CreditStatus)

    @post("/credit/check", status_code=200)
    async def credit_check(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                           data: JSONBody[CreditCheck]) -> CreditDecision:
        """Whether a shipment on credit may go today: allowed, needs_approval or refused."""
        out = await credit.check_credit(node, request.user, str(customer_id), data.amount_fen,
                                        data.prepaid_fen)
        return to_out(out, CreditDecision)

    @post("/credit/requests")
    async def credit_request(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                             data: JSONBody[CreditRequestCreate]) -> CreditRequestOut:
        """Ask the regional manager (sales director) to approve an over-limit shipment."""
        row = await credit.request_credit(node, request.user, str(customer_id),
                                          data.amount_fen, data.reason)
        return to_out(row, CreditRequestOut)

    @put("/credit/preconditions")
    async def preconditions(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                            data: JSONBody[Preconditions]) -> CreditStatus:
        """Mark the ID copy on file, the contract signed, last year settled (or not)."""
        out = await credit.set_preconditions(node, request.user, str(customer_id),
                                             changes(data))
        return to_out(out, CreditStatus)

    @put("/credit-limit")
    async def credit_limit(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                           data: JSONBody[CreditLimitSet]) -> CreditLimitResult:
        """Set the credit limit (finance, general manager): it takes effect at HQ; on a
        branch node it becomes a request that HQ grants."""
        out = await credit_limits.set_limit(node, request.user, str(customer_id),
                                            data.credit_limit_fen, data.reason)
        return to_out(out, CreditLimitResult)

    @get("/credit/history")
    async def credit_history(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                             cursor: Cursor = None, limit: Limit = 50) -> CreditHistory:
        """Every change of the credit limit (old → new, who, when, why), newest first,
        and requests still waiting for HQ."""
        out = await credit_limits.limit_history(node, request.user, str(customer_id), cursor,
                                                limit)
        return to_out(out, CreditHistory)


class PurchaseController(Controller):
    """Purchases across customers (for reports and classification)."""

    path = "/api/v1/purchases"
    tags = ["purchases"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, branch: Code = None,
                   customer_id: CustomerId = None,
                   from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
                   to: FromQuery[datetime | None] = None,
                   on_credit: FromQuery[bool | None] = None,
                   cursor: Cursor = None, limit: Limit = 50) -> PurchasePage:
        """Purchases of customers you may see; `from`/`to` bound purchased_at as
        [from, to) (RFC 3339 with offset)."""
        filters = {"branch": branch, "customer_id": None if customer_id is None
                   else str(customer_id), "from": from_, "to": to, "on_credit": on_credit}
        return _purchases(*await purchases.list_purchases(node, request.user, filters,
                                                          cursor, limit))


class LoyaltyController(Controller):
    """Points earned and redeemed at any store (积分)."""

    path = "/api/v1"
    tags = ["loyalty"]

    async def _change(self, request: Req, node: Node, data: PointsChange, reason: str
                      ) -> PointsResult:
        out = await loyalty.change_points(node, request.user, data.member_id, data.points,
                                          reason, data.note)
        return to_out(out, PointsResult)

    @post("/points/redeem")
    async def redeem(self, request: Req, node: NodeDep, data: JSONBody[PointsChange]
                     ) -> PointsResult:
        """Redeem points for a member card (any store's member). Posted at once where
        this node holds the member (409 when the balance it knows is too low); recorded
        unposted otherwise, for headquarters to post."""
        return await self._change(request, node, data, "redeem")

    @post("/points/earn")
    async def earn(self, request: Req, node: NodeDep, data: JSONBody[PointsChange]
                   ) -> PointsResult:
        """Earn points for a member card (activities, offers), at any store."""
        return await self._change(request, node, data, "earn")

    @get("/loyalty/flags")
    async def flags(self, request: Req, node: NodeDep) -> LoyaltyFlags:
        """For headquarters staff: balances below zero after sync, entries unposted for
        over a day, entries of members unknown here."""
        return to_out(await loyalty.flags(node, request.user), LoyaltyFlags)


class CreditRequestController(Controller):
    """Over-limit shipments waiting for the regional manager (sales director)."""

    path = "/api/v1/credit-requests"
    tags = ["credit"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, status: FromQuery[RequestState | None]
                   = None, customer_id: CustomerId = None, cursor: Cursor = None,
                   limit: Limit = 50) -> CreditRequestPage:
        """Credit requests of customers you may see, newest first."""
        rows, nxt = await credit.list_requests(
            node, request.user, status, None if customer_id is None else str(customer_id),
            cursor, limit)
        return CreditRequestPage(items=[to_out(r, CreditRequestOut) for r in rows],
                                 next_cursor=nxt)

    @post("/{request_id:uuid}/approve", status_code=200)
    async def approve(self, request: Req, node: NodeDep, request_id: FromPath[UUID]
                      ) -> CreditRequestOut:
        """Sign off an over-limit shipment (sales director or general manager)."""
        row = await credit.decide_request(node, request.user, str(request_id), True)
        return to_out(row, CreditRequestOut)

    @post("/{request_id:uuid}/reject", status_code=200)
    async def reject(self, request: Req, node: NodeDep, request_id: FromPath[UUID]
                     ) -> CreditRequestOut:
        """Refuse an over-limit shipment (sales director or general manager)."""
        row = await credit.decide_request(node, request.user, str(request_id), False)
        return to_out(row, CreditRequestOut)


class CreditLimitRequestController(Controller):
    """Branches' credit limit requests, granted or denied at headquarters."""

    path = "/api/v1/credit-limit-requests"
    tags = ["credit"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, status: FromQuery[LimitState | None]
                   = None, cursor: Cursor = None, limit: Limit = 50) -> LimitRequestPage:
        """Limit requests of customers you may see, newest first."""
        rows, nxt = await credit_limits.list_limit_requests(node, request.user, status,
                                                            cursor, limit)
        return LimitRequestPage(items=[to_out(r, LimitRequestOut) for r in rows],
                                next_cursor=nxt)

    @post("/{request_id:uuid}/grant", status_code=200)
    async def grant(self, request: Req, node: NodeDep, request_id: FromPath[UUID]
                    ) -> LimitRequestOut:
        """Grant a branch's limit request: the limit takes effect everywhere."""
        row = await credit_limits.decide_limit_request(node, request.user, str(request_id),
                                                       True)
        return to_out({**row, "reason": None}, LimitRequestOut)

    @post("/{request_id:uuid}/deny", status_code=200)
    async def deny(self, request: Req, node: NodeDep, request_id: FromPath[UUID]
                   ) -> LimitRequestOut:
        """Deny a branch's limit request."""
        row = await credit_limits.decide_limit_request(node, request.user, str(request_id),
                                                       False)
        return to_out({**row, "reason": None}, LimitRequestOut)


ROUTES: list[ControllerRouterHandler] = [
    CustomerAccountsController, PurchaseController, LoyaltyController,
    CreditRequestController, CreditLimitRequestController,
]
"""The controllers and handlers of this module, registered by server/app.py."""
