"""`branchline import customers` and `branchline export customers`: customer lists in
and out as XLSX/CSV files, acting as a logged-in user (`--as`, server/cli_acting.py)
with the same checks, masks, consent rules and audit entries as the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from server.cli_acting import as_user, run_as
from server.cli_base import Group
from server.node import Node
from server.services.principal import Principal

DataDir = click.Path(file_okay=False, path_type=Path)
data_option = click.option("--data", "data_dir", type=DataDir, required=True,
                           help="The node's data directory.")
Formats = click.Choice(["csv", "xlsx"])


def _print_report(report: dict[str, Any]) -> None:
    summary = (f"{report['rows']} rows: {report['valid']} valid, {len(report['errors'])} "
               f"with errors, {len(report['duplicates'])} duplicates")
    if report["dry_run"]:
        summary += " (dry run: nothing written; --commit writes the valid rows)"
    else:
        summary += f"; created {report['created']}, skipped {len(report['skipped'])}"
    click.echo(summary)
    for e in report["errors"]:
        click.echo(f"row {e['row']:<6} error      {e['column']}: {e['message']}")
    for d in report["duplicates"]:
        of = f"row {d['other_row']}" if "other_row" in d else f"customer {d['existing_id']}"
        click.echo(f"row {d['row']:<6} duplicate  of {of} (same {d['by']})")
    for s in report["similar"]:
        click.echo(f"row {s['row']:<6} similar    name to customer {s['existing_id']}")
    if report["ignored_columns"]:
        click.echo(f"ignored columns: {', '.join(report['ignored_columns'])}")


@click.group("import", cls=Group)
def import_group() -> None:
    """Import lists from files (XLSX, CSV in UTF-8 or GBK)."""


@import_group.command("customers")
@data_option
@as_user
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=Formats,
              help="csv or xlsx (default: from the file name's extension).")
@click.option("--commit", is_flag=True,
              help="Write the valid, non-duplicate rows (default: a dry run that writes "
                   "nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_customers_cmd(data_dir: Path, username: str, file: Path, fmt: str | None,
                         commit: bool, as_json: bool) -> None:
    """Check a customer list and report errors (row, column, why) and duplicates (within
    the file, or of archives here, by mobile or ID number); with --commit, write the
    valid rows that are no duplicates. Columns by Chinese or English header (姓名/name,
    手机/mobile, 身份证号/id_number, 负责人/owner username, …).

    Exit status 0 when no row has an error (duplicates are expected when a list is
    imported again); 1 when some row has one (with --commit the valid rows were still
    written and the report lists the skipped ones) or the file cannot be read."""
    from server.api.registration import _parse as parse_item
    from server.services.imports import import_customers

    data = file.read_bytes()
    chosen = fmt or (file.suffix.lower().lstrip(".") if file.suffix else "csv")

    async def work(node: Node, p: Principal) -> dict[str, Any]:
        return await import_customers(node, p, data, chosen, parse_item, dry_run=not commit)

    report = run_as(data_dir, username, work)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, default=str))
    else:
        _print_report(report)
    if report["errors"]:
        raise click.exceptions.Exit(1)


@click.group("export", cls=Group)
def export_group() -> None:
    """Export lists to files (XLSX, CSV in UTF-8 with BOM)."""


@export_group.command("customers")
@data_option
@as_user
@click.option("--format", "fmt", type=Formats, default="xlsx", show_default=True,
              help="The file's format.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write (replaced if it exists).")
@click.option("--purpose", type=click.Choice(["internal", "marketing", "sharing"]),
              default="internal", show_default=True,
              help="marketing / sharing keep only customers who consented to it.")
@click.option("--q", help="Names matching (汉字, pinyin, initials).")
@click.option("--branch", help="Only this branch code.")
@click.option("--department", help="Only this department.")
@click.option("--owner-id", help="Only customers of this owner (user id).")
@click.option("--tag", "tags", help="Only customers with this tag.")
@click.option("--source", help="Only this source (walk_in, call, referral, …).")
@click.option("--customer-class", help="Only this class.")
@click.option("--lifecycle-stage", help="Only this lifecycle stage.")
def export_customers_cmd(data_dir: Path, username: str, fmt: str, out: Path, purpose: str,
                         q: str | None, **filters: str | None) -> None:
    """Write the customers you may see to a file, filtered as the customer list is.
    Phones, ID numbers and other confidential values are in plaintext only if your role
    reads them and you hold an export grant in force (an approved export request);
    masked otherwise. Every export is in the audit log."""
    from server.services.exports import export_customers

    async def work(node: Node, p: Principal) -> Any:
        return await export_customers(node, p, fmt=fmt, purpose=purpose, filters=filters, q=q)

    result = run_as(data_dir, username, work)
    out.write_bytes(result.content)
    shown = "plaintext confidential values" if result.plaintext else "confidential values masked"
    click.echo(f"Exported {result.count} customers to {out} ({shown})")
