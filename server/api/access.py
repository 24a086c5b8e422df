"""/api/v1/access-requests: access approvals (调阅 / 借阅 / 导出, domain.md §9)."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.types import ControllerRouterHandler

from server.api.access_types import (
    AccessRequestIn,
    AccessRequestOut,
    AccessRequestPage,
    DecisionIn,
    Kind,
    Status,
)
from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import to_out, values
from server.services import access


class AccessRequestController(Controller):
    """Requests to read, export or borrow archives, and their decisions."""

    path = "/api/v1/access-requests"
    tags = ["access"]

    @post("/")
    async def create(self, request: Req, node: NodeDep,
                     data: JSONBody[AccessRequestIn]) -> AccessRequestOut:
        """File a request; `approver_role` says who decides it (the department manager
        for one's own department, the general manager otherwise, for top-secret
        archives and for every export)."""
        row = await access.create_request(node, request.user, values(data))
        return to_out(row, AccessRequestOut)

    @get("/")
    async def list(self, request: Req, node: NodeDep,
                   status: FromQuery[Status | None] = None, kind: FromQuery[Kind | None] = None,
                   requester_id: FromQuery[UUID | None] = None,
                   customer_id: FromQuery[UUID | None] = None,
                   mine: FromQuery[bool | None] = None,
                   to_approve: FromQuery[bool | None] = None,
                   cursor: Cursor = None, limit: Limit = 50) -> AccessRequestPage:
        """Requests the caller made, may decide, or oversees, newest first; `mine` —
        made by the caller; `to_approve` — pending and the caller's to decide."""
        filters = {"status": status, "kind": kind, "mine": mine, "to_approve": to_approve,
                   "requester_id": str(requester_id) if requester_id else None,
                   "customer_id": str(customer_id) if customer_id else None}
        rows, nxt = await access.list_requests(node, request.user, filters, cursor, limit)
        return AccessRequestPage(items=[to_out(r, AccessRequestOut) for r in rows],
                                 next_cursor=nxt)

    @get("/{request_id:uuid}")
    async def read(self, request: Req, node: NodeDep, request_id: FromPath[UUID]
                   ) -> AccessRequestOut:
        """One request; `active` says whether its grant is in force by this node's clock."""
        row = await access.get_request(node, request.user, str(request_id))
        return to_out(row, AccessRequestOut)

    @post("/{request_id:uuid}/approve", status_code=200)
    async def approve(self, request: Req, node: NodeDep, request_id: FromPath[UUID],
                      data: JSONBody[DecisionIn | None] = None) -> AccessRequestOut:
        """Approve: the grant runs `hours` from now."""
        row = await access.decide(node, request.user, str(request_id), True,
                                  data.note if data else None)
        return to_out(row, AccessRequestOut)

    @post("/{request_id:uuid}/decline", status_code=200)
    async def decline(self, request: Req, node: NodeDep, request_id: FromPath[UUID],
                      data: JSONBody[DecisionIn | None] = None) -> AccessRequestOut:
        """Decline, with a note saying why."""
        row = await access.decide(node, request.user, str(request_id), False,
                                  data.note if data else None)
        return to_out(row, AccessRequestOut)

    @post("/{request_id:uuid}/return", status_code=200)
    async def give_back(self, request: Req, node: NodeDep, request_id: FromPath[UUID]
                        ) -> AccessRequestOut:
        """The requester ends the grant early (a lending: the archive is returned)."""
        row = await access.return_grant(node, request.user, str(request_id))
        return to_out(row, AccessRequestOut)

    @post("/{request_id:uuid}/revoke", status_code=200)
    async def revoke(self, request: Req, node: NodeDep, request_id: FromPath[UUID],
                     data: JSONBody[DecisionIn | None] = None) -> AccessRequestOut:
        """An approver ends a grant in force."""
        row = await access.revoke(node, request.user, str(request_id),
                                  data.note if data else None)
        return to_out(row, AccessRequestOut)


ROUTES: list[ControllerRouterHandler] = [AccessRequestController]
"""The controllers of this module, registered by server/app.py."""
