"""Who is calling the REST API, and whether their role allows it.

Bearer API tokens only (no cookies), so the API is not exposed to cross-site request
forgery and a classroom box authenticates the same way as a script. Roles:

- admin: everything (the 教育局 operator);
- school_admin: their own school's classrooms, scheduling, and lesson control;
- teacher: lesson control and join tokens for their school's classrooms;
- reviewer: reads, and watch tokens;
- device: join tokens for its school's classrooms (a classroom box).
"""

from __future__ import annotations

from aiohttp import web

from classroom.models import User, UserRole
from classroom.users import resolve_token
from signaling.api_schemas import ApiError
from signaling.appkeys import DB
from signaling.errors import ErrorCode

MAX_TOKEN_LENGTH = 200


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    token = token.strip()
    return token if len(token) <= MAX_TOKEN_LENGTH else None


async def current_user(request: web.Request) -> User:
    """The user behind the request's bearer token, or 401."""
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "send Authorization: Bearer <api token>")
    async with request.app[DB]() as db:
        user = await resolve_token(db, token)
    if user is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "unknown, revoked or expired token")
    return user


async def optional_user(request: web.Request) -> User | None:
    """For routes anonymous callers may use too: None without an Authorization header.

    A header that is sent but wrong is still a 401, never a silent downgrade to anonymous,
    so a client with an expired token learns it instead of seeing less than it should.
    """
    if "Authorization" not in request.headers:
        return None
    return await current_user(request)


def require(user: User, *roles: UserRole) -> None:
    """403 unless the user is an admin or has one of `roles`."""
    if user.role == UserRole.ADMIN or user.role in roles:
        return
    raise ApiError(403, ErrorCode.FORBIDDEN, f"the {user.role} role may not do this")


def require_school(user: User, school_id: int) -> None:
    """403 unless the user is an admin or belongs to `school_id`: schools manage their own."""
    if user.role == UserRole.ADMIN or user.school_id == school_id:
        return
    raise ApiError(403, ErrorCode.FORBIDDEN, f"school {school_id} is not yours to manage")
