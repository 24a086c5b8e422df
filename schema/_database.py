"""Opening the node's database: SQLCipher-encrypted SQLite, or PostgreSQL.

SQLite gets one writer (a pool of exactly one connection that starts every
transaction with `BEGIN IMMEDIATE`) and a small pool of read-only readers, so reads
run concurrently under WAL while writes never fight over the lock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import sqlcipher3
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from crypto import sqlcipher_key_pragma
from schema._errors import StorageError, WrongKeyError
from schema._uow import UnitOfWork
from schema._vault import Vault

Kind = Literal["sqlite", "postgresql"]

_SQLITE_PRAGMAS = (
    "PRAGMA cipher_log_level = NONE",
    # Page MAC: HMAC-SHA256 (SHA-NI on current CPUs) instead of the default SHA-512 cuts
    # SQLCipher's write overhead from about 20 % to 13 % (bench/RESULTS.md); a 256-bit
    # MAC per page is ample. It must be the same on every open of the file.
    "PRAGMA cipher_hmac_algorithm = HMAC_SHA256",
    "PRAGMA temp_store = MEMORY",  # temp tables and sorts never touch disk unencrypted
    "PRAGMA busy_timeout = 10000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA secure_delete = ON",  # freed pages are zeroed: erased values leave no trace
)


# Unescaped non-ASCII keeps stored JSON searchable by the text people type. One
# encoder for every value: `json.dumps` with options builds a new one per call.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


def _json(value: Any) -> str:
    return _JSON_ENCODER.encode(value)


# sqlcipher3 (a pysqlite3 fork) binds only exact int, float, str and bytearray values
# directly; for any other (None, bool, bytes) it probes the value for `__conform__`
# and the protocol for `__adapt__`, building and discarding an AttributeError with a
# formatted message each time: about 0.8 µs a value, more than SQLite's own work for
# a customer row with forty NULL columns (bench/RESULTS.md). With an adapter
# registered, the probe is one dictionary look-up and a call in C. Each returns what
# the driver would bind anyway: NULL, 0 or 1, the blob. The registry is the module's,
# so this holds for every connection in the process.
_NOTHING: dict[Any, Any] = {}
sqlcipher3.register_adapter(type(None), _NOTHING.get)  # get(None) is None: bound NULL
sqlcipher3.register_adapter(bool, int)
sqlcipher3.register_adapter(bytes, bytes)  # bytes(b) is b itself: bound as a blob


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an encrypted SQLite file."""
    return f"sqlite+aiosqlite:///{path}"


def _connector(path: str, key: bytes, *, readonly: bool) -> Callable[[], Any]:
    def connect() -> Any:
        conn = sqlcipher3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(_SQLITE_PRAGMAS[0])
            conn.execute(sqlcipher_key_pragma(key))
            for pragma in _SQLITE_PRAGMAS[1:]:
                conn.execute(pragma)
            # The first real read is where a wrong key shows.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if readonly:
                conn.execute("PRAGMA query_only = ON")
            else:
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlcipher3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc):
                raise WrongKeyError(
                    "the database key does not open this database (wrong key or not a "
                    "Branchline database)"
                ) from None
            raise StorageError(f"cannot open database: {exc}") from None
        return conn

    return connect


