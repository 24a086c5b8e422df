"""The 256-bit database key: creation, key files, and the SQLCipher key pragma; HQ's
root key derived from a passphrase."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto._errors import KeyFileError

KEY_BYTES = 32


def generate_db_key() -> bytes:
    """A fresh random 256-bit database key."""
    return secrets.token_bytes(KEY_BYTES)


ROOT_KDF = {"n": 2**17, "r": 8, "p": 1}
"""scrypt cost for a root key from a passphrase: 128 MiB and about half a second per
guess on this class of machine (memory-hard, as OWASP advises for key derivation)."""


def derive_root_key(passphrase: str, salt: bytes) -> bytes:
    """HQ's root key from a passphrase and the node's random salt (scrypt, 128 MiB)."""
    if len(passphrase) < 12:
        raise KeyFileError("the root passphrase must be at least 12 characters")
    if len(salt) < 16:
        raise KeyFileError("the root key salt is too short")
    return Scrypt(salt=salt, length=KEY_BYTES, **ROOT_KDF).derive(passphrase.encode())


def parse_hex_key(text: str, source: str) -> bytes:
    """Decode a hex-encoded 256-bit key, naming `source` in the error."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{source} is not a hex-encoded key") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{source} must hold {KEY_BYTES * 2} hex digits, not {len(text)}")
    return key


def write_key_file(path: Path, key: bytes) -> None:
    """Write `key` as hex to `path`, created with mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


def read_key_file(path: Path) -> bytes:
    """Read a key written by `write_key_file`, refusing group/world-readable files."""
    try:
        st = path.stat()
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} is readable by others; chmod 600 it")
    return parse_hex_key(text, f"key file {path}")


def sqlcipher_key_pragma(key: bytes, *, rekey: bool = False) -> str:
    """The `PRAGMA key` statement for a raw key (no passphrase derivation needed)."""
    if len(key) != KEY_BYTES:
        raise KeyFileError("database key must be 32 bytes")
    verb = "rekey" if rekey else "key"
    return f"PRAGMA {verb} = \"x'{key.hex()}'\""
