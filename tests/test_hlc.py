"""The hybrid logical clock (sync/SPEC.md: clocks)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync import ClockSkewError, millis_of, pack, receive, tick

MS = st.integers(min_value=0, max_value=2**47)


def test_clock_packs_millis_above_counter() -> None:
    assert millis_of(pack(1234, 7)) == 1234
    assert pack(1, 0) > pack(0, 65535)


def test_tick_follows_wall_clock_and_never_goes_back() -> None:
    first = tick(0, 1000)
    assert millis_of(first) == 1000
    assert tick(first, 999) == first + 1  # wall clock stepped back: still moves forward
    assert tick(first, 2000) == pack(2000)


def test_receive_refuses_a_clock_too_far_ahead() -> None:
    with pytest.raises(ClockSkewError):
        receive(0, pack(10_000_000), wall_ms=1000, max_skew_ms=60_000)


def test_receive_moves_past_a_remote_clock_within_bound() -> None:
    remote = pack(5000, 3)
    assert receive(pack(1000), remote, wall_ms=4000, max_skew_ms=60_000) == remote + 1


@given(st.lists(st.tuples(st.booleans(), MS, MS), min_size=1, max_size=50))
def test_clock_is_strictly_monotonic_under_any_mix_of_events(
    events: list[tuple[bool, int, int]]
) -> None:
    clock = 0
    for local, wall, remote_ms in events:
        if local:
            nxt = tick(clock, wall)
        else:
            try:
                nxt = receive(clock, pack(remote_ms), wall, max_skew_ms=2**48)
            except ClockSkewError:
                continue
            assert nxt > pack(remote_ms)
        assert nxt > clock
        clock = nxt
