"""Conflict demo: headquarters and two branches edit the same customers while HQ is down.

Run it from the repository:  .venv/bin/python docs/conflict_demo.py

Everything happens in a temporary directory with real processes: `branchline init hq`,
`branch add`, `user add`, `init branch`, `serve` and `sync`, driven over HTTP. The
script prints each step, checks what the product documents (sync/SPEC.md §5 conflicts,
§9 scope) and exits 0 only if every check holds.

The story:

* HQ enrols S001 and S002 and adds a customer_service user for each (`user add
  --branch`); its admin adds an archive clerk and a general manager (HQ-wide).
* HQ files customer C under branch S001 and customer D under S002; both branches sync.
* HQ transfers C to S002 (a general manager changes its `branch`). S002 syncs and
  receives C whole; S001 does not sync, so it still holds its stale copy of C.
* HQ's archive clerk edits D's `industry`. Then HQ stops.
* While HQ is down, S001 (stale) and S002 both edit C's `industry`, and S002 edits
  D's `industry` too — each through its own node's API.
* HQ restarts; S002 syncs, then S001 syncs.

Expected (SPEC §9, §5): S001's edit of C reaches HQ but is quarantined there as out
of scope (C belongs to S002 now) and reported to S001 and in HQ's sync health, not
silently lost; S001's pull evicts C. HQ and S002 agree on C. HQ's and S002's
concurrent edits of D are a conflict: `GET /api/v1/conflicts` at HQ lists exactly one
open conflict for `customers.industry` of D, with both values; all nodes converge.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent / "branchline"
ADMIN_PASSWORD = "demo-admin-pass-1"
PASSWORD = "demo-user-pass-1"
ENROL_PASSPHRASE = "demo-enrol-passphrase-1"
STARTUP_SECONDS = 30

IND_ORIGINAL = "Retail"
IND_S001 = "Wholesale (edited at S001)"
IND_S002_C = "E-commerce (edited at S002)"
IND_HQ_D = "Manufacturing (edited at HQ)"
IND_S002_D = "Logistics (edited at S002)"

failures: list[str] = []
STARTED = time.monotonic()


def step(text: str) -> None:
    print(f"\n== {text}  [{time.monotonic() - STARTED:.1f} s]", flush=True)


def say(text: str) -> None:
    print(f"   {text}", flush=True)


def check(ok: bool, text: str) -> bool:
    print(f"   [{'OK' if ok else 'FAIL'}] {text}", flush=True)
    if not ok:
        failures.append(text)
    return ok


class DemoError(Exception):
    """A step that cannot continue."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
        self.env["XDG_CONFIG_HOME"] = str(root / "xdg")
        # A branch server syncs in the background; keep it from doing so on its own
        # schedule during the demo (it still tries once at start-up).
        self.env["BRANCHLINE_SYNC_INTERVAL"] = "3600"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def cli(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.cli_many([(list(args), env)])[0]

    def cli_many(self, commands: list[tuple[list[str], dict[str, str] | None]]) -> list[str]:
        """Run independent `branchline` commands at the same time (each start-up costs
        a couple of seconds of imports); their outputs in order."""
        procs = [(args, subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
            [str(BIN), *args], env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True))
            for args, env in commands]
        outputs, errors = [], []
        for args, proc in procs:
            out, err = proc.communicate(timeout=120)
            outputs.append(out)
            if proc.returncode != 0:
                errors.append(f"`branchline {' '.join(args)}` failed ({proc.returncode}):\n"
                              f"{out}{err}")
        if errors:
            raise DemoError("\n".join(errors))
        return outputs

    def sync(self, *codes: str) -> list[dict[str, Any]]:
        """`branchline sync --json` for each branch (at the same time); their reports."""
        outputs = self.cli_many([(["sync", "--data", str(self.root / code), "--json"], None)
                                 for code in codes])
        reports = []
        for code, out in zip(codes, outputs, strict=True):
            report: dict[str, Any] = json.loads(out)
            say(f"branchline sync --data {code}: pushed {report['pushed_rows']}, pulled "
                f"{report['pulled_rows']}, applied {report['applied']}, conflicts "
                f"{report['conflicts']}, evicted {report['evicted']}, quarantined "
                f"{report['quarantined']}")
            for message in report["messages"]:
                say(f"    {message}")
            reports.append(report)
        return reports

    def serve(self, **ports: int) -> list[str]:
        """Start `branchline serve` for each node (name=port) and wait for /health."""
        started = {}
        for name, port in ports.items():
            log = (self.root / f"{name}.log").open("ab")
            self.procs[name] = subprocess.Popen(  # noqa: S603 (our own CLI)
                [str(BIN), "serve", "--data", str(self.root / name), "--port", str(port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            started[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        for name, url in started.items():
            proc = self.procs[name]
            while True:
                if proc.poll() is not None:
                    raise DemoError(f"{name} server exited with {proc.returncode}:\n"
                                    f"{self.log(name)}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise DemoError(f"{name}: no /health within {STARTUP_SECONDS} s")
                time.sleep(0.05)
            say(f"{name} serving at {url} (pid {proc.pid})")
        return list(started.values())

    def stop(self, *names: str) -> None:
        """SIGTERM each server, and wait for it to exit."""
        for name in names:
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in names:
            proc = self.procs.pop(name)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise DemoError(f"{name} ignored SIGTERM") from None
            say(f"{name} stopped (exit {proc.returncode})")

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs.clear()


def login(url: str, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = httpx.post(f"{url}/api/v1/auth/login", json={"username": username,
                                                       "password": password}, timeout=10)
    if r.status_code != 200:
        raise DemoError(f"login {username} at {url}: {r.status_code} {r.text}")
    return {"Authorization": f"Bearer {r.json()['token']}"}


def api(method: str, url: str, headers: dict[str, str], json_body: Any = None,
        expect: int = 200) -> Any:
    r = httpx.request(method, url, headers=headers, json=json_body, timeout=10)
    if r.status_code != expect:
        raise DemoError(f"{method} {url}: expected {expect}, got {r.status_code} {r.text}")
    return r.json() if r.content else None


def snapshot(data: Path, key_file: Path) -> dict[str, dict[str, Any]]:
    """Every replicated row of a node's database, keyed "table/id"."""
    import asyncio

    from sqlalchemy import select

    from crypto import read_key_file
    from schema import ENTITIES, TABLES, Database, sqlite_url

    async def read() -> dict[str, dict[str, Any]]:
        db = await Database.open(sqlite_url(data / "branchline.db"), read_key_file(key_file))
        try:
            out: dict[str, dict[str, Any]] = {}
            async with db.read() as conn:
                for tbl, entity in ENTITIES.items():
                    t = TABLES[tbl]
                    cols = [t.c[c] for c in ("id", *entity.replicated_columns)]
                    for row in (await conn.execute(select(*cols))).mappings():
                        out[f"{tbl}/{row['id']}"] = dict(row)
            return out
        finally:
            await db.dispose()

    return asyncio.run(read())


def scoped(rows: dict[str, dict[str, Any]], branch: str) -> dict[str, dict[str, Any]]:
    """HQ's rows restricted to what a branch holds (SPEC 9)."""
    from schema._scope import BY_BRANCH

    owners = {v["id"]: v["branch"] for k, v in rows.items() if k.startswith("customers/")}
    out = {}
    for key, row in rows.items():
        tbl = key.split("/", 1)[0]
        if tbl in BY_BRANCH:  # rows that carry their branch (customers, users, audit…)
            if row["branch"] != branch:
                continue
        elif "customer_id" in row and owners.get(row["customer_id"] or "") != branch:
            continue
        out[key] = row
    return out


def run(demo: Demo) -> list[tuple[str, str, str, str]]:
    root = demo.root
    hq_port, s1_port, s2_port = free_port(), free_port(), free_port()
    hq_url_for_branches = f"http://127.0.0.1:{hq_port}"
    keys = root / "keys"
    enrol_env = {"BRANCHLINE_ENROL_PASSPHRASE": ENROL_PASSPHRASE}
    user_env = {"BRANCHLINE_PASSWORD": PASSWORD}

    step("1. Headquarters: init, enrol S001 and S002")
    demo.cli("init", "hq", "--data", str(root / "hq"), "--key-file", str(keys / "hq.key"),
             env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    say("init hq")
    demo.cli_many([(["branch", "add", "--data", str(root / "hq"), "--code", code, "--name",
                     f"Store {code}", "--out", str(root / f"{code}.enrol"), "--url",
                     hq_url_for_branches], enrol_env) for code in ("S001", "S002")])
    say("branch add S001, S002 -> sealed enrolment files")

    step("2. Branch users at HQ; branch nodes from the enrolment files")
    demo.cli_many([
        *[(["user", "add", "--data", str(root / "hq"), "--username", f"cs{n}", "--role",
            "customer_service", "--branch", code], user_env)
          for n, code in ((1, "S001"), (2, "S002"))],
        *[(["init", "branch", "--data", str(root / code), "--enrol",
            str(root / f"{code}.enrol"), "--upstream", hq_url_for_branches,
            "--key-file", str(keys / f"{code}.key")], enrol_env)
          for code in ("S001", "S002")],
    ])
    say("user add cs1 (customer_service --branch S001), cs2 (customer_service --branch S002)")
    say(f"init branch S001, S002 (upstream {hq_url_for_branches})")

    step("3. Serve HQ; the clerk files C under S001 and D under S002; both branches sync")
    [hq] = demo.serve(hq=hq_port)
    admin = login(hq, "admin", ADMIN_PASSWORD)
    for username, role in (("clerk", "archive_clerk"), ("gm", "general_manager")):
        api("POST", f"{hq}/api/v1/users", admin, {"username": username, "password": PASSWORD,
                                                   "role": role}, expect=201)
        say(f"admin adds {username} ({role}, HQ-wide) through HQ's API")
    clerk, gm = login(hq, "clerk"), login(hq, "gm")
    c = api("POST", f"{hq}/api/v1/customers", clerk, {
        "name": "Customer C", "customer_type": "organisation", "source": "call",
        "industry": IND_ORIGINAL, "branch": "S001"}, expect=201)
    d = api("POST", f"{hq}/api/v1/customers", clerk, {
        "name": "Customer D", "customer_type": "organisation", "source": "call",
        "industry": IND_ORIGINAL, "branch": "S002"}, expect=201)
    cid, did = c["id"], d["id"]
    say(f"C = {cid} (branch S001), D = {did} (branch S002), industry {IND_ORIGINAL!r}")
    demo.sync("S001", "S002")

    step("4. HQ transfers C to S002; S002 syncs (receives C whole), S001 does not")
    moved = api("PATCH", f"{hq}/api/v1/customers/{cid}", gm, {"branch": "S002"})
    check(moved["branch"] == "S002", "general manager moved C to S002 at HQ")
    [report] = demo.sync("S002")
    check(report["pulled_rows"] >= 1, "S002 pulled C")

    step("5. HQ's clerk edits D's industry; then HQ stops")
    api("PATCH", f"{hq}/api/v1/customers/{did}", clerk, {"industry": IND_HQ_D})
    say(f"HQ: D.industry := {IND_HQ_D!r}")
    demo.stop("hq")

    step("6. HQ is down: both branches edit through their own APIs")
    s1, s2 = demo.serve(S001=s1_port, S002=s2_port)
    cs1, cs2 = login(s1, "cs1"), login(s2, "cs2")
    stale = api("GET", f"{s1}/api/v1/customers/{cid}", cs1)
    check(stale["branch"] == "S001", "S001 still holds its stale copy of C (branch S001)")
    api("PATCH", f"{s1}/api/v1/customers/{cid}", cs1, {"industry": IND_S001})
    say(f"S001: C.industry := {IND_S001!r}")
    api("PATCH", f"{s2}/api/v1/customers/{cid}", cs2, {"industry": IND_S002_C})
    say(f"S002: C.industry := {IND_S002_C!r}")
    api("PATCH", f"{s2}/api/v1/customers/{did}", cs2, {"industry": IND_S002_D})
    say(f"S002: D.industry := {IND_S002_D!r}")
    demo.stop("S001", "S002")

    step("7. HQ restarts; S002 syncs, then S001")
    [hq] = demo.serve(hq=hq_port)
    gm = login(hq, "gm")
    [r2] = demo.sync("S002")
    check(r2["quarantined"] == 0 and r2["conflicts"] == 0,
          "HQ accepted all of S002's changes")
    [r1] = demo.sync("S001")
    quarantine_msgs = [m for m in r1["messages"] if cid in m and "customers" in m]
    check(r1["quarantined"] >= 1 and bool(quarantine_msgs),
          "HQ quarantined S001's edit of C and said why: "
          + (quarantine_msgs[0].split(": ", 1)[-1] if quarantine_msgs else "(no message)"))
    check(r1["evicted"] >= 1, "S001's pull evicted C (it belongs to S002 now)")

    step("8. More rounds until nothing moves")
    quiet_round = None
    for n in (2, 3):
        rounds = demo.sync("S002", "S001")
        if all(r["pushed_rows"] == 0 and r["pulled_rows"] == 0 for r in rounds):
            quiet_round = n
            break
    check(quiet_round is not None, f"round {quiet_round or 3} pushes and pulls 0 rows on "
                                   "both branches: converged")

    step("9. What HQ shows")
    c_hq = api("GET", f"{hq}/api/v1/customers/{cid}", gm)
    d_hq = api("GET", f"{hq}/api/v1/customers/{did}", gm)
    say(f"HQ: C branch {c_hq['branch']}, industry {c_hq['industry']!r}")
    say(f"HQ: D branch {d_hq['branch']}, industry {d_hq['industry']!r}")
    check(c_hq["branch"] == "S002" and c_hq["industry"] == IND_S002_C,
          "C at HQ: branch S002 with S002's industry (S001's stale edit did not apply)")
    conflicts = api("GET", f"{hq}/api/v1/conflicts?status=open", gm)["items"]
    for k in conflicts:
        say(f"conflict {k['table_name']}.{k['column_name']} row {k['row_id']}: "
            f"winner {k['winner_value']!r} ({k['winner_user']}), "
            f"loser {k['loser_value']!r} ({k['loser_user']}), policy {k['policy']}")
    d_conflicts = [k for k in conflicts if k["row_id"] == did and
                   k["table_name"] == "customers" and k["column_name"] == "industry"]
    check(len(conflicts) == 1 and len(d_conflicts) == 1,
          "exactly one open conflict at HQ: customers.industry of D")
    if d_conflicts:
        k = d_conflicts[0]
        check({k["winner_value"], k["loser_value"]} == {IND_HQ_D, IND_S002_D},
              "the conflict holds both values (HQ's and S002's)")
        check(d_hq["industry"] == k["winner_value"], "D at HQ holds the winning value")
        users = {k["winner_value"]: k["winner_user"], k["loser_value"]: k["loser_user"]}
        check(users.get(IND_HQ_D) == "clerk" and users.get(IND_S002_D) == "cs2",
              "the conflict names who made each write (SPEC 5): clerk at HQ, cs2 at S002 "
              f"(listed: {users.get(IND_HQ_D)!r}, {users.get(IND_S002_D)!r})")
    health = api("GET", f"{hq}/api/v1/sync/health", gm)["peers"]
    by_branch = {p["branch"]: p for p in health}
    for code in ("S001", "S002"):
        p = by_branch[code]
        say(f"sync health {code}: quarantined {p['quarantined']}, waiting outbound "
            f"{p['waiting_outbound']}, last error {p['last_error']}")
    check(by_branch["S001"]["quarantined"] >= 1 and by_branch["S002"]["quarantined"] == 0,
          "HQ's sync health lists S001's quarantined change (none for S002)")
    history = api("GET", f"{hq}/api/v1/customers/{cid}/history", gm)["items"]
    check(not any(h["new_value"] == IND_S001 for h in history),
          "S001's stale edit is not in C's field history at HQ")

    demo.stop("hq")

    step("10. The replicas at rest (each database opened with its key)")
    hq_rows = snapshot(root / "hq", keys / "hq.key")
    s1_rows = snapshot(root / "S001", keys / "S001.key")
    s2_rows = snapshot(root / "S002", keys / "S002.key")
    check(not any(cid in (k, v.get("customer_id")) for k, v in s1_rows.items()),
          "S001 holds no row of C (customer, history, conflicts): evicted")
    for code, rows in (("S001", s1_rows), ("S002", s2_rows)):
        expected = scoped(hq_rows, code)
        diff = sorted(k for k in expected.keys() | rows.keys()
                      if expected.get(k) != rows.get(k))
        check(not diff, f"{code} equals HQ restricted to {code}'s scope "
                        f"({len(rows)} rows){': differs in ' + ', '.join(diff) if diff else ''}")
    s2_conflicts = [v for k, v in s2_rows.items() if k.startswith("conflicts/")]
    check(len(s2_conflicts) == 1, "the conflict row replicated to S002 (D's branch)")

    winner = d_conflicts[0]["winner_value"] if d_conflicts else "?"
    return [
        ("C.industry", "S001 (stale)", IND_S001,
         "quarantined at HQ (sync health S001), C evicted from S001"),
        ("C.industry", "S002", IND_S002_C,
         "kept at HQ and S002" if c_hq["industry"] == IND_S002_C and
         s2_rows[f"customers/{cid}"]["industry"] == IND_S002_C else "NOT kept"),
        ("D.industry", "HQ", IND_HQ_D,
         "conflict winner" if winner == IND_HQ_D else "conflict loser, listed at HQ"),
        ("D.industry", "S002", IND_S002_D,
         "conflict winner" if winner == IND_S002_D else "conflict loser, listed at HQ"),
    ]


def main() -> int:
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    if not BIN.exists():
        print(f"cannot find {BIN}; run with the project's .venv/bin/python", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="branchline-conflict-demo-") as tmp:
        demo = Demo(Path(tmp))
        try:
            rows = run(demo)
        except (DemoError, httpx.HTTPError, KeyError, ValueError) as exc:
            print(f"\nDEMO ABORTED: {type(exc).__name__}: {exc}", flush=True)
            for name in ("hq", "S001", "S002"):
                if demo.log(name):
                    print(f"--- {name} server log (tail) ---\n{demo.log(name)[-3000:]}")
            demo.kill_all()
            return 1
        finally:
            demo.kill_all()
    print("\nSummary")
    header = ("field", "edited at", "value", "outcome")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))
    print(f"\n{len(failures)} check(s) failed" if failures else
          f"\nALL CHECKS PASSED in {time.monotonic() - STARTED:.1f} s")
    for text in failures:
        print(f"  FAILED: {text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
