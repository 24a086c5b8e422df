"""customer list filters indexed with the id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

The customer list filters by class, stage, ABC class, branch or owner and pages by id,
newest first. With only the column in the index, SQLite (which keeps no statistics)
fetched every match and sorted them for one page: 84-118 ms at 100,000 customers. With
the id in the index a page is a range of it: 0.2 ms.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = ("customer_class", "lifecycle_stage", "abc_class", "branch", "owner_id")


def upgrade() -> None:
    for column in _COLUMNS:
        op.drop_index(f"ix_customers_{column}", table_name="customers")
        op.create_index(f"ix_customers_{column}_id", "customers", [column, "id"], unique=False)


def downgrade() -> None:
    for column in _COLUMNS:
        op.drop_index(f"ix_customers_{column}_id", table_name="customers")
        op.create_index(f"ix_customers_{column}", "customers", [column], unique=False)
