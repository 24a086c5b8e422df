"""Importing customer lists from XLSX and CSV files (domain.md §2-§3): the usual start
of a shop's archive in China is an Excel sheet. Columns are found by their Chinese or
English header; every row is checked with the rules of the customers API and compared
with the file's other rows and the archives already here (mobile and ID number, by
blind index). A dry run reports and writes nothing; a commit writes the valid,
non-duplicate rows in batches, each batch one unit of work with its audit entry."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select

from schema import LOCAL_TZ, TABLES, FieldError
from server.node import Node
from server.services import audit, registration
from server.services import customers as archive
from server.services.errors import ForbiddenError
from server.services.principal import Principal

users = TABLES["users"]
branches = TABLES["branches"]

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
MAX_COLUMNS = 100
BATCH = 500
IMPORT_ROLES = frozenset({"archive_clerk", "general_manager", "dept_manager", "sales_director"})
FORMATS = ("csv", "xlsx")

Parse = Callable[[dict[str, Any]], "registration.Item | FieldError"]
"""Turns one row's raw values into a create body's values, or its first error: the
API layer's check of `CustomerCreate` (server/api/registration.py), so a file row
passes exactly the checks a JSON body does."""

# field, the header an export writes, other headers accepted (English: the field name)
COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("name", "姓名", ("客户名称", "客户姓名", "名称")),
    ("customer_type", "客户类型", ("type",)),
    ("source", "来源", ("客户来源",)),
    ("mobile", "手机", ("手机号", "手机号码", "移动电话")),
    ("phone", "电话", ("固定电话", "座机", "联系电话")),
    ("email", "邮箱", ("电子邮件", "e-mail")),
    ("address", "地址", ("联系地址",)),
    ("id_number", "身份证号", ("身份证", "身份证号码", "证件号码")),
    ("org_code", "统一社会信用代码", ("组织机构代码",)),
    ("industry", "行业", ()),
    ("birthday", "生日", ("出生日期",)),
    ("branch", "分店", ("门店",)),
    ("department", "部门", ()),
    ("owner", "负责人", ("owner_username", "业务员")),
    ("customer_class", "客户类别", ()),
    ("lifecycle_stage", "生命周期", ()),
    ("tags", "标签", ()),
    ("intention", "意向", ()),
    ("agency", "代理", ()),
    ("consent_marketing", "营销同意", ()),
    ("consent_sharing", "共享同意", ()),
    ("secrecy", "密级", ()),
    ("preferences", "偏好", ()),
    ("notes", "备注", ()),
    ("registered_at", "登记时间", ()),
)
HEADERS = {field: header for field, header, _ in COLUMNS}
BOOLEANS = frozenset({"intention", "agency", "consent_marketing", "consent_sharing"})
LABELS: dict[str, dict[str, str]] = {
    "customer_type": {"个人": "person", "企业": "organisation", "单位": "organisation",
                      "公司": "organisation", "组织": "organisation"},
    "source": {"到店": "walk_in", "自来": "walk_in", "来电": "call", "电话": "call",
               "自主开发": "own_development", "转介绍": "referral", "介绍": "referral",
               "代理": "agency"},
    "lifecycle_stage": {"潜在": "potential", "新客户": "new", "稳定": "stable",
                        "老客户": "old", "流失": "lost"},
    "secrecy": {"普通": "ordinary", "绝密": "top_secret"},
}
"""Chinese values accepted for coded fields; exports write the first label of each."""
_TRUE = frozenset({"是", "y", "yes", "true", "1", "同意", "√", "✓"})
_FALSE = frozenset({"否", "n", "no", "false", "0", "不同意", "×", "✗"})
_ALIASES = {a.casefold(): field for field, header, others in COLUMNS
            for a in (field, header, *others)}
_TAG_SPLIT = re.compile(r"[,，;；、|\s]+")
_DATE = re.compile(r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$")

__all__ = ["COLUMNS", "FORMATS", "HEADERS", "LABELS", "import_customers", "read_table"]


# -- reading files ----------------------------------------------------------------------

def _decode(data: bytes) -> str:
    # Excel in China saves CSV as GBK (GB18030 is its superset) unless told UTF-8, and
    # then with a BOM; try UTF-8 first: GBK text is almost never valid UTF-8.
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise FieldError("file", "is neither UTF-8 nor GBK/GB18030 text") from None


def _csv_rows(data: bytes) -> Iterator[list[Any]]:
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        raise FieldError("file", "is not valid UTF-8 text") from None
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    try:
        yield from csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    except csv.Error as exc:
        raise FieldError("file", f"is not a readable CSV file ({exc})") from None


def _xlsx_rows(data: bytes) -> Iterator[list[Any]]:
    from openpyxl import load_workbook

    try:
        # read_only streams the sheet row by row instead of building it in memory
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # zip, XML and openpyxl errors alike: the file is not a workbook
        raise FieldError("file", "is not a readable XLSX file") from None
    try:
        sheet = book.worksheets[0]
        for row in sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True):
            yield list(row)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError) as exc:
        raise FieldError("file", f"is not a readable XLSX file ({type(exc).__name__})"
                         ) from None
    finally:
        book.close()


def read_table(data: bytes, fmt: str) -> Iterator[tuple[int, list[Any]]]:
    """(spreadsheet row number, cells) of a CSV or XLSX file, the header first; rows
    whose cells are all empty are skipped. FieldError (422) for an unreadable file, one
    larger than 20 MB or with more than 100,000 rows."""
    if fmt not in FORMATS:
        raise FieldError("format", "must be csv or xlsx")
    if len(data) > MAX_BYTES:
        raise FieldError("file", f"is larger than {MAX_BYTES // (1024 * 1024)} MB; split it")
    rows = _csv_rows(data) if fmt == "csv" else _xlsx_rows(data)
    for number, cells in enumerate(rows, start=1):
        if number > MAX_ROWS + 1:
            raise FieldError("file", f"has more than {MAX_ROWS} rows; split it")
        if any(c is not None and str(c).strip() for c in cells):
            yield number, cells


# -- rows to values ---------------------------------------------------------------------

def _header(cells: list[Any]) -> tuple[dict[int, str], dict[str, str], list[str]]:
    """Column index → field, field → header as written, and the ignored headers."""
    fields: dict[int, str] = {}
    written: dict[str, str] = {}
    ignored: list[str] = []
    for index, cell in enumerate(cells):
        text = str(cell or "").strip().lstrip("*").strip()
        field = _ALIASES.get(re.sub(r"\s+", "", text).casefold())
        if field is None:
            if text:
                ignored.append(text)
            continue
        if field in written:
            raise FieldError("file", f"columns {written[field]!r} and {text!r} both "
                                     f"give {field}")
        fields[index] = field
        written[field] = text
    if "name" not in written:
        raise FieldError("file", "has no 姓名/name column in its first row")
    return fields, written, ignored


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a mobile number typed into a number cell
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value)
    match = _DATE.match(text) or (re.match(r"^(\d{4})(\d{2})(\d{2})$", text))
    try:
        if match is None:
            raise ValueError(text)
        return date(*(int(g) for g in match.groups()))
    except ValueError:
        raise FieldError("", "is not a date (YYYY-MM-DD)") from None


def _convert(field: str, value: Any, lookups: dict[str, dict[str, str]]) -> tuple[str, Any]:
    """The create-body field and value of one cell."""
    if field in BOOLEANS:
        text = _text(value).casefold()
        if text not in _TRUE | _FALSE:
            raise FieldError(field, "must be 是 or 否 (yes/no)")
        return field, text in _TRUE
    if field == "birthday":
        return field, _date(value)
    if field == "registered_at":
        when = value if isinstance(value, datetime) else datetime.combine(_date(value), time())
        return field, when if when.tzinfo else when.replace(tzinfo=LOCAL_TZ)
    text = _text(value)
    if field == "tags":
        return field, [t for t in _TAG_SPLIT.split(text) if t]
    if field == "owner":
        if text not in lookups["users"]:
            raise FieldError(field, f"no active user {text!r}")
        return "owner_id", lookups["users"][text]
    if field == "branch":
        if text not in lookups["branches"]:
            raise FieldError(field, f"no branch {text!r}")
        return field, lookups["branches"][text]
    return field, LABELS.get(field, {}).get(text, text)


def _friendly(error: FieldError) -> tuple[str, str]:
    """The field and message of a create-body error, `missing` said plainly."""
    found = re.search(r"missing required field `(\w+)`", error.message)
    if found:
        return found.group(1), "is required"
    return error.field, error.message


# -- the import -------------------------------------------------------------------------

async def _lookups(node: Node) -> dict[str, dict[str, str]]:
    async with node.db.read() as conn:
        people = {r.username: r.id for r in await conn.execute(
            select(users.c.username, users.c.id).where(users.c.active))}
        shops: dict[str, str] = {}
        for r in await conn.execute(select(branches.c.code, branches.c.name)):
            shops[r.code] = r.code
            shops.setdefault(r.name, r.code)
    return {"users": people, "branches": shops}


async def import_customers(node: Node, p: Principal, data: bytes, fmt: str, parse: Parse, *,
                           dry_run: bool = True) -> dict[str, Any]:
    """Check (and unless `dry_run`, write) the customers of a CSV or XLSX file. The
    report: rows, valid, errors [{row, column, message}], duplicates [{row, by,
    existing_id | other_row}], similar names, ignored columns; a commit adds created
    and the skipped row numbers. Row numbers are the spreadsheet's (header = 1)."""
    if p.role not in IMPORT_ROLES:
        raise ForbiddenError(f"a {p.role} cannot import customer lists")
    table = read_table(data, fmt)
    try:
        _, header_cells = next(table)
    except StopIteration:
        raise FieldError("file", "is empty") from None
    fields, written, ignored = _header(header_cells)
    lookups = await _lookups(node)
    errors: list[dict[str, Any]] = []
    items: list[registration.Item] = []
    numbers: list[int] = []
    rows = 0
    for number, cells in table:
        rows += 1
        raw: dict[str, Any] = {}
        bad = False
        for index, field in fields.items():
            value = cells[index] if index < len(cells) else None
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            try:
                key, converted = _convert(field, value, lookups)
                raw[key] = converted
            except FieldError as exc:
                errors.append({"row": number, "column": written[field], "message": exc.message})
                bad = True
        if bad:
            continue
        item = parse(raw)
        if isinstance(item, FieldError):
            field, message = _friendly(item)
            errors.append({"row": number, "column": _column(written, field), "message": message})
            continue
        items.append(item)
        numbers.append(number)
    report: dict[str, Any] = {"format": fmt, "dry_run": dry_run, "rows": rows,
                              "ignored_columns": ignored}
    async with node.db.read() as conn:
        results, _ = await registration._classify(conn, node, p, list(items))
    valid = _collect(results, numbers, written, report, errors)
    report["valid"] = len(valid)
    if dry_run:
        return report
    written_rows = set(await _commit(node, p, fmt, [(numbers[i], items[i]) for i in valid],
                                     report))
    report["created"] = len(written_rows)
    report["skipped"] = sorted({e["row"] for e in report["errors"]}
                               | {d["row"] for d in report["duplicates"]}
                               | ({numbers[i] for i in valid} - written_rows))
    return report


