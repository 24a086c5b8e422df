"""Exporting and importing bundles against a node's database (SPEC §Bundles).

Export writes every change the peer has not acknowledged, from its acknowledgement on,
and this node's own acknowledgement of the peer's changes. Import checks, in order:
the file is a bundle part; all parts are there (else it waits, saying which are
missing); the bundle is addressed to this node by an enrolled, unrevoked sender and not
expired; the sender's signature over the whole stream verifies; it was not imported
before; it starts where this node already is (else it waits for the earlier bundle).
Only then does it decrypt, and it applies the whole bundle in one transaction.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import func, select

from branches._bundles import (
    DEFAULT_TTL,
    FRAME_BATCH,
    FRAME_END,
    BundleEnd,
    BundleHeader,
    BundleRejected,
    Folders,
    PartHeader,
    Sealer,
    cursor_key,
    decode_batch,
    decode_end,
    header_of,
    keep_pending,
    open_sealed,
    part_name,
    quarantine,
    read_frames,
    read_part_header,
    reassemble,
    write_parts,
)
from branches._errors import BranchError
from crypto import BoxKey, BundleError, NodeKey
from schema import Database, Scope, nodes, peer_state, pending_since, sync_peers, utcnow
from schema._apply import ApplyResult, apply_batch
from schema._exchange import next_page, no_echo_cursor, stream_head
from schema._tables import bundle_log
from schema._upsert import upsert
from sync import PAGE_ROWS, PROTOCOL_VERSION

SCHEMA_VERSION = 1


@dataclass
class BundleNode:
    """What bundle exchange needs of the running node (passed in by the server)."""

    db: Database
    node_id: str
    role: str
    key: NodeKey
    box: BoxKey
    folders: Folders
    hq_node_id: str
    max_skew_ms: int = 5 * 60 * 1000
    page_rows: int = PAGE_ROWS


@dataclass
class ExportReport:
    bundle_id: str
    number: int
    files: list[Path]
    rows: int
    bytes: int


@dataclass
class ImportReport:
    """What one `import` did, file by file and bundle by bundle: one line each."""

    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.rejected


async def _peer(node: BundleNode, peer_id: str) -> Any:
    async with node.db.read() as conn:
        return (await conn.execute(select(nodes).where(nodes.c.id == peer_id))).first()


def _label(row: Any) -> str:
    return str(row.branch or row.kind).lower()


async def export_bundle(node: BundleNode, peer_id: str, out_dir: Path, *,
                        max_part: int = 10 * 1024 * 1024, ttl: timedelta = DEFAULT_TTL,
                        progress: Callable[[int], None] | None = None) -> ExportReport:
    """Seal everything `peer_id` has not acknowledged into part files in `out_dir`."""
    peer = await _peer(node, peer_id)
    if peer is None:
        raise BranchError(f"unknown peer {peer_id}")
    if peer.revoked_at is not None:
        raise BranchError(f"node {peer_id} is revoked: no bundle is made for it")
    if not peer.box_public_key:
        raise BranchError(f"node {peer_id} has no bundle key (enrolled before bundles "
                          "existed? re-enrol it)")
    me = await _peer(node, node.node_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = await peer_state(node.db, peer_id)
    async with node.db.read() as conn:
        number = 1 + int((await conn.execute(select(func.max(bundle_log.c.number)).where(
            bundle_log.c.peer_id == peer_id, bundle_log.c.direction == "out"))).scalar() or 0)
    now = datetime.now(UTC)
    header = BundleHeader(
        bundle_id=str(uuid.uuid4()), sender=node.node_id, recipient=peer_id, number=number,
        created_at=now, expires_at=now + ttl, schema=SCHEMA_VERSION,
        protocol=PROTOCOL_VERSION, since=state["acked"], ack=state["pulled"])
    serve = node.role == "hq"  # HQ serves snapshots to a branch that starts from nothing
    scope = Scope(peer.branch) if serve else Scope()
    sealer = Sealer(out_dir, header, node.key, peer.box_public_key)
    rows = batches = 0
    try:
        # Content starts where the peer's acknowledgement stands, moved past what we took
        # from the peer itself (no-echo); the header names the acknowledgement proper,
        # against which the peer checks for a gap.
        cursor = state["pushed"]
        while True:
            batch = await next_page(node.db, sender=node.node_id, peer=peer_id, scope=scope,
                                    cursor=cursor, limit=node.page_rows, serve_snapshot=serve)
            sealer.payload.batch(batch)
            rows += len(batch.rows)
            batches += 1
            cursor = batch.cursor
            if progress is not None:
                progress(len(batch.rows))
            if not batch.more:
                break
        sealer.payload.end(BundleEnd(until=cursor, batches=batches, rows=rows))
        sealer.close()
        base = PartHeader(bundle_id=header.bundle_id, sender=node.node_id, recipient=peer_id,
                          number=number, part=1, parts=1)
        files = write_parts(sealer.path, out_dir, base, max_part, lambda p, n: part_name(
            _label(me) if me else "node", _label(peer), number, header.bundle_id, p, n))
        size = sealer.path.stat().st_size
    finally:
        sealer.discard()
    async with node.db.admin() as conn:
        await conn.execute(bundle_log.insert().values(
            id=header.bundle_id, peer_id=peer_id, direction="out", number=number,
            since=header.since, until=cursor, rows=rows, parts=len(files), bytes=size,
            status="sent", at=utcnow()))
    return ExportReport(header.bundle_id, number, files, rows, size)


@dataclass
class _Bundle:
    head: PartHeader
    parts: dict[int, tuple[Path, int]]


def _gather(node: BundleNode, files: Iterable[Path], report: ImportReport
            ) -> dict[str, _Bundle]:
    """Group the given files and the pending ones by bundle; refuse what is no bundle."""
    groups: dict[str, _Bundle] = {}
    given = [(p, False) for p in files]
    if node.folders.pending.is_dir():
        given += [(p, True) for p in sorted(node.folders.pending.glob("*.blb"))]
    for path, pending in given:
        try:
            head, offset = read_part_header(path)
        except (BundleError, OSError) as exc:
            if not pending:
                report.rejected.append(f"{path.name}: {exc} (moved to "
                                       f"{quarantine(node.folders, path).parent})")
            continue
        if head.recipient != node.node_id:
            report.rejected.append(f"{path.name}: addressed to another node ({head.recipient})"
                                   f" (moved to {quarantine(node.folders, path).parent})")
            continue
        group = groups.setdefault(head.bundle_id, _Bundle(head, {}))
        if head.parts != group.head.parts or head.sender != group.head.sender:
            report.rejected.append(f"{path.name}: its part header disagrees with the "
                                   f"other parts (moved to "
                                   f"{quarantine(node.folders, path).parent})")
            continue
        if head.part not in group.parts or not pending:
            group.parts[head.part] = (path, offset)
    return groups


async def import_bundles(node: BundleNode, files: Iterable[Path],
                         progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import bundle part files (and any waiting in the pending folder)."""
    report = ImportReport()
    groups = _gather(node, list(files), report)
    progressing = True
    while progressing:  # applying one bundle may let a waiting later one follow
        progressing = False
        for bundle_id in sorted(groups, key=lambda b: groups[b].head.number):
            outcome = await _import_one(node, groups[bundle_id], report, progress)
            if outcome != "wait":
                del groups[bundle_id]
                progressing = progressing or outcome == "applied"
    for group in groups.values():  # still waiting: keep the parts for a later import
        for path, _ in group.parts.values():
            keep_pending(node.folders, path)
    return report


