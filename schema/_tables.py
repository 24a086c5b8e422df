"""SQLAlchemy tables: one per replicated entity, plus the node's local bookkeeping."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text

from schema._entities import ENTITIES

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TABLES: dict[str, Table] = {
    name: Table(name, metadata, *(f.column for f in entity.fields))
    for name, entity in ENTITIES.items()
}

node_meta = Table(
    "node_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Local, never replicated: node id, role, token secret."""

node_counters = Table(
    "node_counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
"""Local monotonic counters: the hybrid logical clock and the change sequence."""

sync_cells = Table(
    "sync_cells",
    metadata,
    Column("tbl", String(32), primary_key=True),
    Column("row_id", String(36), primary_key=True),
    Column("col", String(64), primary_key=True),
    Column("clock", BigInteger, nullable=False),
    Column("origin", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_sync_cells_seq", "seq"),
)
"""One row per replicated cell: the clock and origin of its current value and the
local sequence number at which this node last wrote or accepted it (cr-sqlite style:
state, not history)."""

customers = TABLES["customers"]
contacts = TABLES["contacts"]
users = TABLES["users"]
branches = TABLES["branches"]
regions = TABLES["regions"]
departments = TABLES["departments"]
custom_field_defs = TABLES["custom_field_defs"]
field_history = TABLES["field_history"]
