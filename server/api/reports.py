"""/api/v1/reports: monthly reports computed live, and the snapshots issued of them
(domain.md §10; complaint statistics due by the 10th of the following month).

HQ readers (general manager, sales directors, auditors) see every branch with a
per-branch breakdown; branch readers only their own branch (403 for another)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.params import Cursor, Limit, NodeDep, Req
from server.api.reports_types import IssueIn, Report, Snapshot, SnapshotPage
from server.api.types import to_out
from server.services import reports

Branch = Annotated[str | None, QueryParameter(max_length=16)]
Period = Annotated[str, QueryParameter(pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                       description="local month (Asia/Shanghai), YYYY-MM")]
PeriodFilter = Annotated[str | None, QueryParameter(
    pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="local month, YYYY-MM")]
KindFilter = Annotated[str | None, QueryParameter(max_length=32)]
KindPath = Annotated[str, PathParameter(max_length=32, description=", ".join(reports.KINDS))]


class ReportController(Controller):
    """Monthly reports: complaints, sla, visits, tickets, reps, sync_health."""

    path = "/api/v1/reports"
    tags = ["reports"]

    @get("/issued")
    async def list_issued(self, request: Req, node: NodeDep, kind: KindFilter = None,
                          period: PeriodFilter = None, branch: Branch = None,
                          cursor: Cursor = None, limit: Limit = 50) -> SnapshotPage:
        """Issued report snapshots you may read, newest first."""
        rows, nxt = await reports.list_issued(
            node, request.user, {"kind": kind, "period": period, "branch": branch},
            cursor, limit)
        return SnapshotPage(items=[to_out(r, Snapshot) for r in rows], next_cursor=nxt)

    @post("/issued", status_code=201)
    async def issue(self, request: Req, node: NodeDep, data: JSONBody[IssueIn]) -> Snapshot:
        """Issue a monthly report as a snapshot (idempotent: the same id every time)."""
        row = await reports.issue_month(node, request.user, data.kind, data.period,
                                        data.branch)
        return to_out(row, Snapshot)

    @get("/issued/{report_id:uuid}")
    async def get_issued(self, request: Req, node: NodeDep, report_id: FromPath[UUID]
                         ) -> Snapshot:
        """One issued snapshot."""
        return to_out(await reports.get_issued(node, request.user, str(report_id)), Snapshot)

    @get("/{kind:str}")
    async def compute(self, request: Req, node: NodeDep, kind: KindPath, period: Period,
                      branch: Branch = None) -> Report:
        """Report `kind` of local month `period`, computed now over your scope."""
        out = await reports.report(node, request.user, kind, period, branch)
        return to_out(out, Report)


ROUTES: list[ControllerRouterHandler] = [ReportController]
"""The controllers of this module, registered by server/app.py."""
