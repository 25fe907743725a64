"""REST handlers and routes of term timetables: terms, lesson series, one-occurrence
changes, CSV import, double-booking checks and iCalendar feeds.

signaling/app.py adds ROUTES to the server's table, so setup, validation, errors and the OpenAPI
document are the same machinery as every other endpoint. Scope follows the registers:
terms are the education bureau's (admins write them, school accounts read them); a series
is scheduled by an admin or by the school admin of its pairing's main classroom, and read
by every school it reaches. Calendar feeds are read with their own token (public route).
"""

from __future__ import annotations

import hashlib
from datetime import time
from typing import TYPE_CHECKING

import msgspec
import sqlalchemy as sa
from aiohttp import web

from classroom import audit, conflicts, ical, terms, timetable, timetable_csv
from classroom.models import Classroom, Lesson, Pairing, PairingMember, User, UserRole
from classroom.refusals import refused
from classroom.terms import Holiday, MakeupDay, Period, TermCalendar, TermSpec
from classroom.timetable import SeriesSpec, SyncReport
from classroom.timetable_models import CalendarFeed, FeedKind, LessonSeries, SeriesOccurrence, Term
from signaling.appkeys import SETTINGS
from signaling.errors import ErrorCode
from signaling.rest import timetable_schemas as t
from signaling.rest.auth import can_schedule, forbidden, is_admin, require_school
from signaling.rest.kit import Call
from signaling.rest.openapi import Route
from signaling.rest.schemas import ApiError, from_row

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


_STAFF = (UserRole.SCHOOL_ADMIN, UserRole.TEACHER)
_SCHOOL = (*_STAFF, UserRole.DEVICE)
FEED_PATH = "/feeds/calendar.ics"


# ------------------------------------------------------------ conversions


def _hhmm(value: time | None) -> str | None:
    return None if value is None else f"{value:%H:%M}"


def _time(value: str | None) -> time | None:
    return None if value is None else time.fromisoformat(value)


def _term_out(term: Term) -> t.TermOut:
    calendar = TermCalendar.of(term)
    return from_row(
        t.TermOut,
        term,
        weeks=calendar.week_of(term.end_date),
        periods=[
            from_row(
                t.PeriodOut, p, starts_at=_hhmm(p.starts_at) or "", ends_at=_hhmm(p.ends_at) or ""
            )
            for p in term.periods
        ],
    )


def _term_spec(body: t.TermIn) -> TermSpec:
    return TermSpec(
        school_year=body.school_year,
        name=body.name,
        start_date=body.start_date,
        end_date=body.end_date,
        timezone=body.timezone,
        region=body.region,
        holidays=tuple(Holiday(h.start_date, h.end_date, h.name) for h in body.holidays),
        makeup_days=tuple(MakeupDay(m.date, m.follows_weekday, m.name) for m in body.makeup_days),
        periods=tuple(
            Period(p.number, time.fromisoformat(p.starts_at), time.fromisoformat(p.ends_at))
            for p in body.periods
        ),
    )


def _series_out(s: LessonSeries) -> t.SeriesOut:
    return from_row(
        t.SeriesOut, s, start_time=_hhmm(s.start_time), end_time=_hhmm(s.end_time)
    )


def _series_spec(body: t.SeriesIn) -> SeriesSpec:
    return SeriesSpec(
        pairing_id=body.pairing_id,
        kind=body.kind,
        subject=body.subject,
        grade=body.grade,
        title=body.title,
        teacher_name=body.teacher_name,
        teacher_user_id=body.teacher_user_id,
        broadcast=body.broadcast,
        weekday=body.weekday,
        period=body.period,
        start_time=_time(body.start_time),
        end_time=_time(body.end_time),
        week_parity=body.week_parity,
        first_date=body.first_date,
        last_date=body.last_date,
    )


def _generation_out(report: SyncReport, dry_run: bool = False) -> t.GenerationOut:
    return from_row(t.GenerationOut, report, dry_run=dry_run)


def _occurrence_out(occ: SeriesOccurrence, lesson: Lesson) -> t.OccurrenceOut:
    """The lesson as it is now (moved, substituted), and where it stands in its series."""
    return from_row(
        t.OccurrenceOut,
        lesson,
        lesson_id=lesson.id,
        series_id=occ.series_id,
        occurrence_date=occ.occurrence_date,
        changed=occ.changed,
    )


def _feed_out(feed: CalendarFeed) -> t.FeedOut:
    return from_row(t.FeedOut, feed)


# ------------------------------------------------------------------ scope


