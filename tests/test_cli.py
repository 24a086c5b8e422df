"""The `branchline` command, run as a real subprocess of the installed console script."""

from __future__ import annotations

import os
import re
import ssl
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import make_url, select

from crypto import generate_db_key
from schema import TABLES, Database, WrongKeyError, sqlite_url
from server.config import load_settings
from server.node import open_node
from server.services.users import LoginThrottle, login

BIN = Path(sys.executable).parent / "branchline"
PG_URL = os.environ.get("BRANCHLINE_TEST_PG_URL",
                        "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "admin-pass-123"
HEX_KEY = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def cli(tmp_path: Path, *args: str, env: Mapping[str, str] | None = None,
        input: str | None = None, timeout: float = 60) -> Result:
    """Run `branchline ARGS` with a clean environment (no BRANCHLINE_* leaking in) and
    XDG_CONFIG_HOME inside tmp_path."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    base["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    base.update(env or {})
    proc = subprocess.run([str(BIN), *args], env=base, input=input, capture_output=True,
                          text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL if input is None else None)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(r: Result, *needles: str) -> str:
    """A non-zero exit with exactly one line on stderr, no traceback; returns the line."""
    assert r.code != 0, r
    assert "Traceback" not in r.both, r.both
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def init_hq(tmp_path: Path, data: Path, key: Path, *extra: str) -> Result:
    r = cli(tmp_path, "init", "hq", "--data", str(data), "--key-file", str(key), *extra,
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert r.code == 0, r
    return r


@pytest.fixture
def hq(tmp_path: Path) -> tuple[Path, Path]:
    """An initialised HQ node: (data dir, key file outside it)."""
    data, key = tmp_path / "data", tmp_path / "keys" / "hq.key"
    init_hq(tmp_path, data, key)
    return data, key


async def can_login(data: Path, username: str, password: str,
                    env: Mapping[str, str] | None = None) -> bool:
    node = await open_node(load_settings(data, env or {}))
    try:
        await login(node, LoginThrottle(5, 300), username, password, "test")
        return True
    except Exception:
        return False
    finally:
        await node.close()


async def usernames(url: str, key: bytes | None) -> set[str]:
    db = await Database.open(url, key)
    try:
        async with db.read() as conn:
            users = TABLES["users"]
            return set((await conn.execute(select(users.c.username))).scalars())
    finally:
        await db.dispose()


# --- help -------------------------------------------------------------------------------

HELP_COMMANDS = [[], ["init"], ["init", "hq"], ["serve"], ["user"], ["user", "add"], ["demo"],
                 ["rekey"]]


def test_help_of_every_command(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    base["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    procs = [(cmd, subprocess.Popen([str(BIN), *cmd, "--help"], env=base, text=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)) for cmd in HELP_COMMANDS]
    for cmd, proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (cmd, err)
        assert "Usage:" in out, (cmd, out)
        assert f"branchline {' '.join(cmd)}".strip() in out, (cmd, out)
        assert "Traceback" not in out + err
    assert not (tmp_path / "xdg").exists()


# --- init -------------------------------------------------------------------------------

def test_init_hq_with_admin_password_from_env(tmp_path: Path) -> None:
    data, key = tmp_path / "data", tmp_path / "keys" / "hq.key"
    r = init_hq(tmp_path, data, key)
    assert ADMIN_PASSWORD not in r.both
    assert key.is_file() and mode(key) == 0o600
    assert HEX_KEY.fullmatch(key.read_text().strip())
    assert not key.resolve().is_relative_to(data.resolve())
    names = {p.name for p in data.iterdir()}
    assert names - {"branchline.db-wal", "branchline.db-shm"} == {"node.json", "branchline.db"}
    settings = load_settings(data, {})
    assert settings.node.role == "hq"
    assert settings.node.key_file == str(key.resolve())
    assert str(key) in r.out
    assert not (tmp_path / "xdg").exists()  # nothing went to the default key place


async def test_init_hq_generates_password_printed_once(tmp_path: Path) -> None:
    data, key = tmp_path / "data", tmp_path / "keys" / "hq.key"
    r = cli(tmp_path, "init", "hq", "--data", str(data), "--key-file", str(key))
    assert r.code == 0, r
    found = re.findall(r"admin / (\S+)", r.out)
    assert len(found) == 1, r.out
    password = found[0]
    assert len(password) >= 8
    assert r.both.count(password) == 1
    assert await can_login(data, "admin", password)
    assert not await can_login(data, "admin", password + "x")


def test_init_into_non_empty_dir_fails(tmp_path: Path) -> None:
    data, key = tmp_path / "data", tmp_path / "keys" / "hq.key"
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    r = cli(tmp_path, "init", "hq", "--data", str(data), "--key-file", str(key),
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert_one_line_error(r, "not empty")
    assert {p.name for p in data.iterdir()} == {"notes.txt"}
    assert (data / "notes.txt").read_text() == "mine"
    assert not key.exists()


async def test_init_over_existing_node_fails(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, key = hq
    before = key.read_bytes()
    config = (data / "node.json").read_bytes()
    other_key = tmp_path / "keys" / "other.key"
    r = cli(tmp_path, "init", "hq", "--data", str(data), "--key-file", str(other_key),
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert_one_line_error(r, "already holds a node")
    assert not other_key.exists()
    assert key.read_bytes() == before and (data / "node.json").read_bytes() == config
    assert await can_login(data, "admin", ADMIN_PASSWORD)


def test_init_with_existing_key_file_fails(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    _, key = hq
    before = key.read_bytes()
    r = cli(tmp_path, "init", "hq", "--data", str(tmp_path / "data2"), "--key-file", str(key),
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert_one_line_error(r, "key file")
    assert key.read_bytes() == before
    assert not (tmp_path / "data2").exists()


# --- keys -------------------------------------------------------------------------------

def test_wrong_key_file_is_refused(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, key = hq
    key.write_text(generate_db_key().hex() + "\n")  # another valid key, same 0600 file
    assert mode(key) == 0o600
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "bob",
            "--role", "archive_clerk", env={"BRANCHLINE_PASSWORD": "bob-pass-123"})
    assert_one_line_error(r, "key")
    r = cli(tmp_path, "serve", "--data", str(data), "--port", "1")
    assert_one_line_error(r, "key")
    assert "serving" not in r.out


def test_missing_key_file_is_refused(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, key = hq
    key.unlink()
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "bob",
            "--role", "archive_clerk", env={"BRANCHLINE_PASSWORD": "bob-pass-123"})
    assert_one_line_error(r, "key file", "does not exist")
    r = cli(tmp_path, "serve", "--data", str(data), "--port", "1")
    assert_one_line_error(r, "key file", "does not exist")


def test_world_readable_key_file_is_refused(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, key = hq
    key.chmod(0o644)
    r = cli(tmp_path, "serve", "--data", str(data), "--port", "1")
    assert_one_line_error(r, "key file", "chmod")


def test_garbage_db_key_in_env_is_refused(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, _ = hq
    for garbage in ("not-hex-at-all", "abcd"):
        r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "bob",
                "--role", "archive_clerk",
                env={"BRANCHLINE_PASSWORD": "bob-pass-123", "BRANCHLINE_DB_KEY": garbage})
        assert_one_line_error(r, "BRANCHLINE_DB_KEY")
    r = cli(tmp_path, "serve", "--data", str(data), "--port", "1",
            env={"BRANCHLINE_DB_KEY": "zz" * 32})
    assert_one_line_error(r, "BRANCHLINE_DB_KEY")


# --- user add ---------------------------------------------------------------------------

async def test_user_add_password_from_env_and_stdin(tmp_path: Path,
                                                    hq: tuple[Path, Path]) -> None:
    data, _ = hq
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "envuser",
            "--role", "archive_clerk", env={"BRANCHLINE_PASSWORD": "env-pass-123"})
    assert r.code == 0, r
    assert "envuser" in r.out and "env-pass-123" not in r.both
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "stdinuser",
            "--role", "sales_rep", input="stdin-pass-123\n")
    assert r.code == 0, r
    assert "stdinuser" in r.out and "stdin-pass-123" not in r.both
    assert await can_login(data, "envuser", "env-pass-123")
    assert await can_login(data, "stdinuser", "stdin-pass-123")
    assert not await can_login(data, "stdinuser", "stdin-pass-123\n")


async def test_user_add_refusals(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, key = hq
    add = ("user", "add", "--data", str(data))
    r = cli(tmp_path, *add, "--username", "shorty", "--role", "archive_clerk",
            env={"BRANCHLINE_PASSWORD": "short"})
    assert_one_line_error(r, "password")
    r = cli(tmp_path, *add, "--username", "nobody", "--role", "archive_clerk")  # no password
    assert_one_line_error(r, "BRANCHLINE_PASSWORD")
    r = cli(tmp_path, *add, "--username", "lost", "--role", "sales_rep", "--branch", "S999",
            env={"BRANCHLINE_PASSWORD": "lost-pass-123"})
    assert_one_line_error(r, "branch", "S999")
    r = cli(tmp_path, *add, "--username", "admin", "--role", "archive_clerk",
            env={"BRANCHLINE_PASSWORD": "other-pass-123"})
    assert_one_line_error(r, "admin", "taken")
    r = cli(tmp_path, *add, "--username", "x", "--role", "nonsense",
            env={"BRANCHLINE_PASSWORD": "other-pass-123"})
    assert r.code != 0 and "Traceback" not in r.both
    assert await usernames(sqlite_url(data / "branchline.db"),
                           bytes.fromhex(key.read_text().strip())) == {"admin"}
    assert await can_login(data, "admin", ADMIN_PASSWORD)
    assert not await can_login(data, "admin", "other-pass-123")


# --- rekey ------------------------------------------------------------------------------

async def test_rekey_with_key_file(tmp_path: Path, hq: tuple[Path, Path]) -> None:
    data, key = hq
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "before",
            "--role", "archive_clerk", env={"BRANCHLINE_PASSWORD": "before-pass-123"})
    assert r.code == 0, r
    old_key = bytes.fromhex(key.read_text().strip())
    r = cli(tmp_path, "rekey", "--data", str(data))
    assert r.code == 0, r
    assert "Traceback" not in r.both
    assert old_key.hex() not in r.both
    new_key = bytes.fromhex(key.read_text().strip())
    assert new_key != old_key
    assert mode(key) == 0o600
    # No staged key left (the root key of the field keys lives beside the database key).
    assert sorted(p.name for p in key.parent.iterdir()) == [key.name, "hq.root.key"]
    url = sqlite_url(data / "branchline.db")
    with pytest.raises(WrongKeyError):
        await Database.open(url, old_key)
    assert await usernames(url, new_key) == {"admin", "before"}
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "after",
            "--role", "archive_clerk", env={"BRANCHLINE_PASSWORD": "after-pass-123"})
    assert r.code == 0, r
    assert await usernames(url, new_key) == {"admin", "before", "after"}
    assert await can_login(data, "before", "before-pass-123")


async def test_rekey_with_key_from_env(tmp_path: Path) -> None:
    data, unused_key = tmp_path / "data", tmp_path / "keys" / "unused.key"
    old_hex = generate_db_key().hex()
    r = cli(tmp_path, "init", "hq", "--data", str(data), "--key-file", str(unused_key),
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD, "BRANCHLINE_DB_KEY": old_hex,
                 "BRANCHLINE_ROOT_KEY": generate_db_key().hex()})
    assert r.code == 0, r
    assert not unused_key.exists() and not (tmp_path / "xdg").exists()
    assert old_hex not in r.both
    r = cli(tmp_path, "rekey", "--data", str(data), env={"BRANCHLINE_DB_KEY": old_hex})
    assert r.code == 0, r
    printed = HEX_KEY.findall(r.out)
    assert len(printed) == 1, r.out
    new_hex = printed[0]
    assert new_hex != old_hex
    assert not unused_key.exists()
    url = sqlite_url(data / "branchline.db")
    with pytest.raises(WrongKeyError):
        await Database.open(url, bytes.fromhex(old_hex))
    assert await usernames(url, bytes.fromhex(new_hex)) == {"admin"}
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "after",
            "--role", "archive_clerk",
            env={"BRANCHLINE_PASSWORD": "after-pass-123", "BRANCHLINE_DB_KEY": old_hex})
    assert_one_line_error(r, "key")
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "after",
            "--role", "archive_clerk",
            env={"BRANCHLINE_PASSWORD": "after-pass-123", "BRANCHLINE_DB_KEY": new_hex})
    assert r.code == 0, r


# --- PostgreSQL -------------------------------------------------------------------------

def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); its SQLAlchemy URL."""
    name = f"bl_cli_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is required for the test suite: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(_dsn(PG_URL), timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_init_hq_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    data, key = tmp_path / "data", tmp_path / "keys" / "hq.key"
    init_hq(tmp_path, data, key, "--database-url", pg_database)
    assert {p.name for p in data.iterdir()} == {"node.json"}
    settings = load_settings(data, {})
    assert settings.node.database_url == pg_database and settings.db_key is None
    r = cli(tmp_path, "user", "add", "--data", str(data), "--username", "pguser",
            "--role", "archive_clerk", env={"BRANCHLINE_PASSWORD": "pg-pass-123"})
    assert r.code == 0, r
    assert await usernames(pg_database, None) == {"admin", "pguser"}
    assert await can_login(data, "admin", ADMIN_PASSWORD)
    r = cli(tmp_path, "rekey", "--data", str(data))
    assert_one_line_error(r, "PostgreSQL")
    # A second node cannot be initialised into the same database.
    r = cli(tmp_path, "init", "hq", "--data", str(tmp_path / "data2"), "--key-file",
            str(tmp_path / "keys" / "two.key"), "--database-url", pg_database,
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert_one_line_error(r, "already holds a node")
    assert not (tmp_path / "data2").exists()


def test_init_hq_on_unreachable_postgresql(tmp_path: Path) -> None:
    data, key = tmp_path / "data", tmp_path / "keys" / "hq.key"
    r = cli(tmp_path, "init", "hq", "--data", str(data), "--key-file", str(key),
            "--database-url", "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere",
            env={"BRANCHLINE_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert_one_line_error(r, "cannot connect")
    assert not data.exists() and not key.exists()


def test_field_key_commands_refuse_cleanly_and_rotate(tmp_path: Path,
                                                      hq: tuple[Path, Path]) -> None:
    data, _ = hq
    assert (data.parent / "keys" / "hq.root.key").is_file()
    assert mode(data.parent / "keys" / "hq.root.key") == 0o600
    r = cli(tmp_path, "customer", "erase", "--data", str(data),
            "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "--reviewed-by", "nobody",
            "--approved-by", "admin", "--reason", "期满")
    assert r.code == 1 and "Traceback" not in r.both
    assert "'nobody' is not an active dept_manager" in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = cli(tmp_path, "keys", "rotate", "--data", str(data), "--class", "secret")
    assert r.code == 0, r
    assert "secret key now at version 2" in r.out and "destroyed: class:secret:1" in r.out
    r = cli(tmp_path, "keys", "rotate", "--data", str(data), "--class", "bogus")
    assert r.code == 2 and "Traceback" not in r.both


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "store-pc")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "store.crt", folder / "store.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_serve_over_https_for_tablets_on_the_lan(tmp_path: Path, hq: tuple[Path, Path]
                                                 ) -> None:
    import socket
    import time

    import httpx

    data, _ = hq
    cert, key = _self_signed(tmp_path)
    r = cli(tmp_path, "serve", "--data", str(data), "--tls-cert", str(cert))
    assert_one_line_error(r, "--tls-cert and --tls-key go together")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    proc = subprocess.Popen([str(BIN), "serve", "--data", str(data), "--port", str(port),
                             "--tls-cert", str(cert), "--tls-key", str(key)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"https://127.0.0.1:{port}/health", verify=trust)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["role"] == "hq"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=3)  # TLS only
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"serving at https://127.0.0.1:{port}/" in out
