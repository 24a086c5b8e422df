"""Keys and cryptography: database keys, password hashing, signed tokens.

Pure: no web framework, no database. Everything uses `cryptography`, `argon2-cffi`
or the standard library's HMAC.
"""

from crypto._dbkey import (
    KEY_BYTES,
    generate_db_key,
    parse_hex_key,
    read_key_file,
    sqlcipher_key_pragma,
    write_key_file,
)
from crypto._errors import CryptoError, KeyFileError, TokenError
from crypto._passwords import dummy_hash, hash_password, verify_password
from crypto._sealing import SealError, new_passphrase, seal, unseal
from crypto._signing import (
    NodeKey,
    SignatureError,
    request_message,
    response_message,
    verify,
)
from crypto._tokens import TokenClaims, TokenSigner

__all__ = [
    "KEY_BYTES",
    "CryptoError",
    "KeyFileError",
    "NodeKey",
    "SealError",
    "SignatureError",
    "TokenClaims",
    "TokenError",
    "TokenSigner",
    "dummy_hash",
    "generate_db_key",
    "hash_password",
    "new_passphrase",
    "parse_hex_key",
    "read_key_file",
    "request_message",
    "response_message",
    "seal",
    "sqlcipher_key_pragma",
    "unseal",
    "verify",
    "verify_password",
    "write_key_file",
]
