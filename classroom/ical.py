"""iCalendar feeds of the timetable: one subscribable URL per classroom or per teacher.

A feed is read by calendar programs (Outlook, Apple/Google Calendar, a phone), which
cannot sign in: its URL carries its own random token, which reads that one calendar and
nothing else, and can be revoked without touching anyone's login. Only the token's
SHA-256 is stored, as for API tokens.

The document is built with the `icalendar` package (RFC 5545): one VEVENT per lesson, its
UID stable for the lesson's life (so a moved lesson moves in the subscriber's calendar
instead of appearing twice), DTSTART/DTEND in the zone of the lesson's term (or of its main
school) with the matching VTIMEZONE, SUMMARY in Chinese, and STATUS:CANCELLED for a
cancelled lesson so that calendars strike it out rather than silently dropping it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.models import (
    Classroom,
    InvalidInput,
    Lesson,
    LessonKind,
    LessonRoom,
    LessonState,
    NotFound,
    RoomRole,
    School,
    User,
    UserRole,
    utcnow,
)
from classroom.timetable_models import (
    CalendarFeed,
    FeedKind,
    LessonSeries,
    SeriesOccurrence,
    Term,
)

TOKEN_PREFIX = "tbcal_"
# How far back a feed reaches (the current term, roughly); forward it reaches every lesson
# planned, up to MAX_EVENTS (a term of four lessons a week is about 80).
PAST = timedelta(days=60)
MAX_EVENTS = 5000
PRODID = "-//Tongbu//同步课堂 课表//ZH"
KIND_ZH = {
    LessonKind.DEDICATED.value: "专递课堂",
    LessonKind.FAMOUS_TEACHER.value: "名师课堂",
    LessonKind.FAMOUS_SCHOOL.value: "名校网络课堂",
}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedFeed:
    feed: CalendarFeed
    token: str  # shown once; only its digest is kept


async def create_feed(
    db: AsyncSession,
    *,
    kind: FeedKind | str,
    classroom_id: int | None = None,
    teacher_user_id: int | None = None,
    name: str = "",
    created_by_id: int | None = None,
) -> IssuedFeed:
    """A new feed and its token; commits."""
    kind = FeedKind(kind)
    if kind == FeedKind.CLASSROOM:
        if classroom_id is None or teacher_user_id is not None:
            raise InvalidInput.because("feed_classroom_only", field="classroom_id")
        if await db.get(Classroom, classroom_id) is None:
            raise NotFound.because("classroom_not_found", field="classroom_id", id=classroom_id)
    else:
        if teacher_user_id is None or classroom_id is not None:
            raise InvalidInput.because("feed_teacher_only", field="teacher_user_id")
        teacher = await db.get(User, teacher_user_id)
        if teacher is None or teacher.role != UserRole.TEACHER:
            raise NotFound.because(
                "teacher_account_not_found", field="teacher_user_id", id=teacher_user_id
            )
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    feed = CalendarFeed(
        kind=kind.value,
        classroom_id=classroom_id,
        teacher_user_id=teacher_user_id,
        token_sha256=_digest(token),
        name=name,
        created_by_id=created_by_id,
    )
    db.add(feed)
    await db.commit()
    return IssuedFeed(feed, token)


async def feed_for_token(db: AsyncSession, token: str) -> CalendarFeed | None:
    """The live feed a token opens (None if unknown or revoked); stamps its last use."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    feed = await db.scalar(
        sa.select(CalendarFeed).where(CalendarFeed.token_sha256 == _digest(token))
    )
    if feed is None or feed.revoked:
        return None
    feed.last_used_at = utcnow()
    await db.commit()
    return feed


async def revoke_feed(db: AsyncSession, feed_id: int) -> CalendarFeed:
    feed = await db.get(CalendarFeed, feed_id)
    if feed is None:
        raise NotFound.because("feed_not_found", id=feed_id)
    feed.revoked = True
    await db.commit()
    return feed


async def list_feeds(db: AsyncSession) -> list[CalendarFeed]:
    return list((await db.scalars(sa.select(CalendarFeed).order_by(CalendarFeed.id))).all())


async def feed_school_id(db: AsyncSession, feed: CalendarFeed) -> int | None:
    """The school a feed's classroom or teacher belongs to (for school admins' scope)."""
    if feed.classroom_id is not None:
        room = await db.get(Classroom, feed.classroom_id)
        return room.school_id if room else None
    user = await db.get(User, feed.teacher_user_id)
    return user.school_id if user else None


