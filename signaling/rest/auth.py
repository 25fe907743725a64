"""Who is calling the REST API, whether the call is forged, and what their role may touch.

Two credentials:
- `Authorization: Bearer <api token>` (scripts, classroom boxes, `POST /auth/login`). A
  browser never attaches it on its own, so bearer calls need no CSRF protection.
- the `tongbu_session` cookie (the pages, `POST /auth/session`). A browser attaches it to
  every request, including ones a foreign site makes it send, so every cookie-signed
  request with an unsafe method must carry `X-CSRF-Token` equal to the session's token,
  and, when the browser says where it comes from (Origin, else Referer), come from this
  very origin. A bearer header, when present, wins over the cookie.

Roles and their reach (the permission table in docs/api.md is the reference):
- admin: everything (the 教育局 operator);
- school_admin: their own school: its classrooms, users (teachers, devices), pairings and
  lessons whose main classroom is theirs; reads what any of their classrooms takes part in;
- teacher: reads their school's lessons; runs (open/start/end, main join token) those
  taught from their school, and only their own when the lesson names its teacher account;
- reviewer: the library, and every lesson read-only: lists, single lessons, their live
  state, watch tokens and private broadcasts (教研 observes and reviews district-wide);
- device: a classroom box, bound to one classroom (users.classroom_id): reads and joins
  that classroom's lessons only. A device bound to none (made before revision 0008) is
  refused everything but who it is, until an admin binds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web

from classroom.models import Lesson, RoomRole, User, UserRole, WebSession
from classroom.sessions import COOKIE_NAME, csrf_matches, resolve_session
from classroom.users import resolve_token
from signaling.appkeys import DB
from signaling.errors import ErrorCode
from signaling.rest.schemas import ApiError

MAX_TOKEN_LENGTH = 200
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Credential:
    """How the caller proved who they are."""

    user: User
    kind: Literal["bearer", "session"]
    token: str | None = None  # the bearer token's plain text
    session: WebSession | None = None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    return token if len(token) <= MAX_TOKEN_LENGTH else None


async def _bearer(request: web.Request) -> Credential:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "send Authorization: Bearer <api token>")
    async with request.app[DB]() as db:
        user = await resolve_token(db, token)
    if user is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "unknown, revoked or expired token")
    return Credential(user=user, kind="bearer", token=token)


async def _cookie(request: web.Request) -> Credential | None:
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        return None
    async with request.app[DB]() as db:
        session = await resolve_session(db, cookie)
    if session is None:
        return None
    return Credential(user=session.user, kind="session", session=session)


async def current_credential(request: web.Request) -> Credential:
    """The caller's credential, or 401. An Authorization header wins over the cookie."""
    if "Authorization" in request.headers:
        return await _bearer(request)
    credential = await _cookie(request)
    if credential is None:
        raise ApiError(
            401,
            ErrorCode.UNAUTHORIZED,
            "sign in (POST /api/v1/auth/session) or send Authorization: Bearer <api token>",
        )
    return credential


async def optional_credential(request: web.Request) -> Credential | None:
    """For routes anonymous callers may use too.

    A bearer header that is sent but wrong is still a 401, never a silent downgrade to
    anonymous, so a script with an expired token learns it. A stale cookie is anonymous:
    a browser keeps sending it after the session ended, and public pages must still work.
    """
    if "Authorization" in request.headers:
        return await _bearer(request)
    return await _cookie(request)


async def current_user(request: web.Request) -> User:
    """The user behind the request's credential, or 401."""
    return (await current_credential(request)).user


async def optional_user(request: web.Request) -> User | None:
    credential = await optional_credential(request)
    return credential.user if credential else None


# ------------------------------------------------------------------- CSRF


