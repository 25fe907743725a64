"""Attendance written as it happens, link samples, and lesson summaries (常态化 statistics).

room_sessions gains `reconnects` (earlier connections of the room to the lesson) and
`cause` (the connection's own close reason); link_samples, lesson_stats and
lesson_room_stats are new (classroom/statistics_models.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "room_sessions",
        sa.Column("reconnects", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("room_sessions", sa.Column("cause", sa.String(length=100), nullable=True))

    op.create_table(
        "link_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("classroom_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("bitrate_kbps", sa.Float(), nullable=False),
        sa.Column("packets", sa.Integer(), nullable=False),
        sa.Column("packets_lost", sa.Integer(), nullable=False),
        sa.Column("jitter_ms", sa.Float(), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.Column("freezes", sa.Integer(), nullable=False),
        sa.Column("freeze_ms", sa.Integer(), nullable=False),
        sa.Column("keyframe_requests", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "direction IN ('up', 'down')", name=op.f("ck_link_samples_direction_values")
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["lessons.id"],
            name=op.f("fk_link_samples_lesson_id_lessons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_samples")),
    )
    op.create_index(
        op.f("ix_link_samples_lesson_id_classroom_id_at"),
        "link_samples",
        ["lesson_id", "classroom_id", "at"],
        unique=False,
    )

    op.create_table(
        "lesson_stats",
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("planned_s", sa.Float(), nullable=False),
        sa.Column("together_s", sa.Float(), nullable=False),
        sa.Column("main_first_join_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("main_lateness_s", sa.Float(), nullable=True),
        sa.Column("rooms_planned", sa.Integer(), nullable=False),
        sa.Column("rooms_joined", sa.Integer(), nullable=False),
        sa.Column("reconnects", sa.Integer(), nullable=False),
        sa.Column("drops", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "verdict IN ('held', 'partial', 'missed', 'cancelled')",
            name=op.f("ck_lesson_stats_verdict_values"),
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["lessons.id"],
            name=op.f("fk_lesson_stats_lesson_id_lessons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("lesson_id", name=op.f("pk_lesson_stats")),
    )
    op.create_index(op.f("ix_lesson_stats_verdict"), "lesson_stats", ["verdict"], unique=False)

    op.create_table(
        "lesson_room_stats",
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("classroom_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("attendance_s", sa.Float(), nullable=False),
        sa.Column("connected_s", sa.Float(), nullable=False),
        sa.Column("first_join_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lateness_s", sa.Float(), nullable=True),
        sa.Column("reconnects", sa.Integer(), nullable=False),
        sa.Column("drops", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("up_bitrate_mean_kbps", sa.Float(), nullable=True),
        sa.Column("up_bitrate_p95_kbps", sa.Float(), nullable=True),
        sa.Column("down_bitrate_mean_kbps", sa.Float(), nullable=True),
        sa.Column("down_bitrate_p95_kbps", sa.Float(), nullable=True),
        sa.Column("up_loss", sa.Float(), nullable=True),
        sa.Column("down_loss", sa.Float(), nullable=True),
        sa.Column("up_jitter_ms", sa.Float(), nullable=True),
        sa.Column("down_jitter_ms", sa.Float(), nullable=True),
        sa.Column("rtt_mean_ms", sa.Float(), nullable=True),
        sa.Column("rtt_p95_ms", sa.Float(), nullable=True),
        sa.Column("up_freezes", sa.Integer(), nullable=False),
        sa.Column("up_freeze_s", sa.Float(), nullable=False),
        sa.Column("down_freezes", sa.Integer(), nullable=False),
        sa.Column("down_freeze_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["lessons.id"],
            name=op.f("fk_lesson_room_stats_lesson_id_lessons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("lesson_id", "classroom_id", name=op.f("pk_lesson_room_stats")),
    )
    op.create_index(
        op.f("ix_lesson_room_stats_classroom_id"),
        "lesson_room_stats",
        ["classroom_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_lesson_room_stats_classroom_id"), table_name="lesson_room_stats")
    op.drop_table("lesson_room_stats")
    op.drop_index(op.f("ix_lesson_stats_verdict"), table_name="lesson_stats")
    op.drop_table("lesson_stats")
    op.drop_index(op.f("ix_link_samples_lesson_id_classroom_id_at"), table_name="link_samples")
    op.drop_table("link_samples")
    with op.batch_alter_table("room_sessions") as batch:
        batch.drop_column("cause")
        batch.drop_column("reconnects")
