"""Commands that act as a user (approvals, reports, audit, import and export): the
person at the terminal names themselves with `--as` and proves it with their password,
exactly as at the login endpoint (throttled, audited). Holding the data directory and
its key is not enough to act as the general manager."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from server.cli_base import run, secret_from
from server.cli_base import with_node as _with_node
from server.node import Node
from server.services.principal import Principal

T = TypeVar("T")

__all__ = ["as_user", "run_as"]

as_user: Callable[[Callable[..., Any]], Callable[..., Any]] = click.option(
    "--as", "username", required=True, metavar="USERNAME",
    help="Who is acting; their password comes from BRANCHLINE_PASSWORD or stdin.")


async def _principal(node: Node, username: str, password: str) -> Principal:
    from server.services.users import LoginThrottle, login

    throttle = LoginThrottle(node.settings.login_max_failures, node.settings.login_window_seconds)
    _, _, row = await login(node, throttle, username, password, "cli")
    return Principal.from_row(row)


def run_as(data_dir: Path, username: str,
           work: Callable[[Node, Principal], Coroutine[Any, Any, T]]) -> T:
    """Open the node at `data_dir`, log `username` in, and run `work` as them; a wrong
    password or a refused action is one line on stderr and exit status 1."""
    password = secret_from("BRANCHLINE_PASSWORD", f"Password for {username}", confirm=False)

    async def go(node: Node) -> T:
        return await work(node, await _principal(node, username, password))

    return run(_with_node(data_dir, go))
