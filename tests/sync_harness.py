"""In-process replicas for sync tests: real SQLCipher databases, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crypto import generate_db_key
from schema import (
    ENTITIES,
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
    utcnow,
)
from schema._scope import BY_BRANCH, CHILDREN

SKEW_MS = 60_000


@dataclass
class Replica:
    """A node's database and identity."""

    db: Database
    id: str
    branch: str | None = None
    log: list[ApplyResult] = field(default_factory=list)

    async def write(self, actor: str | None = None) -> Any:
        return self.db.write(self.id, actor)

    async def close(self) -> None:
        await self.db.dispose()


async def open_replica(path: Path, branch: str | None = None, url: str | None = None
                       ) -> Replica:
    db = await Database.open(url or sqlite_url(path), None if url else generate_db_key())
    await db.migrate()
    db.hq_authority = branch is None
    return Replica(db, new_id(), branch)


async def push(child: Replica, hq: Replica, limit: int = 50) -> list[ApplyResult]:
    """The child sends everything HQ has not acknowledged."""
    out = []
    while True:
        state = await peer_state(child.db, hq.id)
        batch = await outgoing(child.db, sender=child.id, peer=hq.id, scope=Scope(),
                               cursor=state["pushed"], limit=limit)
        out.append(await incoming(hq.db, batch, node_id=hq.id, peer=child.id, hq_node=hq.id,
                                  writer_branch=child.branch, max_skew_ms=SKEW_MS))
        await record_peer(child.db, hq.id, pushed=batch.cursor, acked=batch.cursor)
        if not batch.more:
            return out


async def pull(child: Replica, hq: Replica, limit: int = 50) -> list[ApplyResult]:
    """The child fetches everything in its scope it has not applied yet."""
    out = []
    while True:
        state = await peer_state(child.db, hq.id)
        batch = await outgoing(hq.db, sender=hq.id, peer=child.id, scope=Scope(child.branch),
                               cursor=state["pulled"], limit=limit)
        out.append(await incoming(child.db, batch, node_id=child.id, peer=hq.id,
                                  hq_node=hq.id, writer_branch=None, max_skew_ms=SKEW_MS))
        if not batch.more:
            return out


async def sync(child: Replica, hq: Replica, limit: int = 50) -> list[ApplyResult]:
    return await push(child, hq, limit) + await pull(child, hq, limit)


REPLICATED = [t for t in ENTITIES if t not in ("field_history",)]


async def snapshot(r: Replica, branch: str | None = None) -> dict[str, dict[str, Any]]:
    """Every replicated row (restricted to a branch's scope), comparable across nodes."""
    out: dict[str, dict[str, Any]] = {}
    async with r.db.read() as conn:
        customers = {row.id: row.branch for row in await conn.execute(
            select(TABLES["customers"].c.id, TABLES["customers"].c.branch))}
        for tbl in ENTITIES:
            for row in (await conn.execute(select(TABLES[tbl]))).mappings():
                d = {str(k): v for k, v in row.items() if k != "search_keys"}
                if branch is not None:
                    if tbl in BY_BRANCH and d["branch"] != branch:
                        continue
                    if tbl in CHILDREN and customers.get(d.get("customer_id") or "") != branch:
                        continue
                if isinstance(d.get("tags"), list):
                    d["tags"] = sorted(d["tags"])
                out[f"{tbl}/{d['id']}"] = d
    return out


def customer(name: str, branch: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "customer_type": "person", "source": "walk_in",
            "registered_at": utcnow(), "branch": branch, **extra}
