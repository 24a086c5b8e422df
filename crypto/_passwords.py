"""Password hashing with argon2id."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory defaults


def hash_password(password: str) -> str:
    """An argon2id hash of `password` in PHC string format."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when `password` matches `stored_hash`; never raises for a mismatch."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """Checked against when a username does not exist, so a login for an unknown user
    costs the same time as one for a known user (made on first use, not at import)."""
    return hash_password("branchline-timing-equaliser")
