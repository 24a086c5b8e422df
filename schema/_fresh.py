"""Rows a batch brings that this node never had: nothing to merge, so each only needs
laying out in table order, finishing (converted, defaulted, on SQLite in the form the
driver binds) and its stamp and side rows collecting, for one `executemany` per table
(used by the apply path, `_apply.py`). The hot loop of a bootstrap or a push of new
work: everything per table is worked out once, in the constructor."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy.engine import Dialect

from schema._plan import PLANS, finisher, picker
from schema._values import search_keys
from sync import Row, counter_value, set_members

Buffer = dict[str, list[tuple[Any, ...]]]


class NewRows:
    """Lays out and buffers the new rows of one table from one batch."""

    def __init__(self, tbl: str, columns: list[str], nodes: list[str], hq_node: str,
                 seq: int, dialect: Dialect, buffer: Buffer,
                 branches: dict[str, str | None]) -> None:
        plan = PLANS[tbl]
        self.tbl = tbl
        self.nodes = nodes
        self.hq_node = hq_node
        self.seq = seq
        self.buffer = buffer
        self.branches = branches
        """Filled with each new customer's branch (the scope check of its children)."""
        self.plan = plan
        self.pos = plan.pos
        # HQ-authoritative columns are taken only from HQ: one layout for each.
        self.take = {True: picker(tbl, columns, True), False: picker(tbl, columns, False)}
        self.finish = finisher(plan, dialect)
        self.customers = tbl == "customers"
        self.rows = buffer[tbl]
        self.stamps = buffer["sync_rows"]

    def add(self, row: Row) -> None:
        """Buffer `row`; raises (ValueError, TypeError, KeyError) for a value its column
        cannot hold, and then buffers nothing of it."""
        nodes, tbl, plan, pos, seq = self.nodes, self.tbl, self.plan, self.pos, self.seq
        origin = nodes[row.origin]
        assert row.values is not None
        out: list[Any] = list(self.take[origin == self.hq_node]([row.id, *row.values, None]))
        side: list[tuple[str, tuple[Any, ...]]] = []
        for c in row.cells:
            if c.col not in plan.known or (c.col in plan.hq_only
                                           and nodes[c.origin] != self.hq_node):
                continue
            out[pos[c.col]] = c.val
            side.append(("sync_cells", (
                tbl, row.id, c.col, c.clock, nodes[c.origin], c.rank,
                json.dumps(c.lineage) if c.lineage else None, seq)))
        if plan.counters:
            totals: dict[str, list[tuple[int, int]]] = defaultdict(list)
            for t in row.tallies:
                totals[t.col].append((t.inc, t.dec))
                side.append(("sync_tallies", (tbl, row.id, t.col, nodes[t.node], t.inc,
                                              t.dec, seq)))
            for col in plan.counters:
                out[pos[col]] = counter_value(totals.get(col, []))
        if plan.sets:
            sets: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(
                lambda: defaultdict(list))
            for m in row.members:
                sets[m.col][m.elem].append((m.added, m.removed))
                side.append(("sync_members", (tbl, row.id, m.col, m.elem, nodes[m.node],
                                              m.added, m.removed, seq)))
            for col in plan.sets:
                out[pos[col]] = set_members(sets.get(col, {}))
        if self.customers:
            # Derived locally, never replicated: without it name search misses every
            # customer that arrived by sync.
            out[pos["search_keys"]] = search_keys(out[pos["name"]] or "")
        for j, convert, none, make in self.finish:
            value = out[j]
            if value is None:
                out[j] = none if make is None else make()
            elif convert is not None:
                out[j] = convert(value)
        if self.customers:
            self.branches[row.id] = out[pos["branch"]]
        buffer = self.buffer
        for name, side_row in side:
            buffer[name].append(side_row)
        # As a tuple: the cyclic collector stops tracking tuples of plain values.
        self.rows.append(tuple(out))
        self.stamps.append((tbl, row.id, row.cl, row.clock, origin, seq, seq, plan.ord))
