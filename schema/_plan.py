"""How a new row of each table is applied: its columns, converters, defaults and
policies, computed once per table (used by the apply path, `_apply.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Date

from schema._entities import ENTITIES
from schema._policy import Entity
from schema._tables import table_rank
from schema._types import UtcDateTime
from sync import Merge


def _convert(entity: Entity) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in entity.fields:
        if isinstance(f.column.type, Date):
            out[f.name] = lambda v: date.fromisoformat(v) if isinstance(v, str) else v
        elif isinstance(f.column.type, UtcDateTime):
            out[f.name] = _instant
    return out


def _instant(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


CONVERTERS = {name: _convert(e) for name, e in ENTITIES.items()}


@dataclass(frozen=True)
class Plan:
    """What applying a new row of one table needs, computed once per table."""

    columns: tuple[str, ...]
    """Every column of the table, in the order new rows are buffered."""
    pos: dict[str, int]
    known: frozenset[str]
    hq_only: tuple[str, ...]
    counters: tuple[str, ...]
    sets: tuple[str, ...]
    ord: int
    finish: tuple[tuple[int, Any, Any], ...]
    """(position, converter or None, default or None) for every column whose value a
    new row may still need converted (when present) or defaulted (when absent); the
    counters and sets are computed whole, so they are in neither list."""


def _default(f: Any) -> Any:
    arg: Any = getattr(f.column.default, "arg", None)
    if getattr(f.column.default, "is_callable", False):
        return lambda: arg(None)
    return lambda: arg


def _plan(entity: Entity) -> Plan:
    columns = tuple(f.name for f in entity.fields)
    pos = {c: i for i, c in enumerate(columns)}
    return Plan(
        columns=columns,
        pos=pos,
        known=frozenset(f.name for f in entity.fields if f.replicated and f.name != "id"),
        hq_only=tuple(f.name for f in entity.fields if f.merge is Merge.HQ_AUTHORITATIVE),
        counters=tuple(f.name for f in entity.fields if f.merge is Merge.COUNTER),
        sets=tuple(f.name for f in entity.fields if f.merge is Merge.ADD_WINS_SET),
        ord=table_rank(entity.table),
        finish=_finish(entity, pos),
    )


def _finish(entity: Entity, pos: dict[str, int]) -> tuple[tuple[int, Any, Any], ...]:
    converters = CONVERTERS[entity.table]
    out = []
    for f in entity.fields:
        if f.merge in (Merge.COUNTER, Merge.ADD_WINS_SET):
            continue
        conv = converters.get(f.name)
        default = _default(f) if f.column.default is not None else None
        if conv is not None or default is not None:
            out.append((pos[f.name], conv, default))
    return tuple(out)


PLANS = {name: _plan(e) for name, e in ENTITIES.items()}


def picker(table: str, columns: list[str], from_hq: bool) -> Callable[[list[Any]], Any]:
    """What lays a new row out in table order (every column of `PLANS[table].columns`)
    from `[id, *wire values, None]`, the wire values in `columns` order: the columns a
    new row takes land in place (HQ-authoritative ones only `from_hq`), every other
    column is the trailing None. One C call per row instead of a loop over columns."""
    plan = PLANS[table]
    where = {c: i + 1 for i, c in enumerate(columns)
             if c in plan.known and (from_hq or c not in plan.hq_only)}
    none = len(columns) + 1
    return itemgetter(0, *(where.get(c, none) for c in plan.columns[1:]))


def coerce(table: str, column: str, value: Any) -> Any:
    """A value from the wire or from JSON as the column's Python type."""
    conv = CONVERTERS[table].get(column)
    return conv(value) if conv is not None and value is not None else value
