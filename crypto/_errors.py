"""Errors of the crypto package."""

from __future__ import annotations


class CryptoError(Exception):
    """Base error of the `crypto` package."""


class KeyFileError(CryptoError):
    """A key file is missing, unreadable, malformed or too widely readable."""


class TokenError(CryptoError):
    """A bearer token is malformed, forged or expired."""
