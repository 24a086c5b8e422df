"""Field-level envelope encryption primitives (crypto/_fields.py)."""

from __future__ import annotations

import pytest

from crypto import (
    BoxKey,
    FieldCryptoError,
    blind_index,
    decrypt_value,
    encrypt_value,
    index_key,
    is_token,
    new_key,
    token_class,
    unwrap_data_key,
    unwrap_local,
    wrap_data_key,
    wrap_local,
    wrap_to,
)

ROW = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
OTHER_ROW = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"


def test_value_round_trip_and_version_byte() -> None:
    key = new_key()
    token = encrypt_value(key, "+8613812345678", table="customers", column="mobile",
                          row_id=ROW, cls="confidential")
    assert is_token(token) and "13812345678" not in token
    assert token_class(token) == "confidential" and token.startswith("\u00a7c")
    assert decrypt_value(key, token, table="customers", column="mobile",
                         row_id=ROW) == "+8613812345678"
    # A random nonce: the same value never gives the same ciphertext twice.
    assert token != encrypt_value(key, "+8613812345678", table="customers",
                                  column="mobile", row_id=ROW, cls="confidential")


def test_class_letter_is_bound_to_the_ciphertext() -> None:
    key = new_key()
    token = encrypt_value(key, "110101199003074514", table="customers", column="id_number",
                          row_id=ROW, cls="secret")
    assert token_class(token) == "secret"
    relabelled = token[0] + "c" + token[2:]  # claims another class: must not open
    with pytest.raises(FieldCryptoError):
        decrypt_value(key, relabelled, table="customers", column="id_number", row_id=ROW)
    with pytest.raises(FieldCryptoError, match="unknown key class"):
        encrypt_value(key, "x", table="customers", column="id_number", row_id=ROW,
                      cls="topsecret")


@pytest.mark.parametrize("where", [
    {"table": "customers", "column": "mobile", "row_id": OTHER_ROW},  # another row
    {"table": "customers", "column": "phone", "row_id": ROW},  # another column
    {"table": "contacts", "column": "mobile", "row_id": ROW},  # another table
])
def test_ciphertext_moved_to_another_row_or_column_is_rejected(where: dict[str, str]) -> None:
    key = new_key()
    token = encrypt_value(key, "110101199003074514", table="customers", column="mobile",
                          row_id=ROW, cls="confidential")
    with pytest.raises(FieldCryptoError, match="moved from another row or column"):
        decrypt_value(key, token, **where)


def test_wrong_key_tampered_and_truncated_values_fail_cleanly() -> None:
    key = new_key()
    token = encrypt_value(key, "张三", table="customers", column="address", row_id=ROW,
                          cls="confidential")
    where = {"table": "customers", "column": "address", "row_id": ROW}
    with pytest.raises(FieldCryptoError):
        decrypt_value(new_key(), token, **where)
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(FieldCryptoError):
        decrypt_value(key, flipped, **where)
    with pytest.raises(FieldCryptoError, match="truncated"):
        decrypt_value(key, token[:12], **where)
    with pytest.raises(FieldCryptoError, match="not a field ciphertext"):
        decrypt_value(key, "plain text", **where)


def test_data_key_wrapping_is_bound_to_customer_class_and_version() -> None:
    class_key, dek = new_key(), new_key()
    wrapped = wrap_data_key(class_key, dek, customer_id=ROW, cls="secret", version=2)
    assert unwrap_data_key(class_key, wrapped, customer_id=ROW, cls="secret", version=2) == dek
    for other in ({"customer_id": OTHER_ROW, "cls": "secret", "version": 2},
                  {"customer_id": ROW, "cls": "confidential", "version": 2},
                  {"customer_id": ROW, "cls": "secret", "version": 1}):
        with pytest.raises(FieldCryptoError):
            unwrap_data_key(class_key, wrapped, **other)  # type: ignore[arg-type]


def test_box_wrapping_reaches_only_its_recipient_and_label() -> None:
    alice, mallory = BoxKey.generate(), BoxKey.generate()
    key = new_key()
    grant = wrap_to(alice.public_hex(), key, label="class:confidential:v1")
    assert alice.unwrap(grant, label="class:confidential:v1") == key
    assert BoxKey.from_hex(alice.private_hex()).unwrap(grant, label="class:confidential:v1") == key
    with pytest.raises(FieldCryptoError):
        mallory.unwrap(grant, label="class:confidential:v1")
    with pytest.raises(FieldCryptoError):
        alice.unwrap(grant, label="class:secret:v1")


def test_local_wrap_needs_the_root_key() -> None:
    root, key = new_key(), new_key()
    wrapped = wrap_local(root, key, label="class:secret:v1")
    assert unwrap_local(root, wrapped, label="class:secret:v1") == key
    with pytest.raises(FieldCryptoError):
        unwrap_local(new_key(), wrapped, label="class:secret:v1")


def test_blind_index_is_keyed_per_column_and_truncated() -> None:
    root = new_key()
    mobile = index_key(root, "customers", "mobile")
    assert blind_index(mobile, "+8613812345678") == blind_index(mobile, "+8613812345678")
    assert len(blind_index(mobile, "+8613812345678")) == 4  # 16 bits
    assert index_key(root, "customers", "id_number") != mobile
    assert index_key(new_key(), "customers", "mobile") != mobile
    # Truncation makes collisions expected: among 5,000 values most indexes are shared.
    seen = {blind_index(mobile, f"+861380000{i:04d}") for i in range(5000)}
    assert 4000 < len(seen) < 5000
