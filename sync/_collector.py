"""Pausing Python's cyclic garbage collector around bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector paused for a block that allocates many short-lived
    containers and makes no reference cycles: decoding, producing or applying a page.

    Reference counting frees all of it; the collector would meanwhile walk the whole,
    growing heap again and again (a fifth to a half of such a block's time,
    bench/RESULTS.md). Whoever paused it first resumes it, so blocks nest, and a
    block that awaits lets other tasks run paused only until it ends."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
