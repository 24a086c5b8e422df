"""Analytics at scale: RFM, 80/20, pyramid, dormant, CLV, householding and class
changes over 1,000,000 customers and 10,000,000 purchases on SQLCipher.

Fixture (not timed as analytics): an HQ node made by the product's own `init_node`
(SQLCipher file, migrations, keys), then filled with bulk `executemany` straight into
its tables through the node's writer connection — bypassing the unit of work, which is
acceptable only for a benchmark fixture (no sync metadata, no field history). Data:

* customers over six years (UUIDv7-style ids in registration order), 20 branches, classes
  key/ordinary/potential and A-D; `--merged` of them merged into an earlier archive;
  `--sealed` of them carry a resident ID number sealed by the node's vault (a data key
  per customer, exactly as the unit of work seals it), a tenth of those sharing the
  number of another customer (households);
* purchases over three years in time order, customers drawn with a skew (the earliest
  registered buy most: roughly 80/20), amounts log-normal around 220 yuan;
* one class change per ten customers in the last year (a quarter of them to `lost`).

Timed: each analytics service call as HQ's general manager (all branches, first page
of 50), then RFM as one branch's manager; wall seconds and the peak RSS of the process
during the call (VmHWM, reset through /proc/self/clear_refs before each). Baseline in
the same run, same connection pool: `SELECT customer_id, SUM(amount_fen) FROM purchases
GROUP BY customer_id`, rows streamed to Python and counted; every query is also given as
a ratio of it.

The per-customer GROUP BY needs a covering index on purchases (customer_id,
purchased_at, amount_fen) that the schema does not have yet: `--index add` creates it
(`PROPOSED_INDEX`) before timing, `--index drop` removes it again. Without it each query
reads the purchases table row by row through the customer_id index (10-15 s per
query at 1,000,000 purchases on this machine, over ten times that at 10,000,000).

    .venv/bin/python bench/analytics_bench.py --customers 100000 --purchases 1000000 \\
        --index add
    # the full size: fill once (about 25 minutes), then time (about 3 minutes)
    .venv/bin/python bench/analytics_bench.py --customers 1000000 --purchases 10000000 \\
        --dir /tmp/analytics-1m --fill-only
    .venv/bin/python bench/analytics_bench.py --dir /tmp/analytics-1m --reuse --keep \\
        --index add --json bench/results/analytics-1m.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the product packages (schema, server)
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from schema import TABLES, new_id, utcnow  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.node import Node, init_node, open_node  # noqa: E402
from server.services import (  # noqa: E402
    analytics_base,
    analytics_households,
    analytics_rfm,
)
from server.services.principal import Principal  # noqa: E402

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
BRANCHES = [f"S{i:03d}" for i in range(1, 21)]
CLASSES = (("key", 0.1), ("ordinary", 0.5), ("potential", 0.4))
ABC = (("A", 0.05), ("B", 0.15), ("C", 0.3), ("D", 0.5))
STAGES = (("new", 0.1), ("stable", 0.6), ("old", 0.2), ("lost", 0.1))
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"
BATCH = 20_000
ENV = {"BRANCHLINE_ADMIN_PASSWORD": "bench-admin-password-1"}


def _sqlite_time(t: datetime) -> str:
    """An instant as SQLAlchemy stores a naive-UTC DateTime in SQLite."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def _uuid7(ms: int, rng: random.Random) -> str:
    """A UUIDv7 laid out from a timestamp and seeded random bits."""
    a = rng.getrandbits(12)
    b = 0x8000 | rng.getrandbits(14)
    return (f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{a:03x}-{b:04x}-"
            f"{rng.getrandbits(48):012x}")


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    u, acc = rng.random(), 0.0
    for value, w in weighted:
        acc += w
        if u < acc:
            return value
    return weighted[-1][0]


def _defaults(table: str) -> dict[str, Any]:
    """Every column of `table` with its scalar default (or None), JSON as text."""
    out: dict[str, Any] = {}
    for c in TABLES[table].columns:
        default: Any = c.default
        value = default.arg if default is not None and default.is_scalar else None
        if isinstance(value, bool):
            value = int(value)
        out[c.name] = value
    for name, empty in (("tags", "[]"), ("custom", "{}"), ("items", "[]")):
        if name in out:
            out[name] = empty
    return out


