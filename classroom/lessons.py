"""Lessons: scheduling without double booking, the state machine, rosters and attendance.

A lesson copies its pairing's rooms when it is created (lesson_rooms), so the roster the
live side loads is the one that was scheduled, whatever happens to the pairing later.

State machine (scheduled → open → live → ended, plus cancelled; docs/ARCHITECTURE.md):

    scheduled → open → live → ended
    scheduled | open → cancelled
    open → ended            (opened but nobody taught: closed by the scheduler or an admin)
    scheduled → ended       (missed: its whole time passed while no scheduler ran; not held)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import conflicts, refusals, schools
from classroom.models import (
    Classroom,
    Conflict,
    InvalidInput,
    Lesson,
    LessonKind,
    LessonRoom,
    LessonState,
    NotFound,
    Pairing,
    RoomRole,
    RoomSession,
    UTCDateTime,
    utcnow,
)
from classroom.timetable_models import SeriesOccurrence

__all__ = [
    "ALLOWED",
    "KEEP",
    "IllegalTransition",
    "LessonKind",
    "LessonNotEditable",
    "LessonNotFound",
    "LessonRoster",
    "LessonState",
    "RosterRoom",
    "create_lesson",
    "get_lesson",
    "list_lessons",
    "list_room_sessions",
    "load_roster",
    "record_room_session",
    "transition",
    "transition_if",
    "update_lesson",
]

ALLOWED: dict[LessonState, frozenset[LessonState]] = {
    LessonState.SCHEDULED: frozenset({LessonState.OPEN, LessonState.CANCELLED, LessonState.ENDED}),
    LessonState.OPEN: frozenset({LessonState.LIVE, LessonState.ENDED, LessonState.CANCELLED}),
    LessonState.LIVE: frozenset({LessonState.ENDED}),
    LessonState.ENDED: frozenset(),
    LessonState.CANCELLED: frozenset(),
}

# Every lesson but a cancelled one holds its classrooms for its planned time, except that
# a lesson ended early frees them from its end on (so a room can be booked again at once).
_BOOKING_STATES = [s.value for s in LessonState if s != LessonState.CANCELLED]
_BOOKED_UNTIL = sa.type_coerce(
    sa.case(
        (
            sa.and_(Lesson.state == LessonState.ENDED.value, Lesson.ended_at < Lesson.planned_end),
            Lesson.ended_at,
        ),
        else_=Lesson.planned_end,
    ),
    UTCDateTime(),
)


class LessonNotFound(NotFound):
    pass


class IllegalTransition(Conflict):
    def __init__(self, lesson_id: int, current: LessonState, to: LessonState) -> None:
        message, params = refusals.render(
            "illegal_transition", {"lesson_id": lesson_id, "current": current, "to": to}
        )
        super().__init__(message, reason="illegal_transition", params=params)
        self.lesson_id = lesson_id
        self.current = current
        self.to = to


@dataclass(frozen=True)
class RosterRoom:
    classroom_id: int
    name: str
    school_name: str
    role: str  # "main" | "receiving"
    position: int


@dataclass(frozen=True)
class LessonRoster:
    """What the live side needs to run a lesson, detached from the database session."""

    lesson_id: int
    state: LessonState
    kind: LessonKind
    subject: str
    grade: str
    teacher_name: str
    title: str
    planned_start: datetime
    planned_end: datetime
    broadcast: bool
    rooms: tuple[RosterRoom, ...]  # main first, then receiving by position


async def create_lesson(
    db: AsyncSession,
    *,
    pairing_id: int,
    kind: LessonKind | str,
    subject: str,
    grade: str,
    teacher_name: str,
    title: str,
    planned_start: datetime,
    planned_end: datetime,
    broadcast: bool | None = None,
    teacher_user_id: int | None = None,
) -> Lesson:
    """Schedule a lesson for a pairing's rooms, refusing any double booking.

    `broadcast` defaults to on for famous_school lessons (名校网络课堂 are meant to be watched
    widely) and off otherwise. Raises Conflict naming the clashing lesson and classroom, or
    the teacher (by account, else by name in the main classroom's school) and their lesson.
    """
    try:
        kind = LessonKind(kind)
    except ValueError:
        raise InvalidInput.because("unknown_lesson_kind", field="kind", kind=kind) from None
    for field, value in (("planned_start", planned_start), ("planned_end", planned_end)):
        if value.tzinfo is None:
            raise InvalidInput.because("time_without_zone", field=field)
    if planned_end <= planned_start:
        raise InvalidInput.because("lesson_end_before_start", field="planned_end")
    pairing = await db.get(Pairing, pairing_id)
    if pairing is None:
        raise NotFound.because("pairing_not_found", field="pairing_id", id=pairing_id)
    if not pairing.active:
        raise Conflict.because("pairing_archived", field="pairing_id", id=pairing_id)

    rooms = [LessonRoom(classroom_id=pairing.main_classroom_id, role=RoomRole.MAIN, position=0)]
    rooms += [
        LessonRoom(classroom_id=m.classroom_id, role=RoomRole.RECEIVING, position=m.position)
        for m in pairing.members
    ]
    clash = await _booking_clash(
        db,
        [r.classroom_id for r in rooms],
        planned_start,
        planned_end,
        teacher=(teacher_user_id, teacher_name),
    )
    if clash is not None:
        await _release(db)
        raise clash.at("planned_start")

    lesson = Lesson(
        pairing_id=pairing_id,
        kind=kind.value,
        subject=subject,
        grade=grade,
        teacher_name=teacher_name,
        title=title,
        planned_start=planned_start,
        planned_end=planned_end,
        broadcast=(kind == LessonKind.FAMOUS_SCHOOL) if broadcast is None else broadcast,
        state=LessonState.SCHEDULED.value,
        rooms=rooms,
        teacher_user_id=teacher_user_id,
    )
    db.add(lesson)
    await db.commit()
    return await _reload(db, lesson.id)


async def _booking_clash(
    db: AsyncSession,
    classroom_ids: list[int],
    start: datetime,
    end: datetime,
    *,
    other_than: int | None = None,
    teacher: tuple[int | None, str] | None = None,
) -> conflicts.Taken | None:
    """Why the rooms (or `teacher`: account id, name) are not free over [start, end): the
    first clashing lesson and room, else the teacher's (classroom/conflicts.py).

    Locks the classrooms first (PostgreSQL; SQLite serialises writers anyway) so that two
    bookings of the same room cannot both pass the overlap check.
    """
    await db.execute(
        sa.select(Classroom.id)
        .where(Classroom.id.in_(classroom_ids))
        .order_by(Classroom.id)
        .with_for_update()
    )
    query = (
        sa.select(Lesson.id, Lesson.title, Lesson.planned_start, Lesson.planned_end, Classroom)
        .join(LessonRoom, LessonRoom.lesson_id == Lesson.id)
        .join(Classroom, Classroom.id == LessonRoom.classroom_id)
        .where(
            LessonRoom.classroom_id.in_(classroom_ids),
            Lesson.state.in_(_BOOKING_STATES),
            Lesson.planned_start < end,
            _BOOKED_UNTIL > start,
        )
        .order_by(Lesson.planned_start)
        .limit(1)
    )
    if other_than is not None:
        query = query.where(Lesson.id != other_than)
    clash = (await db.execute(query)).first()
    if clash is None:
        if teacher is None:
            return None
        return await conflicts.teacher_clash(
            db, classroom_ids[0], *teacher, start, end, other_than=other_than
        )
    other_id, other_title, other_start, other_end, room = clash
    return conflicts.Taken(
        "classroom_booked",
        {
            "classroom_id": room.id,
            "classroom": f"{room.school.name} {room.name}",
            "lesson_id": other_id,
            "title": other_title,
            "start": other_start.isoformat(),
            "end": other_end.isoformat(),
        },
    )


async def _release(db: AsyncSession) -> None:
    """End a read-only transaction, releasing its row locks.

    Commit rather than roll back when nothing is pending: a rollback would expire every
    object the caller still holds from this session, and async sessions cannot reload
    them implicitly.
    """
    if db.new or db.dirty or db.deleted:
        await db.rollback()
    else:
        await db.commit()


async def _reload(db: AsyncSession, lesson_id: int) -> Lesson:
    """The lesson with its rooms and their classrooms loaded, for callers after commit."""
    lesson = await db.get(Lesson, lesson_id, populate_existing=True)
    assert lesson is not None
    return lesson


class LessonNotEditable(Conflict):
    """Only a lesson that has not started (scheduled or open) can be changed."""

    def __init__(self, lesson_id: int, state: LessonState) -> None:
        message, params = refusals.render(
            "lesson_not_editable", {"lesson_id": lesson_id, "state": state}
        )
        super().__init__(message, reason="lesson_not_editable", params=params)
        self.state = state


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # "leave as is", where None is a value one may set


async def update_lesson(
    db: AsyncSession,
    lesson_id: int,
    *,
    kind: LessonKind | str | None = None,
    subject: str | None = None,
    grade: str | None = None,
    teacher_name: str | None = None,
    title: str | None = None,
    planned_start: datetime | None = None,
    planned_end: datetime | None = None,
    broadcast: bool | None = None,
    teacher_user_id: int | Literal[_Keep.KEEP] | None = KEEP,
    receiving_classroom_ids: Sequence[int] | None = None,
) -> tuple[Lesson, dict[str, list[Any]]]:
    """Change a lesson that has not started: what is given (None: unchanged); commits.

    New times or rooms are checked for double booking as a new lesson would be, against
    every lesson but this one. The main room stays the pairing's. A lesson a timetable
    series made is marked changed by hand, so regenerating the series leaves it alone.
    Everything is checked before anything is written: a refused edit changes nothing.
    Returns the lesson and {field: [old, new]} of what changed.
    """
    lesson = await db.scalar(
        sa.select(Lesson)
        .where(Lesson.id == lesson_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if lesson is None:
        raise LessonNotFound.because("lesson_not_found", id=lesson_id)
    state = LessonState(lesson.state)
    if state not in (LessonState.SCHEDULED, LessonState.OPEN):
        raise LessonNotEditable(lesson_id, state)
    if kind is not None:
        try:
            kind = LessonKind(kind)
        except ValueError:
            raise InvalidInput.because("unknown_lesson_kind", field="kind", kind=kind) from None
    for field, value in (("planned_start", planned_start), ("planned_end", planned_end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput.because("time_without_zone", field=field)
    start = planned_start or lesson.planned_start
    end = planned_end or lesson.planned_end
    if end <= start:
        field = "planned_end" if planned_end is not None else "planned_start"
        raise InvalidInput.because("lesson_end_before_start", field=field)

    main = next(r for r in lesson.rooms if r.role == RoomRole.MAIN)
    old_receiving = [
        r.classroom_id
        for r in sorted(lesson.rooms, key=lambda r: r.position)
        if r.role == RoomRole.RECEIVING
    ]
    receiving = (
        list(receiving_classroom_ids) if receiving_classroom_ids is not None else old_receiving
    )
    if receiving != old_receiving:
        await schools.check_rooms(db, main.classroom_id, receiving)
    times_change = start != lesson.planned_start or end != lesson.planned_end
    new_teacher = (
        lesson.teacher_user_id if teacher_user_id is KEEP else teacher_user_id,
        teacher_name or lesson.teacher_name,
    )
    teacher_change = new_teacher != (lesson.teacher_user_id, lesson.teacher_name)
    # A room just added that is taken then is the room's fault, whatever else changed.
    if added := [c for c in receiving if c not in old_receiving]:
        clash = await _booking_clash(db, added, start, end, other_than=lesson_id)
        if clash is not None:
            raise clash.at("receiving_classroom_ids")
    if times_change or teacher_change or set(receiving) != set(old_receiving):
        clash = await _booking_clash(
            db,
            [main.classroom_id, *receiving],
            start,
            end,
            other_than=lesson_id,
            teacher=new_teacher,
        )
        if clash is not None:
            field = "planned_start" if times_change else "receiving_classroom_ids"
            if not times_change and clash.reason == "teacher_booked":
                field = "teacher_name"
            raise clash.at(field)

    changes: dict[str, list[Any]] = {}
    values: dict[str, Any] = {
        "kind": kind.value if kind is not None else None,
        "subject": subject,
        "grade": grade,
        "teacher_name": teacher_name,
        "title": title,
        "planned_start": planned_start,
        "planned_end": planned_end,
        "broadcast": broadcast,
    }
    if teacher_user_id is not KEEP:
        values["teacher_user_id"] = teacher_user_id
    for name, value in values.items():
        if (value is not None or name == "teacher_user_id") and getattr(lesson, name) != value:
            changes[name] = [_plain(getattr(lesson, name)), _plain(value)]
            setattr(lesson, name, value)
    if receiving != old_receiving:
        changes["receiving_classroom_ids"] = [old_receiving, receiving]
        # The old rooms leave before the new arrive: a room kept at another position has
        # the same primary key. Both steps are in this one transaction.
        for room in [r for r in lesson.rooms if r.role == RoomRole.RECEIVING]:
            lesson.rooms.remove(room)
        await db.flush()
        lesson.rooms.extend(
            LessonRoom(classroom_id=c, role=RoomRole.RECEIVING, position=i)
            for i, c in enumerate(receiving, start=1)
        )
    if changes:
        await db.execute(
            sa.update(SeriesOccurrence)
            .where(SeriesOccurrence.lesson_id == lesson_id)
            .values(changed=True)
        )
    await db.commit()
    return await _reload(db, lesson_id), changes


def _plain(value: Any) -> Any:
    """A value as the audit trail's JSON keeps it."""
    return value.isoformat() if isinstance(value, datetime) else value


async def get_lesson(db: AsyncSession, lesson_id: int) -> Lesson | None:
    return await db.get(Lesson, lesson_id)


async def list_lessons(
    db: AsyncSession,
    *,
    state: LessonState | None = None,
    pairing_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Lesson], int]:
    """Lessons by planned start, and the total before pagination.

    `start`/`end` select lessons whose planned time overlaps [start, end), so a window
    query ("this week") also finds a lesson running across its edge.
    """
    query = sa.select(Lesson)
    if state is not None:
        query = query.where(Lesson.state == LessonState(state).value)
    if pairing_id is not None:
        query = query.where(Lesson.pairing_id == pairing_id)
    if start is not None:
        query = query.where(Lesson.planned_end > start)
    if end is not None:
        query = query.where(Lesson.planned_start < end)
    total = await db.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = await db.scalars(
        query.order_by(Lesson.planned_start, Lesson.id).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total or 0)


