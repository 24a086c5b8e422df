"""Bundle walkthrough: a new store that talks to headquarters only by e-mail, for a week.

Run it from the repository:  .venv/bin/python docs/bundle_mail_walkthrough.py
(needs Debian's dovecot-imapd, which `.ci/run` installs).

Everything is real and runs in a temporary directory: a mail system on loopback (SMTP
with STARTTLS and login via aiosmtpd, IMAP over TLS via dovecot, a self-signed
certificate both sides trust through `--ca-file`), `branchline` as separate processes
for every step, and HQ and the store each serving their own API.

The story (sync/SPEC.md §14):

* HQ is created; the store S001 is enrolled (`branch add`) and a customer-service user
  is added for it. The store's node is created from the enrolment file **without any
  upstream URL**: it has no network path to HQ at all.
* Day 0: HQ mails its first bundle (`bundle send`); the store fetches it over IMAP
  (`bundle receive`): its user can now log in at the store.
* Days 1–7: HQ files new customers for the store and edits some; the store registers
  its own customers and edits others, through each node's own API. Every evening each
  side mails a bundle and fetches the other's. On day 3 the store's mail is lost (it
  never arrives: the next bundle covers it); on day 5 HQ's mail arrives twice.
* At the end, the same user lists the store's customers at HQ and at the store, field
  by field: identical. Nothing left to send either way. Exit 0 only if every check holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.mailservers import PASSWORD as MAIL_PASSWORD
from tests.mailservers import mail_servers

BIN = Path(sys.executable).parent / "branchline"
ADMIN_PASSWORD = "walk-admin-pass-1"
PASSWORD = "walk-user-pass-1"
failures: list[str] = []


def say(text: str) -> None:
    print(text, flush=True)


def check(ok: bool, what: str) -> None:
    say(f"  [{'OK' if ok else 'FAIL'}] {what}")
    if not ok:
        failures.append(what)


def cli(*args: str, env: dict[str, str], ok: bool = True) -> str:
    r = subprocess.run([str(BIN), *args], env=env,  # noqa: S603 (our own CLI)
                       capture_output=True, text=True,
                       encoding="utf-8", timeout=300, stdin=subprocess.DEVNULL, check=False)
    out = (r.stdout + r.stderr).strip()
    if ok and r.returncode != 0:
        raise SystemExit(f"`branchline {' '.join(args[:2])}` failed: {out}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(data: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    args = [str(BIN), "serve", "--data", str(data), "--port", str(port)]
    proc = subprocess.Popen(args, env=env,  # noqa: S603 (our own CLI)
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{data.name} did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def login(url: str, username: str) -> dict[str, str]:
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": username,
                                                     "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def customers(url: str, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        r = httpx.get(f"{url}/api/v1/customers", headers=headers, params=params)
        r.raise_for_status()
        body = r.json()
        for c in body["items"]:
            out[c["id"]] = {k: v for k, v in c.items() if k not in ("updated_at",)}
        cursor = body.get("next_cursor")
        if not cursor:
            return out


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="branchline-walk-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")},
           "XDG_CONFIG_HOME": str(work / "xdg"), "BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "BRANCHLINE_PASSWORD": PASSWORD, "BRANCHLINE_ENROL_PASSPHRASE": "walk-enrol-1",
           "BRANCHLINE_SMTP_PASSWORD": MAIL_PASSWORD,
           "BRANCHLINE_IMAP_PASSWORD": MAIL_PASSWORD, "PYTHONIOENCODING": "utf-8"}
    hq, store = work / "hq", work / "s001"
    try:
        with mail_servers(work / "mail", users=("hq", "s001")) as mail:
            ca = str(mail.cafile)

            def send(data: Path, to: str, mailbox: str, user: str) -> str:
                return cli("bundle", "send", "--data", str(data), "--to", to,
                           "--smtp-host", "127.0.0.1", "--smtp-port", str(mail.smtp_port),
                           "--smtp-security", "starttls", "--smtp-user", user,
                           "--ca-file", ca, "--mail-from", f"{user}@example.com",
                           "--mail-to", f"{mailbox}@example.com",
                           "--max-part-size", "64KB", env=env)

            def receive(data: Path, user: str) -> str:
                return cli("bundle", "receive", "--data", str(data), "--imap-host",
                           "127.0.0.1", "--imap-port", str(mail.imap_port), "--imap-user",
                           user, "--ca-file", ca, env=env)

            say("== Enrolment: HQ, and a store with no network path to it")
            cli("init", "hq", "--data", str(hq), env=env)
            cli("branch", "add", "--data", str(hq), "--code", "S001", "--name", "一号店",
                "--out", str(work / "s001.enrol"), env=env)
            cli("user", "add", "--data", str(hq), "--username", "cs1",
                "--role", "customer_service", "--branch", "S001", env=env)
            cli("user", "add", "--data", str(hq), "--username", "gm",
                "--role", "general_manager", env=env)
            cli("init", "branch", "--data", str(store), "--enrol", str(work / "s001.enrol"),
                env=env)
            check("upstream_url" not in (store / "node.json").read_text()
                  or '"upstream_url": null' in (store / "node.json").read_text(),
                  "the store has no upstream URL: bundles are its only link")

            say("== Day 0: HQ's first bundle by mail")
            say("  " + send(hq, "S001", "s001", "hq"))
            out = receive(store, "s001")
            say("  " + out.replace("\n", "\n  "))
            check("rows applied" in out, "the store applied HQ's bundle")

            with serving(hq, env) as hq_url, serving(store, env) as store_url:
                gm = login(hq_url, "gm")
                at_store = login(store_url, "cs1")
                check(True, "cs1 logs in at the store (replicated by mail)")
                lost = {3}
                twice = {5}
                for day in range(1, 8):
                    say(f"== Day {day}")
                    for i in range(3):
                        r = httpx.post(f"{hq_url}/api/v1/customers", headers=gm, json={
                            "name": f"总部客户{day}-{i}", "customer_type": "person",
                            "source": "call", "branch": "S001",
                            "mobile": f"139{day:02d}{i:02d}0000"[:11]})
                        r.raise_for_status()
                    r = httpx.post(f"{store_url}/api/v1/customers", headers=at_store, json={
                        "name": f"门店客户{day}", "customer_type": "person",
                        "source": "walk_in", "mobile": f"137{day:04d}8888"[:11]})
                    r.raise_for_status()
                    known = customers(store_url, at_store)
                    for cid in list(known)[: day % 3 + 1]:
                        httpx.patch(f"{store_url}/api/v1/customers/{cid}", headers=at_store,
                                    json={"notes": f"第{day}天回访"}).raise_for_status()
                    for cid in list(customers(hq_url, gm))[-2:]:
                        httpx.patch(f"{hq_url}/api/v1/customers/{cid}", headers=gm,
                                    json={"industry": f"行业{day}"}).raise_for_status()
                    say("  " + send(store, "hq", "hq", "s001"))
                    if day in lost:
                        for f in (mail.maildir_of("hq") / "new").iterdir():
                            f.unlink()
                        say("  (the store's mail is lost today)")
                    say("  HQ: " + receive(hq, "hq").replace("\n", "\n  "))
                    say("  " + send(hq, "S001", "s001", "hq"))
                    if day in twice:
                        for f in list((mail.maildir_of("s001") / "new").iterdir()):
                            shutil.copy2(f, f.with_name(f.name + ".dup"))
                        say("  (HQ's mail arrives twice today)")
                    say("  store: " + receive(store, "s001").replace("\n", "\n  "))
                # A last exchange each way, so each side has the other's acknowledgement.
                send(store, "hq", "hq", "s001")
                receive(hq, "hq")
                send(hq, "S001", "s001", "hq")
                receive(store, "s001")

                say("== The end of the week")
                at_hq = customers(hq_url, login(hq_url, "cs1"))
                here = customers(store_url, at_store)
                check(len(here) == 7 * 4, f"the store holds all {7 * 4} customers of S001")
                check(at_hq == here, "HQ and the store show the same customers, field by field")
                health = httpx.get(f"{hq_url}/api/v1/sync/health",
                                   headers=login(hq_url, "gm")).json()
                peer = health["peers"][0]
                say(f"  HQ sync health for S001: sent {peer['bundles_sent']}, received "
                    f"{peer['bundles_received']}, acknowledged {peer['bundles_acknowledged']},"
                    f" waiting {peer['bundles_waiting']}")
                check(peer["bundles_received"] == 7 and peer["bundles_sent"] == 9
                      and peer["bundles_acknowledged"] >= 8 and not peer["bundles_waiting"],
                      "HQ's sync health counts the bundles: 9 sent, 7 received (one was "
                      "lost), the sent ones acknowledged, none waiting")
                # What the store would still send is only what HQ already has (HQ's own
                # rows echoed back): importing it changes nothing at HQ.
                before = customers(hq_url, gm)
                last = cli("bundle", "export", "--data", str(store), "--to", "hq", "--out",
                           str(work / "last"), env=env)
                files = [str(p) for p in sorted((work / "last").glob("*.blb"))]
                say("  " + last.splitlines()[0])
                say("  HQ: " + cli("bundle", "import", "--data", str(hq), *files, env=env))
                check(customers(hq_url, gm) == before,
                      "nothing is left to send: the store's last bundle changes nothing at HQ")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        say(f"{len(failures)} CHECK(S) FAILED")
        return 1
    say("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
