"""customers.merged_into indexed for merged rows only

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

SQLite keeps no statistics, so it took the full index for `merged_into IS NULL` (nearly
every customer): a page of the customer list walked and sorted them all. The partial
index serves only what it is for, finding the customers merged into one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHERE = sa.text("merged_into IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_customers_merged_into", table_name="customers")
    op.create_index("ix_customers_merged_into", "customers", ["merged_into"], unique=False,
                    sqlite_where=_WHERE, postgresql_where=_WHERE)


def downgrade() -> None:
    op.drop_index("ix_customers_merged_into", table_name="customers")
    op.create_index("ix_customers_merged_into", "customers", ["merged_into"], unique=False)
