"""Conflict records found while a batch is merged (sync/SPEC.md §5), written after it.

Two nodes changed one field concurrently: the losing value is kept in a `conflicts`
row, never silently dropped. Its id derives from the two stamps, so every node that
detects the same conflict makes the same record, and copies of it merge as one row.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from schema._scope import customer_branches
from schema._tables import sync_rows
from schema._uow import UnitOfWork, customer_of, jsonable
from sync import Merge, Stamp

CONFLICT_NS = uuid.UUID("6f1d8c1e-6b7e-4f43-9d55-2f0b3f1c2a10")


class DetectedConflicts:
    """The conflict records one batch revealed, by id, until `write`."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._found: dict[str, dict[str, Any]] = {}

    def note(self, table: str, data: dict[str, Any], col: str, policy: Merge,
             incoming: tuple[Stamp, Any], here: tuple[Stamp, Any],
             incoming_won: bool) -> None:
        """Note that `col` of the row `data` of `table` was changed concurrently: the
        incoming (stamp, value) against the one here; `incoming_won` says which the
        merge policy kept."""
        won, lost = (incoming, here) if incoming_won else (here, incoming)
        a, b = sorted([won[0], lost[0]], key=lambda s: (s.clock, s.origin, s.rank))
        cid = str(uuid.uuid5(CONFLICT_NS, f"{table}|{data['id']}|{col}|"
                                          f"{a.clock}|{a.origin}|{b.clock}|{b.origin}"))
        self._found.setdefault(cid, {
            "id": cid, "table_name": table, "row_id": data["id"], "column_name": col,
            "customer_id": customer_of(table, data),
            "branch": data.get("branch") if table == "customers" else None,
            "policy": policy.value,
            "winner_value": jsonable(won[1]), "loser_value": jsonable(lost[1]),
            "winner_node": won[0].origin, "loser_node": lost[0].origin,
            "winner_clock": won[0].clock, "loser_clock": lost[0].clock,
            "detected_by": self.node_id, "status": "open"})

    async def write(self, uow: UnitOfWork) -> int:
        """Write the noted records, each unless a copy exists; how many were written.

        Called once every row of the batch is applied: the sender, having detected the
        same conflict, may carry the very record in this batch, even among the rows of
        the table being merged (a conflict about a conflict record). Writing it at
        detection time would race the batch's own copy, whose insert is buffered or was
        decided before: a duplicate key. After the batch, whichever copy the batch
        brought is in place and ours is dropped (the same record, §5)."""
        found, self._found = self._found, {}
        written = 0
        for cid, values in found.items():
            exists = (await uow.conn.execute(select(sync_rows.c.cl).where(
                sync_rows.c.tbl == "conflicts", sync_rows.c.row_id == cid))).scalar()
            if exists is not None:
                continue
            customer = values["customer_id"]
            if values["table_name"] != "customers" and customer:
                values["branch"] = (await customer_branches(uow.conn, [customer])
                                    ).get(customer)
            await uow.insert("conflicts", values)
            written += 1
        return written
