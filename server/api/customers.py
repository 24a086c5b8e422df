"""/api/v1/customers: the customer archive, its contacts and field history."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import (
    ContactCreate,
    ContactList,
    ContactOut,
    ContactPatch,
    CustomerCreate,
    CustomerOut,
    CustomerPage,
    CustomerPatch,
    DestructionRecord,
    ErasureRequest,
    HistoryEntry,
    HistoryPage,
    changes,
    to_out,
    values,
)
from server.errors import ForbiddenError
from server.services import customers as service
from server.services import erasure, registration

Filter = Annotated[str | None, Parameter(max_length=200)]


class CustomerController(Controller):
    """Customer archives (客户档案)."""

    path = "/api/v1/customers"
    tags = ["customers"]

    @post("/")
    async def create(
        self,
        request: Req,
        node: NodeDep,
        data: JSONBody[CustomerCreate],
    ) -> CustomerOut:
        """Register a customer (客户登记), optionally with contacts. A referral belongs to
        the referring rep only if `asked_for_referrer`; otherwise to the rep registering
        it (a manager names the owner or owns it). A mobile number registered before on
        this node is a 409 naming who holds the customer: the earlier registration owns
        it (撞单)."""
        contacts = [values(c) for c in data.contacts]
        row = await registration.register_customer(
            node, request.user, values(data, exclude=frozenset({"contacts"})), contacts
        )
        return to_out(row, CustomerOut)

    @get("/")
    async def list(
        self,
        request: Req,
        node: NodeDep,
        q: Filter = None,
        mobile: Filter = None,
        id_number: Filter = None,
        customer_class: Filter = None,
        branch: Filter = None,
        owner_id: Filter = None,
        lifecycle_stage: Filter = None,
        tags: Filter = None,
        source: Filter = None,
        department: Filter = None,
        intention: FromQuery[bool | None] = None,
        agency: FromQuery[bool | None] = None,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> CustomerPage:
        """Customers you may see, newest first; `q` searches names (汉字, pinyin,
        initials); other parameters filter by the field of the same name."""
        filters = {
            "mobile": mobile,
            "id_number": id_number,
            "customer_class": customer_class,
            "branch": branch,
            "owner_id": owner_id,
            "lifecycle_stage": lifecycle_stage,
            "tags": tags,
            "source": source,
            "department": department,
            "intention": intention,
            "agency": agency,
        }
        rows, next_cursor = await service.list_customers(
            node, request.user, filters, q, cursor, limit
        )
        return CustomerPage(items=[to_out(r, CustomerOut) for r in rows], next_cursor=next_cursor)

    @get("/{customer_id:uuid}")
    async def read(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
    ) -> CustomerOut:
        """One customer archive with its contacts. A customer merged into another answers
        with the surviving archive (another id; `merged_ids` lists the absorbed)."""
        return to_out(await service.get_customer(node, request.user, str(customer_id)), CustomerOut)

    @patch("/{customer_id:uuid}")
    async def update(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
        data: JSONBody[CustomerPatch],
    ) -> CustomerOut:
        """Change only the fields sent; each change is kept in the field history."""
        row = await service.update_customer(node, request.user, str(customer_id), changes(data))
        return to_out(row, CustomerOut)

    @get("/{customer_id:uuid}/history")
    async def history(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> HistoryPage:
        """Who changed which field, when, from what to what (newest first)."""
        rows, next_cursor = await service.customer_history(
            node, request.user, str(customer_id), cursor, limit
        )
        return HistoryPage(items=[to_out(r, HistoryEntry) for r in rows], next_cursor=next_cursor)

    @get("/{customer_id:uuid}/contacts")
    async def contacts(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
    ) -> ContactList:
        """The customer's contact persons."""
        rows = await service.list_contacts(node, request.user, str(customer_id))
        return ContactList(items=[to_out(r, ContactOut) for r in rows])

    @post("/{customer_id:uuid}/erase", status_code=200)
    async def erase(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
        data: JSONBody[ErasureRequest],
    ) -> DestructionRecord:
        """Erase the customer's personal data (crypto-shredding, domain.md §9): only a
        general manager at HQ approves it, after a department head's review."""
        if request.user.role not in erasure.APPROVERS:
            raise ForbiddenError("only a general manager approves destroying an archive")
        record = await erasure.erase_customer(
            node, str(customer_id), reviewed_by=data.reviewed_by,
            approved_by=request.user.username, reason=data.reason, actor_id=request.user.id)
        return to_out(record, DestructionRecord)

    @post("/{customer_id:uuid}/contacts")
    async def add_contact(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
        data: JSONBody[ContactCreate],
    ) -> ContactOut:
        """Add a contact person."""
        row = await service.create_contact(node, request.user, str(customer_id), values(data))
        return to_out(row, ContactOut)

    @patch("/{customer_id:uuid}/contacts/{contact_id:uuid}")
    async def update_contact(
        self,
        request: Req,
        node: NodeDep,
        customer_id: FromPath[UUID],
        contact_id: FromPath[UUID],
        data: JSONBody[ContactPatch],
    ) -> ContactOut:
        """Change a contact person's fields."""
        row = await service.update_contact(
            node, request.user, str(customer_id), str(contact_id), changes(data)
        )
        return to_out(row, ContactOut)
