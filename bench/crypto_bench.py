"""Field encryption and SQLCipher costs (issue 4's benchmark, first part).

1. Per-field AES-256-GCM seal and open (`crypto.encrypt_value` / `decrypt_value`, with
   the associated data our tables use), and a blind index, in µs per call.
2. SQLCipher vs plain SQLite on the same workload: `executemany` of n customers and 2n
   contacts (the benchmark dataset's rows, 17 + 6 columns) into a fresh file with the
   product's pragmas, one transaction per 5,000 rows; the plain file skips `PRAGMA key`.
3. Sync with encrypted fields on vs off: a branch replica holds n customers with
   mobile, e-mail, address and ID number (and 2 contacts with mobiles), written through
   the unit of work, so sealed. Its push pages are produced once (on). The same pages
   with every token opened back to plaintext and masks and blind indexes dropped are
   the "off" pages: what sync would carry without field encryption. Timed: encode +
   zstd + decode + apply of each set into a fresh replica; bytes compared too.

    .venv/bin/python bench/crypto_bench.py 100000
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import raw_insert  # noqa: E402

from crypto import blind_index, decrypt_value, encrypt_value, index_key, new_key  # noqa: E402

ROW = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def per_field(number: int = 20_000) -> dict[str, float]:
    """Microseconds per call, best of 5 runs of `number` calls."""
    key = new_key()
    token = encrypt_value(key, "+8613812345678", table="customers", column="mobile", row_id=ROW,
                          cls="confidential")
    bidx = index_key(new_key(), "customers", "mobile")

    def best(stmt: Any) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e6

    return {
        "encrypt_us": best(lambda: encrypt_value(key, "+8613812345678", table="customers",
                                                 column="mobile", row_id=ROW,
                                                 cls="confidential")),
        "decrypt_us": best(lambda: decrypt_value(key, token, table="customers",
                                                 column="mobile", row_id=ROW)),
        "blind_index_us": best(lambda: blind_index(bidx, "+8613812345678")),
    }


async def _sync_on_off(n: int, tmp: Path) -> dict[str, Any]:
    import msgspec
    from sync_bench import _chunks

    from crypto import decrypt_value, generate_db_key, is_token
    from schema import SENSITIVE, Database, Scope, Vault, incoming, new_id, outgoing, sqlite_url
    from sync import Batch, compress, decode, decompress, encode

    keys = {cls: {1: new_key()} for cls in ("confidential", "secret", "credit")}
    vault = Vault(class_keys=keys, current={c: 1 for c in keys}, index_root=new_key())

    async def fresh(name: str) -> tuple[Database, str]:
        db = await Database.open(sqlite_url(tmp / name), generate_db_key())
        await db.migrate()
        db.vault = vault
        return db, new_id()

    branch, branch_id = await fresh("on-branch.db")
    for cs, ks in _chunks(n, 7, 5_000):
        for i, c in enumerate(cs):
            c["id_number"] = "110101199003074514" if i % 2 else "11010519491231002X"
        async with branch.write(branch_id, None) as uow:
            await uow.insert_many("customers", cs)
            await uow.insert_many("contacts", ks)
    hq_id = new_id()
    pages: list[Batch] = []
    cursor = ""
    while True:
        batch = await outgoing(branch, sender=branch_id, peer=hq_id, scope=Scope(),
                               cursor=cursor, limit=2_000)
        pages.append(batch)
        cursor = batch.cursor
        if not batch.more:
            break
    # What the DEKs are, to open every token for the "off" pages.
    deks: dict[tuple[str, str], bytes] = {}
    async with branch.read() as conn:
        deks.update(await vault._load(conn, {(r[0], cls) for r in (await conn.exec_driver_sql(
            "SELECT id FROM customers")).all() for cls in ("confidential", "secret")}))
    await branch.dispose()

    def plain(batch: Batch) -> Batch:
        rows = []
        for row in batch.rows:
            cols = batch.columns.get(row.tbl, [])
            sens = SENSITIVE.get(row.tbl, {})
            if row.values is None or not sens:
                rows.append(row)
                continue
            values = list(row.values)
            customer = row.id if row.tbl == "customers" else values[cols.index("customer_id")]
            for i, col in enumerate(cols):
                if col in sens and is_token(values[i]):
                    values[i] = decrypt_value(deks[(customer, sens[col])], values[i],
                                              table=row.tbl, column=col, row_id=row.id)
                elif col.endswith(("_mask", "_bidx")):
                    values[i] = None
            rows.append(msgspec.structs.replace(row, values=values))
        return msgspec.structs.replace(batch, rows=rows)

    out: dict[str, Any] = {}
    for mode, batches in (("on", pages), ("off", [plain(b) for b in pages])):
        db, _ = await fresh(f"{mode}-hq.db")
        wire = [compress(encode(b)) for b in batches]
        start = time.perf_counter()
        for data in wire:
            batch = decode(decompress(data))
            assert isinstance(batch, Batch)
            await incoming(db, batch, node_id=hq_id, peer=branch_id, hq_node=hq_id,
                           writer_branch=None, max_skew_ms=300_000)
        out[f"{mode}_apply_s"] = time.perf_counter() - start
        out[f"{mode}_bytes"] = sum(map(len, wire))
        await db.dispose()
    out["apply_overhead"] = out["on_apply_s"] / out["off_apply_s"] - 1
    out["bytes_overhead"] = out["on_bytes"] / out["off_bytes"] - 1
    return out


def sync_on_off(n: int) -> dict[str, Any]:
    """Decode + apply of the same push pages with field encryption on and off."""
    import asyncio

    with tempfile.TemporaryDirectory(prefix="bench-onoff-") as tmp:
        return asyncio.run(_sync_on_off(n, Path(tmp)))


def cipher_vs_plain(n: int) -> dict[str, Any]:
    """Raw insert of the same rows with and without SQLCipher, interleaved 7 times (the
    first pair warms the page cache and is dropped); best and median of each."""
    out: dict[str, list[float]] = {"sqlcipher": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench-cipher-") as tmp:
        for i in range(8):
            for mode in ("sqlcipher", "plain") if i % 2 else ("plain", "sqlcipher"):
                r = raw_insert.run(n, indexes=True, directory=tmp, encrypted=mode == "sqlcipher")
                if i:
                    out[mode].append(r["customers_s"] + r["contacts_s"])
    cipher, plain = min(out["sqlcipher"]), min(out["plain"])
    return {"customers": n, "sqlcipher_s": out["sqlcipher"], "plain_s": out["plain"],
            "overhead": cipher / plain - 1,
            "overhead_median": statistics.median(out["sqlcipher"])
            / statistics.median(out["plain"]) - 1}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    start = time.perf_counter()
    result = {"per_field": per_field(), "sync_on_off": sync_on_off(min(n, 20_000)),
              "cipher_vs_plain": cipher_vs_plain(n)}
    result["wall_s"] = time.perf_counter() - start
    print(json.dumps(result, indent=2))
