"""End to end: `branchline init hq` + `branchline serve` as real processes, driven over
HTTP; and nothing a customer told us is readable in the data directory at rest."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from schema import TABLES, Database, sqlite_url

BIN = Path(sys.executable).parent / "branchline"
ADMIN_PASSWORD = "admin-pass-123"
CLERK_PASSWORD = "clerk-pass-123"
STARTUP_SECONDS = 20


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data: Path
    key: Path
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, and wait for a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"server ignored SIGTERM:\n{self.output()}")
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert self.proc.returncode in (0, -signal.SIGTERM), self.output()
        assert "Traceback" not in self.output(), self.output()
        # The lifespan closed the database: its last connection checkpointed the WAL away.
        assert sorted(p.name for p in self.data.iterdir()) == ["branchline.db", "node.json"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A freshly initialised HQ node served by `branchline serve` on a free local port."""
    data, key, log = tmp_path / "data", tmp_path / "keys" / "hq.key", tmp_path / "server.log"
    init = subprocess.run(
        [str(BIN), "init", "hq", "--data", str(data), "--key-file", str(key)],
        env={**_env(tmp_path), "BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert init.returncode == 0, init.stderr
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--data", str(data), "--host", "127.0.0.1", "--port", str(port)],
            env=_env(tmp_path), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    srv = Server(data, key, f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                how = (f"was killed by {signal.Signals(-proc.returncode).name}"
                       if proc.returncode < 0 else f"exited with {proc.returncode}")
                pytest.fail(f"server {how} before answering /health:\n{srv.output()}")
            try:
                r = httpx.get(f"{srv.url}/health", timeout=1)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health within {STARTUP_SECONDS} s:\n{srv.output()}")
            time.sleep(0.1)
        assert r.json()["role"] == "hq" and r.json()["database"] == "sqlite"
        yield srv
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _login(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    r = http.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _clerk(http: httpx.Client) -> tuple[dict[str, str], str]:
    """Create an archive clerk as admin; their headers and id."""
    admin = _login(http, "admin", ADMIN_PASSWORD)
    r = http.post("/api/v1/users", headers=admin, json={
        "username": "clerk", "password": CLERK_PASSWORD, "role": "archive_clerk",
        "display_name": "档案员小王",
    })
    assert r.status_code == 201, r.text
    clerk_id = r.json()["id"]
    headers = _login(http, "clerk", CLERK_PASSWORD)
    assert http.get("/api/v1/me", headers=headers).json()["id"] == clerk_id
    return headers, clerk_id


def test_register_search_edit_and_history_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/v1/customers").status_code == 401
        clerk, clerk_id = _clerk(http)

        r = http.post("/api/v1/customers", headers=clerk, json={
            "name": "欧阳娜娜", "mobile": "139 1234 5678", "customer_type": "person",
            "source": "walk_in", "address": "上海市浦东新区世纪大道1号", "customer_class": "B",
        })
        assert r.status_code == 201, r.text
        created = r.json()
        cid = created["id"]
        assert created["mobile"] == "+8613912345678"
        # Someone else, so a search that ignored its filter would be caught.
        r = http.post("/api/v1/customers", headers=clerk, json={"name": "张三",
                                                                "mobile": "13800001111"})
        assert r.status_code == 201, r.text

        for params in ({"q": "ouyang"}, {"q": "oynn"}, {"q": "欧阳"},
                       {"mobile": "13912345678"}, {"mobile": "+86 139-1234-5678"}):
            r = http.get("/api/v1/customers", headers=clerk, params=params)
            assert r.status_code == 200, (params, r.text)
            assert [c["id"] for c in r.json()["items"]] == [cid], params
        for params in ({"q": "zhangsan"}, {"q": "ouyangx"}, {"mobile": "13912345679"}):
            r = http.get("/api/v1/customers", headers=clerk, params=params)
            assert r.status_code == 200, (params, r.text)
            assert cid not in [c["id"] for c in r.json()["items"]], params

        r = http.patch(f"/api/v1/customers/{cid}", headers=clerk, json={
            "address": "北京市朝阳区建国路88号", "customer_class": "A",
        })
        assert r.status_code == 200, r.text
        assert r.json()["address"] == "北京市朝阳区建国路88号"
        assert r.json()["customer_class"] == "A"
        assert r.json()["mobile"] == "+8613912345678"

        r = http.get(f"/api/v1/customers/{cid}/history", headers=clerk)
        assert r.status_code == 200, r.text
        history = r.json()["items"]
        changes = {(h["column_name"], h["old_value"], h["new_value"]): h for h in history}
        for change in (("address", "上海市浦东新区世纪大道1号", "北京市朝阳区建国路88号"),
                       ("customer_class", "B", "A")):
            assert change in changes, history
            assert changes[change]["changed_by"] == clerk_id
            assert changes[change]["changed_by_name"] == "档案员小王"

        # An invalid mobile is refused with a problem naming the field; nothing changes,
        # not even the valid field sent alongside it.
        r = http.patch(f"/api/v1/customers/{cid}", headers=clerk, json={
            "mobile": "12345", "address": "不应保存的地址",
        })
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["status"] == 422
        assert "mobile" in problem["detail"]
        assert any(e["field"] == "mobile" for e in problem["errors"]), problem
        r = http.get(f"/api/v1/customers/{cid}", headers=clerk)
        assert r.status_code == 200, r.text
        assert r.json()["mobile"] == "+8613912345678"
        assert r.json()["address"] == "北京市朝阳区建国路88号"
        r = http.get(f"/api/v1/customers/{cid}/history", headers=clerk)
        assert r.json()["items"] == history

    server.stop()


SECRET_NAME = "诸葛秘密测试"
SECRET_PINYIN = "zhugemimiceshi"
CONTACT_NAME = "司马机密联系"
SECRET_MOBILE = "13987654321"
CONTACT_MOBILE = "13987654322"


def _needles() -> dict[str, bytes]:
    needles = {}
    for text in (SECRET_NAME, CONTACT_NAME):
        needles[f"{text} utf-8"] = text.encode("utf-8")
        needles[f"{text} utf-16-le"] = text.encode("utf-16-le")
    for text in (SECRET_PINYIN, SECRET_MOBILE, f"+86{SECRET_MOBILE}", CONTACT_MOBILE,
                 f"+86{CONTACT_MOBILE}"):
        needles[text] = text.encode("ascii")
        needles[f"{text} utf-16-le"] = text.encode("utf-16-le")
    return needles


def _leaks(data: Path) -> list[str]:
    """Every (file, needle) where a needle's bytes are found in a file under `data`."""
    found = []
    files = [p for p in data.rglob("*") if p.is_file()]
    assert files
    for path in files:
        try:
            blob = path.read_bytes()
        except FileNotFoundError:  # e.g. a -shm the running server just removed
            continue
        found += [f"{path.name}: {label}" for label, needle in _needles().items()
                  if needle in blob]
    return found


async def _decrypted_customer(data: Path, key: Path) -> dict[str, Any]:
    db = await Database.open(sqlite_url(data / "branchline.db"),
                             bytes.fromhex(key.read_text().strip()))
    try:
        async with db.read() as conn:
            customers, contacts = TABLES["customers"], TABLES["contacts"]
            row = (await conn.execute(select(customers).where(
                customers.c.name == SECRET_NAME))).mappings().one()
            names = (await conn.execute(select(contacts.c.name).where(
                contacts.c.customer_id == row["id"]))).scalars().all()
            return {**row, "contact_names": names}
    finally:
        await db.dispose()


def test_customer_data_is_not_readable_at_rest(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        clerk, _ = _clerk(http)
        r = http.post("/api/v1/customers", headers=clerk, json={
            "name": SECRET_NAME, "mobile": SECRET_MOBILE, "phone": f"+86 {SECRET_MOBILE}",
            "notes": f"{SECRET_NAME} {SECRET_MOBILE}",
        })
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        r = http.post(f"/api/v1/customers/{cid}/contacts", headers=clerk, json={
            "name": CONTACT_NAME, "mobile": CONTACT_MOBILE, "is_primary": True,
        })
        assert r.status_code == 201, r.text
        r = http.get("/api/v1/customers", headers=clerk, params={"q": SECRET_PINYIN})
        assert [c["id"] for c in r.json()["items"]] == [cid]

        # While the server runs, the recent writes live in the WAL: it is encrypted too.
        wal = server.data / "branchline.db-wal"
        assert wal.exists() and wal.stat().st_size > 0
        assert _leaks(server.data) == []

    server.stop()
    assert _leaks(server.data) == []

    # The check can fail: the data is there for whoever holds the key.
    row = asyncio.run(_decrypted_customer(server.data, server.key))
    assert row["name"] == SECRET_NAME and SECRET_MOBILE in row["notes"]
    # Confidential fields are sealed with field keys too: the database key is not enough.
    assert row["mobile"].startswith("§") and row["mobile_mask"] == "139****4321"
    assert SECRET_MOBILE not in row["mobile"] + (row["phone"] or "")
    assert SECRET_PINYIN in row["search_keys"]
    assert row["contact_names"] == [CONTACT_NAME]
    # …and it would see plaintext bytes if they were written out.
    probe = server.data.parent / "probe"
    probe.mkdir()
    (probe / "dump").write_bytes(b"x" + SECRET_NAME.encode() + SECRET_MOBILE.encode())
    assert len(_leaks(probe)) >= 2
