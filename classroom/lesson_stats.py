"""What really happened in each lesson, and 常态化 statistics over many lessons.

A lesson's summary is computed from its attendance rows (classroom/attendance.py) and its
link samples (classroom/link_samples.py) when it ends, and again whenever asked (it is a
pure function of those rows, so recomputing is always safe). The statistics pages then
aggregate the stored summaries per week, term, school, pairing, teacher or classroom with
SQL GROUP BY: a city term is tens of thousands of lessons, never loaded one by one.

Verdicts (the issue's definitions, made precise):
- **held**: the main room and at least one receiving room were connected *at the same
  time* for at least `HELD_MIN_FRACTION` of the planned time. Simultaneous, because a
  synchronous lesson only happens while teacher and pupils are both there: a teacher alone
  for the first half and a rural room alone for the second is no lesson.
- **partial**: rooms joined, but not together long enough to call it held.
- **missed**: scheduled (not cancelled) and nobody joined at all.
- **cancelled**: cancelled, whoever joined.
- **late** (a flag beside the verdict): the main room first joined more than `LATE_AFTER`
  after the planned start. A lesson can be held and late.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from classroom.attendance import (
    DROPPED,
    Interval,
    clip,
    intersect,
    room_sessions_of,
    total_seconds,
    union,
)
from classroom.link_samples import Sample, samples_of
from classroom.models import (
    Classroom,
    InvalidInput,
    Lesson,
    LessonRoom,
    LessonState,
    NotFound,
    Pairing,
    Recording,
    RecordingState,
    RoomRole,
    RoomSession,
    School,
    utcnow,
)
from classroom.statistics_models import LessonRoomStats, LessonStats, LessonVerdict
from classroom.timetable_models import LessonSeries, SeriesOccurrence, Term

# "Most of the planned time": more than half. Below half, pupils missed more of the lesson
# than they saw and the teacher could not have taught its plan; above it, the lesson took
# place, with trouble the link figures show. Tunable; the statistics page names it.
HELD_MIN_FRACTION = 0.5
# Five minutes: a period is 40-45 minutes, and the bureau's own alert on the live overview
# fires at five minutes past the start (issue 6), so "late" means the same thing in both.
LATE_AFTER = timedelta(minutes=5)
# A lesson never opened is summarised as missed this long after its planned end (the
# scheduler may still be ending a late-running lesson).
SUMMARY_GRACE = timedelta(minutes=10)
# An open or live lesson that nobody ended is summarised as it stands this long after its
# planned end, so a forgotten lesson does not stay out of the statistics for ever.
STALE_AFTER = timedelta(hours=6)


# ---------------------------------------------------------------- the summary


@dataclass(frozen=True)
class LessonPlan:
    """What was planned: the lesson's time, state and rooms."""

    lesson_id: int
    state: str
    planned_start: datetime
    planned_end: datetime
    rooms: tuple[tuple[int, str], ...]  # (classroom_id, role)


@dataclass(frozen=True)
class Connection:
    """One attendance row (room_sessions), as the summary needs it."""

    classroom_id: int
    joined_at: datetime
    left_at: datetime | None  # None: still connected
    end_reason: str | None = None


@dataclass(frozen=True)
class RoomSummary:
    classroom_id: int
    role: str
    attendance_s: float  # connected within the planned time
    connected_s: float  # connected at all (rooms often join early to check the link)
    first_join_at: datetime | None
    lateness_s: float | None  # first join - planned start; negative: early
    reconnects: int  # joins after the first
    drops: int  # connections that ended as `dropped`
    samples: int
    up_bitrate_mean_kbps: float | None
    up_bitrate_p95_kbps: float | None
    down_bitrate_mean_kbps: float | None
    down_bitrate_p95_kbps: float | None
    up_loss: float | None
    down_loss: float | None
    up_jitter_ms: float | None
    down_jitter_ms: float | None
    rtt_mean_ms: float | None
    rtt_p95_ms: float | None
    up_freezes: int
    up_freeze_s: float
    down_freezes: int
    down_freeze_s: float


@dataclass(frozen=True)
class LessonSummary:
    lesson_id: int
    verdict: str  # LessonVerdict
    late: bool
    planned_s: float
    together_s: float
    main_first_join_at: datetime | None
    main_lateness_s: float | None
    rooms_planned: int
    rooms_joined: int
    reconnects: int
    drops: int
    rooms: tuple[RoomSummary, ...]

    @property
    def together_fraction(self) -> float:
        return self.together_s / self.planned_s if self.planned_s > 0 else 0.0

    def room(self, classroom_id: int) -> RoomSummary:
        return next(r for r in self.rooms if r.classroom_id == classroom_id)


