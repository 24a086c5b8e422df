"""What every `branchline` command module shares: the group class that turns errors into
one line, running a coroutine with the same translation, secrets from the environment or
stdin, and opening a node for a command. The command modules (`server/cli*.py`) import
from here; `server/cli.py` composes them."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from branches import BranchError
from crypto import CryptoError
from schema import SchemaError
from server.errors import NodeError

__all__ = ["DataDir", "Group", "run", "secret_from", "with_node"]

T = TypeVar("T")
DataDir = click.Path(file_okay=False, path_type=Path)


def _join_sqlite_workers(before: set[threading.Thread], timeout: float = 5.0) -> None:
    """Wait for the aiosqlite worker threads this run started that are still winding
    down. A connection that failed to open (e.g. a wrong key) is stopped without being
    awaited; if the loop closes first, its thread prints an "Event loop is closed"
    traceback. Threads that were there `before` (a host process's own connections, when
    the CLI runs in-process) are not ours to wait for."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread not in before and thread.name.endswith("(_connection_worker_thread)"):
            thread.join(max(0.0, deadline - time.monotonic()))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; known errors become one line on stderr and exit status 1."""
    before = set(threading.enumerate())
    try:
        with asyncio.Runner() as runner:
            try:
                return runner.run(coro)
            finally:
                _join_sqlite_workers(before)  # while the loop is still open
    except (NodeError, SchemaError, CryptoError, BranchError) as exc:
        raise click.ClickException(str(exc)) from None


class Group(click.Group):
    """Turns any escaped exception into a one-line message instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except (NodeError, SchemaError, CryptoError, BranchError) as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # the last line of defence for the user's terminal
            raise click.ClickException(f"internal error: {type(exc).__name__}: {exc}") from None


def secret_from(env_name: str, prompt: str, *, confirm: bool = True) -> str:
    """A secret from an environment variable, else one line of stdin (or a prompt)."""
    value = os.environ.get(env_name)
    if value:
        return value
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        raise click.ClickException(f"no secret given: set {env_name} or pipe it on stdin")
    return line


async def with_node(data_dir: Path, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Open the node at `data_dir`, run `work` on it, close it."""
    from server.config import load_settings
    from server.node import open_node

    node = await open_node(load_settings(data_dir))
    try:
        return await work(node)
    finally:
        await node.close()
