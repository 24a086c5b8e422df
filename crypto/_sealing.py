"""Sealing small files (enrolment) with a passphrase: scrypt + AES-256-GCM.

Layout: magic `BLSEAL`, version byte, 16-byte salt, 12-byte nonce, ciphertext+tag.
The header is the associated data, so a changed version or salt fails to open.
"""

from __future__ import annotations

import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto._errors import CryptoError

MAGIC = b"BLSEAL"
VERSION = 1
_WORDS = "abcdefghijkmnpqrstuvwxyz23456789"


class SealError(CryptoError):
    """A sealed file is damaged, of another format, or the passphrase is wrong."""


def _key(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode())


def new_passphrase() -> str:
    """A one-time passphrase people can read out: 5 groups of 5 (≈ 125 bits)."""
    return "-".join("".join(secrets.choice(_WORDS) for _ in range(5)) for _ in range(5))


def seal(payload: bytes, passphrase: str) -> bytes:
    """Encrypt and authenticate `payload` under a key derived from `passphrase`."""
    salt, nonce = os.urandom(16), os.urandom(12)
    header = MAGIC + bytes([VERSION]) + salt + nonce
    return header + AESGCM(_key(passphrase, salt)).encrypt(nonce, payload, header)


def unseal(data: bytes, passphrase: str) -> bytes:
    """The payload of a sealed file; `SealError` with a clear reason otherwise."""
    if not data.startswith(MAGIC):
        raise SealError("not a Branchline sealed file")
    if len(data) < len(MAGIC) + 1 + 28 + 16:
        raise SealError("sealed file is truncated")
    if data[len(MAGIC)] != VERSION:
        raise SealError(f"sealed file version {data[len(MAGIC)]} is not supported")
    header = data[: len(MAGIC) + 1 + 28]
    salt = header[len(MAGIC) + 1: len(MAGIC) + 17]
    nonce = header[len(MAGIC) + 17:]
    try:
        return AESGCM(_key(passphrase, salt)).decrypt(nonce, data[len(header):], header)
    except InvalidTag:
        raise SealError("wrong passphrase, or the file was altered") from None
