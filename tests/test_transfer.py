"""Importing customer lists from XLSX/CSV (dry run first, duplicates by mobile and ID
number) and exporting customers to them (scope, masks unless an export grant is in
force, consent for the purpose, audited). One test per rule, on both backends; the
files are built in the test, none is committed."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from crypto import hash_password
from schema import TABLES, sync_cells
from server.config import Settings
from server.node import Node, open_node
from server.services import access
from server.services import users as user_service
from server.services.exports import write_rows
from server.services.principal import Principal
from tests.conftest import PASSWORD, add_user, login

Client = AsyncTestClient[Any]
IMPORT = "/api/v1/imports/customers"
EXPORT = "/api/v1/exports/customers"
ID_OK = "11010519491231002X"
_HASH: list[str] = []


@pytest.fixture(autouse=True)
def _fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    # Users get the test password hashed once per session (argon2 is slow by design).
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    monkeypatch.setattr(user_service, "hash_password", lambda _: _HASH[0])


def csv_file(rows: list[list[Any]], encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_file(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def upload(client: Client, headers: dict[str, str], data: bytes, name: str = "list.csv",
                 *, dry_run: bool = True) -> dict[str, Any]:
    r = await client.post(IMPORT, headers=headers, params={"dry_run": str(dry_run).lower()},
                          files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def counts(node: Node) -> tuple[int, ...]:
    async with node.db.read() as conn:
        return tuple([int((await conn.execute(select(func.count()).select_from(t)))
                          .scalar() or 0)
                      for t in (TABLES["customers"], sync_cells, TABLES["audit_log"],
                                TABLES["field_history"], TABLES["read_audit"])])


async def create(client: Client, headers: dict[str, str], **values: Any) -> str:
    r = await client.post("/api/v1/customers/", headers=headers, json=values)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_import_dry_run_writes_nothing(client: Client, node: Node,
                                             clerk: dict[str, str]) -> None:
    before = await counts(node)
    report = await upload(client, clerk, csv_file([["姓名", "手机"], ["张三", "13800000001"],
                                                   ["李四", "13800000002"]]))
    assert (report["rows"], report["valid"], report["dry_run"]) == (2, 2, True)
    assert "created" not in report
    assert await counts(node) == before


async def test_dry_run_reports_bad_mobile_bad_id_and_missing_name_with_row_numbers(
        client: Client, clerk: dict[str, str]) -> None:
    rows = [["name", "mobile", "id_number", "notes"],
            ["好人", "13800000001", ID_OK, "ok"],
            ["坏号码", "12345", None, None],
            ["坏身份证", None, "110105194912310021", None],
            [None, "13800000003", None, "没有名字"]]
    report = await upload(client, clerk, csv_file(rows))
    assert report["valid"] == 1
    assert report["errors"] == [
        {"row": 3, "column": "mobile", "message": "is not a valid mobile number"},
        {"row": 4, "column": "id_number", "message": "is not a valid resident ID number"},
        {"row": 5, "column": "name", "message": "is required"}]


async def test_duplicates_within_the_file_and_against_existing_archives_by_mobile(
        client: Client, clerk: dict[str, str]) -> None:
    existing = await create(client, clerk, name="老客户", mobile="13900000001")
    rows = [["姓名", "手机"], ["新客", "13900000002"], ["老客户别名", "139 0000 0001"],
            ["新客二", "+86 139-0000-0002"]]
    report = await upload(client, clerk, csv_file(rows))
    assert report["duplicates"] == [
        {"row": 3, "by": "mobile", "existing_id": existing},
        {"row": 4, "by": "mobile", "other_row": 2}]
    assert report["valid"] == 1 and report["errors"] == []


async def test_gbk_csv_and_xlsx_both_import(client: Client, node: Node, org: None,
                                            clerk: dict[str, str]) -> None:
    await add_user(node, "s001.rep", "sales_rep", "S001", "销售部")
    header = ["*姓名", "手机", "客户类型", "来源", "分店", "负责人", "标签", "生日", "营销同意",
              "序号"]
    gbk = csv_file([header, ["王五", "13700000001", "个人", "转介绍", "上海店", "s001.rep",
                             "vip、老客", "1990/1/2", "是", "1"]], encoding="gb18030")
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    report = await upload(client, clerk, gbk, dry_run=False)
    assert (report["created"], report["errors"], report["ignored_columns"]) == (1, [], ["序号"])
    # XLSX: the mobile typed into a number cell, the birthday a date cell.
    from datetime import datetime
    book = xlsx_file([header[:8], ["赵六", 13700000002, "企业", "来电", "S001", "s001.rep",
                                   "vip", datetime(1985, 5, 6)]])
    report = await upload(client, clerk, book, "名单.xlsx", dry_run=False)
    assert (report["created"], report["errors"]) == (1, [])
    r = await client.get("/api/v1/customers/", headers=clerk, params={"q": "王五"})
    got = r.json()["items"][0]
    assert (got["customer_type"], got["source"], got["branch"], got["tags"],
            got["consent_marketing"], got["birthday"]) == (
        "person", "referral", "S001", ["vip", "老客"], True, "1990-01-02")
    r = await client.get("/api/v1/customers/", headers=clerk, params={"q": "赵六"})
    got = r.json()["items"][0]
    assert (got["customer_type"], got["mobile"], got["birthday"]) == (
        "organisation", "+8613700000002", "1985-05-06")


async def test_commit_imports_valid_rows_once_and_reimport_reports_duplicates(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    data = csv_file([["姓名", "手机", "身份证号"], ["甲", "13600000001", ID_OK],
                     ["乙", "13600000002", None], ["坏", "1", None]], encoding="utf-8-sig")
    before = await counts(node)
    report = await upload(client, clerk, data, dry_run=False)
    assert (report["created"], report["skipped"]) == (2, [4])
    assert (await counts(node))[0] == before[0] + 2
    again = await upload(client, clerk, data, dry_run=False)
    assert again["created"] == 0 and again["skipped"] == [2, 3, 4]
    assert [(d["row"], d["by"]) for d in again["duplicates"]] == [(2, "mobile"), (3, "mobile")]
    async with node.db.read() as conn:
        audits = [r.detail for r in await conn.execute(select(TABLES["audit_log"].c.detail)
                                                       .where(TABLES["audit_log"].c.action
                                                              == "import"))]
    assert [a["created"] for a in audits] == [2]  # the re-import wrote no batch at all
    assert "13600000001" not in str(audits)


async def test_a_sales_rep_cannot_import(client: Client, node: Node) -> None:
    await add_user(node, "rep", "sales_rep")
    r = await client.post(IMPORT, headers=await login(client, "rep"),
                          files={"file": ("a.csv", csv_file([["姓名"], ["某"]]), "text/csv")})
    assert r.status_code == 403


async def test_corrupt_xlsx_is_a_422_with_one_line(client: Client, clerk: dict[str, str]
                                                   ) -> None:
    for data in (b"PK\x03\x04 not really a zip", xlsx_file([["姓名"], ["某"]])[:300]):
        r = await client.post(IMPORT, headers=clerk, params={"format": "xlsx"},
                              files={"file": ("bad.xlsx", data, "application/octet-stream")})
        assert r.status_code == 422, r.text
        assert "\n" not in r.json()["detail"] and "XLSX" in r.json()["detail"]


async def test_raw_body_import_and_a_file_without_name_column(
        client: Client, clerk: dict[str, str]) -> None:
    r = await client.post(IMPORT, headers={**clerk, "Content-Type": "text/csv"},
                          params={"format": "csv"}, content=csv_file([["name"], ["甲"]]))
    assert r.status_code == 200 and r.json()["valid"] == 1
    r = await client.post(IMPORT, headers={**clerk, "Content-Type": "text/csv"},
                          params={"format": "csv"}, content=csv_file([["手机"], ["1"]]))
    assert r.status_code == 422 and "姓名" in r.json()["detail"]


async def _export(client: Client, headers: dict[str, str], **params: str) -> bytes:
    r = await client.get(EXPORT, headers=headers, params={"format": "csv", **params})
    assert r.status_code == 200, r.text
    assert "attachment; filename=" in r.headers["content-disposition"]
    return bytes(r.content)


def _table(content: bytes) -> list[dict[str, str]]:
    assert content.startswith(b"\xef\xbb\xbf")  # Excel reads Chinese only with the BOM
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


async def _export_grant(node: Node, requester: Principal, customer_id: str) -> None:
    gm = await add_user(node, "gm", "general_manager")
    row = await access.create_request(node, requester, {
        "kind": "export", "customer_id": customer_id, "purpose": "对账",
        "reason": "年度核对", "hours": 2})
    await access.decide(node, gm, row["id"], True)


async def test_export_masks_phones_without_export_grant_and_shows_them_with_one(
        client: Client, node: Node, clerk: dict[str, str]) -> None:
    cid = await create(client, clerk, name="保密", mobile="13500000001", id_number=ID_OK)
    content = await _export(client, clerk)
    assert b"13500000001" not in content and ID_OK.encode() not in content
    assert _table(content)[0]["手机"] == "135****0001"
    async with node.db.read() as conn:
        row = (await conn.execute(select(TABLES["users"]).where(
            TABLES["users"].c.username == "clerk"))).mappings().one()
    await _export_grant(node, Principal.from_row(row), cid)
    content = await _export(client, clerk, format="xlsx")
    sheet = load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    line = dict(zip(rows[0], rows[1], strict=True))
    assert (line["手机"], line["身份证号"]) == ("+8613500000001", ID_OK)
    async with node.db.read() as conn:
        log = TABLES["audit_log"]
        details = [r.detail for r in await conn.execute(
            select(log.c.detail).where(log.c.action == "export").order_by(log.c.seq))]
    assert [(d["plaintext"], d["count"], d["purpose"]) for d in details] == [
        (False, 1, "internal"), (True, 1, "internal")]
    assert "mobile" in details[0]["columns"] and "13500000001" not in str(details)


async def test_marketing_export_leaves_out_customers_without_consent(
        client: Client, clerk: dict[str, str]) -> None:
    await create(client, clerk, name="同意", consent_marketing=True)
    await create(client, clerk, name="不同意")
    names = {r["姓名"] for r in _table(await _export(client, clerk, purpose="marketing"))}
    assert names == {"同意"}
    names = {r["姓名"] for r in _table(await _export(client, clerk, purpose="internal"))}
    assert names == {"同意", "不同意"}
    r = await client.get(EXPORT, headers=clerk, params={"purpose": "spam"})
    assert r.status_code == 422


async def test_a_sales_rep_exports_only_own_customers(client: Client, node: Node,
                                                      clerk: dict[str, str]) -> None:
    rep = await add_user(node, "rep", "sales_rep")
    await create(client, clerk, name="别人的")
    await create(client, clerk, name="我的", owner_id=rep.id)
    rows = _table(await _export(client, await login(client, "rep")))
    assert [(r["姓名"], r["负责人"]) for r in rows] == [("我的", "rep")]


def test_write_rows_neutralises_formulas_and_round_trips_xlsx() -> None:
    columns = ["名称", "值"]
    rows = [["=HYPERLINK(\"http://x\")", 1], ["+8613800000000", None], ["-5", True]]
    table = list(csv.reader(io.StringIO(write_rows(columns, iter(rows), "csv")
                                        .decode("utf-8-sig"))))
    assert table[1][0].startswith("'=") and table[2][0] == "+8613800000000"
    assert table[3] == ["-5", "true"]
    sheet = load_workbook(io.BytesIO(write_rows(columns, rows, "xlsx"))).worksheets[0]
    assert sheet["A2"].data_type == "s" and sheet["A2"].value.startswith("'=")
    assert (sheet["B2"].value, sheet["B4"].value) == (1, True)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_cli_import_dry_run_exits_1_on_row_errors_and_commit_then_export(
        tmp_path: Path, settings: Settings) -> None:
    node = await open_node(settings)
    try:
        await add_user(node, "clerk", "archive_clerk")
    finally:
        await node.close()
    listing = tmp_path / "名单.csv"
    listing.write_bytes(csv_file([["姓名", "手机"], ["甲", "13300000001"], ["坏", "1"]],
                                 encoding="gb18030"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
        env.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), BRANCHLINE_PASSWORD=PASSWORD)
        return subprocess.run([str(Path(sys.executable).parent / "branchline"), *args,
                               "--data", str(settings.data_dir), "--as", "clerk"],
                              env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    dry = cli("import", "customers", str(listing))
    assert dry.returncode == 1, dry.stderr
    assert "dry run: nothing written" in dry.stdout and "row 3 " in dry.stdout
    done = cli("import", "customers", str(listing), "--commit", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["created"] == 1
    out = tmp_path / "out.csv"
    exported = cli("export", "customers", "--format", "csv", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "Exported 1 customers" in exported.stdout and "masked" in exported.stdout
    assert b"13300000001" not in out.read_bytes()
    assert _table(out.read_bytes())[0]["手机"] == "133****0001"


async def test_a_report_exports_as_csv_with_one_row_per_branch_and_the_total(
        client: Client, node: Node, org: None) -> None:
    await add_user(node, "gm", "general_manager")
    gm = await login(client, "gm")
    r = await client.get(f"{EXPORT.rsplit('/', 1)[0]}/reports/complaints", headers=gm,
                         params={"period": "2026-01", "format": "csv"})
    assert r.status_code == 200, r.text
    table = _table(r.content)
    assert table[-1]["branch"] == "合计" and "branch" in table[0]
    async with node.db.read() as conn:
        log = TABLES["audit_log"]
        detail = (await conn.execute(select(log.c.detail).where(log.c.action == "export"))
                  ).scalar_one()
    assert (detail["subject"], detail["count"]) == ("report-complaints-2026-01", len(table))
    r = await client.get(f"{EXPORT.rsplit('/', 1)[0]}/reports/nope", headers=gm,
                         params={"period": "2026-01"})
    assert r.status_code == 422
