"""`branchline bundle …` as real subprocesses: export/import exit codes and messages,
folder mode, and the week-long e-mail walkthrough in docs/."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests._docs import run_walkthrough
from tests.test_cli import assert_one_line_error, cli

ENV = {"BRANCHLINE_ADMIN_PASSWORD": "admin-pass-123", "BRANCHLINE_PASSWORD": "user-pass-123",
       "BRANCHLINE_ENROL_PASSPHRASE": "enrol-pass-123"}


def _hq_and_branch(tmp_path: Path) -> tuple[Path, Path]:
    hq, store = tmp_path / "hq", tmp_path / "s001"
    assert cli(tmp_path, "init", "hq", "--data", str(hq), env=ENV).code == 0
    r = cli(tmp_path, "branch", "add", "--data", str(hq), "--code", "S001", "--name", "一店",
            "--out", str(tmp_path / "s001.enrol"), env=ENV)
    assert r.code == 0, r
    r = cli(tmp_path, "user", "add", "--data", str(hq), "--username", "cs1", "--role",
            "customer_service", "--branch", "S001", env=ENV)
    assert r.code == 0, r
    r = cli(tmp_path, "init", "branch", "--data", str(store), "--enrol",
            str(tmp_path / "s001.enrol"), env=ENV)
    assert r.code == 0, r
    return hq, store


def test_bundle_commands_exit_codes_and_folder_mode(tmp_path: Path) -> None:
    hq, store = _hq_and_branch(tmp_path)
    r = cli(tmp_path, "bundle", "export", "--data", str(hq), "--to", "S001", "--out",
            str(tmp_path / "out"), "--max-part-size", "8KB")
    assert r.code == 0 and "Bundle #1:" in r.out, r
    files = sorted((tmp_path / "out").glob("*.blb"))
    # A tampered copy: refused in one line per bundle, non-zero exit, quarantined.
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in files:
        shutil.copy(f, bad / f.name)
    victim = bad / files[0].name
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = cli(tmp_path, "bundle", "import", "--data", str(store),
            *map(str, sorted(bad.iterdir())))
    line = assert_one_line_error(r, "signature does not verify", "nothing applied")
    assert line.startswith("refused: bundle #1")
    assert (store / "bundles" / "quarantine" / victim.name).exists()
    # The real files import; again: a no-op.
    r = cli(tmp_path, "bundle", "import", "--data", str(store), *map(str, files))
    assert r.code == 0 and "rows applied" in r.out, r
    r = cli(tmp_path, "bundle", "import", "--data", str(store), *map(str, files))
    assert r.code == 0 and "already imported" in r.out, r
    r = cli(tmp_path, "bundle", "export", "--data", str(store), "--to", "S002", "--out",
            str(tmp_path / "x"))
    assert_one_line_error(r, "no single enrolled node")
    r = cli(tmp_path, "bundle", "export", "--data", str(hq), "--to", "S001", "--out",
            str(tmp_path / "x"), "--max-part-size", "lots")
    assert r.code == 2 and "is not a size" in r.err and "Traceback" not in r.both
    # Folder mode: a USB stick carried between the store and HQ.
    stick = tmp_path / "stick"
    to_hq, to_store = stick / "to-hq", stick / "to-s001"
    r = cli(tmp_path, "bundle", "watch", "--data", str(store), "--inbox", str(to_store),
            "--outbox", str(to_hq), "--once")
    assert r.code == 0 and "exported bundle #1" in r.out, r
    r = cli(tmp_path, "bundle", "watch", "--data", str(hq), "--inbox", str(to_hq),
            "--outbox", str(to_store), "--once")
    assert r.code == 0 and "rows applied" in r.out and "exported bundle #2" in r.out, r
    assert not list(to_hq.glob("*.blb"))  # imported files leave the inbox
    r = cli(tmp_path, "bundle", "watch", "--data", str(store), "--inbox", str(to_store),
            "--outbox", str(to_hq), "--once")
    assert r.code == 0 and "rows applied" in r.out, r
    # A second export to the same peer replaces the first one still in the outbox.
    before = {p.name for p in to_hq.glob("*.blb")}
    r = cli(tmp_path, "bundle", "watch", "--data", str(store), "--inbox", str(to_store),
            "--outbox", str(to_hq), "--once")
    after = {p.name for p in to_hq.glob("*.blb")}
    assert not before & after or r.out.strip() == "", (before, after, r)


def test_a_week_of_e_mail_only_exchange_ends_converged(tmp_path: Path) -> None:
    """docs/bundle_mail_walkthrough.py: enrolment, then seven days of SMTP out and IMAP
    in, with a lost and a duplicated mail; HQ and the store end identical."""
    out = run_walkthrough("bundle_mail_walkthrough.py", tmp_path, timeout=600)
    assert "(the store's mail is lost today)" in out and "arrives twice" in out
    assert "[OK] HQ and the store show the same customers, field by field" in out


def test_progress_shows_on_a_terminal_only(tmp_path: Path) -> None:
    import pty
    import select

    from tests.test_cli import BIN

    hq, _ = _hq_and_branch(tmp_path)
    quiet = cli(tmp_path, "bundle", "export", "--data", str(hq), "--to", "S001", "--out",
                str(tmp_path / "a"))
    assert quiet.code == 0 and quiet.err == "", quiet
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    master, slave = pty.openpty()
    try:
        r = subprocess.run([str(BIN), "bundle", "export", "--data", str(hq), "--to", "S001",
                            "--out", str(tmp_path / "b")], env=env, stdout=subprocess.PIPE,
                           stderr=slave, stdin=subprocess.DEVNULL, timeout=60, check=False)
        shown = b""
        while select.select([master], [], [], 0.5)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 0
    assert b"Exporting" in shown, shown
