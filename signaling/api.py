"""The REST API (/api/v1): registers, scheduling, lesson control and join tokens.

ROUTES is the single table of endpoints: setup_api() registers it with aiohttp and
signaling/rest/openapi.py describes it, so the document cannot miss or invent an endpoint.
Each handler receives a Call with the authenticated user and the validated body and
query, and returns a response struct; errors of every kind leave as one ErrorBody shape.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import audit, lessons, schools, sessions, users
from classroom.models import (
    Classroom,
    Conflict,
    DomainError,
    InvalidInput,
    Lesson,
    LessonRoom,
    LessonState,
    NotFound,
    Pairing,
    School,
    User,
    UserRole,
    utcnow,
)
from classroom.users import AuthenticationFailed, authenticate, issue_token
from recorder.library import api as lib
from signaling import api_schemas as s
from signaling.api_schemas import ApiError
from signaling.appkeys import DB, LIVE, TOKENS
from signaling.errors import ErrorCode
from signaling.live.state import LiveLessonState
from signaling.live.tokens import JoinRole
from signaling.rest import schedule as schedule_api
from signaling.rest import statistics as statistics_api
from signaling.rest import timetable as timetable_api
from signaling.rest.auth import (
    Credential,
    can_read_lesson,
    can_run_lesson,
    can_schedule,
    check_csrf,
    check_origin,
    current_credential,
    forbidden,
    is_admin,
    lesson_main_school_id,
    optional_credential,
    require,
    require_bound_device,
    require_school,
)
from signaling.rest.openapi import ANY_USER, API_PREFIX, Route, build_document

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
    credential: Credential | None = None

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
        classroom_id=user.classroom_id,
        disabled=user.disabled,
        locked_until=user.locked_until if users.is_locked(user) else None,
    )


def _school_out(school: School) -> s.SchoolOut:
    return s.SchoolOut(
        id=school.id,
        name=school.name,
        kind=school.kind,  # type: ignore[arg-type]
        region=school.region,
        timezone=school.timezone,
        active=school.active,
    )


def _classroom_out(classroom: Classroom) -> s.ClassroomOut:
    return s.ClassroomOut(
        id=classroom.id,
        school_id=classroom.school_id,
        school_name=classroom.school.name,
        name=classroom.name,
        active=classroom.active,
    )


def _pairing_out(pairing: Pairing) -> s.PairingOut:
    return s.PairingOut(
        id=pairing.id,
        name=pairing.name,
        main_classroom_id=pairing.main_classroom_id,
        receiving_classroom_ids=[m.classroom_id for m in pairing.members],
        active=pairing.active,
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
        teacher_user_id=lesson.teacher_user_id,
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


async def _authenticate(call: Call, db: AsyncSession, body: s.LoginRequest, how: str) -> User:
    """The user, or 401 with one answer for every failure; each failure is audited."""
    try:
        user = await authenticate(db, body.username, body.password)
    except AuthenticationFailed as exc:
        actor = exc.user or body.username
        target = f"user:{body.username}"
        detail = {"reason": exc.reason, "via": how}
        await audit.record(db, actor, "auth.login_failed", target, detail, call.remote)
        if exc.reason == "locked_now":
            await audit.record(db, actor, "auth.locked", target, detail, call.remote)
        if exc.reason == "locked":
            # Said plainly, so a teacher knows to wait or ask for an unlock rather than
            # retype a right password; a guesser learns only what their own five failures
            # already did to a name that exists.
            raise ApiError(401, ErrorCode.ACCOUNT_LOCKED, "the account is locked") from None
        raise ApiError(401, ErrorCode.UNAUTHORIZED, exc.message) from None
    await audit.record(db, user, "auth.login", f"user:{user.username}", {"via": how}, call.remote)
    return user


async def login(call: Call) -> s.LoginResponse:
    """Exchange a username and password for an API token valid 12 hours.

    Five wrong passwords lock the account for 15 minutes; the answer is the same 401
    `unauthorized` whatever went wrong, so it does not reveal which usernames exist, except
    `account_locked` while the lock lasts.
    """
    body: s.LoginRequest = call.body
    async with call.db() as db:
        user = await _authenticate(call, db, body, "token")
        expires_at = utcnow() + LOGIN_TOKEN_TTL
        token = await issue_token(db, user, name="login", expires_at=expires_at)
    return s.LoginResponse(token=token, expires_at=expires_at, user=_user_out(user))


def _is_https(request: web.Request) -> bool:
    # A proxy terminating TLS says so; believing a forged header only makes the cookie
    # stricter (Secure) for the forger's own browser.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _json(result: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(result), status=status, content_type="application/json"
    )


async def create_session(call: Call) -> web.Response:
    """Sign a browser in: sets the `tongbu_session` cookie (HttpOnly, SameSite=Lax, Secure
    over https) and answers the session's CSRF token, which the page sends back as
    X-CSRF-Token on every POST, PUT, PATCH and DELETE. Lockout and the single 401 answer
    are those of /auth/login. A cross-origin Origin or Referer is refused (`csrf_failed`)."""
    body: s.LoginRequest = call.body
    request = call.request
    async with call.db() as db:
        user = await _authenticate(call, db, body, "session")
        if old := request.cookies.get(sessions.COOKIE_NAME):
            await sessions.end_session(db, old)  # a fresh id on every login: no fixation
        new = await sessions.create_session(
            db, user, remote=call.remote, user_agent=request.headers.get("User-Agent", "")
        )
    response = _json(
        s.SessionOut(
            user=_user_out(user),
            csrf_token=new.session.csrf_token,
            expires_at=sessions.expires_at(new.session),
        )
    )
    response.set_cookie(
        sessions.COOKIE_NAME,
        new.cookie,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=_is_https(request),
    )
    return response


async def get_session(call: Call) -> s.SessionOut:
    """Who is signed in, and the session's CSRF token (for a page that was reloaded)."""
    credential = call.credential
    session = credential.session if credential else None
    return s.SessionOut(
        user=_user_out(call.me),
        csrf_token=session.csrf_token if session else None,
        expires_at=sessions.expires_at(session) if session else None,
    )


