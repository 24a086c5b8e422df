"""`branchline report …`: the monthly reports (domain.md §10) as readable tables or
JSON, and issuing them, acting as a logged-in manager (`--as`, server/cli_acting.py).

A general manager sees every branch with a per-branch breakdown; a branch manager only
their own branch."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from server.cli_acting import as_user, run_as
from server.cli_base import Group
from server.node import Node
from server.services.principal import Principal

DataDir = click.Path(file_okay=False, path_type=Path)
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
TITLES = {"complaints": "Complaint statistics (投诉统计)", "sla": "SLA attainment",
          "visits": "Visit coverage against plan", "tickets": "Service tickets (维修单)",
          "reps": "Rep performance", "sync_health": "Sync health"}


def _month(_: click.Context, __: click.Parameter, value: str) -> str:
    # A bad month is a one-line error with exit status 1, like every refused action.
    if not _MONTH.match(value):
        raise click.ClickException(f"--month {value!r} is not a month: use YYYY-MM")
    return value


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """--data, --as, --month, --branch and --json, shared by every report command."""
    for option in reversed((
        click.option("--data", "data_dir", type=DataDir, required=True,
                     help="The node's data directory."),
        as_user,
        click.option("--month", required=True, callback=_month, metavar="YYYY-MM",
                     help="The local month (Asia/Shanghai) reported on."),
        click.option("--branch", default=None, metavar="CODE",
                     help="One branch (HQ readers; a branch manager gets their own)."),
        click.option("--json", "as_json", is_flag=True, help="The report as one JSON object."),
    )):
        f = option(f)
    return f


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and key.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif key != "branch":
            out[f"{prefix}{key}"] = value
    return out


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]
    return out


def render(report: dict[str, Any]) -> str:
    """A report as text: a title line, figures down the side with one column per branch
    and a total, then the per-rep table when the report has one."""
    scope = report["branch"] or "all branches"
    lines = [f"{TITLES.get(report['kind'], report['kind'])} — {report['period']} — {scope}"
             f" (due by {report['due_by']})"]
    if report.get("final") is False:
        lines.append("Not final yet: some deadlines of the month are still running.")
    columns = [(b["branch"] or "HQ", _flat(b)) for b in report["branches"]]
    if report["branch"] is None or len(columns) != 1:
        columns.append(("TOTAL", _flat(report["total"])))
    keys: list[str] = []
    for _, figures in [("TOTAL", _flat(report["total"])), *columns]:
        keys += [k for k in figures if k not in keys]
    lines += _table(["figure", *(name for name, _ in columns)],
                    [[k, *(_cell(k, figures.get(k)) for _, figures in columns)] for k in keys])
    reps = report.get("reps")
    if reps:
        rep_keys = [k for k in reps[0] if k not in ("user_id", "display_name", "role")]
        lines += ["", "Per rep:"]
        lines += _table(rep_keys, [[_cell(k, r.get(k)) for k in rep_keys] for r in reps])
    return "\n".join(lines)


def _show(kind: str, data_dir: Path, username: str, month: str, branch: str | None,
          as_json: bool) -> None:
    from server.services import reports

    async def work(node: Node, p: Principal) -> dict[str, Any]:
        return await reports.report(node, p, kind, month, branch)

    out = run_as(data_dir, username, work)
    click.echo(json.dumps(out, ensure_ascii=False, default=str) if as_json else render(out))


@click.group(cls=Group)
def report() -> None:
    """Monthly reports: complaint statistics (due by the 10th), SLA, visit coverage,
    tickets, rep performance, sync health; and issuing them."""


def _command(kind: str, name: str, help_text: str) -> None:
    @report.command(name, help=help_text)
    @_common
    def cmd(data_dir: Path, username: str, month: str, branch: str | None,
            as_json: bool) -> None:
        _show(kind, data_dir, username, month, branch, as_json)


_command("complaints", "complaints", "Complaints received in the month: by channel and "
         "demand, accepted / declined, closed within 7 days (SLA), overdue, majors "
         "escalated within 24 h, hours to close, compensation, satisfaction.")
_command("sla", "sla", "SLA attainment: complaints closed within 7 days, majors "
         "escalated within 24 h, technicians on time.")
_command("visits", "visits", "Visit coverage: customers due a visit by their class's "
         "plan against those visited, per branch and per rep.")
_command("tickets", "tickets", "Service tickets: count, done, timeliness (及时率), pass "
         "rate (合格率), fees.")
_command("reps", "reps", "Per rep: visits, new customers, complaints closed, tickets "
         "done; target (none defined yet).")
_command("sync_health", "sync-health", "Per branch: last sync, changes waiting, open "
         "conflicts, quarantined changes.")


@report.command("issue")
@click.option("--data", "data_dir", type=DataDir, required=True,
              help="The node's data directory.")
@as_user
@click.option("--kind", required=True, type=click.Choice(
    ["complaints", "sla", "visits", "tickets", "reps", "sync_health"]),
              help="Which report to issue.")
@click.option("--month", required=True, callback=_month, metavar="YYYY-MM",
              help="The local month issued.")
@click.option("--branch", default=None, metavar="CODE",
              help="One branch (default: every branch for HQ, your own for a branch).")
@click.option("--json", "as_json", is_flag=True, help="The snapshot as one JSON object.")
def issue_cmd(data_dir: Path, username: str, kind: str, month: str, branch: str | None,
              as_json: bool) -> None:
    """Issue a monthly report as a snapshot (the same id every time; issuing again
    returns it, refreshed only while its figures were not final)."""
    from server.services import reports

    async def work(node: Node, p: Principal) -> dict[str, Any]:
        return await reports.issue_month(node, p, kind, month, branch)

    row = run_as(data_dir, username, work)
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    on_time = "on time" if row["issued_on_time"] else "LATE"
    click.echo(f"issued {row['kind']} {row['period']} {row['branch'] or 'all branches'}: "
               f"{row['id']} (due by {row['due_by']}, {on_time}"
               f"{'' if row['final'] else ', not final yet'})")
