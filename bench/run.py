"""Run the sync benchmark (baselines and Branchline) in one session; print Markdown.

    .venv/bin/python bench/run.py --customers 100000 [--only raw,pouchdb,branchline]
                                  [--repeat 3] [--scope 20000] [--json FILE]

Measurements (all by default): raw (SQLCipher executemany, PK only), raw-idx (same plus
the schema's secondary indexes), pouchdb (embedded contacts; the main PouchDB figure),
pouchdb-separate (one doc per customer and per contact), branchline (bench/sync_bench.py:
end-to-end branch → HQ sync, merge-apply alone against raw measured in the same process,
bootstrap vs replay of a --scope customer scope, a cProfile of merge-apply).

Each run happens in its own child Python process. Peak RSS: for raw, the child's
`ru_maxrss` from `os.wait4`; for PouchDB, the node client's own
`process.resourceUsage().maxRSS` and the pouchdb-server's VmHWM read from /proc just
before it is stopped; for Branchline, `ru_maxrss` of the `branchline sync` process and
VmHWM of the `branchline serve` (HQ) process after the sync. With --repeat R the run
with the median main rate is shown. After the table come Branchline's figures as ratios
to the issue's targets; nothing here passes or fails.
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

# --- Branchline product benchmark --------------------------------------------------------
# bench/sync_bench.py: `run(n)` syncs the same dataset (bench/dataset.py, same seed) from a
# branch node to HQ over loopback HTTP with SQLCipher on both ends (`branchline serve` and
# `branchline sync` subprocesses), then measures merge-apply alone against raw executemany
# measured in the same process, and bootstrap vs replay of a 20,000-customer scope.
BRANCHLINE: tuple[str, dict[str, Any]] | None = ("sync_bench", {})
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
    n = r["customers"]
    rows = [
        Row("Branchline sync branch → HQ, end to end (`branchline sync` process)", n,
            r["rows"], "rows", r["sync_s"],
            f"{_mb(r['branch_peak_rss_kb'])} branch / {_mb(r['hq_peak_rss_kb'])} HQ"),
        Row("Branchline merge-apply only (`incoming` at a fresh HQ replica)", n,
            r["rows"], "rows", r["apply_s"], "–"),
    ]
    if "raw" in r:
        raw = r["raw"]
        rows.append(Row("(a) raw SQLCipher executemany, same process, just before apply", n,
                        raw["customers"] + raw["contacts"], "rows",
                        raw["customers_s"] + raw["contacts_s"], "–"))
    if "scope" in r:
        sc = r["scope"]
        m = sc["scope_customers"]
        rows += [
            Row(f"Branchline bootstrap of a {m:,}-customer scope (pages from \"\")", m,
                sc["bootstrap_rows"], "rows sent", sc["bootstrap_s"], "–"),
            Row(f"Replay of the same scope's history ({sc['history_batches']:,} batches)",
                m, sc["history_batches"], "batches", sc["replay_s"], "–"),
        ]
    return rows


MAIN_RATE: dict[str, Callable[[dict[str, Any]], float]] = {
    "raw": lambda r: float(r["customer_rows_per_s"]),
    "pouchdb": lambda r: float(r["docs_per_s"]),
    "branchline": lambda r: float(r["customers"]) / float(r["sync_s"]),
}


def _main_rate(name: str, r: dict[str, Any]) -> float:
    return MAIN_RATE[name.split("-")[0]](r)


def _median(runs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return sorted(runs, key=lambda r: _main_rate(name, r))[len(runs) // 2]


def ratios(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The product figures against the issue's targets, as ratios (no pass/fail)."""
    b = _median(runs["branchline"], "branchline")
    n = b["customers"]
    e2e = n / b["sync_s"]
    lines = ["Ratios against the targets (Branchline run with the median end-to-end rate):", ""]
    lines.append("| figure | measured | target | ratio to target |")
    lines.append("|---|---:|---:|---:|")
    if "raw_schema" in b:
        rs = b["raw_schema"]
        ratio = b["apply_over_raw_schema"]
        lines.append(f"| merge-apply ÷ raw executemany of the same stored rows into the same "
                     f"schema ({rs['customer_columns']}+{rs['contact_columns']} columns, our "
                     f"indexes; customers/s: {b['apply_customers_per_s']:,.0f} ÷ "
                     f"{rs['customers_with_contacts_per_s']:,.0f}) | {ratio:.3f} | ≥ 0.50 | "
                     f"{ratio / 0.5:.2f} |")
        if "apply_over_raw_schema_with_keys" in b:
            keyed = b["apply_over_raw_schema_with_keys"]
            lines.append(f"| … the same, the baseline also inserting the {rs['data_keys']:,} "
                         f"data keys apply writes (customers/s: "
                         f"{b['apply_customers_per_s']:,.0f} ÷ "
                         f"{rs['customers_with_contacts_and_keys_per_s']:,.0f}) | "
                         f"{keyed:.3f} | ≥ 0.50 | {keyed / 0.5:.2f} |")
    if "raw" in b:
        raw = b["raw"]
        ratio = b["apply_rows_per_s"] / raw["all_rows_per_s"]
        lines.append(f"| … ÷ raw executemany of the 17+6-column benchmark rows (rows/s: "
                     f"{b['apply_rows_per_s']:,.0f} ÷ {raw['all_rows_per_s']:,.0f}) | "
                     f"{ratio:.3f} | (context) | |")
        only = b["apply_customers_per_s"] / raw["customer_rows_per_s"]
        lines.append(f"| … customers/s ÷ raw customers-only rows/s "
                     f"({b['apply_customers_per_s']:,.0f} ÷ {raw['customer_rows_per_s']:,.0f})"
                     f" | {only:.3f} | (context) | |")
        if "raw_idx" in b:
            idx = b["apply_rows_per_s"] / b["raw_idx"]["all_rows_per_s"]
            lines.append(f"| … ÷ raw executemany with secondary indexes | {idx:.3f} | "
                         "(context) | |")
    for name, label in (("pouchdb", "embedded"), ("pouchdb-separate", "separate")):
        if name in runs:
            p = _median(runs[name], name)
            per_s = p["customers"] / p["replicate_s"]
            ratio = e2e / per_s
            target = " ≥ 10 " if name == "pouchdb" else "(context)"
            if name == "pouchdb-separate":
                # One doc per record, as our rows: compare records moved per second.
                rows_ratio = (b["rows"] / b["sync_s"]) / (p["docs"] / p["replicate_s"])
                lines.append(f"| end to end ÷ PouchDB separate, records/s "
                             f"({b['rows'] / b['sync_s']:,.0f} ÷ "
                             f"{p['docs'] / p['replicate_s']:,.0f}) | {rows_ratio:.2f} | "
                             "(context) | |")
            lines.append(f"| end to end ÷ PouchDB {label} (customers/s: {e2e:,.0f} ÷ "
                         f"{per_s:,.0f}) | {ratio:.2f} | {target} | "
                         f"{f'{ratio / 10:.3f}' if name == 'pouchdb' else ''} |")
    hq_mb = b["hq_peak_rss_kb"] / 1024
    lines.append(f"| HQ peak RSS (VmHWM of `branchline serve`), MB | {hq_mb:.0f} | < 300 | "
                 f"{hq_mb / 300:.2f} |")
    lines.append(f"| branch `branchline sync` peak RSS, MB | "
                 f"{b['branch_peak_rss_kb'] / 1024:.0f} | – | |")
    lines.append(f"| bytes on the wire per customer (sent {b['bytes_sent']:,} + received "
                 f"{b['bytes_received']:,}) | {b['bytes_per_customer']:.0f} | – | |")
    if "scope" in b:
        sc = b["scope"]
        speedup = sc["replay_s"] / sc["bootstrap_s"]
        lines.append(f"| bootstrap speed-up over replay, {sc['scope_customers']:,}-customer "
                     f"scope ({sc['replay_s']:.1f} s ÷ {sc['bootstrap_s']:.1f} s) | "
                     f"{speedup:.2f} | ≥ 5 | {speedup / 5:.2f} |")
    lines.append("")
    lines.append(f"end to end {b['sync_s']:.1f} s, of which a sync with nothing to move takes "
                 f"{b['sync_noop_s']:.1f} s (process start, key, one push and one pull); "
                 f"pushed {b['sync_report']['pushed_rows']:,} rows and pulled "
                 f"{b['sync_report']['pulled_rows']:,} for {n:,} customers + {2 * n:,} "
                 "contacts")
    if "scope" in b:
        sc = b["scope"]
        held = sc["bootstrapped"]
        lines.append(f"bootstrap: {sc['bootstrap_pages']} pages, {sc['bootstrap_rows']:,} rows "
                     f"sent for {held['customers'] + held['contacts'] + held['field_history']:,}"
                     f" rows held; the new branch's first push would send "
                     f"{sc['bootstrap_push_back_rows']:,} rows back; replay applied "
                     f"{sc['history_batches']:,} batches ({sc['history_transactions']:,} "
                     "transactions at the source)")
    if "profile" in b:
        prof = b["profile"]
        lines.append(f"profile of merge-apply ({prof['rows']:,} rows, "
                     f"{prof['profiled_apply_s']:.1f} s under cProfile; SQLite busy in the "
                     f"aiosqlite worker {prof['sqlite_busy_s']:.1f} s), main thread by tottime:")
        lines += ["    " + ln for ln in prof["main_tottime"].splitlines()]
    return lines


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
    parser.add_argument("--only", default=",".join([*BASELINES, "branchline"]),
                        help=f"comma-separated subset of {', '.join(BASELINES)}, branchline")
    parser.add_argument("--scope", type=int, default=20_000,
                        help="customers in branchline's bootstrap-vs-replay scope (0: skip)")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip branchline's cProfile of merge-apply")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write all runs here as JSON")
    args = parser.parse_args()
    available = dict(BASELINES)
    if BRANCHLINE is not None:
        module, kwargs = BRANCHLINE
        available["branchline"] = (module, {**kwargs, "scope_customers": args.scope,
                                            "profile": not args.no_profile})
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
    if "branchline" in runs:
        print()
        for line in ratios(runs):
            print(line)
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load at the end: {info['loadavg_end']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "customers": args.customers,
                                         "repeat": args.repeat, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
