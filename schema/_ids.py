"""Row identifiers: UUIDv7, time-ordered and safe to create offline on any node."""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """Return a new UUIDv7 as a canonical lowercase string."""
    return str(uuid_utils.uuid7())
