"""The REST API (/api/v1): registers, scheduling, lesson control and join tokens.

ROUTES is the single table of endpoints: setup_api() registers it with aiohttp and
signaling/openapi.py describes it, so the document cannot miss or invent an endpoint.
Each handler receives a Call with the authenticated user and the validated body and
query, and returns a response struct; errors of every kind leave as one ErrorBody shape.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import audit, lessons, schools
from classroom.models import (
    Classroom,
    Conflict,
    DomainError,
    InvalidInput,
    Lesson,
    LessonState,
    NotFound,
    Pairing,
    School,
    User,
    UserRole,
    utcnow,
)
from classroom.users import AuthenticationFailed, authenticate, issue_token
from recorder import library_api as lib
from signaling import api_schemas as s
from signaling.api_schemas import ApiError
from signaling.appkeys import DB, LIVE, TOKENS
from signaling.auth import current_user, optional_user, require, require_school
from signaling.errors import ErrorCode
from signaling.live_state import LiveLessonState
from signaling.openapi import ANY_USER, API_PREFIX, Route, build_document
from signaling.tokens import JoinRole

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes; the largest real body (a lesson) is well under 1 KiB
LOGIN_TOKEN_TTL = timedelta(hours=12)
WS_URL = "/ws/v1"
OPENAPI = web.AppKey("openapi_document", bytes)


@dataclass
class Call:
    """One API request, after authentication and validation."""

    request: web.Request
    user: User | None
    body: Any
    query: Any

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        return self.request.app[DB]

    @property
    def remote(self) -> str | None:
        return self.request.remote

    @property
    def me(self) -> User:
        assert self.user is not None, "public routes have no user"
        return self.user

    def id(self, name: str = "id") -> int:
        try:
            value = int(self.request.match_info[name])
        except ValueError:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"{name} must be a positive integer") from None
        if value < 1:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"{name} must be a positive integer")
        return value


# ------------------------------------------------------------ conversions


def _user_out(user: User) -> s.UserOut:
    return s.UserOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,  # type: ignore[arg-type]
        school_id=user.school_id,
    )


def _school_out(school: School) -> s.SchoolOut:
    return s.SchoolOut(
        id=school.id,
        name=school.name,
        kind=school.kind,  # type: ignore[arg-type]
        region=school.region,
        timezone=school.timezone,
    )


def _classroom_out(classroom: Classroom) -> s.ClassroomOut:
    return s.ClassroomOut(
        id=classroom.id,
        school_id=classroom.school_id,
        school_name=classroom.school.name,
        name=classroom.name,
    )


def _pairing_out(pairing: Pairing) -> s.PairingOut:
    return s.PairingOut(
        id=pairing.id,
        name=pairing.name,
        main_classroom_id=pairing.main_classroom_id,
        receiving_classroom_ids=[m.classroom_id for m in pairing.members],
    )


def _lesson_out(lesson: Lesson) -> s.LessonOut:
    rooms = sorted(lesson.rooms, key=lambda r: (r.role != "main", r.position))
    return s.LessonOut(
        id=lesson.id,
        pairing_id=lesson.pairing_id,
        kind=lesson.kind,  # type: ignore[arg-type]
        subject=lesson.subject,
        grade=lesson.grade,
        teacher_name=lesson.teacher_name,
        title=lesson.title,
        planned_start=lesson.planned_start,
        planned_end=lesson.planned_end,
        broadcast=lesson.broadcast,
        state=lesson.state,  # type: ignore[arg-type]
        opened_at=lesson.opened_at,
        started_at=lesson.started_at,
        ended_at=lesson.ended_at,
        end_reason=lesson.end_reason,
        rooms=[
            s.LessonRoomOut(
                classroom_id=r.classroom_id,
                name=r.classroom.name,
                school_name=r.classroom.school.name,
                role=r.role,  # type: ignore[arg-type]
                position=r.position,
            )
            for r in rooms
        ],
    )


def _not_found(what: str, ident: int) -> ApiError:
    return ApiError(404, ErrorCode.NOT_FOUND, f"no {what} {ident}")


# ------------------------------------------------------------------ auth


async def login(call: Call) -> s.LoginResponse:
    """Exchange a username and password for an API token valid 12 hours.

    Five wrong passwords lock the account for 15 minutes; the answer is the same 401
    whatever went wrong, so it does not reveal which usernames exist.
    """
    body: s.LoginRequest = call.body
    async with call.db() as db:
        try:
            user = await authenticate(db, body.username, body.password)
        except AuthenticationFailed as exc:
            await audit.record(
                db,
                exc.user or body.username,
                "login_failed",
                f"user:{body.username}",
                {"reason": exc.reason},
                call.remote,
            )
            raise ApiError(401, ErrorCode.UNAUTHORIZED, exc.message) from None
        expires_at = utcnow() + LOGIN_TOKEN_TTL
        token = await issue_token(db, user, name="login", expires_at=expires_at)
        await audit.record(db, user, "login", f"user:{user.username}", {}, call.remote)
    return s.LoginResponse(token=token, expires_at=expires_at, user=_user_out(user))


async def me(call: Call) -> s.UserOut:
    """The user behind the bearer token."""
    return _user_out(call.me)


# ------------------------------------------------------------- registers


async def list_schools(call: Call) -> s.SchoolList:
    async with call.db() as db:
        return s.SchoolList(items=[_school_out(x) for x in await schools.list_schools(db)])


async def create_school(call: Call) -> s.SchoolOut:
    body: s.SchoolIn = call.body
    async with call.db() as db:
        school = await schools.create_school(
            db, name=body.name, kind=body.kind, region=body.region, timezone=body.timezone
        )
        await audit.record(
            db, call.me, "school_created", f"school:{school.id}", {"name": school.name}, call.remote
        )
    return _school_out(school)


async def get_school(call: Call) -> s.SchoolOut:
    async with call.db() as db:
        school = await schools.get_school(db, call.id())
    if school is None:
        raise _not_found("school", call.id())
    return _school_out(school)


async def list_classrooms(call: Call) -> s.ClassroomList:
    query: s.ClassroomQuery = call.query
    async with call.db() as db:
        rows = await schools.list_classrooms(db, school_id=query.school_id)
    return s.ClassroomList(items=[_classroom_out(c) for c in rows])


async def create_classroom(call: Call) -> s.ClassroomOut:
    """Admins register classrooms anywhere; a school admin only in their own school."""
    body: s.ClassroomIn = call.body
    require_school(call.me, body.school_id)
    async with call.db() as db:
        classroom = await schools.create_classroom(db, school_id=body.school_id, name=body.name)
        await audit.record(
            db,
            call.me,
            "classroom_created",
            f"classroom:{classroom.id}",
            {"school_id": body.school_id, "name": body.name},
            call.remote,
        )
    return _classroom_out(classroom)


async def list_pairings(call: Call) -> s.PairingList:
    async with call.db() as db:
        return s.PairingList(items=[_pairing_out(p) for p in await schools.list_pairings(db)])


async def create_pairing(call: Call) -> s.PairingOut:
    body: s.PairingIn = call.body
    async with call.db() as db:
        pairing = await schools.create_pairing(
            db,
            name=body.name,
            main_classroom_id=body.main_classroom_id,
            receiving_classroom_ids=body.receiving_classroom_ids,
        )
        await audit.record(db, call.me, "pairing_created", f"pairing:{pairing.id}", {}, call.remote)
    return _pairing_out(pairing)


async def get_pairing(call: Call) -> s.PairingOut:
    async with call.db() as db:
        pairing = await schools.get_pairing(db, call.id())
    if pairing is None:
        raise _not_found("pairing", call.id())
    return _pairing_out(pairing)


# --------------------------------------------------------------- lessons


async def list_lessons(call: Call) -> s.LessonPage:
    """Lessons by planned start; `from`/`to` select those overlapping the window."""
    q: s.LessonQuery = call.query
    async with call.db() as db:
        rows, total = await lessons.list_lessons(
            db,
            state=LessonState(q.state) if q.state else None,
            pairing_id=q.pairing_id,
            start=q.start,
            end=q.end,
            limit=q.limit,
            offset=q.offset,
        )
        return s.LessonPage(
            items=[_lesson_out(x) for x in rows], total=total, limit=q.limit, offset=q.offset
        )


async def create_lesson(call: Call) -> s.LessonOut:
    """Schedule a lesson on a pairing; 409 `conflict` names the lesson a room is booked by."""
    body: s.LessonIn = call.body
    async with call.db() as db:
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
        )
        await audit.record(db, call.me, "lesson_created", f"lesson:{lesson.id}", {}, call.remote)
        return _lesson_out(lesson)


async def get_lesson(call: Call) -> s.LessonOut:
    async with call.db() as db:
        lesson = await lessons.get_lesson(db, call.id())
        if lesson is None:
            raise _not_found("lesson", call.id())
        return _lesson_out(lesson)


async def _transition(call: Call, to: LessonState, reason: str | None = None) -> s.LessonOut:
    lesson_id = call.id()
    async with call.db() as db:
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
        lesson = await lessons.get_lesson(db, lesson_id)
        assert lesson is not None
        return _lesson_out(lesson)


async def _end_live(call: Call, reason: str) -> None:
    """Close the lesson's live media session, if this server runs one."""
    live = call.request.app.get(LIVE)
    if live is not None:
        await live.end_lesson(call.id(), reason)


