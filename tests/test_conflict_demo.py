"""docs/conflict_demo.py end to end: HQ and two branches as real processes, edits while
HQ is down, a stale branch's write quarantined, a concurrent write listed as a conflict."""

from __future__ import annotations

import re
from pathlib import Path

from tests._docs import run_walkthrough


def test_conflict_demo(tmp_path: Path) -> None:
    out = run_walkthrough("conflict_demo.py", tmp_path)
    # The stale branch's write is reported, not silently lost …
    assert re.search(r"HQ quarantined customers [0-9a-f-]{36}: customer belongs to branch "
                     r"S002, not S001", out), out
    assert "[OK] S001's pull evicted C" in out, out
    assert "[OK] HQ's sync health lists S001's quarantined change" in out, out
    # … the concurrent one is a conflict at HQ with both values …
    assert "[OK] exactly one open conflict at HQ: customers.industry of D" in out, out
    assert "[OK] the conflict holds both values (HQ's and S002's)" in out, out
    # … and every replica converges.
    assert "[OK] S002 equals HQ restricted to S002's scope" in out, out
    assert "[OK] S001 equals HQ restricted to S001's scope" in out, out
    assert re.search(r"\[OK\] round \d pushes and pulls 0 rows on both branches", out), out
    summary = out[out.index("\nSummary"):]
    assert re.search(r"C\.industry\s+S001 \(stale\).*quarantined at HQ", summary), summary
    assert re.search(r"D\.industry\s+HQ\s.*conflict (winner|loser)", summary), summary
    # Nothing is left behind: the demo works in (and removes) its own temporary dir.
    assert not list(tmp_path.glob("branchline-conflict-demo-*")), out
