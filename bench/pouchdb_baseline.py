"""Baseline (b): PouchDB → pouchdb-server replication over loopback, driven from Python.

Writes the dataset as JSON lines to a temp file, starts pouchdb-server (leveldb in a
temp dir) on a free 127.0.0.1 port, runs bench/pouchdb/replicate.js, parses its JSON
and stops the server. Needs `npm ci` in bench/pouchdb first.

    .venv/bin/python bench/pouchdb_baseline.py 20000 [embedded|separate]
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from dataset import write_jsonl

HERE = Path(__file__).resolve().parent / "pouchdb"
SERVER = HERE / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"pouchdb-server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"pouchdb-server not answering at {url} after {timeout:.0f} s")


def _peak_rss_kb(pid: int) -> int | None:
    """The process's resident-set high-water mark (VmHWM), read while it still runs."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def run(n: int, *, mode: str = "embedded", seed: int = 20240601, batch_size: int = 100,
        directory: str | None = None) -> dict[str, Any]:
    """Replicate n customers (mode embedded or separate) and return the rates."""
    if not SERVER.exists():
        raise RuntimeError(f"{SERVER} missing: run `npm ci` in {HERE}")
    with tempfile.TemporaryDirectory(prefix="bench-pouch-", dir=directory) as tmp:
        root = Path(tmp)
        jsonl, server_dir, client_dir = root / "data.jsonl", root / "server", root / "client"
        server_dir.mkdir()
        client_dir.mkdir()
        write_jsonl(jsonl, n, seed)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with (root / "server.log").open("wb") as log:
            server = subprocess.Popen(
                ["node", str(SERVER), "--host", "127.0.0.1", "--port", str(port),
                 "--dir", str(server_dir), "--config", str(server_dir / "config.json"),
                 "--no-stdout-logs", "--no-color"],
                cwd=server_dir, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_ready(base + "/", server)
            client = subprocess.run(
                ["node", str(HERE / "replicate.js"), "--jsonl", str(jsonl),
                 "--remote", f"{base}/customers", "--dir", str(client_dir),
                 "--mode", mode, "--batch-size", str(batch_size)],
                cwd=HERE, capture_output=True, text=True, check=False)
            server_rss = _peak_rss_kb(server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if client.returncode != 0:
            raise RuntimeError(f"replicate.js failed ({client.returncode}): "
                               f"{client.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(client.stdout.strip().splitlines()[-1])
    result["server_peak_rss_kb"] = server_rss
    return result


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(json.dumps(run(count, mode=sys.argv[2] if len(sys.argv) > 2 else "embedded"),
                     indent=2))
