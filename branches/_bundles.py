"""Sync bundles: the changeset stream sealed in files, for e-mail and USB (SPEC §Bundles).

A bundle from node A to peer P holds every change P has not acknowledged (from P's
last acknowledgement, not from the last export: a lost bundle is simply covered by the
next one) and A's acknowledgement of what it applied from P. It is one sealed stream
(`crypto.BundleWriter`: encrypted to P's X25519 key, signed by A) split into numbered
part files. Importing verifies everything before decrypting, applies the whole bundle
in one transaction, and moves a bad file to the quarantine folder; a bundle that starts
after changes not yet received waits in the pending folder until the gap is filled.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import msgspec
import zstandard

from branches._errors import BranchError
from crypto import BoxKey, BundleError, BundleWriter, NodeKey, open_bundle, read_header
from crypto import verify_bundle as verify_signature
from schema._produce import parse_cursor
from sync import Batch, decode, encode

FORMAT = 1
PART_MAGIC = b"BLPART"
DEFAULT_TTL = timedelta(days=30)
Progress = Callable[[int], None]


class BundleRejected(BranchError):
    """A bundle file was refused (and quarantined): tampered, truncated, foreign,
    expired, from an unknown or revoked sender."""


class BundleHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The readable header of a sealed bundle (bound into its key and signature)."""

    format: int = FORMAT
    bundle_id: str
    sender: str
    recipient: str
    number: int
    created_at: datetime
    expires_at: datetime
    schema: int
    protocol: int
    since: str
    """The sender's cursor this bundle starts from: what the recipient had acknowledged."""
    ack: str
    """How far the sender has applied the recipient's changes (its acknowledgement)."""


class BundleEnd(msgspec.Struct, frozen=True, kw_only=True):
    """The last frame inside a bundle: where the recipient resumes, and what it held."""

    until: str
    batches: int
    rows: int


class PartHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The header of one part file (routing only; the bundle's signature covers the
    reassembled content, so a forged part header fails verification)."""

    format: int = FORMAT
    bundle_id: str
    sender: str
    recipient: str
    number: int
    part: int
    parts: int


_enc = msgspec.msgpack.Encoder()
_header_dec = msgspec.msgpack.Decoder(BundleHeader)
_end_dec = msgspec.msgpack.Decoder(BundleEnd)
_part_dec = msgspec.msgpack.Decoder(PartHeader)
FRAME_BATCH, FRAME_END = 1, 2


def cursor_key(cursor: str) -> tuple[Any, ...]:
    """A comparable position for a cursor (snapshot cursors carry an `s`)."""
    return tuple(parse_cursor(cursor[1:] if cursor.startswith("s") else cursor))


def encode_header(header: BundleHeader) -> bytes:
    return _enc.encode(header)


def decode_header(data: bytes) -> BundleHeader:
    try:
        header = _header_dec.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle header is malformed: {exc}") from None
    if header.format != FORMAT:
        raise BundleError(f"bundle header format {header.format} is not supported")
    return header


ZSTD_LEVEL = 9
"""Bundles are not latency-bound: a stronger level than online sync's, over one stream
for the whole bundle (context carries across batches)."""


def frame(kind: int, payload: bytes) -> bytes:
    """One frame of the payload: type byte, length, bytes."""
    return struct.pack(">BI", kind, len(payload)) + payload


class PayloadWriter:
    """Frames, zstd-compressed as one stream, into a sealed bundle."""

    def __init__(self, writer: BundleWriter) -> None:
        self._writer = writer
        self._z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()

    def batch(self, batch: Batch) -> None:
        self._writer.write(self._z.compress(frame(FRAME_BATCH, encode(batch))))

    def end(self, end: BundleEnd) -> None:
        self._writer.write(self._z.compress(frame(FRAME_END, _enc.encode(end)))
                           + self._z.flush())

    def raw(self, data: bytes) -> None:
        """Bytes as they are (tests build damaged bundles with it)."""
        self._writer.write(self._z.compress(data))


class _Chunks(io.RawIOBase):
    """A readable file over decrypted chunks, for the streaming decompressor."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._left = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            self._left = next(self._chunks, b"")
            if not self._left:
                return 0
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def _inflate(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress the payload stream in bounded pieces (never a whole bundle)."""
    try:
        source = cast("IO[bytes]", io.BufferedReader(_Chunks(chunks)))
        yield from zstandard.ZstdDecompressor().read_to_iter(source,
                                                             read_size=1 << 16,
                                                             write_size=1 << 17)
    except zstandard.ZstdError as exc:
        raise BundleError(f"bundle payload does not decompress: {exc}") from None


def read_frames(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """Frames out of decrypted chunks, holding at most one frame in memory."""
    buffer = bytearray()
    for piece in _inflate(chunks):
        buffer += piece
        while len(buffer) >= 5:
            kind, size = struct.unpack(">BI", buffer[:5])
            if size > 256 * 1024 * 1024:
                raise BundleError("bundle frame too large")
            if len(buffer) < 5 + size:
                break
            yield kind, bytes(buffer[5:5 + size])
            del buffer[:5 + size]
    if buffer:
        raise BundleError("bundle ends inside a frame")


def decode_batch(data: bytes) -> Batch:
    """A batch frame's payload; BundleError if it is none."""
    try:
        message = decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"bundle holds a malformed batch: {exc}") from None
    if not isinstance(message, Batch):
        raise BundleError("bundle holds another message than a batch")
    return message


