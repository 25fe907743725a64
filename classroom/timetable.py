"""Lesson series on a term timetable, and the lessons they generate.

A series is a weekly lesson of one pairing: weekday + period (节次), or weekday + local
start and end times; every week or odd/even teaching weeks (单双周); optionally only from
`first_date` to `last_date`. Generation turns it into ordinary `lessons` rows (state
scheduled), one per school day that runs the series' weekday — holidays skipped, 调休
make-up days following the weekday they stand for — each linked to its series and date by
a `series_occurrences` row.

Generation is a sync, not an append: it computes what the series should have and compares
with what it has. Re-running adds nothing twice (the link is unique per series and date);
a changed series moves, edits or removes only its *future, untouched* occurrences. An
occurrence is untouched when it is still scheduled, was not changed by hand here (cancel,
move, substitute teacher set `changed`), and still matches the fingerprint of what the
series generated (so an edit by another path, e.g. a PATCH of the lesson, is kept too).
Past occurrences are history and are never rewritten, nor are past ones created for a
series added mid-term. Everything a sync would write is first checked for double bookings
(classroom/conflicts.py) and refused as a whole.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from classroom import conflicts, terms
from classroom.conflicts import Booking, DoubleBooking, Named, TeacherKey, teacher_key
from classroom.lessons import transition
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
    PairingMember,
    RoomRole,
    User,
    UserRole,
    utcnow,
)
from classroom.terms import TermCalendar, TermSpec
from classroom.timetable_models import LessonSeries, SeriesOccurrence, WeekParity

_CHUNK = 500  # ids per IN (...) when deleting; well under every driver's parameter limit


# ------------------------------------------------------------------ the series


@dataclass(frozen=True)
class SeriesSpec:
    """What an admin says about a weekly lesson; checked against the term by check()."""

    pairing_id: int
    subject: str
    grade: str
    title: str
    teacher_name: str
    weekday: int  # ISO 1 = Monday .. 7 = Sunday
    period: int | None = None
    start_time: time | None = None
    end_time: time | None = None
    kind: str = LessonKind.DEDICATED.value
    teacher_user_id: int | None = None
    broadcast: bool | None = None  # None: on for famous_school, off otherwise
    week_parity: str = WeekParity.ALL.value
    first_date: date | None = None
    last_date: date | None = None

    def check(self, calendar: TermCalendar) -> None:
        try:
            LessonKind(self.kind)
        except ValueError:
            raise InvalidInput.because(
                "unknown_lesson_kind", field="kind", kind=self.kind
            ) from None
        try:
            WeekParity(self.week_parity)
        except ValueError:
            raise InvalidInput.because(
                "week_parity_choice", field="week_parity", value=self.week_parity
            ) from None
        if not 1 <= self.weekday <= 7:
            raise InvalidInput.because("weekday_range", field="weekday")
        for name in ("subject", "grade", "title", "teacher_name"):
            if not getattr(self, name).strip():
                raise InvalidInput.because("must_not_be_empty", field=name, name=name)
        if self.period is not None:
            if self.start_time is not None or self.end_time is not None:
                raise InvalidInput.because("period_and_times", field="period")
            calendar.period(self.period)
        elif self.start_time is None or self.end_time is None:
            raise InvalidInput.because("period_or_times", field="period")
        elif self.end_time <= self.start_time:
            raise InvalidInput.because("lesson_end_before_start", field="end_time")
        for name in ("first_date", "last_date"):
            value = getattr(self, name)
            if value is not None and not calendar.start <= value <= calendar.end:
                raise InvalidInput.because("date_outside_term", field=name, name=name, date=value)
        if self.first_date and self.last_date and self.last_date < self.first_date:
            raise InvalidInput.because("last_before_first", field="last_date")

    @property
    def resolved_broadcast(self) -> bool:
        if self.broadcast is not None:
            return self.broadcast
        return self.kind == LessonKind.FAMOUS_SCHOOL.value


def spec_of(series: LessonSeries) -> SeriesSpec:
    return SeriesSpec(
        pairing_id=series.pairing_id,
        subject=series.subject,
        grade=series.grade,
        title=series.title,
        teacher_name=series.teacher_name,
        weekday=series.weekday,
        period=series.period,
        start_time=series.start_time,
        end_time=series.end_time,
        kind=series.kind,
        teacher_user_id=series.teacher_user_id,
        broadcast=series.broadcast,
        week_parity=series.week_parity,
        first_date=series.first_date,
        last_date=series.last_date,
    )


def apply_spec(series: LessonSeries, spec: SeriesSpec) -> None:
    series.pairing_id = spec.pairing_id
    series.kind = LessonKind(spec.kind).value
    series.subject = spec.subject.strip()
    series.grade = spec.grade.strip()
    series.title = spec.title.strip()
    series.teacher_name = spec.teacher_name.strip()
    series.teacher_user_id = spec.teacher_user_id
    series.broadcast = spec.resolved_broadcast
    series.weekday = spec.weekday
    series.period = spec.period
    series.start_time = spec.start_time
    series.end_time = spec.end_time
    series.week_parity = WeekParity(spec.week_parity).value
    series.first_date = spec.first_date
    series.last_date = spec.last_date
    series.updated_at = utcnow()


# --------------------------------------------------------------- planning


class PlannedOccurrence(NamedTuple):
    day: date
    start: datetime  # UTC
    end: datetime


def plan(calendar: TermCalendar, series: LessonSeries | SeriesSpec) -> list[PlannedOccurrence]:
    """The occurrences a series should have over the whole term (pure: no database)."""
    if series.period is not None:
        period = calendar.period(series.period)
        start_t, end_t = period.starts_at, period.ends_at
    else:
        assert series.start_time is not None and series.end_time is not None
        start_t, end_t = series.start_time, series.end_time
    parity = WeekParity(series.week_parity)
    want_odd = parity == WeekParity.ODD
    first, last = series.first_date, series.last_date
    instant, week_of = calendar.instant, calendar.week_of
    out = []
    for day in calendar.days_running(series.weekday):
        if first and day < first:
            continue
        if last and day > last:
            break
        if parity != WeekParity.ALL and (week_of(day) % 2 == 1) != want_odd:
            continue
        out.append(PlannedOccurrence(day, instant(day, start_t), instant(day, end_t)))
    return out


def content_digest(
    *,
    kind: str,
    subject: str,
    grade: str,
    title: str,
    teacher_name: str,
    teacher_user_id: int | None,
    broadcast: bool,
) -> bytes:
    """Digest of what a series gives each of its lessons besides their times."""
    text = "\x1f".join(
        [kind, subject, grade, title, teacher_name, str(teacher_user_id or ""), str(int(broadcast))]
    )
    return hashlib.sha256(text.encode()).digest()


def fingerprint(content: bytes, start: datetime, end: datetime) -> str:
    """Digest of what makes an occurrence what its series generated (not its state)."""
    times = f"{int(start.timestamp())}/{int(end.timestamp())}".encode()
    return hashlib.sha256(content + times).hexdigest()[:32]


@dataclass(slots=True)
class _Series:
    """A series' fields, read once: ORM attribute access is slow in loops of 30,000."""

    id: int
    pairing_id: int
    kind: str
    subject: str
    grade: str
    title: str
    teacher_name: str
    teacher_user_id: int | None
    broadcast: bool
    content: bytes
    teacher: TeacherKey
    source: Named

    @classmethod
    def of(cls, s: LessonSeries, main_school_id: int, source: Named | None) -> _Series:
        return cls(
            id=s.id,
            pairing_id=s.pairing_id,
            kind=s.kind,
            subject=s.subject,
            grade=s.grade,
            title=s.title,
            teacher_name=s.teacher_name,
            teacher_user_id=s.teacher_user_id,
            broadcast=s.broadcast,
            content=content_digest(
                kind=s.kind,
                subject=s.subject,
                grade=s.grade,
                title=s.title,
                teacher_name=s.teacher_name,
                teacher_user_id=s.teacher_user_id,
                broadcast=s.broadcast,
            ),
            teacher=teacher_key(s.teacher_user_id, s.teacher_name, main_school_id),
            source=source or Named("series", s.id, s.title),
        )


