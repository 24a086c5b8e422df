"""Fuzzing the bundle reader: mutated part files and sealed streams give clean errors
(never a crash), and a mutated bundle is never partly applied."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from branches._bundles import (
    BundleEnd,
    BundleHeader,
    PartHeader,
    Sealer,
    decode_batch,
    decode_end,
    decode_header,
    frame,
    read_frames,
    read_part_header,
)
from crypto import BoxKey, BundleError, NodeKey, open_bundle, read_header, verify_bundle
from schema import TABLES, utcnow
from server.node import Node
from server.services.bundles import export_to, import_files
from sync import Batch
from tests.test_field_encryption import Client, _customer
from tests.test_sync_http import _branch

SENDER, BOX = NodeKey.generate(), BoxKey.generate()


def _sealed(tmp: Path) -> bytes:
    now = utcnow()
    header = BundleHeader(bundle_id="b" * 36, sender="s", recipient="r", number=1,
                          created_at=now, expires_at=now, schema=1, protocol=1, since="",
                          ack="")
    sealer = Sealer(tmp, header, SENDER, BOX.public_hex())
    batch = Batch(protocol=1, schema=1, sender="s", nodes=[], columns={}, rows=[],
                  cursor="", more=False)
    sealer.payload.batch(batch)
    for _ in range(3):  # several chunks (random bytes do not compress)
        sealer.payload.raw(frame(3, bytes(random.Random(1).randbytes(70_000))))
    sealer.payload.end(BundleEnd(until="", batches=1, rows=0))
    sealer.close()
    data = sealer.path.read_bytes()
    sealer.discard()
    return data


def _read(data: bytes) -> None:
    """The reader's whole path over one sealed stream; BundleError is the clean outcome."""
    f = io.BytesIO(data)
    decode_header(read_header(f))
    verify_bundle(f, SENDER.public_hex())
    for kind, payload in read_frames(open_bundle(f, BOX)):
        if kind == 1:
            decode_batch(payload)
        elif kind == 2:
            decode_end(payload)


def _mutate(data: bytes, how: int, at: int, value: int, length: int) -> bytes:
    at %= max(1, len(data))
    if how == 0:  # flip bits
        return data[:at] + bytes([data[at] ^ (value or 1)]) + data[at + 1:]
    if how == 1:  # truncate
        return data[:at]
    if how == 2:  # insert junk
        return data[:at] + bytes([value]) * length + data[at:]
    if how == 3:  # drop a slice
        return data[:at] + data[at + length:]
    return data[at:] + data[:at]  # rotate


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(how=st.integers(0, 4), at=st.integers(0, 1 << 20), value=st.integers(0, 255),
       length=st.integers(1, 5000))
def test_fuzzed_sealed_streams_fail_cleanly(tmp_path_factory: Any, how: int, at: int,
                                            value: int, length: int) -> None:
    global _ORIGINAL
    if _ORIGINAL is None:
        _ORIGINAL = _sealed(tmp_path_factory.mktemp("fuzz"))
    mutated = _mutate(_ORIGINAL, how, at, value, length)
    if mutated == _ORIGINAL:
        _read(mutated)
        return
    with pytest.raises(BundleError):
        _read(mutated)


_ORIGINAL: bytes | None = None


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=300), prefix=st.booleans())
def test_fuzzed_part_files_fail_cleanly(tmp_path_factory: Any, data: bytes,
                                        prefix: bool) -> None:
    path = tmp_path_factory.mktemp("part") / "x.blb"
    path.write_bytes((b"BLPART\x01" if prefix else b"") + data)
    try:
        head, offset = read_part_header(path)
    except BundleError:
        return
    assert isinstance(head, PartHeader) and offset <= len(path.read_bytes())


async def _count(node: Node) -> int:
    t = TABLES["customers"]
    async with node.db.read() as conn:
        return len((await conn.execute(select(t.c.id))).all())


async def test_mutated_bundles_are_refused_whole_never_partly_applied(
        tmp_path: Path, node: Node, client: Client, clerk: dict[str, str]) -> None:
    branch, _ = await _branch(tmp_path, node, "S091")
    rng = random.Random(5)
    try:
        for i in range(5):
            await _customer(client, clerk, branch="S091", name=f"模糊{i}")
        for round_ in range(30):
            sent = await export_to(node, "S091", tmp_path / f"r{round_}", max_part=4096)
            victim = rng.choice(sent.files)
            data = victim.read_bytes()
            victim.write_bytes(_mutate(data, rng.randint(0, 4), rng.randrange(len(data)),
                                       rng.randint(1, 255), rng.randint(1, 200)))
            report = await import_files(branch, sent.files)
            assert (report.rejected or report.waiting) and not report.applied, report
            assert await _count(branch) == 0
        pending = branch.settings.data_dir / "bundles" / "pending"
        for f in pending.glob("*"):
            f.unlink()
        sent = await export_to(node, "S091", tmp_path / "clean", max_part=4096)
        assert (await import_files(branch, sent.files)).ok
        assert await _count(branch) == 5
    finally:
        await branch.close()
