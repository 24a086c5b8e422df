"""SQLAlchemy tables: one per replicated entity, plus the node's local bookkeeping."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

from schema._entities import ENTITIES
from schema._types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TABLES: dict[str, Table] = {
    name: Table(name, metadata, *(f.column for f in entity.fields),
                *(Index(f"ix_{name}_{'_'.join(cols)}", *cols) for cols in entity.extra_indexes))
    for name, entity in ENTITIES.items()
}

Index("ix_customers_merged_into", TABLES["customers"].c.merged_into,
      sqlite_where=text("merged_into IS NOT NULL"),
      postgresql_where=text("merged_into IS NOT NULL"))
"""Who was merged into a customer. Partial: with every row in the index, SQLite (which
keeps no statistics) took it for `merged_into IS NULL`, nearly every customer, and a
page of the customer list walked and sorted them all (0.75 s at 100,000)."""

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

sync_rows = Table(
    "sync_rows",
    metadata,
    Column("tbl", String(32), primary_key=True),
    Column("row_id", String(36), primary_key=True),
    Column("cl", Integer, nullable=False),
    Column("clock", BigInteger, nullable=False),
    Column("origin", String(36), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("stamp_seq", BigInteger, nullable=False),
    Column("ord", SmallInteger, nullable=False),
    Index("ix_sync_rows_order", "seq", "ord", "tbl", "row_id"),
)
"""One row per replicated row: its causal length (odd live, even deleted), the stamp
(clock, origin) of every cell without an override, the local sequence number of the
row's newest change (`seq`) and of its stamp and values (`stamp_seq`). State, not
history: superseded versions are never kept (cr-sqlite style, one row not one per
cell, so inserting a row costs one metadata row). `ord` is the table's place in the
change order (`table_rank`): within one sequence number parents come before children, so a
page never needs to drag a child's customer along from later in the order."""

ORDER = ("regions", "branches", "departments", "custom_field_defs", "users", "customers")
"""Tables in the order a batch applies them: reference data, customers, then children."""
_RANK = {name: i for i, name in enumerate(ORDER)}


def table_rank(tbl: str) -> int:
    """A table's place in the change order (children and unknown tables last)."""
    return _RANK.get(tbl, len(ORDER))

sync_cells = Table(
    "sync_cells",
    metadata,
    Column("tbl", String(32), primary_key=True),
    Column("row_id", String(36), primary_key=True),
    Column("col", String(64), primary_key=True),
    Column("clock", BigInteger, nullable=False),
    Column("origin", String(36), nullable=False),
    Column("rank", BigInteger, nullable=False, default=0),
    Column("lineage", Text),
    Column("seq", BigInteger, nullable=False),
)
"""Cells whose version differs from their row's stamp (written after the insert)."""

sync_tallies = Table(
    "sync_tallies",
    metadata,
    Column("tbl", String(32), primary_key=True),
    Column("row_id", String(36), primary_key=True),
    Column("col", String(64), primary_key=True),
    Column("node", String(36), primary_key=True),
    Column("inc", BigInteger, nullable=False),
    Column("dec", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)
"""Counter cells: each node's running totals of increments and decrements."""

sync_members = Table(
    "sync_members",
    metadata,
    Column("tbl", String(32), primary_key=True),
    Column("row_id", String(36), primary_key=True),
    Column("col", String(64), primary_key=True),
    Column("elem", String(200), primary_key=True),
    Column("node", String(36), primary_key=True),
    Column("added", BigInteger, nullable=False),
    Column("removed", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
)
"""Add-wins set cells: per element and node, the newest add and the newest add a
remove had seen."""

sync_peers = Table(
    "sync_peers",
    metadata,
    Column("peer_id", String(36), primary_key=True),
    Column("pulled", Text, nullable=False, default=""),
    Column("pushed", Text, nullable=False, default=""),
    Column("acked", Text, nullable=False, default=""),
    Column("last_contact", UtcDateTime()),
    Column("last_error", Text),
    Column("clock_offset_ms", BigInteger),
    Column("batches_in", BigInteger, nullable=False, default=0),
    Column("batches_out", BigInteger, nullable=False, default=0),
)
"""Per peer: how far we have applied its changes (`pulled`), how far it has
acknowledged ours (`acked`), and where our next changes for it start (`pushed`: the
acknowledgement, moved past rows we just took from that peer — SPEC §13 no-echo), as
the sender's opaque cursors."""

bundle_log = Table(
    "bundle_log",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("peer_id", String(36), nullable=False, index=True),
    Column("direction", String(4), nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("since", Text, nullable=False),
    Column("until", Text, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("parts", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)
"""Bundles this node exported (`out`) or applied (`in`), per peer: numbers, cursor
ranges, sizes. Local, never replicated; a re-imported bundle id is a no-op."""

sync_quarantine = Table(
    "sync_quarantine",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("peer_id", String(36), nullable=False),
    Column("tbl", String(64), nullable=False),
    Column("row_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)
"""Changes kept aside instead of applied (too far in the future, out of scope,
malformed, unknown to this schema) so they never block the rest of the stream."""

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(100), nullable=False),
    Column("branch", String(16)),
    Column("public_key", String(64), nullable=False),
    Column("box_public_key", String(64)),
    Column("url", String(300)),
    Column("enrolled_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime()),
    Column("revoked_reason", String(300)),
)
"""Nodes this node knows and trusts: at HQ every enrolled node, at a branch HQ."""

customers = TABLES["customers"]
contacts = TABLES["contacts"]
users = TABLES["users"]
branches = TABLES["branches"]
regions = TABLES["regions"]
departments = TABLES["departments"]
custom_field_defs = TABLES["custom_field_defs"]
field_history = TABLES["field_history"]
conflicts = TABLES["conflicts"]
change_requests = TABLES["change_requests"]
