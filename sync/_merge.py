"""Deciding one cell: which version wins, what lineage results, was it a conflict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sync._lineage import Lineage, concurrent, merge
from sync._policy import CONFLICTING, Merge, Stamp, beats


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of merging an incoming version into a local one."""

    take_incoming: bool
    """The incoming value becomes the cell's value."""
    lineage: Lineage
    """What the cell has now seen (both lineages merged)."""
    conflict: bool
    """Neither writer had seen the other, their values differ, and one lost."""
    changed: bool
    """Anything the node must store or relay changed (value, stamp or lineage)."""


def decide(policy: Merge, local: Stamp, local_lineage: Lineage, local_value: Any,
           incoming: Stamp, incoming_lineage: Lineage, incoming_value: Any) -> Decision:
    """Merge `incoming` into `local` for one cell under `policy`."""
    merged = merge(local_lineage, incoming_lineage)
    if incoming == local:
        return Decision(False, merged, False, merged != local_lineage)
    take = beats(policy, incoming, local)
    conflict = (policy in CONFLICTING and local_value != incoming_value
                and concurrent(local_lineage, incoming_lineage))
    return Decision(take, merged, conflict, take or merged != local_lineage)


def lineage_of(stamp: Stamp, lineage: Lineage | None) -> Lineage:
    """A stored lineage, where None stands for the writer's own entry alone."""
    return {stamp.origin: stamp.clock} if lineage is None else lineage


def compact(stamp: Stamp, lineage: Lineage) -> Lineage | None:
    """The lineage to store: None when it says no more than the stamp itself."""
    return None if lineage == {stamp.origin: stamp.clock} else lineage
