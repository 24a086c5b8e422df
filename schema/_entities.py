"""The replicated entities of Branchline, declared once.

Each entity lists its columns together with their merge policy and sensitivity;
`_tables.py` turns these into SQLAlchemy tables, the unit of work reads them to
know which cells to record for sync, and later layers (field encryption) read the
sensitivity. Changing a declaration here is a schema change and needs a migration.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, String, Text

from schema._governance import GOVERNANCE_ENTITIES, SECRECY_LEVELS
from schema._policy import Entity, Field, Sensitivity, id_field, stamp_fields
from schema._types import UtcDateTime
from schema._work import WORK_ENTITIES
from sync import Merge

FILING_STATES = ("registered", "filed", "archived")
"""Registration (登记) → filing (备案) → archived; re-opening starts a new cycle."""

C = Sensitivity.CONFIDENTIAL
S = Sensitivity.SECRET
LIST_FILTERS = ("customer_class", "lifecycle_stage", "abc_class", "branch", "owner_id")
"""Customer columns the list filters on by equality; each indexed with the id."""


def _sensitive(name: str, cls: Sensitivity, *, key_class: str | None = None,
               blind: bool = False) -> tuple[Field, ...]:
    """A confidential or secret field: the column holds only ciphertext (crypto/_fields.py),
    with a mask computed at write time for readers without the key and, for exact search
    and duplicate detection, a blind index."""
    fields = [
        Field(Column(name, Text), sensitivity=cls),
        Field(Column(f"{name}_mask", String(64)), history=False, conflicts=False),
    ]
    if blind:
        fields.append(Field(Column(f"{name}_bidx", String(8), index=True), history=False,
                            conflicts=False))
    SENSITIVE_COLUMNS[name] = key_class or cls.value
    if blind:
        BLIND_COLUMNS.add(name)
    return tuple(fields)


SENSITIVE_COLUMNS: dict[str, str] = {}
BLIND_COLUMNS: set[str] = set()


REGIONS = Entity("regions", (
    id_field(),
    Field(Column("code", String(16), nullable=False, unique=True), merge=Merge.FIRST_WRITE),
    Field(Column("name", String(100), nullable=False)),
    *stamp_fields(),
))

BRANCHES = Entity("branches", (
    id_field(),
    Field(Column("code", String(16), nullable=False, unique=True), merge=Merge.FIRST_WRITE),
    Field(Column("name", String(100), nullable=False)),
    Field(Column("region", String(16))),
    Field(Column("address", String(500))),
    Field(Column("node_id", String(36))),
    Field(Column("active", Boolean, nullable=False, default=True)),
    *stamp_fields(),
))

DEPARTMENTS = Entity("departments", (
    id_field(),
    Field(Column("name", String(64), nullable=False)),
    Field(Column("branch", String(16))),
    *stamp_fields(),
))

USERS = Entity("users", (
    id_field(),
    Field(Column("username", String(64), nullable=False, unique=True), merge=Merge.FIRST_WRITE),
    Field(Column("display_name", String(100), nullable=False)),
    Field(Column("password_hash", String(200), nullable=False), history=False),
    Field(Column("role", String(32), nullable=False)),
    Field(Column("branch", String(16))),
    Field(Column("department", String(64))),
    Field(Column("active", Boolean, nullable=False, default=True)),
    Field(Column("token_version", Integer, nullable=False, default=0), history=False),
    *stamp_fields(),
), keep_history=True)

CUSTOMERS = Entity("customers", (
    id_field(),
    Field(Column("name", String(200), nullable=False)),
    Field(Column("customer_type", String(16), nullable=False)),
    Field(Column("enterprise_nature", String(50))),
    Field(Column("supervising_unit", String(200))),
    Field(Column("industry", String(100))),
    Field(Column("size", String(50))),
    *_sensitive("address", C),
    *_sensitive("mobile", C, blind=True),
    *_sensitive("phone", C),
    *_sensitive("email", C),
    Field(Column("website", String(300))),
    *_sensitive("id_number", S, blind=True),
    *_sensitive("org_code", S, blind=True),
    *_sensitive("bank_account", S),
    *_sensitive("birthday", C),
    *_sensitive("credit_status", S, key_class="credit"),
    Field(Column("source", String(20), nullable=False)),
    Field(Column("intention", Boolean, nullable=False, default=False)),
    Field(Column("agency", Boolean, nullable=False, default=False)),
    Field(Column("referrer_customer_id", String(36))),
    Field(Column("referrer_user_id", String(36))),
    Field(Column("customer_class", String(32))),
    Field(Column("lifecycle_stage", String(16))),
    Field(Column("abc_class", String(8))),
    Field(Column("value_class", String(16))),
    Field(Column("credit_class", String(16))),
    Field(Column("tags", JSON, nullable=False, default=list), merge=Merge.ADD_WINS_SET),
    Field(Column("points", BigInteger, nullable=False, default=0), merge=Merge.COUNTER),
    Field(Column("credit_limit_fen", BigInteger), merge=Merge.HQ_AUTHORITATIVE),
    Field(Column("filing_status", String(16), nullable=False, default="registered"),
          merge=Merge.STATE, states=FILING_STATES),
    Field(Column("filed_at", UtcDateTime())),
    Field(Column("id_copy_on_file", Boolean, nullable=False, default=False)),
    Field(Column("contract_signed", Boolean, nullable=False, default=False)),
    Field(Column("last_year_settled", Boolean, nullable=False, default=False)),
    # Indexed for merged rows only (schema/_tables.py): live customers are nearly all.
    Field(Column("merged_into", String(36)), merge=Merge.FIRST_WRITE),
    Field(Column("secrecy", String(12), nullable=False, default=SECRECY_LEVELS[0])),
    Field(Column("consent_marketing", Boolean, nullable=False, default=False)),
    Field(Column("consent_sharing", Boolean, nullable=False, default=False)),
    Field(Column("consent_at", UtcDateTime())),
    Field(Column("relationship_ended_at", UtcDateTime())),
    Field(Column("retention_until", UtcDateTime(), index=True)),
    Field(Column("preferences", String(2000))),
    Field(Column("notes", String(4000))),
    Field(Column("branch", String(16))),
    Field(Column("department", String(64))),
    Field(Column("owner_id", String(36)), merge=Merge.FIRST_WRITE),
    Field(Column("registered_at", UtcDateTime(), nullable=False), merge=Merge.FIRST_WRITE),
    Field(Column("created_by", String(36)), merge=Merge.IMMUTABLE, history=False),
    Field(Column("custom", JSON, nullable=False, default=dict)),
    Field(Column("search_keys", Text, nullable=False, default=""), replicated=False,
          history=False),
    *stamp_fields(),
), keep_history=True,
    # The customer list filters by these and pages by id, newest first: with the id in
    # the index, one filter's page is a range of it, not every match sorted (SQLite
    # keeps no statistics to weigh a filter). 84-118 ms -> 0.2 ms a page at 100,000.
    extra_indexes=tuple((col, "id") for col in LIST_FILTERS))

CONTACTS = Entity("contacts", (
    id_field(),
    Field(Column("customer_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("name", String(100), nullable=False)),
    Field(Column("department", String(64))),
    Field(Column("title", String(64))),
    *_sensitive("mobile", C, blind=True),
    *_sensitive("phone", C),
    *_sensitive("email", C),
    *_sensitive("birthday", C),
    Field(Column("is_primary", Boolean, nullable=False, default=False)),
    Field(Column("notes", String(2000))),
    *stamp_fields(),
), keep_history=True)

CUSTOM_FIELDS = Entity("custom_field_defs", (
    id_field(),
    Field(Column("entity", String(32), nullable=False)),
    Field(Column("name", String(64), nullable=False), merge=Merge.FIRST_WRITE),
    Field(Column("label", String(100), nullable=False)),
    Field(Column("field_type", String(16), nullable=False)),
    Field(Column("required", Boolean, nullable=False, default=False)),
    Field(Column("choices", JSON, nullable=False, default=list)),
    Field(Column("max_length", Integer)),
    Field(Column("active", Boolean, nullable=False, default=True)),
    *stamp_fields(),
))

FIELD_HISTORY = Entity("field_history", (
    id_field(),
    Field(Column("table_name", String(32), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("row_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("customer_id", String(36), index=True), merge=Merge.IMMUTABLE),
    Field(Column("column_name", String(64), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("old_value", JSON), merge=Merge.IMMUTABLE),
    Field(Column("new_value", JSON), merge=Merge.IMMUTABLE),
    Field(Column("changed_by", String(36)), merge=Merge.IMMUTABLE),
    Field(Column("changed_at", UtcDateTime(), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("node_id", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("clock", BigInteger, nullable=False), merge=Merge.IMMUTABLE),
), append_only=True)

CONFLICTS = Entity("conflicts", (
    id_field(),
    Field(Column("table_name", String(32), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("row_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("column_name", String(64), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("customer_id", String(36), index=True), merge=Merge.IMMUTABLE),
    Field(Column("branch", String(16), index=True), merge=Merge.IMMUTABLE),
    Field(Column("policy", String(20), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("winner_value", JSON), merge=Merge.IMMUTABLE),
    Field(Column("loser_value", JSON), merge=Merge.IMMUTABLE),
    Field(Column("winner_node", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("loser_node", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("winner_clock", BigInteger, nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("loser_clock", BigInteger, nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("detected_by", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("status", String(16), nullable=False, default="open", index=True)),
    Field(Column("resolved_by", String(36))),
    Field(Column("resolution", String(500))),
    *stamp_fields(),
))
"""A concurrent write that lost (sync/SPEC.md §Conflicts): kept, listed, resolvable."""

CHANGE_REQUESTS = Entity("change_requests", (
    id_field(),
    Field(Column("table_name", String(32), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("row_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("column_name", String(64), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("customer_id", String(36), index=True), merge=Merge.IMMUTABLE),
    Field(Column("value", JSON), merge=Merge.IMMUTABLE),
    Field(Column("requested_by", String(36)), merge=Merge.IMMUTABLE),
    Field(Column("node_id", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("status", String(16), nullable=False, default="pending"),
          merge=Merge.HQ_AUTHORITATIVE),
    *stamp_fields(),
))
"""A branch's write to an HQ-authoritative field, waiting for HQ to grant it."""

