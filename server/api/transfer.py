"""/api/v1: importing customer lists from XLSX/CSV files and exporting customers to
them (domain.md §2, §9)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.types import ControllerRouterHandler

from server.api.params import NodeDep, Req
from server.api.registration import _parse as parse_item
from server.api.transfer_types import FileImportReport
from server.api.types import to_out
from server.services import exports, imports, reports
from server.services.errors import FieldError

Filter = Annotated[str | None, QueryParameter(max_length=200)]
Fmt = Annotated[str | None, QueryParameter(max_length=8)]
# The file itself may be 20 MB; a multipart envelope adds a little.
MAX_BODY = imports.MAX_BYTES + 64 * 1024


def _format(fmt: str | None, filename: str | None, data: bytes) -> str:
    """`?format=`, else the file name's extension, else the content (XLSX is a zip)."""
    if fmt is not None:
        return fmt.lower()
    if filename and "." in filename:
        ext = filename.rsplit(".", 1)[1].lower()
        if ext in imports.FORMATS:
            return ext
    return "xlsx" if data.startswith(b"PK\x03\x04") else "csv"


class TransferController(Controller):
    """Customer lists in and out as spreadsheets (导入 / 导出)."""

    path = "/api/v1"
    tags = ["import and export"]

    @post("/imports/customers", status_code=200, request_max_body_size=MAX_BODY)
    async def import_customers(self, request: Req, node: NodeDep, format: Fmt = None,
                               dry_run: FromQuery[bool] = True) -> FileImportReport:
        """Import customers from an XLSX or CSV file (UTF-8, with or without BOM, or
        GBK/GB18030), sent as multipart field `file` or as the raw body. Columns by
        Chinese or English header (姓名/name, 手机/mobile, 身份证号/id_number, 负责人/owner
        username …). A dry run (the default) reports errors and duplicates (within the
        file, and with archives here, by mobile and ID number) and writes nothing;
        `dry_run=false` writes the valid, non-duplicate rows. At most 20 MB and 100,000
        rows."""
        filename: str | None = None
        if request.content_type[0] == RequestEncodingType.MULTI_PART:
            upload = (await request.form()).get("file")
            if not isinstance(upload, UploadFile):
                raise FieldError("file", "send the file as multipart field `file`")
            filename = upload.filename
            data = await upload.read()
        else:
            data = await request.body()
        if not data:
            raise FieldError("file", "is empty")
        report = await imports.import_customers(
            node, request.user, data, _format(format, filename, data), parse_item,
            dry_run=dry_run)
        return to_out(report, FileImportReport)

    @get("/exports/customers")
    async def export_customers(
        self, request: Req, node: NodeDep, format: Fmt = "xlsx",
        purpose: Annotated[str, QueryParameter(max_length=16)] = "internal",
        q: Filter = None, mobile: Filter = None, id_number: Filter = None,
        customer_class: Filter = None, branch: Filter = None, owner_id: Filter = None,
        lifecycle_stage: Filter = None, tags: Filter = None, source: Filter = None,
        department: Filter = None, intention: FromQuery[bool | None] = None,
        agency: FromQuery[bool | None] = None,
    ) -> Response[bytes]:
        """Customers you may see, filtered as GET /api/v1/customers, as an XLSX or CSV
        (UTF-8 with BOM) file. `purpose` marketing or sharing keeps only customers who
        consented to it. Phones, ID numbers and other confidential values come in
        plaintext only if your role reads them and you hold an export grant in force;
        masked otherwise. Every export is audited."""
        filters = {"mobile": mobile, "id_number": id_number, "customer_class": customer_class,
                   "branch": branch, "owner_id": owner_id, "lifecycle_stage": lifecycle_stage,
                   "tags": tags, "source": source, "department": department,
                   "intention": intention, "agency": agency}
        out = await exports.export_customers(node, request.user, fmt=(format or "").lower(),
                                             purpose=purpose, filters=filters, q=q)
        return Response(out.content, media_type=out.media_type, headers={
            "Content-Disposition": f'attachment; filename="{out.filename}"',
            "X-Export-Count": str(out.count)})


    @get("/exports/reports/{kind:str}")
    async def export_report(
        self, request: Req, node: NodeDep,
        kind: Annotated[str, PathParameter(max_length=32)],
        period: Annotated[str, QueryParameter(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
        branch: Annotated[str | None, QueryParameter(max_length=16)] = None,
        format: Fmt = "xlsx",
    ) -> Response[bytes]:
        """Report `kind` of month `period` (as GET /api/v1/reports/{kind} computes it over
        your scope) as an XLSX or CSV file: one row per branch, then the total. Audited."""
        data = await reports.report(node, request.user, reports.check_kind(kind), period,
                                    branch)
        columns, rows = exports.table_of([*data["branches"], {"branch": "合计", **data["total"]}])
        out = await exports.export_rows(node, request.user, subject=f"report-{data['kind']}-"
                                        f"{period}", columns=columns, rows=rows,
                                        fmt=(format or "").lower())
        return Response(out.content, media_type=out.media_type, headers={
            "Content-Disposition": f'attachment; filename="{out.filename}"',
            "X-Export-Count": str(out.count)})

ROUTES: list[ControllerRouterHandler] = [TransferController]
"""The controllers of this module, registered by server/app.py."""
