"""Talking to headquarters: signed sync requests, and one full sync round."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import msgspec

from branches._errors import UpstreamError
from crypto import NodeKey, SignatureError, request_message, response_message, verify
from schema import (
    Database,
    Scope,
    incoming,
    outgoing,
    parse_cursor,
    peer_state,
    record_peer,
    wipe_replica,
)
from sync import (
    PROTOCOL_VERSION,
    Batch,
    Message,
    PullRequest,
    PushAck,
    PushRequest,
    Refusal,
    compress,
    decode,
    decompress,
    encode,
)

MEDIA = "application/msgpack"
SCHEMA_VERSION = 1
log = logging.getLogger("branchline.sync")

AfterSync = Callable[[Database, str, int], Awaitable[object]]
_AFTER_SYNC: list[AfterSync] = []


def after_sync(hook: AfterSync) -> AfterSync:
    """Run `hook(db, node_id, settled_upstream)` after every round that pulled changes
    (the server's collision resolver, SPEC §16); `settled_upstream` is
    `SyncReport.settled_upstream`. Registering the same hook twice has no effect."""
    if hook not in _AFTER_SYNC:
        _AFTER_SYNC.append(hook)
    return hook


async def run_after_sync(db: Database, node_id: str, report: SyncReport | None = None
                         ) -> None:
    """Run the registered hooks; a failing hook is logged (and noted in `report`), never
    a failed sync: what was applied stays applied."""
    settled = report.settled_upstream if report is not None else 0
    for hook in list(_AFTER_SYNC):
        try:
            await hook(db, node_id, settled)
        except Exception as exc:
            log.exception("a step after sync failed")
            if report is not None:
                report.messages.append(f"after-sync step failed: {exc}")


@dataclass(frozen=True)
class Upstream:
    """Who this node syncs with, and as whom."""

    url: str
    node_id: str
    key: NodeKey
    hq_node_id: str
    hq_public_key: str
    branch: str | None


@dataclass
class SyncReport:
    """What one sync round moved."""

    pushed_rows: int = 0
    pulled_rows: int = 0
    applied: int = 0
    conflicts: int = 0
    evicted: int = 0
    quarantined: int = 0
    requests: int = 0
    clock_offset_ms: int | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    messages: list[str] = field(default_factory=list)
    settled_upstream: int = 0
    """The local sequence number through which the upstream holds all of this node's
    changes after a push round it acknowledged to the end, having settled them (its
    after-push step, SPEC §16); 0 when no round completed."""


_STATS: contextvars.ContextVar[SyncReport | None] = contextvars.ContextVar("sync_stats",
                                                                           default=None)


async def call(client: httpx.AsyncClient, up: Upstream, path: str, message: Message
               ) -> tuple[Message, int]:
    """POST a signed protocol message; return the verified reply and HQ's clock."""
    body = compress(encode(message))
    millis = int(time.time() * 1000)
    headers = {
        "content-type": MEDIA,
        "content-encoding": "zstd",
        "x-branchline-node": up.node_id,
        "x-branchline-time": str(millis),
        "x-branchline-signature": up.key.sign(
            request_message("POST", path, up.node_id, millis, body)),
    }
    try:
        r = await client.post(up.url.rstrip("/") + path, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"cannot reach {up.url}: {exc or type(exc).__name__}") from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text[:200]
        raise UpstreamError(f"headquarters refused ({r.status_code}): {detail}")
    try:
        their_time = int(r.headers.get("x-branchline-time", ""))
        verify(up.hq_public_key, r.headers.get("x-branchline-signature", ""),
               response_message(r.status_code, up.hq_node_id, their_time, r.content))
    except (ValueError, SignatureError):
        raise UpstreamError("the reply is not signed by our headquarters") from None
    try:
        raw = r.content
        reply = decode(decompress(raw) if r.headers.get("x-branchline-encoding") == "zstd"
                       else raw)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        raise UpstreamError("headquarters sent a malformed reply") from None
    stats = _STATS.get()
    if stats is not None:
        stats.bytes_sent += len(body)
        stats.bytes_received += len(raw)
    if isinstance(reply, Refusal):
        raise UpstreamError(f"headquarters refused: {reply.reason}")
    return reply, their_time


async def sync_once(db: Database, up: Upstream, *, max_skew_ms: int, page_rows: int,
                    client: httpx.AsyncClient | None = None) -> SyncReport:
    """Push everything HQ has not acknowledged, then pull everything new in scope."""
    report = SyncReport()
    _STATS.set(report)
    own = client or httpx.AsyncClient(timeout=300)
    try:
        await _push(db, up, own, page_rows, report)
        await _pull(db, up, own, page_rows, max_skew_ms, report)
    except UpstreamError as exc:
        await record_peer(db, up.hq_node_id, last_error=str(exc))
        raise
    finally:
        if client is None:
            await own.aclose()
    await record_peer(db, up.hq_node_id, last_error=None,
                      clock_offset_ms=report.clock_offset_ms)
    if report.pulled_rows:
        await run_after_sync(db, up.node_id, report)
    return report


async def _push(db: Database, up: Upstream, client: httpx.AsyncClient, page_rows: int,
                report: SyncReport) -> None:
    """Push pages until HQ has acknowledged everything. The next page is read while HQ
    applies the current one (it starts where the current one ends); the cursor moves
    only when HQ acknowledges, so a cut connection resends from the last ack."""
    state = await peer_state(db, up.hq_node_id)
    batches_out = int(state["batches_out"])

    async def page(cursor: str) -> Batch:
        return await outgoing(db, sender=up.node_id, peer=up.hq_node_id, scope=Scope(),
                              cursor=cursor, limit=page_rows)

    batch = await page(state["pushed"])
    sent = False
    while True:
        following: asyncio.Task[Batch] | None = None
        # After a full page, the last page is sent even when empty: HQ settles a push
        # (collisions, SPEC §16) when a page says no more follow.
        if batch.rows or batch.evictions or sent:
            sent = True
            sending = asyncio.create_task(call(client, up, "/sync/v1/push", PushRequest(
                protocol=PROTOCOL_VERSION, schema=SCHEMA_VERSION, node=up.node_id,
                batch=batch)))
            if batch.more:
                following = asyncio.create_task(page(batch.cursor))
            try:
                reply, _ = await sending
            except BaseException:
                if following is not None:
                    following.cancel()
                    await asyncio.gather(following, return_exceptions=True)
                raise
            if not isinstance(reply, PushAck):
                if following is not None:
                    following.cancel()
                raise UpstreamError("headquarters answered a push with something else")
            report.pushed_rows += len(batch.rows)
            report.quarantined += len(reply.quarantined)
            report.messages += [f"HQ quarantined {q.tbl} {q.id}: {q.reason}"
                                for q in reply.quarantined]
            cursor = reply.cursor
        else:
            cursor = batch.cursor
        batches_out += 1
        await record_peer(db, up.hq_node_id, pushed=cursor, acked=cursor,
                          batches_out=batches_out)
        if not batch.more:
            if sent:  # the upstream heard the round end and settled what it took
                report.settled_upstream = parse_cursor(cursor)[0]
            return
        if following is not None and cursor == batch.cursor:
            batch = await following
        else:
            if following is not None:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            batch = await page(cursor)


async def _pull(db: Database, up: Upstream, client: httpx.AsyncClient, page_rows: int,
                max_skew_ms: int, report: SyncReport) -> None:
    while True:
        state = await peer_state(db, up.hq_node_id)
        sent = int(time.time() * 1000)
        reply, their_time = await call(client, up, "/sync/v1/pull", PullRequest(
            protocol=PROTOCOL_VERSION, schema=SCHEMA_VERSION, node=up.node_id,
            cursor=state["pulled"], limit=page_rows))
        if not isinstance(reply, Batch):
            raise UpstreamError("headquarters answered a pull with something else")
        report.clock_offset_ms = their_time - (sent + int(time.time() * 1000)) // 2
        if reply.reset:
            # Our cursor predates deletes HQ has forgotten: rebuild from its snapshot.
            # Everything of ours was pushed just before, so nothing is lost.
            await wipe_replica(db, up.hq_node_id)
            report.messages.append("replica rebuilt from a snapshot (offline too long)")
        result = await incoming(db, reply, node_id=up.node_id, peer=up.hq_node_id,
                                hq_node=up.hq_node_id, writer_branch=None,
                                max_skew_ms=max_skew_ms)
        report.pulled_rows += len(reply.rows)
        report.applied += result.applied
        report.conflicts += result.conflicts
        report.evicted += result.evicted
        report.quarantined += len(result.quarantined)
        if not reply.more:
            return
