"""Double bookings: a classroom or a teacher in two lessons at overlapping times.

Every path that puts lessons on the calendar (an ad-hoc POST /lessons, a lesson series, a
CSV import, moving one occurrence) asks here before writing, and is refused with a message
naming the clash: which classroom or teacher, which lesson or series or CSV line, when.

The check is an interval sweep per resource (classroom, teacher): the existing bookings in
the window are fetched in one query, every booking is grouped by the resources it holds,
each group is sorted by start, and one pass finds every booking that overlaps an earlier
one. A whole term of a city (tens of thousands of lessons) is O(n log n), never a
comparison of every lesson with every other.

Who is "the same teacher": the teacher's account when the lesson names one
(teacher_user_id); otherwise the teacher's name within the main classroom's school, since
two schools may each have a 王老师 but one school knows its own.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import refusals
from classroom.models import (
    Classroom,
    Conflict,
    Lesson,
    LessonRoom,
    LessonState,
    RoomRole,
    UTCDateTime,
)
from classroom.timetable_models import SeriesOccurrence

# Every lesson but a cancelled one holds its rooms and teacher for its planned time; one
# that ended early frees them from its end on (as classroom/lessons.py has always done).
BOOKING_STATES = [s.value for s in LessonState if s != LessonState.CANCELLED]
BOOKED_UNTIL = sa.type_coerce(
    sa.case(
        (
            sa.and_(Lesson.state == LessonState.ENDED.value, Lesson.ended_at < Lesson.planned_end),
            Lesson.ended_at,
        ),
        else_=Lesson.planned_end,
    ),
    UTCDateTime(),
)
# Above this many classrooms or teachers the window query is not narrowed by them: the
# rows are filtered in Python instead of sending thousands of bound parameters.
NARROW_LIMIT = 500

# ("user", id) or ("name", main school id, normalised name)
TeacherKey = tuple[str, int] | tuple[str, int, str]


def teacher_key(user_id: int | None, name: str, main_school_id: int) -> TeacherKey:
    """The identity a teacher's bookings are compared by (see the module docstring)."""
    if user_id is not None:
        return ("user", user_id)
    return ("name", main_school_id, normalise_name(name))


def normalise_name(name: str) -> str:
    """NFKC, no surrounding or inner spaces: "王 老师" and "王老师" are one person."""
    return "".join(unicodedata.normalize("NFKC", name).split())


@dataclass(frozen=True, slots=True)
class Named:
    """How a booking is named in a refusal: a series, a lesson (of a series or not), or a
    line of a CSV file being imported (`id` being the line's number)."""

    kind: str  # "series" | "lesson" | "csv_line"
    id: int
    title: str = ""
    series: int | None = None


@dataclass(slots=True, eq=False)
class Booking:
    """Classrooms and a teacher held over [start, end): a lesson, or one that would be.

    Compared by identity (eq=False) and without frozen's slow __init__: a term check
    makes tens of thousands of them.
    """

    start: datetime
    end: datetime
    classroom_ids: tuple[int, ...]
    teacher: TeacherKey
    teacher_name: str = ""
    title: str = ""
    lesson_id: int | None = None  # None: proposed, not yet written
    series_id: int | None = None
    # How a proposal is named in a refusal (CSV line 5, series 3); and the caller's handle
    # on it (a line number, a series), so that clashes can be attributed.
    source: Named | None = None
    ref: object = None

    def named(self) -> Named:
        if self.source is not None:
            return self.source
        assert self.lesson_id is not None
        return Named("lesson", self.lesson_id, self.title, self.series_id)

    def params(self, side: str, zone: tzinfo | None = None) -> dict[str, object]:
        """The refusal params naming this booking, as `side` ("what" or "other")."""
        named = self.named()
        return {
            f"{side}_kind": named.kind,
            f"{side}_id": named.id,
            f"{side}_title": named.title,
            f"{side}_series": named.series,
            "span" if side == "what" else f"{side}_span": format_span(self.start, self.end, zone),
        }


@dataclass(frozen=True)
class Clash:
    """`booking` (proposed) overlaps `other` (existing, or another proposal) on `resource`."""

    booking: Booking
    other: Booking
    resource: Literal["classroom", "teacher"]
    classroom_id: int | None = None

    def params(
        self, rooms: dict[int, str] | None = None, zone: tzinfo | None = None
    ) -> dict[str, object]:
        """The params of its refusal (classroom/refusals.py BOOKING_PARAMS)."""
        by_account = self.booking.teacher[0] == "user"
        return {
            **self.booking.params("what", zone),
            "resource": self.resource,
            "classroom_id": self.classroom_id,
            "classroom": (rooms or {}).get(self.classroom_id or 0, ""),
            "teacher": self.booking.teacher_name or self.other.teacher_name,
            "teacher_user_id": self.booking.teacher[1] if by_account else None,
            **self.other.params("other", zone),
        }

    def message(self, rooms: dict[int, str] | None = None, zone: tzinfo | None = None) -> str:
        return refusals.clash_text(self.params(rooms, zone))