async def open_lesson(call: Call) -> s.LessonOut:
    """scheduled → open: rooms may join; the main room's join makes it live."""
    return await _transition(call, LessonState.OPEN)


async def start_lesson(call: Call) -> s.LessonOut:
    """open → live, for a lesson started by hand before the main room joins."""
    return await _transition(call, LessonState.LIVE)


async def end_lesson(call: Call) -> s.LessonOut:
    """open|live → ended; every connected room is told and disconnected."""
    body: s.TransitionIn = call.body
    out = await _transition(call, LessonState.ENDED, body.reason or "ended_by_api")
    await _end_live(call, "ended_by_api")
    return out


async def cancel_lesson(call: Call) -> s.LessonOut:
    """scheduled|open → cancelled; frees the classrooms for other lessons."""
    body: s.TransitionIn = call.body
    out = await _transition(call, LessonState.CANCELLED, body.reason or "cancelled_by_api")
    await _end_live(call, "cancelled")
    return out


async def create_join_token(call: Call) -> s.JoinTokenOut:
    """A signed token for one room (main/receiving) or a watcher to join over /ws/v1.

    Main and receiving tokens name a classroom of the lesson in that role; school staff
    and devices get them only for their own school's classrooms. Watch tokens name none.
    """
    body: s.JoinTokenIn = call.body
    user = call.me
    lesson_id = call.id()
    role = JoinRole(body.role)
    async with call.db() as db:
        lesson = await lessons.get_lesson(db, lesson_id)
        if lesson is None:
            raise _not_found("lesson", lesson_id)
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
            require(user, UserRole.SCHOOL_ADMIN, UserRole.TEACHER, UserRole.REVIEWER)
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
            require(user, UserRole.SCHOOL_ADMIN, UserRole.TEACHER, UserRole.DEVICE)
            require_school(user, place.classroom.school_id)
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
    return s.JoinTokenOut(
        token=token,
        expires_at=expires_at,
        role=body.role,
        classroom_id=body.classroom_id,
        ws_url=WS_URL,
    )


