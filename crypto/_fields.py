"""Field-level envelope encryption: values, data keys, class keys, blind indexes.

Three layers (see crypto/THREATS.md):

* a **class key** per sensitivity class (`confidential`, `secret`) and version, random
  256 bits; HQ holds it wrapped by its root key, other nodes hold it wrapped to their
  X25519 key (`wrap_to` / `unwrap_from`), only if their users' roles may read the class;
* a **data key** per customer and class, random 256 bits, wrapped by a class key
  version (`wrap_data_key`); it replicates with the customer. Destroying it erases the
  customer's values of that class on every replica (crypto-shredding); rotating a class
  key rewraps data keys and never touches values;
* **values**: AES-256-GCM under the data key with a random 96-bit nonce. The associated
  data binds the ciphertext to format version, table, column and row id, so a value
  copied to another row or column does not decrypt.

Value token layout (text, so it fits the column it replaces): `"\u00a7"` + class letter
+ `base64url(version byte ‖ nonce ‖ ciphertext+tag)`. The marker `§` cannot start a
plaintext we store in these columns (phones, ids, e-mail, addresses, dates are validated
first). The class letter (`c` confidential, `s` secret, `k` credit) names the data key
that opens the value, so a field HQ moves to another class stays readable while it is
re-encrypted, and the re-encryption job finds what is left with a prefix match; the
associated data binds the class too, so the letter cannot be changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto._errors import CryptoError

FIELD_VERSION = 2
"""Version byte of a value token (2: the class letter is bound)."""
WRAP_VERSION = 1
"""Version byte of a wrapped key (data key, local wrap, X25519 grant)."""
MARKER = "\u00a7"
CLASS_CODES = {"confidential": "c", "secret": "s", "credit": "k"}
"""The letter after the marker that names a token's key class."""
_CLASS_OF = {v: k for k, v in CLASS_CODES.items()}
KEY_BYTES = 32
_NONCE = 12


class FieldCryptoError(CryptoError):
    """A ciphertext is damaged, belongs elsewhere, or its key is missing or wrong."""


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise FieldCryptoError("not a field ciphertext") from None


def is_token(value: object) -> bool:
    """Whether a stored value is a field ciphertext."""
    return isinstance(value, str) and value.startswith(MARKER)


def token_class(token: str) -> str | None:
    """The key class a token was sealed under (None if it names none we know)."""
    return _CLASS_OF.get(token[1:2]) if is_token(token) else None


def _value_aad(table: str, column: str, row_id: str, cls: str) -> bytes:
    return f"branchline-field|v{FIELD_VERSION}|{cls}|{table}|{column}|{row_id}".encode()


def encrypt_value(data_key: bytes, plaintext: str, *, table: str, column: str,
                  row_id: str, cls: str) -> str:
    """Seal one value under a customer's data key of class `cls`, bound to its table,
    column, row and class."""
    code = CLASS_CODES.get(cls)
    if code is None:
        raise FieldCryptoError(f"unknown key class {cls!r}")
    nonce = os.urandom(_NONCE)
    body = AESGCM(data_key).encrypt(nonce, plaintext.encode(),
                                    _value_aad(table, column, row_id, cls))
    return MARKER + code + _b64(bytes([FIELD_VERSION]) + nonce + body)


def decrypt_value(data_key: bytes, token: str, *, table: str, column: str,
                  row_id: str) -> str:
    """Open a value sealed by `encrypt_value` for exactly this table, column and row
    (with the data key of the class the token names: `token_class`)."""
    cls = token_class(token)
    if cls is None:
        raise FieldCryptoError("not a field ciphertext")
    raw = _unb64(token[2:])
    if len(raw) < 1 + _NONCE + 16 or raw[0] != FIELD_VERSION:
        raise FieldCryptoError("unknown field ciphertext version or truncated value")
    try:
        return AESGCM(data_key).decrypt(raw[1:1 + _NONCE], raw[1 + _NONCE:],
                                        _value_aad(table, column, row_id, cls)).decode()
    except InvalidTag:
        raise FieldCryptoError(
            f"{table}.{column} of {row_id} does not decrypt: wrong key, or the value "
            "was moved from another row or column") from None


def _wrap(kek: bytes, key: bytes, aad: bytes) -> str:
    nonce = os.urandom(_NONCE)
    return _b64(bytes([WRAP_VERSION]) + nonce + AESGCM(kek).encrypt(nonce, key, aad))


