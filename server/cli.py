"""The `branchline` command. Every secret can come from the environment or stdin."""

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

from crypto import CryptoError
from schema import ROLES, SchemaError
from server.errors import NodeError

T = TypeVar("T")
DataDir = click.Path(file_okay=False, path_type=Path)


def _join_sqlite_workers(timeout: float = 5.0) -> None:
    """Wait for aiosqlite worker threads still winding down. A connection that failed to
    open (e.g. a wrong key) is stopped without being awaited; if the loop closes first,
    its thread prints an "Event loop is closed" traceback."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.name.endswith(
                "(_connection_worker_thread)"):
            thread.join(max(0.0, deadline - time.monotonic()))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; known errors become one line on stderr and exit status 1."""
    try:
        with asyncio.Runner() as runner:
            try:
                return runner.run(coro)
            finally:
                _join_sqlite_workers()  # while the loop is still open
    except (NodeError, SchemaError, CryptoError) as exc:
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
        except (NodeError, SchemaError, CryptoError) as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # the last line of defence for the user's terminal
            raise click.ClickException(f"internal error: {type(exc).__name__}: {exc}") from None


def secret_from(env_name: str, prompt: str) -> str:
    """A secret from an environment variable, else one line of stdin (or a prompt)."""
    value = os.environ.get(env_name)
    if value:
        return value
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        raise click.ClickException(f"no password: set {env_name} or pipe it on stdin")
    return line


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="branchline")
def main() -> None:
    """Branchline: offline-first customer management for chain stores."""


@main.group(cls=Group)
def init() -> None:
    """Create a node (headquarters now; branches with the sync engine)."""


@init.command("hq")
@click.option("--data", "data_dir", type=DataDir, required=True, help="Data directory to create.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to keep the database key (default: outside the data directory, "
                   "in ~/.config/branchline/keys/). Ignored when BRANCHLINE_DB_KEY is set.")
@click.option("--database-url", help="postgresql+asyncpg://… for a large HQ; default: an "
                                     "SQLCipher file in the data directory.")
@click.option("--name", default="总部", show_default=True, help="Display name of the node.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init_hq(data_dir: Path, key_file: Path | None, database_url: str | None, name: str,
            as_json: bool) -> None:
    """Create a headquarters node. The admin password comes from
    BRANCHLINE_ADMIN_PASSWORD, else one is generated and printed once."""
    from server.node import init_node

    async def go() -> Any:
        node, result = await init_node(data_dir, role="hq", name=name, environ=os.environ,
                                       key_file=key_file, database_url=database_url)
        await node.close()
        return result

    result = run(go())
    if as_json:
        import json
        click.echo(json.dumps({"node_id": result.node.node_id, "data": str(data_dir.resolve()),
                               "key_file": str(result.key_file) if result.key_file else None,
                               "admin_username": result.admin_username,
                               "admin_password": result.admin_password
                               if result.password_generated else None}))
        return
    click.echo(f"Created headquarters node {result.node.node_id} in {data_dir.resolve()}")
    if result.key_file:
        click.echo(f"Database key: {result.key_file} (back it up; without it the data is lost)")
    if result.password_generated:
        click.echo(f"Admin login: admin / {result.admin_password}  (shown only once)")


@main.command()
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
def serve(data_dir: Path, host: str, port: int) -> None:
    """Serve the node's API and web app."""
    from server.config import load_settings
    from server.serving import check_node, serve_forever

    settings = load_settings(data_dir)
    run(check_node(settings))
    click.echo(f"Branchline {settings.node.role} '{settings.node.name}' serving at "
               f"http://{host}:{port}/  (API docs: /schema)")
    serve_forever(settings, host, port)


@main.group(cls=Group)
def user() -> None:
    """Manage users."""


@user.command("add")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--username", required=True, help="Login name (lowercase).")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The user's role.")
@click.option("--branch", help="Branch code (e.g. S012) for branch staff.")
@click.option("--department", help="Department name.")
@click.option("--display-name", help="Name shown in the app (default: the username).")
def user_add(data_dir: Path, username: str, role: str, branch: str | None,
             department: str | None, display_name: str | None) -> None:
    """Add a user. The password comes from BRANCHLINE_PASSWORD or stdin."""
    from server.config import load_settings
    from server.node import open_node
    from server.services.users import create_user

    settings = load_settings(data_dir)
    password = secret_from("BRANCHLINE_PASSWORD", "Password")

    async def go() -> dict[str, Any]:
        node = await open_node(settings)
        try:
            return await create_user(node, None, username=username, password=password,
                                     role=role, branch=branch, department=department,
                                     display_name=display_name)
        finally:
            await node.close()

    row = run(go())
    click.echo(f"Added user {row['username']} ({row['role']}) id {row['id']}")


@main.command()
@click.option("--data", "data_dir", type=DataDir, default=Path("branchline-demo"),
              show_default=True, help="Where to keep the demo node.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--customers", default=2000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="How many customers to generate.")
@click.option("--no-serve", is_flag=True, help="Create the data and exit.")
def demo(data_dir: Path, host: str, port: int, customers: int, no_serve: bool) -> None:
    """Create a demo HQ (3 branches, a dozen users, thousands of customers) and serve it."""
    from server.config import load_settings
    from server.demo import DEMO_PASSWORD, build_demo
    from server.serving import serve_forever

    if not (data_dir / "node.json").exists():
        click.echo(f"Creating demo data in {data_dir.resolve()} …")
        logins = run(build_demo(data_dir, customers, os.environ))
    else:
        from server.demo import read_logins
        logins = run(read_logins(load_settings(data_dir)))
    click.echo(f"Logins (password for all: {DEMO_PASSWORD}):")
    for username, role, branch in logins:
        click.echo(f"  {username:<16} {role:<18} {branch or 'HQ'}")
    if no_serve:
        return
    click.echo(f"Branchline demo HQ at http://{host}:{port}/  (API docs: "
               f"http://{host}:{port}/schema)")
    serve_forever(load_settings(data_dir), host, port)


@main.command()
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
def rekey(data_dir: Path) -> None:
    """Re-encrypt the database under a new random key and replace the key file.

    With BRANCHLINE_DB_KEY set (no key file), the new key is printed once instead."""
    from server.config import load_settings
    from server.rekey import rekey_node

    settings = load_settings(data_dir)
    new_hex = run(rekey_node(settings))
    if new_hex is not None:
        click.echo(f"New database key (set BRANCHLINE_DB_KEY to it): {new_hex}")
    else:
        click.echo(f"Database re-encrypted; new key in {settings.node.key_file}")


def entry(func: Callable[[], None]) -> None:  # pragma: no cover - console_script shim
    func()
