"""A real headquarters node served over HTTP, and Debian's chromium, for the web app tests.

`branchline serve` runs in a subprocess on 127.0.0.1:<free port> (the same server a store
PC runs: static_pwa/ at `/`, the REST API, the sync endpoints), seeded through its REST
API with a branch, a few users and customers whose confidential fields are filled in.
Playwright drives /usr/bin/chromium (Debian's package, installed by .ci/run and
./dev test; a browser is never downloaded). Screenshots go to tests/artifacts/pwa/
(not tracked), at a phone's 390×844 and a store PC's 1280×800.

Test modules import the fixtures `pwa_hq` (session scope: one server per test process)
and `browser` (one per test; each test opens its own browser context, so its own
IndexedDB, service worker and cache).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from server.node import init_node

BIN = Path(sys.executable).parent / "branchline"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "pwa"
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "pc": {"width": 1280, "height": 800}}
ADMIN_PASSWORD = "pwa-admin-pass-1"
PASSWORD = "pwa-user-pass-1"
STARTUP_SECONDS = 90  # a loaded CI machine; it is ~2 s on an idle one


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seeded:
    """What `seed` put on HQ: users by name (id, role, branch) and customers by label
    (id and the plaintext values of their confidential fields)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Hq:
    """A served headquarters node: its URL, REST helpers, and its log."""

    url: str
    root: Path
    proc: subprocess.Popen[bytes]
    seeded: Seeded = field(default_factory=Seeded)
    _tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def headers(self, username: str) -> dict[str, str]:
        """Authorization headers for a user (logged in once, then reused)."""
        if username not in self._tokens:
            password = ADMIN_PASSWORD if username == "admin" else PASSWORD
            r = httpx.post(f"{self.url}/api/v1/auth/login",
                           json={"username": username, "password": password}, timeout=10)
            assert r.status_code == 200, f"login {username}: {r.status_code} {r.text}"
            self._tokens[username] = {"Authorization": f"Bearer {r.json()['token']}"}
        return self._tokens[username]

    def api(self, method: str, path: str, as_user: str, body: Any = None,
            expect: int | None = 200, **params: Any) -> Any:
        """One REST call as `as_user`; asserts the status (unless `expect` is None) and
        returns the JSON body (or the response when `expect` is None)."""
        r = httpx.request(method, f"{self.url}{path}", headers=self.headers(as_user),
                          json=body, params=params or None, timeout=10)
        if expect is None:
            return r
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        path = self.root / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the server and wait for it (kill it if it lingers)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_hq(root: Path) -> Hq:
    """Initialise a headquarters node under `root` and serve it; waits for /health."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env["XDG_CONFIG_HOME"] = str(root / "xdg")

    async def init() -> None:
        node, _ = await init_node(root / "hq", role="hq", name="总部",
                                  environ={**env, "BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD},
                                  key_file=root / "keys" / "hq.key")
        await node.close()

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, init()).result()
    port = free_port()
    with (root / "serve.log").open("ab") as log:
        proc = subprocess.Popen(  # our own CLI, fixed arguments
            [str(BIN), "serve", "--data", str(root / "hq"), "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    hq = Hq(url=f"http://127.0.0.1:{port}", root=root, proc=proc)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"branchline serve exited with {proc.returncode}:\n{hq.log()}")
        try:
            if httpx.get(f"{hq.url}/health", timeout=1).status_code == 200:
                return hq
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            hq.stop()
            raise RuntimeError(f"no /health within {STARTUP_SECONDS} s:\n{hq.log()}")
        time.sleep(0.05)


# Valid mainland ID numbers (GB 11643 check digit) and mobiles; the tests grep the
# device's IndexedDB for them, so they must be distinctive strings.
CUSTOMERS = {
    "wang": {"name": "王芳", "mobile": "13912345678", "id_number": "110101199003074514",
             "owner": "rep1"},
    "li": {"name": "李娜", "mobile": "13812349876", "id_number": "310104198512120015",
           "owner": "rep1"},
    "zhao": {"name": "赵强", "mobile": "13712340000", "id_number": "110105198512120014",
             "owner": "rep2"},
}


def seed(hq: Hq) -> Seeded:
    """Branch S001 with two sales reps; an auditor (reads no confidential class) and a
    general manager at HQ; three customers (two rep1's, one rep2's) with mobile
    (confidential) and ID number (secret) filled in."""
    hq.api("POST", "/api/v1/branches", "admin", {"code": "S001", "name": "上海店"},
           expect=201)
    for username, role, branch, display in (
            ("rep1", "sales_rep", "S001", "张伟"), ("rep2", "sales_rep", "S001", "刘洋"),
            ("audit1", "auditor", None, "周敏"),
            ("gm", "general_manager", None, "孙总")):
        row = hq.api("POST", "/api/v1/users", "admin", {
            "username": username, "password": PASSWORD, "role": role, "branch": branch,
            "display_name": display}, expect=201)
        hq.seeded.users[username] = {"id": row["id"], "role": role, "branch": branch}
    for label, c in CUSTOMERS.items():
        row = hq.api("POST", "/api/v1/customers", "gm", {
            "name": c["name"], "mobile": c["mobile"], "id_number": c["id_number"],
            "branch": "S001", "owner_id": hq.seeded.users[c["owner"]]["id"],
            "source": "walk_in"}, expect=201)
        hq.seeded.customers[label] = {**c, "id": row["id"]}
    return hq.seeded


_shared: dict[str, Any] = {}
_holders: dict[str, int] = {}


@contextmanager
def _shared_one(name: str, start: Callable[[], Any], stop: Callable[[Any], None]
                ) -> Iterator[Any]:
    """One instance per test process however many modules import the fixture (pytest
    makes each importing module's copy a fixture of its own); stopped with the last."""
    if name not in _shared:
        _shared[name], _holders[name] = start(), 0
    _holders[name] += 1
    try:
        yield _shared[name]
    finally:
        _holders[name] -= 1
        if not _holders[name]:
            stop(_shared.pop(name))


def _start_seeded(factory: pytest.TempPathFactory) -> Hq:
    hq = start_hq(factory.mktemp("pwa"))
    try:
        seed(hq)
    except BaseException:
        hq.stop()
        raise
    return hq


@pytest.fixture(scope="session")
def pwa_hq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hq]:
    """A served, seeded headquarters node, one per test process (starting it and the
    browser is most of a web app test's time): tests add records but never change the
    seeded ones, and find what they wrote by id."""
    with _shared_one("hq", lambda: _start_seeded(tmp_path_factory), Hq.stop) as hq:
        yield hq


