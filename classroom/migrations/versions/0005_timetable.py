"""Term timetables: terms, holidays, make-up days, periods, lesson series and their
occurrences, calendar feeds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "terms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_year", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("region", sa.String(length=200), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_terms_date_order")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terms")),
        sa.UniqueConstraint("region", "name", name=op.f("uq_terms_region_name")),
    )
    op.create_table(
        "term_holidays",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.CheckConstraint("end_date >= start_date", name=op.f("ck_term_holidays_date_order")),
        sa.ForeignKeyConstraint(
            ["term_id"],
            ["terms.id"],
            name=op.f("fk_term_holidays_term_id_terms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_term_holidays")),
    )
    op.create_index(op.f("ix_term_holidays_term_id"), "term_holidays", ["term_id"], unique=False)
    op.create_table(
        "term_makeup_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("follows_weekday", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.CheckConstraint(
            "follows_weekday BETWEEN 1 AND 7", name=op.f("ck_term_makeup_days_weekday_range")
        ),
        sa.ForeignKeyConstraint(
            ["term_id"],
            ["terms.id"],
            name=op.f("fk_term_makeup_days_term_id_terms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_term_makeup_days")),
        sa.UniqueConstraint("term_id", "date", name=op.f("uq_term_makeup_days_term_id_date")),
    )
    op.create_table(
        "term_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.Time(), nullable=False),
        sa.Column("ends_at", sa.Time(), nullable=False),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_term_periods_time_order")),
        sa.ForeignKeyConstraint(
            ["term_id"],
            ["terms.id"],
            name=op.f("fk_term_periods_term_id_terms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_term_periods")),
        sa.UniqueConstraint("term_id", "number", name=op.f("uq_term_periods_term_id_number")),
    )
    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("classroom_id", sa.Integer(), nullable=True),
        sa.Column("teacher_user_id", sa.Integer(), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'classroom' AND classroom_id IS NOT NULL AND teacher_user_id IS NULL)"
            " OR (kind = 'teacher' AND teacher_user_id IS NOT NULL AND classroom_id IS NULL)",
            name=op.f("ck_calendar_feeds_one_subject"),
        ),
        sa.CheckConstraint(
            "kind IN ('classroom', 'teacher')", name=op.f("ck_calendar_feeds_kind_values")
        ),
        sa.ForeignKeyConstraint(
            ["classroom_id"],
            ["classrooms.id"],
            name=op.f("fk_calendar_feeds_classroom_id_classrooms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["teacher_user_id"],
            ["users.id"],
            name=op.f("fk_calendar_feeds_teacher_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_calendar_feeds_token_sha256")),
    )
    op.create_index(
        op.f("ix_calendar_feeds_classroom_id"), "calendar_feeds", ["classroom_id"], unique=False
    )
    op.create_index(
        op.f("ix_calendar_feeds_teacher_user_id"),
        "calendar_feeds",
        ["teacher_user_id"],
        unique=False,
    )
    op.create_table(
        "lesson_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("pairing_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("grade", sa.String(length=50), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("teacher_name", sa.String(length=100), nullable=False),
        sa.Column("teacher_user_id", sa.Integer(), nullable=True),
        sa.Column("broadcast", sa.Boolean(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=True),
        sa.Column("start_time", sa.Time(), nullable=True),
        sa.Column("end_time", sa.Time(), nullable=True),
        sa.Column("week_parity", sa.String(length=8), nullable=False),
        sa.Column("first_date", sa.Date(), nullable=True),
        sa.Column("last_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "week_parity IN ('all', 'odd', 'even')",
            name=op.f("ck_lesson_series_week_parity_values"),
        ),
        sa.CheckConstraint(
            "(period IS NOT NULL AND start_time IS NULL AND end_time IS NULL)"
            " OR (period IS NULL AND start_time IS NOT NULL AND end_time IS NOT NULL"
            " AND end_time > start_time)",
            name=op.f("ck_lesson_series_period_or_times"),
        ),
        sa.CheckConstraint("weekday BETWEEN 1 AND 7", name=op.f("ck_lesson_series_weekday_range")),
        sa.ForeignKeyConstraint(
            ["pairing_id"], ["pairings.id"], name=op.f("fk_lesson_series_pairing_id_pairings")
        ),
        sa.ForeignKeyConstraint(
            ["term_id"], ["terms.id"], name=op.f("fk_lesson_series_term_id_terms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_series")),
    )
    op.create_index(
        op.f("ix_lesson_series_pairing_id"), "lesson_series", ["pairing_id"], unique=False
    )
    op.create_index(op.f("ix_lesson_series_term_id"), "lesson_series", ["term_id"], unique=False)
    op.create_table(
        "series_occurrences",
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("occurrence_date", sa.Date(), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["lesson_id"],
            ["lessons.id"],
            name=op.f("fk_series_occurrences_lesson_id_lessons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["lesson_series.id"],
            name=op.f("fk_series_occurrences_series_id_lesson_series"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("lesson_id", name=op.f("pk_series_occurrences")),
        sa.UniqueConstraint(
            "series_id",
            "occurrence_date",
            name=op.f("uq_series_occurrences_series_id_occurrence_date"),
        ),
    )


def downgrade() -> None:
    op.drop_table("series_occurrences")
    op.drop_index(op.f("ix_lesson_series_term_id"), table_name="lesson_series")
    op.drop_index(op.f("ix_lesson_series_pairing_id"), table_name="lesson_series")
    op.drop_table("lesson_series")
    op.drop_index(op.f("ix_calendar_feeds_teacher_user_id"), table_name="calendar_feeds")
    op.drop_index(op.f("ix_calendar_feeds_classroom_id"), table_name="calendar_feeds")
    op.drop_table("calendar_feeds")
    op.drop_table("term_periods")
    op.drop_table("term_makeup_days")
    op.drop_index(op.f("ix_term_holidays_term_id"), table_name="term_holidays")
    op.drop_table("term_holidays")
    op.drop_table("terms")
