"""The audit log's hash chain: pure functions, so every node and every checker (an
auditor's laptop included) computes the same digest of the same entry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
"""The `prev_hash` of a node's first entry."""

CHAINED = ("id", "node_id", "seq", "branch", "at", "actor_id", "actor", "action",
           "object_table", "object_id", "customer_id", "detail", "prev_hash")
"""The columns an entry's hash covers: all of them but the hash itself."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        # Storage keeps milliseconds in UTC; hash exactly what every replica reads back.
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the canonical JSON of an entry's chained columns."""
    body = {name: _plain(entry.get(name)) for name in CHAINED}
    text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_breaks(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every break in one node's chain, given its entries in `seq` order: a missing or
    repeated number, an entry whose hash does not match its content, or one that does
    not point at its predecessor. Empty when the chain is intact."""
    breaks: list[str] = []
    expected_seq, expected_prev = 1, GENESIS
    for entry in entries:
        seq = int(entry["seq"])
        if seq != expected_seq:
            breaks.append(f"seq {seq}: expected {expected_seq} (entries missing or repeated)")
        if entry["prev_hash"] != expected_prev:
            breaks.append(f"seq {seq}: does not follow the previous entry")
        if entry_hash(entry) != entry["hash"]:
            breaks.append(f"seq {seq}: content does not match its hash (altered)")
        expected_seq, expected_prev = seq + 1, str(entry["hash"])
    return breaks