async def transition(
    db: AsyncSession, lesson_id: int, to: LessonState, *, reason: str | None = None
) -> None:
    """Move a lesson along its state machine and stamp the time; commits.

    The row is locked (PostgreSQL) so that the scheduler, the API and a joining main
    room cannot race each other past the check.
    """
    to = LessonState(to)
    lesson = await db.scalar(
        sa.select(Lesson)
        .where(Lesson.id == lesson_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if lesson is None:
        raise LessonNotFound.because("lesson_not_found", id=lesson_id)
    current = LessonState(lesson.state)
    if to not in ALLOWED[current]:
        await _release(db)
        raise IllegalTransition(lesson_id, current, to)
    now = utcnow()
    lesson.state = to.value
    if to == LessonState.OPEN:
        lesson.opened_at = now
    elif to == LessonState.LIVE:
        lesson.started_at = now
    elif to in (LessonState.ENDED, LessonState.CANCELLED):
        lesson.ended_at = now
        lesson.end_reason = reason or to.value
    await db.commit()


def _stamps(to: LessonState, now: datetime, reason: str | None) -> dict[str, object]:
    """The columns a move to `to` sets, besides the state: when, and why it ended."""
    if to == LessonState.OPEN:
        return {"opened_at": now}
    if to == LessonState.LIVE:
        return {"started_at": now}
    if to in (LessonState.ENDED, LessonState.CANCELLED):
        return {"ended_at": now, "end_reason": reason or to.value}
    return {}


async def transition_if(
    db: AsyncSession,
    lesson_id: int,
    expected: LessonState,
    to: LessonState,
    *,
    reason: str | None = None,
    now: datetime | None = None,
    where: Sequence[sa.ColumnElement[bool]] = (),
) -> bool:
    """Move the lesson only if it is still `expected` (and `where` holds); does not commit.

    One conditional UPDATE and nothing read first, so that when two processes try the same
    step (two scheduler instances on one PostgreSQL), the database lets exactly one of them
    match the row. True when this call made the change; the caller then writes its audit
    row in the same transaction and commits.
    """
    expected, to = LessonState(expected), LessonState(to)
    if to not in ALLOWED[expected]:
        raise IllegalTransition(lesson_id, expected, to)
    now = now or utcnow()
    result = await db.execute(
        sa.update(Lesson)
        .where(Lesson.id == lesson_id, Lesson.state == expected.value, *where)
        .values(state=to.value, **_stamps(to, now, reason))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result


async def load_roster(db: AsyncSession, lesson_id: int) -> LessonRoster | None:
    lesson = await db.get(Lesson, lesson_id, populate_existing=True)
    if lesson is None:
        return None
    return LessonRoster(
        lesson_id=lesson.id,
        state=LessonState(lesson.state),
        kind=LessonKind(lesson.kind),
        subject=lesson.subject,
        grade=lesson.grade,
        teacher_name=lesson.teacher_name,
        title=lesson.title,
        planned_start=lesson.planned_start,
        planned_end=lesson.planned_end,
        broadcast=lesson.broadcast,
        rooms=tuple(
            RosterRoom(
                classroom_id=r.classroom_id,
                name=r.classroom.name,
                school_name=r.classroom.school.name,
                role=r.role,
                position=r.position,
            )
            for r in sorted(lesson.rooms, key=lambda r: (r.role != RoomRole.MAIN, r.position))
        ),
    )


async def record_room_session(
    db: AsyncSession,
    lesson_id: int,
    classroom_id: int,
    role: str,
    joined_at: datetime,
    left_at: datetime | None,
    end_reason: str | None,
) -> None:
    """Keep one connection of a room for attendance statistics (scenario 6); commits."""
    db.add(
        RoomSession(
            lesson_id=lesson_id,
            classroom_id=classroom_id,
            role=role,
            joined_at=joined_at,
            left_at=left_at,
            end_reason=end_reason,
        )
    )
    await db.commit()


async def list_room_sessions(db: AsyncSession, lesson_id: int) -> list[RoomSession]:
    rows = await db.scalars(
        sa.select(RoomSession)
        .where(RoomSession.lesson_id == lesson_id)
        .order_by(RoomSession.joined_at, RoomSession.id)
    )
    return list(rows.all())
