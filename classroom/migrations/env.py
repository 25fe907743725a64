"""Alembic environment: runs on the connection classroom.db hands over.

Kept free of alembic.ini and of URL handling so that migrations always run on the very
engine (and SQLite pragmas) the server uses.
"""

from __future__ import annotations

from alembic import context

from classroom.schema import METADATA

target_metadata = METADATA

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through classroom.db.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
