"""Bearer tokens: a small msgspec payload signed with HMAC-SHA256 by the node."""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec

from crypto._errors import TokenError

TOKEN_VERSION = 1


class TokenClaims(msgspec.Struct, array_like=True, frozen=True):
    """What a token asserts: who, which credential generation, until when."""

    v: int
    user_id: str
    generation: int
    expires_at: int
    """Unix seconds."""


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(TokenClaims)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks tokens with one node-local secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise TokenError("token secret must be at least 32 bytes")
        self._secret = secret

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def issue(self, user_id: str, generation: int, expires_at: int) -> str:
        """A signed token for `user_id`, valid until `expires_at` (Unix seconds)."""
        body = _enc.encode(TokenClaims(TOKEN_VERSION, user_id, generation, expires_at))
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def verify(self, token: str, now: int) -> TokenClaims:
        """The claims of a genuine, unexpired token; `TokenError` otherwise."""
        try:
            body_text, mac_text = token.split(".")
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, UnicodeEncodeError):
            raise TokenError("malformed token") from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise TokenError("invalid token")
        try:
            claims = _dec.decode(body)
        except msgspec.DecodeError:
            raise TokenError("malformed token") from None
        if claims.v != TOKEN_VERSION:
            raise TokenError("unsupported token version")
        if claims.expires_at <= now:
            raise TokenError("token expired")
        return claims
