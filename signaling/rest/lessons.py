"""Lessons: scheduling, the state machine's transitions (open, start, end, cancel), join
tokens for classroom boxes and pages, and the live state of a running lesson.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import msgspec
import sqlalchemy as sa
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import audit, lessons, schools
from classroom.models import (
    Classroom,
    Lesson,
    LessonRoom,
    LessonState,
    NotFound,
    User,
    UserRole,
)
from classroom.refusals import refused
from signaling.appkeys import LIVE, TOKENS
from signaling.errors import ErrorCode
from signaling.live.state import LiveLessonState
from signaling.live.tokens import JoinRole
from signaling.rest.auth import (
    can_read_lesson,
    can_run_lesson,
    can_schedule,
    forbidden,
    is_admin,
    lesson_main_school_id,
    require,
    require_school,
)
from signaling.rest.kit import SCHOOL_ACCOUNTS, STAFF, Call, audit_change, not_found, sent_fields
from signaling.rest.openapi import Route
from signaling.rest.registers import (
    ReceivingIds,
    pairing_classrooms,
    require_rooms_of_school,
    school_of_classrooms,
)
from signaling.rest.schemas import (
    ApiError,
    AwareDatetime,
    Id,
    JoinRoleName,
    LessonKindName,
    LessonStateName,
    Request,
    Response,
    Short,
    from_row,
)

# -------------------------------------------------------------- schemas


class LessonIn(Request):
    pairing_id: Id
    kind: LessonKindName
    subject: Short
    grade: Annotated[str, Meta(min_length=1, max_length=50)]
    teacher_name: Short
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    planned_start: AwareDatetime
    planned_end: AwareDatetime
    # Omitted: on for famous_school lessons, off for the others.
    broadcast: bool | None = None
    # The teacher's account (a teacher of the main classroom's school): then only they,
    # besides admins, may run the lesson.
    teacher_user_id: Id | None = None


class LessonPatch(Request):
    """Only the fields sent change, while the lesson is scheduled or open. The main room
    stays the pairing's; `receiving_classroom_ids` replaces the receiving rooms (screen
    order); `teacher_user_id: null` unbinds the teacher account."""

    kind: LessonKindName | UnsetType = UNSET
    subject: Short | UnsetType = UNSET
    grade: Annotated[str, Meta(min_length=1, max_length=50)] | UnsetType = UNSET
    teacher_name: Short | UnsetType = UNSET
    title: Annotated[str, Meta(min_length=1, max_length=300)] | UnsetType = UNSET
    planned_start: AwareDatetime | UnsetType = UNSET
    planned_end: AwareDatetime | UnsetType = UNSET
    broadcast: bool | UnsetType = UNSET
    teacher_user_id: Id | UnsetType | None = UNSET
    receiving_classroom_ids: ReceivingIds | UnsetType = UNSET


class LessonRoomOut(Response):
    classroom_id: int
    name: str
    school_name: str
    role: Literal["main", "receiving"]
    position: int


class LessonOut(Response):
    id: int
    pairing_id: int
    kind: LessonKindName
    subject: str
    grade: str
    teacher_name: str
    title: str
    planned_start: datetime
    planned_end: datetime
    broadcast: bool
    state: LessonStateName
    opened_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    rooms: list[LessonRoomOut]
    teacher_user_id: int | None = None


class LessonPage(Response):
    items: list[LessonOut]
    total: int
    limit: int
    offset: int


class LessonQuery(Request):
    state: LessonStateName | None = None
    pairing_id: Id | None = None
    # Lessons with this classroom in them (main or receiving): one room's week.
    classroom_id: Id | None = None
    # Lessons whose planned time overlaps [from, to).
    start: AwareDatetime | None = msgspec.field(default=None, name="from")
    end: AwareDatetime | None = msgspec.field(default=None, name="to")
    limit: Annotated[int, Meta(ge=1, le=200)] = 50
    offset: Annotated[int, Meta(ge=0)] = 0


class TransitionIn(Request):
    """Optional body of /end and /cancel."""

    reason: Annotated[str, Meta(min_length=1, max_length=100)] | None = None


class JoinTokenIn(Request):
    role: JoinRoleName
    # Required for main and receiving; absent for watch.
    classroom_id: Id | None = None
    # Seconds; long enough for a box to get its token before the lesson.
    ttl_s: Annotated[int, Meta(ge=30, le=12 * 3600)] = 900


class JoinTokenOut(Response):
    token: str
    expires_at: datetime
    role: JoinRoleName
    classroom_id: int | None
    ws_url: str

WS_URL = "/ws/v1"


def _lesson_out(lesson: Lesson) -> LessonOut:
    rooms = sorted(lesson.rooms, key=lambda r: (r.role != "main", r.position))
    return from_row(
        LessonOut,
        lesson,
        rooms=[
            from_row(
                LessonRoomOut, r, name=r.classroom.name, school_name=r.classroom.school.name
            )
            for r in rooms
        ],
    )


# ------------------------------------------------------------- handlers


async def list_lessons(call: Call) -> LessonPage:
    """Lessons by planned start; `from`/`to` select those overlapping the window. School
    staff see the lessons their school takes part in, a device those of its classroom;
    reviewers, who may watch and read any lesson, see every lesson (so their home page
    can list what is live)."""
    q: LessonQuery = call.query
    state = LessonState(q.state) if q.state else None
    # Narrowed to one classroom's lessons (main or receiving): one room's week.
    rooms = [] if q.classroom_id is None else [LessonRoom.classroom_id == q.classroom_id]
    async with call.db() as db:
        if (is_admin(call.me) or call.me.role == UserRole.REVIEWER) and not rooms:
            rows, total = await lessons.list_lessons(
                db,
                state=state,
                pairing_id=q.pairing_id,
                start=q.start,
                end=q.end,
                limit=q.limit,
                offset=q.offset,
            )
        elif is_admin(call.me) or call.me.role == UserRole.REVIEWER:
            rows, total = await _lessons_with_room(db, q, *rooms)
        elif call.me.role == UserRole.DEVICE:
            own = LessonRoom.classroom_id == (call.me.classroom_id or 0)
            rows, total = await _lessons_with_room(db, q, own, *rooms)
        else:
            # The school's lessons; the classroom asked for may be the other school's.
            school = Classroom.school_id == (call.me.school_id or 0)
            rows, total = await _lessons_with_room(db, q, school, *rooms)
        return LessonPage(
            items=[_lesson_out(x) for x in rows], total=total, limit=q.limit, offset=q.offset
        )


async def _lessons_with_room(
    db: AsyncSession, q: LessonQuery, *wheres: sa.ColumnElement[bool]
) -> tuple[list[Lesson], int]:
    """lessons.list_lessons, narrowed to lessons that have, for each of `wheres` (on
    LessonRoom and its Classroom), a room matching it: a school's, a device's classroom."""
    query = sa.select(Lesson)
    for where in wheres:
        rooms = (
            sa.select(LessonRoom.lesson_id)
            .join(Classroom, Classroom.id == LessonRoom.classroom_id)
            .where(where)
        )
        query = query.where(Lesson.id.in_(rooms))
    if q.state is not None:
        query = query.where(Lesson.state == q.state)
    if q.pairing_id is not None:
        query = query.where(Lesson.pairing_id == q.pairing_id)
    if q.start is not None:
        query = query.where(Lesson.planned_end > q.start)
    if q.end is not None:
        query = query.where(Lesson.planned_start < q.end)
    total = await db.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = await db.scalars(
        query.order_by(Lesson.planned_start, Lesson.id).limit(q.limit).offset(q.offset)
    )
    return list(rows.all()), int(total or 0)


async def _check_teacher_account(db: AsyncSession, user_id: int, main_school: int) -> None:
    teacher = await db.get(User, user_id)
    if (
        teacher is None
        or teacher.role != UserRole.TEACHER
        or teacher.disabled
        or teacher.school_id != main_school
    ):
        raise ApiError(
            400,
            ErrorCode.INVALID_BODY,
            field="teacher_user_id",
            **refused("not_a_school_teacher", user_id=user_id),
        )


async def create_lesson(call: Call) -> LessonOut:
    """Schedule a lesson on a pairing; 409 `conflict` names the lesson a room is booked by.
    A school admin schedules on pairings whose main classroom is in their school."""
    body: LessonIn = call.body
    async with call.db() as db:
        pairing = await schools.get_pairing(db, body.pairing_id)
        if pairing is None:
            raise NotFound.because("pairing_not_found", field="pairing_id", id=body.pairing_id)
        main_school = (await school_of_classrooms(db, [pairing.main_classroom_id]))[
            pairing.main_classroom_id
        ]
        if not can_schedule(call.me, main_school):
            raise ApiError(403, ErrorCode.FORBIDDEN, **refused("not_your_pairing", id=pairing.id))
        if body.teacher_user_id is not None:
            await _check_teacher_account(db, body.teacher_user_id, main_school)
        lesson = await lessons.create_lesson(
            db,
            pairing_id=body.pairing_id,
            kind=body.kind,
            subject=body.subject,
            grade=body.grade,
            teacher_name=body.teacher_name,
            title=body.title,
            planned_start=body.planned_start,
            planned_end=body.planned_end,
            broadcast=body.broadcast,
            teacher_user_id=body.teacher_user_id,
        )
        await audit.record(db, call.me, "lesson_created", f"lesson:{lesson.id}", {}, call.remote)
        return _lesson_out(lesson)


async def _readable_lesson(call: Call, db: AsyncSession) -> Lesson:
    lesson = await lessons.get_lesson(db, call.id())
    if lesson is None:
        raise not_found("lesson", call.id())
    if not can_read_lesson(call.me, lesson):
        yours = "your classroom" if call.me.role == UserRole.DEVICE else "your school"
        raise forbidden(f"lesson {lesson.id} has no classroom of {yours}")
    return lesson


async def get_lesson(call: Call) -> LessonOut:
    async with call.db() as db:
        return _lesson_out(await _readable_lesson(call, db))


async def update_lesson(call: Call) -> LessonOut:
    """Change a scheduled or open lesson: title, subject, grade, kind, broadcast, times,
    teacher, receiving rooms. New times or rooms are checked for double booking (409
    `conflict` naming the clash); a live, ended or cancelled lesson answers 409 `conflict`.
    Rooms cannot change while rooms of the lesson are connected here."""
    sent = sent_fields(call.body)
    lesson_id = call.id()
    async with call.db() as db:
        lesson = await _readable_lesson(call, db)
        main_school = lesson_main_school_id(lesson)
        if not can_schedule(call.me, main_school):
            raise forbidden(f"lesson {lesson_id} is not scheduled from your school")
        if sent.get("teacher_user_id") is not None:
            await _check_teacher_account(db, sent["teacher_user_id"], main_school or 0)
        if "receiving_classroom_ids" in sent and not is_admin(call.me):
            # Another school's room comes into a lesson only by its pairing, which the
            # district admin made: a school admin adds no other school's room by hand.
            pairing = await schools.get_pairing(db, lesson.pairing_id)
            agreed = {r.classroom_id for r in lesson.rooms}
            agreed |= set(pairing_classrooms(pairing)) if pairing is not None else set()
            added = [c for c in sent["receiving_classroom_ids"] if c not in agreed]
            await require_rooms_of_school(
                call, db, added, "a lesson takes other schools' rooms from its pairing"
            )
        live = call.request.app.get(LIVE)
        if (
            "receiving_classroom_ids" in sent
            and live is not None
            and live.snapshot(lesson_id) is not None
        ):
            raise ApiError(
                409,
                ErrorCode.CONFLICT,
                field="receiving_classroom_ids",
                **refused("rooms_connected", lesson_id=lesson_id),
            )
        lesson, changes = await lessons.update_lesson(db, lesson_id, **sent)
        await audit_change(call, db, "lesson_updated", f"lesson:{lesson_id}", changes)
        return _lesson_out(lesson)


async def _transition(call: Call, to: LessonState, reason: str | None = None) -> LessonOut:
    lesson_id = call.id()
    async with call.db() as db:
        lesson = await _readable_lesson(call, db)
        allowed = (
            can_schedule(call.me, lesson_main_school_id(lesson))
            if to == LessonState.CANCELLED
            else can_run_lesson(call.me, lesson)
        )
        if not allowed:
            raise forbidden(f"lesson {lesson_id} is not yours to {to.value}")
        await lessons.transition(db, lesson_id, to, reason=reason)
        await audit.record(
            db,
            call.me,
            f"lesson_{to.value}",
            f"lesson:{lesson_id}",
            {"reason": reason} if reason else {},
            call.remote,
        )
    async with call.db() as db:
        after = await lessons.get_lesson(db, lesson_id)
        assert after is not None
        return _lesson_out(after)


async def _end_live(call: Call, reason: str) -> None:
    """Close the lesson's live media session, if this server runs one."""
    live = call.request.app.get(LIVE)
    if live is not None:
        await live.end_lesson(call.id(), reason)


