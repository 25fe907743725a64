"""Accounts (`/users`): an admin manages everyone; a school admin hands out teacher and
device accounts in their own school, never another admin role. Disabling an account
revokes its join tokens and closes its live sessions at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import audit, schools, sessions, users
from classroom.models import (
    NotFound,
    User,
    UserRole,
)
from signaling.appkeys import LIVE
from signaling.errors import ErrorCode
from signaling.rest.auth import (
    forbidden,
    is_admin,
    require_school,
)
from signaling.rest.kit import Call, not_found
from signaling.rest.openapi import Route
from signaling.rest.schemas import ApiError, Id, Password, Request, Response, UserRoleName, from_row

# -------------------------------------------------------------- schemas


class UserOut(Response):
    id: int
    username: str
    display_name: str
    role: UserRoleName
    school_id: int | None
    # A device account's classroom; null for other roles (and unbound older devices).
    classroom_id: int | None = None
    disabled: bool = False
    # Set while the account is locked after repeated wrong passwords.
    locked_until: datetime | None = None


Username = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[\w.@-]+$")]


class UserIn(Request):
    username: Username
    password: Password
    role: UserRoleName
    display_name: Annotated[str, Meta(max_length=200)] = ""
    # Required for school_admin and teacher accounts; a device's is its classroom's.
    school_id: Id | None = None
    # Required for device accounts, and only for them: the classroom the box is.
    classroom_id: Id | None = None


class UserPatch(Request):
    """Only the fields sent change. `password` sets a new one and ends the user's sessions
    and tokens, as `disabled: true` does."""

    display_name: Annotated[str, Meta(max_length=200)] | None = None
    role: UserRoleName | None = None
    school_id: Id | None = None
    # Binds a device account to its classroom (and moves it to the classroom's school).
    classroom_id: Id | None = None
    disabled: bool | None = None
    password: Password | None = None


class UserList(Response):
    items: list[UserOut]


class UserQuery(Request):
    school_id: Id | None = None
    role: UserRoleName | None = None


# ------------------------------------------------------------- handlers


def user_out(user: User) -> UserOut:
    return from_row(
        UserOut, user, locked_until=user.locked_until if users.is_locked(user) else None
    )


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
        raise NotFound.because("classroom_not_found", field="classroom_id", id=classroom_id)
    return classroom.school_id


async def _managed_user(call: Call, db: AsyncSession) -> User:
    target = await db.get(User, call.id())
    if target is None:
        raise not_found("user", call.id())
    if not _may_manage(call.me, target):
        raise forbidden(f"user {target.id} is not yours to manage")
    return target


async def list_users(call: Call) -> UserList:
    """Admins see every account; a school admin the accounts of their school."""
    q: UserQuery = call.query
    school_id = q.school_id
    if not is_admin(call.me):
        if school_id is not None:
            require_school(call.me, school_id)
        school_id = call.me.school_id or 0  # a school admin of no school: nobody, not all
    async with call.db() as db:
        rows = await users.list_users(db, school_id=school_id)
    return UserList(items=[user_out(u) for u in rows if q.role is None or u.role == q.role])


async def create_user(call: Call) -> UserOut:
    """Create an account. A school admin creates teachers and devices of their school; a
    device names its classroom (`classroom_id`) and belongs to that classroom's school."""
    body: UserIn = call.body
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
    return user_out(user)


async def get_user(call: Call) -> UserOut:
    async with call.db() as db:
        return user_out(await _managed_user(call, db))


async def update_user(call: Call) -> UserOut:
    """Rename, change role or school, disable or enable, or set a new password. Disabling
    or a new password ends the user's sessions and revokes their API tokens."""
    body: UserPatch = call.body
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
        return user_out(target)


async def _close_revoked_live_sessions(call: Call, target: User) -> int:
    """A disabled account, or a device moved to another classroom, leaves the lessons it
    is in now, not only at its next join (users.join_token_revoked)."""
    live = call.request.app.get(LIVE)
    if live is None:
        return 0
    return await live.revoke(
        target.username, lambda classroom: users.token_revoked_for(target, classroom) is None
    )


async def unlock_user(call: Call) -> UserOut:
    """Lift a lockout before its 15 minutes are over."""
    async with call.db() as db:
        target = await users.unlock(db, await _managed_user(call, db))
        await audit.record(db, call.me, "user.unlocked", f"user:{target.username}", {}, call.remote)
        return user_out(target)


# --------------------------------------------------------------- routes

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/users",
        list_users,
        "List accounts",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        query=UserQuery,
        response=UserList,
    ),
    Route(
        "POST",
        "/users",
        create_user,
        "Create an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=UserIn,
        response=UserOut,
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
        response=UserOut,
    ),
    Route(
        "PATCH",
        "/users/{id}",
        update_user,
        "Change, disable or enable an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=UserPatch,
        response=UserOut,
    ),
    Route(
        "POST",
        "/users/{id}/unlock",
        unlock_user,
        "Unlock an account",
        "users",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=UserOut,
    ),
)
