"""Node identity: an Ed25519 key pair per node; signed sync requests and responses."""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto._errors import CryptoError


class SignatureError(CryptoError):
    """A signature is missing, malformed or does not verify."""


class NodeKey:
    """A node's private signing key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_hex(cls, text: str) -> NodeKey:
        try:
            return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text)))
        except ValueError:
            raise CryptoError("malformed node key") from None

    def private_hex(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()).hex()

    def public_hex(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()

    def sign(self, message: bytes) -> str:
        """A base64 signature of `message`."""
        return base64.b64encode(self._private.sign(message)).decode()


def verify(public_hex: str, signature: str, message: bytes) -> None:
    """Raise `SignatureError` unless `signature` is `public_hex`'s over `message`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("signature does not verify") from exc


def request_message(method: str, path: str, node: str, millis: int, body: bytes) -> bytes:
    """What a sync request's signature covers: method, path, node, time and body."""
    digest = hashlib.sha256(body).hexdigest()
    return f"branchline-sync-v1\n{method.upper()}\n{path}\n{node}\n{millis}\n{digest}".encode()


def response_message(status: int, node: str, millis: int, body: bytes) -> bytes:
    """What a sync response's signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return f"branchline-sync-v1-response\n{status}\n{node}\n{millis}\n{digest}".encode()