DATA_KEYS = Entity("data_keys", (
    id_field(),
    Field(Column("customer_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("cls", String(16), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("key_version", Integer, nullable=False), history=False, conflicts=False),
    Field(Column("wrapped", Text, nullable=False), history=False, conflicts=False),
    *stamp_fields(),
))
"""A customer's data key for one class, wrapped by a class key version (crypto/_fields.py).
Its id derives from customer and class, so every node names it alike; rewrapping
(rotation) changes `key_version` and `wrapped`, never the key; deleting it erases the
customer's values of that class on every replica."""

DESTRUCTIONS = Entity("destruction_records", (
    id_field(),
    Field(Column("customer_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("reason", String(500), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("reviewed_by", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("approved_by", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("erased_by", String(36)), merge=Merge.IMMUTABLE),
    Field(Column("node_id", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("erased_at", UtcDateTime(), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("fields", JSON, nullable=False), merge=Merge.IMMUTABLE),
), append_only=True)
"""Destruction record (domain.md §9): who reviewed (department head), who approved
(general manager), who erased which fields of which customer, when, where."""

KEY_GRANTS = Entity("key_grants", (
    id_field(),
    Field(Column("node_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("branch", String(16), index=True), merge=Merge.IMMUTABLE),
    Field(Column("label", String(64), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("wrapped", Text, nullable=False), merge=Merge.IMMUTABLE),
))
"""A field key (`class:<class>:<version>` or `index`) wrapped to one node's X25519 key.
HQ writes them; each branch receives its own (and those of its devices). New key
versions reach nodes this way; deleting a grant (rotation, revocation) retires it."""

KEY_POLICIES = Entity("key_policies", (
    id_field(),
    Field(Column("kind", String(8), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("name", String(100), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("classes", String(100), nullable=False)),
    *stamp_fields(),
))
"""HQ's change to the default class policy (schema/_classes.py): `kind` `field` names
`table.column` and its one key class; `kind` `role` names a role and the comma-separated
classes it reads. Published to every node; only HQ writes it."""

READ_AUDIT = Entity("read_audit", (
    id_field(),
    Field(Column("customer_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("table_name", String(32), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("row_id", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("fields", JSON, nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("user_id", String(36), nullable=False, index=True), merge=Merge.IMMUTABLE),
    Field(Column("node_id", String(36), nullable=False), merge=Merge.IMMUTABLE),
    Field(Column("read_at", UtcDateTime(), nullable=False), merge=Merge.IMMUTABLE),
), append_only=True)
"""Every plaintext read of a confidential or secret field: who, which customer and
fields, when, on which node. Append-only; follows its customer to HQ."""

ENTITIES: dict[str, Entity] = {
    e.table: e
    for e in (REGIONS, BRANCHES, DEPARTMENTS, USERS, CUSTOMERS, CONTACTS, CUSTOM_FIELDS,
              FIELD_HISTORY, CONFLICTS, CHANGE_REQUESTS, DATA_KEYS, DESTRUCTIONS,
              READ_AUDIT, KEY_GRANTS, KEY_POLICIES, *WORK_ENTITIES, *GOVERNANCE_ENTITIES)
}
"""Every replicated entity by table name."""

SENSITIVE: dict[str, dict[str, str]] = {
    e.table: {f.name: SENSITIVE_COLUMNS[f.name] for f in e.fields
              if f.sensitivity is not Sensitivity.ORDINARY}
    for e in ENTITIES.values()
    if any(f.sensitivity is not Sensitivity.ORDINARY for f in e.fields)
}
"""Per table, each encrypted column and the key class that encrypts it."""

BLIND_INDEXED: dict[str, tuple[str, ...]] = {
    table: tuple(c for c in columns if c in BLIND_COLUMNS) for table, columns in SENSITIVE.items()
}
"""Per table, the encrypted columns that carry a blind index (`<column>_bidx`)."""