async def open_lesson(call: Call) -> LessonOut:
    """scheduled → open: rooms may join; the main room's join makes it live."""
    return await _transition(call, LessonState.OPEN)


async def start_lesson(call: Call) -> LessonOut:
    """open → live, for a lesson started by hand (开始上课). The class starts now, even
    before its bell: its recording and broadcast begin with the media. A lesson a
    main-room box already made live in the lead-in starts its class now as well."""
    live = call.request.app.get(LIVE)
    lesson_id = call.id()
    if live is not None and live.waiting_for_bell(lesson_id):
        async with call.db() as db:
            lesson = await _readable_lesson(call, db)
            if not can_run_lesson(call.me, lesson):
                raise forbidden(f"lesson {lesson_id} is not yours to start")
            if lesson.state == LessonState.LIVE.value:
                live.start_class(lesson_id)
                await audit.record(db, call.me, "lesson_class_started", f"lesson:{lesson_id}",
                                   {}, call.remote)
                return _lesson_out(lesson)
    out = await _transition(call, LessonState.LIVE)
    if live is not None:
        live.start_class(lesson_id)
    return out


async def end_lesson(call: Call) -> LessonOut:
    """open|live → ended; every connected room is told and disconnected."""
    body: TransitionIn = call.body
    out = await _transition(call, LessonState.ENDED, body.reason or "ended_by_api")
    await _end_live(call, "ended_by_api")
    return out