def summarise(
    plan: LessonPlan,
    connections: Sequence[Connection],
    samples: Sequence[Sample],
    *,
    now: datetime,
) -> LessonSummary:
    """The summary of one lesson from its rows; pure, so it can be recomputed at will.

    A connection still open counts until `now` (a summary taken during the lesson).
    """
    start, end = plan.planned_start, plan.planned_end
    planned_s = max(0.0, (end - start).total_seconds())
    by_room: dict[int, list[Connection]] = {}
    for c in connections:
        by_room.setdefault(c.classroom_id, []).append(c)

    def intervals(room_connections: Sequence[Connection]) -> list[Interval]:
        return union(
            Interval(c.joined_at, c.left_at if c.left_at is not None else max(now, c.joined_at))
            for c in room_connections
        )

    rooms = []
    main_union: list[Interval] = []
    receiving: list[Interval] = []
    main_first: datetime | None = None
    roles = dict(plan.rooms)
    for classroom_id in [*roles, *(c for c in by_room if c not in roles)]:
        role = roles.get(classroom_id, RoomRole.RECEIVING.value)
        room_connections = sorted(by_room.get(classroom_id, []), key=lambda c: c.joined_at)
        covered = intervals(room_connections)
        if role == RoomRole.MAIN:
            main_union = covered
        else:
            receiving.extend(covered)
        first = room_connections[0].joined_at if room_connections else None
        if role == RoomRole.MAIN:
            main_first = first
        rooms.append(
            RoomSummary(
                classroom_id=classroom_id,
                role=role,
                attendance_s=total_seconds(clip(covered, start, end)),
                connected_s=total_seconds(covered),
                first_join_at=first,
                lateness_s=(first - start).total_seconds() if first is not None else None,
                reconnects=max(0, len(room_connections) - 1),
                drops=sum(c.end_reason == DROPPED for c in room_connections),
                **_link_figures([s for s in samples if s.classroom_id == classroom_id]),
            )
        )
    together = intersect(clip(main_union, start, end), clip(union(receiving), start, end))
    together_s = total_seconds(together)
    main_lateness = (main_first - start).total_seconds() if main_first is not None else None

    if plan.state == LessonState.CANCELLED:
        verdict = LessonVerdict.CANCELLED
    elif not connections:
        verdict = LessonVerdict.MISSED
    elif planned_s > 0 and together_s / planned_s >= HELD_MIN_FRACTION:
        verdict = LessonVerdict.HELD
    else:
        verdict = LessonVerdict.PARTIAL
    return LessonSummary(
        lesson_id=plan.lesson_id,
        verdict=verdict.value,
        late=main_lateness is not None and main_lateness > LATE_AFTER.total_seconds(),
        planned_s=planned_s,
        together_s=together_s,
        main_first_join_at=main_first,
        main_lateness_s=main_lateness,
        rooms_planned=len(plan.rooms),
        rooms_joined=len(by_room),
        reconnects=sum(r.reconnects for r in rooms),
        drops=sum(r.drops for r in rooms),
        rooms=tuple(rooms),
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): a value that was really measured."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _link_figures(samples: Sequence[Sample]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    counts = []
    for direction in ("up", "down"):
        rows = [s for s in samples if s.direction == direction]
        counts.append(len(rows))
        seconds = sum(s.seconds for s in rows)
        packets = sum(s.packets for s in rows)
        flowing = [s for s in rows if s.packets > 0]
        figures[f"{direction}_bitrate_mean_kbps"] = (
            sum(s.bitrate_kbps * s.seconds for s in rows) / seconds if seconds > 0 else None
        )
        figures[f"{direction}_bitrate_p95_kbps"] = percentile([s.bitrate_kbps for s in rows], 95)
        figures[f"{direction}_loss"] = (
            sum(s.packets_lost for s in rows) / packets if packets > 0 else None
        )
        figures[f"{direction}_jitter_ms"] = (
            sum(s.jitter_ms for s in flowing) / len(flowing) if flowing else None
        )
        figures[f"{direction}_freezes"] = sum(s.freezes for s in rows)
        figures[f"{direction}_freeze_s"] = sum(s.freeze_ms for s in rows) / 1000
    # RTT is one figure per path; samples carry it on both directions, so read one.
    rtts = [s.rtt_ms for s in samples if s.direction == "down" and s.rtt_ms is not None]
    if not rtts:
        rtts = [s.rtt_ms for s in samples if s.rtt_ms is not None]
    figures["rtt_mean_ms"] = sum(rtts) / len(rtts) if rtts else None
    figures["rtt_p95_ms"] = percentile(rtts, 95)
    figures["samples"] = max(counts)
    return figures