# ------------------------------------------------------------------ sync


@dataclass
class SyncReport:
    """What a generation did (or, with write=False, would do)."""

    created: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0  # untouched occurrences already as planned
    kept: int = 0  # changed by hand, past, or no longer scheduled: left alone

    def __add__(self, other: SyncReport) -> SyncReport:
        return SyncReport(
            self.created + other.created,
            self.updated + other.updated,
            self.removed + other.removed,
            self.unchanged + other.unchanged,
            self.kept + other.kept,
        )


@dataclass(frozen=True)
class _Rooms:
    main_classroom_id: int
    main_school_id: int
    receiving: tuple[tuple[int, int], ...]  # (classroom id, position)

    @property
    def classroom_ids(self) -> tuple[int, ...]:
        return (self.main_classroom_id, *(c for c, _ in self.receiving))


async def _rooms_of(db: AsyncSession, pairing_ids: Sequence[int]) -> dict[int, _Rooms]:
    """Each pairing's rooms and main school, in two queries for any number of pairings."""
    wanted = sorted(set(pairing_ids))
    if not wanted:
        return {}
    mains = (
        await db.execute(
            sa.select(Pairing.id, Pairing.main_classroom_id, Classroom.school_id)
            .join(Classroom, Classroom.id == Pairing.main_classroom_id)
            .where(Pairing.id.in_(wanted))
        )
    ).all()
    members: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pid, cid, pos in (
        await db.execute(
            sa.select(
                PairingMember.pairing_id, PairingMember.classroom_id, PairingMember.position
            ).where(PairingMember.pairing_id.in_(wanted))
        )
    ).all():
        members[pid].append((cid, pos))
    return {
        pid: _Rooms(main, school, tuple(sorted(members[pid], key=lambda m: m[1])))
        for pid, main, school in mains
    }


