"""Keys and cryptography: database keys, password hashing, signed tokens, field
encryption (envelope keys, X25519 grants, blind indexes).

Pure: no web framework, no database. Everything uses `cryptography`, `argon2-cffi`
or the standard library's HMAC.
"""

from crypto._bundle import (
    BUNDLE_VERSION,
    BundleError,
    BundleWriter,
    open_bundle,
    read_header,
    verify_bundle,
)
from crypto._dbkey import (
    KEY_BYTES,
    derive_root_key,
    generate_db_key,
    parse_hex_key,
    read_key_file,
    sqlcipher_key_pragma,
    write_key_file,
)
from crypto._errors import CryptoError, KeyFileError, TokenError
from crypto._fields import (
    CLASS_CODES,
    INDEX_BITS,
    MARKER,
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
    "BUNDLE_VERSION",
    "CLASS_CODES",
    "INDEX_BITS",
    "KEY_BYTES",
    "MARKER",
    "BoxKey",
    "BundleError",
    "BundleWriter",
    "CryptoError",
    "FieldCryptoError",
    "KeyFileError",
    "NodeKey",
    "SealError",
    "SignatureError",
    "TokenClaims",
    "TokenError",
    "TokenSigner",
    "blind_index",
    "decrypt_value",
    "derive_root_key",
    "dummy_hash",
    "encrypt_value",
    "generate_db_key",
    "hash_password",
    "index_key",
    "is_token",
    "new_key",
    "new_passphrase",
    "open_bundle",
    "parse_hex_key",
    "read_header",
    "read_key_file",
    "request_message",
    "response_message",
    "seal",
    "sqlcipher_key_pragma",
    "token_class",
    "unseal",
    "unwrap_data_key",
    "unwrap_local",
    "verify",
    "verify_bundle",
    "verify_password",
    "wrap_data_key",
    "wrap_local",
    "wrap_to",
    "write_key_file",
]