async def _pairing_schools(db: AsyncSession, pairing_id: int) -> set[int]:
    main = sa.select(Classroom.school_id).join(Pairing, Pairing.main_classroom_id == Classroom.id)
    receiving = sa.select(Classroom.school_id).join(
        PairingMember, PairingMember.classroom_id == Classroom.id
    )
    rows = await db.scalars(
        sa.union(
            main.where(Pairing.id == pairing_id),
            receiving.where(PairingMember.pairing_id == pairing_id),
        )
    )
    return set(rows.all())


async def _require_schedule(call: Call, db: AsyncSession, pairing_id: int) -> None:
    main_school = await timetable.main_school_of_pairing(db, pairing_id)
    if not can_schedule(call.me, main_school):
        raise ApiError(403, ErrorCode.FORBIDDEN, **refused("not_your_pairing", id=pairing_id))


async def _readable_series(call: Call, db: AsyncSession) -> LessonSeries:
    series = await timetable.get_series(db, call.id())
    if not is_admin(call.me) and call.me.school_id not in await _pairing_schools(
        db, series.pairing_id
    ):
        raise forbidden(f"series {series.id} has no classroom of your school")
    return series


# ------------------------------------------------------------------ terms


async def list_terms(call: Call) -> t.TermList:
    """Every term (the calendar is the district's, readable by every school account)."""
    async with call.db() as db:
        return t.TermList(items=[_term_out(x) for x in await terms.list_terms(db)])


async def create_term(call: Call) -> t.TermOut:
    """Create a term with its holidays, make-up days (调休) and periods (节次)."""
    body: t.TermIn = call.body
    async with call.db() as db:
        term = await terms.create_term(db, _term_spec(body))
        await audit.record(
            db, call.me, "term.created", f"term:{term.id}", {"name": term.name}, call.remote
        )
        return _term_out(term)


async def get_term(call: Call) -> t.TermOut:
    async with call.db() as db:
        return _term_out(await terms.load_term(db, call.id()))


async def replace_term(call: Call) -> t.TermChanged:
    """Replace a term's dates, zone, holidays, make-up days and periods; every series of
    the term is regenerated in the same transaction (future, untouched occurrences
    follow). 409 if the result would double-book; 400 if a series would lose its period.
    Nothing changes when refused."""
    body: t.TermIn = call.body
    async with call.db() as db:
        _, report = await timetable.replace_term(db, call.id(), _term_spec(body))
        term = await terms.load_term(db, call.id())
        await audit.record(
            db,
            call.me,
            "term.updated",
            f"term:{term.id}",
            {"created": report.created, "updated": report.updated, "removed": report.removed},
            call.remote,
        )
        return t.TermChanged(term=_term_out(term), generation=_generation_out(report))


async def generate_term(call: Call) -> t.GenerationOut:
    """Bring every series' lessons up to date (idempotent: a second run creates nothing).
    `dry_run` reports what would change, double bookings included, and writes nothing."""
    q: t.GenerateQuery = call.query
    async with call.db() as db:
        report = await timetable.regenerate_term(db, call.id(), write=not q.dry_run)
        if not q.dry_run:
            await audit.record(
                db, call.me, "term.generated", f"term:{call.id()}", {"created": report.created}
            )
        return _generation_out(report, q.dry_run)


async def term_clashes(call: Call) -> t.ClashList:
    """Double bookings already on the calendar during the term (expected: none; the
    refusals keep them out, this finds any that came in another way)."""
    async with call.db() as db:
        calendar = await terms.calendar_of(db, call.id())
        clashes = await conflicts.audit_window(db, calendar.first_instant, calendar.last_instant)
        messages = await conflicts.clash_messages(db, clashes, calendar.zone)
    return t.ClashList(
        items=[
            t.ClashOut(
                lesson_id=c.booking.lesson_id,
                other_lesson_id=c.other.lesson_id,
                resource=c.resource,
                classroom_id=c.classroom_id,
                message=m,
            )
            for c, m in zip(clashes, messages, strict=True)
        ]
    )


async def _read_csv(request: web.Request) -> bytes:
    limit = timetable_csv.MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"the file exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"the file exceeds {limit} bytes")
        chunks.append(chunk)
    if not size:
        raise ApiError(400, ErrorCode.INVALID_BODY, **refused("csv_body_missing"))
    return b"".join(chunks)


