"""Crash safety of sync (SPEC §10, §11): `kill -9` a branch's `branchline sync` and
headquarters' server in the middle of pushing a large batch, again and again; every
database stays intact, and the next sync finishes the job with nothing lost, nothing
duplicated and no counter increment applied twice.

The branch talks to HQ through a small TCP relay in this test, so the test knows when
a push is on the wire (no guessed sleeps), and HQ can come back on another port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import func, select

from branches import read_enrolment
from crypto import NodeKey, read_key_file
from schema import TABLES, Database, Scope, outgoing, sqlite_url, sync_quarantine, utcnow
from server.config import Settings
from server.node import init_node
from server.services import nodes as node_service

BIN = Path(sys.executable).parent / "branchline"
CUSTOMERS = 3000
BATCH = 500
PASS = "crash-enrol-pass"
STARTUP_SECONDS = 60
BRANCH_KILLS = 5
PAGE_ROWS = next(f.default for f in msgspec.structs.fields(Settings) if f.name == "sync_page_rows")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Relay:
    """Forwards TCP from a fixed local port to HQ's current port, and notes which sync
    requests went out, when each was wholly delivered, and when HQ last replied."""

    target: int
    sock: socket.socket = field(default_factory=socket.socket)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[str] = field(default_factory=list)
    """Paths of requests whose headers went out, in order."""
    delivered: list[str] = field(default_factory=list)
    """Paths of requests whose body went out completely."""
    last_delivered_at: float = 0.0
    last_reply_at: float = 0.0
    conns: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        head, need, path = b"", 0, ""
        try:
            while data := src.recv(65536):
                with self.lock:
                    if not outbound:
                        self.last_reply_at = time.monotonic()
                    chunk = data
                    while outbound and chunk:  # follow HTTP/1.1 requests on the connection
                        if need:
                            taken = min(need, len(chunk))
                            need, chunk = need - taken, chunk[taken:]
                            if not need:
                                self._delivered(path)
                            continue
                        head, chunk = head + chunk, b""
                        end = head.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        header, chunk, head = head[:end], head[end + 4:], b""
                        m = re.match(rb"POST (\S+) HTTP/1", header)
                        path = m.group(1).decode() if m else "?"
                        self.requests.append(path)
                        length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", header)
                        need = int(length.group(1)) if length else 0
                        if not need:
                            self._delivered(path)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _delivered(self, path: str) -> None:
        self.delivered.append(path)
        self.last_delivered_at = time.monotonic()

    def awaiting_reply(self) -> bool:
        """A request was wholly delivered and nothing has come back since."""
        with self.lock:
            return self.last_delivered_at > self.last_reply_at

    def close(self) -> None:
        self.sock.close()
        with self.lock:
            for s in self.conns:
                s.close()


@dataclass
class World:
    tmp: Path
    hq_data: Path
    hq_key: Path
    branch_data: Path
    branch_key: Path
    relay: Relay
    expected_points: dict[str, int]
    hq: subprocess.Popen[bytes] | None = None
    hq_log: Path | None = None
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, text: str) -> None:
        self.events.append(f"[{time.monotonic() - self.started:5.1f} s] {text}")

    def start_hq(self, wait: bool = True) -> int:
        """`branchline serve` HQ on a new port; the relay forwards there once it is up."""
        port = _free_port()
        self.hq_log = self.tmp / "hq.log"
        with self.hq_log.open("ab") as out:
            self.hq = subprocess.Popen(
                [str(BIN), "serve", "--data", str(self.hq_data), "--port", str(port)],
                env=_env(self.tmp), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        if wait:
            self.wait_hq(port)
        return port

    def wait_hq(self, port: int) -> None:
        assert self.hq is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if self.hq.poll() is not None:
                pytest.fail(f"HQ exited with {self.hq.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"HQ: no /health within {STARTUP_SECONDS} s:\n{self.log()}")
            time.sleep(0.05)
        self.relay.target = port

    def log(self) -> str:
        return self.hq_log.read_text(errors="replace") if self.hq_log else ""

    def sync(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN), "sync", "--data", str(self.branch_data), *extra], env=_env(self.tmp),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True)

    def wait_for(self, proc: subprocess.Popen[str], log: list[str], seen: int,
                 path: str = "/sync/v1/", count: int = 1) -> bool:
        """Until `count` requests to `path` are in `log` after index `seen` (True), or the
        sync exits (False)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with self.relay.lock:
                if sum(r.startswith(path) for r in log[seen:]) >= count:
                    return True
            if proc.poll() is not None:
                return False
            time.sleep(0.005)
        proc.kill()
        pytest.fail("the sync sent no request within 120 s")


