"""Sealed bundle streams: encrypted to the recipient, signed by the sender, in chunks.

Layout of one sealed stream (sync/SPEC.md §Bundles):

    "BLBUNDLE" | version u8 | header length u32 | header | ephemeral X25519 public (32)
    | chunk* | Ed25519 signature (64)
    chunk = u32 (bit 31: final chunk; bits 0-30: ciphertext length) | ciphertext

* The header (msgpack, made by the caller) is readable without a key: it says who sent
  the bundle to whom, so a reader can refuse a foreign or unknown bundle before doing
  any cryptography.
* The content key comes from an ephemeral X25519 exchange with the recipient's public
  key (HKDF-SHA256, salt = ephemeral ‖ recipient public key, info = a digest of the
  header): only the recipient opens it, and the key belongs to this header only.
* Chunks are AES-256-GCM with the STREAM construction: the nonce is the chunk counter
  and a final-chunk flag, so chunks cannot be reordered, dropped or cut off at a chunk
  boundary without failing. A bundle is never held whole in memory.
* The signature covers everything before it (header with sender and recipient ids,
  ephemeral key, every ciphertext byte). Readers verify it in a first pass and decrypt
  only after it verified.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto._errors import CryptoError
from crypto._fields import BoxKey
from crypto._signing import NodeKey, SignatureError, verify

BUNDLE_MAGIC = b"BLBUNDLE"
BUNDLE_VERSION = 1
CHUNK = 64 * 1024
_FINAL = 0x8000_0000
_SIG = 64
_MAX_HEADER = 64 * 1024


class BundleError(CryptoError):
    """A bundle is damaged, truncated, forged, or not for this node."""


def _key(shared: bytes, eph_pub: bytes, recipient_pub: bytes, header: bytes) -> bytes:
    info = b"branchline-bundle|v1|" + hashlib.sha256(header).digest()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph_pub + recipient_pub,
                info=info).derive(shared)


def _nonce(counter: int, final: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class BundleWriter:
    """Writes one sealed stream to `out`; `write` plaintext, then `close` (final chunk
    and signature). Holds at most one chunk of plaintext."""

    def __init__(self, out: BinaryIO, header: bytes, *, sender: NodeKey,
                 recipient_box_public_hex: str) -> None:
        if len(header) > _MAX_HEADER:
            raise BundleError("bundle header too large")
        try:
            recipient = bytes.fromhex(recipient_box_public_hex)
            peer = X25519PublicKey.from_public_bytes(recipient)
        except ValueError:
            raise BundleError("the recipient has no valid X25519 key") from None
        ephemeral = X25519PrivateKey.generate()
        eph_pub = ephemeral.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
        self._aead = AESGCM(_key(ephemeral.exchange(peer), eph_pub, recipient, header))
        self._out, self._sender = out, sender
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        self.bytes_written = 0
        self._emit(BUNDLE_MAGIC + bytes([BUNDLE_VERSION]) + struct.pack(">I", len(header))
                   + header + eph_pub)

    def _emit(self, data: bytes) -> None:
        self._hash.update(data)
        self._out.write(data)
        self.bytes_written += len(data)

    def _chunk(self, plain: bytes, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._counter, final), plain, None)
        self._counter += 1
        self._emit(struct.pack(">I", len(sealed) | (_FINAL if final else 0)) + sealed)

    def write(self, data: bytes) -> None:
        """Add plaintext to the stream."""
        self._buffer += data
        while len(self._buffer) > CHUNK:
            self._chunk(bytes(self._buffer[:CHUNK]), False)
            del self._buffer[:CHUNK]

    def close(self) -> None:
        """Seal the last chunk and sign the whole stream."""
        if self._closed:
            return
        self._chunk(bytes(self._buffer), True)
        self._buffer.clear()
        signature = base64.b64decode(self._sender.sign(
            b"branchline-bundle-sig|v1|" + self._hash.digest()))
        self._out.write(signature)
        self.bytes_written += len(signature)
        self._closed = True


def read_header(f: BinaryIO) -> bytes:
    """The header of a sealed stream (not yet authenticated: use it only to decide
    whether to go on, and verify before trusting anything else)."""
    f.seek(0)
    lead = f.read(len(BUNDLE_MAGIC) + 5)
    if len(lead) < len(BUNDLE_MAGIC) + 5 or not lead.startswith(BUNDLE_MAGIC):
        raise BundleError("not a Branchline bundle")
    if lead[len(BUNDLE_MAGIC)] != BUNDLE_VERSION:
        raise BundleError(f"bundle format version {lead[len(BUNDLE_MAGIC)]} is not supported")
    (size,) = struct.unpack(">I", lead[-4:])
    if size > _MAX_HEADER:
        raise BundleError("bundle header too large")
    header = f.read(size)
    if len(header) != size:
        raise BundleError("bundle is truncated (in its header)")
    return header


def _chunks(f: BinaryIO, end: int) -> Iterator[tuple[bytes, bool]]:
    """(ciphertext, final) for every chunk up to `end` (where the signature starts)."""
    while True:
        if f.tell() + 4 > end:
            raise BundleError("bundle is truncated (no final chunk)")
        (word,) = struct.unpack(">I", f.read(4))
        size, final = word & ~_FINAL, bool(word & _FINAL)
        if size > CHUNK + 16 or f.tell() + size > end:
            raise BundleError("bundle is truncated or damaged (chunk length)")
        yield f.read(size), final
        if final:
            if f.tell() != end:
                raise BundleError("bundle has data after its final chunk")
            return


def verify_bundle(f: BinaryIO, sender_public_hex: str) -> None:
    """Check the sender's signature over the whole stream (first pass, no decryption)."""
    f.seek(0, 2)
    total = f.tell()
    if total < len(BUNDLE_MAGIC) + 5 + 32 + 4 + _SIG:
        raise BundleError("bundle is truncated")
    f.seek(0)
    digest = hashlib.sha256()
    left = total - _SIG
    while left:
        block = f.read(min(left, 1 << 20))
        if not block:
            raise BundleError("bundle is truncated")
        digest.update(block)
        left -= len(block)
    signature = f.read(_SIG)
    try:
        verify(sender_public_hex, base64.b64encode(signature).decode(),
               b"branchline-bundle-sig|v1|" + digest.digest())
    except SignatureError:
        raise BundleError("bundle signature does not verify: altered, truncated, or not "
                          "from its sender") from None


def open_bundle(f: BinaryIO, box: BoxKey) -> Iterator[bytes]:
    """Decrypt a verified stream chunk by chunk (second pass)."""
    header = read_header(f)
    eph_pub = f.read(32)
    f.seek(0, 2)
    end = f.tell() - _SIG
    f.seek(len(BUNDLE_MAGIC) + 5 + len(header) + 32)
    try:
        shared = box.exchange(eph_pub)
    except ValueError:
        raise BundleError("bundle key exchange failed") from None
    aead = AESGCM(_key(shared, eph_pub, bytes.fromhex(box.public_hex()), header))
    for counter, (sealed, final) in enumerate(_chunks(f, end)):
        try:
            yield aead.decrypt(_nonce(counter, final), sealed, None)
        except InvalidTag:
            raise BundleError("bundle does not decrypt: not for this node's key, or "
                              "damaged") from None
