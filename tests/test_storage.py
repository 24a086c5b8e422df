"""The unit of work, encrypted storage and migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from crypto import generate_db_key
from schema import (
    TABLES,
    Database,
    StorageError,
    WrongKeyError,
    metadata,
    sqlite_url,
    sync_cells,
    sync_members,
    sync_rows,
)
from schema._entities import LIST_FILTERS
from schema._migrate import HEAD, current_revision, script_head
from server.node import Node

customers = TABLES["customers"]
history = TABLES["field_history"]


async def _cells(node: Node, row_id: str) -> dict[str, tuple[int, str, int]]:
    async with node.db.read() as conn:
        rows = await conn.execute(select(sync_cells).where(sync_cells.c.row_id == row_id))
        return {r.col: (r.clock, r.origin, r.seq) for r in rows}


async def _stamp(node: Node, row_id: str) -> Any:
    async with node.db.read() as conn:
        return (await conn.execute(select(sync_rows).where(sync_rows.c.row_id == row_id))).one()


async def test_insert_stamps_the_row_once_not_every_cell(node: Node) -> None:
    async with node.db.write(node.node_id, None) as uow:
        row = await uow.insert("customers", {"name": "张三", "customer_type": "person",
                                             "source": "call", "registered_at": _now(),
                                             "tags": ["会员"]})
    stamp = await _stamp(node, row["id"])
    assert (stamp.cl, stamp.origin, stamp.seq) == (1, node.node_id, stamp.stamp_seq)
    assert await _cells(node, row["id"]) == {}  # every cell carries the row stamp
    async with node.db.read() as conn:
        members = (await conn.execute(select(sync_members))).all()
    assert [(m.elem, m.node, m.added > 0, m.removed) for m in members] == [
        ("会员", node.node_id, True, 0)]


async def test_update_records_only_changed_cells_and_history(node: Node) -> None:
    async with node.db.write(node.node_id, None) as uow:
        row = await uow.insert("customers", {"name": "李四", "customer_type": "person",
                                             "source": "call", "registered_at": _now()})
    before = await _stamp(node, row["id"])
    async with node.db.write(node.node_id, "someone") as uow:
        await uow.update("customers", row["id"], {"name": "李四", "industry": "零售"})
    cells = await _cells(node, row["id"])
    assert set(cells) == {"industry", "updated_at"}
    assert cells["industry"][0] > before.clock and cells["industry"][1] == node.node_id
    after = await _stamp(node, row["id"])
    assert after.seq > before.seq and after.stamp_seq == before.stamp_seq
    async with node.db.read() as conn:
        entries = (await conn.execute(select(history).where(history.c.row_id == row["id"]))).all()
    assert [(e.column_name, e.old_value, e.new_value, e.changed_by, e.customer_id)
            for e in entries] == [("industry", None, "零售", "someone", row["id"])]
    async with node.db.read() as conn:
        keys = (await conn.execute(select(customers.c.search_keys))).scalar_one()
    assert "lisi" in keys


async def test_failed_unit_of_work_writes_nothing(node: Node) -> None:
    async def count() -> int:
        async with node.db.read() as conn:
            return int((await conn.execute(select(func.count()).select_from(sync_rows)))
                       .scalar_one())

    start = await count()
    with pytest.raises(ValueError, match="unknown columns"):
        async with node.db.write(node.node_id, None) as uow:
            await uow.insert("customers", {"name": "王五", "customer_type": "person",
                                           "source": "call", "registered_at": _now()})
            await uow.insert("customers", {"name": "x", "nonsense": 1})
    assert await count() == start


async def test_concurrent_units_of_work_serialise_and_clocks_stay_unique(node: Node) -> None:
    async def write(i: int) -> str:
        async with node.db.write(node.node_id, None) as uow:
            row = await uow.insert("customers", {"name": f"客户{i}", "customer_type": "person",
                                                 "source": "call", "registered_at": _now()})
            return str(row["id"])

    ids = await asyncio.gather(*(write(i) for i in range(20)))
    async with node.db.read() as conn:
        rows = (await conn.execute(select(sync_rows.c.clock, sync_rows.c.seq)
                                   .where(sync_rows.c.tbl == "customers"))).all()
    assert len(ids) == len(set(ids)) == 20
    assert len({r.clock for r in rows}) == 20 and len({r.seq for r in rows}) == 20


async def test_migrations_match_the_declared_schema(node: Node) -> None:
    async with node.db.admin() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    assert diff == []


async def test_the_newest_revision_is_recognised_without_alembic(node: Node) -> None:
    assert script_head() == HEAD
    async with node.db.admin() as conn:
        assert await conn.run_sync(current_revision) == HEAD


def test_opening_a_current_database_does_not_import_alembic(tmp_path: Path) -> None:
    key = generate_db_key()
    path = tmp_path / "n.db"

    async def make() -> None:
        db = await Database.open(sqlite_url(path), key)
        await db.migrate()
        await db.dispose()

    asyncio.run(make())
    script = (
        "import asyncio, sys\n"
        "from schema import Database, sqlite_url\n"
        "async def main():\n"
        f"    db = await Database.open(sqlite_url({str(path)!r}), bytes.fromhex({key.hex()!r}))\n"
        "    await db.migrate()\n"
        "    await db.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('alembic')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_customer_list_pages_walk_the_key_not_every_live_customer(
        node: Node, backend: str) -> None:
    """SQLite keeps no statistics: given an index holding every customer, it took it for
    `merged_into IS NULL` (nearly all of them) and sorted them all for one page. The
    index holds merged customers only, and still serves finding them. A filter's index
    carries the id, so a filtered page is not every match sorted either."""
    t = TABLES["customers"]

    async def plan(query: Any) -> str:
        async with node.db.read() as conn:
            sql = str(query.compile(dialect=conn.dialect,
                                    compile_kwargs={"literal_binds": True}))
            return " | ".join(str(r[-1]) for r in await conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}"))

    live = t.c.merged_into.is_(None)
    page = await plan(select(t.c.id).where(live).order_by(t.c.id.desc()).limit(51))
    assert "merged_into" not in page and "TEMP B-TREE" not in page, page
    branch = await plan(select(t.c.id).where(live, t.c.branch == "S001")
                        .order_by(t.c.id.desc()).limit(51))
    assert "ix_customers_branch" in branch and "merged_into" not in branch, branch
    merged = await plan(select(t.c.id).where(t.c.merged_into == "0190a2a0-0000-7000"))
    assert "ix_customers_merged_into" in merged, merged
    # A filtered page, first or later, is a range of the filter's (column, id) index.
    for column in LIST_FILTERS:
        for after in (None, "0190a2a0-0000-7000"):
            query = select(t.c.id).where(live, t.c[column] == "x")
            if after:
                query = query.where(t.c.id < after)
            filtered = await plan(query.order_by(t.c.id.desc()).limit(51))
            assert f"ix_customers_{column}_id" in filtered, filtered
            assert "TEMP B-TREE" not in filtered, filtered


async def test_wrong_key_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "x.db")
    db = await Database.open(url, generate_db_key())
    await db.migrate()
    await db.dispose()
    with pytest.raises(WrongKeyError, match="key"):
        await Database.open(url, generate_db_key())


async def test_sqlite_file_is_encrypted_and_temp_store_is_memory(tmp_path: Path) -> None:
    key = generate_db_key()
    db = await Database.open(sqlite_url(tmp_path / "x.db"), key)
    await db.migrate()
    async with db.read() as conn:
        assert (await conn.exec_driver_sql("PRAGMA temp_store")).scalar_one() == 2
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA cipher_version")).scalar_one()
    await db.dispose()
    assert not (tmp_path / "x.db").read_bytes().startswith(b"SQLite format 3")


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "sqlite+aiosqlite:///"])
async def test_unsupported_database_urls_fail_cleanly(url: str) -> None:
    with pytest.raises(StorageError):
        await Database.open(url, generate_db_key())


async def test_unreachable_postgresql_fails_cleanly() -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        await Database.open("postgresql+asyncpg://postgres@127.0.0.1:1/none", None)


def _now():  # type: ignore[no-untyped-def]
    from schema import utcnow

    return utcnow()


def test_stored_instants_are_what_sqlalchemy_writes_whether_remembered_or_not() -> None:
    """The apply path formats instants itself and remembers recent ones; the text must
    be UtcDateTime's on SQLite for every zone, first time and again."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy.dialects import sqlite

    from schema._bulk import sqlite_instant
    from schema._types import UtcDateTime

    dialect = sqlite.dialect()
    bind = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    base = datetime(2026, 11, 27, 8, 0, 5, 123000, tzinfo=UTC)
    values = [base, base.astimezone(timezone(timedelta(hours=8))), base.replace(microsecond=0),
              base.astimezone(timezone(timedelta(hours=-5, minutes=-30))),
              datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    for value in values + values:
        assert sqlite_instant(value) == bind(value), value
    assert sqlite_instant(None) is None
    for bad in (base.replace(tzinfo=None), "2026-11-27T08:00:05Z", 5):
        with pytest.raises(ValueError):  # naive, even right after the same aware instant
            sqlite_instant(bad)


def test_driver_binds_nulls_booleans_and_blobs_through_registered_adapters() -> None:
    """sqlcipher3 probes every None, bool and bytes parameter for adaptation the slow way
    (an AttributeError built per value) unless an adapter is registered; ours must bind
    exactly what the driver binds without them."""
    import sqlcipher3

    import schema._database  # noqa: F401  (registers the adapters)

    registered = {kind for kind, _ in sqlcipher3.adapters}
    assert {type(None), bool, bytes} <= registered
    conn = sqlcipher3.connect(":memory:")
    try:
        row = conn.execute("SELECT typeof(?), ? IS NULL, typeof(?), ?, typeof(?), ?, typeof(?), ?",
                           (None, None, True, False, b"\x00\xff", b"", 7, 7)).fetchone()
    finally:
        conn.close()
    assert row == ("null", 1, "integer", 0, "blob", b"", "integer", 7)


def test_stored_instants_read_back_as_sqlalchemy_would_parse_them() -> None:
    """Instants are parsed from SQLite's text with the C parser; the result must be what
    SQLAlchemy's own processing gives, and text it alone understands still reads."""
    from datetime import UTC, datetime

    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from schema._types import UtcDateTime

    dialect = sqlite.dialect()
    fast = UtcDateTime().dialect_impl(dialect).result_processor(dialect, None)
    slow = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert fast is not None and slow is not None
    for text in ("2026-11-27 08:00:05.123000", "1999-12-31 23:59:59.999999",
                 "2026-11-27 08:00:05", "2026-11-27"):
        value = fast(text)
        assert value == slow(text).replace(tzinfo=UTC), text
        assert value.tzinfo is UTC
    assert fast(None) is None
    assert isinstance(fast("2026-11-27 08:00:05.123000"), datetime)


def test_json_documents_bind_exactly_as_the_engine_serialises_them() -> None:
    """The apply path's shortcut for JSON columns (empty documents, remembered lists of
    text) must write the very text the engine's serializer writes."""
    from sqlalchemy import JSON
    from sqlalchemy.dialects import sqlite

    from schema._bulk import bind_processor
    from schema._database import _json

    dialect = sqlite.dialect(json_serializer=_json)
    bind = bind_processor(JSON(), dialect)
    assert bind is not None
    for value in ([], {}, ["会员", "vip"], ["会员", "vip"], ["vip", "会员"], [["x"]],
                  [1, True], [True, 1], {"a": [1]}, ["a\"b", "c\\d"]):
        assert bind(value) == _json(value), value
