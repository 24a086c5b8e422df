"""Enrolment files: what a new branch needs to join, sealed with a one-time passphrase.

The file names the branch's identity (node id and its private signing key, created
at HQ), headquarters' identity and URL. Only someone with the passphrase opens it;
any change to the file makes it fail to open.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from branches._errors import EnrolmentError
from crypto import CryptoError, seal, unseal

ENROLMENT_FORMAT = 1
VALID_FOR = timedelta(days=14)


class Enrolment(msgspec.Struct, kw_only=True):
    """The sealed contents of an enrolment file."""

    format: int = ENROLMENT_FORMAT
    node_id: str
    node_key: str
    kind: str = "branch"
    branch_code: str
    branch_name: str
    hq_node_id: str
    hq_public_key: str
    hq_url: str | None
    expires_at: datetime
    box_key: str = ""
    """The branch's X25519 private key (hex), made at HQ; field-key grants are wrapped
    to its public half."""
    hq_box_public_key: str = ""
    """HQ's X25519 public key (hex): bundles to HQ are encrypted to it."""
    grants: dict[str, str] = {}
    """Field keys for the branch (`class:<class>:<version>`, `index`), wrapped to
    `box_key` (server/keys.py)."""


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Enrolment)


def write_enrolment(path: Path, enrolment: Enrolment, passphrase: str) -> None:
    """Seal `enrolment` into `path` (mode 0600)."""
    data = seal(_enc.encode(enrolment), passphrase)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def new_expiry() -> datetime:
    return datetime.now(UTC) + VALID_FOR


def read_enrolment(path: Path, passphrase: str, now: datetime | None = None) -> Enrolment:
    """Open an enrolment file; `EnrolmentError` with a one-line reason otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnrolmentError(f"cannot read {path}: {exc.strerror}") from None
    try:
        enrolment = _dec.decode(unseal(data, passphrase))
    except CryptoError as exc:
        raise EnrolmentError(f"{path}: {exc}") from None
    except msgspec.DecodeError:
        raise EnrolmentError(f"{path}: not an enrolment file") from None
    if enrolment.format != ENROLMENT_FORMAT:
        raise EnrolmentError(f"{path}: enrolment format {enrolment.format} is not supported")
    if (now or datetime.now(UTC)) > enrolment.expires_at:
        raise EnrolmentError(f"{path}: enrolment expired at {enrolment.expires_at:%Y-%m-%d}; "
                             "ask headquarters for a new one")
    return enrolment
