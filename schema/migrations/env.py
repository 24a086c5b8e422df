"""Alembic environment: migrations run on the connection Branchline hands in."""

from __future__ import annotations

from alembic import context

from schema._tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Branchline migrations run through schema.Database.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
