"""Where each recorded file starts on the lesson clock (recording_files.offset_s).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("recording_files", sa.Column("offset_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording_files") as batch:
        batch.drop_column("offset_s")
