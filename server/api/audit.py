"""/api/v1/audit: search the audit log and verify every node's hash chain (domain.md
§9). Auditors, general managers and administrators only; branch-bound ones see their
branch's entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.audit_types import AuditEntryOut, AuditPage, ChainOut, VerifyOut
from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.types import to_out
from server.services import audit_query

Filter = Annotated[str | None, QueryParameter(max_length=64)]
From = Annotated[datetime | None, QueryParameter(name="from")]
To = Annotated[datetime | None, QueryParameter(name="to")]


class AuditController(Controller):
    """The audit log: logins, views of confidential archives, exports, approvals, key
    events, merges, erasures."""

    path = "/api/v1/audit"
    tags = ["audit"]

    @get("/")
    async def search(self, request: Req, node: NodeDep, action: Filter = None,
                     actor_id: Filter = None, actor: Filter = None,
                     customer_id: Filter = None, node_id: Filter = None,
                     branch: Filter = None, first: From = None, last: To = None,
                     cursor: Cursor = None, limit: Limit = 50) -> AuditPage:
        """Entries, newest first; `from` / `to` are instants (ISO 8601, a time without
        zone is local time)."""
        filters = {"action": action, "actor_id": actor_id, "actor": actor,
                   "customer_id": customer_id, "node_id": node_id, "branch": branch,
                   "from": first, "to": last}
        rows, nxt = await audit_query.search_log(node, request.user, filters, cursor, limit)
        return AuditPage(items=[to_out(r, AuditEntryOut) for r in rows], next_cursor=nxt)

    @get("/verify")
    async def verify(self, request: Req, node: NodeDep) -> VerifyOut:
        """Every node's chain held here, checked entry by entry: `intact`, or the breaks
        (an altered, missing, repeated or reordered entry)."""
        chains = await audit_query.verify_log(node, request.user)
        return VerifyOut(nodes=[to_out(c, ChainOut) for c in chains])


ROUTES: list[ControllerRouterHandler] = [AuditController]
"""The controllers of this module, registered by server/app.py."""
