"""Attendance rows, lesson summaries and their statistics, on constructed rows.

The summary and verdict rules on hand-made connections and samples; then the same rows
through the database (SQLite and PostgreSQL): rows written as rooms join and leave, rows a
crash left open closed at the last sample, summaries stored and aggregated with GROUP BY,
and the CSV export Excel opens. tests/test_link_quality.py does the same from real lessons.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import attendance, lessons, schools
from classroom.lesson_stats import (
    HELD_MIN_FRACTION,
    LATE_AFTER,
    Connection,
    LessonPlan,
    catalogue_headers,
    export_csv,
    lessons_due_for_summary,
    percentile,
    statistics,
    stored_summary,
    summarise,
    summarise_lesson,
)
from classroom.link_samples import Sample, insert_samples
from classroom.models import InvalidInput, Recording
from classroom.statistics_models import LessonStats
from classroom.timetable_models import LessonSeries, SeriesOccurrence, Term

Sessions = async_sessionmaker[AsyncSession]

BEIJING = timezone(timedelta(hours=8))
T0 = datetime(2026, 9, 7, 9, 55, tzinfo=BEIJING)  # Monday, period 3
END = T0 + timedelta(minutes=45)
MAIN, RURAL1, RURAL2 = 1, 2, 3
PLAN = LessonPlan(
    lesson_id=7,
    state="ended",
    planned_start=T0,
    planned_end=END,
    rooms=((MAIN, "main"), (RURAL1, "receiving"), (RURAL2, "receiving")),
)
I18N = Path(__file__).resolve().parent.parent / "web" / "static" / "i18n"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def conn(room: int, start: float, end: float | None, reason: str | None = "ended") -> Connection:
    return Connection(room, at(start), at(end) if end is not None else None, reason)


def sample(room: int, direction: str, minute: float, **kw: object) -> Sample:
    fields: dict = dict(
        lesson_id=7,
        classroom_id=room,
        at=at(minute),
        direction=direction,
        seconds=10.0,
        bitrate_kbps=800.0,
        packets=1000,
        packets_lost=0,
        jitter_ms=2.0,
        rtt_ms=20.0,
        freezes=0,
        freeze_ms=0,
        keyframe_requests=0,
    )
    fields.update(kw)
    return Sample(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the rules


def test_a_room_that_dropped_and_came_back_is_held_with_its_gap_and_reconnect() -> None:
    connections = [
        conn(MAIN, -2, 45),
        conn(RURAL1, -1, 20, "dropped"),
        conn(RURAL1, 23, 45),
        conn(RURAL2, 1, 44, "left"),
    ]
    summary = summarise(PLAN, connections, [], now=at(50))
    assert summary.verdict == "held" and not summary.late
    rural = summary.room(RURAL1)
    assert rural.attendance_s == pytest.approx(42 * 60)  # 20 + 22 minutes within the plan
    assert rural.connected_s == pytest.approx(43 * 60)  # and the minute before the start
    assert rural.reconnects == 1 and rural.drops == 1
    assert rural.lateness_s == pytest.approx(-60)
    assert summary.room(MAIN).attendance_s == pytest.approx(45 * 60)
    assert summary.together_s == pytest.approx(45 * 60)  # room 3 covered room 2's gap
    assert (summary.reconnects, summary.drops, summary.rooms_joined) == (1, 1, 3)
    assert summary.main_lateness_s == pytest.approx(-120)


def test_rooms_connected_at_different_times_are_not_a_held_lesson() -> None:
    connections = [conn(MAIN, 0, 22), conn(RURAL1, 23, 45)]
    summary = summarise(PLAN, connections, [], now=at(50))
    assert summary.together_s == 0
    assert summary.verdict == "partial"
    assert summary.room(MAIN).attendance_s == pytest.approx(22 * 60)


def test_held_needs_the_main_room_and_a_receiving_room_for_the_named_share() -> None:
    share = HELD_MIN_FRACTION * 45
    held = summarise(PLAN, [conn(MAIN, 0, 45), conn(RURAL1, 0, share)], [], now=at(50))
    short = summarise(PLAN, [conn(MAIN, 0, 45), conn(RURAL1, 0, share - 0.5)], [], now=at(50))
    assert held.together_fraction == pytest.approx(HELD_MIN_FRACTION)
    assert held.verdict == "held" and short.verdict == "partial"
    # Receiving rooms alone are no lesson, however long they stay.
    alone = summarise(PLAN, [conn(RURAL1, 0, 45), conn(RURAL2, 0, 45)], [], now=at(50))
    assert alone.verdict == "partial" and alone.main_first_join_at is None


def test_a_main_room_more_than_five_minutes_late_is_late_even_when_held() -> None:
    limit = LATE_AFTER.total_seconds() / 60
    late = summarise(PLAN, [conn(MAIN, limit + 1, 45), conn(RURAL1, 0, 45)], [], now=at(50))
    on_time = summarise(PLAN, [conn(MAIN, limit, 45), conn(RURAL1, 0, 45)], [], now=at(50))
    assert late.verdict == "held" and late.late
    assert late.main_lateness_s == pytest.approx((limit + 1) * 60)
    assert on_time.late is False


def test_nobody_joined_is_missed_and_a_cancelled_lesson_stays_cancelled() -> None:
    missed = summarise(PLAN, [], [], now=at(50))
    assert missed.verdict == "missed" and not missed.late
    assert [r.attendance_s for r in missed.rooms] == [0, 0, 0]
    assert missed.room(RURAL1).first_join_at is None
    cancelled = PLAN.__class__(**{**PLAN.__dict__, "state": "cancelled"})
    assert summarise(cancelled, [conn(MAIN, 0, 3)], [], now=at(50)).verdict == "cancelled"


def test_a_connection_still_open_counts_until_now() -> None:
    summary = summarise(PLAN, [conn(MAIN, 0, None), conn(RURAL1, 0, None)], [], now=at(30))
    assert summary.room(MAIN).attendance_s == pytest.approx(30 * 60)
    assert summary.verdict == "held"  # 30 of 45 minutes so far


def test_link_figures_weight_by_time_and_packets() -> None:
    samples = [
        sample(RURAL1, "down", 1, bitrate_kbps=1000.0, seconds=10, packets=900, packets_lost=9),
        sample(
            RURAL1,
            "down",
            2,
            bitrate_kbps=400.0,
            seconds=30,
            packets=100,
            packets_lost=11,
            freezes=2,
            freeze_ms=1500,
            rtt_ms=80.0,
        ),
        sample(RURAL1, "up", 1, bitrate_kbps=600.0, packets=0, jitter_ms=0.0, rtt_ms=20.0),
        sample(
            RURAL1,
            "up",
            2,
            bitrate_kbps=600.0,
            packets=50,
            packets_lost=5,
            jitter_ms=7.0,
            rtt_ms=80.0,
        ),
    ]
    room = summarise(PLAN, [conn(RURAL1, 0, 45)], samples, now=at(50)).room(RURAL1)
    assert room.down_bitrate_mean_kbps == pytest.approx((1000 * 10 + 400 * 30) / 40)
    assert room.down_bitrate_p95_kbps == 1000.0
    assert room.down_loss == pytest.approx(20 / 1000)
    assert room.up_loss == pytest.approx(5 / 50)
    assert room.up_jitter_ms == 7.0  # intervals without packets have no jitter to average
    assert (room.down_freezes, room.down_freeze_s) == (2, 1.5)
    assert room.rtt_mean_ms == pytest.approx(50.0) and room.rtt_p95_ms == 80.0
    assert room.samples == 2
    quiet = summarise(PLAN, [conn(RURAL2, 0, 45)], [], now=at(50)).room(RURAL2)
    assert quiet.down_bitrate_mean_kbps is None and quiet.rtt_mean_ms is None


def test_percentile_is_a_measured_value() -> None:
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_close_reasons_map_to_the_attendance_vocabulary() -> None:
    assert attendance.attendance_reason("left") == "left"
    assert attendance.attendance_reason("lesson_ended") == "ended"
    assert attendance.attendance_reason("replaced") == "replaced"
    assert attendance.attendance_reason("flood") == "kicked"
    assert attendance.attendance_reason("server_shutdown") == "server_restart"
    for cause in ("closed", "timeout", "socket_error", "no_answer", None):
        assert attendance.attendance_reason(cause) == "dropped"


def test_csv_opens_in_excel_with_chinese_headers_and_no_formulas() -> None:
    from classroom.lesson_stats import GROUP_COLUMNS, GroupStats

    counts = dict(held=2, partial=0, late=1, missed=1, cancelled=0, pending=0)
    row = GroupStats(
        key="12",
        label='=HYPERLINK("http://x")',
        scheduled=3,
        **counts,
        room_lessons=4,
        attendance_minutes=150.5,
        attendance_rate=0.8333,
        reconnects=1,
        drops=1,
        freezes=2,
        freeze_minutes=0.25,
        down_bitrate_kbps=820.0,
        up_bitrate_kbps=None,
        down_loss=0.01,
        up_loss=None,
        rtt_ms=35.5,
        recordings=1,
    )
    catalogue = json.loads((I18N / "zh-CN.json").read_text(encoding="utf-8"))
    data = export_csv([row], headers=catalogue_headers(catalogue, GROUP_COLUMNS))
    assert data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    header, values = lines
    assert len(header) == len(GROUP_COLUMNS)
    assert header[GROUP_COLUMNS.index("held")] == catalogue["stats_csv.held"]
    assert all(h in catalogue.values() for h in header)  # every column has a Chinese name
    assert values[1].startswith("'=")  # a name Excel would have run as a formula
    assert values[GROUP_COLUMNS.index("attendance_minutes")] == "150.5"
    assert values[GROUP_COLUMNS.index("up_bitrate_kbps")] == ""
    assert data.count(b"\r\n") == 2
    english = json.loads((I18N / "en.json").read_text(encoding="utf-8"))
    assert all(f"stats_csv.{c}" in english for c in GROUP_COLUMNS)


# ------------------------------------------------------------- the database


async def make_lesson(s: AsyncSession, start: datetime = T0, receiving: int = 2, tag: str = ""):
    city = await schools.create_school(s, name=f"城关一中{tag}", kind="city")
    main = await schools.create_classroom(s, school_id=city.id, name="主讲教室")
    rural = []
    for i in range(receiving):
        school = await schools.create_school(s, name=f"村小{tag}{i}", kind="rural")
        rural.append((await schools.create_classroom(s, school_id=school.id, name="听课")).id)
    pairing = await schools.create_pairing(
        s, name=f"结对{tag}", main_classroom_id=main.id, receiving_classroom_ids=rural
    )
    lesson = await lessons.create_lesson(
        s,
        pairing_id=pairing.id,
        kind="dedicated",
        subject="数学",
        grade="初二",
        teacher_name=f"王老师{tag}",
        title="一次函数",
        planned_start=start,
        planned_end=start + timedelta(minutes=45),
    )
    return lesson.id, pairing.id, city.id, main.id, rural


async def test_rows_are_written_at_join_and_closed_at_leave(db: Sessions) -> None:
    async with db() as s:
        lesson_id, _, _, main, (rural, _) = await make_lesson(s)
        first = await attendance.open_room_session(s, lesson_id, rural, "receiving", at(0))
        await attendance.open_room_session(s, lesson_id, main, "main", at(0.5))
    async with db() as s:
        rows = await attendance.room_sessions_of(s, lesson_id)
    assert [(r.classroom_id, r.left_at, r.reconnects) for r in rows] == [
        (rural, None, 0),
        (main, None, 0),
    ]  # a crash now loses nothing already known
    async with db() as s:
        assert await attendance.close_room_session(s, lesson_id, rural, at(20), "closed") == 1
        second = await attendance.open_room_session(s, lesson_id, rural, "receiving", at(23))
        await attendance.close_room_session(s, lesson_id, rural, at(45), "lesson_ended")
    async with db() as s:
        rows = await attendance.room_sessions_of(s, lesson_id)
    rows = [r for r in rows if r.classroom_id == rural]
    assert [r.id for r in rows] == [first, second]
    assert [(r.left_at, r.end_reason, r.cause, r.reconnects) for r in rows] == [
        (at(20), "dropped", "closed", 0),
        (at(45), "ended", "lesson_ended", 1),
    ]


async def test_rows_a_crash_left_open_close_at_the_last_sample(db: Sessions) -> None:
    async with db() as s:
        lesson_id, _, _, main, (rural, quiet) = await make_lesson(s)
        await attendance.open_room_session(s, lesson_id, main, "main", at(0))
        await attendance.open_room_session(s, lesson_id, rural, "receiving", at(1))
        await attendance.open_room_session(s, lesson_id, quiet, "receiving", at(2))
        await attendance.close_room_session(s, lesson_id, quiet, at(3), "left")
        await insert_samples(
            s,
            [
                Sample(
                    lesson_id, room, at(minute), direction, 10.0, 500.0, 100, 0, 1.0, 20.0, 0, 0, 0
                )
                for room, minute in ((main, 9.5), (main, 10), (rural, 1.5), (rural, 7))
                for direction in ("up", "down")
            ],
        )
        assert await attendance.close_orphaned_sessions(s) == [lesson_id]
        assert await attendance.close_orphaned_sessions(s) == []  # nothing left open
    async with db() as s:
        rows = {r.classroom_id: r for r in await attendance.room_sessions_of(s, lesson_id)}
    assert (rows[main].left_at, rows[main].end_reason) == (at(10), "server_restart")
    assert (rows[rural].left_at, rows[rural].end_reason) == (at(7), "server_restart")
    assert (rows[quiet].left_at, rows[quiet].end_reason) == (at(3), "left")  # untouched


async def test_a_row_left_open_without_samples_closes_at_its_join(db: Sessions) -> None:
    async with db() as s:
        lesson_id, _, _, main, _ = await make_lesson(s)
        await attendance.open_room_session(s, lesson_id, main, "main", at(4))
        await attendance.close_orphaned_sessions(s)
        row = (await attendance.room_sessions_of(s, lesson_id))[0]
    assert row.left_at == at(4) and row.end_reason == "server_restart"


async def test_summary_is_stored_recomputed_and_read_back(db: Sessions) -> None:
    async with db() as s:
        lesson_id, _, _, main, (rural, other) = await make_lesson(s)
        for room, start, end, cause in (
            (main, -1, 45, "lesson_ended"),
            (rural, 0, 20, "timeout"),
            (rural, 22, 45, "lesson_ended"),
        ):
            await attendance.open_room_session(s, lesson_id, room, "x", at(start))
            await attendance.close_room_session(s, lesson_id, room, at(end), cause)
        await insert_samples(
            s,
            [
                Sample(lesson_id, rural, at(m), "down", 10.0, 700.0, 600, 6, 3.0, 40.0, 1, 700, 2)
                for m in (5, 10, 15)
            ],
        )
        first = await summarise_lesson(s, lesson_id, now=at(60))
        again = await summarise_lesson(s, lesson_id, now=at(60))
        stored = await stored_summary(s, lesson_id)
        count = await s.scalar(sa.select(sa.func.count()).select_from(LessonStats))
    assert first == again == stored and count == 1
    assert stored is not None and stored.verdict == "held"
    assert [r.classroom_id for r in stored.rooms] == [main, rural, other]
    room = stored.room(rural)
    assert room.attendance_s == pytest.approx(43 * 60) and room.reconnects == 1
    assert room.drops == 1 and room.down_loss == pytest.approx(0.01)
    assert room.down_freezes == 3 and room.down_freeze_s == pytest.approx(2.1)
    assert stored.room(other).first_join_at is None and stored.room(other).attendance_s == 0


async def test_statistics_group_lessons_per_week_school_pairing_teacher_term(
    db: Sessions,
) -> None:
    week2 = T0 + timedelta(days=7)
    async with db() as s:
        # Pairing A: a held lesson in week 1, a missed one in week 2, a cancelled one.
        held, pairing_a, city_a, main_a, (rural_a, _absent) = await make_lesson(s, tag="A")
        missed = (
            await lessons.create_lesson(
                s,
                pairing_id=pairing_a,
                kind="dedicated",
                subject="数学",
                grade="初二",
                teacher_name="王老师A",
                title="一次函数",
                planned_start=week2,
                planned_end=week2 + timedelta(minutes=45),
            )
        ).id
        cancelled = (
            await lessons.create_lesson(
                s,
                pairing_id=pairing_a,
                kind="dedicated",
                subject="数学",
                grade="初二",
                teacher_name="王老师A",
                title="一次函数",
                planned_start=week2 + timedelta(hours=2),
                planned_end=week2 + timedelta(hours=2, minutes=45),
            )
        ).id
        await lessons.transition(s, cancelled, lessons.LessonState.CANCELLED)
        # Pairing B: one lesson, main room 10 minutes late, then together to the end.
        late, pairing_b, _, main_b, (rural_b,) = await make_lesson(
            s, start=T0 + timedelta(hours=1), receiving=1, tag="B"
        )
        rows = [
            (held, main_a, T0, T0 + timedelta(minutes=45)),
            (held, rural_a, T0, T0 + timedelta(minutes=30)),
            (late, main_b, T0 + timedelta(minutes=70), T0 + timedelta(minutes=105)),
            (late, rural_b, T0 + timedelta(minutes=60), T0 + timedelta(minutes=105)),
        ]
        for lesson_id, room, joined, left in rows:
            await attendance.open_room_session(s, lesson_id, room, "x", joined)
            await attendance.close_room_session(s, lesson_id, room, left, "lesson_ended")
        for lesson_id in (held, late):
            for state in ("open", "live", "ended"):
                await lessons.transition(s, lesson_id, lessons.LessonState(state))
        s.add(
            Recording(
                lesson_id=held,
                title="一次函数",
                kind="dedicated",
                subject="数学",
                grade="初二",
                teacher_name="王老师A",
                started_at=T0,
                term="2026秋",
                state="ready",
            )
        )
        term = Term(
            school_year="2026-2027",
            name="2026秋",
            start_date=date(2026, 9, 1),
            end_date=date(2027, 1, 20),
        )
        s.add(term)
        await s.flush()
        series = LessonSeries(
            term_id=term.id,
            pairing_id=pairing_a,
            kind="dedicated",
            subject="数学",
            grade="初二",
            title="一次函数",
            teacher_name="王老师A",
            broadcast=False,
            weekday=1,
            period=3,
        )
        s.add(series)
        await s.flush()
        s.add(
            SeriesOccurrence(
                lesson_id=held,
                series_id=series.id,
                occurrence_date=date(2026, 9, 7),
                fingerprint="",
            )
        )
        await s.commit()
        later = week2 + timedelta(days=1)
        assert set(await lessons_due_for_summary(s, now=later)) == {held, missed, cancelled, late}
        for lesson_id in (held, missed, cancelled, late):
            await summarise_lesson(s, lesson_id, now=later)
        assert await lessons_due_for_summary(s, now=later) == []

        by_week = await statistics(s, "week", now=later)
        by_pairing = await statistics(s, "pairing", now=later)
        by_school = await statistics(s, "school", now=later, pairing_id=pairing_a)
        by_teacher = await statistics(s, "teacher", now=later)
        by_term = await statistics(s, "term", now=later)
        by_room = await statistics(s, "classroom", now=later, pairing_id=pairing_b)
        in_term = await statistics(s, "pairing", now=later, term_id=term.id)
        schools_in_term = await statistics(s, "school", now=later, term_id=term.id)
        window = await statistics(
            s, "pairing", now=later, start=T0 + timedelta(days=6), end=T0 + timedelta(days=8)
        )

    assert [(w.key, w.scheduled, w.held, w.late, w.missed, w.cancelled) for w in by_week] == [
        ("2026-09-07", 2, 2, 1, 0, 0),
        ("2026-09-14", 2, 0, 0, 1, 1),
    ]
    a, b = by_pairing
    assert (a.label, a.scheduled, a.held, a.missed, a.cancelled, a.late) == ("结对A", 3, 1, 1, 1, 0)
    assert (b.label, b.scheduled, b.held, b.late) == ("结对B", 1, 1, 1)
    assert a.recordings == 1 and b.recordings == 0
    # Pairing A's rooms: the held lesson 45 + 30 minutes (absent room 0); the others none.
    assert a.attendance_minutes == pytest.approx(75)
    assert a.room_lessons == 9  # 3 rooms x 3 summarised lessons
    assert a.attendance_rate == pytest.approx(75 / (9 * 45))
    # Per school: each school counts the lessons its classrooms were in, and only its rooms.
    schools_seen = {row.label: row for row in by_school}
    assert schools_seen["城关一中A"].scheduled == 3
    assert schools_seen["城关一中A"].attendance_minutes == pytest.approx(45)
    assert schools_seen["村小A0"].attendance_minutes == pytest.approx(30)
    assert schools_seen["村小A1"].attendance_minutes == 0
    assert int(schools_seen["城关一中A"].key) == city_a
    assert [(t.key, t.scheduled, t.held) for t in by_teacher] == [
        ("王老师A", 3, 1),
        ("王老师B", 1, 1),
    ]
    # The term's timetable holds the held lesson; the others were planned by hand.
    terms = {t.label: t.scheduled for t in by_term}
    assert terms == {"": 3, "2026秋": 1}
    # Filtered by the term: its series' lesson, and lessons by hand within its dates.
    assert sum(row.scheduled for row in in_term) == 4
    assert sum(row.attendance_minutes for row in schools_in_term) == pytest.approx(75 + 80)
    assert {r.label: r.attendance_minutes for r in by_room} == {
        "城关一中B 主讲教室": pytest.approx(35),
        "村小B0 听课": pytest.approx(45),
    }
    assert [(w.label, w.scheduled) for w in window] == [("结对A", 2)]


async def test_a_past_lesson_nobody_joined_counts_as_missed_before_its_summary(
    db: Sessions,
) -> None:
    async with db() as s:
        lesson_id, *_ = await make_lesson(s)
        before = await statistics(s, "teacher", now=T0 + timedelta(minutes=30))
        after = await statistics(s, "teacher", now=END + timedelta(minutes=1))
        assert await lessons_due_for_summary(s, now=END + timedelta(minutes=1)) == []
        assert await lessons_due_for_summary(s, now=END + timedelta(minutes=11)) == [lesson_id]
    assert (before[0].pending, before[0].missed) == (1, 0)
    assert (after[0].pending, after[0].missed) == (0, 1)


async def test_statistics_refuse_unknown_groupings_and_naive_times(db: Sessions) -> None:
    async with db() as s:
        with pytest.raises(InvalidInput):
            await statistics(s, "month")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            await statistics(s, "week", start=datetime(2026, 9, 1))
        with pytest.raises(InvalidInput):
            await statistics(s, "week", timezone="Mars/Olympus")


async def test_a_school_with_two_rooms_in_a_lesson_counts_the_lesson_once(db: Sessions) -> None:
    async with db() as s:
        city = await schools.create_school(s, name="城关二中", kind="city")
        main = await schools.create_classroom(s, school_id=city.id, name="主讲教室")
        village = await schools.create_school(s, name="河口小学", kind="rural")
        rooms = [
            (await schools.create_classroom(s, school_id=village.id, name=name)).id
            for name in ("三年级一班", "三年级二班")
        ]
        pairing = await schools.create_pairing(
            s, name="结对河口", main_classroom_id=main.id, receiving_classroom_ids=rooms
        )
        for day in (0, 1):
            start = T0 + timedelta(days=day)
            lesson = await lessons.create_lesson(
                s,
                pairing_id=pairing.id,
                kind="dedicated",
                subject="数学",
                grade="三年级",
                teacher_name="李老师",
                title="乘法",
                planned_start=start,
                planned_end=start + timedelta(minutes=45),
            )
            for room in (main.id, *rooms):
                await attendance.open_room_session(s, lesson.id, room, "x", start)
                await attendance.close_room_session(
                    s, lesson.id, room, start + timedelta(minutes=45), "lesson_ended"
                )
            await summarise_lesson(s, lesson.id, now=END + timedelta(days=2))
        later = END + timedelta(days=2)
        by_school = {r.label: r for r in await statistics(s, "school", now=later)}
        village_weeks = await statistics(s, "week", now=later, school_id=village.id)
    row = by_school["河口小学"]
    assert (row.scheduled, row.held, row.room_lessons) == (2, 2, 4)
    assert row.attendance_minutes == pytest.approx(4 * 45)
    assert [(w.scheduled, w.held, w.room_lessons) for w in village_weeks] == [(2, 2, 4)]
    assert (by_school["城关二中"].scheduled, by_school["城关二中"].room_lessons) == (2, 2)