async def delete_session(call: Call) -> web.Response:
    """Sign out: ends the cookie's session and clears the cookie. Needs X-CSRF-Token when
    the session is live, like every state change signed by the cookie."""
    ended = False
    if call.credential is not None and call.credential.kind == "session":
        async with call.db() as db:
            cookie = call.request.cookies.get(sessions.COOKIE_NAME, "")
            ended = await sessions.end_session(db, cookie)
            await audit.record(
                db, call.me, "auth.logout", f"user:{call.me.username}", {}, call.remote
            )
    response = _json(s.LoggedOut(ended=ended))
    response.del_cookie(sessions.COOKIE_NAME, path="/")
    return response


async def me(call: Call) -> s.UserOut:
    """The signed-in user (session cookie or bearer token)."""
    return _user_out(call.me)


async def change_password(call: Call) -> s.PasswordChanged:
    """Change one's own password: at least 10 characters, not the username. Every other
    session and API token of the user ends; the one this request used stays. Wrong
    current passwords count towards the lockout."""
    body: s.PasswordChangeIn = call.body
    credential = call.credential
    assert credential is not None
    async with call.db() as db:
        try:
            user = await users.change_password(db, call.me, body.current, body.new)
        except AuthenticationFailed as exc:
            target = f"user:{call.me.username}"
            detail = {"reason": exc.reason}
            await audit.record(db, call.me, "auth.password_failed", target, detail, call.remote)
            if exc.reason == "locked_now":
                await audit.record(db, call.me, "auth.locked", target, detail, call.remote)
            raise ApiError(
                400, ErrorCode.INVALID_BODY, "the current password is wrong", field="current"
            ) from None
        keep_session = credential.session.id if credential.session else None
        ended = await sessions.end_sessions_of(db, user.id, keep=keep_session)
        revoked = await users.revoke_tokens_of(db, user.id, keep=credential.token)
        await audit.record(
            db,
            user,
            "auth.password_changed",
            f"user:{user.username}",
            {"sessions_ended": ended, "tokens_revoked": revoked},
            call.remote,
        )
    return s.PasswordChanged(sessions_ended=ended, tokens_revoked=revoked)


# ------------------------------------------------------------------ users

# What a school admin may hand out in their school: never another admin role.
_SCHOOL_ADMIN_GRANTS = frozenset({UserRole.TEACHER.value, UserRole.DEVICE.value})
_SCHOOL_ROLES = frozenset(
    {UserRole.SCHOOL_ADMIN.value, UserRole.TEACHER.value, UserRole.DEVICE.value}
)


def _may_manage(actor: User, target: User) -> bool:
    if is_admin(actor):
        return True
    return (
        actor.role == UserRole.SCHOOL_ADMIN
        and actor.school_id is not None
        and target.school_id == actor.school_id
        and target.role in _SCHOOL_ADMIN_GRANTS
    )


