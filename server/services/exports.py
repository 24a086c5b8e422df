"""Exporting customer lists and reports to XLSX and CSV (domain.md §9-§10).

What leaves the system follows three rules: only customers the caller may see
(`customer_scope`); confidential values in plaintext only for a role that reads their
class *and* holds an export grant in force (`grants.export_grant`), masks otherwise;
and for marketing or sharing only customers who consented. Every export is audited
with its count, columns, purpose and whether it carried plaintext, never values."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from schema import (
    LOCAL_TZ,
    SENSITIVE,
    TABLES,
    FieldError,
    utcnow,
)
from server.node import Node
from server.services import audit, records
from server.services import customers as archive
from server.services.grants import export_grant
from server.services.imports import COLUMNS, LABELS
from server.services.principal import Principal
from server.services.retention import PURPOSES, consent_clause
from server.services.scope import customer_scope

customers = TABLES["customers"]
users = TABLES["users"]

MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
PAGE = 1000
FIELDS: tuple[tuple[str, str], ...] = (("id", "客户编号"),
                                       *((f, header) for f, header, _ in COLUMNS))
"""What a customer export holds, headed as an import reads it: an export re-imports."""
_LABEL_OF = {field: {code: label for label, code in reversed(labels.items())}
             for field, labels in LABELS.items()}
_ILLEGAL = re.compile(r"[\000-\010\013\014\016-\037]")
_NUMBER = re.compile(r"^[+-][\d\s().*-]*$")

__all__ = ["MEDIA", "PURPOSES", "Export", "csv_chunks", "export_customers", "export_rows",
           "table_of", "write_rows"]


@dataclass(frozen=True)
class Export:
    """A finished export: the file and what the response needs to name it."""

    content: bytes
    media_type: str
    filename: str
    count: int
    plaintext: bool


# -- writing files ----------------------------------------------------------------------

def _safe(text: str) -> str:
    # A cell starting with = + - @ is a formula to Excel (CSV injection); a phone
    # number or a signed number stays as it is.
    text = _ILLEGAL.sub("", text)
    if text[:1] in ("=", "@", "\t", "\r") or (text[:1] in "+-" and not _NUMBER.match(text)):
        return "'" + text
    return text


def _cell(value: Any, fmt: str) -> Any:
    if value is None:
        return None if fmt == "xlsx" else ""
    if isinstance(value, bool):
        return value if fmt == "xlsx" else ("true" if value else "false")
    if isinstance(value, datetime):
        local = value.astimezone(LOCAL_TZ).replace(tzinfo=None) if value.tzinfo else value
        return local if fmt == "xlsx" else local.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value if fmt == "xlsx" else value.isoformat()
    if isinstance(value, int | float):
        return value if fmt == "xlsx" else str(value)
    if isinstance(value, list):
        return _safe("、".join(str(v) for v in value))
    if isinstance(value, dict):
        return _safe(json.dumps(value, ensure_ascii=False, default=str))
    return _safe(str(value))


def csv_chunks(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, every: int = 500
               ) -> Iterator[bytes]:
    """A CSV file in pieces (for a streamed response): UTF-8 with a BOM, so Excel
    opens Chinese text correctly, then the header and `every` rows per piece."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_safe(c) for c in columns])
    yield b"\xef\xbb\xbf" + buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    for n, row in enumerate(rows, start=1):
        writer.writerow([_cell(v, "csv") for v in row])
        if n % every == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def write_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> bytes:
    """`rows` under `columns` as a CSV (UTF-8 with BOM) or XLSX file. `rows` may be a
    generator: each row is written as it comes (XLSX in openpyxl's write-only mode)."""
    if fmt == "csv":
        return b"".join(csv_chunks(columns, rows))
    if fmt != "xlsx":
        raise FieldError("format", "must be csv or xlsx")
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append([_safe(c) for c in columns])
    for row in rows:
        sheet.append([_cell(v, "xlsx") for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _filename(subject: str, fmt: str) -> str:
    stamp = utcnow().astimezone(LOCAL_TZ).strftime("%Y%m%d-%H%M")
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', subject)}-{stamp}.{fmt}"


# -- customers --------------------------------------------------------------------------

def _query(node: Node, p: Principal, purpose: str, filters: dict[str, Any], q: str | None
           ) -> tuple[Any, dict[str, str]]:
    """The customers `p` exports (the filters of GET /api/v1/customers) and the exact
    values a blind-index filter must be confirmed against."""
    query = (select(customers, users.c.username.label("owner_username"))
             .outerjoin(users, users.c.id == customers.c.owner_id)
             .where(customer_scope(p), customers.c.merged_into.is_(None),
                    consent_clause(purpose)))
    return archive.filtered(node, query, filters, q)


async def _confirmed(node: Node, conn: AsyncConnection, rows: list[dict[str, Any]],
                     exact: dict[str, str]) -> list[dict[str, Any]]:
    # A blind index names candidates (it is truncated); keep the rows that really match.
    if not exact or node.db.vault is None:
        return rows
    plain = [dict(r) for r in rows]
    await node.db.vault.open_rows(conn, "customers", [(r["id"], r) for r in plain],
                                  frozenset(SENSITIVE["customers"].values()))
    keep = {r["id"] for r in plain if all(r.get(k) == v for k, v in exact.items())}
    return [r for r in rows if r["id"] in keep]


def _masked(node: Node, rows: list[dict[str, Any]]) -> None:
    columns = (node.db.vault.policy.columns("customers") if node.db.vault is not None
               else SENSITIVE["customers"])
    for r in rows:
        for c in columns:
            if r.get(c) is not None:
                r[c] = r.get(f"{c}_mask")


def _line(row: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for field, _ in FIELDS:
        value = row.get("owner_username" if field == "owner" else field)
        if field in _LABEL_OF and value is not None:
            value = _LABEL_OF[field].get(value, value)
        elif isinstance(value, bool):
            value = "是" if value else "否"
        out.append(value)
    return out


async def export_customers(node: Node, p: Principal, *, fmt: str, purpose: str,
                           filters: dict[str, Any], q: str | None = None) -> Export:
    """The customers `p` may see (filtered as the customer list is) that `purpose`
    allows, as a CSV or XLSX file; plaintext confidential values only for a role that
    reads them and holds an export grant in force. Audited (`export`)."""
    if fmt not in MEDIA:
        raise FieldError("format", "must be csv or xlsx")
    query, exact = _query(node, p, purpose, filters, q)
    lines: list[list[Any]] = []
    reads: list[dict[str, Any]] = []
    async with node.db.read() as conn:
        grant = await export_grant(conn, p)
        cursor: str | None = None
        while True:
            rows, cursor = await records.page(conn, query, customers.c.id, cursor, PAGE)
            rows = await _confirmed(node, conn, rows, exact)
            if grant is not None:
                rows = await records.show(node, conn, p, "customers", rows, reads)
            else:
                _masked(node, rows)
            lines += [_line(r) for r in rows]
            if cursor is None:
                break
    content = write_rows([header for _, header in FIELDS], lines, fmt)
    async with node.db.write(node.node_id, p.id) as uow:
        if reads:  # plaintext that left in the file is a read like any other
            await uow.insert_many("read_audit", reads)
        await audit.append(uow, node, p, "export", object_table="customers", detail={
            "format": fmt, "count": len(lines), "columns": [f for f, _ in FIELDS],
            "purpose": purpose, "plaintext": bool(reads),
            "grant": grant["id"] if grant is not None else None,
            "filters": sorted(k for k, v in filters.items() if v is not None)
            + (["q"] if q else [])})
    return Export(content=content, media_type=MEDIA[fmt],
                  filename=_filename("customers", fmt), count=len(lines),
                  plaintext=bool(reads))


def table_of(items: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a list of dicts (a report's entries): nested dicts become
    `outer.inner` columns, in the order the keys first appear."""
    def flat(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in item.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    flats = [flat(item) for item in items]
    columns = list(dict.fromkeys(k for f in flats for k in f))
    return columns, [[f.get(c) for c in columns] for f in flats]


async def export_rows(node: Node, p: Principal, *, subject: str, columns: Sequence[str],
                      rows: Iterable[Sequence[Any]], fmt: str, purpose: str = "internal"
                      ) -> Export:
    """Any report or analytics list another service built (rows already as `p` may see
    them, masked where they must be), as a CSV or XLSX file; audited as an export of
    `subject` with its count and columns."""
    if fmt not in MEDIA:
        raise FieldError("format", "must be csv or xlsx")
    consent_clause(purpose)  # refuses an unknown purpose
    counted: list[int] = [0]

    def counting() -> Iterator[Sequence[Any]]:
        for row in rows:
            counted[0] += 1
            yield row

    content = write_rows(columns, counting(), fmt)
    await audit.log(node, p, "export", object_table=None, detail={
        "subject": subject, "format": fmt, "count": counted[0], "columns": list(columns),
        "purpose": purpose, "plaintext": False})
    return Export(content=content, media_type=MEDIA[fmt], filename=_filename(subject, fmt),
                  count=counted[0], plaintext=False)
