"""Baseline (a): raw `executemany` into a fresh SQLCipher database, no ORM, no sync.

Customers first (all of them, one transaction per 5,000 rows), then their contacts
(same batching). Only the `BEGIN … executemany … COMMIT` spans are timed (wall clock,
and the process's CPU time as a check on a busy machine); generating the records and
turning them into tuples is not. Pragmas are those of
schema/_database.py: a raw 32-byte key, WAL, synchronous=NORMAL, temp_store=MEMORY.
So are the driver's adapters for None, bool and bytes (importing schema._database
registers them): without them sqlcipher3 binds each NULL the slow way, and the
baseline would be slower than the limit it stands for.

Tables hold only the benchmark's columns, with `id` as TEXT PRIMARY KEY;
`indexes=True` also creates the secondary indexes that schema/_entities.py declares
on those columns (customers: mobile, customer_class, lifecycle_stage, branch,
owner_id; contacts: customer_id, mobile).

    .venv/bin/python bench/raw_insert.py 100000
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlcipher3
from dataset import CONTACT_COLUMNS, CUSTOMER_COLUMNS, customers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import schema._database  # noqa: F401  (the product's driver adapters)

BATCH = 5_000
PRAGMAS = (
    "PRAGMA cipher_log_level = NONE",
    "PRAGMA key = \"x'{key}'\"",
    "PRAGMA cipher_hmac_algorithm = HMAC_SHA256",  # as schema/_database.py
    "PRAGMA temp_store = MEMORY",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA journal_mode = WAL",
)
TYPES = {"intention": "BOOLEAN NOT NULL", "agency": "BOOLEAN NOT NULL",
         "is_primary": "BOOLEAN NOT NULL", "id": "VARCHAR(36) NOT NULL PRIMARY KEY"}
INDEXES = {"customers": ("mobile", "customer_class", "lifecycle_stage", "branch", "owner_id"),
           "contacts": ("customer_id", "mobile")}


def _ddl(table: str, columns: tuple[str, ...], indexes: bool) -> list[str]:
    cols = ", ".join(f"{c} {TYPES.get(c, 'TEXT')}" for c in columns)
    ddl = [f"CREATE TABLE {table} ({cols})"]
    if indexes:
        ddl += [f"CREATE INDEX ix_{table}_{c} ON {table} ({c})" for c in INDEXES[table]]
    return ddl


def _row(record: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(json.dumps(record[c], ensure_ascii=False) if c == "tags" else record[c]
                 for c in columns)


def _batches(n: int, seed: int, contacts: bool) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for customer, its_contacts in customers(n, seed):
        if contacts:
            batch += [_row(c, CONTACT_COLUMNS) for c in its_contacts]
        else:
            batch.append(_row(customer, CUSTOMER_COLUMNS))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(conn: Any, table: str, columns: tuple[str, ...],
            batches: Iterator[list[tuple[Any, ...]]]) -> tuple[int, float, float]:
    """Insert every batch in its own transaction; return (rows, wall s, CPU s) spent."""
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    rows, elapsed, cpu = 0, 0.0, 0.0
    for batch in batches:
        start, start_cpu = time.perf_counter(), time.process_time()
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
        elapsed += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        rows += len(batch)
    return rows, elapsed, cpu


def cipher_version() -> str:
    conn = sqlcipher3.connect(":memory:")
    try:
        return str(conn.execute("PRAGMA cipher_version").fetchone()[0])
    finally:
        conn.close()


def run(n: int, *, seed: int = 20240601, indexes: bool = False,
        directory: str | None = None, encrypted: bool = True) -> dict[str, Any]:
    """Insert n customers and 2n contacts into a new encrypted file (or, with
    `encrypted=False`, a plain SQLite file: the SQLCipher overhead); return the rates."""
    with tempfile.TemporaryDirectory(prefix="bench-raw-", dir=directory) as tmp:
        path = Path(tmp) / "raw.db"
        conn = sqlcipher3.connect(str(path), isolation_level=None)
        try:
            for pragma in PRAGMAS:
                if encrypted or ("PRAGMA key" not in pragma and "hmac" not in pragma):
                    conn.execute(pragma.format(key=os.urandom(32).hex()))
            for stmt in (_ddl("customers", CUSTOMER_COLUMNS, indexes)
                         + _ddl("contacts", CONTACT_COLUMNS, indexes)):
                conn.execute(stmt)
            cust_rows, cust_s, cust_cpu = _insert(conn, "customers", CUSTOMER_COLUMNS,
                                        _batches(n, seed, contacts=False))
            cont_rows, cont_s, cont_cpu = _insert(conn, "contacts", CONTACT_COLUMNS,
                                        _batches(n, seed, contacts=True))
            counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                      for t in ("customers", "contacts")]
            assert counts == [cust_rows, cont_rows], counts
        finally:
            conn.close()
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    return {
        "customers": cust_rows, "contacts": cont_rows,
        "customer_columns": len(CUSTOMER_COLUMNS), "indexes": indexes,
        "customers_s": cust_s, "contacts_s": cont_s,
        "customers_cpu_s": cust_cpu, "contacts_cpu_s": cont_cpu,
        "customer_rows_per_s": cust_rows / cust_s,
        "contact_rows_per_s": cont_rows / cont_s,
        "all_rows_per_s": (cust_rows + cont_rows) / (cust_s + cont_s),
        "customers_with_contacts_per_s": cust_rows / (cust_s + cont_s),
        "db_bytes": size,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000), indent=2))