def decode_end(data: bytes) -> BundleEnd:
    try:
        return _end_dec.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle trailer is malformed: {exc}") from None


# -- part files -----------------------------------------------------------------------

def part_name(sender_label: str, recipient_label: str, number: int, bundle_id: str,
              part: int, parts: int) -> str:
    return (f"branchline-{sender_label}-to-{recipient_label}-{number:06d}-"
            f"{bundle_id[:8]}.part{part}of{parts}.blb")


def write_parts(sealed: Path, out_dir: Path, base: PartHeader, max_part: int,
                name: Callable[[int, int], str]) -> list[Path]:
    """Split a sealed stream into part files of at most `max_part` bytes of content."""
    size = sealed.stat().st_size
    parts = max(1, -(-size // max_part))
    paths: list[Path] = []
    with sealed.open("rb") as src:
        for part in range(1, parts + 1):
            head = _enc.encode(msgspec.structs.replace(base, part=part, parts=parts))
            path = out_dir / name(part, parts)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as dst:
                dst.write(PART_MAGIC + bytes([FORMAT]) + struct.pack(">H", len(head)) + head)
                left = min(max_part, size - (part - 1) * max_part)
                while left:
                    block = src.read(min(left, 1 << 20))
                    dst.write(block)
                    left -= len(block)
            tmp.replace(path)
            paths.append(path)
    return paths


def read_part_header(path: Path) -> tuple[PartHeader, int]:
    """A part file's header and where its content starts; BundleError if it is none."""
    with path.open("rb") as f:
        lead = f.read(len(PART_MAGIC) + 3)
        if len(lead) < len(PART_MAGIC) + 3 or not lead.startswith(PART_MAGIC):
            raise BundleError("not a Branchline bundle file")
        if lead[len(PART_MAGIC)] != FORMAT:
            raise BundleError(f"bundle file format {lead[len(PART_MAGIC)]} is not supported")
        (size,) = struct.unpack(">H", lead[-2:])
        raw = f.read(size)
    try:
        header = _part_dec.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise BundleError("bundle file header is damaged") from None
    if not 1 <= header.part <= header.parts or header.parts > 100_000:
        raise BundleError("bundle file header is damaged (part numbers)")
    return header, len(PART_MAGIC) + 3 + size


def reassemble(parts: dict[int, tuple[Path, int]], into: BinaryIO) -> None:
    """Concatenate the content of parts 1..n into `into`."""
    for number in sorted(parts):
        path, offset = parts[number]
        with path.open("rb") as f:
            f.seek(offset)
            shutil.copyfileobj(f, into, 1 << 20)


@dataclass
class Folders:
    """Where a node keeps bundle files it could not apply yet, and refused ones."""

    root: Path

    @property
    def pending(self) -> Path:
        return self.root / "pending"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def make(self) -> None:
        for d in (self.pending, self.quarantine):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)


def quarantine(folders: Folders, path: Path) -> Path:
    """Move a refused file aside (never deleted: someone may want to look at it)."""
    folders.make()
    target = folders.quarantine / path.name
    if target.exists():
        target = folders.quarantine / f"{uuid.uuid4().hex[:8]}-{path.name}"
    shutil.move(str(path), target)
    return target


def keep_pending(folders: Folders, path: Path) -> Path:
    """Keep a copy of a part that waits for its siblings or for an earlier bundle."""
    folders.make()
    target = folders.pending / path.name
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    return target


@dataclass
class Sealer:
    """Seals one bundle into a temporary file in `directory`."""

    directory: Path
    header: BundleHeader
    key: NodeKey
    recipient_box: str
    path: Path = field(init=False)
    _file: BinaryIO = field(init=False)
    writer: BundleWriter = field(init=False)
    payload: PayloadWriter = field(init=False)

    def __post_init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix=".bundle-", suffix=".sealing", dir=self.directory)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self.writer = BundleWriter(self._file, encode_header(self.header), sender=self.key,
                                   recipient_box_public_hex=self.recipient_box)
        self.payload = PayloadWriter(self.writer)

    def close(self) -> None:
        self.writer.close()
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def open_sealed(path: Path, sender_public: str, box: BoxKey) -> Iterator[bytes]:
    """Verify a reassembled bundle, then yield its decrypted chunks."""
    with path.open("rb") as f:
        verify_signature(f, sender_public)
        yield from open_bundle(f, box)


def header_of(path: Path) -> BundleHeader:
    with path.open("rb") as f:
        return decode_header(read_header(f))


__all__ = ["BundleEnd", "BundleHeader", "BundleRejected", "Folders", "PartHeader"]
