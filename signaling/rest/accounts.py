"""Signing in: API tokens (`/auth/login`), browser sessions with their CSRF token
(`/auth/session`), who am I (`/me`) and changing one's own password.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from aiohttp import web
from msgspec import Meta
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import audit, sessions, users
from classroom.models import (
    User,
    utcnow,
)
from classroom.users import AuthenticationFailed, authenticate, issue_token
from signaling.errors import ErrorCode
from signaling.rest.kit import Call, json_response
from signaling.rest.openapi import ANY_USER, Route
from signaling.rest.schemas import ApiError, Password, Request, Response, Short
from signaling.rest.users import UserOut, user_out

# -------------------------------------------------------------- schemas


class LoginRequest(Request):
    username: Short
    password: Annotated[str, Meta(min_length=1, max_length=1000)]


class LoginResponse(Response):
    token: str
    expires_at: datetime
    user: UserOut


class SessionOut(Response):
    """A browser session: the page keeps `csrf_token` (in memory) for X-CSRF-Token."""

    user: UserOut
    # None when the caller signed in with a bearer token (which needs no CSRF token).
    csrf_token: str | None
    # When the session ends if idle (12 h after the last request, at most 7 days).
    expires_at: datetime | None


class LoggedOut(Response):
    ended: bool  # false: there was no live session to end (the cookie is cleared anyway)




class PasswordChangeIn(Request):
    current: Password
    new: Password  # at least 10 characters, not the username


class PasswordChanged(Response):
    sessions_ended: int  # the caller's other browser sessions
    tokens_revoked: int  # API tokens but the one this request used

LOGIN_TOKEN_TTL = timedelta(hours=12)


# ------------------------------------------------------------- handlers


async def _authenticate(call: Call, db: AsyncSession, body: LoginRequest, how: str) -> User:
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


async def login(call: Call) -> LoginResponse:
    """Exchange a username and password for an API token valid 12 hours.

    Five wrong passwords lock the account for 15 minutes; the answer is the same 401
    `unauthorized` whatever went wrong, so it does not reveal which usernames exist, except
    `account_locked` while the lock lasts.
    """
    body: LoginRequest = call.body
    async with call.db() as db:
        user = await _authenticate(call, db, body, "token")
        expires_at = utcnow() + LOGIN_TOKEN_TTL
        token = await issue_token(db, user, name="login", expires_at=expires_at)
    return LoginResponse(token=token, expires_at=expires_at, user=user_out(user))


def _is_https(request: web.Request) -> bool:
    # A proxy terminating TLS says so; believing a forged header only makes the cookie
    # stricter (Secure) for the forger's own browser.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def create_session(call: Call) -> web.Response:
    """Sign a browser in: sets the `tongbu_session` cookie (HttpOnly, SameSite=Lax, Secure
    over https) and answers the session's CSRF token, which the page sends back as
    X-CSRF-Token on every POST, PUT, PATCH and DELETE. Lockout and the single 401 answer
    are those of /auth/login. A cross-origin Origin or Referer is refused (`csrf_failed`)."""
    body: LoginRequest = call.body
    request = call.request
    async with call.db() as db:
        user = await _authenticate(call, db, body, "session")
        if old := request.cookies.get(sessions.COOKIE_NAME):
            await sessions.end_session(db, old)  # a fresh id on every login: no fixation
        new = await sessions.create_session(
            db, user, remote=call.remote, user_agent=request.headers.get("User-Agent", "")
        )
    response = json_response(
        SessionOut(
            user=user_out(user),
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


async def get_session(call: Call) -> SessionOut:
    """Who is signed in, and the session's CSRF token (for a page that was reloaded)."""
    credential = call.credential
    session = credential.session if credential else None
    return SessionOut(
        user=user_out(call.me),
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
    response = json_response(LoggedOut(ended=ended))
    response.del_cookie(sessions.COOKIE_NAME, path="/")
    return response


async def me(call: Call) -> UserOut:
    """The signed-in user (session cookie or bearer token)."""
    return user_out(call.me)


async def change_password(call: Call) -> PasswordChanged:
    """Change one's own password: at least 10 characters, not the username. Every other
    session and API token of the user ends; the one this request used stays. Wrong
    current passwords count towards the lockout."""
    body: PasswordChangeIn = call.body
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
    return PasswordChanged(sessions_ended=ended, tokens_revoked=revoked)


# --------------------------------------------------------------- routes

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/auth/login",
        login,
        "Log in",
        "auth",
        public=True,
        body=LoginRequest,
        response=LoginResponse,
        errors=(401,),
    ),
    Route(
        "POST",
        "/auth/session",
        create_session,
        "Sign a browser in (session cookie)",
        "auth",
        public=True,
        body=LoginRequest,
        response=SessionOut,
        errors=(401, 403),
    ),
    Route(
        "GET",
        "/auth/session",
        get_session,
        "Current session and its CSRF token",
        "auth",
        roles=ANY_USER,
        response=SessionOut,
    ),
    Route(
        "DELETE",
        "/auth/session",
        delete_session,
        "Sign out",
        "auth",
        public=True,
        optional_auth=True,
        response=LoggedOut,
    ),
    Route("GET", "/me", me, "Current user", "auth", roles=ANY_USER, response=UserOut),
    Route(
        "POST",
        "/me/password",
        change_password,
        "Change one's password",
        "auth",
        roles=ANY_USER,
        body=PasswordChangeIn,
        response=PasswordChanged,
    ),
)