async def import_timetable(call: Call) -> t.ImportOut | web.Response:
    """Import the term's timetable from CSV, sent as the raw request body (Content-Type
    text/csv; UTF-8 with or without BOM, GB18030/GBK, or UTF-16 with BOM). One series per
    row; all or nothing. A refused file answers 400 with `error` and `rows`: every bad
    row's line, column and reason (see docs/timetable.md). A school admin imports rows
    whose main classroom is in their school. `dry_run` checks without writing."""
    q: t.ImportQuery = call.query
    data = await _read_csv(call.request)
    school_id = None if is_admin(call.me) else (call.me.school_id or 0)
    async with call.db() as db:
        try:
            report = await timetable_csv.import_timetable(
                db, call.id(), data, school_id=school_id, dry_run=q.dry_run
            )
        except timetable_csv.ImportRejected as exc:
            body = t.ImportRejectedOut(
                error=t.ImportRejectedDetail(
                    code=ErrorCode.INVALID_BODY.value,
                    message=exc.message,
                    reason=exc.reason or "",
                    params=exc.params,
                ),
                rows=[
                    t.ImportRowError(
                        line=e.line,
                        column=e.column,
                        message=e.message,
                        reason=e.reason,
                        params=e.params,
                    )
                    for e in exc.errors
                ],
            )
            return web.Response(
                body=msgspec.json.encode(body), status=400, content_type="application/json"
            )
        if not q.dry_run:
            await audit.record(
                db,
                call.me,
                "term.imported",
                f"term:{call.id()}",
                {"series": report.series_created, "lessons": report.lessons_created},
                call.remote,
            )
    return t.ImportOut(
        rows=report.rows,
        series_created=report.series_created,
        lessons_created=report.lessons_created,
        dry_run=report.dry_run,
    )


# ----------------------------------------------------------------- series


async def list_term_series(call: Call) -> t.SeriesList:
    """A term's series; school accounts see those reaching a classroom of their school."""
    async with call.db() as db:
        await terms.load_term(db, call.id())
        school_id = None if is_admin(call.me) else (call.me.school_id or 0)
        rows = await timetable.list_series(db, term_id=call.id(), school_id=school_id)
    return t.SeriesList(items=[_series_out(x) for x in rows])


async def create_series(call: Call) -> t.SeriesChanged:
    """Add a weekly lesson to the term and generate its lessons from now to the term's
    end. 409 `conflict` names the first clash (classroom or teacher, lesson or series,
    when); nothing is created then."""
    body: t.SeriesIn = call.body
    async with call.db() as db:
        await _require_schedule(call, db, body.pairing_id)
        series, report = await timetable.create_series(db, call.id(), _series_spec(body))
        await audit.record(
            db,
            call.me,
            "series.created",
            f"series:{series.id}",
            {"term_id": series.term_id, "lessons": report.created},
            call.remote,
        )
        return t.SeriesChanged(series=_series_out(series), generation=_generation_out(report))


async def get_series(call: Call) -> t.SeriesOut:
    async with call.db() as db:
        return _series_out(await _readable_series(call, db))


async def update_series(call: Call) -> t.SeriesChanged:
    """Replace a series; its future occurrences not changed by hand follow, the others
    and past ones stay. Refused whole (409) if that would double-book."""
    body: t.SeriesIn = call.body
    async with call.db() as db:
        series = await _readable_series(call, db)
        await _require_schedule(call, db, series.pairing_id)
        series, report = await timetable.update_series(db, series.id, _series_spec(body))
        await audit.record(
            db,
            call.me,
            "series.updated",
            f"series:{series.id}",
            {"updated": report.updated, "created": report.created, "removed": report.removed},
            call.remote,
        )
        return t.SeriesChanged(series=_series_out(series), generation=_generation_out(report))


async def delete_series(call: Call) -> t.GenerationOut:
    """Remove a series and its lessons still to come; lessons held stay as history."""
    async with call.db() as db:
        series = await _readable_series(call, db)
        await _require_schedule(call, db, series.pairing_id)
        report = await timetable.delete_series(db, series.id)
        await audit.record(
            db, call.me, "series.deleted", f"series:{series.id}", {"removed": report.removed}
        )
        return _generation_out(report)


async def list_occurrences(call: Call) -> t.OccurrenceList:
    async with call.db() as db:
        series = await _readable_series(call, db)
        rows = await timetable.list_occurrences(db, series.id)
    return t.OccurrenceList(items=[_occurrence_out(o, x) for o, x in rows])


async def _occurrence_for_change(call: Call, db: AsyncSession) -> tuple[SeriesOccurrence, Lesson]:
    occ, lesson = await timetable.get_occurrence(db, call.id())
    await _require_schedule(call, db, lesson.pairing_id)
    return occ, lesson


