"""REST handlers of 常态化 statistics and of the live overview's alerts.

- GET /statistics: lessons scheduled, held, partial, late, missed, cancelled; attendance;
  link quality; recordings, grouped by week, term, school, pairing, teacher or classroom
  (classroom/lesson_stats.py's `statistics`, two GROUP BY queries);
- GET /statistics.csv: the same rows for Excel (UTF-8 with BOM, headers in the caller's
  language, the file name in Chinese per RFC 6266 `filename*`);
- GET /lessons/{id}/statistics: one lesson, room by room (its stored summary once it is
  over, else computed from its rows as they stand);
- GET /alerts: lessons not started five minutes after their time, rooms that dropped
  (classroom/alerts.py).

Scope: an admin sees everything; a school admin the lessons with a room of their school
(all rooms of those lessons: a city school sees how its partner rooms attended); a teacher
the lessons whose teacher account they are. Naming another school in `school_id` is 403.
signaling/app.py adds ROUTES to the server's table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import msgspec
import sqlalchemy as sa
from aiohttp import web
from msgspec import Meta

from classroom import alerts, lesson_stats
from classroom.lesson_stats import (
    GROUP_COLUMNS,
    HELD_MIN_FRACTION,
    LATE_AFTER,
    GroupStats,
    RoomSummary,
    catalogue_headers,
    export_csv,
)
from classroom.models import (
    Classroom,
    Lesson,
    LessonState,
    Recording,
    RecordingState,
    School,
    User,
    UserRole,
    utcnow,
)
from classroom.statistics_models import LessonStats
from signaling.errors import ErrorCode
from signaling.rest.auth import forbidden, is_admin, lesson_school_ids
from signaling.rest.kit import Call
from signaling.rest.openapi import Route
from signaling.rest.schemas import ApiError, AwareDatetime, Id, LessonStateName, Request, Response

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


ZONE = "Asia/Shanghai"  # weeks and file-name dates; the bureau's zone
GroupingName = Literal["week", "term", "school", "pairing", "teacher", "classroom"]
CsvLanguage = Literal["zh-CN", "en"]
VerdictName = Literal["held", "partial", "missed", "cancelled", "pending"]
_STAFF = (UserRole.SCHOOL_ADMIN, UserRole.TEACHER)


# ------------------------------------------------------------------ schemas


class StatisticsQuery(Request):
    by: GroupingName = "week"
    term_id: Id | None = None
    # Lessons planned to start in [from, to).
    start: AwareDatetime | None = msgspec.field(default=None, name="from")
    end: AwareDatetime | None = msgspec.field(default=None, name="to")
    school_id: Id | None = None  # lessons with a room of the school; only its rooms' figures
    pairing_id: Id | None = None
    classroom_id: Id | None = None
    teacher: Annotated[str, Meta(min_length=1, max_length=100)] | None = None  # teacher_name


class StatisticsCsvQuery(StatisticsQuery):
    lang: CsvLanguage = "zh-CN"  # column headers and file name


class StatisticsOut(Response):
    by: GroupingName
    start: datetime | None = msgspec.field(name="from")
    end: datetime | None = msgspec.field(name="to")
    term_id: int | None
    school_id: int | None
    pairing_id: int | None
    classroom_id: int | None
    teacher: str | None
    timezone: str  # of the weeks
    held_min_fraction: float  # "held": main and a receiving room together this share
    late_after_s: float  # "late": the main room joined this long after the start
    generated_at: datetime
    groups: list[GroupStats]


class RoomStatisticsOut(Response):
    classroom_id: int
    classroom_name: str
    school_id: int
    school_name: str
    summary: RoomSummary  # attendance, reconnects, drops and link figures of the room


class LessonStatisticsOut(Response):
    lesson_id: int
    title: str
    teacher_name: str
    state: LessonStateName
    planned_start: datetime
    planned_end: datetime
    # pending: not over yet (the figures are as things stand at computed_at).
    verdict: VerdictName
    final: bool  # the stored summary of a lesson that is over
    computed_at: datetime
    late: bool
    planned_s: float
    together_s: float  # main and >= 1 receiving room connected together, planned time
    together_fraction: float
    main_first_join_at: datetime | None
    main_lateness_s: float | None
    rooms_planned: int
    rooms_joined: int
    reconnects: int
    drops: int
    recordings: int  # ready in the library
    rooms: list[RoomStatisticsOut]


class AlertOut(Response):
    key: str  # stable while the alert lasts
    kind: Literal["not_started", "dropped"]
    lesson_id: int
    lesson_title: str
    lesson_state: LessonStateName
    planned_start: datetime
    classroom_id: int
    classroom_name: str
    school_id: int
    school_name: str
    role: Literal["main", "receiving"]
    since: datetime  # not_started: the planned start; dropped: when the link went


class AlertList(Response):
    server_time: datetime
    not_started_after_s: float
    items: list[AlertOut]


# -------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """What a caller may count: everything, a school's lessons, or a teacher's."""

    involving_school_id: int | None = None
    teacher_user_id: int | None = None
    nothing: bool = False  # a school account without a school sees nothing, not all


def scope_of(user: User) -> Scope:
    if is_admin(user):
        return Scope()
    if user.role == UserRole.SCHOOL_ADMIN:
        if user.school_id is None:
            return Scope(nothing=True)
        return Scope(involving_school_id=user.school_id)
    if user.role == UserRole.TEACHER:
        return Scope(teacher_user_id=user.id)
    raise forbidden(f"the {user.role} role has no statistics")


def _check_school_filter(user: User, school_id: int | None) -> None:
    if school_id is None or is_admin(user):
        return
    if user.school_id is None or user.school_id != school_id:
        raise forbidden(f"school {school_id} is not yours")


# ----------------------------------------------------------------- handlers


async def _groups(call: Call, q: StatisticsQuery) -> tuple[list[GroupStats], datetime]:
    if q.start is not None and q.end is not None and q.end <= q.start:
        raise ApiError(400, ErrorCode.INVALID_BODY, "`to` must be after `from`", field="to")
    _check_school_filter(call.me, q.school_id)
    scope = scope_of(call.me)
    now = utcnow()
    if scope.nothing:
        return [], now
    async with call.db() as db:
        groups = await lesson_stats.statistics(
            db,
            q.by,
            start=q.start,
            end=q.end,
            term_id=q.term_id,
            school_id=q.school_id,
            pairing_id=q.pairing_id,
            classroom_id=q.classroom_id,
            teacher_name=q.teacher,
            involving_school_id=scope.involving_school_id,
            teacher_user_id=scope.teacher_user_id,
            timezone=ZONE,
            now=now,
        )
    return groups, now


async def get_statistics(call: Call) -> StatisticsOut:
    """Lessons and their rooms grouped one way, within the caller's scope."""
    q: StatisticsQuery = call.query
    groups, now = await _groups(call, q)
    return StatisticsOut(
        by=q.by,
        start=q.start,
        end=q.end,
        term_id=q.term_id,
        school_id=q.school_id,
        pairing_id=q.pairing_id,
        classroom_id=q.classroom_id,
        teacher=q.teacher,
        timezone=ZONE,
        held_min_fraction=HELD_MIN_FRACTION,
        late_after_s=LATE_AFTER.total_seconds(),
        generated_at=now,
        groups=groups,
    )


