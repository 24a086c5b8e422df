"""Columns each node computes for itself from replicated ones (never replicated)."""

from __future__ import annotations

from typing import Any

from schema._values import search_keys


def derive(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """The derived columns of `row` in `table`, recomputed from its current values."""
    if table == "customers":
        return {"search_keys": search_keys(row.get("name") or "")}
    return {}
