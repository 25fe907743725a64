"""Alerts of the live overview: what an admin must look at now.

Two kinds (issue 6):
- **not_started**: a lesson still scheduled or open `NOT_STARTED_AFTER` past its planned
  start, its main room not connected, and its planned end not yet reached (after that it
  is a missed lesson, which the statistics count). The same five minutes as a lesson's
  "late" flag (classroom/lesson_stats.py), so an alert and a late mark mean one thing.
- **dropped**: a room of an open or live lesson whose last connection ended `dropped`
  (the link went away without a goodbye) and that has not come back. A room that rejoins
  gets a new open row, and the alert goes.

Computed from the attendance rows (`room_sessions`), not from this process's memory, so
every node and a restarted server see the same alerts. `alerts_of` is pure, for tests on
constructed rows; `live_alerts` loads the rows (a few dozen lessons at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.attendance import DROPPED
from classroom.lesson_stats import LATE_AFTER
from classroom.models import (
    Classroom,
    Lesson,
    LessonRoom,
    LessonState,
    RoomRole,
    RoomSession,
    School,
    utcnow,
)

NOT_STARTED_AFTER = LATE_AFTER
# Open and live lessons, and scheduled ones that may be late: an overview shows tens.
MAX_LESSONS = 500


class AlertKind(StrEnum):
    NOT_STARTED = "not_started"
    DROPPED = "dropped"


@dataclass(frozen=True)
class PlannedRoom:
    classroom_id: int
    classroom_name: str
    school_id: int
    school_name: str
    role: str  # RoomRole


@dataclass(frozen=True)
class WatchedLesson:
    """A lesson as the alerts need it: its plan, state and rooms (main first)."""

    lesson_id: int
    title: str
    state: str  # LessonState
    planned_start: datetime
    planned_end: datetime
    rooms: tuple[PlannedRoom, ...]


@dataclass(frozen=True)
class Attendance:
    """One attendance row (room_sessions) of a watched lesson."""

    lesson_id: int
    classroom_id: int
    joined_at: datetime
    left_at: datetime | None  # None: connected now
    end_reason: str | None = None


@dataclass(frozen=True)
class Alert:
    kind: str  # AlertKind
    lesson_id: int
    lesson_title: str
    lesson_state: str
    planned_start: datetime
    classroom_id: int  # not_started: the main room; dropped: the room that dropped
    classroom_name: str
    school_id: int
    school_name: str
    role: str
    since: datetime  # not_started: the planned start; dropped: when the link went

    @property
    def key(self) -> str:
        """Stable while the alert lasts (a page keeps its row and focus across updates)."""
        return f"{self.kind}:{self.lesson_id}:{self.classroom_id}:{self.since.isoformat()}"


def alerts_of(
    lessons: Sequence[WatchedLesson], rows: Sequence[Attendance], *, now: datetime
) -> list[Alert]:
    """The alerts these lessons and rows raise at `now`, oldest first."""
    by_room: dict[tuple[int, int], list[Attendance]] = {}
    for row in rows:
        by_room.setdefault((row.lesson_id, row.classroom_id), []).append(row)
    found: list[Alert] = []
    for lesson in lessons:
        for room in lesson.rooms:
            history = by_room.get((lesson.lesson_id, room.classroom_id), [])
            connected = any(r.left_at is None for r in history)
            if (
                room.role == RoomRole.MAIN
                and lesson.state in (LessonState.SCHEDULED, LessonState.OPEN)
                and not connected
                and lesson.planned_start + NOT_STARTED_AFTER <= now < lesson.planned_end
            ):
                found.append(_alert(AlertKind.NOT_STARTED, lesson, room, lesson.planned_start))
            if lesson.state in (LessonState.OPEN, LessonState.LIVE) and history and not connected:
                last = max(history, key=lambda r: (r.left_at or now, r.joined_at))
                if last.end_reason == DROPPED and last.left_at is not None:
                    found.append(_alert(AlertKind.DROPPED, lesson, room, last.left_at))
    found.sort(key=lambda a: (a.since, a.lesson_id, a.kind, a.classroom_id))
    return found


def _alert(kind: AlertKind, lesson: WatchedLesson, room: PlannedRoom, since: datetime) -> Alert:
    return Alert(
        kind=kind.value,
        lesson_id=lesson.lesson_id,
        lesson_title=lesson.title,
        lesson_state=lesson.state,
        planned_start=lesson.planned_start,
        classroom_id=room.classroom_id,
        classroom_name=room.classroom_name,
        school_id=room.school_id,
        school_name=room.school_name,
        role=room.role,
        since=since,
    )


async def live_alerts(
    db: AsyncSession,
    *,
    now: datetime | None = None,
    involving_school_id: int | None = None,
    teacher_user_id: int | None = None,
) -> list[Alert]:
    """The alerts of lessons open or live now, or scheduled and overdue.

    `involving_school_id` limits them to lessons with a room of that school (a school
    admin's view), `teacher_user_id` to that teacher's lessons.
    """
    now = now or utcnow()
    query = sa.select(
        Lesson.id, Lesson.title, Lesson.state, Lesson.planned_start, Lesson.planned_end
    ).where(
        sa.or_(
            Lesson.state.in_([LessonState.OPEN.value, LessonState.LIVE.value]),
            sa.and_(
                Lesson.state == LessonState.SCHEDULED.value,
                Lesson.planned_start <= now - NOT_STARTED_AFTER,
                Lesson.planned_end > now,
            ),
        )
    )
    if involving_school_id is not None:
        query = query.where(
            Lesson.id.in_(
                sa.select(LessonRoom.lesson_id)
                .join(Classroom, Classroom.id == LessonRoom.classroom_id)
                .where(Classroom.school_id == involving_school_id)
            )
        )
    if teacher_user_id is not None:
        query = query.where(Lesson.teacher_user_id == teacher_user_id)
    query = query.order_by(Lesson.planned_start, Lesson.id).limit(MAX_LESSONS)
    plans = (await db.execute(query)).all()
    if not plans:
        return []
    ids = [p.id for p in plans]
    room_rows = await db.execute(
        sa.select(
            LessonRoom.lesson_id,
            LessonRoom.classroom_id,
            LessonRoom.role,
            LessonRoom.position,
            Classroom.name,
            School.id,
            School.name,
        )
        .join(Classroom, Classroom.id == LessonRoom.classroom_id)
        .join(School, School.id == Classroom.school_id)
        .where(LessonRoom.lesson_id.in_(ids))
    )
    rooms: dict[int, list[tuple[bool, int, PlannedRoom]]] = {}
    for lesson_id, classroom_id, role, position, room_name, school_id, school_name in room_rows:
        planned = PlannedRoom(classroom_id, room_name, school_id, school_name, role)
        rooms.setdefault(lesson_id, []).append((role != RoomRole.MAIN, position, planned))
    attendance = await db.execute(
        sa.select(
            RoomSession.lesson_id,
            RoomSession.classroom_id,
            RoomSession.joined_at,
            RoomSession.left_at,
            RoomSession.end_reason,
        ).where(RoomSession.lesson_id.in_(ids))
    )
    lessons = [
        WatchedLesson(
            lesson_id=p.id,
            title=p.title,
            state=p.state,
            planned_start=p.planned_start,
            planned_end=p.planned_end,
            rooms=tuple(r for *_, r in sorted(rooms.get(p.id, []), key=lambda x: x[:2])),
        )
        for p in plans
    ]
    return alerts_of(lessons, [Attendance(*row) for row in attendance.all()], now=now)
