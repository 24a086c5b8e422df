"""Replacing the database key."""

from __future__ import annotations

from pathlib import Path

from crypto import generate_db_key, write_key_file
from schema import Database
from server.config import Settings
from server.errors import NodeError


async def rekey_node(settings: Settings) -> str | None:
    """Re-encrypt under a fresh key. Returns the new key in hex when there is no key
    file to write it to (the key came from BRANCHLINE_DB_KEY), else None.

    The new key is written beside the key file first and swapped in after the
    database accepted it, so a crash leaves either key usable (`.new` is tried).
    """
    if settings.node.database_url is not None:
        raise NodeError("a PostgreSQL node has no database key")
    new_key = generate_db_key()
    key_file = Path(settings.node.key_file) if settings.node.key_file else None
    use_file = key_file is not None and not settings.key_from_env
    staged = key_file.with_name(key_file.name + ".new") if key_file else None
    if use_file and staged is not None:
        write_key_file(staged, new_key)
    db = await Database.open(settings.database_url, settings.db_key, readers=1)
    try:
        await db.rekey(new_key)
    finally:
        await db.dispose()
    if use_file and staged is not None and key_file is not None:
        staged.replace(key_file)
        return None
    return new_key.hex()

