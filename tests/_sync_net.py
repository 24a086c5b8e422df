"""A small sync network for the sync rule and property tests: HQ and branch replicas on
real SQLCipher files, batches carried through the wire codec, page by page.

Opening and migrating a database costs far more than a sync step, so every replica is
a copy of one migrated template (same key, fresh node id).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import select

from crypto import generate_db_key
from schema import (
    TABLES,
    ApplyResult,
    Database,
    Scope,
    incoming,
    new_id,
    outgoing,
    peer_state,
    record_peer,
    sqlite_url,
    sync_quarantine,
    sync_rows,
)
from sync import Batch, PushRequest, decode, encode
from tests.sync_harness import SKEW_MS, Replica, snapshot

_template: tuple[Path, bytes] | None = None


async def _template_db() -> tuple[Path, bytes]:
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="bl-sync-template-"))
        atexit.register(shutil.rmtree, folder, True)
        key = generate_db_key()
        db = await Database.open(sqlite_url(folder / "template.db"), key)
        await db.migrate()
        await db.dispose()
        _template = (folder / "template.db", key)
    return _template


async def replica(path: Path, branch: str | None = None) -> Replica:
    """A fresh, migrated replica (HQ when `branch` is None) at `path`."""
    template, key = await _template_db()
    shutil.copyfile(template, path)
    db = await Database.open(sqlite_url(path), key)
    db.hq_authority = branch is None
    return Replica(db, new_id(), branch)


def wire(batch: Batch) -> Batch:
    """The batch as the peer decodes it from MessagePack."""
    out = decode(encode(batch))
    assert isinstance(out, Batch)
    return out


def wire_push(sender: str, batch: Batch) -> Batch:
    out = decode(encode(PushRequest(protocol=batch.protocol, schema=batch.schema, node=sender,
                                    batch=batch)))
    assert isinstance(out, PushRequest)
    return out.batch


@dataclass
class Net:
    """HQ plus branch replicas (several replicas may share a branch code)."""

    hq: Replica
    nodes: dict[str, Replica] = field(default_factory=dict)
    """Non-HQ replicas by name ("S001", "S001b", …)."""
    pushed: dict[str, list[Batch]] = field(default_factory=dict)
    """Every push page produced, by replica, for replaying late."""

    @classmethod
    async def open(cls, folder: Path, names: dict[str, str]) -> Net:
        """`names` maps replica name to branch code; HQ creates the branches and every
        replica bootstraps."""
        net = cls(await replica(folder / "hq.db"))
        for name, code in names.items():
            net.nodes[name] = await replica(folder / f"{name}.db", code)
        async with await net.hq.write() as uow:
            for code in sorted(set(names.values())):
                await uow.insert("branches", {"code": code, "name": f"{code}店",
                                              "active": True})
        for name in names:
            await net.sync(name)
        return net

    def __getitem__(self, name: str) -> Replica:
        return self.hq if name == "hq" else self.nodes[name]

    async def close(self) -> None:
        for r in (self.hq, *self.nodes.values()):
            await r.close()

    # -- single pages ---------------------------------------------------------------

    async def push_batch(self, name: str, limit: int = 50) -> Batch:
        """The next page `name` would push to HQ (as HQ decodes it)."""
        child = self.nodes[name]
        state = await peer_state(child.db, self.hq.id)
        batch = await outgoing(child.db, sender=child.id, peer=self.hq.id, scope=Scope(),
                               cursor=state["pushed"], limit=limit)
        return wire_push(child.id, batch)

    async def apply_at_hq(self, name: str, batch: Batch) -> ApplyResult:
        child = self.nodes[name]
        return await incoming(self.hq.db, batch, node_id=self.hq.id, peer=child.id,
                              hq_node=self.hq.id, writer_branch=child.branch,
                              max_skew_ms=SKEW_MS)

    async def ack_push(self, name: str, batch: Batch) -> None:
        await record_peer(self.nodes[name].db, self.hq.id, pushed=batch.cursor,
                          acked=batch.cursor)

    async def pull_batch(self, name: str, limit: int = 50) -> Batch:
        """The next page HQ would send `name` (as the branch decodes it)."""
        child = self.nodes[name]
        state = await peer_state(child.db, self.hq.id)
        return wire(await outgoing(self.hq.db, sender=self.hq.id, peer=child.id,
                                   scope=Scope(child.branch), cursor=state["pulled"],
                                   limit=limit))

    async def apply_at(self, name: str, batch: Batch) -> ApplyResult:
        child = self.nodes[name]
        return await incoming(child.db, batch, node_id=child.id, peer=self.hq.id,
                              hq_node=self.hq.id, writer_branch=None, max_skew_ms=SKEW_MS)

    async def push_page(self, name: str, limit: int = 50, *, drop_ack: bool = False,
                        times: int = 1) -> tuple[list[ApplyResult], bool]:
        """One push page: applied `times` times at HQ; the ack is lost if `drop_ack`."""
        batch = await self.push_batch(name, limit)
        self.pushed.setdefault(name, []).append(batch)
        results = [await self.apply_at_hq(name, batch) for _ in range(times)]
        if not drop_ack:
            await self.ack_push(name, batch)
        return results, batch.more

    async def pull_page(self, name: str, limit: int = 50, *, drop_ack: bool = False,
                        times: int = 1) -> tuple[list[ApplyResult], bool]:
        """One pull page applied `times` times; with `drop_ack` the branch's cursor goes
        back afterwards, so HQ sends the page again next time."""
        child = self.nodes[name]
        before = (await peer_state(child.db, self.hq.id))["pulled"]
        batch = await self.pull_batch(name, limit)
        results = [await self.apply_at(name, batch) for _ in range(times)]
        if drop_ack:
            await record_peer(child.db, self.hq.id, pulled=before)
        return results, batch.more

    # -- whole rounds ---------------------------------------------------------------

    async def push(self, name: str, limit: int = 50) -> list[ApplyResult]:
        out: list[ApplyResult] = []
        more = True
        while more:
            results, more = await self.push_page(name, limit)
            out += results
        return out

    async def pull(self, name: str, limit: int = 50) -> list[ApplyResult]:
        out: list[ApplyResult] = []
        more = True
        while more:
            results, more = await self.pull_page(name, limit)
            out += results
        return out

    async def sync(self, name: str, limit: int = 50) -> list[ApplyResult]:
        return await self.push(name, limit) + await self.pull(name, limit)

    async def settle(self, rounds: int = 4) -> int:
        """Full rounds for every replica until all agree with HQ; the rounds it took."""
        for n in range(1, rounds + 1):
            for name in self.nodes:
                await self.sync(name)
            if await self.converged():
                return n
        return rounds + 1

    async def converged(self) -> bool:
        for r in self.nodes.values():
            if await snapshot(r, r.branch) != await snapshot(self.hq, r.branch):
                return False
        return True

    async def diff(self, name: str) -> dict[str, tuple[Any, Any]]:
        """Rows that differ between replica `name` and HQ restricted to its scope."""
        r = self.nodes[name]
        mine, hq = await snapshot(r, r.branch), await snapshot(self.hq, r.branch)
        out: dict[str, Any] = {}
        for k in mine.keys() | hq.keys():
            a, b = mine.get(k), hq.get(k)
            if a == b:
                continue
            if a is None or b is None:
                out[k] = ("present" if a else "missing", "present" if b else "missing")
            else:
                out[k] = {c: (a.get(c), b.get(c)) for c in a.keys() | b.keys()
                          if a.get(c) != b.get(c)}
        return out


async def rows(r: Replica, table: str, **where: Any) -> list[dict[str, Any]]:
    t = TABLES[table]
    query = select(t)
    for col, val in where.items():
        query = query.where(t.c[col] == val)
    async with r.db.read() as conn:
        return [{str(k): v for k, v in m.items()}
                for m in (await conn.execute(query)).mappings()]


async def row(r: Replica, table: str, row_id: str) -> dict[str, Any] | None:
    found = await rows(r, table, id=row_id)
    return found[0] if found else None


async def stamp(r: Replica, table: str, row_id: str) -> Any:
    async with r.db.read() as conn:
        return (await conn.execute(select(sync_rows).where(
            sync_rows.c.tbl == table, sync_rows.c.row_id == row_id))).first()


async def quarantine(r: Replica) -> list[dict[str, Any]]:
    async with r.db.read() as conn:
        return [{str(k): v for k, v in m.items()}
                for m in (await conn.execute(select(sync_quarantine))).mappings()]


def replace_row(batch: Batch, index: int, **changes: Any) -> Batch:
    """The batch with row `index` changed."""
    new_rows = list(batch.rows)
    new_rows[index] = msgspec.structs.replace(new_rows[index], **changes)
    return msgspec.structs.replace(batch, rows=new_rows)
