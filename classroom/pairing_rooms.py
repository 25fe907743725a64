"""When a pairing changes rooms, its lessons to come go with it.

A lesson copies its pairing's rooms when it is scheduled (lesson_rooms), and a term's
timetable is generated once, in advance. Without this, a rural school that moves its
listening class to another room would see the old room's box join every lesson until the
end of term, and the new room's box none. Lessons whose rooms were changed by hand, and
lessons already open, under way or over, keep theirs: they were decided on their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import conflicts
from classroom.models import Classroom, Lesson, LessonRoom, LessonState, RoomRole, School, utcnow


async def follow_new_rooms(
    db: AsyncSession,
    pairing_id: int,
    old_rooms: Sequence[int],
    new_rooms: Sequence[int],
    *,
    field: str = "receiving_classroom_ids",
    now: datetime | None = None,
) -> list[int]:
    """Give the pairing's scheduled lessons to come that still have `old_rooms` the
    `new_rooms` instead (both: main room first, then the receiving rooms in order).

    Checked whole first: if a new room (or the teacher) is taken at any of those lessons'
    times, DoubleBooking names every clash and nothing is written. Returns the ids of the
    lessons that followed; does not commit.
    """
    now = now or utcnow()
    old, new = tuple(old_rooms), tuple(new_rooms)
    candidates = (
        await db.execute(
            sa.select(
                Lesson.id,
                Lesson.planned_start,
                Lesson.planned_end,
                Lesson.teacher_user_id,
                Lesson.teacher_name,
                Lesson.title,
            ).where(
                Lesson.pairing_id == pairing_id,
                Lesson.state == LessonState.SCHEDULED.value,
                Lesson.planned_start > now,
            )
        )
    ).all()
    if not candidates or old == new:
        return []
    rooms: dict[int, list[int]] = defaultdict(list)
    for lesson_id, classroom_id in await db.execute(
        sa.select(LessonRoom.lesson_id, LessonRoom.classroom_id)
        .where(LessonRoom.lesson_id.in_([c.id for c in candidates]))
        .order_by(LessonRoom.lesson_id, LessonRoom.position)
    ):
        rooms[lesson_id].append(classroom_id)
    following = [c for c in candidates if tuple(rooms[c.id]) == old]
    if not following:
        return []

    main_school, zone_name = (
        await db.execute(
            sa.select(School.id, School.timezone)
            .join(Classroom, Classroom.school_id == School.id)
            .where(Classroom.id == new[0])
        )
    ).one()
    proposed = [
        conflicts.Booking(
            start=c.planned_start,
            end=c.planned_end,
            classroom_ids=new,
            teacher=conflicts.teacher_key(c.teacher_user_id, c.teacher_name, main_school),
            teacher_name=c.teacher_name,
            title=c.title,
            source=f"lesson {c.id} {c.title!r}",
            ref=c.id,
        )
        for c in following
    ]
    ids = [c.id for c in following]
    await conflicts.lock_classrooms(db, new)
    await conflicts.lock_teachers(db, (b.teacher for b in proposed))
    await conflicts.refuse_clashes(
        db, proposed, ignore_lesson_ids=ids, zone=ZoneInfo(zone_name), field=field
    )

    await db.execute(sa.delete(LessonRoom).where(LessonRoom.lesson_id.in_(ids)))
    await db.execute(
        sa.insert(LessonRoom),
        [
            {
                "lesson_id": lesson_id,
                "classroom_id": classroom_id,
                "role": (RoomRole.MAIN if position == 0 else RoomRole.RECEIVING).value,
                "position": position,
            }
            for lesson_id in ids
            for position, classroom_id in enumerate(new)
        ],
    )
    _forget(db, set(ids))
    return ids


def _forget(db: AsyncSession, lesson_ids: set[int]) -> None:
    """Drop these lessons and their rooms from the session's identity map: the bulk
    statements did not touch the objects, and a later read must see the new rooms."""
    for obj in list(db.sync_session.identity_map.values()):
        if (isinstance(obj, Lesson) and obj.id in lesson_ids) or (
            isinstance(obj, LessonRoom) and obj.lesson_id in lesson_ids
        ):
            db.expunge(obj)
