"""`branchline analytics …`: the analyses of domain.md §10 from the terminal, as a
logged-in user (HQ across branches, a branch for its own customers): the same services
as /api/v1/analytics, printed as JSON (for scripts and spreadsheets) or a short summary."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from server.cli_acting import as_user, run_as
from server.cli_base import Group
from server.node import Node
from server.services.principal import Principal

DataDir = click.Path(file_okay=False, path_type=Path)
Work = Callable[[Node, Principal], Coroutine[Any, Any, dict[str, Any]]]

__all__ = ["analytics"]


@click.group(cls=Group)
def analytics() -> None:
    """RFM, the 80/20 curve, the pyramid, dormant customers, class changes, CLV and
    households (domain.md §10), over the customers you may see."""


def _common(fn: Callable[..., None]) -> Callable[..., None]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")(fn)
    fn = as_user(fn)
    return click.option("--data", "data_dir", type=DataDir, required=True,
                        help="The node's data directory.")(fn)


def _window(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option("--window-days", default=365, show_default=True,
                        type=click.IntRange(1, 3650), help="The period looked back on.")(fn)


def _show(result: dict[str, Any], as_json: bool, lines: Callable[[dict[str, Any]], list[str]]
          ) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, default=str))
        return
    for line in lines(result):
        click.echo(line)


def _yuan(fen: Any) -> str:
    return f"¥{int(fen or 0) / 100:,.2f}"


def _go(data_dir: Path, username: str, work: Work) -> dict[str, Any]:
    return run_as(data_dir, username, work)


@analytics.command("rfm")
@_common
@_window
@click.option("--segment", help="Only the customers of one segment.")
def rfm_cmd(data_dir: Path, username: str, as_json: bool, window_days: int,
            segment: str | None) -> None:
    """RFM scores: customers and amounts per segment, and the top customers."""
    from server.services.analytics_rfm import rfm

    result = _go(data_dir, username, lambda n, p: rfm(n, p, window_days=window_days,
                                                      segment=segment, limit=20))
    _show(result, as_json, lambda r: [
        f"{s.get('segment', '?'):<24} {s.get('customers', 0):>8} {_yuan(s.get('monetary_fen'))}"
        for s in r.get("segments", [])])


@analytics.command("pareto")
@_common
@_window
def pareto_cmd(data_dir: Path, username: str, as_json: bool, window_days: int) -> None:
    """The 80/20 contribution curve."""
    from server.services.analytics_rfm import contribution

    result = _go(data_dir, username, lambda n, p: contribution(n, p, window_days=window_days))
    _show(result, as_json, lambda r: [
        f"{k}: {v}" for k, v in r.items() if not isinstance(v, list | dict)])


@analytics.command("pyramid")
@_common
@_window
@click.option("--scheme", "scheme_column", default="customer_class", show_default=True,
              help="The class column (customer_class, abc_class, value_class, credit_class).")
def pyramid_cmd(data_dir: Path, username: str, as_json: bool, window_days: int,
                scheme_column: str) -> None:
    """Customers, buyers and amount per class."""
    from server.services.analytics_base import pyramid

    result = _go(data_dir, username, lambda n, p: pyramid(
        n, p, scheme_column=scheme_column, window_days=window_days))
    _show(result, as_json, lambda r: [
        f"{level.get('cls') or '-'!s:<12} {level.get('customers', 0):>8} "
        f"{_yuan(level.get('amount_fen'))}" for level in r.get("levels", [])])


@analytics.command("dormant")
@_common
@click.option("--days", default=180, show_default=True, type=click.IntRange(1, 3650),
              help="No purchase in this many days (静止户).")
def dormant_cmd(data_dir: Path, username: str, as_json: bool, days: int) -> None:
    """Dormant customers: bought before, nothing in the last N days."""
    from server.services.analytics_base import dormant

    result = _go(data_dir, username, lambda n, p: dormant(n, p, days=days, limit=20))
    _show(result, as_json, lambda r: [
        f"{k}: {v}" for k, v in r.items() if not isinstance(v, list | dict)])


@analytics.command("changes")
@_common
def changes_cmd(data_dir: Path, username: str, as_json: bool) -> None:
    """Class changes (客户异动), churn and recovery over the last period."""
    from server.services.analytics_base import changes

    result = _go(data_dir, username, lambda n, p: changes(n, p))
    _show(result, as_json, lambda r: [
        f"{k}: {v}" for k, v in r.items() if not isinstance(v, list | dict)])


@analytics.command("clv")
@_common
@_window
def clv_cmd(data_dir: Path, username: str, as_json: bool, window_days: int) -> None:
    """Customer lifetime value per customer and by class."""
    from server.services.analytics_rfm import clv

    result = _go(data_dir, username, lambda n, p: clv(n, p, window_days=window_days, limit=20))
    _show(result, as_json, lambda r: [
        f"{k}: {v}" for k, v in r.items() if not isinstance(v, list | dict)])


@analytics.command("households")
@_common
@_window
def households_cmd(data_dir: Path, username: str, as_json: bool, window_days: int) -> None:
    """Households (归户): several accounts of one customer."""
    from server.services.analytics_households import households

    result = _go(data_dir, username, lambda n, p: households(n, p, window_days=window_days,
                                                             limit=20))
    _show(result, as_json, lambda r: [
        f"{k}: {v}" for k, v in r.items() if not isinstance(v, list | dict)])
