"""Response bodies of importing customer lists from files (server/api/transfer.py).
Exports answer with the file itself."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

Format = Literal["csv", "xlsx"]
Purpose = Literal["marketing", "sharing", "internal"]


class RowError(Struct, kw_only=True):
    row: int
    """The row number as the spreadsheet shows it (the header is row 1)."""
    column: str
    """The column's header as written in the file (or the field, if it has none)."""
    message: str


class RowDuplicate(Struct, kw_only=True, omit_defaults=True):
    row: int
    by: str
    """`mobile` or `id_number`."""
    existing_id: str | None = None
    """The archive registered before (its surviving archive, if it was merged)."""
    other_row: int | None = None
    """An earlier row of the same file."""


class RowSimilar(Struct, kw_only=True):
    row: int
    existing_id: str
    """A customer with the same (or a homophone) name: imported anyway, worth a look."""


class FileImportReport(Struct, kw_only=True, omit_defaults=True):
    format: Format
    dry_run: bool
    rows: int
    """Data rows in the file (empty rows not counted)."""
    valid: int
    """Rows that are valid and no duplicate: what a commit writes."""
    errors: list[RowError]
    duplicates: list[RowDuplicate]
    similar: list[RowSimilar] = msgspec.field(default_factory=list)
    ignored_columns: list[str] = msgspec.field(default_factory=list)
    """Headers that name no customer field: their cells were not read."""
    created: int | None = None
    """Customers written (a commit only)."""
    skipped: list[int] | None = None
    """Row numbers not written (a commit only): errors and duplicates."""
