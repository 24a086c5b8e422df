"""`branchline audit …`: search the audit log and verify every node's hash chain
(domain.md §9), acting as a logged-in auditor, general manager or administrator
(`--as`, server/cli_acting.py)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
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
When = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])


def _line(row: dict[str, Any]) -> str:
    """One entry on one line: time, node and place in its chain, who, what, detail."""
    at = row["at"].isoformat(timespec="seconds")
    detail = json.dumps(row["detail"], ensure_ascii=False, sort_keys=True)
    return (f"{at}  {row['node_id'][:8]}#{row['seq']:<6} {row['branch'] or 'HQ':<6} "
            f"{row['actor'] or '-':<16} {row['action']:<18} {row['customer_id'] or '-'}  "
            f"{detail}")


@click.group(cls=Group)
def audit() -> None:
    """The audit log: one hash chain per node of logins, views, exports, approvals,
    key events, merges and erasures."""


@audit.command("search")
@data_option
@as_user
@click.option("--action", help="Only this action (login, login_failed, view, merge, …).")
@click.option("--actor", help="Only entries by this username.")
@click.option("--customer", "customer_id", help="Only entries about this customer id.")
@click.option("--branch", help="Only entries made at this branch's nodes.")
@click.option("--since", type=When, help="From this local day or time on.")
@click.option("--until", type=When, help="Up to this local time (a day: its end).")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def search_cmd(data_dir: Path, username: str, action: str | None, actor: str | None,
               customer_id: str | None, branch: str | None, since: datetime | None,
               until: datetime | None, limit: int, as_json: bool) -> None:
    """Entries newest first; details name fields and counts, never customer values."""
    from server.services.audit_query import search_log

    def day_or_time(value: datetime | None) -> Any:
        # A bare day (midnight) means the whole day for --until.
        return value.date() if value is not None and value.time() == datetime.min.time() \
            else value

    filters = {"action": action, "actor": actor, "customer_id": customer_id,
               "branch": branch, "from": since, "to": day_or_time(until)}

    async def work(node: Node, p: Principal) -> list[dict[str, Any]]:
        return (await search_log(node, p, filters, None, limit))[0]

    rows = run_as(data_dir, username, work)
    for row in rows:
        click.echo(json.dumps({str(k): v for k, v in row.items()}, default=str,
                              ensure_ascii=False) if as_json else _line(row))
    if not rows:
        click.echo("No entries", err=True)


@audit.command("verify")
@data_option
@as_user
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(data_dir: Path, username: str, as_json: bool) -> None:
    """Check every node's chain held here; exits 1 with one line per break (an altered,
    missing, repeated or reordered entry) when any chain is broken."""
    from server.services.audit_query import verify_log

    def work(node: Node, p: Principal) -> Any:
        return verify_log(node, p)

    chains = run_as(data_dir, username, work)
    if as_json:
        click.echo(json.dumps({"nodes": chains}, ensure_ascii=False))
    else:
        for c in chains:
            state = "intact" if c["intact"] else f"BROKEN ({len(c['breaks'])} breaks)"
            click.echo(f"{c['node_id']}  {c['branch'] or 'HQ':<6} {c['entries']} entries, "
                       f"head {c['head_seq']}: {state}")
    broken = [(c, b) for c in chains for b in c["breaks"]]
    for c, b in broken:
        click.echo(f"{c['node_id']} ({c['branch'] or 'HQ'}): {b}", err=True)
    if broken:
        sys.exit(1)