async def sync_series(
    db: AsyncSession,
    calendar: TermCalendar,
    series: Sequence[LessonSeries],
    *,
    now: datetime | None = None,
    write: bool = True,
    sources: Mapping[int, Named] | None = None,
) -> SyncReport:
    """Bring the lessons of `series` (all on `calendar`'s term) to what they should be.

    Raises DoubleBooking (nothing written) if any lesson it would create or move clashes
    with a lesson on the calendar or with another one it would create; each clash names
    the series, or `sources[series.id]` (e.g. CSV line 7). Does not commit.
    """
    now = now or utcnow()
    if not series:
        return SyncReport()
    by_id = {s.id: s for s in series}
    rooms = await _rooms_of(db, [s.pairing_id for s in series])
    for one in series:
        if one.pairing_id not in rooms:
            raise NotFound.because("pairing_not_found", field="pairing_id", id=one.pairing_id)
    await conflicts.lock_classrooms(db, (c for r in rooms.values() for c in r.classroom_ids))
    await conflicts.lock_teachers(
        db,
        (
            teacher_key(s.teacher_user_id, s.teacher_name, rooms[s.pairing_id].main_school_id)
            for s in series
        ),
    )

    have: dict[int, dict[date, sa.Row]] = defaultdict(dict)
    query = (
        sa.select(
            SeriesOccurrence.series_id,
            SeriesOccurrence.occurrence_date,
            SeriesOccurrence.changed,
            SeriesOccurrence.fingerprint,
            Lesson.id,
            Lesson.state,
            Lesson.planned_start,
            Lesson.planned_end,
            Lesson.kind,
            Lesson.subject,
            Lesson.grade,
            Lesson.title,
            Lesson.teacher_name,
            Lesson.teacher_user_id,
            Lesson.broadcast,
        )
        .join(Lesson, Lesson.id == SeriesOccurrence.lesson_id)
        .join(LessonSeries, LessonSeries.id == SeriesOccurrence.series_id)
        .where(LessonSeries.term_id == calendar.term_id)
    )
    if len(by_id) <= conflicts.NARROW_LIMIT:
        query = query.where(SeriesOccurrence.series_id.in_(sorted(by_id)))
    for row in (await db.execute(query)).all():
        if row.series_id in by_id:
            have[row.series_id][row.occurrence_date] = row

    report = SyncReport()
    creates: list[tuple[_Series, PlannedOccurrence]] = []
    updates: list[tuple[_Series, PlannedOccurrence, int]] = []
    removes: list[int] = []
    digests: dict[tuple, bytes] = {}
    for series_row in series:
        s = _Series.of(
            series_row,
            rooms[series_row.pairing_id].main_school_id,
            (sources or {}).get(series_row.id),
        )
        wanted = {occ.day: occ for occ in plan(calendar, series_row)}
        existing = have[s.id]
        for day, row in existing.items():
            if not _untouched(row, now, digests):
                report.kept += 1
                continue
            occ = wanted.get(day)
            if occ is None:
                removes.append(row.id)
            elif occ.start <= now:
                report.kept += 1  # the series now puts it in the past: leave history be
            elif fingerprint(s.content, occ.start, occ.end) != row.fingerprint:
                updates.append((s, occ, row.id))
            else:
                report.unchanged += 1
        for day, occ in wanted.items():
            if day not in existing and occ.start > now:
                creates.append((s, occ))

    proposed = [_booking(s, occ, rooms[s.pairing_id]) for s, occ in creates]
    proposed += [_booking(s, occ, rooms[s.pairing_id]) for s, occ, _ in updates]
    await conflicts.refuse_clashes(
        db,
        proposed,
        ignore_lesson_ids={lid for _, _, lid in updates} | set(removes),
        zone=calendar.zone,
    )
    report.created, report.updated, report.removed = len(creates), len(updates), len(removes)
    if write:
        await _write(db, creates, updates, removes)
        _forget(db, [*removes, *(lid for _, _, lid in updates)])
    return report


