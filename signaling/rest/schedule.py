"""REST handlers of the schedule as it runs: what the scheduler will do next (admins), and
a classroom box's own lessons (devices), so an agent in `--auto` mode joins on its own.

signaling/app.py adds ROUTES to the server's table; the OpenAPI document takes the
structs here from the routes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from msgspec import Meta

from classroom.models import (
    AuditEvent,
    Classroom,
    Lesson,
    LessonRoom,
    LessonState,
    UserRole,
    utcnow,
)
from signaling.appkeys import SETTINGS
from signaling.errors import ErrorCode
from signaling.rest.auth import forbidden, is_admin, require_bound_device
from signaling.rest.kit import Call
from signaling.rest.openapi import Route
from signaling.rest.schemas import (
    ApiError,
    AwareDatetime,
    Id,
    LessonKindName,
    LessonStateName,
    Request,
    Response,
)
from signaling.services.scheduler import ACTOR, SCHEDULER

MAX_WINDOW = timedelta(days=31)
DEFAULT_WINDOW = timedelta(days=7)
MAX_ITEMS = 200

ActionName = Literal["open", "end", "missed"]


# ------------------------------------------------------------------ schemas


class DeviceLessonQuery(Request):
    # A device's own classroom (its binding) when left out; another one is 403. Admins
    # name the classroom whose box they stand in for.
    classroom_id: Id | None = None
    # Lessons whose planned time overlaps [from, to); open and live ones always. Default:
    # from now less the end grace, for seven days.
    start: AwareDatetime | None = msgspec.field(default=None, name="from")
    end: AwareDatetime | None = msgspec.field(default=None, name="to")


class DeviceLessonOut(Response):
    lesson_id: int
    title: str
    subject: str
    grade: str
    teacher_name: str
    kind: LessonKindName
    state: LessonStateName
    classroom_id: int
    classroom_name: str
    role: Literal["main", "receiving"]  # the classroom's place in the lesson
    planned_start: datetime
    planned_end: datetime
    opens_at: datetime  # when the scheduler opens it (planned_start - open lead)
    ends_at: datetime  # when the scheduler ends it at the latest (planned_end + grace)


class DeviceTimetable(Response):
    """A box's lessons by planned start, one item per lesson of its classroom."""

    server_time: datetime  # lets a box with a wrong clock wait by the server's
    scheduler: bool  # false: lessons open and end only by hand on this server
    open_lead_s: float
    end_grace_s: float
    items: list[DeviceLessonOut]


class SchedulerQuery(Request):
    limit: Annotated[int, Meta(ge=1, le=100)] = 20


class SchedulerActionOut(Response):
    lesson_id: int
    title: str
    state: LessonStateName
    action: ActionName  # open; end (ends at planned end + grace); missed (ends as not held)
    due_at: datetime  # in the past: overdue (the scheduler is off or behind)


class SchedulerEventOut(Response):
    lesson_id: int | None
    action: str  # audit action: lesson_open, lesson_ended
    at: datetime
    detail: dict[str, Any]


class SchedulerStatus(Response):
    server_time: datetime
    enabled: bool  # settings.scheduler
    running: bool  # this process runs it now
    interval_s: float
    open_lead_s: float
    end_grace_s: float
    last_tick_at: datetime | None  # of this process's scheduler
    last_error: str | None
    transitions: int  # made by this process since it started
    next: list[SchedulerActionOut]
    recent: list[SchedulerEventOut]  # automatic transitions, newest first (any process)


# ----------------------------------------------------------------- handlers


