"""/api/v1: complaints (客户投诉) and service tickets (报修 / 派工)
with the price list (domain.md §6-§7).

Flow actions are `POST /…/{id}/<action>` answering 200 with the record as it is
afterwards; a step out of order is a 409 problem, a role that may not take it a 403
(server/services/complaints.py and tickets.py say who may do what).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.service_desk_types import (
    Assign,
    Check,
    CompensationRequest,
    CompensationStatus,
    ComplaintCreate,
    ComplaintOut,
    ComplaintPage,
    ComplaintStats,
    ComplaintStatus,
    Completion,
    Decline,
    Demand,
    Dispatch,
    Escalation,
    Investigation,
    PriceItemCreate,
    PriceItemOut,
    PriceItemPage,
    PriceItemPatch,
    Reply,
    ReturnVisit,
    Review,
    TicketCreate,
    TicketDetail,
    TicketOut,
    TicketPage,
    TicketStats,
    TicketStatus,
)
from server.api.types import changes, to_out, values
from server.services import complaints, tickets

Id = FromPath[UUID]
Filter = Annotated[str | None, QueryParameter(max_length=64)]
IdFilter = FromQuery[UUID | None]
Month = Annotated[str, QueryParameter(pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                      description="local month, YYYY-MM")]


def _id(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _complaint(row: dict[str, Any]) -> ComplaintOut:
    return to_out(row, ComplaintOut)


class ComplaintController(Controller):
    """Complaints (客户投诉): record, flow, escalation, compensation, statistics."""

    path = "/api/v1/complaints"
    tags = ["complaints"]

    @post("/")
    async def create(self, request: Req, node: NodeDep,
                     data: JSONBody[ComplaintCreate]) -> ComplaintOut:
        """Record a complaint; the 7-day deadline (and, if major, the 24-hour HQ
        deadline) runs from `received_at`."""
        return _complaint(await complaints.create_complaint(node, request.user, values(data)))

    @get("/")
    async def list(
        self, request: Req, node: NodeDep, status: FromQuery[ComplaintStatus | None] = None,
        branch: Filter = None, customer_id: IdFilter = None,
        demand: FromQuery[Demand | None] = None,
        compensation_status: FromQuery[CompensationStatus | None] = None,
        major: FromQuery[bool | None] = None,
        overdue: FromQuery[bool | None] = None, hq_overdue: FromQuery[bool | None] = None,
        cursor: Cursor = None, limit: Limit = 50,
    ) -> ComplaintPage:
        """Complaints you may see, newest first; `overdue` (7 days) and `hq_overdue`
        (24 hours, majors) are judged against the clock now."""
        filters = {"status": status, "branch": branch, "customer_id": _id(customer_id),
                   "demand": demand, "compensation_status": compensation_status,
                   "major": major, "overdue": overdue, "hq_overdue": hq_overdue}
        rows, next_cursor = await complaints.list_complaints(node, request.user, filters,
                                                             cursor, limit)
        return ComplaintPage(items=[_complaint(r) for r in rows], next_cursor=next_cursor)

    @get("/stats")
    async def stats(self, request: Req, node: NodeDep, month: Month,
                    branch: Filter = None) -> ComplaintStats:
        """Monthly complaint statistics over complaints received in `month`."""
        return to_out(await complaints.complaint_stats(node, request.user, month, branch),
                      ComplaintStats)

    @get("/{complaint_id:uuid}")
    async def read(self, request: Req, node: NodeDep, complaint_id: Id) -> ComplaintOut:
        """One complaint."""
        return _complaint(await complaints.get_complaint(node, request.user, str(complaint_id)))

    @post("/{complaint_id:uuid}/accept", status_code=200)
    async def accept(self, request: Req, node: NodeDep, complaint_id: Id) -> ComplaintOut:
        """Accept a received complaint (受理)."""
        return _complaint(await complaints.accept(node, request.user, str(complaint_id)))

    @post("/{complaint_id:uuid}/decline", status_code=200)
    async def decline(self, request: Req, node: NodeDep, complaint_id: Id,
                      data: JSONBody[Decline]) -> ComplaintOut:
        """Decline a received complaint, with the reason."""
        return _complaint(await complaints.decline(node, request.user, str(complaint_id),
                                                   data.reason))

    @post("/{complaint_id:uuid}/assign", status_code=200)
    async def assign(self, request: Req, node: NodeDep, complaint_id: Id,
                     data: JSONBody[Assign]) -> ComplaintOut:
        """Assign an accepted complaint to a department and handler."""
        return _complaint(await complaints.assign(node, request.user, str(complaint_id),
                                                  data.department, data.handler_id))

    @post("/{complaint_id:uuid}/investigate", status_code=200)
    async def investigate(self, request: Req, node: NodeDep, complaint_id: Id,
                          data: JSONBody[Investigation]) -> ComplaintOut:
        """File the investigation report."""
        return _complaint(await complaints.investigate(node, request.user, str(complaint_id),
                                                       values(data)))

    @post("/{complaint_id:uuid}/review", status_code=200)
    async def review(self, request: Req, node: NodeDep, complaint_id: Id,
                     data: JSONBody[Review]) -> ComplaintOut:
        """A manager reviews the investigation."""
        return _complaint(await complaints.review(node, request.user, str(complaint_id),
                                                  data.note))

    @post("/{complaint_id:uuid}/reply", status_code=200)
    async def reply(self, request: Req, node: NodeDep, complaint_id: Id,
                    data: JSONBody[Reply]) -> ComplaintOut:
        """Record the reply given to the customer, written or oral."""
        return _complaint(await complaints.reply(node, request.user, str(complaint_id),
                                                 data.reply, data.channel))

    @post("/{complaint_id:uuid}/close", status_code=200)
    async def close(self, request: Req, node: NodeDep, complaint_id: Id) -> ComplaintOut:
        """Close a replied complaint."""
        return _complaint(await complaints.close(node, request.user, str(complaint_id)))

    @post("/{complaint_id:uuid}/return-visit", status_code=200)
    async def return_visit(self, request: Req, node: NodeDep, complaint_id: Id,
                           data: JSONBody[ReturnVisit]) -> ComplaintOut:
        """The return visit after closing: satisfaction 1-5 and a note."""
        return _complaint(await complaints.return_visit(
            node, request.user, str(complaint_id), data.satisfaction, data.note))

    @post("/{complaint_id:uuid}/reopen", status_code=200)
    async def reopen(self, request: Req, node: NodeDep, complaint_id: Id) -> ComplaintOut:
        """Re-open a declined or closed complaint (a new cycle of the flow)."""
        return _complaint(await complaints.reopen(node, request.user, str(complaint_id)))

    @post("/{complaint_id:uuid}/escalate", status_code=200)
    async def escalate(self, request: Req, node: NodeDep, complaint_id: Id,
                       data: JSONBody[Escalation]) -> ComplaintOut:
        """Flag as major and escalate to HQ (deadline: 24 hours after receipt)."""
        return _complaint(await complaints.escalate(node, request.user, str(complaint_id),
                                                    data.reason))

    @post("/{complaint_id:uuid}/compensation", status_code=200)
    async def compensation(self, request: Req, node: NodeDep, complaint_id: Id,
                           data: JSONBody[CompensationRequest]) -> ComplaintOut:
        """Propose a compensation; it waits for approval by amount."""
        return _complaint(await complaints.request_compensation(
            node, request.user, str(complaint_id), data.amount_fen))

    @post("/{complaint_id:uuid}/compensation/approve", status_code=200)
    async def approve(self, request: Req, node: NodeDep, complaint_id: Id) -> ComplaintOut:
        """Approve the pending compensation (role by amount: see the approval matrix)."""
        return _complaint(await complaints.decide_compensation(
            node, request.user, str(complaint_id), approve=True))

    @post("/{complaint_id:uuid}/compensation/reject", status_code=200)
    async def reject(self, request: Req, node: NodeDep, complaint_id: Id) -> ComplaintOut:
        """Reject the pending compensation."""
        return _complaint(await complaints.decide_compensation(
            node, request.user, str(complaint_id), approve=False))


class PriceItemController(Controller):
    """The service price list (收费标准): reference data written only at HQ."""

    path = "/api/v1/price-items"
    tags = ["tickets"]

    @get("/")
    async def list(self, node: NodeDep, active: FromQuery[bool | None] = None,
                   cursor: Cursor = None, limit: Limit = 50) -> PriceItemPage:
        """The price list, newest first."""
        rows, next_cursor = await tickets.list_price_items(node, active, cursor, limit)
        return PriceItemPage(items=[to_out(r, PriceItemOut) for r in rows],
                             next_cursor=next_cursor)

    @post("/")
    async def create(self, request: Req, node: NodeDep,
                     data: JSONBody[PriceItemCreate]) -> PriceItemOut:
        """Add a price item (admin or general manager, on the HQ node)."""
        return to_out(await tickets.create_price_item(node, request.user, values(data)),
                      PriceItemOut)

    @patch("/{item_id:uuid}")
    async def update(self, request: Req, node: NodeDep, item_id: FromPath[UUID],
                     data: JSONBody[PriceItemPatch]) -> PriceItemOut:
        """Change a price item's name, fee or availability (HQ only)."""
        return to_out(await tickets.update_price_item(node, request.user, str(item_id),
                                                      changes(data)), PriceItemOut)