async def summarise_lesson(
    db: AsyncSession, lesson_id: int, *, now: datetime | None = None
) -> LessonSummary:
    """Compute one lesson's summary from its rows and store it (replacing any); commits."""
    summary = await compute_summary(db, lesson_id, now=now)
    for attempt in (1, 2):
        try:
            await _store(db, summary)
            break
        except IntegrityError:
            # Another writer stored the same lesson between our delete and insert.
            await db.rollback()
            if attempt == 2:
                raise
    return summary


async def compute_summary(
    db: AsyncSession, lesson_id: int, *, now: datetime | None = None
) -> LessonSummary:
    """One lesson's summary from its rows as they stand, without storing it (a lesson
    still running, shown as it goes)."""
    lesson = await db.get(Lesson, lesson_id, populate_existing=True)
    if lesson is None:
        raise NotFound.because("lesson_not_found", id=lesson_id)
    plan = LessonPlan(
        lesson_id=lesson.id,
        state=lesson.state,
        planned_start=lesson.planned_start,
        planned_end=lesson.planned_end,
        rooms=tuple(
            (r.classroom_id, r.role)
            for r in sorted(lesson.rooms, key=lambda r: (r.role != RoomRole.MAIN, r.position))
        ),
    )
    connections = [
        Connection(r.classroom_id, r.joined_at, r.left_at, r.end_reason)
        for r in await room_sessions_of(db, lesson_id)
    ]
    return summarise(plan, connections, await samples_of(db, lesson_id), now=now or utcnow())


async def _store(db: AsyncSession, summary: LessonSummary) -> None:
    lesson_id = summary.lesson_id
    await db.execute(sa.delete(LessonRoomStats).where(LessonRoomStats.lesson_id == lesson_id))
    await db.execute(sa.delete(LessonStats).where(LessonStats.lesson_id == lesson_id))
    db.add(
        LessonStats(
            lesson_id=lesson_id,
            computed_at=utcnow(),
            verdict=summary.verdict,
            late=summary.late,
            planned_s=summary.planned_s,
            together_s=summary.together_s,
            main_first_join_at=summary.main_first_join_at,
            main_lateness_s=summary.main_lateness_s,
            rooms_planned=summary.rooms_planned,
            rooms_joined=summary.rooms_joined,
            reconnects=summary.reconnects,
            drops=summary.drops,
        )
    )
    for room in summary.rooms:
        values = {f.name: getattr(room, f.name) for f in fields(room)}
        db.add(LessonRoomStats(lesson_id=lesson_id, **values))
    await db.commit()


async def stored_summary(db: AsyncSession, lesson_id: int) -> LessonSummary | None:
    """The summary last stored for a lesson, or None if it was never computed."""
    stats = await db.get(LessonStats, lesson_id, populate_existing=True)
    if stats is None:
        return None
    rooms = (
        await db.scalars(
            sa.select(LessonRoomStats)
            .where(LessonRoomStats.lesson_id == lesson_id)
            .execution_options(populate_existing=True)
        )
    ).all()
    names = [f.name for f in fields(RoomSummary)]
    room_summaries = tuple(RoomSummary(**{n: getattr(r, n) for n in names}) for r in rooms)
    order = {cid: i for i, cid in enumerate(r.classroom_id for r in room_summaries)}
    return LessonSummary(
        lesson_id=lesson_id,
        verdict=stats.verdict,
        late=stats.late,
        planned_s=stats.planned_s,
        together_s=stats.together_s,
        main_first_join_at=stats.main_first_join_at,
        main_lateness_s=stats.main_lateness_s,
        rooms_planned=stats.rooms_planned,
        rooms_joined=stats.rooms_joined,
        reconnects=stats.reconnects,
        drops=stats.drops,
        rooms=tuple(
            sorted(room_summaries, key=lambda r: (r.role != RoomRole.MAIN, order[r.classroom_id]))
        ),
    )


