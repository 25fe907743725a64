"""A device account belongs to one classroom (users.classroom_id).

A classroom box's account used to act for every classroom of its school: a box stolen or
misconfigured in one room could join, as any other room of the school, lessons whose
pictures and voices are those of minors. Now it is the classroom's own credential.

Existing device rows are left without a classroom: the server refuses them, saying so,
until an admin binds each to its classroom (PATCH /api/v1/users/{id} {"classroom_id"} or
`tongbu admin bind-device`). Guessing the classroom here could hand a box another room.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK_NAME = "fk_users_classroom_id_classrooms"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its REFERENCES in place; Alembic would want a batch
        # rebuild of `users`, which cascade-deletes every session and API token.
        op.execute(
            sa.text(
                "ALTER TABLE users ADD COLUMN classroom_id INTEGER "
                f"CONSTRAINT {FK_NAME} REFERENCES classrooms (id)"
            )
        )
        return
    op.add_column("users", sa.Column("classroom_id", sa.Integer(), nullable=True))
    op.create_foreign_key(FK_NAME, "users", "classrooms", ["classroom_id"], ["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(FK_NAME, "users", type_="foreignkey")
    # A plain DROP COLUMN (SQLite >= 3.35 has it), for the same reason as above.
    op.execute(sa.text("ALTER TABLE users DROP COLUMN classroom_id"))
