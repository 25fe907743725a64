"""The audit trail: who did what security-relevant thing, when, and from where.

docs/ARCHITECTURE.md, decision 6, asks for every security-relevant action (logins, tokens, lesson
state changes, and later every access to a recording) to be written down. Events are
written in their own commit, so a failed request still leaves its trace.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.models import AuditEvent, User

ANONYMOUS = "anonymous"  # the actor of what a caller who is not signed in did


async def record(
    db: AsyncSession,
    actor: User | str | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    remote: str | None = None,
) -> AuditEvent:
    """Write one event; `actor` is a user, or a name when there is no user (a failed login)."""
    if isinstance(actor, User):
        actor_id, actor_name = actor.id, actor.username
    else:
        actor_id, actor_name = None, actor or ""
    event = AuditEvent(
        actor_id=actor_id,
        actor_name=actor_name[:100],
        action=action,
        target=target[:200],
        detail=detail or {},
        remote=remote,
    )
    db.add(event)
    await db.commit()
    return event


async def list_events(
    db: AsyncSession, *, action: str | None = None, limit: int = 100
) -> list[AuditEvent]:
    """Newest first."""
    query = sa.select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list((await db.scalars(query.limit(limit))).all())