async def lessons_due_for_summary(
    db: AsyncSession, *, now: datetime | None = None, limit: int = 200
) -> list[int]:
    """Lessons whose summary is missing or older than their end, oldest first.

    Ended and cancelled lessons; lessons never opened, `SUMMARY_GRACE` after their planned
    end (missed); open or live ones nobody ended, `STALE_AFTER` after it.
    """
    now = now or utcnow()
    query = (
        sa.select(Lesson.id)
        .outerjoin(LessonStats, LessonStats.lesson_id == Lesson.id)
        .where(
            sa.or_(
                LessonStats.lesson_id.is_(None),
                LessonStats.computed_at < Lesson.ended_at,
            ),
            sa.or_(
                Lesson.state.in_([LessonState.ENDED.value, LessonState.CANCELLED.value]),
                sa.and_(
                    Lesson.state == LessonState.SCHEDULED.value,
                    Lesson.planned_end < now - SUMMARY_GRACE,
                ),
                sa.and_(
                    Lesson.state.in_([LessonState.OPEN.value, LessonState.LIVE.value]),
                    Lesson.planned_end < now - STALE_AFTER,
                ),
            ),
        )
        .order_by(Lesson.planned_start, Lesson.id)
        .limit(limit)
    )
    return list((await db.scalars(query)).all())


# ---------------------------------------------------------------- statistics

Grouping = Literal["week", "term", "school", "pairing", "teacher", "classroom"]
GROUPINGS: tuple[str, ...] = ("week", "term", "school", "pairing", "teacher", "classroom")


@dataclass(frozen=True)
class GroupStats:
    """One row of a statistics table: lessons and their rooms, grouped one way.

    Lesson counts count each lesson once per group; room figures cover the group's rooms
    of summarised lessons (for `school` and `classroom`: only that school's or classroom's).
    """

    key: str  # "2026-09-07" (week's Monday), an id, or a teacher's name; "" for none
    label: str
    scheduled: int  # every lesson planned in the window, cancelled ones included
    held: int
    partial: int
    late: int
    missed: int
    cancelled: int
    pending: int  # not over yet, or over and not summarised yet
    room_lessons: int  # (room, lesson) pairs summarised
    attendance_minutes: float
    attendance_rate: float | None  # attended room-minutes / planned room-minutes
    reconnects: int
    drops: int
    freezes: int  # what rooms saw freeze (downstream)
    freeze_minutes: float
    down_bitrate_kbps: float | None  # mean of the room-lessons' means
    up_bitrate_kbps: float | None
    down_loss: float | None
    up_loss: float | None
    rtt_ms: float | None
    recordings: int  # lessons with a recording ready in the library
    # Mean of the room-lessons' 95th-percentile RTT: how bad a room's worst moments
    # typically were (a true percentile over the group is not portable SQL).
    rtt_p95_ms: float | None = None


class _LocalWeek(FunctionElement[int]):
    """Weeks (Monday-based, at a fixed UTC offset) since the week of 1970-01-01.

    Portable integer arithmetic on epoch seconds; SQLite stores our UTC times as text.
    """

    type = sa.Integer()
    inherit_cache = True


# 1970-01-01 was a Thursday: three days after the Monday 1969-12-29 that starts week 0.
_WEEK0 = date(1969, 12, 29)


@compiles(_LocalWeek)
def _local_week_default(element: _LocalWeek, compiler: Any, **kw: Any) -> str:
    column, offset = list(element.clauses)
    return (
        f"CAST(FLOOR((EXTRACT(EPOCH FROM {compiler.process(column, **kw)}) + "
        f"{compiler.process(offset, **kw)} + 259200) / 604800) AS INTEGER)"
    )


@compiles(_LocalWeek, "sqlite")
def _local_week_sqlite(element: _LocalWeek, compiler: Any, **kw: Any) -> str:
    column, offset = list(element.clauses)
    return (
        f"((CAST(strftime('%s', {compiler.process(column, **kw)}) AS INTEGER) + "
        f"{compiler.process(offset, **kw)} + 259200) / 604800)"
    )


class _EpochSeconds(FunctionElement[float]):
    """Seconds since 1970 of a UTC time column, on both engines."""

    type = sa.Float()
    inherit_cache = True


