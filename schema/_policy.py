"""Per-field declarations: how a field merges across replicas and how secret it is."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Column, String

from schema._types import UtcDateTime
from sync import Merge


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
    conflicts: bool = True
    """Whether a lost concurrent write is worth a conflict record (not bookkeeping)."""
    states: tuple[str, ...] = ()
    """For `Merge.STATE`: the workflow states in order; the furthest wins."""

    @cached_property
    def name(self) -> str:
        return str(self.column.name)


@dataclass(frozen=True)
class Entity:
    """A replicated table: its fields and which of them are kept in history."""

    table: str
    fields: tuple[Field, ...]
    keep_history: bool = False
    append_only: bool = False
    """Rows are inserted once and never change (history, audit): no conflicts."""
    extra_indexes: tuple[tuple[str, ...], ...] = field(default=())

    def field(self, name: str) -> Field:
        """The field called `name`; `KeyError` if there is none."""
        return self.by_name[name]

    @cached_property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    @cached_property
    def replicated_columns(self) -> tuple[str, ...]:
        """Columns that travel in sync, in declaration order (without `id`)."""
        return tuple(f.name for f in self.fields if f.replicated and f.name != "id")


def id_field() -> Field:
    """The primary key every replicated entity has: a UUIDv7 set at insert."""
    return Field(Column("id", String(36), primary_key=True), merge=Merge.IMMUTABLE)


def stamp_fields() -> tuple[Field, Field]:
    """`created_at` (set at insert) and `updated_at` (bookkeeping: no history, no
    conflicts), the timestamps most entities carry."""
    return (
        Field(Column("created_at", UtcDateTime(), nullable=False), merge=Merge.IMMUTABLE,
              history=False),
        Field(Column("updated_at", UtcDateTime(), nullable=False), history=False,
              conflicts=False),
    )
