"""Run the sync-benchmark baselines in one session and print a Markdown table.

    .venv/bin/python bench/run.py --customers 100000 [--only raw,pouchdb] [--repeat 3]

Baselines (all by default): raw (SQLCipher executemany, PK only), raw-idx (same plus
the schema's secondary indexes), pouchdb (embedded contacts; the main PouchDB figure),
pouchdb-separate (one doc per customer and per contact).

Each run happens in its own child Python process. Peak RSS: for raw, the child's
`ru_maxrss` from `os.wait4`; for PouchDB, the node client's own
`process.resourceUsage().maxRSS` and the pouchdb-server's VmHWM read from /proc just
before it is stopped. With --repeat R the run with the median main rate is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# --- Branchline product benchmark: PENDING ----------------------------------------------
# Plug the product measurement in here: a module in bench/ whose `run(n) -> dict` syncs
# the same dataset (bench/dataset.py, same seed) from a branch node to HQ over loopback
# HTTP with SQLCipher on both ends, and returns at least
#     {"customers": n, "rows": <customer + contact rows synced>, "sync_s": <seconds>}.
# Then set e.g. BRANCHLINE = ("branchline_sync", {}) and add "branchline" to --only.
# Until then the table shows the row as pending; no product number is made up.
BRANCHLINE: tuple[str, dict[str, Any]] | None = None
# -----------------------------------------------------------------------------------------

BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "raw": ("raw_insert", {"indexes": False}),
    "raw-idx": ("raw_insert", {"indexes": True}),
    "pouchdb": ("pouchdb_baseline", {"mode": "embedded"}),
    "pouchdb-separate": ("pouchdb_baseline", {"mode": "separate"}),
}


@dataclass
class Row:
    label: str
    customers: int
    items: int
    item_kind: str
    seconds: float
    rss: str

    def cells(self) -> list[str]:
        return [self.label, f"{self.customers:,}", f"{self.items:,} {self.item_kind}",
                f"{self.seconds:.2f}", f"{self.customers / self.seconds:,.0f}",
                f"{self.items / self.seconds:,.0f}", self.rss]


def _mb(kb: int | None) -> str:
    return "?" if kb is None else f"{kb / 1024:.0f}"


def _child(module: str, n: int, kwargs: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Run `module.run(n, **kwargs)` in a fresh interpreter; return (result, peak RSS KiB)."""
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import {module}; "
            f"print(json.dumps({module}.run({n}, **json.loads(sys.argv[1]))))")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(kwargs)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{module}.run({n}, {kwargs}) failed with {proc.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss


def _rows(name: str, r: dict[str, Any], rss_kb: int) -> list[Row]:
    if name.startswith("raw"):
        idx = " + secondary indexes" if r["indexes"] else ""
        label = f"(a) raw SQLCipher executemany{idx}"
        return [
            Row(f"{label}: customers ({r['customer_columns']} cols)", r["customers"],
                r["customers"], "rows", r["customers_s"], _mb(rss_kb)),
            Row(f"{label}: customers + contacts", r["customers"],
                r["customers"] + r["contacts"], "rows", r["customers_s"] + r["contacts_s"],
                _mb(rss_kb)),
        ]
    if name.startswith("pouchdb"):
        return [Row(f"(b) PouchDB → pouchdb-server, {r['mode']} contacts", r["customers"],
                    r["docs"], "docs", r["replicate_s"],
                    f"{_mb(r['client_peak_rss_kb'])} client / "
                    f"{_mb(r['server_peak_rss_kb'])} server")]
    return [Row("Branchline sync branch → HQ", r["customers"], r["rows"], "rows", r["sync_s"],
                _mb(rss_kb))]


MAIN_RATE: dict[str, Callable[[dict[str, Any]], float]] = {
    "raw": lambda r: float(r["customer_rows_per_s"]),
    "pouchdb": lambda r: float(r["docs_per_s"]),
    "branchline": lambda r: float(r["customers"]) / float(r["sync_s"]),
}


def _main_rate(name: str, r: dict[str, Any]) -> float:
    return MAIN_RATE[name.split("-")[0]](r)


def machine() -> dict[str, str]:
    sys.path.insert(0, str(HERE))
    from raw_insert import cipher_version

    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return {"nproc": str(os.cpu_count()), "python": platform.python_version(),
            "sqlcipher": cipher_version(), "node": node.stdout.strip() or "missing",
            "platform": platform.platform(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--only", default=",".join(BASELINES),
                        help=f"comma-separated subset of {', '.join(BASELINES)}"
                             " (and branchline once hooked up)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write all runs here as JSON")
    args = parser.parse_args()
    available = dict(BASELINES)
    if BRANCHLINE is not None:
        available["branchline"] = BRANCHLINE
    names = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in names if s not in available]
    if unknown:
        parser.error(f"unknown baseline(s) {unknown}; choose from {list(available)}")

    info = machine()
    print(f"machine: {info['nproc']} CPUs, Python {info['python']}, SQLCipher "
          f"{info['sqlcipher']}, node {info['node']}, load {info['loadavg']}", file=sys.stderr)
    rows: list[Row] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        module, kwargs = available[name]
        results = []
        for i in range(args.repeat):
            start = time.perf_counter()
            result, rss_kb = _child(module, args.customers, kwargs)
            result["child_peak_rss_kb"] = rss_kb
            results.append(result)
            print(f"{name} run {i + 1}/{args.repeat}: {_main_rate(name, result):,.0f}/s "
                  f"({time.perf_counter() - start:.1f} s wall)", file=sys.stderr)
        runs[name] = results
        median = sorted(results, key=lambda r: _main_rate(name, r))[len(results) // 2]
        rows += _rows(name, median, median["child_peak_rss_kb"])

    header = ["measurement", "customers", "rows / docs", "timed s", "customers/s",
              "rows or docs/s", "peak RSS MB"]
    print(f"| {' | '.join(header)} |")
    print(f"|{'|'.join(['---'] + ['---:'] * (len(header) - 1))}|")
    for row in rows:
        print(f"| {' | '.join(row.cells())} |")
    if BRANCHLINE is None:
        print(f"| Branchline sync branch → HQ | {args.customers:,} | pending | pending "
              "| pending | pending | pending |")
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load at the end: {info['loadavg_end']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "customers": args.customers,
                                         "repeat": args.repeat, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