async def _insert(node: Node, table: str, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    sql = (f"INSERT INTO {table} ({', '.join(cols)}) "
           f"VALUES ({', '.join('?' * len(cols))})")
    async with node.db.admin() as conn:
        await conn.exec_driver_sql(sql, [tuple(r[c] for c in cols) for r in rows])


async def _customers(node: Node, n: int, rng: random.Random, merged: float, sealed: float
                     ) -> tuple[list[str], dict[str, int]]:
    vault = node.db.vault
    assert vault is not None
    base = _defaults("customers")
    start = AS_OF - timedelta(days=6 * 365)
    span_ms = 6 * 365 * 86_400_000 - 86_400_000
    ids: list[str] = []
    numbers: list[str] = []
    counts = {"customers": 0, "merged": 0, "sealed": 0, "shared_numbers": 0}
    for lo in range(0, n, BATCH):
        rows: list[dict[str, Any]] = []
        seals: list[tuple[str, str, dict[str, Any]]] = []
        for i in range(lo, min(n, lo + BATCH)):
            at = start + timedelta(milliseconds=span_ms * i // n + rng.randrange(1000))
            cid = _uuid7(int(at.timestamp() * 1000), rng)
            stamp = _sqlite_time(at)
            row = {**base, "id": cid, "customer_type": "person", "source": "walk_in",
                   "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                   "branch": BRANCHES[rng.randrange(len(BRANCHES))],
                   "customer_class": _pick(rng, CLASSES), "abc_class": _pick(rng, ABC),
                   "lifecycle_stage": _pick(rng, STAGES), "registered_at": stamp,
                   "created_at": stamp, "updated_at": stamp, "search_keys": ""}
            if ids and rng.random() < merged:
                row["merged_into"] = ids[rng.randrange(len(ids))]
                counts["merged"] += 1
            if rng.random() < sealed:
                if numbers and rng.random() < 0.1:
                    number = numbers[rng.randrange(len(numbers))]
                    counts["shared_numbers"] += 1
                else:
                    number = f"{rng.randrange(110000, 660000)}19{rng.randrange(50, 99)}" \
                             f"{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}" \
                             f"{rng.randrange(10000):04d}"
                    numbers.append(number)
                values = {"id_number": number}
                seals.append((cid, cid, values))
                row["_seal"] = values
                counts["sealed"] += 1
            ids.append(cid)
            rows.append(row)
        async with node.db.admin() as conn:
            keys = await vault.seal_rows(conn, "customers", seals)
        for row in rows:
            values = row.pop("_seal", None)
            if values is not None:
                row.update(values)
        now = _sqlite_time(utcnow())
        if keys:
            await _insert(node, "data_keys", [{**k, "created_at": now, "updated_at": now}
                                              for k in keys])
        await _insert(node, "customers", rows)
        counts["customers"] += len(rows)
    return ids, counts


async def _purchases(node: Node, ids: list[str], m: int, rng: random.Random) -> int:
    base = _defaults("purchases")
    n = len(ids)
    start = AS_OF - timedelta(days=3 * 365)
    span_ms = 3 * 365 * 86_400_000
    start_ms = int(start.timestamp() * 1000)
    done = 0
    for lo in range(0, m, BATCH):
        rows = []
        for j in range(lo, min(m, lo + BATCH)):
            ms = start_ms + span_ms * j // m + rng.randrange(1000)
            stamp = _sqlite_time(datetime.fromtimestamp(ms / 1000, UTC))
            customer = ids[min(n - 1, int(n * rng.random() ** 2.5))]
            amount = min(10**9, int(rng.lognormvariate(10, 1.0)) + 100)
            rows.append({**base, "id": _uuid7(ms, rng), "customer_id": customer,
                         "branch": BRANCHES[j % len(BRANCHES)], "purchased_at": stamp,
                         "amount_fen": amount, "on_credit": 0, "prepaid_fen": 0,
                         "points": amount // 100, "user_id": None, "created_at": stamp})
        await _insert(node, "purchases", rows)
        done += len(rows)
    return done


async def _changes(node: Node, ids: list[str], rng: random.Random) -> int:
    rows = []
    for cid in ids[::10]:
        lost = rng.random() < 0.25
        at = AS_OF - timedelta(seconds=rng.randrange(365 * 86_400))
        rows.append({"id": new_id(), "customer_id": cid,
                     "scheme": "lifecycle" if lost else "tier",
                     "old_class": "stable" if lost else "potential",
                     "new_class": "lost" if lost else "ordinary", "source": "rule",
                     "reason": "bench", "changed_by": None, "changed_at": _sqlite_time(at),
                     "node_id": node.node_id})
    for lo in range(0, len(rows), BATCH):
        await _insert(node, "class_changes", rows[lo:lo + BATCH])
    now = _sqlite_time(utcnow())
    await _insert(node, "class_schemes", [{
        "id": new_id(), "code": "lifecycle", "name": "生命周期", "target": "lifecycle_stage",
        "rules": "[]", "default_class": "stable", "active": 1, "created_at": now,
        "updated_at": now}])
    return len(rows)


async def fill(data: Path, customers: int, purchases: int, seed: int, merged: float,
               sealed: float) -> dict[str, Any]:
    """Create the node and bulk-load the fixture; returns counts and seconds."""
    rng = random.Random(seed)
    node, _ = await init_node(data, role="hq", name="analytics bench", environ=ENV,
                              key_file=data.parent / "keys" / "hq.key")
    try:
        async with node.db.admin() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.execute("PRAGMA cache_size = -1000000")  # 1 GB while filling only
        t0 = time.perf_counter()
        ids, counts = await _customers(node, customers, rng, merged, sealed)
        t1 = time.perf_counter()
        counts["purchases"] = await _purchases(node, ids, purchases, rng)
        t2 = time.perf_counter()
        counts["class_changes"] = await _changes(node, ids, rng)
        await node.db.purge_freed()  # checkpoint the WAL into the file
        return {**counts, "customers_fill_s": round(t1 - t0, 1),
                "purchases_fill_s": round(t2 - t1, 1),
                "fill_s": round(time.perf_counter() - t0, 1)}
    finally:
        await node.close()


INDEX_NAME = "ix_purchases_customer_id_purchased_at_amount_fen"
PROPOSED_INDEX = (f"CREATE INDEX IF NOT EXISTS {INDEX_NAME} "
                  "ON purchases (customer_id, purchased_at, amount_fen)")
"""The covering index analytics want, now declared in the schema (a new node has it;
`--index` adds it to a fixture filled before it was): the per-customer GROUP BY reads
one index in order instead of the whole table plus a sort."""


async def set_index(data: Path, wanted: bool) -> dict[str, Any]:
    """Create (or drop) the proposed index on the filled node; seconds it took."""
    node = await open_node(load_settings(data, ENV))
    try:
        t0 = time.perf_counter()
        async with node.db.admin() as conn:
            await conn.exec_driver_sql(PROPOSED_INDEX if wanted else
                                       f"DROP INDEX IF EXISTS {INDEX_NAME}")
        await node.db.purge_freed()
        return {"proposed_index": wanted, "index_s": round(time.perf_counter() - t0, 1)}
    finally:
        await node.close()


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


async def _timed(name: str, call: Callable[[], Awaitable[Any]], results: dict[str, Any],
                 summary: Callable[[Any], Any]) -> None:
    _reset_peak()
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    out = await call()
    seconds = time.perf_counter() - t0
    results[name] = {"s": round(seconds, 2), "cpu_s": round(time.process_time() - c0, 2),
                     "peak_rss_mb": round(_peak_mb(), 1), "loadavg_1m": load,
                     "result": summary(out)}
    print(f"{name:28s} {seconds:8.2f} s  peak {results[name]['peak_rss_mb']:8.1f} MB  "
          f"load {load:.1f}  {results[name]['result']}", flush=True)


async def _baseline(node: Node) -> int:
    rows = 0
    async with node.db.read() as conn:
        stream = await conn.stream(text("SELECT customer_id, SUM(amount_fen) FROM purchases "
                                        "GROUP BY customer_id"))
        async for part in stream.partitions(10_000):
            rows += len(part)
    return rows


async def _baseline_agg(node: Node) -> int:
    async with node.db.read() as conn:
        return int((await conn.execute(text(
            "SELECT COUNT(*) FROM (SELECT customer_id, SUM(amount_fen) AS s FROM purchases "
            "GROUP BY customer_id)"))).scalar_one())


def _principal(role: str, branch: str | None) -> Principal:
    return Principal(id=new_id(), username=f"bench-{role}", display_name=role, role=role,
                     branch=branch, department=None, token_version=0, created_at=utcnow())


async def measure(data: Path, repeat: int) -> dict[str, Any]:
    """Time every analytics query against the filled node."""
    node = await open_node(load_settings(data, ENV))
    gm = _principal("general_manager", None)
    manager = _principal("dept_manager", "S001")
    results: dict[str, Any] = {}
    try:
        for round_ in range(repeat):
            suffix = "" if round_ == 0 else f"#{round_ + 1}"
            calls: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[Any], Any]]] = [
                ("baseline_group_by", lambda: _baseline(node), lambda r: {"rows": r}),
                ("baseline_group_by_in_sql", lambda: _baseline_agg(node),
                 lambda r: {"rows": r}),
                ("rfm", lambda: analytics_rfm.rfm(node, gm, as_of=AS_OF),
                 lambda r: {"customers": r["customers"],
                            "champions": r["segments"][0]["customers"]}),
                ("rfm_segment_at_risk", lambda: analytics_rfm.rfm(
                    node, gm, as_of=AS_OF, segment="at_risk"),
                 lambda r: {"items": len(r["items"])}),
                ("contribution", lambda: analytics_rfm.contribution(node, gm, as_of=AS_OF),
                 lambda r: {"buyers": r["buyers"],
                            "top_20_share": round(r["top_20_percent_share"], 3)}),
                ("pyramid", lambda: analytics_base.pyramid(node, gm, as_of=AS_OF),
                 lambda r: {"levels": len(r["levels"]), "customers": r["customers"]}),
                ("dormant", lambda: analytics_base.dormant(node, gm, as_of=AS_OF),
                 lambda r: {"dormant": r["dormant"], "buyers": r["buyers"]}),
                ("clv", lambda: analytics_rfm.clv(node, gm, as_of=AS_OF),
                 lambda r: {"customers": r["overall"]["customers"],
                            "avg_clv_fen": r["overall"]["avg_clv_fen"]}),
                ("households", lambda: analytics_households.households(node, gm, as_of=AS_OF),
                 lambda r: {"households": len(r["items"]),
                            "examined": r["candidate_groups_examined"]}),
                ("changes", lambda: analytics_base.changes(
                    node, gm, from_=AS_OF - timedelta(days=365), to=AS_OF),
                 lambda r: {"changes": r["changes"], "churned": r["churned"]}),
                ("rfm_branch_manager", lambda: analytics_rfm.rfm(node, manager, as_of=AS_OF),
                 lambda r: {"customers": r["customers"]}),
            ]
            for name, call, summary in calls:
                await _timed(name + suffix, call, results, summary)
    finally:
        await node.close()
    base = results["baseline_group_by"]["s"]
    for r in results.values():
        r["ratio_to_baseline"] = round(r["s"] / base, 2) if base else None
    return results


def machine() -> dict[str, Any]:
    import sqlcipher3

    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               platform.processor())
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    conn = sqlcipher3.connect(":memory:")
    version = conn.execute("SELECT sqlite_version()").fetchone()[0]
    conn.close()
    return {"cpu": cpu, "nproc": os.cpu_count(), "mem_gb": round(int(mem) / 2**20, 1),
            "python": platform.python_version(), "sqlite": version,
            "platform": platform.platform(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--merged", type=float, default=0.01,
                        help="share of customers merged into an earlier one")
    parser.add_argument("--sealed", type=float, default=0.02,
                        help="share of customers with a sealed ID number")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true", help="time the node already in --dir")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--fill-only", action="store_true",
                        help="create and fill the node in --dir, time nothing")
    parser.add_argument("--index", choices=("add", "drop"),
                        help="add (or drop) the proposed covering index before timing")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="analytics-bench-"))
    data = work / "data"
    out: dict[str, Any] = {"machine": machine(), "as_of": AS_OF.isoformat(),
                           "started": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        if args.reuse:
            fixture = json.loads((work / "fixture.json").read_text())
        else:
            fixture = asyncio.run(fill(data, args.customers, args.purchases, args.seed,
                                       args.merged, args.sealed))
            db_file = next(data.glob("*.db"), None)
            fixture["db_bytes"] = db_file.stat().st_size if db_file else None
            (work / "fixture.json").write_text(json.dumps(fixture, indent=2))
        if args.index is not None:
            out["index"] = asyncio.run(set_index(data, args.index == "add"))
            print("index:", out["index"], flush=True)
        print("fixture:", fixture, flush=True)
        out["fixture"] = fixture
        if args.fill_only:
            return
        out["queries"] = asyncio.run(measure(data, args.repeat))
        out["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: (v["s"], v["ratio_to_baseline"], v["peak_rss_mb"])
                      for k, v in out["queries"].items()}, indent=1))


if __name__ == "__main__":
    main()