async def statistics_csv(call: Call) -> web.Response:
    """The same rows as CSV for Excel: UTF-8 with BOM, CRLF, headers in `lang`."""
    q: StatisticsCsvQuery = call.query
    groups, now = await _groups(call, q)
    catalogue = _catalogue(q.lang)
    # The one key without a name: lessons of no term (planned by hand), when by=term.
    no_term = catalogue.get("stats.no_term", "")
    rows = [g if g.key else _relabel(g, no_term) for g in groups]
    data = export_csv(rows, GROUP_COLUMNS, catalogue_headers(catalogue, GROUP_COLUMNS))
    return web.Response(
        body=data,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": content_disposition(*_file_names(q, catalogue, now)),
            "Cache-Control": "private, no-store",
        },
    )


async def lesson_statistics(call: Call) -> LessonStatisticsOut:
    """One lesson room by room: stored summary once over, else computed as it stands."""
    lesson_id = call.id()
    async with call.db() as db:
        lesson = await db.get(Lesson, lesson_id)
        if lesson is None:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"no lesson {lesson_id}")
        if not _may_read(call.me, lesson):
            raise forbidden(f"lesson {lesson_id} is not in your statistics")
        over = lesson.state in (LessonState.ENDED, LessonState.CANCELLED)
        stats = await db.get(LessonStats, lesson_id, populate_existing=True)
        current = stats is not None and (
            lesson.ended_at is None or stats.computed_at >= lesson.ended_at
        )
        summary = await lesson_stats.stored_summary(db, lesson_id) if current else None
        computed_at = stats.computed_at if summary is not None and stats is not None else utcnow()
        if summary is None:
            summary = await lesson_stats.compute_summary(db, lesson_id, now=computed_at)
        names = await _room_names(db, [r.classroom_id for r in summary.rooms])
        recordings = await db.scalar(
            sa.select(sa.func.count())
            .select_from(Recording)
            .where(Recording.lesson_id == lesson_id, Recording.state == RecordingState.READY.value)
        )
    final = over and current
    return LessonStatisticsOut(
        lesson_id=lesson.id,
        title=lesson.title,
        teacher_name=lesson.teacher_name,
        state=lesson.state,  # type: ignore[arg-type]  # str column CHECKed to LessonState
        planned_start=lesson.planned_start,
        planned_end=lesson.planned_end,
        verdict=summary.verdict if over else "pending",  # type: ignore[arg-type]  # a LessonVerdict
        final=final,
        computed_at=computed_at,
        late=summary.late,
        planned_s=summary.planned_s,
        together_s=summary.together_s,
        together_fraction=summary.together_fraction,
        main_first_join_at=summary.main_first_join_at,
        main_lateness_s=summary.main_lateness_s,
        rooms_planned=summary.rooms_planned,
        rooms_joined=summary.rooms_joined,
        reconnects=summary.reconnects,
        drops=summary.drops,
        recordings=int(recordings or 0),
        rooms=[
            RoomStatisticsOut(
                classroom_id=r.classroom_id,
                classroom_name=names.get(r.classroom_id, ("", 0, ""))[0],
                school_id=names.get(r.classroom_id, ("", 0, ""))[1],
                school_name=names.get(r.classroom_id, ("", 0, ""))[2],
                summary=r,
            )
            for r in summary.rooms
        ],
    )