def _forget(db: AsyncSession, lesson_ids: Sequence[int]) -> None:
    """Drop rewritten lessons from the session's identity map: the bulk statements did
    not touch the objects, and a later get() must read the rows, not stale copies."""
    identity_map = db.sync_session.identity_map
    for lid in lesson_ids:
        for model in (Lesson, SeriesOccurrence):
            obj = identity_map.get(identity_key(model, lid))
            if obj is not None:
                db.expunge(obj)


def _untouched(row: sa.Row, now: datetime, digests: dict[tuple, bytes]) -> bool:
    if row.changed or row.state != LessonState.SCHEDULED.value or row.planned_start <= now:
        return False
    key = (row.kind, row.subject, row.grade, row.title, row.teacher_name,
           row.teacher_user_id, row.broadcast)  # fmt: skip
    content = digests.get(key)
    if content is None:
        content = digests[key] = content_digest(
            kind=row.kind,
            subject=row.subject,
            grade=row.grade,
            title=row.title,
            teacher_name=row.teacher_name,
            teacher_user_id=row.teacher_user_id,
            broadcast=row.broadcast,
        )
    return fingerprint(content, row.planned_start, row.planned_end) == row.fingerprint


def _booking(s: _Series, occ: PlannedOccurrence, rooms: _Rooms) -> Booking:
    return Booking(
        start=occ.start,
        end=occ.end,
        classroom_ids=rooms.classroom_ids,
        teacher=s.teacher,
        teacher_name=s.teacher_name,
        title=s.title,
        series_id=s.id,
        source=s.source,
        ref=s.id,
    )