async def move_occurrence(call: Call) -> t.OccurrenceOut:
    """Move one occurrence of a series (the series is unchanged; regeneration keeps the
    move). 409 names a clash at the new time."""
    body: t.MoveIn = call.body
    async with call.db() as db:
        await _occurrence_for_change(call, db)
        await timetable.move_occurrence(
            db,
            call.id(),
            day=body.date,
            period=body.period,
            start_time=_time(body.start_time),
            end_time=_time(body.end_time),
        )
        occ, lesson = await timetable.get_occurrence(db, call.id())
        await audit.record(
            db,
            call.me,
            "occurrence.moved",
            f"lesson:{lesson.id}",
            {"planned_start": lesson.planned_start.isoformat()},
            call.remote,
        )
        return _occurrence_out(occ, lesson)


async def substitute_teacher(call: Call) -> t.OccurrenceOut:
    """Another teacher (代课) for one occurrence; 409 if they teach elsewhere then."""
    body: t.SubstituteIn = call.body
    async with call.db() as db:
        await _occurrence_for_change(call, db)
        await timetable.substitute_teacher(
            db, call.id(), teacher_name=body.teacher_name, teacher_user_id=body.teacher_user_id
        )
        occ, lesson = await timetable.get_occurrence(db, call.id())
        await audit.record(
            db,
            call.me,
            "occurrence.substituted",
            f"lesson:{lesson.id}",
            {"teacher_name": lesson.teacher_name, "teacher_user_id": lesson.teacher_user_id},
            call.remote,
        )
        return _occurrence_out(occ, lesson)


# ------------------------------------------------------------------ feeds


async def _may_manage_feed(
    call: Call, db: AsyncSession, kind: str, classroom_id: int | None, teacher_id: int | None
) -> None:
    me = call.me
    if is_admin(me):
        return
    if me.role == UserRole.TEACHER:
        if kind == FeedKind.TEACHER and teacher_id == me.id:
            return
        raise ApiError(403, ErrorCode.FORBIDDEN, **refused("own_teacher_feed_only"))
    if kind == FeedKind.CLASSROOM and classroom_id is not None:
        room = await db.get(Classroom, classroom_id)
        if room is not None:
            require_school(me, room.school_id)
    elif teacher_id is not None:
        user = await db.get(User, teacher_id)
        if user is not None:
            require_school(me, user.school_id or 0)


def _feed_url(call: Call, token: str) -> str:
    request = call.request
    scheme = (
        "https" if request.secure or request.headers.get("X-Forwarded-Proto") == "https" else "http"
    )
    return str(
        request.url.with_scheme(scheme).with_path(f"/api/v1{FEED_PATH}").with_query(token=token)
    )


async def create_feed(call: Call) -> t.FeedIssued:
    """A subscribable iCalendar URL for a classroom or a teacher, with its own token
    (shown once). School admins make feeds for their school; a teacher for themself."""
    body: t.FeedIn = call.body
    async with call.db() as db:
        await _may_manage_feed(call, db, body.kind, body.classroom_id, body.teacher_user_id)
        issued = await ical.create_feed(
            db,
            kind=body.kind,
            classroom_id=body.classroom_id,
            teacher_user_id=body.teacher_user_id,
            name=body.name,
            created_by_id=call.me.id,
        )
        await audit.record(
            db, call.me, "feed.created", f"feed:{issued.feed.id}", {"kind": body.kind}, call.remote
        )
    return t.FeedIssued(
        feed=_feed_out(issued.feed), token=issued.token, url=_feed_url(call, issued.token)
    )


async def list_feeds(call: Call) -> t.FeedList:
    """Admins see every feed; a school admin their school's; a teacher their own."""
    async with call.db() as db:
        rows = await ical.list_feeds(db)
        if not is_admin(call.me):
            mine = []
            for feed in rows:
                if call.me.role == UserRole.TEACHER:
                    if feed.teacher_user_id == call.me.id:
                        mine.append(feed)
                elif await ical.feed_school_id(db, feed) == call.me.school_id:
                    mine.append(feed)
            rows = mine
    return t.FeedList(items=[_feed_out(f) for f in rows])


async def revoke_feed(call: Call) -> t.FeedOut:
    """Revoke a feed: its URL answers 404 from now on."""
    async with call.db() as db:
        feed = await db.get(CalendarFeed, call.id())
        if feed is None:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"no calendar feed {call.id()}")
        await _may_manage_feed(call, db, feed.kind, feed.classroom_id, feed.teacher_user_id)
        feed = await ical.revoke_feed(db, feed.id)
        await audit.record(db, call.me, "feed.revoked", f"feed:{feed.id}", {}, call.remote)
        return _feed_out(feed)


