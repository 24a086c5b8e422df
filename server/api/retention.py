"""/api/v1: archives due for destruction, destruction requests (review by the department
head, approval and crypto-erasure by the general manager) and a customer's subject
access export (domain.md §9)."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.types import ControllerRouterHandler

from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.retention_types import (
    Decision,
    DestructionCreate,
    DestructionOut,
    DestructionPage,
    DueOut,
    DuePage,
    Status,
    SubjectExport,
)
from server.api.types import to_out
from server.services import retention


class RetentionController(Controller):
    """Archives whose retention (10 years after the relationship ended) has run out."""

    path = "/api/v1/retention"
    tags = ["retention"]

    @get("/due")
    async def due(self, request: Req, node: NodeDep, cursor: Cursor = None,
                  limit: Limit = 50) -> DuePage:
        """Archives in your scope past their retention end, with the status of their
        destruction request (archive clerk, department manager, general manager)."""
        rows, nxt = await retention.due(node, request.user, cursor, limit)
        return DuePage(items=[to_out(r, DueOut) for r in rows], next_cursor=nxt)


class DestructionController(Controller):
    """Destruction requests: requested → reviewed (department head) → erased (general
    manager's approval at HQ crypto-erases the archive); a decline ends one."""

    path = "/api/v1/destruction-requests"
    tags = ["retention"]

    @post("/")
    async def create(self, request: Req, node: NodeDep,
                     data: JSONBody[DestructionCreate]) -> DestructionOut:
        """Ask for an archive's destruction (archive clerk, department manager, general
        manager); `retention_expired` is refused (409) before the retention end."""
        row = await retention.request_destruction(node, request.user, data.customer_id,
                                                  data.basis, data.reason)
        return to_out(row, DestructionOut)

    @get("/")
    async def list(self, request: Req, node: NodeDep, status: FromQuery[Status | None] = None,
                   customer_id: FromQuery[UUID | None] = None,
                   cursor: Cursor = None, limit: Limit = 50) -> DestructionPage:
        """Destruction requests of archives you may see, newest first."""
        filters = {"status": status,
                   "customer_id": str(customer_id) if customer_id is not None else None}
        rows, nxt = await retention.list_requests(node, request.user, filters, cursor, limit)
        return DestructionPage(items=[to_out(r, DestructionOut) for r in rows],
                               next_cursor=nxt)

    @get("/{request_id:uuid}")
    async def read(self, request: Req, node: NodeDep,
                   request_id: FromPath[UUID]) -> DestructionOut:
        """One destruction request."""
        return to_out(await retention.get_request(node, request.user, str(request_id)),
                      DestructionOut)

    @post("/{request_id:uuid}/review", status_code=200)
    async def review(self, request: Req, node: NodeDep, request_id: FromPath[UUID],
                     data: JSONBody[Decision]) -> DestructionOut:
        """The department head's review: the manager of the archive's department (or an
        HQ department manager without a department)."""
        row = await retention.decide_review(node, request.user, str(request_id),
                                            data.approve, data.note)
        return to_out(row, DestructionOut)

    @post("/{request_id:uuid}/approve", status_code=200)
    async def approve(self, request: Req, node: NodeDep, request_id: FromPath[UUID],
                      data: JSONBody[Decision]) -> DestructionOut:
        """The general manager's decision after the review (409 before it); approving
        crypto-erases the archive at HQ and links the destruction record."""
        row = await retention.decide_approval(node, request.user, str(request_id),
                                              data.approve, data.note)
        return to_out(row, DestructionOut)


class SubjectExportController(Controller):
    """A customer's copy of everything held about them (privacy law)."""

    path = "/api/v1/customers"
    tags = ["retention"]

    @get("/{customer_id:uuid}/subject-export")
    async def subject_export(self, request: Req, node: NodeDep,
                             customer_id: FromPath[UUID]) -> SubjectExport:
        """Archive, contacts, visits, complaints, tickets, purchases, point entries,
        consents and field history as one JSON document; confidential values only in
        plaintext for the classes your role reads. Audited as `subject_export`."""
        doc = await retention.subject_export(node, request.user, str(customer_id))
        return to_out(doc, SubjectExport)


ROUTES: list[ControllerRouterHandler] = [
    RetentionController, DestructionController, SubjectExportController,
]
"""The controllers of this module, registered by server/app.py."""
