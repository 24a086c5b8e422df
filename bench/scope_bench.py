"""Part 3 of the product benchmark (`sync_bench.run`): bootstrap vs replay of a scope.

A source branch replica writes the scope's history one unit of work per event and the
batch a peer would get is captured after each; *replay* applies those batches in order
into a fresh replica, *bootstrap* pulls the same scope from it in pages from cursor "".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dataset import customers
from sync_bench import (
    BRANCH,
    PAGE_ROWS,
    SKEW_MS,
    _apply_all,
    _contents,
    _customer_row,
    _fresh_replica,
)


async def _write_history(path: Path, m: int, seed: int) -> tuple[Any, str, list[bytes], int]:
    """A source branch replica writes the scope's history one unit of work per event
    and captures the batch for each; returns (db, node id, batches, transactions)."""
    from schema import Scope, outgoing
    from sync import encode

    db, node_id = await _fresh_replica(path, hq=False)
    peer = "00000000-0000-7000-8000-000000000001"  # the future receiver; never echoed
    cursor = ""
    batches: list[bytes] = []

    async def capture() -> None:
        nonlocal cursor
        while True:
            batch = await outgoing(db, sender=node_id, peer=peer, scope=Scope(),
                                   cursor=cursor, limit=PAGE_ROWS)
            cursor = batch.cursor
            if batch.rows or batch.evictions:
                batches.append(encode(batch))
            if not batch.more:
                return

    ids: list[str] = []
    for customer, contacts in customers(m, seed + 1):
        async with db.write(node_id, None) as uow:
            await uow.insert("customers", _customer_row(customer))
            await uow.insert_many("contacts", contacts)
        ids.append(customer["id"])
        await capture()
    for round_no, industry in enumerate(("零售", "物流")):
        for cid in ids:
            async with db.write(node_id, None) as uow:
                await uow.update("customers", cid, {"industry": f"{industry}{round_no}"})
            await capture()
    for cid in ids:
        async with db.write(node_id, None) as uow:
            await uow.increment("customers", cid, "points", 10)
        await capture()
    return db, node_id, batches, 4 * m


async def bootstrap_vs_replay(tmp: Path, m: int, seed: int) -> dict[str, Any]:
    from schema import Scope, incoming, outgoing

    start = time.perf_counter()
    source, source_id, history, transactions = await _write_history(tmp / "hist-src.db", m,
                                                                    seed)
    history_s = time.perf_counter() - start
    expected = await _contents(source)
    await source.dispose()
    # Replay: one batch per original transaction, applied in order into a fresh HQ.
    hq, hq_id = await _fresh_replica(tmp / "hist-hq.db", hq=True)
    try:
        replay_s, _, replay_q = await _apply_all(hq, hq_id, source_id, history)
        replayed = await _contents(hq)
        # Bootstrap: a fresh branch replica pulls the scope from that HQ, from "".
        branch, branch_id = await _fresh_replica(tmp / "hist-branch.db", hq=False)
        try:
            cursor, pages, rows, boot_s, produce_s = "", 0, 0, 0.0, 0.0
            started = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                batch = await outgoing(hq, sender=hq_id, peer=branch_id,
                                       scope=Scope(BRANCH), cursor=cursor, limit=PAGE_ROWS)
                produce_s += time.perf_counter() - t0
                await incoming(branch, batch, node_id=branch_id, peer=hq_id, hq_node=hq_id,
                               writer_branch=None, max_skew_ms=SKEW_MS)
                pages += 1
                rows += len(batch.rows)
                cursor = batch.cursor
                if not batch.more:
                    break
            boot_s = time.perf_counter() - started
            booted = await _contents(branch)
            # Not timed: what the new branch's first push would send HQ back (from its
            # `pushed` cursor, which no-echo moved past the bootstrap, SPEC §13).
            from schema import peer_state

            cursor, push_back = (await peer_state(branch, hq_id))["pushed"], 0
            while True:
                batch = await outgoing(branch, sender=branch_id, peer=hq_id, scope=Scope(),
                                       cursor=cursor, limit=PAGE_ROWS)
                push_back += len(batch.rows)
                cursor = batch.cursor
                if not batch.more:
                    break
        finally:
            await branch.dispose()
    finally:
        await hq.dispose()
    same = {k: v for k, v in expected.items() if k != "quarantined"}
    return {
        "scope_customers": m, "history_write_s": history_s,
        "history_transactions": transactions, "history_batches": len(history),
        "history_bytes": sum(map(len, history)),
        "replay_s": replay_s, "replay_quarantined": replay_q,
        "bootstrap_s": boot_s, "bootstrap_produce_s": produce_s,
        "bootstrap_pages": pages, "bootstrap_rows": rows,
        "bootstrap_push_back_rows": push_back,
        "replay_over_bootstrap": replay_s / boot_s,
        "replay_matches_source": {k: replayed[k] for k in same} == same,
        "bootstrap_matches_source": {k: booted[k] for k in same} == same,
        "source": expected, "replayed": replayed, "bootstrapped": booted,
    }