def format_span(start: datetime, end: datetime, zone: tzinfo | None = None) -> str:
    """ "2026-09-07 08:00–08:45 +08:00": local to the term when known, else UTC."""
    if zone is not None:
        start, end = start.astimezone(zone), end.astimezone(zone)
    offset = start.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else "UTC"
    end_text = end.strftime("%H:%M") if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
    return f"{start:%Y-%m-%d %H:%M}–{end_text} {offset}"


class DoubleBooking(Conflict):
    """Refusal of a change that would double-book; carries every clash found, and the
    params of each (its refusal names the first, and how many more there are)."""

    def __init__(
        self,
        clashes: Sequence[Clash],
        clash_params: Sequence[dict[str, object]],
        field: str = "planned_start",
    ) -> None:
        message, params = refusals.render(
            "double_booked", {**clash_params[0], "more": len(clash_params) - 1}
        )
        super().__init__(message, field=field, reason="double_booked", params=params)
        self.clashes = list(clashes)
        self.clash_params = list(clash_params)
        self.messages = [refusals.clash_text(p) for p in clash_params]


@dataclass(frozen=True)
class Taken:
    """Why one lesson cannot be booked (classroom/lessons.py): a refusal of the catalogue
    and its params, raised as a Conflict on the field the caller says it is about."""

    reason: str  # "classroom_booked" | "teacher_booked"
    params: dict[str, object]

    def at(self, field: str) -> Conflict:
        return Conflict.because(self.reason, field=field, **self.params)


# ------------------------------------------------------------------ the sweep


def sweep(
    existing: Iterable[Booking], proposed: Iterable[Booking], *, audit: bool = False
) -> list[Clash]:
    """Every proposal overlapping an existing booking or another proposal, once each.

    Per resource: sort by start and keep the booking reaching furthest so far; a booking
    starting before that one ends overlaps it. Every proposal that overlaps anything is
    caught in at least one such pair (if nothing before it reaches past its start, it
    becomes the furthest, and the next booking starting before its end pairs with it), and
    is then reported, or named as the `other` of a reported clash. With `audit`, clashes
    between two existing bookings are reported too (for checking a term after the fact).
    """
    # One tuple per booking, shared by its groups; (start, order) sorts it, order being
    # unique so the booking itself is never compared.
    groups: dict[tuple, list[tuple[datetime, int, Booking, bool]]] = defaultdict(list)
    order = 0
    for is_new, bookings in ((False, existing), (True, proposed)):
        for b in bookings:
            item = (b.start, order, b, is_new)
            for cid in b.classroom_ids:
                groups[("classroom", cid)].append(item)
            groups[("teacher", b.teacher)].append(item)
            order += 1
    clashes: list[Clash] = []
    flagged: set[int] = set()  # id() of bookings already reported
    paired: set[frozenset[int]] = set()  # pairs already reported
    for key, items in groups.items():
        if len(items) < 2:
            continue
        items.sort()
        furthest = items[0]
        furthest_end = furthest[2].end
        for item in items[1:]:
            if item[0] < furthest_end:
                _report(item, furthest, key, audit, flagged, paired, clashes)
            end = item[2].end
            if end > furthest_end:
                furthest, furthest_end = item, end
    return clashes


def _report(
    item: tuple[datetime, int, Booking, bool],
    furthest: tuple[datetime, int, Booking, bool],
    key: tuple,
    audit: bool,
    flagged: set[int],
    paired: set[frozenset[int]],
    clashes: list[Clash],
) -> None:
    """Record the overlap of two bookings on `key` (the rare path of the sweep).

    Reported on a proposal (never on an existing booking, unless auditing), the later one
    first; on the other one of a pair if the later is already reported for another clash,
    so that each proposal in a clash is named; once per pair, whatever they share.
    """
    booking, is_new = item[2], item[3]
    other, other_new = furthest[2], furthest[3]
    pair = frozenset((id(booking), id(other)))
    if pair in paired:
        return
    for mine, theirs, ok in ((booking, other, is_new), (other, booking, other_new)):
        if (ok or audit) and id(mine) not in flagged:
            paired.add(pair)
            flagged.add(id(mine))
            clashes.append(
                Clash(
                    booking=mine,
                    other=theirs,
                    resource=key[0],
                    classroom_id=key[1] if key[0] == "classroom" else None,
                )
            )
            return