async def my_lessons(call: Call) -> DeviceTimetable:
    """A classroom box's lessons: those of the classroom its device account is bound to."""
    q: DeviceLessonQuery = call.query
    user = call.me
    app = call.request.app
    scheduler = app[SCHEDULER]
    now = utcnow()
    start = q.start or now - scheduler.end_grace
    end = q.end or start + DEFAULT_WINDOW
    if end <= start:
        raise ApiError(400, ErrorCode.INVALID_BODY, "`to` must be after `from`", field="to")
    if end - start > MAX_WINDOW:
        raise ApiError(400, ErrorCode.INVALID_BODY, "ask for at most 31 days", field="to")
    if is_admin(user):
        if q.classroom_id is None:
            raise ApiError(400, ErrorCode.INVALID_BODY, "name the classroom", field="classroom_id")
        room_filter = LessonRoom.classroom_id == q.classroom_id
    else:
        require_bound_device(user)
        if q.classroom_id not in (None, user.classroom_id):
            raise forbidden(
                f"this device is classroom {user.classroom_id}'s, not classroom {q.classroom_id}'s"
            )
        room_filter = LessonRoom.classroom_id == user.classroom_id
    async with call.db() as db:
        rows = await db.execute(
            sa.select(
                Lesson.id,
                Lesson.title,
                Lesson.subject,
                Lesson.grade,
                Lesson.teacher_name,
                Lesson.kind,
                Lesson.state,
                Lesson.planned_start,
                Lesson.planned_end,
                LessonRoom.classroom_id,
                LessonRoom.role,
                Classroom.name,
            )
            .join(LessonRoom, LessonRoom.lesson_id == Lesson.id)
            .join(Classroom, Classroom.id == LessonRoom.classroom_id)
            .where(
                room_filter,
                sa.or_(
                    sa.and_(Lesson.planned_end > start, Lesson.planned_start < end),
                    Lesson.state.in_([LessonState.OPEN.value, LessonState.LIVE.value]),
                ),
            )
            .order_by(Lesson.planned_start, Lesson.id, LessonRoom.classroom_id)
            .limit(MAX_ITEMS)
        )
        items = [
            DeviceLessonOut(
                lesson_id=r.id,
                title=r.title,
                subject=r.subject,
                grade=r.grade,
                teacher_name=r.teacher_name,
                kind=r.kind,
                state=r.state,
                classroom_id=r.classroom_id,
                classroom_name=r.name,
                role=r.role,
                planned_start=r.planned_start,
                planned_end=r.planned_end,
                opens_at=r.planned_start - scheduler.open_lead,
                ends_at=r.planned_end + scheduler.end_grace,
            )
            for r in rows
        ]
    return DeviceTimetable(
        server_time=utcnow(),
        scheduler=app[SETTINGS].scheduler,
        open_lead_s=scheduler.open_lead.total_seconds(),
        end_grace_s=scheduler.end_grace.total_seconds(),
        items=items,
    )


async def scheduler_status(call: Call) -> SchedulerStatus:
    """What the scheduler does next and did last (for the admin overview)."""
    q: SchedulerQuery = call.query
    app = call.request.app
    scheduler = app[SCHEDULER]
    now = utcnow()
    due = await scheduler.due_actions(now, limit=q.limit)
    async with call.db() as db:
        events = await db.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.actor_name == ACTOR, AuditEvent.action.like("lesson_%"))
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(q.limit)
        )
        recent = [
            SchedulerEventOut(
                lesson_id=_lesson_id_of(e.target),
                action=e.action,
                at=e.at,
                detail=dict(e.detail or {}),
            )
            for e in events
        ]
    return SchedulerStatus(
        server_time=now,
        enabled=app[SETTINGS].scheduler,
        running=scheduler.running,
        interval_s=scheduler.interval_s,
        open_lead_s=scheduler.open_lead.total_seconds(),
        end_grace_s=scheduler.end_grace.total_seconds(),
        last_tick_at=scheduler.last_tick_at,
        last_error=scheduler.last_error,
        transitions=scheduler.done,
        next=[
            SchedulerActionOut(
                lesson_id=a.lesson_id,
                title=a.title,
                state=a.state.value,
                action=a.action,
                due_at=a.due_at,
            )
            for a in due
        ],
        recent=recent,
    )


def _lesson_id_of(target: str) -> int | None:
    prefix, _, ident = target.partition(":")
    return int(ident) if prefix == "lesson" and ident.isdigit() else None


# -------------------------------------------------------------------- routes

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/devices/me/lessons",
        my_lessons,
        "A classroom box's own lessons",
        "devices",
        roles=(UserRole.DEVICE,),
        query=DeviceLessonQuery,
        response=DeviceTimetable,
        errors=(400, 403),
    ),
    Route(
        "GET",
        "/scheduler",
        scheduler_status,
        "What the lesson scheduler does next",
        "lessons",
        query=SchedulerQuery,
        response=SchedulerStatus,
    ),
)