async def _write(
    db: AsyncSession,
    creates: list[tuple[_Series, PlannedOccurrence]],
    updates: list[tuple[_Series, PlannedOccurrence, int]],
    removes: list[int],
) -> None:
    """Set-based and bulk statements, not one ORM object per lesson: a city's term is
    tens of thousands of lessons."""
    for i in range(0, len(removes), _CHUNK):
        # lesson_rooms and series_occurrences go with them (ON DELETE CASCADE)
        await db.execute(
            sa.delete(Lesson)
            .where(Lesson.id.in_(removes[i : i + _CHUNK]))
            .execution_options(synchronize_session=False)
        )
    if updates:
        await db.execute(
            sa.update(Lesson),
            [dict(id=lid, **_lesson_fields(s, occ)) for s, occ, lid in updates],
            execution_options={"synchronize_session": False},
        )
        await db.execute(
            sa.update(SeriesOccurrence),
            [
                {"lesson_id": lid, "fingerprint": fingerprint(s.content, occ.start, occ.end)}
                for s, occ, lid in updates
            ],
            execution_options={"synchronize_session": False},
        )
    if not creates:
        return
    now = utcnow()
    rows = [
        {
            "pairing_id": s.pairing_id,
            "state": LessonState.SCHEDULED.value,
            "created_at": now,
            **_lesson_fields(s, occ),
        }
        for s, occ in creates
    ]
    # Core executemany with RETURNING: batched multi-row INSERTs on both engines. The new
    # ids are matched back by (pairing, start), unique among them since the check above
    # refused any two lessons of the same rooms at once (asking the driver to keep
    # parameter order instead makes SQLite insert row by row: 30x slower for a term).
    table = Lesson.__table__
    returned = await db.execute(
        sa.insert(table).returning(table.c.id, table.c.pairing_id, table.c.planned_start), rows
    )
    id_of = {(pairing, start): lid for lid, pairing, start in returned.all()}
    # The rooms, copied from the pairings in one INSERT ... SELECT (three rows a lesson:
    # sent one by one they were most of the time on PostgreSQL). "New" is: in the id
    # range just returned and without rooms yet; a lesson someone else committed in that
    # range meanwhile already has its rooms, and uncommitted ones are not visible.
    new = sa.and_(
        Lesson.id.between(min(id_of.values()), max(id_of.values())),
        ~sa.exists().where(LessonRoom.lesson_id == Lesson.id),
    )
    main = (
        sa.select(
            Lesson.id, Pairing.main_classroom_id, sa.literal(RoomRole.MAIN.value), sa.literal(0)
        )
        .join(Pairing, Pairing.id == Lesson.pairing_id)
        .where(new)
    )
    receiving = (
        sa.select(
            Lesson.id,
            PairingMember.classroom_id,
            sa.literal(RoomRole.RECEIVING.value),
            PairingMember.position,
        )
        .join(PairingMember, PairingMember.pairing_id == Lesson.pairing_id)
        .where(new)
    )
    await db.execute(
        sa.insert(LessonRoom.__table__).from_select(
            ["lesson_id", "classroom_id", "role", "position"], sa.union_all(main, receiving)
        )
    )
    # RETURNING only to have the rows sent as multi-row INSERTs (insertmanyvalues) rather
    # than one statement each, which PostgreSQL runs several times slower.
    links = SeriesOccurrence.__table__
    await db.execute(
        sa.insert(links).returning(links.c.lesson_id),
        [
            {
                "lesson_id": id_of[(s.pairing_id, occ.start)],
                "series_id": s.id,
                "occurrence_date": occ.day,
                "changed": False,
                "fingerprint": fingerprint(s.content, occ.start, occ.end),
            }
            for s, occ in creates
        ],
    )


def _lesson_fields(s: _Series, occ: PlannedOccurrence) -> dict[str, object]:
    return {
        "kind": s.kind,
        "subject": s.subject,
        "grade": s.grade,
        "title": s.title,
        "teacher_name": s.teacher_name,
        "teacher_user_id": s.teacher_user_id,
        "broadcast": s.broadcast,
        "planned_start": occ.start,
        "planned_end": occ.end,
    }


# ------------------------------------------------------------ series CRUD


async def check_teacher_account(db: AsyncSession, user_id: int, main_school_id: int) -> User:
    """The account must be an active teacher of the main classroom's school."""
    teacher = await db.get(User, user_id)
    if (
        teacher is None
        or teacher.role != UserRole.TEACHER
        or teacher.disabled
        or teacher.school_id != main_school_id
    ):
        raise InvalidInput.because(
            "not_a_school_teacher", field="teacher_user_id", user_id=user_id
        )
    return teacher


