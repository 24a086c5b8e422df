"""The messages of the changeset protocol (sync/SPEC.md §Messages), as msgspec Structs.

Frames are MessagePack; every message carries the protocol version and the sender's
schema version. Node ids are interned per batch (`nodes`), columns are named once
per table per batch (`columns`) and rows carry positional values.
"""

from __future__ import annotations

from typing import Any

import msgspec
import zstandard
from msgspec import Struct

from sync._collector import collector_paused

PROTOCOL_VERSION = 1
PAGE_ROWS = 5000
"""Rows in a page unless a node is configured otherwise. Fewer, larger transactions
write each index page fewer times: 5,000 rows apply about a tenth faster than 2,000
(bench/RESULTS.md), and HQ's writer is held for a fraction of a second a page."""


# The row structs are `gc=False`: decoded from a message they hold only plain values
# and lists of them, never a reference cycle, so the cyclic collector need not track
# the tens of thousands of them a batch brings.


class Cell(Struct, array_like=True, frozen=True, gc=False):
    """One cell whose version differs from its row's stamp."""

    col: str
    val: Any
    clock: int
    origin: int
    """Index into `Batch.nodes`."""
    rank: int = 0
    lineage: dict[str, int] | None = None
    """None: only the writer's own entry."""


class Tally(Struct, array_like=True, frozen=True, gc=False):
    """One node's running totals of a counter cell."""

    col: str
    node: int
    inc: int
    dec: int


class Member(Struct, array_like=True, frozen=True, gc=False):
    """One node's add and remove clocks for an element of an add-wins set."""

    col: str
    elem: str
    node: int
    added: int
    removed: int


class Row(Struct, array_like=True, frozen=True, gc=False):
    """The changed state of one row."""

    tbl: str
    id: str
    cl: int
    """Causal length: odd while the row lives, even once deleted."""
    clock: int
    origin: int
    values: list[Any] | None = None
    """All replicated columns (`Batch.columns[tbl]` order) under the row stamp;
    None when only `cells`, `tallies` or `members` changed."""
    cells: list[Cell] = []
    tallies: list[Tally] = []
    members: list[Member] = []


class Batch(Struct, tag="batch", frozen=True):
    """A page of changes from `sender`, and where the receiver should resume."""

    protocol: int
    schema: int
    sender: str
    nodes: list[str]
    columns: dict[str, list[str]]
    rows: list[Row]
    cursor: str
    """Opaque position after this batch in the sender's change order."""
    more: bool
    evictions: list[tuple[str, str]] = []
    """(table, id) of rows that left the receiver's scope: drop them locally."""
    reset: bool = False
    """The receiver's cursor is older than tombstones the sender has collected: drop
    the replica and rebuild it from this snapshot (which starts from the beginning)."""
    entered: list[str] = []
    """Customers that (re-)entered the receiver's scope with this batch (sent whole with
    their children). A branch that already held a stale copy offers its own writes to
    them again (SPEC §9); other whole rows it merges and leaves alone."""


class PullRequest(Struct, tag="pull", frozen=True):
    """Ask for changes after `cursor` (empty: from the beginning, a snapshot)."""

    protocol: int
    schema: int
    node: str
    cursor: str = ""
    limit: int = PAGE_ROWS


class PushRequest(Struct, tag="push", frozen=True):
    """Offer a batch of the sender's changes."""

    protocol: int
    schema: int
    node: str
    batch: Batch


class Quarantined(Struct, array_like=True, frozen=True):
    """A change kept aside instead of applied, and why."""

    tbl: str
    id: str
    reason: str


class PushAck(Struct, tag="ack", frozen=True):
    """The receiver applied (or quarantined) a pushed batch up to `cursor`."""

    protocol: int
    schema: int
    cursor: str
    applied: int
    quarantined: list[Quarantined] = []


class Refusal(Struct, tag="refusal", frozen=True):
    """The whole request was refused (revoked node, incompatible protocol, …)."""

    protocol: int
    reason: str


Message = PullRequest | PushRequest | Batch | PushAck | Refusal

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    """Serialise a protocol message."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """Parse a protocol message; raises `msgspec.DecodeError` / `ValidationError`.

    The cyclic collector waits meanwhile (`collector_paused`): a page allocates tens of
    thousands of lists (each row's values) and a 5,000-row page decodes in about half
    the time without it."""
    with collector_paused():
        message: Message = _decoder.decode(data)
    return message


_zc = zstandard.ZstdCompressor(level=3)
_zd = zstandard.ZstdDecompressor()
MAX_FRAME = 512 * 1024 * 1024


def compress(data: bytes) -> bytes:
    """Compress a whole encoded message (zstd; whole batches, never single fields)."""
    return _zc.compress(data)


def decompress(data: bytes, limit: int = MAX_FRAME) -> bytes:
    """Undo `compress`; `ValueError` for damaged data or output beyond `limit`."""
    try:
        return _zd.decompress(data, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise ValueError(f"bad compressed frame: {exc}") from None