def _launch() -> tuple[Playwright, Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pw = sync_playwright().start()
    try:
        return pw, pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except BaseException:
        pw.stop()
        raise


def _close(running: tuple[Playwright, Browser]) -> None:
    pw, b = running
    try:
        b.close()
    finally:
        pw.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright, one per test: Playwright's sync API runs an
    event loop in this thread while it is started, and the asyncio tests pytest-xdist
    schedules on the same worker in between need the thread without one."""
    running = _launch()
    try:
        yield running[1]
    finally:
        _close(running)


def new_page(browser: Browser, size: str = "phone") -> tuple[BrowserContext, Page]:
    """A fresh context (own storage, service worker, cache) and page, Chinese locale.
    Uncaught page errors are collected on `page.errors` (a list of strings)."""
    context = browser.new_context(viewport=VIEWPORTS[size], locale="zh-CN",
                                  timezone_id="Asia/Shanghai", service_workers="allow")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    return context, page


def screenshots(page: Page, name: str) -> list[Path]:
    """Save the page at both sizes (phone, then PC) as tests/artifacts/pwa/<name>-<size>.png;
    the viewport is restored afterwards."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size
    paths = []
    for size, viewport in VIEWPORTS.items():
        page.set_viewport_size(viewport)
        page.wait_for_timeout(50)  # one layout pass at the new width
        path = ARTIFACTS / f"{name}-{size}.png"
        page.screenshot(path=str(path))
        paths.append(path)
    if before:
        page.set_viewport_size(before)
    return paths


_DUMP_INDEXEDDB = """
async () => {
  const out = {};
  const bytes = (u8) => {
    // Both a base64 copy and a UTF-8 reading, so a grep finds plaintext hidden in blobs.
    let bin = ''; for (const b of u8) bin += String.fromCharCode(b);
    return {bytes_b64: btoa(bin), bytes_text: new TextDecoder('utf-8', {fatal: false}).decode(u8)};
  };
  const plain = (v, depth = 0) => {
    if (depth > 50) return '<deep>';
    if (v === null || v === undefined) return v ?? null;
    if (typeof v === 'bigint') return v.toString();
    if (typeof v !== 'object') return v;
    if (v instanceof ArrayBuffer) return bytes(new Uint8Array(v));
    if (ArrayBuffer.isView(v)) return bytes(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey)
      return {cryptokey: v.type, algorithm: v.algorithm.name, extractable: v.extractable,
              usages: v.usages};
    if (v instanceof Date) return v.toISOString();
    if (v instanceof Blob) return {blob: v.size};
    if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1));
    if (v instanceof Map)
      return Object.fromEntries([...v].map(([k, x]) => [String(k), plain(x, depth + 1)]));
    const o = {}; for (const k of Object.keys(v)) o[k] = plain(v[k], depth + 1); return o;
  };
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((res, rej) => {
      const r = indexedDB.open(info.name);
      r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
    });
    const stores = {};
    for (const name of db.objectStoreNames) {
      stores[name] = await new Promise((res, rej) => {
        const r = db.transaction(name).objectStore(name).getAll();
        r.onsuccess = () => res(plain(r.result)); r.onerror = () => rej(r.error);
      });
    }
    db.close();
    out[info.name] = stores;
  }
  return out;
}
"""


def dump_indexeddb(page: Page) -> dict[str, dict[str, list[Any]]]:
    """Every IndexedDB database of the page's origin: {db: {store: [records]}}, with
    bytes as base64 plus their UTF-8 reading, BigInts as strings, CryptoKeys described."""
    result: dict[str, dict[str, list[Any]]] = page.evaluate(_DUMP_INDEXEDDB)
    return result


def dump_text(dump: Any) -> str:
    """The dump as one JSON string (non-ASCII kept), for grepping plaintext."""
    return json.dumps(dump, ensure_ascii=False)
