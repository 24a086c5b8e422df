"""Background sync with exponential backoff while headquarters is unreachable."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from branches._errors import BranchError

log = logging.getLogger("branchline.sync")


async def run_forever(sync: Callable[[], Awaitable[object]], interval: float,
                      max_backoff: float = 300.0) -> None:
    """Call `sync` every `interval` seconds; after failures wait longer (with jitter),
    up to `max_backoff`. Runs until cancelled."""
    failures = 0
    while True:
        try:
            await sync()
            failures = 0
            delay = interval
        except BranchError as exc:
            failures += 1
            delay = min(max_backoff, interval * 2 ** min(failures, 10))
            delay *= random.uniform(0.8, 1.2)
            log.warning("sync failed (%s); retrying in %.0f s", exc, delay)
        await asyncio.sleep(delay)
