"""cProfile across threads, and a compact top-N table (for bench/sync_bench.py)."""

from __future__ import annotations

import cProfile
import io
import pstats
import threading
from typing import Any


class ThreadProfiles:
    """cProfile in the main thread and in every thread started while active (aiosqlite
    runs each connection's SQLite calls on its own worker thread)."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.workers: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _hook(self, *_: Any) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.workers.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._hook)
        self.main.enable()
        return self

    def __exit__(self, *_: Any) -> None:
        self.main.disable()
        threading.setprofile(None)


def top(profiles: list[cProfile.Profile], sort: str, limit: int = 10) -> str:
    profiles = [p for p in profiles if p.getstats()]
    if not profiles:
        return "(no samples)"
    buf = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=buf)
    for p in profiles[1:]:
        stats.add(p)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    text = buf.getvalue()
    # Keep the header line with the totals and the table.
    lines = [ln for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if "function calls" in ln]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return "\n".join(keep + lines[start:start + limit + 1])
