"""Hybrid logical clock packed into one sortable integer.

48 high bits hold milliseconds since the Unix epoch, 16 low bits a counter, so
clocks compare correctly as plain integers and fit a signed 64-bit column.
"""

from __future__ import annotations

from sync._errors import ClockSkewError

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1


def pack(millis: int, counter: int = 0) -> int:
    """Combine wall milliseconds and a counter into one clock value."""
    return (millis << COUNTER_BITS) | (counter & COUNTER_MASK)


def millis_of(clock: int) -> int:
    """The wall-clock milliseconds part of a clock value."""
    return clock >> COUNTER_BITS


def tick(last: int, wall_ms: int) -> int:
    """The clock for a local event: after `last` and at least the wall clock."""
    return max(last + 1, pack(wall_ms))


def receive(last: int, remote: int, wall_ms: int, max_skew_ms: int) -> int:
    """Advance past a remote clock, refusing one too far ahead of our wall clock.

    Raises `ClockSkewError` when `remote` is more than `max_skew_ms` ahead of
    `wall_ms`: accepting it would let one badly set machine win every later conflict.
    """
    if millis_of(remote) - wall_ms > max_skew_ms:
        raise ClockSkewError(
            f"remote clock is {millis_of(remote) - wall_ms} ms ahead (limit {max_skew_ms} ms)"
        )
    return max(last + 1, remote + 1, pack(wall_ms))
