"""The node's configuration: one typed object, read once at start-up and passed in.

`node.json` in the data directory holds what `init` decided (identity, role, where
the database and its key live). Environment variables are read here and nowhere
else.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from crypto import KeyFileError, derive_root_key, parse_hex_key, read_key_file
from schema import sqlite_url
from server.errors import NodeError
from sync import PAGE_ROWS

CONFIG_FILE = "node.json"
DB_FILE = "branchline.db"
CONFIG_FORMAT = 1

Role = Literal["hq", "branch"]


class NodeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What `init` writes to `DATA/node.json`. Holds no secrets."""

    format: int = CONFIG_FORMAT
    node_id: str
    role: Role
    name: str
    database_url: str | None = None
    """None: an SQLCipher file in the data directory."""
    key_file: str | None = None
    root_key_file: str | None = None
    """HQ's root key (wraps the field class keys); outside the data directory."""
    root_key_salt: str | None = None
    """Set when HQ's root key derives from a passphrase (`BRANCHLINE_ROOT_PASSPHRASE`,
    scrypt): the random salt, hex. Not a secret."""
    branch_code: str | None = None
    time_zone: str = "Asia/Shanghai"
    hq_node_id: str | None = None
    """A branch's headquarters (None at HQ itself)."""
    upstream_url: str | None = None
    """Where a branch syncs (HQ's URL); None: bundles only, or not yet configured."""
    public_url: str | None = None
    """HQ's URL as branches reach it, written into enrolment files."""


class Settings(msgspec.Struct, kw_only=True):
    """Everything a running node needs, resolved once."""

    data_dir: Path
    node: NodeConfig
    db_key: bytes | None
    key_from_env: bool = False
    root_key: bytes | None = None
    """HQ's root key (from `BRANCHLINE_ROOT_KEY` or the root key file); None elsewhere."""
    token_ttl_seconds: int = 12 * 3600
    login_max_failures: int = 5
    login_window_seconds: int = 300
    max_body_bytes: int = 2 * 1024 * 1024
    max_skew_ms: int = 5 * 60 * 1000
    """A change or request whose clock is further ahead than this is refused."""
    sync_interval_seconds: float = 30.0
    sync_page_rows: int = PAGE_ROWS
    sync_body_bytes: int = 64 * 1024 * 1024

    @property
    def database_url(self) -> str:
        return self.node.database_url or sqlite_url(self.data_dir / DB_FILE)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(NodeConfig)


def default_key_file(data_dir: Path, environ: Mapping[str, str]) -> Path:
    """Where a node's key lives by default: the user's config dir, not the data dir."""
    base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return base / "branchline" / "keys" / f"{digest}.key"


def default_root_key_file(data_dir: Path, environ: Mapping[str, str]) -> Path:
    """Where HQ's root key lives by default: beside the database key."""
    key = default_key_file(data_dir, environ)
    return key.with_name(key.stem + ".root.key")


def resolve_root_key(config: NodeConfig, environ: Mapping[str, str]) -> bytes | None:
    """HQ's root key: `BRANCHLINE_ROOT_KEY` (hex) if set; else, for a node made with a
    root passphrase, derived from `BRANCHLINE_ROOT_PASSPHRASE`; else the root key file;
    None when none is there (the node then shows masks and refuses confidential writes)."""
    try:
        if environ.get("BRANCHLINE_ROOT_KEY"):
            return parse_hex_key(environ["BRANCHLINE_ROOT_KEY"], "BRANCHLINE_ROOT_KEY")
        if config.root_key_salt:
            passphrase = environ.get("BRANCHLINE_ROOT_PASSPHRASE")
            if not passphrase:
                return None
            return derive_root_key(passphrase, bytes.fromhex(config.root_key_salt))
        if config.root_key_file and Path(config.root_key_file).exists():
            return read_key_file(Path(config.root_key_file))
    except KeyFileError as exc:
        raise NodeError(str(exc)) from None
    return None


def write_config(data_dir: Path, config: NodeConfig) -> None:
    """Persist `config` as `DATA/node.json`."""
    path = data_dir / CONFIG_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(_encoder.encode(config)) + b"\n")
    tmp.replace(path)


def read_config(data_dir: Path) -> NodeConfig:
    """Read `DATA/node.json`, with a one-line error if it is missing or malformed."""
    path = data_dir / CONFIG_FILE
    try:
        config = _decoder.decode(path.read_bytes())
    except FileNotFoundError:
        raise NodeError(f"{data_dir} is not a Branchline node (run `branchline init`)") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise NodeError(f"{path} is malformed: {exc}") from None
    if config.format != CONFIG_FORMAT:
        raise NodeError(f"{path} has format {config.format}; this version reads {CONFIG_FORMAT}")
    return config


def resolve_db_key(config: NodeConfig, environ: Mapping[str, str]) -> bytes | None:
    """The database key: `BRANCHLINE_DB_KEY` (hex) if set, else the node's key file."""
    if config.database_url is not None:
        return None
    env_key = environ.get("BRANCHLINE_DB_KEY")
    try:
        if env_key:
            return parse_hex_key(env_key, "BRANCHLINE_DB_KEY")
        if config.key_file is None:
            raise NodeError("no database key: set BRANCHLINE_DB_KEY or a key file in node.json")
        return read_key_file(Path(config.key_file))
    except KeyFileError as exc:
        raise NodeError(str(exc)) from None


def load_settings(data_dir: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the node's configuration and secrets once, for a command or the server."""
    env = os.environ if environ is None else environ
    data_dir = data_dir.resolve()
    config = read_config(data_dir)
    settings = Settings(data_dir=data_dir, node=config, db_key=resolve_db_key(config, env),
                        key_from_env=bool(env.get("BRANCHLINE_DB_KEY")),
                        root_key=resolve_root_key(config, env) if config.role == "hq" else None)
    try:
        if env.get("BRANCHLINE_MAX_SKEW_MS"):
            settings.max_skew_ms = int(env["BRANCHLINE_MAX_SKEW_MS"])
        if env.get("BRANCHLINE_SYNC_INTERVAL"):
            settings.sync_interval_seconds = float(env["BRANCHLINE_SYNC_INTERVAL"])
    except ValueError:
        raise NodeError("BRANCHLINE_MAX_SKEW_MS and BRANCHLINE_SYNC_INTERVAL must be numbers"
                        ) from None
    return settings
