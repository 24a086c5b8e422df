"""Request and response bodies of device enrolment and revocation (server/api/devices.py).
Keys are raw 32-byte public keys as lowercase hex, as everywhere in crypto/."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from msgspec import Meta, Struct

DeviceName = Annotated[str, Meta(min_length=1, max_length=100)]
HexKey = Annotated[str, Meta(max_length=128)]
"""Checked by the service (64 hex digits), so a bad key is one clear 422 line."""
Reason = Annotated[str, Meta(max_length=300)]


class DeviceEnrol(Struct, forbid_unknown_fields=True, kw_only=True):
    """A device's name and its two public keys: Ed25519 (signs sync requests) and X25519
    (field-key grants are wrapped to it)."""

    name: DeviceName
    public_key: HexKey
    box_public_key: HexKey


class Grant(Struct, kw_only=True):
    """A field key wrapped to the device's X25519 key (`crypto.wrap_to`); `label` is
    `class:<class>:<version>` or `index`, bound into the wrapping."""

    label: str
    wrapped: str


class DeviceEnrolled(Struct, kw_only=True):
    """What the device keeps: its node id, whom it syncs with, and its key grants."""

    node_id: str
    name: str
    branch: str | None
    user_id: str
    role: str
    enrolled_at: datetime
    upstream_node_id: str
    upstream_public_key: str
    hq_node_id: str
    grants: list[Grant]
    index_grant: Grant | None
    protocol: int
    schema: int


class DeviceOut(Struct, kw_only=True):
    """A device in this node's registry."""

    id: str
    name: str
    branch: str | None
    user_id: str | None
    public_key: str
    enrolled_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


class DevicePage(Struct, kw_only=True):
    items: list[DeviceOut]
    next_cursor: str | None


class DeviceRevoke(Struct, forbid_unknown_fields=True, kw_only=True):
    """Why the device is revoked (kept in the registry and the audit log)."""

    reason: Reason = ""
