"""The product benchmark: a branch node syncs n customers (2 contacts each) to HQ.

`run(n)` measures, in one session, on SQLCipher on both ends:

1. **End to end**: HQ is `branchline serve` (a subprocess on a loopback port); the
   branch's database is filled in-process beforehand (not timed) with the rows of
   `bench/dataset.py`, through the unit of work (`insert_many`, one transaction per
   5,000 customers with their contacts). Timed: one `branchline sync --data BR --json`
   subprocess, from spawn to exit (interpreter start, key file, push pages, the pull
   that follows). Its peak RSS is `ru_maxrss` from `os.wait4`; HQ's is `VmHWM` from
   /proc after the sync. HQ's database is then opened and checked: exactly n customers
   and 2n contacts, equal to the branch's.
2. **Merge-apply alone**: the branch's push pages (`schema.outgoing`, 5,000 rows a
   page) are produced in-process and kept encoded; only `schema.incoming` into a fresh
   HQ replica is timed (decode is not). Compared with (a) raw `executemany` of the same
   rows (`raw_insert.run`, measured right before in this process).
3. **Bootstrap vs replay** of a `scope_customers` (20,000) customer scope. The history
   is written at a source branch replica one unit of work per event: each customer
   with its 2 contacts, then 2 later updates of `industry` and 1 `points` increment per
   customer (4 transactions per customer, in rounds). After each transaction the
   batch a peer would get for it is captured (`outgoing` from the previous cursor).
   *Replay* applies those batches one by one into a fresh replica (R, HQ role), as a
   log-replaying design would. *Bootstrap* is a fresh branch replica pulling the whole
   scope from R in 5,000-row pages (`PAGE_ROWS`) from cursor "" (SPEC §11). Both are timed; the
   final states are compared.
4. Optionally (`profile=True`) a cProfile of the merge-apply step, on the main thread
   (the Python merge logic) and on aiosqlite's worker thread (where SQLite runs).

    .venv/bin/python bench/sync_bench.py 20000 [--no-profile] [--scope 20000]
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # the product packages (schema, sync, server, tests)
    sys.path.insert(0, str(ROOT))

from dataset import customers  # noqa: E402
from profiling import ThreadProfiles, top  # noqa: E402

BIN = Path(sys.executable).parent / "branchline"
PASSPHRASE = "bench-enrol-passphrase"
BRANCH = "S001"
FILL_CHUNK = 5_000
PAGE_ROWS = 5_000  # the product default (sync.PAGE_ROWS)
SKEW_MS = 300_000
STARTUP_SECONDS = 120


def _vault() -> Any:
    from crypto import new_key
    from schema import Vault

    keys = {cls: {1: new_key()} for cls in ("confidential", "secret", "credit")}
    return Vault(class_keys=keys, current=dict.fromkeys(keys, 1), index_root=new_key())


VAULT = _vault()


# -- helpers ------------------------------------------------------------------------


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env.update(XDG_CONFIG_HOME=str(tmp / "xdg"), BRANCHLINE_ENROL_PASSPHRASE=PASSPHRASE,
               BRANCHLINE_ADMIN_PASSWORD="bench-admin-pass-123")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"branchline {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _timed_sync(env: dict[str, str], data: Path, prefix: tuple[str, ...] = ()
                ) -> tuple[dict[str, Any], float, int]:
    """`branchline sync --json` as a subprocess: (report, wall s, peak RSS KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen([*prefix, str(BIN), "sync", "--data", str(data), "--json"],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"branchline sync failed ({proc.returncode}): "
                           f"{out.decode()[-1000:]}{err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]), elapsed, usage.ru_maxrss


def _customer_row(record: dict[str, Any]) -> dict[str, Any]:
    """A dataset record as `insert_many` takes it (no owner or department: neither
    exists on these nodes)."""
    row = dict(record)
    row["registered_at"] = datetime.fromisoformat(row["registered_at"])
    row["owner_id"] = None
    row["department"] = None
    return row


def _chunks(n: int, seed: int, size: int
            ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    cs: list[dict[str, Any]] = []
    ks: list[dict[str, Any]] = []
    for customer, contacts in customers(n, seed):
        cs.append(_customer_row(customer))
        ks += contacts
        if len(cs) >= size:
            yield cs, ks
            cs, ks = [], []
    if cs:
        yield cs, ks


def _digest(rows: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows), ensure_ascii=False, default=str)
                          .encode()).hexdigest()


async def _contents(db: Any, branch: str | None = BRANCH) -> dict[str, Any]:
    """Counts and digests of customers/contacts (and field history) a node holds."""
    from sqlalchemy import func, select

    from schema import TABLES, sync_quarantine

    cu, co, fh = TABLES["customers"], TABLES["contacts"], TABLES["field_history"]
    async with db.read() as conn:
        cs = (await conn.execute(select(
            cu.c.id, cu.c.name, cu.c.mobile, cu.c.email, cu.c.industry, cu.c.tags,
            cu.c.points, cu.c.customer_class, cu.c.registered_at).where(
            cu.c.branch == branch))).all()
        ks = (await conn.execute(select(co.c.id, co.c.customer_id, co.c.name, co.c.mobile,
                                        co.c.is_primary))).all()
        history = (await conn.execute(select(func.count()).select_from(fh))).scalar_one()
        quarantined = (await conn.execute(select(func.count()).select_from(sync_quarantine))
                       ).scalar_one()
    return {"customers": len(cs), "contacts": len(ks), "field_history": history,
            "quarantined": quarantined,
            "customers_digest": _digest([(*r[:5], sorted(r.tags or []), *r[6:])
                                         for r in cs]),
            "contacts_digest": _digest([tuple(r) for r in ks])}


async def _open_node(data: Path) -> Any:
    from server.config import load_settings
    from server.node import open_node

    return await open_node(load_settings(data))


async def _fresh_replica(path: Path, *, hq: bool, node_id: str | None = None
                         ) -> tuple[Any, str]:
    """A new empty SQLCipher database (random key), migrated; and a node id for it."""
    from crypto import generate_db_key
    from schema import Database, load_search_dictionaries, new_id, sqlite_url

    # As `branchline serve` does at start-up: the one-time load of the name-search
    # dictionaries (about 0.3 s) is no part of applying rows.
    load_search_dictionaries()
    db = await Database.open(sqlite_url(path), generate_db_key())
    await db.migrate()
    db.hq_authority = hq
    db.vault = VAULT  # one set of field keys for every replica of a run
    return db, node_id or new_id()


# -- 1. fill the branch -------------------------------------------------------------


async def _fill_branch(data: Path, n: int, seed: int) -> dict[str, Any]:
    node = await _open_node(data)
    try:
        start = time.perf_counter()
        for cs, ks in _chunks(n, seed, FILL_CHUNK):
            async with node.db.write(node.node_id, None) as uow:
                await uow.insert_many("customers", cs)
                await uow.insert_many("contacts", ks)
        elapsed = time.perf_counter() - start
        return {"node_id": node.node_id, "hq_node_id": node.hq_node_id, "fill_s": elapsed}
    finally:
        await node.close()


# -- 2. merge-apply alone -----------------------------------------------------------


async def _produce_all(data: Path, peer: str, limit: int) -> tuple[list[bytes], str, int]:
    """Every push page the branch would send `peer`, encoded; (pages, sender, rows)."""
    from schema import Scope, outgoing
    from sync import encode

    node = await _open_node(data)
    try:
        pages: list[bytes] = []
        cursor, rows = "", 0
        while True:
            batch = await outgoing(node.db, sender=node.node_id, peer=peer, scope=Scope(),
                                   cursor=cursor, limit=limit)
            rows += len(batch.rows)
            pages.append(encode(batch))
            cursor = batch.cursor
            if not batch.more:
                return pages, node.node_id, rows
    finally:
        await node.close()


async def _apply_all(db: Any, hq_id: str, sender: str, pages: list[bytes],
                     writer_branch: str | None = BRANCH) -> tuple[float, int, int]:
    """Apply encoded pages in order; (seconds in `incoming` only, rows applied, quarantined)."""
    from schema import incoming
    from sync import Batch, decode

    elapsed, applied, quarantined = 0.0, 0, 0
    for data in pages:
        batch = decode(data)
        assert isinstance(batch, Batch)
        start = time.perf_counter()
        result = await incoming(db, batch, node_id=hq_id, peer=sender, hq_node=hq_id,
                                writer_branch=writer_branch, max_skew_ms=SKEW_MS)
        elapsed += time.perf_counter() - start
        applied += result.applied
        quarantined += len(result.quarantined)
    return elapsed, applied, quarantined


async def _merge_apply(tmp: Path, branch_data: Path, hq_node_id: str, n: int,
                       profile: bool, profile_rows: int) -> dict[str, Any]:
    # The fresh replica stands in for HQ under HQ's node id, so the branch's pages are
    # exactly those it pushes to HQ (rows it pulled from HQ are not echoed back).
    db, hq_id = await _fresh_replica(tmp / "apply-hq.db", hq=True, node_id=hq_node_id)
    try:
        pages, sender, rows = await _produce_all(branch_data, hq_id, PAGE_ROWS)
        seconds, applied, quarantined = await _apply_all(db, hq_id, sender, pages)
        held = await _contents(db)
        raw_schema = await _raw_same_schema(tmp, db)
    finally:
        await db.dispose()
    out: dict[str, Any] = {
        "apply_s": seconds, "apply_pages": len(pages), "apply_rows_sent": rows,
        "apply_encoded_bytes": sum(map(len, pages)), "apply_applied": applied,
        "apply_quarantined": quarantined, "apply_held": held,
        "apply_customers_per_s": n / seconds, "apply_rows_per_s": 3 * n / seconds,
        "raw_schema": raw_schema,
        "apply_over_raw_schema": n / seconds / raw_schema["customers_with_contacts_per_s"],
        "apply_over_raw_schema_with_keys": (
            n / seconds / raw_schema["customers_with_contacts_and_keys_per_s"]),
    }
    if profile:
        count, total = 0, 0
        for count, page in enumerate(pages, 1):
            total += len(page)
            if count * PAGE_ROWS >= profile_rows:
                break
        out["profile"] = await _profile_apply(tmp / "profile-hq.db", hq_id, sender,
                                              pages[:count])
    return out


async def _raw_same_schema(tmp: Path, source: Any) -> dict[str, Any]:
    """(a') The physical limit for *these* rows: the customers and contacts exactly as
    the merge-apply replica stored them (every column, read back raw), inserted with
    `executemany` into a fresh SQLCipher file made by our own migrations (same columns,
    same indexes), through a bare sqlcipher3 connection with the product's pragmas: no
    ORM, no sync bookkeeping (`sync_rows`, tallies, members), no merge. One transaction
    per 5,000 rows; only `BEGIN … COMMIT` is timed."""
    from crypto import generate_db_key
    from schema import Database, sqlite_url
    from schema._database import _connector

    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with source.read() as conn:
        # data_keys too: a data key per customer (field encryption) is one of the rows
        # the branch sends and apply writes; reported apart, so older runs compare.
        for table in ("customers", "contacts", "data_keys"):
            rows[table] = [tuple(r) for r in (await conn.exec_driver_sql(
                f"SELECT * FROM {table}")).all()]
    key = generate_db_key()
    path = tmp / "raw-schema.db"
    db = await Database.open(sqlite_url(path), key)
    await db.migrate()
    await db.dispose()
    conn = _connector(str(path), key, readonly=False)()
    timed: dict[str, float] = {}
    try:
        for table, table_rows in rows.items():
            sql = f"INSERT INTO {table} VALUES ({', '.join('?' * len(table_rows[0]))})"
            timed[table] = 0.0
            for i in range(0, len(table_rows), FILL_CHUNK):
                start = time.perf_counter()
                conn.execute("BEGIN")
                conn.executemany(sql, table_rows[i:i + FILL_CHUNK])
                conn.execute("COMMIT")
                timed[table] += time.perf_counter() - start
    finally:
        conn.close()
    n = len(rows["customers"])
    seconds = timed["customers"] + timed["contacts"]
    with_keys = seconds + timed["data_keys"]
    return {"customers": n, "contacts": len(rows["contacts"]),
            "data_keys": len(rows["data_keys"]),
            "customer_columns": len(rows["customers"][0]),
            "contact_columns": len(rows["contacts"][0]),
            "customers_s": timed["customers"], "contacts_s": timed["contacts"],
            "data_keys_s": timed["data_keys"],
            "customers_with_contacts_per_s": n / seconds,
            "all_rows_per_s": (n + len(rows["contacts"])) / seconds,
            "customers_with_contacts_and_keys_per_s": n / with_keys}


async def _profile_apply(path: Path, hq_node_id: str, sender: str, pages: list[bytes]
                         ) -> dict[str, Any]:
    """Apply `pages` into a fresh replica under cProfile, in the main thread and in
    aiosqlite's worker threads (started inside, so they are profiled too).

    In a worker thread the SQLite calls themselves do not show as entries: aiosqlite
    calls them through `functools.partial`, C calling C, which cProfile does not see.
    Their time is the tottime of `_connection_worker_thread`; the idle time is the
    `get` of `_queue.SimpleQueue`. In the main thread, `poll` of `select.epoll` is the
    event loop waiting for those workers."""
    with ThreadProfiles() as profiles:
        db, hq_id = await _fresh_replica(path, hq=True, node_id=hq_node_id)
        try:
            seconds, applied, _ = await _apply_all(db, hq_id, sender, pages)
        finally:
            await db.dispose()
    workers = [p for p in profiles.workers if p.getstats()]
    busy = 0.0
    for p in workers:
        for entry in p.getstats():
            code = entry.code
            if not isinstance(code, str) and code.co_name == "_connection_worker_thread":
                busy += entry.inlinetime
    return {
        "pages": len(pages), "rows": applied, "profiled_apply_s": seconds,
        "sqlite_busy_s": busy,
        "main_tottime": top([profiles.main], "tottime"),
        "main_cumulative": top([profiles.main], "cumulative", 25),
        "workers_tottime": top(profiles.workers, "tottime"),
    }


# -- the whole run ------------------------------------------------------------------


def _wait_health(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"HQ exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"HQ not answering at {url}")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _setup(tmp: Path, n: int, seed: int
           ) -> tuple[dict[str, str], Path, Path, str, dict[str, Any]]:
    """HQ and an enrolled branch made with the CLI; the branch filled with n customers."""
    env = _env(tmp)
    hq_data, br_data, enrol = tmp / "hq", tmp / "br", tmp / "S001.enrol"
    url = f"http://127.0.0.1:{_free_port()}"
    _cli(env, "init", "hq", "--data", str(hq_data), "--key-file",
         str(tmp / "keys" / "hq.key"), "--json")
    _cli(env, "branch", "add", "--data", str(hq_data), "--code", BRANCH, "--name", "一店",
         "--out", str(enrol), "--url", url)
    _cli(env, "init", "branch", "--data", str(br_data), "--enrol", str(enrol),
         "--key-file", str(tmp / "keys" / "br.key"))
    return env, hq_data, br_data, url, asyncio.run(_fill_branch(br_data, n, seed))


def _start_hq(env: dict[str, str], tmp: Path, hq_data: Path, url: str,
              prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], Path]:
    """`branchline serve` for HQ (optionally under `prefix`, e.g. cProfile)."""
    log = tmp / "hq.log"
    port = url.rsplit(":", 1)[1]
    with log.open("wb") as sink:
        hq = subprocess.Popen([*prefix, str(BIN), "serve", "--data", str(hq_data), "--port",
                               port], env=env, stdout=sink, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_health(f"{url}/health", hq, log)
    return hq, log


def run(n: int, *, seed: int = 20240601, scope_customers: int = 20_000,
        profile: bool = True, profile_rows: int = 60_000, raw: bool = True,
        directory: str | None = None) -> dict[str, Any]:
    """Sync n customers branch → HQ and measure everything in the module docstring."""
    out: dict[str, Any] = {"customers": n, "seed": seed, "page_rows": PAGE_ROWS,
                           "loadavg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=directory) as name:
        tmp = Path(name)
        env, hq_data, br_data, url, fill = _setup(tmp, n, seed)
        out["fill_s"] = fill["fill_s"]
        out["branch_db_bytes"] = sum(p.stat().st_size for p in br_data.glob("branchline.db*"))
        hq, _ = _start_hq(env, tmp, hq_data, url)
        try:
            hq_rss_idle = _vm_hwm_kb(hq.pid)
            out["loadavg_sync"] = os.getloadavg()[0]
            report, seconds, branch_rss = _timed_sync(env, br_data)
            hq_rss = _vm_hwm_kb(hq.pid)
            again, again_s, _ = _timed_sync(env, br_data)
        finally:
            _stop(hq)
        out.update({
            "sync_s": seconds, "sync_report": report, "sync_noop_s": again_s,
            "sync_noop_report": {k: again[k] for k in ("pushed_rows", "pulled_rows",
                                                        "applied")},
            "rows": 3 * n, "bytes_sent": report["bytes_sent"],
            "bytes_received": report["bytes_received"],
            "bytes_per_customer": (report["bytes_sent"] + report["bytes_received"]) / n,
            "branch_peak_rss_kb": branch_rss, "hq_peak_rss_kb": hq_rss,
            "hq_idle_rss_kb": hq_rss_idle,
            "customers_per_s": n / seconds,
        })

        async def check() -> tuple[dict[str, Any], dict[str, Any]]:
            hq_node, br_node = await _open_node(hq_data), await _open_node(br_data)
            try:
                return await _contents(hq_node.db), await _contents(br_node.db)
            finally:
                await hq_node.close()
                await br_node.close()

        at_hq, at_branch = asyncio.run(check())
        out["hq_holds"] = at_hq
        out["hq_matches_branch"] = at_hq == at_branch
        if not (at_hq["customers"] == n and at_hq["contacts"] == 2 * n
                and out["hq_matches_branch"]):
            raise RuntimeError(f"HQ holds {at_hq}, branch {at_branch}")

        # (a) the physical limit, measured now, in this process, with the same n.
        if raw:
            import raw_insert

            out["raw"] = raw_insert.run(n, seed=seed, directory=name)
            out["raw_idx"] = raw_insert.run(n, seed=seed, indexes=True, directory=name)
        out.update(asyncio.run(_merge_apply(tmp, br_data, fill["hq_node_id"], n, profile,
                                            profile_rows)))
        if out["apply_held"]["customers"] != n or out["apply_held"]["contacts"] != 2 * n:
            raise RuntimeError(f"merge-apply replica holds {out['apply_held']}")
        if raw:
            r = out["raw"]
            out["apply_over_raw_rows"] = out["apply_rows_per_s"] / r["all_rows_per_s"]
            out["apply_over_raw_customers"] = (out["apply_customers_per_s"]
                                               / r["customers_with_contacts_per_s"])
            out["apply_over_raw_customers_only"] = (out["apply_customers_per_s"]
                                                    / r["customer_rows_per_s"])
            out["apply_over_raw_idx_rows"] = (out["apply_rows_per_s"]
                                              / out["raw_idx"]["all_rows_per_s"])
        if scope_customers:
            from scope_bench import bootstrap_vs_replay

            out["scope"] = asyncio.run(bootstrap_vs_replay(tmp, scope_customers, seed))
    out["loadavg_end"] = os.getloadavg()[0]
    return out


def _prof_top(path: Path, sort: str, limit: int) -> str:
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).strip_dirs().sort_stats(sort).print_stats(limit)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    keep = [ln for ln in lines if "function calls" in ln]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return "\n".join(keep + lines[start:start + limit + 1])


def diagnose(n: int, *, seed: int = 20240601, directory: str | None = None,
             limit: int = 25) -> dict[str, Any]:
    """Where the end-to-end time goes: the same sync with both processes under cProfile
    (main threads only; slower than the timed run, so its figures are not results)."""
    with tempfile.TemporaryDirectory(prefix="bench-diag-", dir=directory) as name:
        tmp = Path(name)
        env, hq_data, br_data, url, _ = _setup(tmp, n, seed)
        hq_prof, br_prof = tmp / "hq.prof", tmp / "branch.prof"
        hq, _ = _start_hq(env, tmp, hq_data, url,
                          (sys.executable, "-m", "cProfile", "-o", str(hq_prof)))
        try:
            report, seconds, _ = _timed_sync(
                env, br_data, (sys.executable, "-m", "cProfile", "-o", str(br_prof)))
        finally:
            # uvicorn re-raises the signal it stopped on; SIGINT becomes a
            # KeyboardInterrupt, after which cProfile still writes its file.
            _stop(hq, signal.SIGINT)
        return {"customers": n, "profiled_sync_s": seconds, "report": report,
                **{f"{who}_{sort}": _prof_top(path, sort, limit)
                   for who, path in (("branch", br_prof), ("hq", hq_prof))
                   for sort in ("cumulative", "tottime")}}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("customers", type=int, nargs="?", default=20_000)
    parser.add_argument("--scope", type=int, default=20_000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-raw", action="store_true")
    parser.add_argument("--diagnose", action="store_true",
                        help="only profile one end-to-end sync (branch and HQ processes)")
    args = parser.parse_args()
    if args.diagnose:
        diag = diagnose(args.customers)
        for key, value in diag.items():
            print(f"== {key} ==\n{value}\n")
        raise SystemExit(0)
    result = run(args.customers, scope_customers=args.scope, profile=not args.no_profile,
                 raw=not args.no_raw)
    prof = result.pop("profile", None)
    print(json.dumps(result, indent=2, default=str))
    if prof:
        for key in ("main_tottime", "main_cumulative", "workers_tottime"):
            print(f"\n== {key} ==\n{prof[key]}", file=sys.stderr)
