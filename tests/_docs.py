"""Running the walkthroughs in docs/ as the user would: a fresh interpreter, a clean
environment (no BRANCHLINE_* leaking in), temporary files inside the test's folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def run_walkthrough(name: str, tmp_path: Path, timeout: float = 300) -> str:
    """Run docs/NAME; assert it passed every check; return what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONIOENCODING": "utf-8",
                "TMPDIR": str(tmp_path)})
    r = subprocess.run([sys.executable, str(DOCS / name)], env=env, capture_output=True,
                       text=True, encoding="utf-8", timeout=timeout,
                       stdin=subprocess.DEVNULL, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "ALL CHECKS PASSED" in out and "[FAIL]" not in out, out
    return out
