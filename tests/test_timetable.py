"""Term timetables: a weekly series yields the right lessons across a real-looking term.

Every test runs on SQLite and PostgreSQL (the `db` fixture) and reads back the `lessons`
rows generation wrote.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from classroom import lessons, schools, terms, timetable
from classroom.models import Conflict, InvalidInput, Lesson, LessonRoom, LessonState, RoomRole
from classroom.terms import Holiday, MakeupDay, Period, TermSpec
from classroom.timetable_models import SeriesOccurrence
from tests.timetable_helpers import AUTUMN_2026, BEFORE_TERM, make_pair, make_term, weekly

SHANGHAI = ZoneInfo("Asia/Shanghai")


def d(text: str) -> date:
    return date.fromisoformat(text)


async def occurrence_rows(s, series_id: int) -> list[tuple[SeriesOccurrence, Lesson]]:
    return await timetable.list_occurrences(s, series_id)


async def dates_of(s, series_id: int) -> list[date]:
    return [
        lesson.planned_start.astimezone(SHANGHAI).date()
        for _, lesson in await occurrence_rows(s, series_id)
    ]


async def test_wednesday_series_skips_national_day_and_runs_on_the_makeup_saturday(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s, rural=("乡村小学一", "乡村小学二"))
        series, report = await timetable.create_series(
            s, term_id, weekly(pair, weekday=3, period=3), now=BEFORE_TERM
        )
        assert report.created == 20
        rows = await occurrence_rows(s, series.id)

    days = [lesson.planned_start.astimezone(SHANGHAI).date() for _, lesson in rows]
    assert days[:6] == [
        d("2026-09-02"),
        d("2026-09-09"),
        d("2026-09-16"),
        d("2026-09-23"),
        d("2026-09-30"),
        d("2026-10-10"),
    ]  # 10-07 is 国庆; Saturday 10-10 runs Wednesday
    assert d("2026-10-07") not in days
    assert days[-1] == d("2027-01-13")
    assert len(days) == 20 == len(set(days))
    for occ, lesson in rows:
        assert occ.occurrence_date == lesson.planned_start.astimezone(SHANGHAI).date()
        assert lesson.state == LessonState.SCHEDULED
        # period 3 is 09:55–10:40 in Shanghai: 01:55–02:40 UTC, stored aware
        assert lesson.planned_start.tzinfo is not None
        assert lesson.planned_start.astimezone(UTC).time() == time(1, 55)
        assert lesson.planned_end - lesson.planned_start == timedelta(minutes=45)
        assert [
            (r.classroom_id, r.role) for r in sorted(lesson.rooms, key=lambda r: r.position)
        ] == [
            (pair.main.id, RoomRole.MAIN),
            (pair.receiving[0].id, RoomRole.RECEIVING),
            (pair.receiving[1].id, RoomRole.RECEIVING),
        ]
        assert (lesson.subject, lesson.title, lesson.teacher_name) == ("数学", "一次函数", "王老师")


async def test_makeup_days_follow_the_weekday_they_stand_for(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        tuesday = await make_pair(s, room="302")
        saturday = await make_pair(s, room="303")
        tue, _ = await timetable.create_series(s, term_id, weekly(tuesday, 2, 1), now=BEFORE_TERM)
        sat, _ = await timetable.create_series(s, term_id, weekly(saturday, 6, 1), now=BEFORE_TERM)
        tue_days = await dates_of(s, tue.id)
        sat_days = await dates_of(s, sat.id)

    # Sunday 09-20 runs Tuesday's timetable; Tuesday 10-06 is a holiday.
    assert d("2026-09-20") in tue_days and d("2026-10-06") not in tue_days
    assert tue_days[0] == d("2026-09-01")  # the term's first day is a Tuesday
    # Saturday 10-10 runs Wednesday's timetable, not Saturday's; 10-03 is a holiday.
    assert d("2026-10-10") not in sat_days and d("2026-10-03") not in sat_days
    assert d("2026-10-17") in sat_days and d("2027-01-02") not in sat_days  # 元旦


async def test_regenerating_adds_nothing_twice(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        await timetable.create_series(s, term_id, weekly(pair, 1, 2), now=BEFORE_TERM)
        await timetable.create_series(s, term_id, weekly(pair, 4, 5), now=BEFORE_TERM)
        before = await s.scalar(sa.select(sa.func.count()).select_from(Lesson))
        again = await timetable.regenerate_term(s, term_id, now=BEFORE_TERM)
        after = await s.scalar(sa.select(sa.func.count()).select_from(Lesson))
    assert (again.created, again.updated, again.removed) == (0, 0, 0)
    # Mondays 09-07..01-11 but 10-05: 18; Thursdays 09-03..01-14 but 10-01: 19.
    assert again.unchanged == before == after == 18 + 19


async def test_series_change_moves_only_future_untouched_occurrences(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        series, _ = await timetable.create_series(s, term_id, weekly(pair, 3, 3), now=BEFORE_TERM)
        rows = {occ.occurrence_date: lesson for occ, lesson in await occurrence_rows(s, series.id)}
        moved, substituted, cancelled, edited = (
            rows[d("2026-11-04")].id,
            rows[d("2026-11-11")].id,
            rows[d("2026-11-18")].id,
            rows[d("2026-11-25")].id,
        )
        past = rows[d("2026-09-09")].id
        # One-off changes, made before the series changes:
        await timetable.move_occurrence(s, moved, day=d("2026-11-05"), period=6, now=BEFORE_TERM)
        await timetable.substitute_teacher(s, substituted, teacher_name="李老师")
        await timetable.cancel_occurrence(s, cancelled, reason="运动会")
        # ... and one by another path (a direct edit of the lesson row, as a PATCH would):
        await s.execute(sa.update(Lesson).where(Lesson.id == edited).values(title="复习课"))
        await s.commit()

        # Mid-October the school moves the series to period 4 and renames it.
        now = datetime(2026, 10, 20, tzinfo=UTC)
        changed = replace(weekly(pair, 3, 4), title="一次函数（二）")
        _, report = await timetable.update_series(s, series.id, changed, now=now)
        after = {
            occ.occurrence_date: (occ, lesson)
            for occ, lesson in await occurrence_rows(s, series.id)
        }

    def local(lesson: Lesson) -> tuple[date, time]:
        start = lesson.planned_start.astimezone(SHANGHAI)
        return start.date(), start.time()

    # The past stays as it was.
    occ, lesson = after[d("2026-09-09")]
    assert lesson.id == past and local(lesson)[1] == time(9, 55) and lesson.title == "一次函数"
    # Future untouched occurrences moved to period 4 and took the new title, keeping their ids.
    occ, lesson = after[d("2026-12-02")]
    assert local(lesson) == (d("2026-12-02"), time(10, 50)) and lesson.title == "一次函数（二）"
    assert lesson.id == rows[d("2026-12-02")].id
    # Hand-made changes survived.
    occ, lesson = after[d("2026-11-04")]
    assert lesson.id == moved and occ.changed and local(lesson) == (d("2026-11-05"), time(14, 55))
    occ, lesson = after[d("2026-11-11")]
    assert lesson.teacher_name == "李老师" and local(lesson)[1] == time(9, 55)
    occ, lesson = after[d("2026-11-18")]
    assert lesson.state == LessonState.CANCELLED and lesson.end_reason == "运动会"
    occ, lesson = after[d("2026-11-25")]
    assert lesson.title == "复习课" and local(lesson)[1] == time(9, 55) and not occ.changed
    assert len(after) == 20
    # 10-21, 10-28, then 12-02 .. 01-13: the untouched future ones
    assert (report.created, report.removed, report.updated) == (0, 0, 9)


async def test_a_new_holiday_removes_its_lessons_and_a_cancelled_one_stays_cancelled(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        series, _ = await timetable.create_series(s, term_id, weekly(pair, 3, 3), now=BEFORE_TERM)
        rows = {occ.occurrence_date: lesson for occ, lesson in await occurrence_rows(s, series.id)}
        await timetable.cancel_occurrence(s, rows[d("2026-12-09")].id)
        sports_day = replace(
            AUTUMN_2026,
            holidays=(*AUTUMN_2026.holidays, Holiday(d("2026-11-11"), d("2026-11-11"), "运动会")),
        )
        _, report = await timetable.replace_term(s, term_id, sports_day, now=BEFORE_TERM)
        days = await dates_of(s, series.id)
        cancelled = await s.get(Lesson, rows[d("2026-12-09")].id)
        gone = await s.get(Lesson, rows[d("2026-11-11")].id)
    assert report.removed == 1 and d("2026-11-11") not in days
    assert gone is None  # its rooms and link went with it
    assert cancelled.state == LessonState.CANCELLED and days.count(d("2026-12-09")) == 1


async def test_odd_weeks_and_a_date_window(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        calendar = await terms.calendar_of(s, term_id)
        odd, report = await timetable.create_series(
            s,
            term_id,
            weekly(
                pair, 5, 7, week_parity="odd", first_date=d("2026-09-01"), last_date=d("2026-11-30")
            ),
            now=BEFORE_TERM,
        )
        days = await dates_of(s, odd.id)
    # Week 1 holds Tuesday 09-01; odd weeks' Fridays through November, 10-02 being 国庆.
    assert days == [
        d("2026-09-04"),
        d("2026-09-18"),
        d("2026-10-16"),
        d("2026-10-30"),
        d("2026-11-13"),
        d("2026-11-27"),
    ]
    assert all(calendar.week_of(x) % 2 == 1 for x in days)
    assert report.created == 6


async def test_explicit_times_and_no_past_lessons_for_a_series_added_mid_term(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        now = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # Tuesday 08:00 in Shanghai
        series, report = await timetable.create_series(
            s,
            term_id,
            weekly(pair, 2, None, start_time=time(7, 30), end_time=time(8, 10)),
            now=now,
        )
        rows = await occurrence_rows(s, series.id)
    starts = [lesson.planned_start for _, lesson in rows]
    # 12-01 07:30 local is already past at 08:00: the first is 12-08; none before now.
    assert starts[0] == datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    assert all(x > now for x in starts) and report.created == len(starts) == 6


async def test_a_zone_with_daylight_saving_keeps_the_wall_clock(db) -> None:
    """A term elsewhere (a partner school abroad): 08:00 local on both sides of the US
    clock change of 2026-11-01, and a wall-clock time that does not exist is refused."""
    spec = TermSpec(
        school_year="2026-2027",
        name="Fall 2026",
        region="New York",
        start_date=d("2026-10-19"),
        end_date=d("2026-11-13"),
        timezone="America/New_York",
        periods=(Period(1, time(8, 0), time(8, 45)),),
    )
    spring = replace(spec, name="Spring 2027", start_date=d("2027-03-08"), end_date=d("2027-03-19"))
    async with db() as s:
        term_id = await make_term(s, spec)
        pair = await make_pair(s)
        series, _ = await timetable.create_series(s, term_id, weekly(pair, 1, 1), now=BEFORE_TERM)
        rows = await occurrence_rows(s, series.id)
        utc_hours = [lesson.planned_start.astimezone(UTC).hour for _, lesson in rows]
        local = {
            lesson.planned_start.astimezone(ZoneInfo("America/New_York")).time()
            for _, lesson in rows
        }
        spring_id = await make_term(s, spring)
        with pytest.raises(InvalidInput, match="does not exist in America/New_York"):
            await timetable.create_series(
                s,
                spring_id,
                weekly(pair, 7, None, start_time=time(2, 30), end_time=time(3, 15)),
                now=BEFORE_TERM,
            )
    assert utc_hours == [12, 12, 13, 13]  # EDT (-4) then EST (-5)
    assert local == {time(8, 0)}


async def test_removing_a_series_keeps_the_lessons_already_held(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        series, _ = await timetable.create_series(s, term_id, weekly(pair, 3, 3), now=BEFORE_TERM)
        rows = await occurrence_rows(s, series.id)
        held = rows[0][1].id
        await lessons.transition(s, held, LessonState.OPEN)
        await lessons.transition(s, held, LessonState.LIVE)
        await lessons.transition(s, held, LessonState.ENDED)
        report = await timetable.delete_series(s, series.id, now=datetime(2026, 9, 3, tzinfo=UTC))
        remaining = (await s.scalars(sa.select(Lesson.id))).all()
    assert remaining == [held] and report.removed == 19


async def test_bad_input_is_refused_with_the_field_named(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        with pytest.raises(InvalidInput, match="no period 9") as no_period:
            await timetable.create_series(s, term_id, weekly(pair, 3, 9))
        with pytest.raises(InvalidInput, match="outside the term") as outside:
            await timetable.create_series(
                s, term_id, weekly(pair, 3, 3, first_date=d("2026-08-01"))
            )
        with pytest.raises(InvalidInput, match="falls in a holiday"):
            await terms.create_term(
                s,
                replace(AUTUMN_2026, name="x", makeup_days=(MakeupDay(d("2026-10-03"), 1),)),
            )
        with pytest.raises(InvalidInput, match="periods 1 and 2 overlap"):
            await terms.create_term(
                s,
                replace(
                    AUTUMN_2026,
                    name="y",
                    periods=(Period(1, time(8), time(9)), Period(2, time(8, 30), time(9, 30))),
                ),
            )
        count = await s.scalar(sa.select(sa.func.count()).select_from(SeriesOccurrence))
    assert no_period.value.field == "period" and outside.value.field == "first_date"
    assert count == 0


async def test_an_archived_pairing_gets_no_new_series(db) -> None:
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        pairing_id = pair.pairing.id
        await schools.update_pairing(s, pairing_id, active=False)
        with pytest.raises(Conflict, match=f"pairing {pairing_id} is archived"):
            await timetable.create_series(s, term_id, weekly(pairing_id, 3, 3), now=BEFORE_TERM)
        count = await s.scalar(sa.select(sa.func.count()).select_from(Lesson))
    assert count == 0


async def test_a_series_follows_its_pairing_to_a_new_room_from_now_on(db) -> None:
    """The rural school moves its class to another room in November: the term's lessons
    from then on go to the new room, those already held keep the old one, and the series
    still counts them as its own (regenerating changes nothing)."""
    async with db() as s:
        term_id = await make_term(s)
        pair = await make_pair(s)
        series, _ = await timetable.create_series(
            s, term_id, weekly(pair, 3, 3), now=BEFORE_TERM
        )
        new_room = await schools.create_classroom(
            s, school_id=pair.receiving[0].school_id, name="新听课教室"
        )
        moved = await s.scalar(
            sa.select(Lesson.id)
            .join(SeriesOccurrence, SeriesOccurrence.lesson_id == Lesson.id)
            .where(SeriesOccurrence.series_id == series.id)
            .where(Lesson.planned_start > datetime(2026, 12, 1, tzinfo=UTC))
            .order_by(Lesson.planned_start)
            .limit(1)
        )
        await timetable.move_occurrence(s, moved, day=date(2026, 12, 3), period=5, now=BEFORE_TERM)
        now = datetime(2026, 11, 20, tzinfo=UTC)
        _, _, rerouted = await schools.update_pairing(
            s, pair.pairing.id, receiving_classroom_ids=[new_room.id], now=now
        )
        rows = (
            await s.execute(
                sa.select(Lesson.id, Lesson.planned_start, sa.func.max(LessonRoom.classroom_id))
                .join(LessonRoom, LessonRoom.lesson_id == Lesson.id)
                .where(LessonRoom.role == RoomRole.RECEIVING.value)
                .group_by(Lesson.id, Lesson.planned_start)
            )
        ).all()
        report = await timetable.regenerate_term(s, term_id, now=now)
    before = [room for _, start, room in rows if start <= now]
    after = {lid: room for lid, start, room in rows if start > now}
    assert before and set(before) == {pair.receiving[0].id}
    assert after and set(after.values()) == {new_room.id}
    assert moved in after  # moved by hand in time, not in place: it follows too
    assert sorted(rerouted) == sorted(after)
    assert (report.created, report.updated, report.removed) == (0, 0, 0)
