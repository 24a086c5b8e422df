"""Per-field declarations: how a field merges across replicas and how secret it is."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column


class Merge(enum.StrEnum):
    """How concurrent writes to one field on different nodes are reconciled."""

    LWW = "lww"
    """Newest hybrid-logical clock wins; node id breaks ties (the default)."""
    FIRST_WRITE = "first_write"
    """The earliest value wins for good (customer ownership, registration time)."""
    COUNTER = "counter"
    """Per-node totals summed (loyalty points); no increment is lost or doubled."""
    IMMUTABLE = "immutable"
    """Set once at creation and never changed (ids, foreign keys of history rows)."""


class Sensitivity(enum.StrEnum):
    """Confidentiality class of a field (机密 / 绝密 in the regulations)."""

    ORDINARY = "ordinary"
    CONFIDENTIAL = "confidential"
    SECRET = "secret"


@dataclass(frozen=True)
class Field:
    """One column of a replicated entity and the rules that govern it."""

    column: Column[Any]
    merge: Merge = Merge.LWW
    sensitivity: Sensitivity = Sensitivity.ORDINARY
    replicated: bool = True
    """False for columns derived locally from others (search keys)."""
    history: bool = True
    """Whether changes are kept in the field history (客户档案变动记录)."""

    @property
    def name(self) -> str:
        return self.column.name


@dataclass(frozen=True)
class Entity:
    """A replicated table: its fields and which of them are kept in history."""

    table: str
    fields: tuple[Field, ...]
    keep_history: bool = False
    extra_indexes: tuple[tuple[str, ...], ...] = field(default=())

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def replicated_columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.replicated and f.name != "id")
