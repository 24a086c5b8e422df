"""/api/v1/conflicts and /api/v1/sync/health."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, Parameter
from msgspec import Meta, Struct

from server.api.params import Limit, NodeDep, Req
from server.api.types import to_out
from server.errors import ForbiddenError
from server.services import conflicts as service
from server.services import nodes as node_service
from server.services import sync as sync_service

Filter = Annotated[str | None, Parameter(max_length=64)]


class ConflictOut(Struct, kw_only=True):
    id: str
    table_name: str
    row_id: str
    column_name: str
    customer_id: str | None
    branch: str | None
    policy: str
    winner_value: Any
    loser_value: Any
    winner_node: str
    loser_node: str
    winner_clock: int
    loser_clock: int
    winner_user: str | None = None
    loser_user: str | None = None
    detected_by: str
    status: str
    resolved_by: str | None
    resolution: str | None
    created_at: datetime


class ConflictPage(Struct, kw_only=True):
    items: list[ConflictOut]
    next_cursor: str | None


class Resolve(Struct, forbid_unknown_fields=True, kw_only=True):
    use: Literal["winner", "loser"] = "winner"
    note: Annotated[str, Meta(max_length=500)] | None = None


class PeerHealth(Struct, kw_only=True):
    node_id: str
    kind: str
    branch: str | None
    name: str
    revoked: bool
    last_contact: datetime | None
    last_error: str | None
    waiting_outbound: int
    batches_in: int
    quarantined: int
    clock_offset_ms: int | None
    bundles_sent: int = 0
    bundles_received: int = 0
    bundles_acknowledged: int = 0
    """Bundles sent to the peer whose changes it has acknowledged since."""
    bundles_waiting: list[str] = []
    """The peer's bundles this node holds but cannot apply yet: missing parts, or an
    earlier bundle not received (a gap)."""


class SyncHealth(Struct, kw_only=True):
    node_id: str
    peers: list[PeerHealth]


class ConflictController(Controller):
    path = "/api/v1/conflicts"
    tags = ["sync"]

    @get("/")
    async def list(self, request: Req, node: NodeDep, branch: Filter = None,
                   table_name: Filter = None, status: Filter = None, cursor: Filter = None,
                   limit: Limit = 50) -> ConflictPage:
        """Concurrent writes that lost, with both values, nodes, users and clocks."""
        rows, nxt = await service.list_conflicts(
            node, request.user, {"branch": branch, "table_name": table_name, "status": status},
            cursor, limit)
        return ConflictPage(items=[to_out(r, ConflictOut) for r in rows], next_cursor=nxt)

    @post("/{conflict_id:uuid}/resolve", status_code=200)
    async def resolve(self, request: Req, node: NodeDep, conflict_id: FromPath[UUID],
                      data: JSONBody[Resolve]) -> ConflictOut:
        """Close a conflict, keeping the winner or writing the losing value back."""
        row = await service.resolve(node, request.user, str(conflict_id), use=data.use,
                                    note=data.note)
        return to_out(row, ConflictOut)


@get("/api/v1/sync/health", tags=["sync"])
async def sync_health(request: Req, node: NodeDep) -> SyncHealth:
    """Per peer node: last contact, changes waiting, errors, quarantine, clock offset."""
    if request.user.role not in ("admin", "general_manager", "auditor", "sales_director"):
        raise ForbiddenError("sync health is for administrators and managers")
    peers = await sync_service.health(node, await node_service.list_nodes(node))
    return SyncHealth(node_id=node.node_id, peers=[to_out(p, PeerHealth) for p in peers])