async def _build_hq(tmp: Path, relay: Relay) -> tuple[Path, Path, Path]:
    """HQ, and a branch enrolled there (its sealed enrolment file)."""
    env = {"XDG_CONFIG_HOME": str(tmp / "xdg"), "BRANCHLINE_ADMIN_PASSWORD": "admin-pass-123"}
    hq_data, hq_key = tmp / "hq", tmp / "keys" / "hq.key"
    hq, _ = await init_node(hq_data, role="hq", name="总部", environ=env, key_file=hq_key)
    try:
        enrol = tmp / "S001.enrol"
        await node_service.add_branch(hq, code="S001", name="崩溃测试店", out=enrol,
                                      passphrase=PASS, url=relay.url)
    finally:
        await hq.close()
    return hq_data, hq_key, enrol


async def _build_branch(tmp: Path, enrol: Path, relay: Relay
                        ) -> tuple[Path, Path, dict[str, int]]:
    """The branch node; it holds CUSTOMERS customers with a contact each and counter
    increments, none of it pushed yet."""
    env = {"XDG_CONFIG_HOME": str(tmp / "xdg")}
    e = read_enrolment(enrol, PASS)
    trusted = [{"id": e.hq_node_id, "kind": "hq", "name": "hq", "branch": None,
                "public_key": e.hq_public_key, "url": e.hq_url, "enrolled_at": utcnow()}]
    branch_data, branch_key = tmp / "S001", tmp / "keys" / "S001.key"
    branch, _ = await init_node(branch_data, role="branch", name=e.branch_name, environ=env,
                                key_file=branch_key, branch_code="S001", node_id=e.node_id,
                                node_key=NodeKey.from_hex(e.node_key), trusted=trusted,
                                hq_node_id=e.hq_node_id, upstream_url=relay.url, admin=False,
                                grants=(e.box_key, e.grants))
    points: dict[str, int] = {}
    try:
        for start in range(0, CUSTOMERS, BATCH):
            async with branch.db.write(branch.node_id, None) as uow:
                for i in range(start, min(start + BATCH, CUSTOMERS)):
                    c = await uow.insert("customers", {
                        "name": f"客户{i:05d}", "customer_type": "person", "source": "walk_in",
                        "registered_at": utcnow(), "branch": "S001",
                        "mobile": f"+86139{i:08d}", "industry": f"行业{i % 17}"})
                    await uow.insert("contacts", {"customer_id": c["id"],
                                                  "name": f"联系人{i:05d}",
                                                  "mobile": f"+86138{i:08d}"})
                    if i % 7 == 0:
                        points[c["id"]] = 0
        await _add_points(branch.db, branch.node_id, points, random.Random(7))
    finally:
        await branch.close()
    return branch_data, branch_key, points


async def _add_points(db: Database, node_id: str, points: dict[str, int],
                      rng: random.Random) -> None:
    """Counter increments (and some decrements) at the branch, in several transactions."""
    ids = sorted(points)
    for chunk in (ids[i:i + 250] for i in range(0, len(ids), 250)):
        async with db.write(node_id, None) as uow:
            for cid in chunk:
                for delta in (rng.randint(1, 500), -rng.randint(0, 50)):
                    if delta:
                        await uow.increment("customers", cid, "points", delta)
                        points[cid] += delta


async def _open(data: Path, key: Path) -> Database:
    return await Database.open(sqlite_url(data / "branchline.db"), read_key_file(key))


async def _integrity(data: Path, key: Path) -> str:
    db = await _open(data, key)
    try:
        async with db.read() as conn:
            rows = (await conn.exec_driver_sql("PRAGMA integrity_check")).all()
        return "; ".join(str(r[0]) for r in rows)
    finally:
        await db.dispose()