def _sqlite_engine(url: str, path: str, key: bytes, *, readonly: bool, size: int) -> AsyncEngine:
    connect = _connector(path, key, readonly=readonly)

    async def creator() -> aiosqlite.Connection:
        conn = aiosqlite.Connection(connect, 64)
        try:
            return await conn
        except BaseException:
            # aiosqlite stops its worker thread on a failed connect and reports back to
            # this loop; wait for it so it never calls into a loop that has closed.
            await asyncio.to_thread(conn._thread.join, 5)
            raise

    engine = create_async_engine(
        url, async_creator=creator, poolclass=AsyncAdaptedQueuePool, json_serializer=_json,
        pool_size=size, max_overflow=0, pool_timeout=60,
    )
    begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """The node's database: a writer for units of work and readers for queries."""

    def __init__(self, kind: Kind, writer: AsyncEngine, reader: AsyncEngine) -> None:
        self.kind: Kind = kind
        self.hq_authority = True
        self.vault: Vault | None = None
        """The field keys this node holds (set when the node opens)."""
        """Whether local writes to HQ-authoritative fields take effect (HQ) or become
        change requests (every other node)."""
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, url: str, key: bytes | None, *, readers: int = 4) -> Database:
        """Open (creating an SQLite file if absent) and check the key or connection."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StorageError(f"invalid database URL {url!r}") from None
        if parsed.drivername == "sqlite+aiosqlite":
            if key is None:
                raise StorageError("an SQLite database needs a key")
            if not parsed.database:
                raise StorageError("an SQLite database needs a file path")
            path = parsed.database
            if not Path(path).parent.is_dir():
                raise StorageError(f"directory {Path(path).parent} does not exist")
            writer = _sqlite_engine(url, path, key, readonly=False, size=1)
            reader = _sqlite_engine(url, path, key, readonly=True, size=readers)
            db = cls("sqlite", writer, reader)
        elif parsed.drivername == "postgresql+asyncpg":
            engine = create_async_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=True,
                                         json_serializer=_json)
            db = cls("postgresql", engine, engine)
        else:
            raise StorageError(
                f"unsupported database {parsed.drivername!r}: use an SQLite data directory "
                "or postgresql+asyncpg://"
            )
        await db._check()
        return db

    async def _check(self) -> None:
        try:
            # The writer first: it switches the file to WAL before any reader opens it.
            async with self._writer.connect() as conn:
                await conn.execute(text("SELECT 1"))
            async with self._reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (WrongKeyError, StorageError):
            await self.dispose()
            raise
        except (OSError, DBAPIError, sqlcipher3.Error) as exc:
            await self.dispose()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StorageError(f"cannot connect to the database: {reason}") from None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries, inside a read transaction."""
        async with self._reader.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def write(self, node_id: str, actor_id: str | None) -> AsyncIterator[UnitOfWork]:
        """A unit of work: the only way to change replicated data.

        Commits when the block exits normally, rolls back when it raises.
        """
        async with self._writer.connect() as conn, conn.begin():
            uow = UnitOfWork(conn, node_id=node_id, actor_id=actor_id,
                             hq_authority=self.hq_authority, vault=self.vault)
            await uow.start()
            yield uow
            await uow.finish()

    @asynccontextmanager
    async def admin(self) -> AsyncIterator[AsyncConnection]:
        """The write connection for node bookkeeping and migrations, not replicated data."""
        async with self._writer.connect() as conn, conn.begin():
            yield conn

    async def purge_freed(self) -> None:
        """Leave no old page images behind after an erasure: freed pages are already
        zeroed (secure_delete); this moves the WAL into the file and truncates it.
        (PostgreSQL: VACUUM reclaims dead tuples; the erased values are ciphertext whose
        data keys no longer exist.)"""
        if self.kind != "sqlite":
            return
        async with self._writer.connect() as conn:
            # Outside any transaction (SQLAlchemy would begin one); readers still inside
            # theirs make SQLite checkpoint what it can and report busy, not fail.
            driver: Any = (await conn.get_raw_connection()).driver_connection
            cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await cursor.fetchall()
            await cursor.close()

    async def migrate(self) -> None:
        """Bring the schema up to the newest migration."""
        from schema._migrate import upgrade

        async with self._writer.connect() as conn:
            await conn.run_sync(upgrade)
            await conn.commit()

    async def rekey(self, new_key: bytes) -> None:
        """Re-encrypt an SQLite database under `new_key` (WAL checkpointed first)."""
        if self.kind != "sqlite":
            raise StorageError("only SQLite databases have a database key")
        await self._reader.dispose()
        async with self._writer.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            for statement in ("PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA journal_mode = DELETE",
                              sqlcipher_key_pragma(new_key, rekey=True),
                              "PRAGMA journal_mode = WAL"):
                # Each result is read to the end and closed: an open statement keeps a
                # transaction alive and SQLite refuses to leave WAL mode inside one.
                cursor = await driver.execute(statement)
                await cursor.fetchall()
                await cursor.close()
            await conn.invalidate()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
