"""/api/v1: registration, ownership collisions (撞单), duplicates and merges,
handover (domain.md §3).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.types import ControllerRouterHandler

from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.registration_types import (
    CollisionRun,
    DueItem,
    DuePage,
    DuplicateList,
    DuplicateOut,
    HandoverEntry,
    HandoverOut,
    HandoverPage,
    HandoverRequest,
    ImportItem,
    ImportReport,
    ImportRequest,
    MergeRequest,
    NoticeOut,
    NoticePage,
)
from server.api.types import CustomerCreate, CustomerOut, to_out, values
from server.services import merges, registration
from server.services.customers import get_customer
from server.services.errors import FieldError

IdFilter = Annotated[str | None, Parameter(max_length=36)]


def _parse(raw: dict[str, Any]) -> registration.Item | FieldError:
    """One import item as a create body would be checked: values, or the first error."""
    try:
        body = msgspec.convert(raw, CustomerCreate)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        field = where.strip("`.").split(".")[0].split("[")[0] or "item"
        if message.startswith("Object contains unknown field `"):
            field = message.split("`")[1]
        return FieldError(field, message)
    return values(body, exclude=frozenset({"contacts"})), [values(c) for c in body.contacts]


class RegistrationController(Controller):
    """Registration and filing (客户登记 / 备案), duplicates and merges (客户合并),
    collisions (撞单), handover (客户交接) and notices."""

    path = "/api/v1"
    tags = ["registration"]

    @post("/customers/{customer_id:uuid}/file", status_code=200)
    async def file(self, request: Req, node: NodeDep, customer_id: FromPath[UUID]
                   ) -> CustomerOut:
        """File (备案) a registered customer: due within 5 working days of registration."""
        row = await registration.file_customer(node, request.user, str(customer_id))
        return to_out(row, CustomerOut)

    @get("/registrations/due")
    async def due(self, request: Req, node: NodeDep,
                  overdue: FromQuery[bool | None] = None,
                  due_soon: FromQuery[bool | None] = None,
                  cursor: Cursor = None, limit: Limit = 50) -> DuePage:
        """Your visible customers not filed yet, with the filing deadline; `overdue`
        and `due_soon` (deadline within one working day) filter and flag them."""
        rows, next_cursor = await registration.due_registrations(
            node, request.user, overdue=overdue, due_soon=due_soon, cursor=cursor,
            limit=limit)
        return DuePage(items=[to_out(r, DueItem) for r in rows], next_cursor=next_cursor)

    @post("/customers/import", status_code=200)
    async def import_(self, request: Req, node: NodeDep,
                      data: JSONBody[ImportRequest]) -> ImportReport:
        """Import customers: per item ok, duplicate (of whom, by mobile or ID number) or
        invalid (field, reason). A dry run writes nothing; otherwise the ok items are
        written in one transaction."""
        items = [_parse(raw) for raw in data.items]
        results, created = await registration.import_customers(
            node, request.user, items, dry_run=data.dry_run)
        return ImportReport(dry_run=data.dry_run, created=created,
                            items=[to_out(r, ImportItem) for r in results])

    @get("/customers/{customer_id:uuid}/duplicates")
    async def duplicates(self, request: Req, node: NodeDep, customer_id: FromPath[UUID]
                         ) -> DuplicateList:
        """Customers you see that may be this one: same mobile or ID number (blind
        index, confirmed), same or similar name, same pinyin; `by` says why."""
        rows = await merges.duplicates(node, request.user, str(customer_id))
        return DuplicateList(items=[to_out(r, DuplicateOut) for r in rows])

    @post("/customers/{customer_id:uuid}/merge", status_code=200)
    async def merge(self, request: Req, node: NodeDep, customer_id: FromPath[UUID],
                    data: JSONBody[MergeRequest]) -> CustomerOut:
        """Merge `absorbed_id` into this customer in one transaction. The absorbed id
        redirects here on every replica; its contacts and records show here."""
        survivor = await merges.merge_customers(node, request.user, str(customer_id),
                                                data.absorbed_id, data.reason)
        return to_out(await get_customer(node, request.user, survivor), CustomerOut)

    @post("/collisions/resolve", status_code=200)
    async def resolve(self, request: Req, node: NodeDep) -> CollisionRun:
        """Merge customers registered twice (the same mobile number) into the earliest
        registration now; every sync does the same for what it brought."""
        merged, reviewed = await merges.resolve_now(node, request.user)
        return CollisionRun(merged=merged, reviewed=reviewed)

    @post("/handovers", status_code=201)
    async def hand_over(self, request: Req, node: NodeDep,
                        data: JSONBody[HandoverRequest]) -> HandoverOut:
        """Hand a rep's customers to another rep (客户交接): department managers within
        their branch, sales directors and general managers anywhere."""
        out = await registration.hand_over(
            node, request.user, from_user=data.from_user, to_user=data.to_user,
            customer_ids=data.customer_ids, reason=data.reason, notify=data.notify)
        return to_out(out, HandoverOut)

    @get("/handovers")
    async def handovers(self, request: Req, node: NodeDep, from_user: IdFilter = None,
                        to_user: IdFilter = None, batch_id: IdFilter = None,
                        customer_id: IdFilter = None, cursor: Cursor = None,
                        limit: Limit = 50) -> HandoverPage:
        """The handover log, newest first."""
        rows, next_cursor = await registration.list_handovers(
            node, request.user, {"from_user": from_user, "to_user": to_user,
                                 "batch_id": batch_id, "customer_id": customer_id},
            cursor, limit)
        return HandoverPage(items=[to_out(r, HandoverEntry) for r in rows],
                            next_cursor=next_cursor)

    @get("/notices")
    async def notices(self, request: Req, node: NodeDep, unread: FromQuery[bool | None] = None,
                      kind: Annotated[str | None, Parameter(max_length=20)] = None,
                      cursor: Cursor = None, limit: Limit = 50) -> NoticePage:
        """Your notices (collision 撞单, handover), newest first."""
        rows, next_cursor = await registration.list_notices(
            node, request.user, unread=unread, kind=kind, cursor=cursor, limit=limit)
        return NoticePage(items=[to_out(r, NoticeOut) for r in rows], next_cursor=next_cursor)

    @post("/notices/{notice_id:uuid}/read", status_code=200)
    async def read(self, request: Req, node: NodeDep, notice_id: FromPath[UUID]
                   ) -> NoticeOut:
        """Mark one of your notices read."""
        return to_out(await registration.read_notice(node, request.user, str(notice_id)),
                      NoticeOut)


ROUTES: list[ControllerRouterHandler] = [RegistrationController]
"""The controllers and handlers of this module, registered by server/app.py."""
