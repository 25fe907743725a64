"""Scheduling, the lesson state machine, rosters and attendance, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import lessons, schools
from classroom.lessons import ALLOWED, IllegalTransition, LessonNotFound, LessonState
from classroom.models import Conflict, InvalidInput, NotFound

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone(timedelta(hours=8)))  # Monday 08:00 Beijing
LESSON = timedelta(minutes=40)

Sessions = async_sessionmaker[AsyncSession]


async def make_pairing(db: AsyncSession, receiving: int = 4, tag: str = "") -> tuple[int, ...]:
    """A city main classroom and `receiving` rural rooms; returns (pairing, main, *rural)."""
    city = await schools.create_school(db, name=f"城关一中{tag}", kind="city")
    main = await schools.create_classroom(db, school_id=city.id, name="主讲教室")
    rural = []
    for i in range(receiving):
        school = await schools.create_school(db, name=f"村小{tag}{i}", kind="rural")
        rural.append((await schools.create_classroom(db, school_id=school.id, name="听课")).id)
    pairing = await schools.create_pairing(
        db, name=f"结对{tag}", main_classroom_id=main.id, receiving_classroom_ids=rural
    )
    return (pairing.id, main.id, *rural)


async def schedule(db: AsyncSession, pairing_id: int, start: datetime = T0, **kw: object):
    fields: dict = dict(
        pairing_id=pairing_id,
        kind="dedicated",
        subject="音乐",
        grade="三年级",
        teacher_name="王老师",
        title="小星星",
        planned_start=start,
        planned_end=start + LESSON,
    )
    fields.update(kw)
    return await lessons.create_lesson(db, **fields)


async def test_roster_is_main_first_then_receiving_rooms_in_pairing_order(db: Sessions) -> None:
    async with db() as s:
        pairing_id, main, *rural = await make_pairing(s, receiving=4)
        lesson = await schedule(s, pairing_id)
    async with db() as s:
        roster = await lessons.load_roster(s, lesson.id)
    assert roster is not None
    assert [r.classroom_id for r in roster.rooms] == [main, *rural]
    assert [r.role for r in roster.rooms] == ["main"] + ["receiving"] * 4
    assert [r.position for r in roster.rooms] == [0, 1, 2, 3, 4]
    assert roster.rooms[0].school_name == "城关一中" and roster.rooms[0].name == "主讲教室"
    assert roster.state == LessonState.SCHEDULED and roster.subject == "音乐"


async def test_roster_is_a_snapshot_and_unknown_lessons_have_none(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=2)
        lesson = await schedule(s, pairing_id)
        assert await lessons.load_roster(s, lesson.id + 100) is None
    async with db() as s:
        pairing = await schools.get_pairing(s, pairing_id)
        assert pairing is not None
        pairing.members.pop()  # the pairing changes after scheduling
        await s.commit()
    async with db() as s:
        roster = await lessons.load_roster(s, lesson.id)
    assert roster is not None and len(roster.rooms) == 3


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("dedicated", None, False),
        ("famous_teacher", None, False),
        ("famous_school", None, True),
        ("famous_school", False, False),
        ("dedicated", True, True),
    ],
)
async def test_broadcast_defaults_to_the_lesson_kind(
    db: Sessions, kind: str, given: bool | None, expected: bool
) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        lesson = await schedule(s, pairing_id, kind=kind, broadcast=given)
    assert lesson.broadcast is expected


async def test_times_are_stored_in_utc_and_come_back_aware(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        lesson = await schedule(s, pairing_id)
    async with db() as s:
        roster = await lessons.load_roster(s, lesson.id)
    assert roster is not None
    assert roster.planned_start == datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
    assert roster.planned_start.utcoffset() == timedelta(0)
    assert roster.planned_end - roster.planned_start == LESSON


async def test_naive_or_backwards_times_are_refused(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        with pytest.raises(InvalidInput) as naive:
            await schedule(s, pairing_id, start=T0.replace(tzinfo=None))
        assert naive.value.field == "planned_start"
        with pytest.raises(InvalidInput) as backwards:
            await schedule(s, pairing_id, planned_end=T0 - timedelta(minutes=1))
        assert backwards.value.field == "planned_end"
        with pytest.raises(NotFound):
            await schedule(s, pairing_id + 99)


async def test_a_classroom_booked_twice_is_refused_naming_the_clash(db: Sessions) -> None:
    async with db() as s:
        pairing_id, _main, rural, *_ = await make_pairing(s, receiving=2, tag="A")
        first = await schedule(s, pairing_id, title="一次函数")
        # Another pairing sharing only the rural room, ten minutes into the first lesson.
        other_city = await schools.create_school(s, name="实验中学", kind="city")
        other_main = await schools.create_classroom(s, school_id=other_city.id, name="101")
        other = await schools.create_pairing(
            s, name="B", main_classroom_id=other_main.id, receiving_classroom_ids=[rural]
        )
        with pytest.raises(Conflict) as clash:
            await schedule(s, other.id, start=T0 + timedelta(minutes=10))
    message = str(clash.value)
    assert f"classroom {rural}" in message
    assert f"lesson {first.id}" in message and "一次函数" in message
    async with db() as s:
        _, total = await lessons.list_lessons(s)
    assert total == 1


async def test_back_to_back_lessons_do_not_clash(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        await schedule(s, pairing_id)
        after = await schedule(s, pairing_id, start=T0 + LESSON)
        before = await schedule(s, pairing_id, start=T0 - LESSON)
    assert after.id != before.id


async def test_a_cancelled_lesson_frees_its_classrooms(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        first = await schedule(s, pairing_id)
        await lessons.transition(s, first.id, LessonState.CANCELLED)
        again = await schedule(s, pairing_id)
    assert again.state == LessonState.SCHEDULED


async def test_an_ended_lesson_holds_its_slot_only_until_it_ended(db: Sessions) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        first = await schedule(s, pairing_id, start=now - timedelta(minutes=5))
        with pytest.raises(Conflict):
            await schedule(s, pairing_id, start=now + timedelta(minutes=1))
        await lessons.transition(s, first.id, LessonState.OPEN)
        await lessons.transition(s, first.id, LessonState.ENDED)
        # Ended five minutes in: the room is free for the rest of the planned slot...
        await schedule(s, pairing_id, start=now + timedelta(minutes=1))
        # ...but the minutes it was used stay booked.
        with pytest.raises(Conflict):
            await schedule(s, pairing_id, start=now - timedelta(minutes=30))


def _path_to(state: LessonState) -> list[LessonState]:
    return {
        LessonState.SCHEDULED: [],
        LessonState.OPEN: [LessonState.OPEN],
        LessonState.LIVE: [LessonState.OPEN, LessonState.LIVE],
        LessonState.ENDED: [LessonState.OPEN, LessonState.LIVE, LessonState.ENDED],
        LessonState.CANCELLED: [LessonState.CANCELLED],
    }[state]


@pytest.mark.parametrize("start", list(LessonState))
async def test_state_machine_allows_exactly_its_transitions(
    db: Sessions, start: LessonState
) -> None:
    allowed = {
        # scheduled → ended: missed (its whole time passed unopened), ended as not held.
        LessonState.SCHEDULED: {LessonState.OPEN, LessonState.CANCELLED, LessonState.ENDED},
        LessonState.OPEN: {LessonState.LIVE, LessonState.ENDED, LessonState.CANCELLED},
        LessonState.LIVE: {LessonState.ENDED},
        LessonState.ENDED: set(),
        LessonState.CANCELLED: set(),
    }[start]
    assert ALLOWED[start] == allowed
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
    for i, to in enumerate(LessonState):
        async with db() as s:
            lesson = await schedule(s, pairing_id, start=T0 + i * LESSON)
            for step in _path_to(start):
                await lessons.transition(s, lesson.id, step)
            if to in allowed:
                await lessons.transition(s, lesson.id, to, reason="why")
            else:
                with pytest.raises(IllegalTransition):
                    await lessons.transition(s, lesson.id, to)
        async with db() as s:
            roster = await lessons.load_roster(s, lesson.id)
        assert roster is not None
        assert roster.state == (to if to in allowed else start), f"{start} -> {to}"


async def test_transitions_stamp_their_times_and_reason(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        lesson = await schedule(s, pairing_id)
        before = datetime.now(UTC)
        await lessons.transition(s, lesson.id, LessonState.OPEN)
        await lessons.transition(s, lesson.id, LessonState.LIVE)
        await lessons.transition(s, lesson.id, LessonState.ENDED, reason="ended_by_api")
    async with db() as s:
        done = await lessons.get_lesson(s, lesson.id)
    assert done is not None
    assert done.opened_at is not None and done.started_at is not None
    assert done.ended_at is not None
    assert before <= done.opened_at <= done.started_at <= done.ended_at
    assert (done.state, done.end_reason) == ("ended", "ended_by_api")
    async with db() as s:
        with pytest.raises(LessonNotFound):
            await lessons.transition(s, 9999, LessonState.OPEN)


async def test_room_sessions_are_kept_for_attendance(db: Sessions) -> None:
    async with db() as s:
        pairing_id, _main, rural = await make_pairing(s, receiving=1)
        lesson = await schedule(s, pairing_id)
    joined = datetime.now(UTC)
    async with db() as s:
        await lessons.record_room_session(
            s, lesson.id, rural, "receiving", joined, joined + timedelta(seconds=10), "timeout"
        )
        await lessons.record_room_session(
            s, lesson.id, rural, "receiving", joined + timedelta(seconds=20), None, "closed"
        )
    async with db() as s:
        sessions = await lessons.list_room_sessions(s, lesson.id)
    assert [(x.classroom_id, x.end_reason) for x in sessions] == [
        (rural, "timeout"),
        (rural, "closed"),
    ]
    assert sessions[0].joined_at == joined and sessions[0].left_at is not None
    assert sessions[1].left_at is None


async def test_lessons_are_listed_by_window_state_and_page(db: Sessions) -> None:
    async with db() as s:
        pairing_id, *_ = await make_pairing(s, receiving=1)
        ids = [(await schedule(s, pairing_id, start=T0 + timedelta(days=d))).id for d in range(5)]
        await lessons.transition(s, ids[1], LessonState.CANCELLED)
    async with db() as s:
        page, total = await lessons.list_lessons(s, limit=2, offset=1)
        assert ([x.id for x in page], total) == (ids[1:3], 5)
        window, _ = await lessons.list_lessons(
            s, start=T0 + timedelta(days=1, minutes=30), end=T0 + timedelta(days=3)
        )
        assert [x.id for x in window] == ids[1:3]  # day 1 is still running at 08:30
        cancelled, total = await lessons.list_lessons(s, state=LessonState.CANCELLED)
        assert ([x.id for x in cancelled], total) == ([ids[1]], 1)
        assert (await lessons.list_lessons(s, pairing_id=pairing_id + 1)) == ([], 0)
