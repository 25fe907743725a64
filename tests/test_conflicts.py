"""Double bookings: a classroom or a teacher in two lessons at once is refused, named."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from classroom import conflicts, lessons, schools, terms, timetable
from classroom.conflicts import Booking, DoubleBooking, sweep
from classroom.models import Lesson, LessonRoom, LessonState, UserRole
from classroom.timetable_models import LessonSeries
from classroom.users import create_user
from tests.timetable_helpers import BEFORE_TERM, make_pair, make_term, weekly


async def lesson_count(s) -> int:
    return int(await s.scalar(sa.select(sa.func.count()).select_from(Lesson)) or 0)


async def test_a_receiving_room_in_two_pairings_cannot_take_both_at_once(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        first = await make_pair(s, room="301", rural=("乡村小学一",))
        shared = first.receiving[0]
        shared_id, shared_name = shared.id, shared.name
        # A second city school's room teaching the same rural room (another subject).
        other_city = await schools.create_school(s, name="实验中学", kind="city")
        room = await schools.create_classroom(s, school_id=other_city.id, name="201")
        pairing = await schools.create_pairing(
            s, name="实验中学201", main_classroom_id=room.id, receiving_classroom_ids=[shared_id]
        )
        series, _ = await timetable.create_series(s, term_id, weekly(first, 3, 3), now=BEFORE_TERM)
        series_id = series.id
        before = await lesson_count(s)
        with pytest.raises(DoubleBooking) as refused:
            await timetable.create_series(
                s,
                term_id,
                weekly(
                    pairing.id,
                    3,
                    None,
                    start_time=time(10, 30),
                    end_time=time(11, 15),
                    teacher_name="赵老师",
                ),
                now=BEFORE_TERM,
            )
        after = await lesson_count(s)
        series_rows = await s.scalar(sa.select(sa.func.count()).select_from(LessonSeries))

    message = refused.value.message
    assert f"classroom {shared_id} (乡村小学一 {shared_name})" in message
    assert f"(series {series_id})" in message and "'一次函数'" in message
    assert "2026-09-02 10:30–11:15 +08:00" in message  # the refused one
    assert "2026-09-02 09:55–10:40 +08:00" in message  # the one in the way
    assert "and 19 more clashes" in message  # every Wednesday (and 10-10) of the term
    assert after == before == 20 and series_rows == 1  # nothing of the second was written


async def test_a_teacher_cannot_teach_two_pairings_at_once(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        a = await make_pair(s, room="301", rural=("乡村小学一",))
        b = await make_pair(s, room="302", rural=("乡村小学二",))
        c = await make_pair(s, city="实验中学", room="201", rural=("乡村小学三",))
        teacher = await create_user(
            s,
            username="wang",
            password="correct horse battery",
            role=UserRole.TEACHER,
            school_id=a.main.school_id,
            display_name="王老师",
        )
        # Ids now: a refusal rolls the session back, which expires the objects.
        a, b, c, teacher_id = a.pairing.id, b.pairing.id, c.pairing.id, teacher.id
        await timetable.create_series(
            s, term_id, weekly(a, 1, 2, teacher_user_id=teacher_id), now=BEFORE_TERM
        )
        with pytest.raises(DoubleBooking, match=rf"teacher 王老师 \(user {teacher_id}\)"):
            await timetable.create_series(
                s, term_id, weekly(b, 1, 2, teacher_user_id=teacher_id), now=BEFORE_TERM
            )
        # Without accounts, the name counts within the main classroom's school...
        await timetable.create_series(
            s, term_id, weekly(a, 2, 2, teacher_name="李 老师"), now=BEFORE_TERM
        )
        with pytest.raises(DoubleBooking, match="teacher 李老师"):
            await timetable.create_series(
                s, term_id, weekly(b, 2, 2, teacher_name="李老师"), now=BEFORE_TERM
            )
        # ... so another school's 李老师 is another person.
        _, report = await timetable.create_series(
            s, term_id, weekly(c, 2, 2, teacher_name="李老师"), now=BEFORE_TERM
        )
    assert report.created == 20 - 1 + 1  # Tuesdays 09-01..01-12, but 10-06, and Sunday 09-20


async def test_back_to_back_lessons_and_cancelled_ones_do_not_clash(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        first, _ = await timetable.create_series(s, term_id, weekly(pair, 4, 1), now=BEFORE_TERM)
        # 08:45 is when period 1 ends: starting then is no overlap.
        await timetable.create_series(
            s,
            term_id,
            weekly(pair, 4, None, start_time=time(8, 45), end_time=time(8, 50), teacher_name="赵"),
            now=BEFORE_TERM,
        )
        rows = await timetable.list_occurrences(s, first.id)
        cancelled = rows[3][1]
        await timetable.cancel_occurrence(s, cancelled.id)
        # The cancelled lesson's slot can be booked ad hoc.
        lesson = await lessons.create_lesson(
            s,
            pairing_id=pair.pairing.id,
            kind="dedicated",
            subject="美术",
            grade="初二",
            teacher_name="孙老师",
            title="写生",
            planned_start=cancelled.planned_start,
            planned_end=cancelled.planned_end,
        )
    assert lesson.state == LessonState.SCHEDULED


async def test_moving_an_occurrence_onto_a_booked_room_is_refused_and_changes_nothing(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        monday, _ = await timetable.create_series(s, term_id, weekly(pair, 1, 1), now=BEFORE_TERM)
        friday, _ = await timetable.create_series(s, term_id, weekly(pair, 5, 6), now=BEFORE_TERM)
        monday_id = monday.id
        target = (await timetable.list_occurrences(s, monday.id))[0][1]
        victim_id = target.id
        start = target.planned_start
        friday_lesson = (await timetable.list_occurrences(s, friday.id))[2][1]
        friday_id = friday_lesson.id
        with pytest.raises(DoubleBooking) as refused:
            await timetable.move_occurrence(
                s, friday_id, day=date(2026, 9, 7), period=1, now=BEFORE_TERM
            )
        unchanged = await s.get(Lesson, friday_id, populate_existing=True)
        occ, _ = await timetable.get_occurrence(s, friday_id)
    assert f"lesson {victim_id} '一次函数' (series {monday_id})" in refused.value.message
    assert "2026-09-07 08:00–08:45 +08:00" in refused.value.message
    assert unchanged.planned_start.astimezone(UTC).date() == date(2026, 9, 18)
    assert not occ.changed and start.astimezone(UTC).date() == date(2026, 9, 7)


async def test_the_term_check_finds_a_double_booking_written_behind_its_back(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        series, _ = await timetable.create_series(s, term_id, weekly(pair, 3, 3), now=BEFORE_TERM)
        calendar = await terms.calendar_of(s, term_id)
        assert await conflicts.audit_window(s, calendar.first_instant, calendar.last_instant) == []
        victim = (await timetable.list_occurrences(s, series.id))[5][1]
        # A row written without the check (an old import, a restore): same room, overlapping.
        intruder = Lesson(
            pairing_id=pair.pairing.id,
            kind="dedicated",
            subject="音乐",
            grade="初二",
            teacher_name="周老师",
            title="合唱",
            broadcast=False,
            state="scheduled",
            planned_start=victim.planned_start + timedelta(minutes=30),
            planned_end=victim.planned_end + timedelta(minutes=30),
            rooms=[LessonRoom(classroom_id=pair.main.id, role="main", position=0)],
        )
        s.add(intruder)
        await s.commit()
        found = await conflicts.audit_window(s, calendar.first_instant, calendar.last_instant)
        messages = await conflicts.clash_messages(s, found, calendar.zone)
    assert len(found) == 1
    assert {found[0].booking.lesson_id, found[0].other.lesson_id} == {victim.id, intruder.id}
    assert f"classroom {pair.main.id} (城关一中 301)" in messages[0]


def _brute_force(existing: list[Booking], proposed: list[Booking]) -> set[int]:
    """Indexes of proposals overlapping anything on a shared room or teacher, the slow way."""
    bad = set()
    for i, p in enumerate(proposed):
        others = existing + [q for j, q in enumerate(proposed) if j != i]
        for o in others:
            shares = set(p.classroom_ids) & set(o.classroom_ids) or p.teacher == o.teacher
            if shares and p.start < o.end and o.start < p.end:
                bad.add(i)
    return bad


@pytest.mark.parametrize("seed", range(25))
def test_the_sweep_finds_exactly_the_overlaps_the_slow_way_finds(seed: int) -> None:
    rng = random.Random(seed)
    base = datetime(2026, 9, 1, tzinfo=UTC)

    def booking(i: int) -> Booking:
        start = base + timedelta(minutes=5 * rng.randrange(200))
        return Booking(
            start=start,
            end=start + timedelta(minutes=5 * rng.randrange(1, 12)),
            classroom_ids=tuple(rng.sample(range(12), rng.randrange(1, 4))),
            teacher=("user", rng.randrange(8)),
            source=f"b{i}",
        )

    existing = [booking(i) for i in range(rng.randrange(0, 30))]
    # Existing bookings never overlap each other (the refusals keep them apart)...
    kept: list[Booking] = []
    for b in existing:
        if not _brute_force(kept, [b]):
            kept.append(b)
    proposed = [booking(100 + i) for i in range(rng.randrange(1, 30))]
    clashes = sweep(kept, proposed)
    found = {proposed.index(c.booking) for c in clashes if c.booking in proposed}
    # Clashes between two proposals are reported on one of them; the other may be clean
    # of everything else. Every reported proposal really clashes, and every proposal that
    # clashes with an existing booking, or is the later of a clashing pair, is reported.
    truth = _brute_force(kept, proposed)
    assert found <= truth
    for i in truth - found:
        partners = [c for c in clashes if c.other is proposed[i]]
        assert partners, f"proposal {i} overlaps something but no clash mentions it"