def _uid_domain(call: Call) -> str:
    """Stable per installation (derived from its secret key), so UIDs never collide with
    another server's lessons in a subscriber's calendar."""
    settings = call.request.app.get(SETTINGS)
    secret = settings.resolved_secret_key() if settings is not None else b"tongbu"
    return hashlib.sha256(b"tongbu-ical-uid:" + secret).hexdigest()[:12] + ".tongbu"


async def calendar_feed(call: Call) -> web.Response:
    """The iCalendar document of a feed (text/calendar), for calendar programs: the
    token in the URL is the only credential. Unknown or revoked tokens get 404."""
    q: t.FeedQuery = call.query
    async with call.db() as db:
        feed = await ical.feed_for_token(db, q.token)
        if feed is None:
            raise ApiError(404, ErrorCode.NOT_FOUND, "no such calendar feed (revoked or unknown)")
        body = await ical.render_feed(db, feed, uid_domain=_uid_domain(call))
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": "private, max-age=300"},
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/terms", list_terms, "List terms", "timetable", roles=_SCHOOL, response=t.TermList
    ),
    Route(
        "POST",
        "/terms",
        create_term,
        "Create a term",
        "timetable",
        body=t.TermIn,
        response=t.TermOut,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET", "/terms/{id}", get_term, "Get a term", "timetable", roles=_SCHOOL, response=t.TermOut
    ),
    Route(
        "PUT",
        "/terms/{id}",
        replace_term,
        "Replace a term's calendar and regenerate",
        "timetable",
        body=t.TermIn,
        response=t.TermChanged,
        errors=(409,),
    ),
    Route(
        "POST",
        "/terms/{id}/generate",
        generate_term,
        "Regenerate a term's lessons",
        "timetable",
        query=t.GenerateQuery,
        response=t.GenerationOut,
        errors=(409,),
    ),
    Route(
        "GET",
        "/terms/{id}/clashes",
        term_clashes,
        "Double bookings in a term",
        "timetable",
        response=t.ClashList,
    ),
    Route(
        "POST",
        "/terms/{id}/import",
        import_timetable,
        "Import a term's timetable (CSV)",
        "timetable",
        roles=(UserRole.SCHOOL_ADMIN,),
        query=t.ImportQuery,
        response=t.ImportOut,
        errors=(409, 413),
    ),
    Route(
        "GET",
        "/terms/{id}/series",
        list_term_series,
        "List a term's lesson series",
        "timetable",
        roles=_SCHOOL,
        response=t.SeriesList,
    ),
    Route(
        "POST",
        "/terms/{id}/series",
        create_series,
        "Add a weekly lesson series",
        "timetable",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=t.SeriesIn,
        response=t.SeriesChanged,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        "/series/{id}",
        get_series,
        "Get a lesson series",
        "timetable",
        roles=_SCHOOL,
        response=t.SeriesOut,
    ),
    Route(
        "PUT",
        "/series/{id}",
        update_series,
        "Change a lesson series",
        "timetable",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=t.SeriesIn,
        response=t.SeriesChanged,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/series/{id}",
        delete_series,
        "Remove a lesson series",
        "timetable",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=t.GenerationOut,
    ),
    Route(
        "GET",
        "/series/{id}/occurrences",
        list_occurrences,
        "A series' lessons",
        "timetable",
        roles=_SCHOOL,
        response=t.OccurrenceList,
    ),
    Route(
        "POST",
        "/lessons/{id}/move",
        move_occurrence,
        "Move one occurrence of a series",
        "timetable",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=t.MoveIn,
        response=t.OccurrenceOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/substitute",
        substitute_teacher,
        "Substitute the teacher of one occurrence",
        "timetable",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=t.SubstituteIn,
        response=t.OccurrenceOut,
        errors=(409,),
    ),
    Route(
        "GET",
        "/calendar-feeds",
        list_feeds,
        "List calendar feeds",
        "timetable",
        roles=_STAFF,
        response=t.FeedList,
    ),
    Route(
        "POST",
        "/calendar-feeds",
        create_feed,
        "Create a calendar feed (iCalendar URL)",
        "timetable",
        roles=_STAFF,
        body=t.FeedIn,
        response=t.FeedIssued,
        status=201,
    ),
    Route(
        "DELETE",
        "/calendar-feeds/{id}",
        revoke_feed,
        "Revoke a calendar feed",
        "timetable",
        roles=_STAFF,
        response=t.FeedOut,
    ),
    Route(
        "GET",
        FEED_PATH,
        calendar_feed,
        "A calendar feed (iCalendar)",
        "timetable",
        public=True,
        query=t.FeedQuery,
        media="text/calendar",
        errors=(404,),
    ),
)