async def main_school_of_pairing(db: AsyncSession, pairing_id: int) -> int:
    rooms = await _rooms_of(db, [pairing_id])
    if pairing_id not in rooms:
        raise NotFound.because("pairing_not_found", field="pairing_id", id=pairing_id)
    return rooms[pairing_id].main_school_id


async def create_series(
    db: AsyncSession, term_id: int, spec: SeriesSpec, *, now: datetime | None = None
) -> tuple[LessonSeries, SyncReport]:
    """Add a weekly lesson to a term and generate its lessons; commits, or refuses whole."""
    calendar = await terms.calendar_of(db, term_id)
    spec.check(calendar)
    main_school = await main_school_of_pairing(db, spec.pairing_id)
    pairing = await db.get(Pairing, spec.pairing_id)
    if pairing is not None and not pairing.active:
        raise Conflict.because("pairing_archived", field="pairing_id", id=spec.pairing_id)
    if spec.teacher_user_id is not None:
        await check_teacher_account(db, spec.teacher_user_id, main_school)
    series = LessonSeries(term_id=term_id)
    apply_spec(series, spec)
    db.add(series)
    try:
        await db.flush()
        report = await sync_series(db, calendar, [series], now=now)
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
    return series, report


async def get_series(db: AsyncSession, series_id: int) -> LessonSeries:
    series = await db.get(LessonSeries, series_id, populate_existing=True)
    if series is None:
        raise NotFound.because("series_not_found", id=series_id)
    return series


async def update_series(
    db: AsyncSession, series_id: int, spec: SeriesSpec, *, now: datetime | None = None
) -> tuple[LessonSeries, SyncReport]:
    """Change a series; its future, untouched occurrences follow (or it is refused whole).

    The pairing stays: its lessons' rooms were copied from it, so a different pairing is a
    different series (end this one with last_date and create the other).
    """
    series = await get_series(db, series_id)
    if spec.pairing_id != series.pairing_id:
        raise InvalidInput.because("series_keeps_pairing", field="pairing_id")
    calendar = await terms.calendar_of(db, series.term_id)
    spec.check(calendar)
    if spec.teacher_user_id is not None and spec.teacher_user_id != series.teacher_user_id:
        await check_teacher_account(
            db, spec.teacher_user_id, await main_school_of_pairing(db, spec.pairing_id)
        )
    apply_spec(series, spec)
    try:
        await db.flush()
        report = await sync_series(db, calendar, [series], now=now)
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
    return await get_series(db, series_id), report


async def delete_series(
    db: AsyncSession, series_id: int, *, now: datetime | None = None
) -> SyncReport:
    """Remove a series and its lessons still to come; commits.

    Lessons that already opened, ran or were cancelled in the past stay as history
    (without their link to the series, which no longer exists).
    """
    now = now or utcnow()
    series = await get_series(db, series_id)
    future = (
        await db.scalars(
            sa.select(Lesson.id)
            .join(SeriesOccurrence, SeriesOccurrence.lesson_id == Lesson.id)
            .where(
                SeriesOccurrence.series_id == series.id,
                Lesson.planned_start > now,
                Lesson.state.in_([LessonState.SCHEDULED.value, LessonState.CANCELLED.value]),
            )
        )
    ).all()
    kept = await db.scalar(
        sa.select(sa.func.count()).where(SeriesOccurrence.series_id == series.id)
    )
    for i in range(0, len(future), _CHUNK):
        await db.execute(
            sa.delete(Lesson)
            .where(Lesson.id.in_(future[i : i + _CHUNK]))
            .execution_options(synchronize_session=False)
        )
    await db.delete(series)
    await db.commit()
    return SyncReport(removed=len(future), kept=int(kept or 0) - len(future))


