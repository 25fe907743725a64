"""The resource library: recordings and their files, timed comments, rubrics and ratings.

Seeds the default 评课量表 (five criteria, weights summing to 100).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 12:51:21.814177
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A copy, not an import: a revision must not change when the application code does.
DEFAULT_RUBRIC_NAME = "评课量表（默认）"
DEFAULT_RUBRIC_CRITERIA = [
    {"key": "objectives", "name": "教学目标", "weight": 20, "max_score": 10},
    {"key": "process", "name": "教学过程", "weight": 25, "max_score": 10},
    {"key": "interaction", "name": "师生互动", "weight": 20, "max_score": 10},
    {"key": "technology", "name": "技术运用", "weight": 15, "max_score": 10},
    {"key": "outcomes", "name": "教学效果", "weight": 20, "max_score": 10},
]


def upgrade() -> None:
    op.create_table(
        "rubrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rubrics")),
        sa.UniqueConstraint("name", name=op.f("uq_rubrics_name")),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("grade", sa.String(length=50), nullable=False),
        sa.Column("teacher_name", sa.String(length=100), nullable=False),
        sa.Column("main_school_id", sa.Integer(), nullable=True),
        sa.Column("main_school", sa.String(length=200), nullable=False),
        sa.Column("receiving_schools", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("term", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('dedicated', 'famous_teacher', 'famous_school')",
            name=op.f("ck_recordings_kind_values"),
        ),
        sa.CheckConstraint(
            "state IN ('processing', 'ready', 'failed')", name=op.f("ck_recordings_state_values")
        ),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["lessons.id"],
            name=op.f("fk_recordings_lesson_id_lessons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["main_school_id"], ["schools.id"], name=op.f("fk_recordings_main_school_id_schools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("lesson_id", name=op.f("uq_recordings_lesson_id")),
    )
    op.create_index(op.f("ix_recordings_grade"), "recordings", ["grade"], unique=False)
    op.create_index(op.f("ix_recordings_started_at"), "recordings", ["started_at"], unique=False)
    op.create_index(op.f("ix_recordings_subject"), "recordings", ["subject"], unique=False)
    op.create_index(op.f("ix_recordings_term"), "recordings", ["term"], unique=False)

    op.create_table(
        "recording_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("t_s", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_comments_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_comments")),
    )
    op.create_index(
        op.f("ix_recording_comments_recording_id"),
        "recording_comments",
        ["recording_id"],
        unique=False,
    )

    op.create_table(
        "recording_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("classroom_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("mime", sa.String(length=200), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('room_video', 'room_audio', 'composite', 'hls_playlist', "
            "'hls_segment', 'poster', 'thumbnail_strip', 'chapters')",
            name=op.f("ck_recording_files_role_values"),
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_files_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_files")),
        sa.UniqueConstraint("key", name=op.f("uq_recording_files_key")),
    )
    op.create_index(
        op.f("ix_recording_files_recording_id"), "recording_files", ["recording_id"], unique=False
    )

    op.create_table(
        "recording_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("rubric_id", sa.Integer(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_ratings_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rubric_id"], ["rubrics.id"], name=op.f("fk_recording_ratings_rubric_id_rubrics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_ratings")),
        sa.UniqueConstraint(
            "recording_id", "user_id", name=op.f("uq_recording_ratings_recording_id_user_id")
        ),
    )
    op.create_index(
        op.f("ix_recording_ratings_recording_id"),
        "recording_ratings",
        ["recording_id"],
        unique=False,
    )

    rubrics = sa.table(
        "rubrics",
        sa.column("name", sa.String),
        sa.column("criteria", sa.JSON),
        sa.column("is_default", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(
        rubrics,
        [
            {
                "name": DEFAULT_RUBRIC_NAME,
                "criteria": DEFAULT_RUBRIC_CRITERIA,
                "is_default": True,
                "created_at": datetime.now(UTC).replace(tzinfo=None)
                if op.get_bind().dialect.name == "sqlite"
                else datetime.now(UTC),
            }
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_recording_ratings_recording_id"), table_name="recording_ratings")

    op.drop_table("recording_ratings")
    op.drop_index(op.f("ix_recording_files_recording_id"), table_name="recording_files")

    op.drop_table("recording_files")
    op.drop_index(op.f("ix_recording_comments_recording_id"), table_name="recording_comments")

    op.drop_table("recording_comments")
    op.drop_index(op.f("ix_recordings_term"), table_name="recordings")
    op.drop_index(op.f("ix_recordings_subject"), table_name="recordings")
    op.drop_index(op.f("ix_recordings_started_at"), table_name="recordings")
    op.drop_index(op.f("ix_recordings_grade"), table_name="recordings")

    op.drop_table("recordings")
    op.drop_table("rubrics")
