"""The tables of 常态化 statistics: link samples taken during lessons, and lesson summaries.

Declared on the domain's Base (classroom/schema.py loads this module, so that Alembic and
the schema test see one metadata); revision 0006 creates them. Attendance
itself is `room_sessions` (classroom/models.py), written by classroom/attendance.py.

- `link_samples`: every few seconds, per room and direction, what the server measured on
  that room's link (signaling/services/quality_sampler.py). Compact on purpose: a city term is tens
  of millions of rows, read only to summarise one lesson.
- `lesson_stats` / `lesson_room_stats`: one lesson's summary and its rooms' (computed at
  lesson end by classroom/lesson_stats.py, recomputable at will); what the statistics pages
  aggregate with GROUP BY, never the samples.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from classroom.models import Base, _enum_check, utcnow


class LinkDirection(StrEnum):
    UP = "up"  # room → server: what the room publishes
    DOWN = "down"  # server → room: what the room receives


class LessonVerdict(StrEnum):
    HELD = "held"  # main and a receiving room together for most of the planned time
    PARTIAL = "partial"  # rooms joined, but not together long enough
    MISSED = "missed"  # scheduled, not cancelled, and nobody joined
    CANCELLED = "cancelled"


class LinkSample(Base):
    """One room's link in one direction over one sampling interval ending at `at`."""

    __tablename__ = "link_samples"
    __table_args__ = (
        _enum_check("direction", LinkDirection),
        sa.Index(None, "lesson_id", "classroom_id", "at"),
    )

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    )
    lesson_id: Mapped[int] = mapped_column(sa.ForeignKey("lessons.id", ondelete="CASCADE"))
    # No foreign key: classrooms are archived, never deleted, and the check costs per row.
    classroom_id: Mapped[int]
    at: Mapped[datetime]  # end of the interval
    direction: Mapped[str] = mapped_column(sa.String(4))
    seconds: Mapped[float] = mapped_column(sa.Float)  # length of the interval
    bitrate_kbps: Mapped[float] = mapped_column(sa.Float)  # RTP payload, all tracks
    packets: Mapped[int]  # sent (down) or expected (up) in the interval
    packets_lost: Mapped[int]
    jitter_ms: Mapped[float] = mapped_column(sa.Float)
    rtt_ms: Mapped[float | None] = mapped_column(sa.Float)  # from LSR/DLSR; one path, both rows
    freezes: Mapped[int]
    freeze_ms: Mapped[int]
    # down: PLI/FIR the room sent; up: keyframes the server asked of the room.
    keyframe_requests: Mapped[int]


class LessonStats(Base):
    """What happened in one lesson, against its plan (classroom/lesson_stats.py)."""

    __tablename__ = "lesson_stats"
    __table_args__ = (_enum_check("verdict", LessonVerdict), sa.Index(None, "verdict"))

    lesson_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    verdict: Mapped[str] = mapped_column(sa.String(16))
    late: Mapped[bool]
    planned_s: Mapped[float] = mapped_column(sa.Float)
    # Seconds of the planned time with the main room and >= 1 receiving room connected.
    together_s: Mapped[float] = mapped_column(sa.Float)
    main_first_join_at: Mapped[datetime | None]
    main_lateness_s: Mapped[float | None] = mapped_column(sa.Float)  # negative: early
    rooms_planned: Mapped[int]
    rooms_joined: Mapped[int]
    reconnects: Mapped[int]
    drops: Mapped[int]


class LessonRoomStats(Base):
    """One room's attendance and link in one lesson."""

    __tablename__ = "lesson_room_stats"

    lesson_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )
    classroom_id: Mapped[int] = mapped_column(primary_key=True, index=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    attendance_s: Mapped[float] = mapped_column(sa.Float)  # connected within the planned time
    connected_s: Mapped[float] = mapped_column(sa.Float)  # connected at all
    first_join_at: Mapped[datetime | None]
    lateness_s: Mapped[float | None] = mapped_column(sa.Float)  # first join - planned start
    reconnects: Mapped[int]
    drops: Mapped[int]
    samples: Mapped[int]  # sampling intervals behind the link figures (per direction)
    up_bitrate_mean_kbps: Mapped[float | None] = mapped_column(sa.Float)
    up_bitrate_p95_kbps: Mapped[float | None] = mapped_column(sa.Float)
    down_bitrate_mean_kbps: Mapped[float | None] = mapped_column(sa.Float)
    down_bitrate_p95_kbps: Mapped[float | None] = mapped_column(sa.Float)
    up_loss: Mapped[float | None] = mapped_column(sa.Float)  # fraction 0..1, packet-weighted
    down_loss: Mapped[float | None] = mapped_column(sa.Float)
    up_jitter_ms: Mapped[float | None] = mapped_column(sa.Float)
    down_jitter_ms: Mapped[float | None] = mapped_column(sa.Float)
    rtt_mean_ms: Mapped[float | None] = mapped_column(sa.Float)
    rtt_p95_ms: Mapped[float | None] = mapped_column(sa.Float)
    up_freezes: Mapped[int]
    up_freeze_s: Mapped[float] = mapped_column(sa.Float)
    down_freezes: Mapped[int]
    down_freeze_s: Mapped[float] = mapped_column(sa.Float)
