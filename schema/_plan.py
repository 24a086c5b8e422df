"""How a new row of each table is applied: its columns, converters, defaults and
policies, computed once per table (used by the apply path, `_apply.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Date
from sqlalchemy.engine import Dialect

from schema._bulk import bind_processor
from schema._entities import ENTITIES
from schema._policy import Entity
from schema._tables import TABLES, table_rank
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


def _instant(value: Any) -> datetime:
    if value.__class__ is datetime and value.tzinfo is not None:
        return value  # as the wire delivers instants
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise TypeError(f"not an instant: {type(value).__name__}")
    instant: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return instant


CONVERTERS = {name: _convert(e) for name, e in ENTITIES.items()}


Finish = tuple[tuple[int, Callable[[Any], Any] | None, Any, Callable[[], Any] | None], ...]
"""(position, convert, value when None, make when None) per column `finisher` handles."""


@dataclass(frozen=True)
class Plan:
    """What applying a new row of one table needs, computed once per table."""

    table: str
    columns: tuple[str, ...]
    """Every column of the table, in the order new rows are buffered."""
    pos: dict[str, int]
    known: frozenset[str]
    hq_only: tuple[str, ...]
    counters: tuple[str, ...]
    sets: tuple[str, ...]
    ord: int
    finish: Finish
    """For every column whose value a new row may still need converted (when present)
    or defaulted (when absent): (position, converter or None, the default when it is
    a fixed value, the default's maker when it is made per row). The counters and
    sets are computed whole, so they are not in it."""
    finishers: dict[str, Finish] = field(
        default_factory=dict, compare=False, repr=False)
    """`finisher`'s answer per dialect name, made on first use."""


def _default(f: Any) -> tuple[Any, Callable[[], Any] | None]:
    """(fixed value, None) or (None, maker) for a column's default."""
    default = f.column.default
    arg: Any = getattr(default, "arg", None)
    if getattr(default, "is_callable", False):
        return None, lambda: arg(None)
    return arg, None


def _plan(entity: Entity) -> Plan:
    columns = tuple(f.name for f in entity.fields)
    pos = {c: i for i, c in enumerate(columns)}
    return Plan(
        table=entity.table,
        columns=columns,
        pos=pos,
        known=frozenset(f.name for f in entity.fields if f.replicated and f.name != "id"),
        hq_only=tuple(f.name for f in entity.fields if f.merge is Merge.HQ_AUTHORITATIVE),
        counters=tuple(f.name for f in entity.fields if f.merge is Merge.COUNTER),
        sets=tuple(f.name for f in entity.fields if f.merge is Merge.ADD_WINS_SET),
        ord=table_rank(entity.table),
        finish=_finish(entity, pos),
    )


def _finish(entity: Entity, pos: dict[str, int]) -> Finish:
    converters = CONVERTERS[entity.table]
    out = []
    for f in entity.fields:
        if f.merge in (Merge.COUNTER, Merge.ADD_WINS_SET):
            continue
        conv = converters.get(f.name)
        if conv is not None or f.column.default is not None:
            fixed, make = _default(f) if f.column.default is not None else (None, None)
            out.append((pos[f.name], conv, fixed, make))
    return tuple(out)


PLANS = {name: _plan(e) for name, e in ENTITIES.items()}


def finisher(plan: Plan, dialect: Dialect) -> Finish:
    """What turns a new row, laid out in table order (wire values, a cell's, the
    computed sets; None where absent), into what is written. For each column that
    needs it: `convert` for a present value (from its wire form and, on SQLite, on to
    what the driver binds; None: kept as it is) and, for an absent one, a fixed
    value or, when the default is made per row, `make`. On SQLite the rows are then
    written as they are (`insert_rows(..., finished=True)`): one conversion per value
    instead of one here and another there, and a value of the wrong type fails here,
    inside its row's apply, so that row alone is quarantined."""
    found = plan.finishers.get(dialect.name)
    if found is not None:
        return found
    table = TABLES[plan.table]
    stage = {j: (conv, fixed, make) for j, conv, fixed, make in plan.finish}
    out = []
    for j, name in enumerate(plan.columns):
        conv, fixed, make = stage.get(j, (None, None, None))
        proc = (bind_processor(table.c[name].type, dialect)
                if dialect.name == "sqlite" else None)
        if proc is None:
            if conv is not None or fixed is not None or make is not None:
                out.append((j, conv, fixed, make))
            continue
        convert = proc if conv is None else _then(conv, proc)
        out.append((j, convert, proc(fixed), None if make is None else _then(make, proc)))
    found = plan.finishers[dialect.name] = tuple(out)
    return found


def _then(first: Callable[..., Any], then: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda *v: then(first(*v))


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
