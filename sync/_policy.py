"""Merge policies and the total order each one puts on competing versions of a cell.

Every policy's winner is the maximum of a total order over stamps, so merging is
commutative, associative and idempotent: replicas that have seen the same set of
versions hold the same winner, whatever the order of arrival.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Merge(enum.StrEnum):
    """How concurrent writes to one field on different nodes are reconciled."""

    LWW = "lww"
    """Newest clock wins; node id breaks ties (the default)."""
    FIRST_WRITE = "first_write"
    """The earliest value wins for good; only a new cycle (rank) replaces it."""
    COUNTER = "counter"
    """Per-node running totals, summed: no increment is lost or doubled."""
    STATE = "state"
    """A workflow state: the furthest state (then the newest cycle) wins."""
    APPEND_ONLY = "append_only"
    """Rows that are inserted once and never change: no conflicts."""
    HQ_AUTHORITATIVE = "hq_authoritative"
    """Only writes originating at headquarters take effect."""
    ADD_WINS_SET = "add_wins_set"
    """A set of strings where an add not seen by a remove survives it."""
    IMMUTABLE = "immutable"
    """Set when the row is created, never changed afterwards."""


CONFLICTING = frozenset({Merge.LWW, Merge.FIRST_WRITE, Merge.STATE, Merge.HQ_AUTHORITATIVE})
"""Policies under which two concurrent writes mean one of them lost: a conflict."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """The version of one cell value: who wrote it, when, and at which rank.

    `rank` orders versions before clocks do: the cycle for `first_write`, the
    cycle and state order for `state`, 0 otherwise.
    """

    clock: int
    origin: str
    rank: int = 0


def beats(policy: Merge, a: Stamp, b: Stamp) -> bool:
    """Whether version `a` wins over version `b` under `policy` (a strict total order)."""
    if a.rank != b.rank:
        return a.rank > b.rank
    if policy is Merge.FIRST_WRITE:
        return (a.clock, a.origin) < (b.clock, b.origin)
    return (a.clock, a.origin) > (b.clock, b.origin)


STATE_CYCLE_SHIFT = 8


def state_rank(cycle: int, position: int) -> int:
    """The rank of a workflow state: a new cycle outranks every state of the old one."""
    return (cycle << STATE_CYCLE_SHIFT) | position
