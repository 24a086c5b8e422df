"""Bundles against online sync and against the bare data, in one session.

A branch holds n customers (2 contacts each, `bench/dataset.py`, confidential fields
encrypted) that HQ has not seen. The branch and HQ directories are copied before
anything syncs, so both transports carry exactly the same changes:

1. **Online**: `branchline sync` (subprocess) against `branchline serve` for HQ.
2. **Bundle**: `branchline bundle export --to hq` at the branch copy, then
   `branchline bundle import` at the HQ copy (both subprocesses, wall time each).
3. **Bytes**: the bundle's part files per customer, against the bare changed values —
   the id and every replicated column of the same rows (customers, contacts, their
   data keys), as MessagePack lists, zstd-compressed whole at the bundle's level. The
   difference is the bundle's metadata: row stamps, column lists, header, chunk
   framing, signature.

    .venv/bin/python bench/bundle_bench.py 20000
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sync_bench import BIN, _open_node, _setup, _start_hq, _stop, _timed_sync


def _timed(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"branchline {' '.join(args[:2])} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - start


async def _bare_bytes(data: Path) -> tuple[int, int]:
    """zstd(msgpack) of the id and every replicated column of every row the branch
    holds (customers, contacts, and their data keys — the wrapped keys travel with the
    customers they open): the changed values with no sync metadata at all, compressed
    at the bundle's own level."""
    import zstandard

    from branches._bundles import ZSTD_LEVEL
    from schema import ENTITIES, TABLES

    node = await _open_node(data)
    try:
        rows: list[list[Any]] = []
        async with node.db.read() as conn:
            for table in ENTITIES:
                t = TABLES[table]
                cols = [t.c.id, *(t.c[c] for c in ENTITIES[table].replicated_columns)]
                result = await conn.execute(select(*cols))
                rows += [[v.isoformat() if hasattr(v, "isoformat") else v for v in r]
                         for r in result.all()]
        raw = msgspec.msgpack.encode(rows)
        return len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)), len(rows)
    finally:
        await node.close()


async def _count(data: Path) -> int:
    from schema import TABLES

    node = await _open_node(data)
    try:
        async with node.db.read() as conn:
            return len((await conn.execute(select(TABLES["customers"].c.id))).all())
    finally:
        await node.close()


def run(n: int, *, seed: int = 20240601) -> dict[str, Any]:
    out: dict[str, Any] = {"customers": n, "loadavg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-bundle-") as name:
        tmp = Path(name)
        env, hq_data, br_data, url, _ = _setup(tmp, n, seed)
        hq2, br2 = tmp / "hq2", tmp / "br2"
        shutil.copytree(hq_data, hq2)
        shutil.copytree(br_data, br2)
        # 1. online
        hq, _ = _start_hq(env, tmp, hq_data, url)
        try:
            report, online_s, _ = _timed_sync(env, br_data)
        finally:
            _stop(hq)
        out["online_s"] = online_s
        out["online_bytes"] = report["bytes_sent"] + report["bytes_received"]
        # 2. bundle
        parts = tmp / "parts"
        out["export_s"] = _timed(env, "bundle", "export", "--data", str(br2), "--to", "hq",
                                 "--out", str(parts), "--max-part-size", "10MB")
        files = sorted(parts.glob("*.blb"))
        out["bundle_files"] = len(files)
        out["bundle_bytes"] = sum(f.stat().st_size for f in files)
        out["import_s"] = _timed(env, "bundle", "import", "--data", str(hq2),
                                 *map(str, files))
        held = asyncio.run(_count(hq2))
        if held != n:
            raise RuntimeError(f"HQ copy holds {held} customers after the bundle, not {n}")
        # 3. bytes
        bare, rows = asyncio.run(_bare_bytes(br2))
        out.update({
            "bare_bytes": bare, "bare_rows": rows,
            "bundle_bytes_per_customer": out["bundle_bytes"] / n,
            "bare_bytes_per_customer": bare / n,
            "bundle_overhead": out["bundle_bytes"] / bare - 1,
            "bundle_s": out["export_s"] + out["import_s"],
            "bundle_over_online_time": (out["export_s"] + out["import_s"]) / online_s,
            "online_customers_per_s": n / online_s,
            "bundle_customers_per_s": n / (out["export_s"] + out["import_s"]),
        })
    out["loadavg_end"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(json.dumps(run(count), indent=2))