class TicketController(Controller):
    """Service and repair tickets (报修 / 派工)."""

    path = "/api/v1/tickets"
    tags = ["tickets"]

    @post("/")
    async def create(self, request: Req, node: NodeDep,
                     data: JSONBody[TicketCreate]) -> TicketDetail:
        """Take a repair request (front desk or phone)."""
        return to_out(await tickets.create_ticket(node, request.user, values(data)),
                      TicketDetail)

    @get("/")
    async def list(
        self, request: Req, node: NodeDep, status: FromQuery[TicketStatus | None] = None,
        technician_id: IdFilter = None, branch: Filter = None,
        customer_id: IdFilter = None, cursor: Cursor = None, limit: Limit = 50,
    ) -> TicketPage:
        """Tickets you may see, newest first."""
        filters = {"status": status, "technician_id": _id(technician_id), "branch": branch,
                   "customer_id": _id(customer_id)}
        rows, next_cursor = await tickets.list_tickets(node, request.user, filters,
                                                       cursor, limit)
        return TicketPage(items=[to_out(r, TicketOut) for r in rows], next_cursor=next_cursor)

    @get("/stats")
    async def stats(self, request: Req, node: NodeDep, month: Month, branch: Filter = None,
                    technician_id: IdFilter = None) -> TicketStats:
        """Monthly totals, timeliness rate (及时率) and pass rate (合格率)."""
        return to_out(await tickets.ticket_stats(node, request.user, month, branch,
                                                 _id(technician_id)), TicketStats)

    @get("/{ticket_id:uuid}")
    async def read(self, request: Req, node: NodeDep, ticket_id: Id) -> TicketDetail:
        """One ticket, with the customer's signature."""
        return to_out(await tickets.get_ticket(node, request.user, str(ticket_id)),
                      TicketDetail)

    @post("/{ticket_id:uuid}/dispatch", status_code=200)
    async def dispatch(self, request: Req, node: NodeDep, ticket_id: Id,
                       data: JSONBody[Dispatch]) -> TicketDetail:
        """Send a technician (未派工 → 已派工未确认)."""
        return to_out(await tickets.dispatch(node, request.user, str(ticket_id),
                                             data.technician_id), TicketDetail)

    @post("/{ticket_id:uuid}/confirm", status_code=200)
    async def confirm(self, request: Req, node: NodeDep, ticket_id: Id) -> TicketDetail:
        """The dispatched technician confirms the job (已确认)."""
        return to_out(await tickets.confirm(node, request.user, str(ticket_id)), TicketDetail)

    @post("/{ticket_id:uuid}/arrive", status_code=200)
    async def arrive(self, request: Req, node: NodeDep, ticket_id: Id) -> TicketDetail:
        """The technician is on site (timeliness: within 10 minutes of the appointment)."""
        return to_out(await tickets.arrive(node, request.user, str(ticket_id)), TicketDetail)

    @post("/{ticket_id:uuid}/complete", status_code=200)
    async def complete(self, request: Req, node: NodeDep, ticket_id: Id,
                       data: JSONBody[Completion]) -> TicketDetail:
        """Finish the job with the price-list fee, consent and signature (已完成)."""
        return to_out(await tickets.complete(node, request.user, str(ticket_id), values(data)),
                      TicketDetail)

    @post("/{ticket_id:uuid}/check", status_code=200)
    async def check(self, request: Req, node: NodeDep, ticket_id: Id,
                    data: JSONBody[Check]) -> TicketDetail:
        """Spot-check return visit of a done ticket: passed or not."""
        return to_out(await tickets.check(node, request.user, str(ticket_id), data.passed),
                      TicketDetail)


ROUTES: list[ControllerRouterHandler] = [ComplaintController, PriceItemController,
                                         TicketController]
"""The controllers and handlers of this module, registered by server/app.py."""