# ---------------------------------------------------------- the database side


async def existing_bookings(
    db: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    classroom_ids: Iterable[int] | None = None,
    teachers: Iterable[TeacherKey] | None = None,
    ignore_lesson_ids: Iterable[int] = (),
) -> list[Booking]:
    """The lessons holding rooms or teachers somewhere in [start, end), in two queries
    (the lessons; their rooms with each room's school).

    With `classroom_ids`/`teachers` (a few), only lessons touching them are fetched; with
    None (or many), every booking of the window (a term-wide check).
    """
    rooms = set(classroom_ids) if classroom_ids is not None else None
    keys = set(teachers) if teachers is not None else None
    window = [
        Lesson.state.in_(BOOKING_STATES),
        Lesson.planned_start < end,
        BOOKED_UNTIL > start,
    ]
    narrow = (
        rooms is not None
        and keys is not None
        and len(rooms) + len(keys) <= NARROW_LIMIT
        and bool(rooms or keys)
    )
    if narrow:
        assert rooms is not None and keys is not None
        user_ids = sorted({int(k[1]) for k in keys if k[0] == "user"})
        name_schools = sorted({int(k[1]) for k in keys if k[0] == "name"})
        touching: list[sa.ColumnElement[bool]] = [
            Lesson.id.in_(
                sa.select(LessonRoom.lesson_id).where(LessonRoom.classroom_id.in_(sorted(rooms)))
            )
        ]
        if user_ids:
            touching.append(Lesson.teacher_user_id.in_(user_ids))
        if name_schools:
            # Names are compared normalised, in Python below; SQL narrows to the lessons
            # without an account taught from those schools (few, in a short window).
            main_in_schools = (
                sa.select(LessonRoom.lesson_id)
                .join(Classroom, Classroom.id == LessonRoom.classroom_id)
                .where(LessonRoom.role == RoomRole.MAIN.value)
                .where(Classroom.school_id.in_(name_schools))
            )
            touching.append(
                sa.and_(Lesson.teacher_user_id.is_(None), Lesson.id.in_(main_in_schools))
            )
        window.append(sa.or_(*touching))
    lesson_rows = await db.execute(
        sa.select(
            Lesson.id,
            Lesson.title,
            Lesson.planned_start,
            BOOKED_UNTIL,
            Lesson.teacher_user_id,
            Lesson.teacher_name,
            SeriesOccurrence.series_id,
        )
        .outerjoin(SeriesOccurrence, SeriesOccurrence.lesson_id == Lesson.id)
        .where(*window)
    )
    ignore = set(ignore_lesson_ids)
    found = {row[0]: row for row in lesson_rows.all() if row[0] not in ignore}
    if not found:
        return []
    held: dict[int, list[int]] = defaultdict(list)
    main_school: dict[int, int] = {}
    room_rows = await db.execute(
        sa.select(
            LessonRoom.lesson_id, LessonRoom.classroom_id, LessonRoom.role, Classroom.school_id
        )
        .join(Lesson, Lesson.id == LessonRoom.lesson_id)
        .join(Classroom, Classroom.id == LessonRoom.classroom_id)
        .where(*window)
    )
    main_role = RoomRole.MAIN.value
    for lid, cid, role, school_id in room_rows.all():
        held[lid].append(cid)
        if role == main_role:
            main_school[lid] = school_id
    bookings = []
    for lid, (_, title, l_start, l_end, t_user, t_name, series_id) in found.items():
        key = teacher_key(t_user, t_name, main_school.get(lid, 0))
        classrooms = tuple(held[lid])
        if narrow and keys is not None and rooms is not None:
            if key not in keys and not rooms.intersection(classrooms):
                continue
        bookings.append(
            Booking(
                start=l_start,
                end=l_end,
                classroom_ids=classrooms,
                teacher=key,
                teacher_name=t_name,
                title=title,
                lesson_id=lid,
                series_id=series_id,
            )
        )
    return bookings


async def find_clashes(
    db: AsyncSession,
    proposed: Sequence[Booking],
    *,
    ignore_lesson_ids: Iterable[int] = (),
) -> list[Clash]:
    """Every proposal that would overlap a lesson on the calendar or another proposal."""
    if not proposed:
        return []
    start = min(b.start for b in proposed)
    end = max(b.end for b in proposed)
    existing = await existing_bookings(
        db,
        start,
        end,
        classroom_ids={c for b in proposed for c in b.classroom_ids},
        teachers={b.teacher for b in proposed},
        ignore_lesson_ids=ignore_lesson_ids,
    )
    return sweep(existing, proposed)