def _column(written: dict[str, str], field: str) -> str:
    if field == "owner_id":
        field = "owner"
    return written.get(field, field)


def _collect(results: list[dict[str, Any]], numbers: list[int], written: dict[str, str],
             report: dict[str, Any], errors: list[dict[str, Any]]) -> list[int]:
    """Fill the report from `registration._classify`'s results; the valid item indexes."""
    duplicates: list[dict[str, Any]] = []
    similar: list[dict[str, Any]] = []
    valid: list[int] = []
    for r in results:
        number = numbers[r["index"]]
        if r["status"] == "invalid":
            errors.append({"row": number, "column": _column(written, r["field"]),
                           "message": r["reason"]})
        elif r["status"] == "duplicate":
            of = str(r["duplicate_of"])
            other = ({"other_row": numbers[int(of.removeprefix("item "))]}
                     if of.startswith("item ") else {"existing_id": of})
            duplicates.append({"row": number, "by": r["by"], **other})
        else:
            valid.append(r["index"])
            similar += [{"row": number, "existing_id": s} for s in r["similar_to"]]
    report["errors"] = sorted(errors, key=lambda e: e["row"])
    report["duplicates"] = duplicates
    report["similar"] = similar
    return valid


async def _commit(node: Node, p: Principal, fmt: str,
                  ready: list[tuple[int, registration.Item]], report: dict[str, Any]
                  ) -> list[int]:
    """Write the checked rows in batches of `BATCH`, each one unit of work that checks
    its rows again (a customer registered meanwhile is a duplicate, not a second
    archive) and records an `import` audit entry (counts only). The rows written."""
    created_rows: list[int] = []
    for start in range(0, len(ready), BATCH):
        batch = ready[start:start + BATCH]
        async with node.db.write(node.node_id, p.id) as uow:
            results, prepared = await registration._classify(
                uow.conn, node, p, [item for _, item in batch])
            inserted = (await archive.insert_prepared(uow, node, p, [r for _, r in prepared])
                        if prepared else [])
            await audit.append(uow, node, p, "import", object_table="customers", detail={
                "format": fmt, "rows": report["rows"], "batch": start // BATCH + 1,
                "created": len(inserted), "skipped": len(batch) - len(inserted)})
        created_rows += [batch[index][0] for index, _ in prepared]
        report["duplicates"] += [{"row": batch[r["index"]][0], "by": r["by"],
                                  "existing_id": r["duplicate_of"]}
                                 for r in results if r["status"] == "duplicate"]
    return created_rows
