"""Field encryption and SQLCipher costs (issue 4's benchmark, first part).

1. Per-field AES-256-GCM seal and open (`crypto.encrypt_value` / `decrypt_value`, with
   the associated data our tables use), and a blind index, in µs per call.
2. SQLCipher vs plain SQLite on the same workload: `executemany` of n customers and 2n
   contacts (the benchmark dataset's rows, 17 + 6 columns) into a fresh file with the
   product's pragmas, one transaction per 5,000 rows; the plain file skips `PRAGMA key`.

    .venv/bin/python bench/crypto_bench.py 100000
"""

from __future__ import annotations

import json
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
    token = encrypt_value(key, "+8613812345678", table="customers", column="mobile", row_id=ROW)
    bidx = index_key(new_key(), "customers", "mobile")

    def best(stmt: Any) -> float:
        return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e6

    return {
        "encrypt_us": best(lambda: encrypt_value(key, "+8613812345678", table="customers",
                                                 column="mobile", row_id=ROW)),
        "decrypt_us": best(lambda: decrypt_value(key, token, table="customers",
                                                 column="mobile", row_id=ROW)),
        "blind_index_us": best(lambda: blind_index(bidx, "+8613812345678")),
    }


def cipher_vs_plain(n: int) -> dict[str, Any]:
    """Raw insert of the same rows with and without SQLCipher, interleaved 3 times."""
    out: dict[str, list[float]] = {"sqlcipher": [], "plain": []}
    with tempfile.TemporaryDirectory(prefix="bench-cipher-") as tmp:
        for _ in range(3):
            for mode in ("sqlcipher", "plain"):
                r = raw_insert.run(n, indexes=True, directory=tmp, encrypted=mode == "sqlcipher")
                out[mode].append(r["customers_s"] + r["contacts_s"])
    cipher, plain = min(out["sqlcipher"]), min(out["plain"])
    return {"customers": n, "sqlcipher_s": out["sqlcipher"], "plain_s": out["plain"],
            "overhead": cipher / plain - 1}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    start = time.perf_counter()
    result = {"per_field": per_field(), "cipher_vs_plain": cipher_vs_plain(n)}
    result["wall_s"] = time.perf_counter() - start
    print(json.dumps(result, indent=2))