@compiles(_EpochSeconds)
def _epoch_default(element: _EpochSeconds, compiler: Any, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"EXTRACT(EPOCH FROM {compiler.process(column, **kw)})"


@compiles(_EpochSeconds, "sqlite")
def _epoch_sqlite(element: _EpochSeconds, compiler: Any, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"CAST(strftime('%s', {compiler.process(column, **kw)}) AS INTEGER)"


def _verdict_expr(now: datetime) -> ColumnElement[str]:
    nobody = ~sa.exists().where(RoomSession.lesson_id == Lesson.id)
    return sa.case(
        (Lesson.state == LessonState.CANCELLED.value, LessonVerdict.CANCELLED.value),
        (LessonStats.verdict.is_not(None), LessonStats.verdict),
        (sa.and_(Lesson.planned_end <= now, nobody), LessonVerdict.MISSED.value),
        else_="pending",
    )


async def statistics(
    db: AsyncSession,
    by: Grouping,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    term_id: int | None = None,
    school_id: int | None = None,
    pairing_id: int | None = None,
    classroom_id: int | None = None,
    teacher_name: str | None = None,
    involving_school_id: int | None = None,
    teacher_user_id: int | None = None,
    timezone: str = "Asia/Shanghai",
    now: datetime | None = None,
) -> list[GroupStats]:
    """Lessons planned in [start, end) grouped `by` one key: two GROUP BY queries.

    One counts lessons (each once per group), the other sums their rooms' figures; they
    are joined by key here (a few hundred rows at most). `term_id` selects the lessons of
    that term's timetable, and lessons planned by hand within its dates. `timezone` places
    weeks (Monday to Sunday, local); China keeps one offset all year, so a fixed offset
    is exact there.

    `involving_school_id` and `teacher_user_id` scope what a caller may see: lessons with
    a room of that school (all their rooms counted, unlike `school_id`, which narrows the
    rooms too), or lessons whose teacher account is that user.
    """
    if by not in GROUPINGS:
        raise InvalidInput.because("stats_grouping", field="by", groupings=", ".join(GROUPINGS))
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput.because("time_without_zone", field=name)
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError):
        raise InvalidInput.because(
            "stats_unknown_timezone", field="timezone", zone=timezone
        ) from None
    now = now or utcnow()
    offset_s = int((zone.utcoffset(start or now) or timedelta()).total_seconds())
    per_room = by in ("school", "classroom")

    # The window and the lesson filters, on `lessons` (and the series tables for a term).
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(Lesson.planned_start >= start)
    if end is not None:
        conditions.append(Lesson.planned_start < end)
    if pairing_id is not None:
        conditions.append(Lesson.pairing_id == pairing_id)
    if teacher_name is not None:
        conditions.append(Lesson.teacher_name == teacher_name)
    if term_id is not None:
        conditions.append(await _term_condition(db, term_id))
    if involving_school_id is not None:
        conditions.append(
            Lesson.id.in_(
                sa.select(LessonRoom.lesson_id)
                .join(Classroom, Classroom.id == LessonRoom.classroom_id)
                .where(Classroom.school_id == involving_school_id)
            )
        )
    if teacher_user_id is not None:
        conditions.append(Lesson.teacher_user_id == teacher_user_id)

    # The room filters, on a classroom id column joined with `classrooms`.
    def room_filters(classroom: Any) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if school_id is not None:
            found.append(Classroom.school_id == school_id)
        if classroom_id is not None:
            found.append(classroom == classroom_id)
        return found

    room_conditions = room_filters(LessonRoom.classroom_id)

    # A lesson's key, for groupings by something of the lesson (a room's key comes later).
    lesson_keys: list[ColumnElement[Any] | InstrumentedAttribute[Any]] = []
    if by == "week":
        lesson_keys = [_LocalWeek(Lesson.planned_start, sa.literal(offset_s, sa.Integer()))]
    elif by == "term":
        lesson_keys = [LessonSeries.term_id]
    elif by == "pairing":
        lesson_keys = [Lesson.pairing_id]
    elif by == "teacher":
        lesson_keys = [Lesson.teacher_name]

    def lesson_joins(query: sa.Select[Any]) -> sa.Select[Any]:
        if by == "term" or term_id is not None:
            query = query.outerjoin(SeriesOccurrence, SeriesOccurrence.lesson_id == Lesson.id)
            query = query.outerjoin(LessonSeries, LessonSeries.id == SeriesOccurrence.series_id)
        if room_conditions and not per_room:
            in_rooms = (
                sa.select(LessonRoom.lesson_id)
                .join(Classroom, Classroom.id == LessonRoom.classroom_id)
                .where(*room_conditions)
            )
            query = query.where(Lesson.id.in_(in_rooms))
        return query.where(*conditions)

    # 1. Lessons: verdict, late and recording once per lesson of the window, then counted
    #    per key (for a room's key: per distinct (key, lesson), so a school with two
    #    classrooms in a lesson counts it once).
    recorded = sa.exists().where(
        Recording.lesson_id == Lesson.id, Recording.state == RecordingState.READY.value
    )
    per_lesson = lesson_joins(
        sa.select(
            Lesson.id.label("lesson_id"),
            *(k.label(f"k{i}") for i, k in enumerate(lesson_keys)),
            _verdict_expr(now).label("verdict"),
            sa.case((LessonStats.late.is_(True), 1), else_=0).label("late"),
            sa.case((recorded, 1), else_=0).label("recorded"),
        )
        .select_from(Lesson)
        .outerjoin(LessonStats, LessonStats.lesson_id == Lesson.id)
    ).subquery("per_lesson")
    room_key = Classroom.school_id if by == "school" else LessonRoom.classroom_id
    if per_room:
        pairs = (
            sa.select(room_key.label("k0"), LessonRoom.lesson_id)
            .join(Classroom, Classroom.id == LessonRoom.classroom_id)
            .where(*room_conditions)
            .distinct()
            .subquery("pairs")
        )
        counted_from: sa.FromClause = per_lesson.join(
            pairs, pairs.c.lesson_id == per_lesson.c.lesson_id
        )
        count_keys = [pairs.c.k0]
    else:
        counted_from = per_lesson
        count_keys = [per_lesson.c[f"k{i}"] for i in range(len(lesson_keys))]

    def count(value: str) -> ColumnElement[int]:
        return sa.func.sum(sa.case((per_lesson.c.verdict == value, 1), else_=0))

    lesson_rows = await db.execute(
        sa.select(
            *count_keys,
            sa.func.count(),
            count(LessonVerdict.HELD.value),
            count(LessonVerdict.PARTIAL.value),
            sa.func.sum(per_lesson.c.late),
            count(LessonVerdict.MISSED.value),
            count(LessonVerdict.CANCELLED.value),
            count("pending"),
            sa.func.sum(per_lesson.c.recorded),
        )
        .select_from(counted_from)
        .group_by(*count_keys)
    )
    counted: dict[Any, tuple[Any, ...]] = {
        row[0] if count_keys else None: row[1:] for row in lesson_rows.all()
    }

    # 2. Rooms of summarised lessons: their figures summed per key, in one pass.
    r = LessonRoomStats
    rated_key = (Classroom.school_id if by == "school" else r.classroom_id) if per_room else None
    rated = (
        sa.select(
            (rated_key if rated_key is not None else lesson_keys[0]).label("k0"),
            sa.func.count(),
            sa.func.sum(r.attendance_s) / 60,
            sa.func.sum(r.attendance_s) / sa.func.nullif(sa.func.sum(LessonStats.planned_s), 0),
            sa.func.sum(r.reconnects),
            sa.func.sum(r.drops),
            sa.func.sum(r.down_freezes),
            sa.func.sum(r.down_freeze_s) / 60,
            sa.func.avg(r.down_bitrate_mean_kbps),
            sa.func.avg(r.up_bitrate_mean_kbps),
            sa.func.avg(r.down_loss),
            sa.func.avg(r.up_loss),
            sa.func.avg(r.rtt_mean_ms),
            sa.func.avg(r.rtt_p95_ms),
        )
        .select_from(r)
        .join(Lesson, Lesson.id == r.lesson_id)
        .join(LessonStats, LessonStats.lesson_id == r.lesson_id)
    )
    if by == "school" or school_id is not None:
        rated = rated.join(Classroom, Classroom.id == r.classroom_id)
    if by == "term" or term_id is not None:
        rated = rated.outerjoin(SeriesOccurrence, SeriesOccurrence.lesson_id == Lesson.id)
        rated = rated.outerjoin(LessonSeries, LessonSeries.id == SeriesOccurrence.series_id)
    rated = rated.where(*conditions, *room_filters(r.classroom_id))
    rated = rated.group_by(sa.literal_column("k0"))
    figures_of = {row[0]: row[1:] for row in await db.execute(rated)}

    labels = await _labels(db, by, [k for k in counted if k is not None])
    result = []
    for key_value, counts in counted.items():
        figures = figures_of.get(key_value) or (
            0,
            0,
            None,
            0,
            0,
            0,
            0,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        scheduled, held, partial, late, missed, cancelled, pending, recordings = counts
        *room_figures, rtt_p95 = figures
        values = (
            *(scheduled, held, partial, late, missed, cancelled, pending),
            *room_figures,
            recordings,
            rtt_p95,
        )
        key, label = _key_and_label(by, key_value, labels)
        result.append(GroupStats(key, label, *_plain(values)))
    numeric = by in ("term", "school", "pairing", "classroom")
    result.sort(key=lambda g: (g.key == "", int(g.key) if numeric and g.key else 0, g.key))
    return result


async def _labels(db: AsyncSession, by: str, keys: list[Any]) -> dict[Any, str]:
    """Names for the keys found (a few hundred at most), read after the aggregation."""
    if not keys or by in ("week", "teacher"):
        return {}
    if by == "classroom":
        rows = await db.execute(
            sa.select(Classroom.id, School.name, Classroom.name)
            .join(School, School.id == Classroom.school_id)
            .where(Classroom.id.in_(keys))
        )
        return {cid: f"{school} {room}" for cid, school, room in rows.all()}
    tables: dict[str, type[School | Pairing | Term]] = {
        "school": School,
        "pairing": Pairing,
        "term": Term,
    }
    table = tables[by]
    named = await db.execute(sa.select(table.id, table.name).where(table.id.in_(keys)))
    return dict(named.all())


async def _term_condition(db: AsyncSession, term_id: int) -> ColumnElement[bool]:
    term = await db.get(Term, term_id)
    if term is None:
        raise NotFound.because("term_not_found", field="term_id", id=term_id)
    zone = ZoneInfo(term.timezone)
    first = datetime.combine(term.start_date, datetime.min.time(), zone).astimezone(UTC)
    after = datetime.combine(term.end_date + timedelta(days=1), datetime.min.time(), zone)
    return sa.or_(
        LessonSeries.term_id == term_id,
        sa.and_(
            SeriesOccurrence.lesson_id.is_(None),
            Lesson.planned_start >= first,
            Lesson.planned_start < after.astimezone(UTC),
        ),
    )


def _key_and_label(by: str, value: Any, labels: Mapping[Any, str]) -> tuple[str, str]:
    if value is None:
        return "", ""
    if by == "week":
        monday = _WEEK0 + timedelta(weeks=int(value))
        return monday.isoformat(), monday.isoformat()
    if by == "teacher":
        return str(value), str(value)
    return str(value), labels.get(value, "")


def _plain(values: Sequence[Any]) -> list[Any]:
    """Database numbers as Python ints and floats (PostgreSQL hands back Decimals)."""
    names = [f.name for f in fields(GroupStats)][2:]
    out: list[Any] = []
    for name, value in zip(names, values, strict=True):
        kind = GroupStats.__dataclass_fields__[name].type
        if value is None:
            out.append(None if "None" in str(kind) else 0)
        elif kind == "int":
            out.append(int(value))
        else:
            out.append(float(value))
    return out


# ---------------------------------------------------------------------- CSV

GROUP_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(GroupStats))
CSV_HEADER_PREFIX = "stats_csv."  # i18n keys: stats_csv.<column>
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def catalogue_headers(catalogue: Mapping[str, str], columns: Sequence[str]) -> dict[str, str]:
    """Column headers from an i18n catalogue (web/static/i18n/*.json), by `stats_csv.` key."""
    return {c: catalogue.get(f"{CSV_HEADER_PREFIX}{c}", c) for c in columns}


def export_csv(
    rows: Sequence[Any],
    columns: Sequence[str] = GROUP_COLUMNS,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """CSV for Excel: UTF-8 with a BOM (else Excel reads Chinese as mojibake), CRLF.

    Text that Excel would run as a formula (a school named "=HYPERLINK(...)") is quoted
    with a leading apostrophe, as OWASP advises for CSV exports.
    """
    headers = headers or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([_cell(headers.get(c, c)) for c in columns])
    for row in rows:
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if math.isfinite(value) else ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if not isinstance(value, int) and text.startswith(_FORMULA_START):
        return "'" + text
    return text
