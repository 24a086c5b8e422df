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

from server.cli import Group, _with_node, run

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
def progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (stderr); nothing when output goes elsewhere."""
    if not sys.stderr.isatty() or total <= 0:
        yield None
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
        return await import_files(node, files)

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