async def list_series(
    db: AsyncSession, *, term_id: int | None = None, school_id: int | None = None
) -> list[LessonSeries]:
    """Series of a term; with `school_id`, those whose pairing has a room in the school."""
    query = sa.select(LessonSeries).order_by(
        LessonSeries.weekday, LessonSeries.period, LessonSeries.start_time, LessonSeries.id
    )
    if term_id is not None:
        query = query.where(LessonSeries.term_id == term_id)
    if school_id is not None:
        main = sa.select(Pairing.id).join(Classroom, Classroom.id == Pairing.main_classroom_id)
        receiving = sa.select(PairingMember.pairing_id).join(
            Classroom, Classroom.id == PairingMember.classroom_id
        )
        query = query.where(
            sa.or_(
                LessonSeries.pairing_id.in_(main.where(Classroom.school_id == school_id)),
                LessonSeries.pairing_id.in_(receiving.where(Classroom.school_id == school_id)),
            )
        )
    return list((await db.scalars(query)).all())


async def list_occurrences(
    db: AsyncSession, series_id: int
) -> list[tuple[SeriesOccurrence, Lesson]]:
    rows = await db.execute(
        sa.select(SeriesOccurrence, Lesson)
        .join(Lesson, Lesson.id == SeriesOccurrence.lesson_id)
        .where(SeriesOccurrence.series_id == series_id)
        .order_by(SeriesOccurrence.occurrence_date)
        .execution_options(populate_existing=True)
    )
    return [(occ, lesson) for occ, lesson in rows.all()]


async def regenerate_term(
    db: AsyncSession, term_id: int, *, now: datetime | None = None, write: bool = True
) -> SyncReport:
    """Sync every series of a term (after its calendar changed, or to check it); commits
    when writing, or refuses whole."""
    calendar = await terms.calendar_of(db, term_id)
    series = list(
        (await db.scalars(sa.select(LessonSeries).where(LessonSeries.term_id == term_id))).all()
    )
    try:
        report = await sync_series(db, calendar, series, now=now, write=write)
    except BaseException:
        await db.rollback()
        raise
    if write:
        await db.commit()
    return report


async def replace_term(
    db: AsyncSession, term_id: int, spec: TermSpec, *, now: datetime | None = None
) -> tuple[TermCalendar, SyncReport]:
    """Change a term's dates, zone, holidays, make-up days or periods and regenerate its
    series in one transaction: a change that would double-book (or strand a series on a
    period that no longer exists) is refused and nothing changes."""
    term = await terms.load_term(db, term_id)
    try:
        terms.replace_calendar(term, spec)
        await db.flush()
        calendar = TermCalendar.of(term)
        series = list(
            (await db.scalars(sa.select(LessonSeries).where(LessonSeries.term_id == term_id))).all()
        )
        for s in series:
            try:
                spec_of(s).check(calendar)
            except InvalidInput as exc:
                # Which series, said before its own refusal (whose reason and params stand).
                raise InvalidInput(
                    f"series {s.id}: {exc.message}",
                    field=exc.field,
                    reason=exc.reason,
                    params=exc.params,
                ) from None
        report = await sync_series(db, calendar, series, now=now)
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
    return calendar, report


# ------------------------------------------------ changes to one occurrence


