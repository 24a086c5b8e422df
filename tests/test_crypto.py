"""Keys, passwords and tokens."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from crypto import (
    KeyFileError,
    TokenError,
    TokenSigner,
    generate_db_key,
    hash_password,
    parse_hex_key,
    read_key_file,
    verify_password,
    write_key_file,
)


def test_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    key = generate_db_key()
    path = tmp_path / "k" / "node.key"
    write_key_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path) == key


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, generate_db_key())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        read_key_file(path)


@pytest.mark.parametrize("text", ["zz" * 32, "ab" * 31, ""])
def test_malformed_hex_key_is_refused(text: str) -> None:
    with pytest.raises(KeyFileError):
        parse_hex_key(text, "BRANCHLINE_DB_KEY")


def test_passwords_hash_with_argon2id() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password("not a hash", "x")


def test_token_round_trip_expiry_and_forgery() -> None:
    signer = TokenSigner(b"s" * 32)
    token = signer.issue("user-1", 3, expires_at=1000)
    claims = signer.verify(token, now=999)
    assert (claims.user_id, claims.generation) == ("user-1", 3)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, now=1000)
    with pytest.raises(TokenError):
        TokenSigner(b"t" * 32).verify(token, now=0)
    body, mac = token.split(".")
    with pytest.raises(TokenError):
        signer.verify(body[:-2] + "AA." + mac, now=0)
    for junk in ["", "a.b.c", "....", "é.é"]:
        with pytest.raises(TokenError):
            signer.verify(junk, now=0)
