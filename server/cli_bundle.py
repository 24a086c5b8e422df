"""`branchline bundle …`: sync by signed, encrypted files (e-mail, USB, shared folder)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from server.cli_base import Group, run
from server.cli_base import with_node as _with_node

DataDir = click.Path(file_okay=False, path_type=Path)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """`10MB`, `512KiB`, `2000000` → bytes."""
    m = _SIZE.match(text)
    unit = (m.group(2) or "").lower() if m else ""
    if m is None or unit not in _UNITS:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 10MB, 512KiB)")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size < 4096:
        raise click.BadParameter("parts must be at least 4 KB")
    return size


@contextmanager
def progress(label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (stderr), or a running count when the total is not
    known in advance; nothing at all when output goes elsewhere (scripts, logs)."""
    if not sys.stderr.isatty() or total == 0:
        yield None
        return
    if total is None:
        done = [0]

        def count(rows: int) -> None:
            done[0] += rows
            click.echo(f"\r{label}: {done[0]} rows", nl=False, err=True)

        yield count
        if done[0]:
            click.echo("", err=True)
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@click.group(cls=Group)
def bundle() -> None:
    """Sync by bundle files: for branches without a usable network link."""


def do_export(data_dir: Path, to: str, out: Path, max_part: int, ttl_days: float
              ) -> dict[str, Any]:
    """Export one bundle (shared by `export`, `send` and `watch`)."""
    from server.services.bundles import export_to, pending_for

    async def go(node: Any) -> dict[str, Any]:
        total = await pending_for(node, to)
        with progress("Exporting", total) as bar:
            report = await export_to(node, to, out, max_part=max_part,
                                     ttl=timedelta(days=ttl_days), progress=bar)
        return {"number": report.number, "files": report.files, "rows": report.rows,
                "bytes": report.bytes}

    return run(_with_node(data_dir, go))


@bundle.command("export")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--to", "to", required=True, help="The peer: a branch code or node id (at HQ), "
              "or `hq` (at a branch).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the bundle's part files into.")
@click.option("--max-part-size", default="10MB", show_default=True,
              help="Largest part file (mail size limits), e.g. 10MB, 512KiB.")
@click.option("--ttl-days", default=30.0, show_default=True,
              help="Days after which the recipient refuses the bundle.")
def bundle_export(data_dir: Path, to: str, out: Path, max_part_size: str,
                  ttl_days: float) -> None:
    """Write every change the peer has not acknowledged, and this node's
    acknowledgement of the peer's changes, as a signed bundle encrypted to the peer."""
    info = do_export(data_dir, to, out, parse_size(max_part_size), ttl_days)
    click.echo(f"Bundle #{info['number']}: {info['rows']} rows, {info['bytes']} bytes in "
               f"{len(info['files'])} file(s)")
    for f in info["files"]:
        click.echo(f"  {f}")


def do_import(data_dir: Path, files: list[Path]) -> Any:
    """Import bundle files; print one line per bundle; return the report."""
    from server.services.bundles import import_files

    async def go(node: Any) -> Any:
        with progress("Importing", None) as bar:
            return await import_files(node, files, bar)

    report = run(_with_node(data_dir, go))
    for line in report.applied + report.skipped + report.waiting:
        click.echo(line)
    for line in report.rejected:
        click.echo(f"refused: {line}", err=True)
    return report


@bundle.command("import")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, exists=True, path_type=Path))
def bundle_import(data_dir: Path, files: tuple[Path, ...]) -> None:
    """Verify and apply bundle files (all parts of a bundle, in any order, from any
    number of bundles). Refused files move to DATA/bundles/quarantine and the command
    exits non-zero; bundles missing a part or an earlier bundle wait in
    DATA/bundles/pending and are named with what is missing."""
    report = do_import(data_dir, list(files))
    if not report.ok:
        raise click.exceptions.Exit(1)


__all__ = ["bundle", "do_export", "do_import", "parse_size"]


def _mailbox(host: str, port: int | None, security: str, user: str | None,
             password_env: str, cafile: Path | None) -> Any:
    import os

    from branches import Mailbox

    default = {"tls": 465, "starttls": 587, "none": 25}
    return Mailbox(host=host, port=port or default[security], security=security,  # type: ignore[arg-type]
                   username=user, password=os.environ.get(password_env) if user else None,
                   cafile=str(cafile) if cafile else None)


_security = click.Choice(["tls", "starttls", "none"])


@bundle.command("send")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--to", "to", required=True, help="The peer (branch code or node id, or `hq`).")
@click.option("--smtp-host", required=True, help="SMTP server.")
@click.option("--smtp-port", type=int, help="Default: 465 (tls), 587 (starttls), 25 (none).")
@click.option("--smtp-security", type=_security, default="starttls", show_default=True)
@click.option("--smtp-user", help="Login (password from BRANCHLINE_SMTP_PASSWORD).")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA certificate(s) to trust for a server with its own certificate.")
@click.option("--mail-from", required=True, help="Sender address.")
@click.option("--mail-to", required=True, help="The peer's bundle mailbox.")
@click.option("--max-part-size", default="10MB", show_default=True,
              help="Largest attachment per message.")