async def get_occurrence(db: AsyncSession, lesson_id: int) -> tuple[SeriesOccurrence, Lesson]:
    row = (
        await db.execute(
            sa.select(SeriesOccurrence, Lesson)
            .join(Lesson, Lesson.id == SeriesOccurrence.lesson_id)
            .where(Lesson.id == lesson_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        if await db.get(Lesson, lesson_id) is None:
            raise NotFound.because("lesson_not_found", id=lesson_id)
        raise NotFound.because("not_an_occurrence", lesson_id=lesson_id)
    return row[0], row[1]


def _must_be_scheduled(lesson: Lesson, what: str) -> None:
    if lesson.state != LessonState.SCHEDULED.value:
        raise Conflict.because(
            "lesson_not_scheduled", lesson_id=lesson.id, state=lesson.state, action=what
        )


async def move_occurrence(
    db: AsyncSession,
    lesson_id: int,
    *,
    day: date,
    period: int | None = None,
    start_time: time | None = None,
    end_time: time | None = None,
    now: datetime | None = None,
) -> Lesson:
    """Move one occurrence to another school day of the term, at a period or times.

    Only this lesson changes (the series does not); regeneration keeps it where it was put.
    """
    now = now or utcnow()
    occ, lesson = await get_occurrence(db, lesson_id)
    _must_be_scheduled(lesson, "moved")
    series = await get_series(db, occ.series_id)
    calendar = await terms.calendar_of(db, series.term_id)
    if not calendar.start <= day <= calendar.end:
        raise InvalidInput.because("move_outside_term", field="date", date=day, term=calendar.name)
    if calendar.is_holiday(day):
        raise InvalidInput.because("move_to_holiday", field="date", date=day, term=calendar.name)
    if period is not None:
        if start_time is not None or end_time is not None:
            raise InvalidInput.because("period_and_times", field="period")
        p = calendar.period(period)
        start_time, end_time = p.starts_at, p.ends_at
    elif start_time is None or end_time is None:
        raise InvalidInput.because("period_or_times", field="period")
    if end_time <= start_time:
        raise InvalidInput.because("lesson_end_before_start", field="end_time")
    start, end = calendar.instant(day, start_time), calendar.instant(day, end_time)
    if start <= now:
        raise InvalidInput.because("move_to_past", field="date")
    await _refuse_for_lesson(
        db, lesson, start, end, lesson.teacher_user_id, lesson.teacher_name, calendar.zone
    )
    lesson.planned_start, lesson.planned_end = start, end
    occ.changed = True
    await db.commit()
    return await db.get_one(Lesson, lesson_id, populate_existing=True)


async def substitute_teacher(
    db: AsyncSession, lesson_id: int, *, teacher_name: str, teacher_user_id: int | None = None
) -> Lesson:
    """Another teacher takes this one occurrence (代课); the series keeps its teacher."""
    occ, lesson = await get_occurrence(db, lesson_id)
    _must_be_scheduled(lesson, "given another teacher")
    if not teacher_name.strip():
        raise InvalidInput.because("must_not_be_empty", field="teacher_name", name="teacher_name")
    rooms = await _rooms_of(db, [lesson.pairing_id])
    main_school = rooms[lesson.pairing_id].main_school_id
    if teacher_user_id is not None:
        await check_teacher_account(db, teacher_user_id, main_school)
    await _refuse_for_lesson(
        db, lesson, lesson.planned_start, lesson.planned_end, teacher_user_id, teacher_name
    )
    lesson.teacher_name = teacher_name.strip()
    lesson.teacher_user_id = teacher_user_id
    occ.changed = True
    await db.commit()
    return await db.get_one(Lesson, lesson_id, populate_existing=True)


async def cancel_occurrence(
    db: AsyncSession, lesson_id: int, *, reason: str | None = None
) -> Lesson:
    """Cancel one occurrence; regeneration never brings it back."""
    await get_occurrence(db, lesson_id)
    await transition(db, lesson_id, LessonState.CANCELLED, reason=reason or "cancelled")
    await db.execute(
        sa.update(SeriesOccurrence)
        .where(SeriesOccurrence.lesson_id == lesson_id)
        .values(changed=True)
        .execution_options(synchronize_session=False)
    )
    await db.commit()
    return await db.get_one(Lesson, lesson_id, populate_existing=True)


async def _refuse_for_lesson(
    db: AsyncSession,
    lesson: Lesson,
    start: datetime,
    end: datetime,
    teacher_user_id: int | None,
    teacher_name: str,
    zone: tzinfo | None = None,
) -> None:
    rooms = await _rooms_of(db, [lesson.pairing_id])
    main_school = rooms[lesson.pairing_id].main_school_id
    classroom_ids = tuple(r.classroom_id for r in lesson.rooms)
    await conflicts.lock_classrooms(db, classroom_ids)
    key = teacher_key(teacher_user_id, teacher_name, main_school)
    await conflicts.lock_teachers(db, [key])
    proposal = Booking(
        start=start,
        end=end,
        classroom_ids=classroom_ids,
        teacher=key,
        teacher_name=teacher_name,
        title=lesson.title,
        source=Named("lesson", lesson.id, lesson.title),
    )
    try:
        await conflicts.refuse_clashes(db, [proposal], ignore_lesson_ids={lesson.id}, zone=zone)
    except DoubleBooking:
        await db.rollback()
        raise
