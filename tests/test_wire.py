"""The wire codec (sync/SPEC.md §Messages): round trip, and the cyclic collector is
paused only while a frame decodes."""

from __future__ import annotations

import gc

import msgspec
import pytest

from sync import PROTOCOL_VERSION, Batch, Member, Row, decode, encode


def _batch() -> Batch:
    rows = [Row("customers", f"c{i}", 1, 10 + i, 0, values=[f"名{i}", None, True],
                members=[Member("tags", "会员", 0, 10 + i, 0)]) for i in range(50)]
    return Batch(protocol=PROTOCOL_VERSION, schema=1, sender="n", nodes=["n"],
                 columns={"customers": ["name", "email", "is_vip"]}, rows=rows,
                 cursor="c", more=False)


def test_decode_round_trips_and_resumes_the_collector() -> None:
    assert gc.isenabled()
    assert decode(encode(_batch())) == _batch()
    assert gc.isenabled()


def test_decode_resumes_the_collector_after_a_malformed_frame() -> None:
    data = encode(_batch())
    with pytest.raises(msgspec.DecodeError):
        decode(data[:-7])
    assert gc.isenabled()


def test_decode_leaves_a_paused_collector_paused() -> None:
    gc.disable()
    try:
        decode(encode(_batch()))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collector_paused_nests_and_resumes_after_an_error() -> None:
    from sync import collector_paused

    with pytest.raises(RuntimeError), collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block paused it: still paused
        raise RuntimeError("boom")
    assert gc.isenabled()