async def get_live(call: Call) -> LiveLessonState:
    """Who is connected, link quality, tracks and forwarding counters of a live lesson."""
    lesson_id = call.id()
    live = call.request.app.get(LIVE)
    snapshot = live.snapshot(lesson_id) if live is not None else None
    if snapshot is None:
        raise ApiError(404, ErrorCode.NOT_LIVE, f"lesson {lesson_id} is not live here")
    return snapshot


async def openapi_document(call: Call) -> web.Response:
    """This API's OpenAPI 3.1 description."""
    return web.Response(body=call.request.app[OPENAPI], content_type="application/json")


# ------------------------------------------------------------- the table

_STAFF = (UserRole.SCHOOL_ADMIN, UserRole.TEACHER)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", openapi_document, "OpenAPI document", "meta", public=True),
    Route(
        "POST",
        "/auth/login",
        login,
        "Log in",
        "auth",
        public=True,
        body=s.LoginRequest,
        response=s.LoginResponse,
        errors=(401,),
    ),
    Route("GET", "/me", me, "Current user", "auth", roles=ANY_USER, response=s.UserOut),
    Route(
        "GET",
        "/schools",
        list_schools,
        "List schools",
        "registers",
        roles=ANY_USER,
        response=s.SchoolList,
    ),
    Route(
        "POST",
        "/schools",
        create_school,
        "Register a school",
        "registers",
        body=s.SchoolIn,
        response=s.SchoolOut,
        status=201,
        errors=(400,),
    ),
    Route(
        "GET",
        "/schools/{id}",
        get_school,
        "Get a school",
        "registers",
        roles=ANY_USER,
        response=s.SchoolOut,
    ),
    Route(
        "GET",
        "/classrooms",
        list_classrooms,
        "List classrooms",
        "registers",
        roles=ANY_USER,
        query=s.ClassroomQuery,
        response=s.ClassroomList,
    ),
    Route(
        "POST",
        "/classrooms",
        create_classroom,
        "Register a classroom",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.ClassroomIn,
        response=s.ClassroomOut,
        status=201,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/pairings",
        list_pairings,
        "List pairings",
        "registers",
        roles=ANY_USER,
        response=s.PairingList,
    ),
    Route(
        "POST",
        "/pairings",
        create_pairing,
        "Pair a main classroom with 1–4 receiving ones",
        "registers",
        body=s.PairingIn,
        response=s.PairingOut,
        status=201,
        errors=(404,),
    ),
    Route(
        "GET",
        "/pairings/{id}",
        get_pairing,
        "Get a pairing",
        "registers",
        roles=ANY_USER,
        response=s.PairingOut,
    ),
    Route(
        "GET",
        "/lessons",
        list_lessons,
        "List lessons",
        "lessons",
        roles=ANY_USER,
        query=s.LessonQuery,
        response=s.LessonPage,
    ),
    Route(
        "POST",
        "/lessons",
        create_lesson,
        "Schedule a lesson",
        "lessons",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.LessonIn,
        response=s.LessonOut,
        status=201,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/lessons/{id}",
        get_lesson,
        "Get a lesson",
        "lessons",
        roles=ANY_USER,
        response=s.LessonOut,
    ),
    Route(
        "POST",
        "/lessons/{id}/open",
        open_lesson,
        "Open a lesson",
        "lessons",
        roles=_STAFF,
        response=s.LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/start",
        start_lesson,
        "Start a lesson",
        "lessons",
        roles=_STAFF,
        response=s.LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/end",
        end_lesson,
        "End a lesson",
        "lessons",
        roles=_STAFF,
        body=s.TransitionIn,
        body_required=False,
        response=s.LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/cancel",
        cancel_lesson,
        "Cancel a lesson",
        "lessons",
        roles=_STAFF,
        body=s.TransitionIn,
        body_required=False,
        response=s.LessonOut,
        errors=(409,),
    ),
    Route(
        "POST",
        "/lessons/{id}/join-tokens",
        create_join_token,
        "Mint a join token",
        "lessons",
        roles=(*_STAFF, UserRole.REVIEWER, UserRole.DEVICE),
        body=s.JoinTokenIn,
        response=s.JoinTokenOut,
        status=201,
        errors=(409,),
    ),
    Route(
        "GET",
        "/lessons/{id}/live",
        get_live,
        "Live state of a lesson",
        "lessons",
        roles=ANY_USER,
        response=LiveLessonState,
    ),
    # ------------------------------------------------ resource library (recorder/library_api.py)
    Route(
        "GET",
        "/library",
        lib.search_library,
        "Search the library",
        "library",
        public=True,
        optional_auth=True,
        query=s.LibraryQuery,
        response=s.LibraryPage,
    ),
    Route(
        "GET",
        "/library/{id}",
        lib.get_recording,
        "Get a library entry",
        "library",
        public=True,
        optional_auth=True,
        response=s.RecordingDetail,
    ),
    Route(
        "POST",
        "/library/{id}/publish",
        lib.publish_recording,
        "Publish a library entry",
        "library",
        response=s.RecordingOut,
    ),
    Route(
        "POST",
        "/library/{id}/unpublish",
        lib.unpublish_recording,
        "Unpublish a library entry",
        "library",
        response=s.RecordingOut,
    ),
    Route(
        "DELETE",
        "/library/{id}",
        lib.delete_recording,
        "Delete a recording and every stored object",
        "library",
        response=s.RecordingDeleted,
    ),
    Route(
        "GET",
        "/library/{id}/comments",
        lib.list_comments,
        "List timed comments",
        "library",
        roles=ANY_USER,
        response=s.CommentList,
    ),
    Route(
        "POST",
        "/library/{id}/comments",
        lib.add_comment,
        "Comment at a moment of the lesson",
        "library",
        roles=(UserRole.REVIEWER, UserRole.TEACHER),
        body=s.CommentIn,
        response=s.CommentOut,
        status=201,
    ),
    Route(
        "GET",
        "/library/{id}/rubric",
        lib.get_rubric,
        "The rubric (评课量表) of an entry",
        "library",
        roles=ANY_USER,
        response=s.RubricOut,
    ),
    Route(
        "PUT",
        "/library/{id}/ratings/mine",
        lib.rate_recording,
        "Rate an entry on its rubric",
        "library",
        roles=(UserRole.REVIEWER,),
        body=s.RatingIn,
        response=s.RatingOut,
    ),
    Route(
        "GET",
        "/library/{id}/export",
        lib.export_reviews,
        "Export comments and ratings",
        "library",
        roles=ANY_USER,
        query=s.ExportQuery,
        media="text/csv",
    ),
    Route(
        "GET",
        "/library/{id}/files/{file_id}",
        lib.play_file,
        "Play or download a recording file",
        "library",
        public=True,
        optional_auth=True,
        query=s.FileQuery,
        media="application/octet-stream",
        errors=(206, 302, 416),
    ),
)


