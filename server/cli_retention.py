"""`branchline retention …`: archives past their retention end and their destruction
(domain.md §9) — list what is due, ask for a destruction, the department head's review,
the general manager's approval (which crypto-erases the archive at HQ) — and
`branchline customer subject-export`, a customer's copy of their data. Every command
acts as a logged-in user (`--as`, server/cli_acting.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from schema import DESTRUCTION_STATES
from server.cli_acting import as_user, run_as
from server.cli_base import Group
from server.node import Node
from server.services.principal import Principal

DataDir = click.Path(file_okay=False, path_type=Path)
data_option = click.option("--data", "data_dir", type=DataDir, required=True,
                           help="The node's data directory.")
request_id = click.argument("request_id", metavar="REQUEST_ID")
decision = click.option("--decline", is_flag=True,
                        help="Decline the request instead (it ends there).")
note_option = click.option("--note", help="A note kept with the decision.")


def _day(value: Any) -> str:
    return value.strftime("%Y-%m-%d") if value is not None else "-"


def _line(row: dict[str, Any]) -> str:
    """One request on one line: id, status, basis, customer, record once erased."""
    record = f"  record {row['record_id']}" if row.get("record_id") else ""
    return (f"{row['id']}  {row['status']:<9} {row['basis']:<17} "
            f"customer {row['customer_id']}{record}")


@click.group(cls=Group)
def retention() -> None:
    """Retention (10 years after the relationship ends) and destruction of archives."""


@retention.command("due")
@data_option
@as_user
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="At most this many, newest first.")
def due_cmd(data_dir: Path, username: str, limit: int) -> None:
    """Archives in your scope whose retention has run out, with the status of their
    destruction request."""
    from server.services.retention import due

    async def work(node: Node, p: Principal) -> list[dict[str, Any]]:
        return (await due(node, p, None, limit))[0]

    rows = run_as(data_dir, username, work)
    for r in rows:
        click.echo(f"{r['id']}  kept until {_day(r['retention_until'])}  "
                   f"{r['destruction_status'] or 'no request':<10} {r['name']}")
    if not rows:
        click.echo("No archive is past its retention end.")


@retention.command("request")
@data_option
@as_user
@click.option("--customer", "customer_id", required=True, help="The archive (a customer id).")
@click.option("--basis", type=click.Choice(("retention_expired", "customer_request")),
              required=True, help="retention_expired: kept long enough; customer_request: "
                                  "the customer asked for erasure (privacy law).")
@click.option("--reason", required=True, help="Why the archive is destroyed (recorded).")
def request_cmd(data_dir: Path, username: str, customer_id: str, basis: str,
                reason: str) -> None:
    """Ask for an archive's destruction; the department head reviews it next."""
    from server.services.retention import request_destruction

    def work(node: Node, p: Principal) -> Any:
        return request_destruction(node, p, customer_id, basis, reason)

    click.echo(_line(run_as(data_dir, username, work)))


@retention.command("review")
@data_option
@as_user
@request_id
@decision
@note_option
def review_cmd(data_dir: Path, username: str, request_id: str, decline: bool,
               note: str | None) -> None:
    """Review a destruction request as the head of the archive's department."""
    from server.services.retention import decide_review

    def work(node: Node, p: Principal) -> Any:
        return decide_review(node, p, request_id, not decline, note)

    click.echo(_line(run_as(data_dir, username, work)))


@retention.command("approve")
@data_option
@as_user
@request_id
@decision
@note_option
def approve_cmd(data_dir: Path, username: str, request_id: str, decline: bool,
                note: str | None) -> None:
    """Approve a reviewed request as the general manager: the archive is crypto-erased
    at once (HQ only) and a destruction record kept."""
    from server.services.retention import decide_approval

    def work(node: Node, p: Principal) -> Any:
        return decide_approval(node, p, request_id, not decline, note)

    click.echo(_line(run_as(data_dir, username, work)))


@retention.command("list")
@data_option
@as_user
@click.option("--status", type=click.Choice(DESTRUCTION_STATES), help="Only this state.")
@click.option("--customer", "customer_id", help="Only this archive's requests.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="At most this many, newest first.")
def list_cmd(data_dir: Path, username: str, status: str | None, customer_id: str | None,
             limit: int) -> None:
    """Destruction requests of archives you may see, newest first."""
    from server.services.retention import list_requests

    async def work(node: Node, p: Principal) -> list[dict[str, Any]]:
        filters = {"status": status, "customer_id": customer_id}
        return (await list_requests(node, p, filters, None, limit))[0]

    rows = run_as(data_dir, username, work)
    for r in rows:
        click.echo(_line(r))
    if not rows:
        click.echo("No destruction requests.")


# `branchline customer subject-export`: server/cli.py adds it to its `customer` group.
@click.command("subject-export")
@data_option
@as_user
@click.option("--customer", "customer_id", required=True, help="The customer (an id).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The JSON file to write (readable by its owner only).")
def subject_export_cmd(data_dir: Path, username: str, customer_id: str, out: Path) -> None:
    """Write everything held about a customer as JSON, for the customer (privacy law);
    confidential values in plaintext only for the classes your role reads."""
    from server.services.retention import subject_export

    def work(node: Node, p: Principal) -> Any:
        return subject_export(node, p, customer_id)

    doc = run_as(data_dir, username, work)
    text = json.dumps(doc, ensure_ascii=False, indent=2, default=str)
    # Personal data: created owner-only, never world-readable even for a moment.
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    counts = ", ".join(f"{k} {len(v)}" for k, v in doc.items() if isinstance(v, list)
                       and k != "merged_ids")
    click.echo(f"Wrote {out}: {counts}")