async def list_alerts(call: Call) -> AlertList:
    """The live overview's alerts, oldest first, within the caller's scope."""
    scope = scope_of(call.me)
    now = utcnow()
    found: list[alerts.Alert] = []
    if not scope.nothing:
        async with call.db() as db:
            found = await alerts.live_alerts(
                db,
                now=now,
                involving_school_id=scope.involving_school_id,
                teacher_user_id=scope.teacher_user_id,
            )
    return AlertList(
        server_time=now,
        not_started_after_s=alerts.NOT_STARTED_AFTER.total_seconds(),
        items=[AlertOut(key=a.key, **asdict(a)) for a in found],
    )


# ------------------------------------------------------------------ helpers


def _may_read(user: User, lesson: Lesson) -> bool:
    if is_admin(user):
        return True
    if user.role == UserRole.SCHOOL_ADMIN:
        return user.school_id is not None and user.school_id in lesson_school_ids(lesson)
    if user.role == UserRole.TEACHER:
        return lesson.teacher_user_id is not None and lesson.teacher_user_id == user.id
    return False


async def _room_names(db: AsyncSession, ids: list[int]) -> dict[int, tuple[str, int, str]]:
    if not ids:
        return {}
    rows = await db.execute(
        sa.select(Classroom.id, Classroom.name, School.id, School.name)
        .join(School, School.id == Classroom.school_id)
        .where(Classroom.id.in_(ids))
    )
    return {cid: (room, sid, school) for cid, room, sid, school in rows.all()}


def _catalogue(lang: str) -> dict[str, str]:
    """The page catalogue (web/static/i18n), read per export: CSV exports are rare."""
    from web.pages import STATIC_ROOT

    return json.loads((STATIC_ROOT / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def _relabel(group: GroupStats, label: str) -> GroupStats:
    values = asdict(group)
    values["label"] = label
    return GroupStats(**values)


def _file_names(q: StatisticsQuery, catalogue: dict[str, str], now: datetime) -> tuple[str, str]:
    """(ASCII fallback, the name in the caller's language), with the dates covered."""
    zone = ZoneInfo(ZONE)
    first = q.start.astimezone(zone).date().isoformat() if q.start else ""
    # `to` is exclusive: the file names the last day it covers.
    last = (q.end - timedelta(microseconds=1)).astimezone(zone).date().isoformat() if q.end else ""
    # "2026-11-09~2026-11-22", "2026-11-09~" (from that day on), or today's date for all.
    dates = f"{first}~{last}" if first or last else now.astimezone(zone).date().isoformat()
    name = catalogue.get("stats.csv.filename", "statistics")
    by = catalogue.get(f"stats.by.{q.by}", q.by)
    return f"tongbu-statistics-{q.by}-{dates}.csv", f"{name}_{by}_{dates}.csv"


def content_disposition(ascii_name: str, name: str) -> str:
    """`attachment` with an ASCII `filename` for old clients and the real name as
    RFC 6266 / RFC 5987 `filename*` (UTF-8, percent-encoded), which browsers prefer."""
    safe = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in ascii_name
    )
    return f"attachment; filename=\"{safe}\"; filename*=UTF-8''{quote(name, safe='')}"


# -------------------------------------------------------------------- routes

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/statistics",
        get_statistics,
        "常态化 statistics, grouped",
        "statistics",
        roles=_STAFF,
        query=StatisticsQuery,
        response=StatisticsOut,
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/statistics.csv",
        statistics_csv,
        "常态化 statistics as CSV (UTF-8 with BOM)",
        "statistics",
        roles=_STAFF,
        query=StatisticsCsvQuery,
        errors=(400, 404),
        media="text/csv",
    ),
    Route(
        "GET",
        "/lessons/{id}/statistics",
        lesson_statistics,
        "One lesson's statistics, room by room",
        "statistics",
        roles=_STAFF,
        response=LessonStatisticsOut,
        errors=(404,),
    ),
    Route(
        "GET",
        "/alerts",
        list_alerts,
        "Alerts of the live overview",
        "statistics",
        roles=_STAFF,
        response=AlertList,
    ),
)