async def _held(data: Path, key: Path) -> int:
    """How many customers and contacts a node holds."""
    db = await _open(data, key)
    try:
        async with db.read() as conn:
            return sum([(await conn.execute(select(func.count()).select_from(TABLES[t])))
                        .scalar_one() for t in ("customers", "contacts")])
    finally:
        await db.dispose()


async def _page_prefixes(data: Path, key: Path) -> list[int]:
    """How many customers and contacts HQ holds after each whole push page of the
    branch's first round (pages may carry a few more rows than the page size: a contact
    brings its customer along)."""
    db = await _open(data, key)
    try:
        async with db.read() as conn:
            me = (await conn.exec_driver_sql(
                "SELECT value FROM node_meta WHERE key = 'node_id'")).scalar_one()
            hq = (await conn.exec_driver_sql(
                "SELECT id FROM nodes WHERE kind = 'hq'")).scalar_one()
        seen: set[tuple[str, str]] = set()
        prefixes, cursor, more = [0], "", True
        while more:
            batch = await outgoing(db, sender=me, peer=hq, scope=Scope(), cursor=cursor,
                                   limit=PAGE_ROWS)
            seen |= {(r.tbl, r.id) for r in batch.rows if r.tbl in ("customers", "contacts")}
            prefixes.append(len(seen))
            cursor, more = batch.cursor, batch.more
        return prefixes
    finally:
        await db.dispose()


async def _more_points(w: World, rng: random.Random) -> None:
    """A few more increments at the (stopped) branch between crashes."""
    db = await _open(w.branch_data, w.branch_key)
    try:
        async with db.read() as conn:
            node_id = (await conn.exec_driver_sql(
                "SELECT value FROM node_meta WHERE key = 'node_id'")).scalar_one()
        async with db.write(node_id, None) as uow:
            for cid in rng.sample(sorted(w.expected_points), 20):
                delta = rng.randint(1, 30)
                await uow.increment("customers", cid, "points", delta)
                w.expected_points[cid] += delta
    finally:
        await db.dispose()


async def _contents(data: Path, key: Path) -> dict[str, Any]:
    customers, contacts = TABLES["customers"], TABLES["contacts"]
    db = await _open(data, key)
    try:
        async with db.read() as conn:
            cs = (await conn.execute(select(
                customers.c.id, customers.c.name, customers.c.mobile, customers.c.industry,
                customers.c.branch, customers.c.points))).all()
            ks = (await conn.execute(select(
                contacts.c.id, contacts.c.customer_id, contacts.c.name, contacts.c.mobile))
                  ).all()
            quarantined = (await conn.execute(select(func.count()).select_from(
                sync_quarantine))).scalar_one()
    finally:
        await db.dispose()

    def digest(rows: Sequence[Any]) -> str:
        return hashlib.sha256(json.dumps(sorted(tuple(r) for r in rows), ensure_ascii=False)
                              .encode()).hexdigest()

    return {"customer_ids": [r.id for r in cs], "contact_ids": [r.id for r in ks],
            "customers": digest(cs), "contacts": digest(ks),
            "points": {r.id: r.points for r in cs}, "quarantined": quarantined}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    relay = Relay(target=0)
    hq_data, hq_key, enrol = asyncio.run(_build_hq(tmp_path, relay))
    w = World(tmp_path, hq_data, hq_key, tmp_path / "S001", tmp_path / "keys" / "S001.key",
              relay, {})
    try:
        port = w.start_hq(wait=False)  # starts up while the branch is filled
        _, _, w.expected_points = asyncio.run(_build_branch(tmp_path, enrol, relay))
        w.wait_hq(port)
        w.note(f"built: HQ serving, branch holds {CUSTOMERS} customers and contacts")
        yield w
    finally:
        if w.hq is not None and w.hq.poll() is None:
            w.hq.kill()
            w.hq.wait()
        relay.close()


def _kill(proc: subprocess.Popen[Any]) -> bool:
    """SIGKILL; whether it was still running."""
    running = proc.poll() is None
    if running:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return running


