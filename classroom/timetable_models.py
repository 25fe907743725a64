"""The tables of term timetables: terms, their calendar and periods, lesson series, feeds.

Declared on the domain's Base (classroom/schema.py loads this module, so that Alembic and
the schema test see one metadata); revision 0005 creates them.

A series never owns its lessons' rows: each occurrence it generates is an ordinary
`lessons` row (so the live side, the library and statistics need no second notion of a
lesson), tied back to the series by one `series_occurrences` row. That link row, not a
column on `lessons`, carries the occurrence date and whether the occurrence was changed by
hand; it keeps `lessons` untouched (no SQLite table rebuild) and lets regeneration find
"its" lessons with one indexed query.
"""

from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from classroom.models import Base, _enum_check, utcnow


class WeekParity(StrEnum):
    """Which teaching weeks a series meets: every week, or odd/even weeks (单双周)."""

    ALL = "all"
    ODD = "odd"
    EVEN = "even"


class FeedKind(StrEnum):
    CLASSROOM = "classroom"
    TEACHER = "teacher"


class Term(Base):
    """学期: one school calendar set by the education bureau for the schools of a region.

    District-wide, not per school: a pairing spans a city school and rural ones, and its
    lessons need one answer to "is 10-08 a school day"; the bureau publishes that calendar
    (校历) for all of them. The periods (节次) are the term's too: a synchronous lesson runs
    on the main classroom's clock, which the receiving rooms follow.
    """

    __tablename__ = "terms"
    __table_args__ = (
        sa.UniqueConstraint("region", "name"),
        sa.CheckConstraint("end_date >= start_date", name="date_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_year: Mapped[str] = mapped_column(sa.String(20))  # "2026-2027"
    name: Mapped[str] = mapped_column(sa.String(100))  # "2026秋" / "第一学期"
    region: Mapped[str] = mapped_column(sa.String(200), default="")
    start_date: Mapped[date] = mapped_column(sa.Date)
    end_date: Mapped[date] = mapped_column(sa.Date)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    holidays: Mapped[list[TermHoliday]] = relationship(
        lazy="selectin", order_by="TermHoliday.start_date", cascade="all, delete-orphan"
    )
    makeup_days: Mapped[list[TermMakeupDay]] = relationship(
        lazy="selectin", order_by="TermMakeupDay.date", cascade="all, delete-orphan"
    )
    periods: Mapped[list[TermPeriod]] = relationship(
        lazy="selectin", order_by="TermPeriod.number", cascade="all, delete-orphan"
    )


class TermHoliday(Base):
    """A range of days (inclusive) with no lessons: 国庆节 10-01..10-07."""

    __tablename__ = "term_holidays"
    __table_args__ = (sa.CheckConstraint("end_date >= start_date", name="date_order"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    start_date: Mapped[date] = mapped_column(sa.Date)
    end_date: Mapped[date] = mapped_column(sa.Date)


class TermMakeupDay(Base):
    """调休: a day (often a Saturday) that follows the timetable of another weekday."""

    __tablename__ = "term_makeup_days"
    __table_args__ = (
        sa.UniqueConstraint("term_id", "date"),
        sa.CheckConstraint("follows_weekday BETWEEN 1 AND 7", name="weekday_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id", ondelete="CASCADE"))
    date: Mapped[date] = mapped_column(sa.Date)
    follows_weekday: Mapped[int]  # ISO: 1 = Monday .. 7 = Sunday
    name: Mapped[str] = mapped_column(sa.String(100), default="")


class TermPeriod(Base):
    """节次: period `number` runs from `starts_at` to `ends_at`, local time of the term."""

    __tablename__ = "term_periods"
    __table_args__ = (
        sa.UniqueConstraint("term_id", "number"),
        sa.CheckConstraint("ends_at > starts_at", name="time_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id", ondelete="CASCADE"))
    number: Mapped[int]
    starts_at: Mapped[time] = mapped_column(sa.Time)
    ends_at: Mapped[time] = mapped_column(sa.Time)


class LessonSeries(Base):
    """A weekly lesson of a pairing on a term: weekday + period, or weekday + local times.

    `week_parity` picks odd or even teaching weeks (week 1 holds the term's first day);
    `first_date`/`last_date` narrow the series to part of the term.
    """

    __tablename__ = "lesson_series"
    __table_args__ = (
        _enum_check("week_parity", WeekParity),
        sa.CheckConstraint("weekday BETWEEN 1 AND 7", name="weekday_range"),
        sa.CheckConstraint(
            "(period IS NOT NULL AND start_time IS NULL AND end_time IS NULL)"
            " OR (period IS NULL AND start_time IS NOT NULL AND end_time IS NOT NULL"
            " AND end_time > start_time)",
            name="period_or_times",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"), index=True)
    pairing_id: Mapped[int] = mapped_column(sa.ForeignKey("pairings.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    subject: Mapped[str] = mapped_column(sa.String(100))
    grade: Mapped[str] = mapped_column(sa.String(50))
    title: Mapped[str] = mapped_column(sa.String(300))
    teacher_name: Mapped[str] = mapped_column(sa.String(100))
    teacher_user_id: Mapped[int | None]
    broadcast: Mapped[bool]
    weekday: Mapped[int]  # ISO: 1 = Monday .. 7 = Sunday
    period: Mapped[int | None]
    start_time: Mapped[time | None] = mapped_column(sa.Time)
    end_time: Mapped[time | None] = mapped_column(sa.Time)
    week_parity: Mapped[str] = mapped_column(sa.String(8), default=WeekParity.ALL.value)
    first_date: Mapped[date | None] = mapped_column(sa.Date)
    last_date: Mapped[date | None] = mapped_column(sa.Date)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SeriesOccurrence(Base):
    """Links one generated lesson to its series and the date the series gave it.

    `changed` marks an occurrence edited here by hand (moved, teacher substituted,
    cancelled); `fingerprint` is the digest of what the series generated (times, teacher,
    subject, title...), so an edit made by any other path (a PATCH of the lesson) is seen
    too. Regeneration touches only occurrences that are unchanged by both tests, and the
    unique (series, date) keeps a changed one from being made again.
    """

    __tablename__ = "series_occurrences"
    __table_args__ = (sa.UniqueConstraint("series_id", "occurrence_date"),)

    lesson_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )
    series_id: Mapped[int] = mapped_column(sa.ForeignKey("lesson_series.id", ondelete="CASCADE"))
    occurrence_date: Mapped[date] = mapped_column(sa.Date)
    changed: Mapped[bool] = mapped_column(default=False)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))


class CalendarFeed(Base):
    """A subscribable iCalendar URL for one classroom or one teacher.

    Its token is not a login: it reads one calendar and nothing else, so a calendar
    program can hold it. Only the SHA-256 is kept, as for API tokens.
    """

    __tablename__ = "calendar_feeds"
    __table_args__ = (
        _enum_check("kind", FeedKind),
        sa.CheckConstraint(
            "(kind = 'classroom' AND classroom_id IS NOT NULL AND teacher_user_id IS NULL)"
            " OR (kind = 'teacher' AND teacher_user_id IS NOT NULL AND classroom_id IS NULL)",
            name="one_subject",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    classroom_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("classrooms.id", ondelete="CASCADE"), index=True
    )
    teacher_user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    created_by_id: Mapped[int | None]  # no foreign key, as in the audit trail
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)