def _missing(group: _Bundle) -> list[int]:
    return [p for p in range(1, group.head.parts + 1) if p not in group.parts]


async def _import_one(node: BundleNode, group: _Bundle, report: ImportReport,
                      progress: Callable[[int], None] | None) -> str:
    head = group.head
    name = f"bundle #{head.number} from {head.sender} ({head.bundle_id[:8]})"
    missing = _missing(group)
    if missing:
        line = (f"{name}: waiting for part(s) {', '.join(map(str, missing))} of "
                f"{head.parts}")
        if line not in report.waiting:
            report.waiting.append(line)
        return "wait"
    async with node.db.read() as conn:
        seen = (await conn.execute(select(bundle_log.c.status).where(
            bundle_log.c.id == head.bundle_id, bundle_log.c.direction == "in"))).scalar()
    if seen is not None:
        report.skipped.append(f"{name}: already imported, nothing to do")
        _drop_pending(node, group)
        return "done"
    with tempfile.TemporaryDirectory(prefix="bundle-", dir=_tmp_root(node)) as tmp:
        sealed = Path(tmp) / "sealed"
        with sealed.open("wb") as f:
            reassemble(group.parts, f)
        try:
            header = header_of(sealed)
            sender = await _check_sender(node, header, head)
            stream = open_sealed(sealed, sender.public_key, node.box)
            verdict = await _apply(node, header, sender, stream, name, report, progress)
        except (BundleError, BundleRejected, msgspec.DecodeError, ValueError) as exc:
            where = {quarantine(node.folders, p).parent for p, _ in group.parts.values()
                     if p.exists()}
            report.rejected.append(f"{name}: {exc}; nothing applied (moved to "
                                   f"{', '.join(map(str, where))})")
            return "done"
    if verdict != "wait":
        _drop_pending(node, group)
    return verdict


def _tmp_root(node: BundleNode) -> Path:
    node.folders.make()
    return node.folders.root