# ----------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Event:
    lesson: Lesson
    zone: str
    main: str  # "城关一中 主讲教室"
    receiving: tuple[str, ...]


async def _events(db: AsyncSession, feed: CalendarFeed, now: datetime) -> list[_Event]:
    query = sa.select(Lesson).where(Lesson.planned_start >= now - PAST)
    if feed.kind == FeedKind.CLASSROOM:
        query = query.where(
            Lesson.id.in_(
                sa.select(LessonRoom.lesson_id).where(LessonRoom.classroom_id == feed.classroom_id)
            )
        )
    else:
        query = query.where(Lesson.teacher_user_id == feed.teacher_user_id)
    lessons = list(
        (await db.scalars(query.order_by(Lesson.planned_start, Lesson.id).limit(MAX_EVENTS))).all()
    )
    if not lessons:
        return []
    ids = [x.id for x in lessons]
    # The zone each lesson is shown in: its term's, else its main school's.
    term_zone = dict(
        (
            await db.execute(
                sa.select(SeriesOccurrence.lesson_id, Term.timezone)
                .join(LessonSeries, LessonSeries.id == SeriesOccurrence.series_id)
                .join(Term, Term.id == LessonSeries.term_id)
                .where(SeriesOccurrence.lesson_id.in_(ids))
            )
        ).all()
    )
    school_zone = dict(
        (
            await db.execute(
                sa.select(LessonRoom.lesson_id, School.timezone)
                .join(Classroom, Classroom.id == LessonRoom.classroom_id)
                .join(School, School.id == Classroom.school_id)
                .where(LessonRoom.lesson_id.in_(ids), LessonRoom.role == RoomRole.MAIN.value)
            )
        ).all()
    )
    events = []
    for lesson in lessons:
        rooms = sorted(lesson.rooms, key=lambda r: (r.role != RoomRole.MAIN, r.position))
        labels = [f"{r.classroom.school.name} {r.classroom.name}" for r in rooms]
        zone = term_zone.get(lesson.id) or school_zone.get(lesson.id) or "Asia/Shanghai"
        events.append(_Event(lesson, zone, labels[0], tuple(labels[1:])))
    return events


async def feed_title(db: AsyncSession, feed: CalendarFeed) -> str:
    if feed.kind == FeedKind.CLASSROOM:
        room = await db.get(Classroom, feed.classroom_id)
        subject = f"{room.school.name} {room.name}" if room else f"教室 {feed.classroom_id}"
    else:
        user = await db.get(User, feed.teacher_user_id)
        subject = (user.display_name or user.username) if user else f"教师 {feed.teacher_user_id}"
    return f"{subject} · 同步课堂课表"


async def render_feed(
    db: AsyncSession, feed: CalendarFeed, *, uid_domain: str, now: datetime | None = None
) -> bytes:
    """The feed as an iCalendar document (text/calendar; charset=utf-8)."""
    now = now or utcnow()
    return render(
        await _events(db, feed, now),
        title=await feed_title(db, feed),
        uid_domain=uid_domain,
        now=now,
    )


def render(events: Sequence[_Event], *, title: str, uid_domain: str, now: datetime) -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", title)
    if events:
        cal.add("x-wr-timezone", events[0].zone)
    # Calendar programs poll subscriptions; ask for an hourly refresh.
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT1H")
    for e in events:
        lesson = e.lesson
        zone = ZoneInfo(e.zone)
        event = icalendar.Event()
        event.add("uid", f"lesson-{lesson.id}@{uid_domain}")
        event.add("dtstamp", now)
        event.add("dtstart", lesson.planned_start.astimezone(zone))
        event.add("dtend", lesson.planned_end.astimezone(zone))
        kind = KIND_ZH.get(lesson.kind, lesson.kind)
        event.add("summary", f"【{kind}】{lesson.subject}：{lesson.title}")
        event.add("location", e.main)
        receiving = "、".join(e.receiving) or "无"
        event.add(
            "description",
            f"年级：{lesson.grade}\n教师：{lesson.teacher_name}\n"
            f"主讲教室：{e.main}\n听课教室：{receiving}",
        )
        cancelled = lesson.state == LessonState.CANCELLED.value
        event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
        event.add("categories", [kind, lesson.subject])
        event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")
        cal.add_component(event)
    if events:
        first = min(e.lesson.planned_start for e in events).date() - timedelta(days=1)
        last = max(e.lesson.planned_end for e in events).date() + timedelta(days=1)
        cal.add_missing_timezones(first_date=first, last_date=last)
    return cal.to_ical()
