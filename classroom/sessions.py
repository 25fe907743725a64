"""Browser sessions: a random cookie value, kept server-side only as its SHA-256.

A session ends after IDLE_TIMEOUT without a request, after MAX_AGE whatever the activity,
at logout, when its user changes password (other sessions) or is disabled. Each session
carries its own CSRF synchronizer token, which the page echoes in X-CSRF-Token; the
token is useless without the cookie, and the cookie useless cross-site without the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.models import User, WebSession, utcnow

COOKIE_NAME = "tongbu_session"
IDLE_TIMEOUT = timedelta(hours=12)
MAX_AGE = timedelta(days=7)
# Writing last_seen_at on every request would turn every read into a write.
LAST_SEEN_GRANULARITY = timedelta(minutes=1)
MAX_COOKIE_LENGTH = 200


@dataclass(frozen=True)
class NewSession:
    cookie: str  # the plain value, given to the browser once and never stored
    session: WebSession


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def create_session(
    db: AsyncSession,
    user: User,
    *,
    remote: str | None = None,
    user_agent: str = "",
    now: datetime | None = None,
) -> NewSession:
    now = now or utcnow()
    cookie = secrets.token_urlsafe(32)
    session = WebSession(
        session_sha256=_digest(cookie),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + MAX_AGE,
        remote=remote,
        user_agent=user_agent[:300],
    )
    db.add(session)
    await db.commit()
    await db.refresh(session)
    return NewSession(cookie=cookie, session=session)


def expires_at(session: WebSession) -> datetime:
    """When the session ends if no further request comes."""
    return min(session.last_seen_at + IDLE_TIMEOUT, session.expires_at)


async def resolve_session(
    db: AsyncSession, cookie: str, *, now: datetime | None = None
) -> WebSession | None:
    """The live session behind a cookie value, or None (unknown, idle, expired, disabled).

    A dead session's row is deleted on sight.
    """
    if not cookie or len(cookie) > MAX_COOKIE_LENGTH:
        return None
    now = now or utcnow()
    session = await db.scalar(
        sa.select(WebSession).where(WebSession.session_sha256 == _digest(cookie))
    )
    if session is None:
        return None
    if session.user.disabled or expires_at(session) <= now:
        await db.delete(session)
        await db.commit()
        return None
    if now - session.last_seen_at > LAST_SEEN_GRANULARITY:
        session.last_seen_at = now
        await db.commit()
    return session


def csrf_matches(session: WebSession, sent: str | None) -> bool:
    """Constant-time comparison, so the token cannot be guessed a character at a time."""
    if not sent:
        return False
    return hmac.compare_digest(session.csrf_token.encode(), sent.encode())


async def end_session(db: AsyncSession, cookie: str) -> bool:
    result = await db.execute(
        sa.delete(WebSession).where(WebSession.session_sha256 == _digest(cookie))
    )
    await db.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result


async def end_sessions_of(db: AsyncSession, user_id: int, *, keep: int | None = None) -> int:
    """End every session of a user (but `keep`, a session id); commits. Returns how many."""
    query = sa.delete(WebSession).where(WebSession.user_id == user_id)
    if keep is not None:
        query = query.where(WebSession.id != keep)
    result = await db.execute(query)
    await db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result


async def purge_expired(db: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete sessions past their idle timeout or their maximum age."""
    now = now or utcnow()
    result = await db.execute(
        sa.delete(WebSession).where(
            sa.or_(WebSession.expires_at <= now, WebSession.last_seen_at <= now - IDLE_TIMEOUT)
        )
    )
    await db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result