def _check_grant(actor: User, role: str, school_id: int | None) -> None:
    """403 if the actor may not give this role in this school; 400 if they do not fit."""
    if not is_admin(actor):
        if role not in _SCHOOL_ADMIN_GRANTS:
            raise forbidden("a school admin creates teacher and device accounts only")
        require_school(actor, school_id or 0)
    if role in _SCHOOL_ROLES and school_id is None:
        raise ApiError(
            400, ErrorCode.INVALID_BODY, f"a {role} belongs to a school", field="school_id"
        )


async def _school_of_account(
    db: AsyncSession, school_id: int | None, classroom_id: int | None
) -> int | None:
    """The school an account is to belong to: a device's is its classroom's."""
    if classroom_id is None:
        return school_id
    classroom = await schools.get_classroom(db, classroom_id)
    if classroom is None:
        raise NotFound(f"no classroom {classroom_id}", field="classroom_id")
    return classroom.school_id


async def _managed_user(call: Call, db: AsyncSession) -> User:
    target = await db.get(User, call.id())
    if target is None:
        raise _not_found("user", call.id())
    if not _may_manage(call.me, target):
        raise forbidden(f"user {target.id} is not yours to manage")
    return target


async def list_users(call: Call) -> s.UserList:
    """Admins see every account; a school admin the accounts of their school."""
    q: s.UserQuery = call.query
    school_id = q.school_id
    if not is_admin(call.me):
        if school_id is not None:
            require_school(call.me, school_id)
        school_id = call.me.school_id or 0  # a school admin of no school: nobody, not all
    async with call.db() as db:
        rows = await users.list_users(db, school_id=school_id)
    return s.UserList(items=[_user_out(u) for u in rows if q.role is None or u.role == q.role])


async def create_user(call: Call) -> s.UserOut:
    """Create an account. A school admin creates teachers and devices of their school; a
    device names its classroom (`classroom_id`) and belongs to that classroom's school."""
    body: s.UserIn = call.body
    if body.role == UserRole.DEVICE and body.classroom_id is None:
        raise ApiError(
            400,
            ErrorCode.INVALID_BODY,
            "a device account is its classroom's own: name the classroom",
            field="classroom_id",
        )
    async with call.db() as db:
        _check_grant(
            call.me, body.role, await _school_of_account(db, body.school_id, body.classroom_id)
        )
        user = await users.create_user(
            db,
            username=body.username,
            password=body.password,
            role=body.role,
            display_name=body.display_name,
            school_id=body.school_id,
            classroom_id=body.classroom_id,
        )
        await audit.record(
            db,
            call.me,
            "user.created",
            f"user:{user.username}",
            {
                "id": user.id,
                "role": user.role,
                "school_id": user.school_id,
                "classroom_id": user.classroom_id,
            },
            call.remote,
        )
    return _user_out(user)


async def get_user(call: Call) -> s.UserOut:
    async with call.db() as db:
        return _user_out(await _managed_user(call, db))


async def update_user(call: Call) -> s.UserOut:
    """Rename, change role or school, disable or enable, or set a new password. Disabling
    or a new password ends the user's sessions and revokes their API tokens."""
    body: s.UserPatch = call.body
    async with call.db() as db:
        target = await _managed_user(call, db)
        if target.id == call.me.id and (
            body.disabled
            or body.role not in (None, target.role)
            or body.school_id is not None
            or body.classroom_id is not None
        ):
            raise ApiError(
                400, ErrorCode.INVALID_BODY, "you may not disable or move your own account"
            )
        if body.password is not None:
            users.check_password_rules(target.username, body.password)
        role = body.role or target.role
        school_id = body.school_id if body.school_id is not None else target.school_id
        school_id = await _school_of_account(db, school_id, body.classroom_id)
        if body.role is not None or body.school_id is not None or body.classroom_id is not None:
            _check_grant(call.me, role, school_id)
        changes = {
            f: v
            for f, v in msgspec.structs.asdict(body).items()
            if v is not None and f != "password"
        }
        await users.update_user(
            db,
            target,
            display_name=body.display_name,
            role=body.role,
            school_id=body.school_id,
            disabled=body.disabled,
            classroom_id=body.classroom_id,
        )
        if body.password is not None:
            await users.set_password(db, target, body.password)
            changes["password"] = "set"
        if body.disabled or body.password is not None:
            changes["sessions_ended"] = await sessions.end_sessions_of(db, target.id)
            changes["tokens_revoked"] = await users.revoke_tokens_of(db, target.id)
        if closed := await _close_revoked_live_sessions(call, target):
            changes["live_sessions_closed"] = closed
        await audit.record(
            db, call.me, "user.updated", f"user:{target.username}", changes, call.remote
        )
        return _user_out(target)