def test_kill_9_mid_push_loses_and_doubles_nothing(world: World) -> None:
    w = world
    rng = random.Random()
    hq_kills = branch_kills = 0

    # HQ dies while it applies a push page (the page wholly received, no reply yet);
    # the branch's sync fails; HQ restarts on another port behind the relay.
    seen = len(w.relay.delivered)
    proc = w.sync()
    for page in range(1, 100):
        if not w.wait_for(proc, w.relay.delivered, seen, "/sync/v1/push", page):
            break
        time.sleep(rng.uniform(0.02, 0.2))
        if w.relay.awaiting_reply():
            assert w.hq is not None
            _kill(w.hq)
            hq_kills += 1
            w.note(f"HQ killed while applying push page {page}")
            break
    out = proc.communicate(timeout=120)[0]
    w.note(f"sync exited {proc.returncode}: {out.strip()[-200:]}")
    assert hq_kills == 1, w.events
    assert proc.returncode == 1 and "cannot reach" in out, out
    assert asyncio.run(_integrity(w.hq_data, w.hq_key)) == "ok"
    assert asyncio.run(_integrity(w.branch_data, w.branch_key)) == "ok"
    # A page is applied in one transaction: HQ holds whole pages, never part of one.
    held = asyncio.run(_held(w.hq_data, w.hq_key))
    prefixes = asyncio.run(_page_prefixes(w.branch_data, w.branch_key))
    assert held in prefixes, (held, prefixes, w.events)
    w.note(f"integrity_check ok on HQ and branch; HQ holds {held} rows (whole pages)")
    began = time.monotonic()
    w.start_hq()
    w.note(f"HQ restarted (serving after {time.monotonic() - began:.1f} s)")

    # The branch's sync dies at a random moment: 0.05-1.5 s after its first, second, …
    # request to HQ (so not always in the first page).
    for _ in range(BRANCH_KILLS):
        seen = len(w.relay.requests)
        proc = w.sync()
        w.wait_for(proc, w.relay.requests, seen, count=rng.randint(1, 2))
        time.sleep(rng.uniform(0.05, 1.5))
        with w.relay.lock:
            last = w.relay.requests[-1] if w.relay.requests else "-"
        killed = _kill(proc)
        branch_kills += killed
        w.note(f"sync {'killed' if killed else 'had finished'} "
                        f"(last request {last}, {len(w.relay.requests) - seen} requests)")
        assert asyncio.run(_integrity(w.branch_data, w.branch_key)) == "ok", w.events
        asyncio.run(_more_points(w, rng))
    assert branch_kills >= 1, w.events

    # Now let it finish; a second round has nothing left to move.
    proc = w.sync("--json")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    w.note(f"sync to completion: {out.strip()}")
    proc = w.sync("--json")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    w.note(f"second sync: {out.strip()}")
    again = json.loads(out)
    assert (again["pushed_rows"], again["pulled_rows"], again["applied"]) == (0, 0, 0), again

    assert w.hq is not None
    w.hq.send_signal(signal.SIGTERM)
    w.hq.wait(timeout=30)
    hq = asyncio.run(_contents(w.hq_data, w.hq_key))
    branch = asyncio.run(_contents(w.branch_data, w.branch_key))
    assert len(hq["customer_ids"]) == len(set(hq["customer_ids"])) == CUSTOMERS, w.events
    assert len(hq["contact_ids"]) == len(set(hq["contact_ids"])) == CUSTOMERS, w.events
    assert set(hq["customer_ids"]) == set(branch["customer_ids"])
    assert set(hq["contact_ids"]) == set(branch["contact_ids"])
    assert hq["customers"] == branch["customers"]  # names, mobiles, points … all equal
    assert hq["contacts"] == branch["contacts"]
    assert hq["quarantined"] == 0
    expected = {cid: w.expected_points.get(cid, 0) for cid in branch["points"]}
    assert branch["points"] == expected
    assert hq["points"] == expected, {c: (hq["points"][c], v) for c, v in expected.items()
                                      if hq["points"][c] != v}
    assert sum(hq["points"].values()) == sum(w.expected_points.values()) > 0
    print("\n".join(w.events))
