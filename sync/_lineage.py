"""Lineage: for one cell, the newest clock of each node whose write it has seen.

It is a version vector restricted to one cell, small because few nodes ever write
the same field of the same customer. Lineages decide only whether two versions are
concurrent (a conflict to report); which one wins is the policy's order.
"""

from __future__ import annotations

from collections.abc import Mapping

Lineage = dict[str, int]


def dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True when `a` has seen everything `b` has (a ≥ b entry by entry)."""
    return all(a.get(node, -1) >= clock for node, clock in b.items())


def merge(a: Mapping[str, int], b: Mapping[str, int]) -> Lineage:
    """The lineage that has seen both."""
    out = dict(a)
    for node, clock in b.items():
        if clock > out.get(node, -1):
            out[node] = clock
    return out


def concurrent(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Neither version had seen the other."""
    return not dominates(a, b) and not dominates(b, a)


def extend(seen: Mapping[str, int], node: str, clock: int) -> Lineage:
    """The lineage of a new local write by `node` at `clock` over `seen`."""
    out = dict(seen)
    out[node] = max(clock, out.get(node, -1))
    return out