async def _close_revoked_live_sessions(call: Call, target: User) -> int:
    """A disabled account, or a device moved to another classroom, leaves the lessons it
    is in now, not only at its next join (users.join_token_revoked)."""
    live = call.request.app.get(LIVE)
    if live is None:
        return 0
    return await live.revoke(
        target.username, lambda classroom: users.token_revoked_for(target, classroom) is None
    )


async def unlock_user(call: Call) -> s.UserOut:
    """Lift a lockout before its 15 minutes are over."""
    async with call.db() as db:
        target = await users.unlock(db, await _managed_user(call, db))
        await audit.record(db, call.me, "user.unlocked", f"user:{target.username}", {}, call.remote)
        return _user_out(target)


# ------------------------------------------------------------- registers
# A school admin and a teacher see their own school; a pairing or a lesson is theirs to
# read when one of its classrooms is in their school, to change when its main one is.


async def _school_of_classrooms(db: AsyncSession, ids: list[int]) -> dict[int, int]:
    rows = await db.execute(
        sa.select(Classroom.id, Classroom.school_id).where(Classroom.id.in_(ids))
    )
    return {cid: sid for cid, sid in rows.all()}


def _pairing_classrooms(pairing: Pairing) -> list[int]:
    return [pairing.main_classroom_id, *(m.classroom_id for m in pairing.members)]


async def list_schools(call: Call) -> s.SchoolList:
    """Admins see every school; school staff their own."""
    async with call.db() as db:
        rows = await schools.list_schools(db)
    if not is_admin(call.me):
        rows = [x for x in rows if x.id == call.me.school_id]
    return s.SchoolList(items=[_school_out(x) for x in rows])


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
    require_school(call.me, school.id)
    return _school_out(school)


async def list_classrooms(call: Call) -> s.ClassroomList:
    """Admins see every classroom; school staff and devices their school's."""
    query: s.ClassroomQuery = call.query
    school_id = query.school_id
    if not is_admin(call.me):
        if school_id is not None:
            require_school(call.me, school_id)
        school_id = call.me.school_id or 0
    async with call.db() as db:
        rows = await schools.list_classrooms(db, school_id=school_id)
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
    """Admins see every pairing; school staff those with a classroom of their school."""
    async with call.db() as db:
        rows = await schools.list_pairings(db)
        if not is_admin(call.me):
            ids = sorted({c for p in rows for c in _pairing_classrooms(p)})
            school_of = await _school_of_classrooms(db, ids)
            rows = [
                p
                for p in rows
                if call.me.school_id in {school_of.get(c) for c in _pairing_classrooms(p)}
            ]
    return s.PairingList(items=[_pairing_out(p) for p in rows])


ACROSS_SCHOOLS = "pairings across schools are made by the district admin (教育局)"


async def _require_rooms_of_school(
    call: Call, db: AsyncSession, ids: list[int], why: str = ACROSS_SCHOOLS
) -> None:
    """403 unless every classroom of `ids` that exists is in the school admin's school.

    A pairing books its classrooms' time, lesson after lesson: pairing a classroom of
    another school takes that school's rooms without asking it. Pairings across schools
    (专递课堂 between a city and a rural school, the usual case) are the district admin's
    (教育局) to make and change; a school admin pairs the classrooms of their school only.
    Unknown ids are left to the register's own 404, after this check.
    """
    if is_admin(call.me):
        return
    school_of = await _school_of_classrooms(db, ids)
    foreign = sorted({c for c in ids if c in school_of and school_of[c] != call.me.school_id})
    if foreign:
        listed = ", ".join(map(str, foreign))
        raise forbidden(f"classroom {listed} is not your school's; {why}")


async def create_pairing(call: Call) -> s.PairingOut:
    """Admins pair any classrooms; a school admin pairs classrooms of their school only
    (see _require_rooms_of_school)."""
    body: s.PairingIn = call.body
    async with call.db() as db:
        if not is_admin(call.me):
            main = await schools.get_classroom(db, body.main_classroom_id)
            if main is None:
                raise NotFound(f"no classroom {body.main_classroom_id}", field="main_classroom_id")
            require_school(call.me, main.school_id)
            await _require_rooms_of_school(call, db, body.receiving_classroom_ids)
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
        if not is_admin(call.me):
            school_of = await _school_of_classrooms(db, _pairing_classrooms(pairing))
            if call.me.school_id not in set(school_of.values()):
                raise forbidden(f"pairing {pairing.id} has no classroom of your school")
    return _pairing_out(pairing)


