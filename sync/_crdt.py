"""State-based counters and add-wins sets, merged by taking maxima."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def counter_value(totals: Iterable[tuple[int, int]]) -> int:
    """The value of a PN counter from each node's (increments, decrements) totals."""
    return sum(inc - dec for inc, dec in totals)


def merge_totals(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Merge one node's totals as seen by two replicas."""
    return max(a[0], b[0]), max(a[1], b[1])


def set_members(entries: Mapping[str, Iterable[tuple[int, int]]]) -> list[str]:
    """Present elements of an add-wins set.

    `entries` maps each element to its per-node (added, removed) clocks. A remove
    records the newest add of each node it had seen, so an element survives when
    some node added it after (or unseen by) every remove.
    """
    return sorted(elem for elem, per_node in entries.items()
                  if any(added > removed for added, removed in per_node))
