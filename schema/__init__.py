"""Entities, per-field merge policy and sensitivity, storage and migrations.

No web framework here. The unit of work (`Database.write`) is the only write path
for replicated data.
"""

from schema._apply import ApplyResult
from schema._audit import GENESIS, chain_breaks, entry_hash
from schema._bulk import records
from schema._calendar import (
    LOCAL_TZ,
    add_working_days,
    end_of_local_day,
    holiday_name,
    is_working_day,
    local_day,
    working_deadline,
)
from schema._classes import (
    DEFAULT_POLICY,
    KEY_CLASSES,
    ClassPolicy,
    PolicyError,
    check_change,
    load_policy,
    policy_id,
)
from schema._database import Database, Kind, sqlite_url
from schema._entities import BLIND_INDEXED, ENTITIES, SENSITIVE
from schema._errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    SchemaError,
    StorageError,
    WrongKeyError,
)
from schema._exchange import (
    incoming,
    next_page,
    outgoing,
    peer_state,
    pending_since,
    quarantine_count,
    record_peer,
    retry_parked,
)
from schema._gc import collect_tombstones, gc_horizon, wipe_replica
from schema._governance import (
    ACCESS_KINDS,
    ACCESS_STATES,
    DESTRUCTION_STATES,
    GRANT_HOURS_MAX,
    RETENTION_YEARS,
    SECRECY_LEVELS,
)
from schema._ids import new_id
from schema._plan import coerce
from schema._policy import Entity, Field, Sensitivity
from schema._produce import parse_cursor
from schema._roles import (
    CUSTOM_FIELD_ADMINS,
    CUSTOMER_EDITORS,
    ORG_ADMINS,
    READABLE_CLASSES,
    ROLES,
    Role,
    readable_classes,
)
from schema._scope import Scope
from schema._tables import (
    TABLES,
    metadata,
    node_counters,
    node_meta,
    nodes,
    sync_cells,
    sync_members,
    sync_peers,
    sync_quarantine,
    sync_rows,
    sync_tallies,
)
from schema._types import UtcDateTime, utcnow
from schema._uow import UnitOfWork
from schema._values import (
    clean_text,
    load_search_dictionaries,
    normalize_email,
    normalize_mobile,
    normalize_phone,
    search_keys,
    validate_id_number,
    validate_org_code,
)
from schema._vault import KeyMissingError, Vault, data_key_id
from sync import Merge

__all__ = [
    "ACCESS_KINDS",
    "ACCESS_STATES",
    "BLIND_INDEXED",
    "CUSTOMER_EDITORS",
    "CUSTOM_FIELD_ADMINS",
    "DEFAULT_POLICY",
    "DESTRUCTION_STATES",
    "ENTITIES",
    "GENESIS",
    "GRANT_HOURS_MAX",
    "KEY_CLASSES",
    "LOCAL_TZ",
    "ORG_ADMINS",
    "READABLE_CLASSES",
    "RETENTION_YEARS",
    "ROLES",
    "SECRECY_LEVELS",
    "SENSITIVE",
    "TABLES",
    "ApplyResult",
    "ClassPolicy",
    "ConflictError",
    "Database",
    "Entity",
    "Field",
    "FieldError",
    "KeyMissingError",
    "Kind",
    "Merge",
    "NotFoundError",
    "PolicyError",
    "Role",
    "SchemaError",
    "Scope",
    "Sensitivity",
    "StorageError",
    "UnitOfWork",
    "UtcDateTime",
    "Vault",
    "WrongKeyError",
    "add_working_days",
    "chain_breaks",
    "check_change",
    "clean_text",
    "coerce",
    "collect_tombstones",
    "data_key_id",
    "end_of_local_day",
    "entry_hash",
    "gc_horizon",
    "holiday_name",
    "incoming",
    "is_working_day",
    "load_policy",
    "load_search_dictionaries",
    "local_day",
    "metadata",
    "new_id",
    "next_page",
    "node_counters",
    "node_meta",
    "nodes",
    "normalize_email",
    "normalize_mobile",
    "normalize_phone",
    "outgoing",
    "parse_cursor",
    "peer_state",
    "pending_since",
    "policy_id",
    "quarantine_count",
    "readable_classes",
    "record_peer",
    "records",
    "retry_parked",
    "search_keys",
    "sqlite_url",
    "sync_cells",
    "sync_members",
    "sync_peers",
    "sync_quarantine",
    "sync_rows",
    "sync_tallies",
    "utcnow",
    "validate_id_number",
    "validate_org_code",
    "wipe_replica",
    "working_deadline",
]