async def cancel_lesson(call: Call) -> LessonOut:
    """scheduled|open → cancelled; frees the classrooms for other lessons."""
    body: TransitionIn = call.body
    out = await _transition(call, LessonState.CANCELLED, body.reason or "cancelled_by_api")
    await _end_live(call, "cancelled")
    return out


async def create_join_token(call: Call) -> JoinTokenOut:
    """A signed token for one room (main/receiving) or a watcher to join over /ws/v1.

    Main and receiving tokens name a classroom of the lesson in that role; school staff
    get them only for their own school's classrooms, a device only for its own classroom,
    and a teacher the main room's only when they may run the lesson. Watch tokens name
    none: reviewers get them for any lesson, school staff for lessons their school takes
    part in.
    """
    body: JoinTokenIn = call.body
    user = call.me
    lesson_id = call.id()
    role = JoinRole(body.role)
    async with call.db() as db:
        lesson = await lessons.get_lesson(db, lesson_id)
        if lesson is None:
            raise not_found("lesson", lesson_id)
        # Who may ask comes before what is asked: a caller with no part in the lesson
        # learns neither its state (409) nor its rooms (400) from the answer.
        if role == JoinRole.WATCH:
            require(user, UserRole.SCHOOL_ADMIN, UserRole.TEACHER, UserRole.REVIEWER)
        else:
            require(user, UserRole.SCHOOL_ADMIN, UserRole.TEACHER, UserRole.DEVICE)
        if not can_read_lesson(user, lesson):
            yours = "your classroom" if user.role == UserRole.DEVICE else "your school"
            raise forbidden(f"lesson {lesson_id} has no classroom of {yours}")
        if user.role == UserRole.DEVICE and body.classroom_id != user.classroom_id:
            raise forbidden(
                f"this device is classroom {user.classroom_id}'s; it joins as that room only"
            )
        if lesson.state in (LessonState.ENDED, LessonState.CANCELLED):
            raise ApiError(409, ErrorCode.LESSON_ENDED, f"the lesson is {lesson.state}")
        if role == JoinRole.WATCH:
            if body.classroom_id is not None:
                raise ApiError(
                    400,
                    ErrorCode.INVALID_BODY,
                    "a watch token names no classroom",
                    field="classroom_id",
                )
        else:
            if body.classroom_id is None:
                raise ApiError(
                    400,
                    ErrorCode.INVALID_BODY,
                    f"a {role} token names its classroom",
                    field="classroom_id",
                )
            place = next((r for r in lesson.rooms if r.classroom_id == body.classroom_id), None)
            if place is None:
                raise ApiError(
                    400,
                    ErrorCode.UNKNOWN_ROOM,
                    f"classroom {body.classroom_id} is not in lesson {lesson_id}",
                    field="classroom_id",
                )
            if place.role != role:
                raise ApiError(
                    400,
                    ErrorCode.TOKEN_WRONG_ROLE,
                    f"classroom {body.classroom_id} is the lesson's {place.role} room",
                    field="role",
                )
            require_school(user, place.classroom.school_id)
            if role == JoinRole.MAIN and user.role == UserRole.TEACHER:
                if not can_run_lesson(user, lesson):
                    raise forbidden(f"lesson {lesson_id} is taught by another teacher")
        token, expires_at = call.request.app[TOKENS].mint(
            lesson_id=lesson_id,
            classroom_id=body.classroom_id,
            role=role,
            ttl=timedelta(seconds=body.ttl_s),
            subject=user.username,
        )
        await audit.record(
            db,
            user,
            "join_token_minted",
            f"lesson:{lesson_id}",
            {"role": role.value, "classroom_id": body.classroom_id, "ttl_s": body.ttl_s},
            call.remote,
        )
    return JoinTokenOut(
        token=token,
        expires_at=expires_at,
        role=body.role,
        classroom_id=body.classroom_id,
        ws_url=WS_URL,
    )