def _host_of(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()


def check_origin(request: web.Request) -> None:
    """403 `csrf_failed` when the browser says the request comes from another origin.

    Origin is compared with the Host the request was sent to (so it holds behind a
    proxy that keeps Host); without Origin, Referer is; without either (old browsers,
    non-browser clients) the CSRF token alone decides.
    """
    origin = request.headers.get("Origin")
    source = origin if origin is not None else request.headers.get("Referer")
    if source is None:
        return
    if _host_of(source) != request.host.lower():
        raise ApiError(403, ErrorCode.CSRF_FAILED, "cross-origin request refused")


def check_csrf(request: web.Request, credential: Credential | None) -> None:
    """Refuse a forged state change: see the module's docstring."""
    if credential is None or credential.kind != "session" or request.method in SAFE_METHODS:
        return
    check_origin(request)
    assert credential.session is not None
    if not csrf_matches(credential.session, request.headers.get(CSRF_HEADER)):
        raise ApiError(
            403, ErrorCode.CSRF_FAILED, f"missing or wrong {CSRF_HEADER} header for this session"
        )


# ------------------------------------------------------------------ roles


def forbidden(message: str) -> ApiError:
    return ApiError(403, ErrorCode.FORBIDDEN, message)


def is_admin(user: User) -> bool:
    return user.role == UserRole.ADMIN


def require(user: User, *roles: UserRole) -> None:
    """403 unless the user is an admin or has one of `roles`."""
    if is_admin(user) or user.role in roles:
        return
    raise forbidden(f"the {user.role} role may not do this")


def unbound_device(user: User) -> bool:
    """A device account bound to no classroom: refused until an admin binds it."""
    return user.role == UserRole.DEVICE and user.classroom_id is None


def require_bound_device(user: User) -> None:
    """403, saying what to do, for a device account bound to no classroom."""
    if unbound_device(user):
        raise forbidden(
            f"device account {user.username!r} is bound to no classroom; an admin must bind "
            f"it to its classroom (PATCH /api/v1/users/{user.id} "
            '{"classroom_id": …} or `tongbu admin bind-device`)'
        )


def require_school(user: User, school_id: int) -> None:
    """403 unless the user is an admin or belongs to `school_id`: schools manage their own."""
    if is_admin(user) or (user.school_id is not None and user.school_id == school_id):
        return
    raise forbidden(f"school {school_id} is not yours")


# --------------------------------------------------------- lesson scope


def lesson_school_ids(lesson: Lesson) -> set[int]:
    return {room.classroom.school_id for room in lesson.rooms}


def lesson_main_school_id(lesson: Lesson) -> int | None:
    main = next((r for r in lesson.rooms if r.role == RoomRole.MAIN), None)
    return main.classroom.school_id if main else None


def can_read_lesson(user: User, lesson: Lesson) -> bool:
    """The lesson read rule: admins and reviewers every lesson; school staff those their
    school takes part in; a device those its classroom takes part in."""
    if is_admin(user) or user.role == UserRole.REVIEWER:
        return True
    if user.role in (UserRole.SCHOOL_ADMIN, UserRole.TEACHER):
        return user.school_id is not None and user.school_id in lesson_school_ids(lesson)
    if user.role == UserRole.DEVICE:
        return user.classroom_id is not None and any(
            room.classroom_id == user.classroom_id for room in lesson.rooms
        )
    return False


def can_schedule(user: User, main_school_id: int | None) -> bool:
    """Scheduling and cancelling: admins, and the school admin of the main classroom."""
    if is_admin(user):
        return True
    return (
        user.role == UserRole.SCHOOL_ADMIN
        and user.school_id is not None
        and user.school_id == main_school_id
    )


def can_run_lesson(user: User, lesson: Lesson) -> bool:
    """Open, start, end, and the main room's join token.

    The main classroom's school admin; its teachers, but only the lesson's own teacher
    when the lesson names a teacher account.
    """
    main_school = lesson_main_school_id(lesson)
    if can_schedule(user, main_school):
        return True
    if user.role != UserRole.TEACHER or user.school_id is None or user.school_id != main_school:
        return False
    return lesson.teacher_user_id is None or lesson.teacher_user_id == user.id