def _drop_pending(node: BundleNode, group: _Bundle) -> None:
    for path, _ in group.parts.values():
        if path.parent.resolve() == node.folders.pending.resolve():
            path.unlink(missing_ok=True)


async def _check_sender(node: BundleNode, header: BundleHeader, head: PartHeader) -> Any:
    if header.bundle_id != head.bundle_id or header.sender != head.sender:
        raise BundleRejected("its part headers do not match the bundle")
    if header.recipient != node.node_id:
        raise BundleRejected(f"addressed to another node ({header.recipient})")
    sender = await _peer(node, header.sender)
    if sender is None:
        raise BundleRejected(f"unknown sender {header.sender}")
    if sender.revoked_at is not None:
        raise BundleRejected(f"sender {header.sender} is revoked")
    if node.role != "hq" and header.sender != node.hq_node_id:
        raise BundleRejected("a branch takes bundles from headquarters only")
    if header.expires_at < datetime.now(UTC):
        raise BundleRejected(f"expired on {header.expires_at:%Y-%m-%d %H:%M} UTC; ask for a "
                             "new export")
    if header.schema != SCHEMA_VERSION or header.protocol != PROTOCOL_VERSION:
        raise BundleRejected(f"made by another version (schema {header.schema}, protocol "
                             f"{header.protocol})")
    return sender


async def _apply(node: BundleNode, header: BundleHeader, sender: Any, stream: Any, name: str,
                 report: ImportReport, progress: Callable[[int], None] | None) -> str:
    state = await peer_state(node.db, header.sender)
    if header.since and (not state["pulled"]
                         or cursor_key(header.since) > cursor_key(state["pulled"])):
        report.waiting.append(
            f"{name}: starts after changes not received yet (this node has applied up to "
            f"{state['pulled'] or 'nothing'}, the bundle starts at {header.since}): import "
            "the earlier bundle, or ask the sender to export again")
        next(iter(stream), None)  # verify the signature before keeping it
        return "wait"
    frames = read_frames(stream)
    # At HQ, a branch may write only its own customers (checked per change, §9).
    writer_branch = sender.branch if node.role == "hq" else None
    end: BundleEnd | None = None
    rows = 0
    offered = 0
    async with node.db.write(node.node_id, None) as uow:
        head = await stream_head(uow.conn)
        for kind, payload in frames:
            if kind == FRAME_END:
                end = decode_end(payload)
                continue
            if kind != FRAME_BATCH or end is not None:
                raise BundleError("bundle holds an unknown or misplaced frame")
            batch = decode_batch(payload)
            if batch.sender != header.sender:
                raise BundleError("bundle holds a batch of another sender")
            if batch.reset:
                raise BundleError("the sender asks for a rebuild from a snapshot: sync "
                                  "online once, or re-enrol this node")
            applied = await apply_batch(uow, batch, hq_node=node.hq_node_id,
                                        writer_branch=writer_branch,
                                        max_skew_ms=node.max_skew_ms, peer=header.sender)
            offered += applied.offered
            rows += len(batch.rows)
            if progress is not None:
                progress(len(batch.rows))
        if end is None:
            raise BundleError("bundle is incomplete (no trailer)")
        values: dict[str, Any] = {"peer_id": header.sender, "last_contact": utcnow(),
                                  "last_error": None}
        if not state["pulled"] or cursor_key(end.until) > cursor_key(state["pulled"]):
            values["pulled"] = end.until
        if header.ack and (not state["pushed"]
                           or cursor_key(header.ack) > cursor_key(state["pushed"])):
            values["pushed"] = header.ack
        if header.ack and (not state["acked"]
                           or cursor_key(header.ack) > cursor_key(state["acked"])):
            values["acked"] = header.ack
        # What we just took from the sender is not sent back to it (SPEC §13).
        skip = await no_echo_cursor(uow, values.get("pushed", state["pushed"]), head,
                                    ApplyResult(offered=offered))
        if skip is not None:
            values["pushed"] = skip
        await upsert(uow.conn, sync_peers, [values], ("peer_id",),
                     tuple(k for k in values if k != "peer_id"))
        await uow.conn.execute(bundle_log.insert().values(
            id=header.bundle_id, peer_id=header.sender, direction="in", number=header.number,
            since=header.since, until=end.until, rows=rows, parts=0, bytes=0,
            status="applied", at=utcnow()))
    report.applied.append(f"{name}: {rows} rows applied")
    report.rows += rows
    return "applied"


async def pending_changes(node: BundleNode, peer_id: str) -> int:
    """Changes `peer_id` has not acknowledged (what an export would carry at most)."""
    return await pending_since(node.db, (await peer_state(node.db, peer_id))["pushed"])


__all__ = ["BundleNode", "ExportReport", "ImportReport", "export_bundle", "import_bundles",
           "pending_changes"]