async def get_live(call: Call) -> LiveLessonState:
    """Who is connected, link quality, tracks and forwarding counters of a live lesson:
    for admins, reviewers (read-only, as GET /lessons/{id}) and the lesson's schools' staff."""
    lesson_id = call.id()
    if not is_admin(call.me):
        async with call.db() as db:
            await _readable_lesson(call, db)
    live = call.request.app.get(LIVE)
    snapshot = live.snapshot(lesson_id) if live is not None else None
    if snapshot is None:
        raise ApiError(404, ErrorCode.NOT_LIVE, f"lesson {lesson_id} is not live here")
    return snapshot


# --------------------------------------------------------------- routes

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/lessons",
        list_lessons,
        "List lessons",
        "lessons",
        roles=(*SCHOOL_ACCOUNTS, UserRole.REVIEWER),
        query=LessonQuery,
        response=LessonPage,
    ),
    Route(
        "POST",
        "/lessons",
        create_lesson,
        "Schedule a lesson",
        "lessons",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=LessonIn,
        response=LessonOut,
        status=201,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/lessons/{id}",
        get_lesson,
        "Get a lesson",
        "lessons",
        roles=(*SCHOOL_ACCOUNTS, UserRole.REVIEWER),
        response=LessonOut,
    ),
    Route(
        "PATCH",
        "/lessons/{id}",
        update_lesson,
        "Change a scheduled or open lesson",
        "lessons",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=LessonPatch,
        response=LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/open",
        open_lesson,
        "Open a lesson",
        "lessons",
        roles=STAFF,
        response=LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/start",
        start_lesson,
        "Start a lesson",
        "lessons",
        roles=STAFF,
        response=LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/end",
        end_lesson,
        "End a lesson",
        "lessons",
        roles=STAFF,
        body=TransitionIn,
        body_required=False,
        response=LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/cancel",
        cancel_lesson,
        "Cancel a lesson",
        "lessons",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=TransitionIn,
        body_required=False,
        response=LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/join-tokens",
        create_join_token,
        "Mint a join token",
        "lessons",
        roles=(*STAFF, UserRole.REVIEWER, UserRole.DEVICE),
        body=JoinTokenIn,
        response=JoinTokenOut,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        "/lessons/{id}/live",
        get_live,
        "Live state of a lesson",
        "lessons",
        roles=(*STAFF, UserRole.REVIEWER),
        response=LiveLessonState,
    ),
)
