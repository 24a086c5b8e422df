"""Who is acting: the authenticated user as services see it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schema import ROLES


@dataclass(frozen=True)
class Principal:
    """An authenticated, active user."""

    id: str
    username: str
    display_name: str
    role: str
    branch: str | None
    department: str | None
    token_version: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Principal:
        assert row["role"] in ROLES
        return cls(
            id=row["id"], username=row["username"], display_name=row["display_name"],
            role=row["role"], branch=row["branch"], department=row["department"],
            token_version=row["token_version"], created_at=row["created_at"],
        )

    @property
    def hq_wide(self) -> bool:
        """Sees every branch (an HQ user whose role is not limited to own records)."""
        return self.branch is None and self.role not in ("sales_rep", "dept_manager")