# ------------------------------------------------------- register edits
# PATCH changes only the fields sent; DELETE removes a row nothing refers to, and answers
# 409 naming what does otherwise (archive it with PATCH {"active": false} instead). Every
# change is audited with its {field: [old, new]}.


def _sent(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body carries (absent ones are UNSET)."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}


async def _audit_change(
    call: Call, db: AsyncSession, action: str, target: str, changes: dict[str, Any],
    **consequences: Any,
) -> None:
    """Audit an edit by what it changed, and what followed from it when anything did;
    an edit that changed nothing leaves no event."""
    if changes:
        detail = {"changes": changes, **{k: v for k, v in consequences.items() if v}}
        await audit.record(db, call.me, action, target, detail, call.remote)


async def update_school(call: Call) -> s.SchoolOut:
    """Rename or correct a school; a school admin their own. Archiving (`active`) is the
    district admin's: it waits until the school's classrooms are archived."""
    sent = _sent(call.body)
    school_id = call.id()
    async with call.db() as db:
        if await schools.get_school(db, school_id) is None:
            raise _not_found("school", school_id)
        require_school(call.me, school_id)
        if "active" in sent and not is_admin(call.me):
            raise forbidden("only an admin archives or restores a school")
        school, changes = await schools.update_school(db, school_id, **sent)
        await _audit_change(call, db, "school_updated", f"school:{school_id}", changes)
    return _school_out(school)


async def delete_school(call: Call) -> s.Deleted:
    """Delete a school nothing refers to; 409 names its classrooms, accounts, recordings."""
    school_id = call.id()
    async with call.db() as db:
        school = await schools.get_school(db, school_id)
        if school is None:
            raise _not_found("school", school_id)
        name = school.name
        await schools.delete_school(db, school_id)
        await audit.record(
            db, call.me, "school_deleted", f"school:{school_id}", {"name": name}, call.remote
        )
    return s.Deleted(id=school_id)


async def _own_classroom(call: Call, db: AsyncSession) -> Classroom:
    classroom = await schools.get_classroom(db, call.id())
    if classroom is None:
        raise _not_found("classroom", call.id())
    require_school(call.me, classroom.school_id)
    return classroom


async def update_classroom(call: Call) -> s.ClassroomOut:
    """Rename, archive or restore a classroom of one's school; admins may also move one
    that no lesson or pairing uses to another school."""
    sent = _sent(call.body)
    async with call.db() as db:
        classroom = await _own_classroom(call, db)
        if sent.get("school_id", classroom.school_id) != classroom.school_id:
            if not is_admin(call.me):
                raise forbidden("a school admin cannot move a classroom to another school")
        classroom, changes = await schools.update_classroom(db, classroom.id, **sent)
        await _audit_change(call, db, "classroom_updated", f"classroom:{classroom.id}", changes)
    return _classroom_out(classroom)


async def delete_classroom(call: Call) -> s.Deleted:
    """Delete a classroom no pairing, lesson or recording refers to."""
    async with call.db() as db:
        classroom = await _own_classroom(call, db)
        ident, detail = classroom.id, {"school_id": classroom.school_id, "name": classroom.name}
        await schools.delete_classroom(db, ident)
        await audit.record(
            db, call.me, "classroom_deleted", f"classroom:{ident}", detail, call.remote
        )
    return s.Deleted(id=ident)


async def _own_pairing(call: Call, db: AsyncSession) -> Pairing:
    """The pairing, if the caller may change it: an admin any; a school admin one whose
    classrooms are all of their school (one across schools is the district admin's)."""
    pairing = await schools.get_pairing(db, call.id())
    if pairing is None:
        raise _not_found("pairing", call.id())
    if not is_admin(call.me):
        school_of = await _school_of_classrooms(db, [pairing.main_classroom_id])
        if not can_schedule(call.me, school_of.get(pairing.main_classroom_id)):
            raise forbidden(f"pairing {pairing.id} is not taught from your school")
        await _require_rooms_of_school(call, db, _pairing_classrooms(pairing))
    return pairing


async def update_pairing(call: Call) -> s.PairingPatched:
    """Rename, re-room, archive or restore a pairing. New rooms go to its scheduled
    lessons to come too (not to one whose rooms were changed by hand), or the edit is
    refused whole if a new room is taken then; archiving waits until none is to come."""
    sent = _sent(call.body)
    async with call.db() as db:
        pairing = await _own_pairing(call, db)
        new_main = sent.get("main_classroom_id", pairing.main_classroom_id)
        if new_main != pairing.main_classroom_id and not is_admin(call.me):
            main = await schools.get_classroom(db, new_main)
            if main is None:
                raise NotFound(f"no classroom {new_main}", field="main_classroom_id")
            require_school(call.me, main.school_id)
        await _require_rooms_of_school(call, db, sent.get("receiving_classroom_ids") or [])
        pairing, changes, rerouted = await schools.update_pairing(db, pairing.id, **sent)
        await _audit_change(call, db, "pairing_updated", f"pairing:{pairing.id}", changes,
                            lessons_rerouted=rerouted)
    out = _pairing_out(pairing)
    return s.PairingPatched(**msgspec.structs.asdict(out), lessons_rerouted=rerouted)


async def delete_pairing(call: Call) -> s.Deleted:
    """Delete a pairing no lesson or lesson series was scheduled on."""
    async with call.db() as db:
        pairing = await _own_pairing(call, db)
        ident, detail = pairing.id, {"name": pairing.name}
        await schools.delete_pairing(db, ident)
        await audit.record(db, call.me, "pairing_deleted", f"pairing:{ident}", detail, call.remote)
    return s.Deleted(id=ident)


# --------------------------------------------------------------- lessons


async def list_lessons(call: Call) -> s.LessonPage:
    """Lessons by planned start; `from`/`to` select those overlapping the window. School
    staff see the lessons their school takes part in, a device those of its classroom;
    reviewers, who may watch and read any lesson, see every lesson (so their home page
    can list what is live)."""
    q: s.LessonQuery = call.query
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
        return s.LessonPage(
            items=[_lesson_out(x) for x in rows], total=total, limit=q.limit, offset=q.offset
        )


async def _lessons_with_room(
    db: AsyncSession, q: s.LessonQuery, *wheres: sa.ColumnElement[bool]
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
            f"user {user_id} is not an active teacher of the main classroom's school",
            field="teacher_user_id",
        )


async def create_lesson(call: Call) -> s.LessonOut:
    """Schedule a lesson on a pairing; 409 `conflict` names the lesson a room is booked by.
    A school admin schedules on pairings whose main classroom is in their school."""
    body: s.LessonIn = call.body
    async with call.db() as db:
        pairing = await schools.get_pairing(db, body.pairing_id)
        if pairing is None:
            raise NotFound(f"no pairing {body.pairing_id}", field="pairing_id")
        main_school = (await _school_of_classrooms(db, [pairing.main_classroom_id]))[
            pairing.main_classroom_id
        ]
        if not can_schedule(call.me, main_school):
            raise forbidden(f"pairing {pairing.id} is not taught from your school")
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
        raise _not_found("lesson", call.id())
    if not can_read_lesson(call.me, lesson):
        yours = "your classroom" if call.me.role == UserRole.DEVICE else "your school"
        raise forbidden(f"lesson {lesson.id} has no classroom of {yours}")
    return lesson


async def get_lesson(call: Call) -> s.LessonOut:
    async with call.db() as db:
        return _lesson_out(await _readable_lesson(call, db))


async def update_lesson(call: Call) -> s.LessonOut:
    """Change a scheduled or open lesson: title, subject, grade, kind, broadcast, times,
    teacher, receiving rooms. New times or rooms are checked for double booking (409
    `conflict` naming the clash); a live, ended or cancelled lesson answers 409 `conflict`.
    Rooms cannot change while rooms of the lesson are connected here."""
    sent = _sent(call.body)
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
            agreed |= set(_pairing_classrooms(pairing)) if pairing is not None else set()
            added = [c for c in sent["receiving_classroom_ids"] if c not in agreed]
            await _require_rooms_of_school(
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
                f"lesson {lesson_id} has rooms connected; its rooms cannot change now",
                field="receiving_classroom_ids",
            )
        lesson, changes = await lessons.update_lesson(db, lesson_id, **sent)
        await _audit_change(call, db, "lesson_updated", f"lesson:{lesson_id}", changes)
        return _lesson_out(lesson)


async def _transition(call: Call, to: LessonState, reason: str | None = None) -> s.LessonOut:
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
    get them only for their own school's classrooms, a device only for its own classroom,
    and a teacher the main room's only when they may run the lesson. Watch tokens name
    none: reviewers get them for any lesson, school staff for lessons their school takes
    part in.
    """
    body: s.JoinTokenIn = call.body
    user = call.me
    lesson_id = call.id()
    role = JoinRole(body.role)
    async with call.db() as db:
        lesson = await lessons.get_lesson(db, lesson_id)
        if lesson is None:
            raise _not_found("lesson", lesson_id)
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
    return s.JoinTokenOut(
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


async def openapi_document(call: Call) -> web.Response:
    """This API's OpenAPI 3.1 description."""
    return web.Response(body=call.request.app[OPENAPI], content_type="application/json")


# ------------------------------------------------------------- the table

_STAFF = (UserRole.SCHOOL_ADMIN, UserRole.TEACHER)
_SCHOOL = (*_STAFF, UserRole.DEVICE)  # every account that belongs to one school

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
    Route(
        "POST",
        "/auth/session",
        create_session,
        "Sign a browser in (session cookie)",
        "auth",
        public=True,
        body=s.LoginRequest,
        response=s.SessionOut,
        errors=(401, 403),
    ),
    Route(
        "GET",
        "/auth/session",
        get_session,
        "Current session and its CSRF token",
        "auth",
        roles=ANY_USER,
        response=s.SessionOut,
    ),
    Route(
        "DELETE",
        "/auth/session",
        delete_session,
        "Sign out",
        "auth",
        public=True,
        optional_auth=True,
        response=s.LoggedOut,
    ),
    Route("GET", "/me", me, "Current user", "auth", roles=ANY_USER, response=s.UserOut),
    Route(
        "POST",
        "/me/password",
        change_password,
        "Change one's password",
        "auth",
        roles=ANY_USER,
        body=s.PasswordChangeIn,
        response=s.PasswordChanged,
    ),
    Route(
        "GET",
        "/users",
        list_users,
        "List accounts",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        query=s.UserQuery,
        response=s.UserList,
    ),
    Route(
        "POST",
        "/users",
        create_user,
        "Create an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.UserIn,
        response=s.UserOut,
        status=201,
        errors=(404, 409),
    ),
    Route(
        "GET",
        "/users/{id}",
        get_user,
        "Get an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=s.UserOut,
    ),
    Route(
        "PATCH",
        "/users/{id}",
        update_user,
        "Change, disable or enable an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.UserPatch,
        response=s.UserOut,
    ),
    Route(
        "POST",
        "/users/{id}/unlock",
        unlock_user,
        "Unlock an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=s.UserOut,
    ),
    Route(
        "GET",
        "/schools",
        list_schools,
        "List schools",
        "registers",
        roles=_STAFF,
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
        roles=_STAFF,
        response=s.SchoolOut,
    ),
    Route(
        "PATCH",
        "/schools/{id}",
        update_school,
        "Change, archive or restore a school",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.SchoolPatch,
        response=s.SchoolOut,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/schools/{id}",
        delete_school,
        "Delete a school nothing refers to",
        "registers",
        response=s.Deleted,
        errors=(409,),
    ),
    Route(
        "GET",
        "/classrooms",
        list_classrooms,
        "List classrooms",
        "registers",
        roles=_SCHOOL,
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
        "PATCH",
        "/classrooms/{id}",
        update_classroom,
        "Change, archive or restore a classroom",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.ClassroomPatch,
        response=s.ClassroomOut,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/classrooms/{id}",
        delete_classroom,
        "Delete a classroom nothing refers to",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=s.Deleted,
        errors=(409,),
    ),
    Route(
        "GET",
        "/pairings",
        list_pairings,
        "List pairings",
        "registers",
        roles=_STAFF,
        response=s.PairingList,
    ),
    Route(
        "POST",
        "/pairings",
        create_pairing,
        "Pair a main classroom with 1–4 receiving ones",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
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
        roles=_STAFF,
        response=s.PairingOut,
    ),
    Route(
        "PATCH",
        "/pairings/{id}",
        update_pairing,
        "Change, archive or restore a pairing",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.PairingPatch,
        response=s.PairingPatched,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/pairings/{id}",
        delete_pairing,
        "Delete a pairing no lesson was scheduled on",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=s.Deleted,
        errors=(409,),
    ),
    Route(
        "GET",
        "/lessons",
        list_lessons,
        "List lessons",
        "lessons",
        roles=(*_SCHOOL, UserRole.REVIEWER),
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
        roles=(*_SCHOOL, UserRole.REVIEWER),
        response=s.LessonOut,
    ),
    Route(
        "PATCH",
        "/lessons/{id}",
        update_lesson,
        "Change a scheduled or open lesson",
        "lessons",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=s.LessonPatch,
        response=s.LessonOut,
        errors=(409,),
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
        roles=(UserRole.SCHOOL_ADMIN,),
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
        roles=(*_STAFF, UserRole.REVIEWER),
        response=LiveLessonState,
    ),
    *schedule_api.ROUTES,  # the scheduler's next steps; a classroom box's own lessons
    # ------------------------------------------------ resource library (recorder/library/api.py)
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
    # Before /library/{id}, which would otherwise take "facets" for an id.
    Route(
        "GET",
        "/library/facets",
        lib.library_facets,
        "Filter choices of the library",
        "library",
        public=True,
        optional_auth=True,
        response=s.LibraryFacets,
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
    *timetable_api.ROUTES,  # terms, lesson series, CSV import, calendar feeds
    *statistics_api.ROUTES,  # 常态化 statistics and CSV, one lesson's rooms, live alerts
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
        credential = None
        try:
            if not route.public:
                # Authentication, CSRF and role come before the body is even read: an
                # anonymous or forged caller learns nothing from validation errors.
                credential = await current_credential(request)
                check_csrf(request, credential)
                require(credential.user, *route.roles)
                if route.roles != ANY_USER:  # who one is stays readable, nothing else
                    require_bound_device(credential.user)
            elif route.optional_auth:
                credential = await optional_credential(request)
                check_csrf(request, credential)
            elif request.method not in ("GET", "HEAD"):
                check_origin(request)  # no login CSRF: a foreign page cannot sign us in
            user = credential.user if credential else None
            body = await _decode_body(request, route) if route.body is not None else None
            query = _decode_query(request, route) if route.query is not None else None
            result = await route.handler(Call(request, user, body, query, credential))
        except ApiError as exc:
            if exc.status == 403:
                await _audit_refusal(request, route, credential, exc)
            raise
        if isinstance(result, web.StreamResponse):
            return result
        return _json(result, route.status)

    endpoint.__name__ = route.operation_id
    return endpoint


async def _audit_refusal(
    request: web.Request, route: Route, credential: Credential | None, exc: ApiError
) -> None:
    """Every 403 of the API leaves a row: `auth.csrf_failed` or `permission.denied`."""
    action = "auth.csrf_failed" if exc.code == ErrorCode.CSRF_FAILED else "permission.denied"
    detail = {
        "route": f"{route.method} {API_PREFIX}{route.path}",
        "via": credential.kind if credential else None,
        "reason": exc.message,
    }
    try:
        async with request.app[DB]() as db:
            actor = credential.user if credential else lib.ANONYMOUS
            await audit.record(db, actor, action, request.path, detail, request.remote)
    except Exception:  # the refusal stands even if its trace cannot be written
        logger.exception("could not audit a refusal of %s %s", request.method, request.path)


def _error_response(exc: ApiError) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(exc.body()), status=exc.status, content_type="application/json"
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
        return _error_response(exc)
    except DomainError as exc:
        for kind, status, code in _DOMAIN_STATUS:
            if isinstance(exc, kind):
                return _error_response(
                    ApiError(status, code, exc.message, field=exc.field, reason=exc.reason,
                             params=exc.params)
                )
        raise
    except web.HTTPException as exc:
        code = _HTTP_CODES.get(exc.status, ErrorCode.INVALID_BODY)
        if exc.status >= 500:
            code = ErrorCode.INTERNAL
        return _error_response(ApiError(exc.status, code, exc.reason))
    except Exception:
        logger.exception("API request %s %s failed", request.method, request.path)
        return _error_response(ApiError(500, ErrorCode.INTERNAL, "internal error; it was logged"))


def openapi(version: str = "1.0.0") -> dict[str, Any]:
    return build_document(ROUTES, title="Tongbu API", version=version)


@functools.cache
def openapi_json() -> bytes:
    """Built once per process: ROUTES never change, and building costs ~50 ms."""
    return msgspec.json.encode(openapi())


def setup_api(app: web.Application) -> None:
    """Register every route of ROUTES under /api/v1, with the error middleware."""
    app.middlewares.append(api_errors)
    lib.setup_library(app)
    app[OPENAPI] = openapi_json()
    for route in ROUTES:
        app.router.add_route(route.method, API_PREFIX + route.path, _endpoint(route))
