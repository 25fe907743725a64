"""When a pairing changes rooms, its lessons to come go with it.

A lesson copies its pairing's rooms when it is scheduled (lesson_rooms), and a term's
timetable is generated once, in advance. Without this, a rural school that moves its
listening class to another room would see the old room's box join every lesson until the
end of term, and the new room's box none. Lessons whose rooms were changed by hand, and
lessons already open, under way or over, keep theirs: they were decided on their own.
"""

from __future__ import annotations

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
    to_come = await db.scalars(
        sa.select(Lesson).where(
            Lesson.pairing_id == pairing_id,
            Lesson.state == LessonState.SCHEDULED.value,
            Lesson.planned_start > now,
        )
    )
    # Lesson.rooms come with the lessons, in position order (main first).
    following = [
        lesson for lesson in to_come if tuple(r.classroom_id for r in lesson.rooms) == old
    ]
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
            start=lesson.planned_start,
            end=lesson.planned_end,
            classroom_ids=new,
            teacher=conflicts.teacher_key(lesson.teacher_user_id, lesson.teacher_name,
                                          main_school),
            teacher_name=lesson.teacher_name,
            title=lesson.title,
            source=conflicts.Named("lesson", lesson.id, lesson.title),
            ref=lesson.id,
        )
        for lesson in following
    ]
    ids = [lesson.id for lesson in following]
    await conflicts.lock_classrooms(db, new)
    await conflicts.lock_teachers(db, (b.teacher for b in proposed))
    await conflicts.refuse_clashes(
        db, proposed, ignore_lesson_ids=ids, zone=ZoneInfo(zone_name), field=field
    )

    # The old rooms leave before the new arrive: a room kept has the same primary key.
    for lesson in following:
        lesson.rooms.clear()
    await db.flush()
    for lesson in following:
        lesson.rooms.extend(
            LessonRoom(
                classroom_id=classroom_id,
                role=RoomRole.MAIN if position == 0 else RoomRole.RECEIVING,
                position=position,
            )
            for position, classroom_id in enumerate(new)
        )
    return ids
