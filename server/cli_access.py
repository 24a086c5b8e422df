"""`branchline access …`: access approvals at the terminal (domain.md §9) — request to
read, export or borrow archives, list what waits for one's decision, approve, decline,
return. Every command acts as a logged-in user (`--as`, server/cli_acting.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from schema import ACCESS_KINDS, GRANT_HOURS_MAX
from server.cli_acting import as_user, run_as
from server.cli_base import Group
from server.node import Node
from server.services.principal import Principal

DataDir = click.Path(file_okay=False, path_type=Path)
data_option = click.option("--data", "data_dir", type=DataDir, required=True,
                           help="The node's data directory.")
request_id = click.argument("request_id", metavar="REQUEST_ID")


def _line(row: dict[str, Any]) -> str:
    """One request on one line: id, kind, status, who decides, object, expiry."""
    obj = (f"customer {row['customer_id']}" if row["customer_id"] is not None
           else f"department {row['department']}@{row['object_branch'] or '*'}")
    expires = row["expires_at"].isoformat(timespec="minutes") if row["expires_at"] else "-"
    state = f"{row['status']}{' (active)' if row['active'] else ''}"
    return (f"{row['id']}  {row['kind']:<6} {state:<18} by {row['approver_role']:<15} "
            f"{obj}  expires {expires}  {row['purpose']}")


@click.group(cls=Group)
def access() -> None:
    """Access approvals: 调阅 / 借阅 / 导出 requests and their decisions."""


@access.command("request")
@data_option
@as_user
@click.option("--kind", type=click.Choice(ACCESS_KINDS), default="view", show_default=True,
              help="view: read archives; export: take data out; lend: borrow an archive.")
@click.option("--customer", "customer_id", help="The archive (a customer id)…")
@click.option("--department", help="…or a department's archives.")
@click.option("--branch", "object_branch", help="The department's branch (default: every).")
@click.option("--purpose", required=True, help="What the access is for.")
@click.option("--reason", required=True, help="Why it is needed.")
@click.option("--hours", type=click.IntRange(1, GRANT_HOURS_MAX), default=GRANT_HOURS_MAX,
              show_default=True, help="How long the grant lasts once approved.")
@click.option("--copies", type=click.IntRange(1, 100), help="Lending: copies handed out.")
@click.option("--subject", help="Export: what is taken out (a list, a report).")
def request_cmd(data_dir: Path, username: str, **values: Any) -> None:
    """File an access request; prints it with the role that decides it."""
    from server.services.access import create_request

    def work(node: Node, p: Principal) -> Any:
        return create_request(node, p, values)

    click.echo(_line(run_as(data_dir, username, work)))


@access.command("list")
@data_option
@as_user
@click.option("--pending", is_flag=True, help="Only requests waiting for your decision.")
@click.option("--mine", is_flag=True, help="Only requests you made.")
@click.option("--status", type=click.Choice(("requested", "approved", "returned", "revoked",
                                             "declined")), help="Only requests in this state.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="At most this many, newest first.")
def list_cmd(data_dir: Path, username: str, pending: bool, mine: bool, status: str | None,
             limit: int) -> None:
    """Requests you made, may decide, or oversee (newest first)."""
    from server.services.access import list_requests

    async def work(node: Node, p: Principal) -> list[dict[str, Any]]:
        filters = {"to_approve": pending, "mine": mine, "status": status}
        return (await list_requests(node, p, filters, None, limit))[0]

    rows = run_as(data_dir, username, work)
    for row in rows:
        click.echo(_line(row))
    if not rows:
        click.echo("No requests", err=True)


def _decision(action: str, help_text: str) -> None:
    @access.command(action, help=help_text)
    @data_option
    @as_user
    @request_id
    @click.option("--note", help="A note kept with the decision.")
    def command(data_dir: Path, username: str, request_id: str, note: str | None) -> None:
        from server.services import access as service

        def work(node: Node, p: Principal) -> Any:
            if action == "revoke":
                return service.revoke(node, p, request_id, note)
            return service.decide(node, p, request_id, action == "approve", note)

        click.echo(_line(run_as(data_dir, username, work)))


_decision("approve", "Approve a request: the grant runs its hours from now.")
_decision("decline", "Decline a request (say why with --note).")
_decision("revoke", "End a grant in force before it expires.")


@access.command("return")
@data_option
@as_user
@request_id
def return_cmd(data_dir: Path, username: str, request_id: str) -> None:
    """Return a grant early (a lending: the archive came back)."""
    from server.services.access import return_grant

    def work(node: Node, p: Principal) -> Any:
        return return_grant(node, p, request_id)

    click.echo(_line(run_as(data_dir, username, work)))
