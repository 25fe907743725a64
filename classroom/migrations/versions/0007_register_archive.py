"""Archived schools, classrooms and pairings (an `active` flag on each).

Something lessons or recordings refer to is never deleted: it is archived instead, so the
history keeps its names while the admin pages and the scheduler offer it for nothing new.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("schools", "classrooms", "pairings")


def upgrade() -> None:
    # add_column with a server default: SQLite adds it in place, no table rebuild (which
    # would cascade-delete the rows that refer to these tables).
    for table in TABLES:
        op.add_column(
            table, sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35 has it): a batch rebuild of `schools` or
    # `classrooms` would trip or cascade the foreign keys that point at them.
    for table in TABLES:
        op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN active"))