@click.option("--ttl-days", default=30.0, show_default=True)
def bundle_send(data_dir: Path, to: str, smtp_host: str, smtp_port: int | None,
                smtp_security: str, smtp_user: str | None, ca_file: Path | None,
                mail_from: str, mail_to: str, max_part_size: str, ttl_days: float) -> None:
    """Export a bundle for the peer and mail its parts, one message per part."""
    import tempfile

    from branches import send_parts

    box = _mailbox(smtp_host, smtp_port, smtp_security, smtp_user,
                   "BRANCHLINE_SMTP_PASSWORD", ca_file)
    with tempfile.TemporaryDirectory(prefix="branchline-send-") as tmp:
        info = do_export(data_dir, to, Path(tmp), parse_size(max_part_size), ttl_days)
        sent = send_parts(box, info["files"], mail_from=mail_from, mail_to=mail_to,
                          subject=f"Branchline bundle #{info['number']}")
    click.echo(f"Bundle #{info['number']}: {info['rows']} rows in {sent} message(s) to "
               f"{mail_to}")


@bundle.command("receive")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--imap-host", help="IMAP server (TLS by default).")
@click.option("--imap-port", type=int, help="Default: 993 (tls), 143 (starttls, none).")
@click.option("--imap-security", type=_security, default="tls", show_default=True)
@click.option("--imap-user", help="Login (password from BRANCHLINE_IMAP_PASSWORD).")
@click.option("--folder", default="INBOX", show_default=True)
@click.option("--move-to", help="Move processed messages to this folder (else mark read).")
@click.option("--ca-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA certificate(s) to trust for a server with its own certificate.")
@click.option("--maildir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Read a local Maildir instead of IMAP.")
@click.argument("eml", nargs=-1, type=click.Path(dir_okay=False, exists=True, path_type=Path))
def bundle_receive(data_dir: Path, imap_host: str | None, imap_port: int | None,
                   imap_security: str, imap_user: str | None, folder: str,
                   move_to: str | None, ca_file: Path | None, maildir: Path | None,
                   eml: tuple[Path, ...]) -> None:
    """Fetch bundle parts from IMAP, a Maildir or saved .eml files and import them.
    Messages are marked read (or moved) only after their bundles were processed."""
    import tempfile

    from branches import fetch_imap, fetch_maildir, read_eml

    if sum(bool(x) for x in (imap_host, maildir, eml)) != 1:
        raise click.UsageError("give exactly one of --imap-host, --maildir or .eml files")
    outcome: dict[str, Any] = {"ok": True, "messages": 0}

    def handle(files: list[Path]) -> None:
        if files:
            outcome["ok"] = do_import(data_dir, files).ok and outcome["ok"]

    with tempfile.TemporaryDirectory(prefix="branchline-receive-") as tmp:
        into = Path(tmp)
        if imap_host:
            box = _mailbox(imap_host, imap_port or (993 if imap_security == "tls" else 143),
                           imap_security, imap_user, "BRANCHLINE_IMAP_PASSWORD", ca_file)
            outcome["messages"] = fetch_imap(box, into, handle, folder=folder, move_to=move_to)
        elif maildir:
            outcome["messages"] = fetch_maildir(maildir, into, handle)
        else:
            files = read_eml(eml, into)
            outcome["messages"] = len(eml)
            handle(files)
    click.echo(f"{outcome['messages']} message(s) processed")
    if not outcome["ok"]:
        raise click.exceptions.Exit(1)


@bundle.command("watch")
@click.option("--data", "data_dir", type=DataDir, required=True, help="The node's data directory.")
@click.option("--inbox", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder where bundles for this node appear (USB stick, shared folder).")
@click.option("--outbox", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder where this node's bundles are written.")
@click.option("--to", "peers", multiple=True,
              help="At HQ: only these branches (default: every enrolled branch).")
@click.option("--interval", default=60.0, show_default=True, help="Seconds between cycles.")
@click.option("--max-part-size", default="10MB", show_default=True)
@click.option("--once", is_flag=True, help="Run one cycle and exit.")
def bundle_watch(data_dir: Path, inbox: Path, outbox: Path, peers: tuple[str, ...],
                 interval: float, max_part_size: str, once: bool) -> None:
    """Folder mode: import what appears in the inbox (once a file has stopped growing)
    and export new changes to the outbox on a schedule. A new bundle replaces the
    older ones for the same peer still in the outbox (it covers them)."""
    import asyncio

    from server.services.bundles import watch_once

    max_part = parse_size(max_part_size)
    inbox.mkdir(parents=True, exist_ok=True)

    async def go(node: Any) -> None:
        acks: dict[str, str] = {}
        while True:
            for line in await watch_once(node, inbox, outbox, peers=list(peers) or None,
                                         max_part=max_part, settle_seconds=0 if once else 2,
                                         last_ack=acks):
                click.echo(line)
            if once:
                return
            await asyncio.sleep(interval)

    run(_with_node(data_dir, go))