def _unwrap(kek: bytes, wrapped: str, aad: bytes, what: str) -> bytes:
    raw = _unb64(wrapped)
    if len(raw) < 1 + _NONCE + 16 or raw[0] != WRAP_VERSION:
        raise FieldCryptoError(f"{what}: unknown format or truncated")
    try:
        return AESGCM(kek).decrypt(raw[1:1 + _NONCE], raw[1 + _NONCE:], aad)
    except InvalidTag:
        raise FieldCryptoError(f"{what} does not unwrap with this key") from None


def wrap_data_key(class_key: bytes, data_key: bytes, *, customer_id: str, cls: str,
                  version: int) -> str:
    """A customer's data key wrapped by one version of its class key."""
    return _wrap(class_key, data_key, f"branchline-dek|{customer_id}|{cls}|{version}".encode())


def unwrap_data_key(class_key: bytes, wrapped: str, *, customer_id: str, cls: str,
                    version: int) -> bytes:
    """The data key of `customer_id` for `cls` (see `wrap_data_key`)."""
    return _unwrap(class_key, wrapped, f"branchline-dek|{customer_id}|{cls}|{version}".encode(),
                   f"data key of {customer_id} ({cls})")


def wrap_local(root_key: bytes, key: bytes, *, label: str) -> str:
    """A key wrapped by this node's root key (kept outside the data directory)."""
    kek = _derive(root_key, b"branchline-local-wrap")
    return _wrap(kek, key, f"branchline-local|{label}".encode())


def unwrap_local(root_key: bytes, wrapped: str, *, label: str) -> bytes:
    """A key wrapped by `wrap_local` under the same root key and label."""
    kek = _derive(root_key, b"branchline-local-wrap")
    return _unwrap(kek, wrapped, f"branchline-local|{label}".encode(), label)


def _derive(secret: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(
        secret)


class BoxKey:
    """A node's X25519 key pair: other nodes wrap class keys to its public half."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> BoxKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_hex(cls, text: str) -> BoxKey:
        try:
            return cls(X25519PrivateKey.from_private_bytes(bytes.fromhex(text)))
        except ValueError:
            raise FieldCryptoError("malformed X25519 private key") from None

    def private_hex(self) -> str:
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()).hex()

    def public_hex(self) -> str:
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    def exchange(self, public: bytes) -> bytes:
        """X25519 shared secret with another party's public key (raw 32 bytes)."""
        return self._private.exchange(X25519PublicKey.from_public_bytes(public))

    def unwrap(self, wrapped: str, *, label: str) -> bytes:
        """Open a key sealed to this node by `wrap_to`."""
        raw = _unb64(wrapped)
        if len(raw) < 1 + 32 + _NONCE + 16 or raw[0] != WRAP_VERSION:
            raise FieldCryptoError(f"{label}: unknown format or truncated")
        ephemeral = raw[1:33]
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        kek = _derive(shared, b"branchline-box|" + label.encode(),
                      salt=ephemeral + bytes.fromhex(self.public_hex()))
        return _unwrap(kek, _b64(bytes([WRAP_VERSION]) + raw[33:]),
                       f"branchline-box|{label}".encode(), label)


def wrap_to(public_hex: str, key: bytes, *, label: str) -> str:
    """Seal `key` to a node's X25519 public key (ephemeral ECDH + HKDF + AES-GCM); the
    label (e.g. `class:confidential:v1`) is bound, so a grant cannot be relabelled."""
    try:
        recipient = X25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
    except ValueError:
        raise FieldCryptoError("malformed X25519 public key") from None
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
    kek = _derive(ephemeral.exchange(recipient), b"branchline-box|" + label.encode(),
                  salt=eph_pub + bytes.fromhex(public_hex))
    inner = _unb64(_wrap(kek, key, f"branchline-box|{label}".encode()))
    return _b64(bytes([WRAP_VERSION]) + eph_pub + inner[1:])


INDEX_BITS = 16
"""Blind-index width. CipherSweet advises expected collisions (rows / 2**bits) between 2
and sqrt(rows): at 16 bits a lookup among 100,000 archives returns about 2 candidates
(among 1,000,000, about 15), which the holder of the key then confirms by decrypting;
the index alone does not single out a value."""


def blind_index(index_key: bytes, normalised: str, *, bits: int = INDEX_BITS) -> str:
    """A keyed HMAC-SHA256 of a normalised value truncated to `bits`, as hex."""
    digest = int.from_bytes(hmac.new(index_key, normalised.encode(), hashlib.sha256)
                            .digest()[:8], "big")
    return format(digest >> (64 - bits), f"0{(bits + 3) // 4}x")


def index_key(root: bytes, table: str, column: str) -> bytes:
    """The blind-index key of one column, derived from the index root key."""
    return _derive(root, f"branchline-bidx|{table}|{column}".encode())