async def classroom_labels(db: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    """ "城关一中 主讲教室" per classroom id, for messages."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await db.scalars(sa.select(Classroom).where(Classroom.id.in_(wanted)))
    return {c.id: f"{c.school.name} {c.name}" for c in rows.all()}


async def clash_params(
    db: AsyncSession, clashes: Sequence[Clash], zone: tzinfo | None = None
) -> list[dict[str, object]]:
    rooms = await classroom_labels(db, (c.classroom_id for c in clashes if c.classroom_id))
    return [c.params(rooms, zone) for c in clashes]


async def clash_messages(
    db: AsyncSession, clashes: Sequence[Clash], zone: tzinfo | None = None
) -> list[str]:
    return [refusals.clash_text(p) for p in await clash_params(db, clashes, zone)]


async def refuse_clashes(
    db: AsyncSession,
    proposed: Sequence[Booking],
    *,
    ignore_lesson_ids: Iterable[int] = (),
    zone: tzinfo | None = None,
    field: str = "planned_start",
) -> None:
    """Raise DoubleBooking naming every clash of `proposed`; return if there is none.

    `field` is the input the refusal is about (a form shows the message next to it)."""
    clashes = await find_clashes(db, proposed, ignore_lesson_ids=ignore_lesson_ids)
    if clashes:
        clashes.sort(key=lambda c: (c.booking.start, c.resource))
        raise DoubleBooking(clashes, await clash_params(db, clashes, zone), field=field)


async def audit_window(db: AsyncSession, start: datetime, end: datetime) -> list[Clash]:
    """Double bookings already on the calendar in [start, end) (e.g. one term).

    The refusals above keep them out; this finds any that came in another way (rows
    written before this check existed, a restore from backup) and is what the benchmark
    times as the term-wide conflict check.
    """
    return sweep(await existing_bookings(db, start, end), (), audit=True)


async def teacher_clash(
    db: AsyncSession,
    main_classroom_id: int,
    teacher_user_id: int | None,
    teacher_name: str,
    start: datetime,
    end: datetime,
    *,
    other_than: int | None = None,
) -> Taken | None:
    """Why the teacher cannot take one lesson over [start, end) (None: they can).

    For classroom/lessons.py (an ad-hoc lesson, an edited one), whose classroom check
    comes first and keeps its own message; worded the same way.
    """
    main_school = await db.scalar(
        sa.select(Classroom.school_id).where(Classroom.id == main_classroom_id)
    )
    key = teacher_key(teacher_user_id, teacher_name, main_school or 0)
    await lock_teachers(db, [key])
    proposal = Booking(
        start=start, end=end, classroom_ids=(), teacher=key, teacher_name=teacher_name
    )
    ignore = () if other_than is None else (other_than,)
    clashes = await find_clashes(db, [proposal], ignore_lesson_ids=ignore)
    if not clashes:
        return None
    other = clashes[0].other
    return Taken(
        "teacher_booked",
        {
            "teacher": teacher_name,
            "teacher_user_id": teacher_user_id or None,
            "lesson_id": other.lesson_id,
            "title": other.title,
            "series_id": other.series_id,
            "start": other.start.isoformat(),
            "end": other.end.isoformat(),
        },
    )


async def lock_teachers(db: AsyncSession, keys: Iterable[TeacherKey]) -> None:
    """Transaction-scoped advisory locks on teachers (PostgreSQL), in a fixed order, so
    that two bookings of one teacher in different rooms cannot both pass the check.
    SQLite serialises writers anyway."""
    if db.get_bind().dialect.name != "postgresql":
        return
    ids = sorted(
        {
            int.from_bytes(hashlib.sha256(repr(k).encode()).digest()[:8], "big", signed=True)
            for k in keys
        }
    )
    if ids:
        await db.execute(
            sa.text(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(CAST(:ids AS bigint[])) AS k"
            ),
            {"ids": ids},
        )


async def lock_classrooms(db: AsyncSession, ids: Iterable[int]) -> None:
    """Row locks on the classrooms about to be booked, in id order (PostgreSQL; SQLite
    serialises writers anyway), so that two bookings cannot both pass the check."""
    wanted = sorted(set(ids))
    if wanted:
        await db.execute(sa.select(Classroom.id).where(Classroom.id.in_(wanted)).with_for_update())
