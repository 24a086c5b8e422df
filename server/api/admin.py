"""Organisation, users and custom fields; health."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get, patch, post
from litestar.params import FromPath, JSONBody

from server.api.params import NodeDep, Req
from server.api.types import (
    BranchCreate,
    BranchOut,
    CustomFieldCreate,
    CustomFieldOut,
    CustomFieldPatch,
    DepartmentCreate,
    DepartmentOut,
    Health,
    RegionCreate,
    RegionOut,
    UserCreate,
    UserOut,
    UserPatch,
    UserUpdated,
    changes,
    to_out,
    values,
)
from server.node import VERSION
from server.services import custom_fields, org, users


@get("/health", exclude_from_auth=True, tags=["node"])
async def health(node: NodeDep) -> Health:
    """Node identity and state, for monitoring."""
    return Health(node_id=node.node_id, role=node.role, version=VERSION, database=node.db.kind)


@get("/api/v1/me", tags=["auth"])
async def me(request: Req) -> UserOut:
    """The logged-in user."""
    p = request.user
    return UserOut(
        id=p.id,
        username=p.username,
        display_name=p.display_name,
        role=p.role,
        branch=p.branch,
        department=p.department,
        active=True,
        created_at=p.created_at,
    )


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]

    @get("/")
    async def list(self, request: Req, node: NodeDep) -> list[UserOut]:
        """Every user (administrators, general managers, auditors)."""
        return [to_out(r, UserOut) for r in await users.list_users(node, request.user)]

    @post("/")
    async def create(self, request: Req, node: NodeDep, data: JSONBody[UserCreate]) -> UserOut:
        """Create a user (administrators)."""
        row = await users.create_user(node, request.user, **values(data))
        return to_out(row, UserOut)

    @patch("/{user_id:uuid}")
    async def update(self, request: Req, node: NodeDep, user_id: FromPath[UUID],
                     data: JSONBody[UserPatch]) -> UserUpdated:
        """Change a user (administrators, at headquarters). A new role, branch, department
        or `active: false` ends the user's sessions and revokes their devices, which
        wipe themselves; the user signs in again with the new rights."""
        row, revoked = await users.update_user(node, request.user, str(user_id),
                                               changes(data))
        return UserUpdated(user=to_out(row, UserOut), devices_revoked=revoked)


class OrgController(Controller):
    path = "/api/v1"
    tags = ["organisation"]

    @get("/regions")
    async def regions(self, node: NodeDep) -> list[RegionOut]:
        return [to_out(r, RegionOut) for r in await org.list_regions(node)]

    @post("/regions")
    async def add_region(
        self, request: Req, node: NodeDep, data: JSONBody[RegionCreate]
    ) -> RegionOut:
        return to_out(await org.create_region(node, request.user, data.code, data.name), RegionOut)

    @get("/branches")
    async def branches(self, node: NodeDep) -> list[BranchOut]:
        return [to_out(r, BranchOut) for r in await org.list_branches(node)]

    @post("/branches")
    async def add_branch(
        self, request: Req, node: NodeDep, data: JSONBody[BranchCreate]
    ) -> BranchOut:
        return to_out(await org.create_branch(node, request.user, values(data)), BranchOut)

    @get("/departments")
    async def departments(self, node: NodeDep) -> list[DepartmentOut]:
        return [to_out(r, DepartmentOut) for r in await org.list_departments(node)]

    @post("/departments")
    async def add_department(
        self, request: Req, node: NodeDep, data: JSONBody[DepartmentCreate]
    ) -> DepartmentOut:
        row = await org.create_department(node, request.user, data.name, data.branch)
        return to_out(row, DepartmentOut)


class CustomFieldController(Controller):
    path = "/api/v1/custom-fields"
    tags = ["custom fields"]

    @get("/")
    async def list(self, node: NodeDep) -> list[CustomFieldOut]:
        """Custom fields defined for customers (自定义卡片)."""
        return [to_out(r, CustomFieldOut) for r in await custom_fields.list_fields(node)]

    @post("/")
    async def create(
        self, request: Req, node: NodeDep, data: JSONBody[CustomFieldCreate]
    ) -> CustomFieldOut:
        """Define a custom field; it is usable at once, without a code change."""
        return to_out(
            await custom_fields.create_field(node, request.user, values(data)), CustomFieldOut
        )

    @patch("/{field_id:uuid}")
    async def update(
        self,
        request: Req,
        node: NodeDep,
        field_id: FromPath[UUID],
        data: JSONBody[CustomFieldPatch],
    ) -> CustomFieldOut:
        row = await custom_fields.update_field(node, request.user, str(field_id), changes(data))
        return to_out(row, CustomFieldOut)