# ------------------------------------------------------------ machinery


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|required) field `(?P<name>[^`]+)`")


def _field_of(message: str) -> str | None:
    """The field a msgspec error names: "Expected `int` ... - at `$.a[1]`" -> "a[1]"."""
    path = ""
    if match := _AT.search(message):
        path, message = match["path"], message[: match.start()]
    if named := _NAMED.search(message):
        path = f"{path}.{named['name']}"
    return path.lstrip(".") or None


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"the body exceeds {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"the body exceeds {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _decode_body(request: web.Request, route: Route) -> Any:
    assert route.body is not None
    data = await _read_body(request)
    if not data.strip():
        if route.body_required:
            raise ApiError(400, ErrorCode.INVALID_BODY, "a JSON body is required")
        return route.body()
    try:
        return msgspec.json.decode(data, type=route.body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, ErrorCode.INVALID_BODY, str(exc), field=_field_of(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, ErrorCode.INVALID_BODY, f"not valid JSON: {exc}") from None


def _decode_query(request: web.Request, route: Route) -> Any:
    assert route.query is not None
    try:
        return msgspec.convert(dict(request.query), route.query, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(400, ErrorCode.INVALID_BODY, str(exc), field=_field_of(str(exc))) from None


def _endpoint(route: Route) -> Any:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        user = None
        if not route.public:
            # Authentication and role come before the body is even read: an anonymous
            # caller learns nothing from validation errors.
            user = await current_user(request)
            require(user, *route.roles)
        elif route.optional_auth:
            user = await optional_user(request)
        body = await _decode_body(request, route) if route.body is not None else None
        query = _decode_query(request, route) if route.query is not None else None
        result = await route.handler(Call(request, user, body, query))
        if isinstance(result, web.StreamResponse):
            return result
        return web.Response(
            body=msgspec.json.encode(result), status=route.status, content_type="application/json"
        )

    endpoint.__name__ = route.operation_id
    return endpoint


def _error_response(status: int, code: ErrorCode, message: str, field: str | None = None):
    return web.Response(
        body=msgspec.json.encode(ApiError(status, code, message, field=field).body()),
        status=status,
        content_type="application/json",
    )


_DOMAIN_STATUS: list[tuple[type[DomainError], int, ErrorCode]] = [
    (lessons.IllegalTransition, 409, ErrorCode.ILLEGAL_TRANSITION),
    (NotFound, 404, ErrorCode.NOT_FOUND),
    (Conflict, 409, ErrorCode.CONFLICT),
    (InvalidInput, 400, ErrorCode.INVALID_BODY),
]
_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.TOO_LARGE,
}


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure under /api/ leaves as an ErrorBody; other paths are left alone."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc.status, exc.code, exc.message, exc.field)
    except DomainError as exc:
        for kind, status, code in _DOMAIN_STATUS:
            if isinstance(exc, kind):
                return _error_response(status, code, exc.message, exc.field)
        raise
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, ErrorCode.INVALID_BODY)
        if exc.status >= 500:
            code = ErrorCode.INTERNAL
        return _error_response(exc.status, code, exc.reason)
    except Exception:
        logger.exception("API request %s %s failed", request.method, request.path)
        return _error_response(500, ErrorCode.INTERNAL, "internal error; it was logged")


def openapi(version: str = "1.0.0") -> dict[str, Any]:
    return build_document(ROUTES, title="Tongbu API", version=version)


def setup_api(app: web.Application) -> None:
    """Register every route of ROUTES under /api/v1, with the error middleware."""
    app.middlewares.append(api_errors)
    lib.setup_library(app)
    app[OPENAPI] = msgspec.json.encode(openapi())
    for route in ROUTES:
        app.router.add_route(route.method, API_PREFIX + route.path, _endpoint(route))
