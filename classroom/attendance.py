"""Attendance: each room's connections to each lesson, written as they happen.

A row of `room_sessions` is inserted when a room joins and closed (`left_at`, reason) when
it leaves, so a crash in the middle of a lesson loses nothing already known: at the next
start, `close_orphaned_sessions` closes what the crash left open at the last moment the
room was seen (its last link sample), with reason `server_restart`.

Reasons (`end_reason`), from the connection's own close reason (`cause`):
- `left`: the room said goodbye (`leave`);
- `ended`: the lesson ended while it was connected;
- `dropped`: the link went away (socket closed without goodbye, keepalive timeout, no
  answer to an offer): what a rural room's bad day looks like;
- `kicked`: the server closed it (message flood, refused request);
- `replaced`: the same classroom joined again on another connection (a box that
  reconnected before the server noticed its old link was dead);
- `server_restart`: the server stopped (gracefully, or the crash case above).

Also the interval arithmetic the lesson summary needs (union, overlap, clipping).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.models import RoomSession
from classroom.statistics_models import LinkSample

LEFT = "left"
ENDED = "ended"
DROPPED = "dropped"
KICKED = "kicked"
REPLACED = "replaced"
SERVER_RESTART = "server_restart"

# The signaling session's close reasons (signaling/live/session.py) that are not a drop.
_REASONS = {
    "left": LEFT,
    "lesson_ended": ENDED,
    "replaced": REPLACED,
    "flood": KICKED,
    "refused": KICKED,
    "kicked": KICKED,
    "server_shutdown": SERVER_RESTART,
    "server_restart": SERVER_RESTART,
}


def attendance_reason(cause: str | None) -> str:
    """The attendance vocabulary for a connection's close reason; unknown causes are drops."""
    return _REASONS.get(cause or "", DROPPED)


async def open_room_session(
    db: AsyncSession, lesson_id: int, classroom_id: int, role: str, joined_at: datetime
) -> int:
    """A room joined: insert its row now; returns the row id. Commits.

    `reconnects` counts this room's earlier rows in the lesson, so it survives restarts of
    the server. A row still open for the room (its leave never arrived) is closed first,
    at this join, as a drop.
    """
    await close_room_session(db, lesson_id, classroom_id, joined_at, "unclosed", commit=False)
    earlier = await db.scalar(
        sa.select(sa.func.count())
        .select_from(RoomSession)
        .where(RoomSession.lesson_id == lesson_id, RoomSession.classroom_id == classroom_id)
    )
    row = RoomSession(
        lesson_id=lesson_id,
        classroom_id=classroom_id,
        role=role,
        joined_at=joined_at,
        reconnects=int(earlier or 0),
    )
    db.add(row)
    await db.commit()
    return row.id


async def close_room_session(
    db: AsyncSession,
    lesson_id: int,
    classroom_id: int,
    left_at: datetime,
    cause: str | None,
    *,
    commit: bool = True,
) -> int:
    """A room left: fill `left_at` and the reason of its open row; returns rows closed."""
    result = await db.execute(
        sa.update(RoomSession)
        .where(
            RoomSession.lesson_id == lesson_id,
            RoomSession.classroom_id == classroom_id,
            RoomSession.left_at.is_(None),
        )
        .values(left_at=left_at, end_reason=attendance_reason(cause), cause=cause)
        .execution_options(synchronize_session=False)
    )
    if commit:
        await db.commit()
    return result.rowcount or 0  # type: ignore[attr-defined]  # DML: a CursorResult, typed Result


async def close_orphaned_sessions(db: AsyncSession) -> list[int]:
    """On server start: close rows a crash left open; returns the lessons they belong to.

    Each is closed at the room's last link sample of that connection (the last moment the
    server is known to have seen it), or at its join when it has none: never later than
    what was observed. Single-node: with several nodes, only the node that ran a lesson
    may do this (lesson placement is not there yet).
    """
    lesson_ids = list(
        (
            await db.scalars(
                sa.select(RoomSession.lesson_id).where(RoomSession.left_at.is_(None)).distinct()
            )
        ).all()
    )
    if not lesson_ids:
        return []
    last_seen = (
        sa.select(sa.func.max(LinkSample.at))
        .where(
            LinkSample.lesson_id == RoomSession.lesson_id,
            LinkSample.classroom_id == RoomSession.classroom_id,
            LinkSample.at >= RoomSession.joined_at,
        )
        .scalar_subquery()
    )
    await db.execute(
        sa.update(RoomSession)
        .where(RoomSession.left_at.is_(None))
        .values(
            left_at=sa.func.coalesce(last_seen, RoomSession.joined_at),
            end_reason=SERVER_RESTART,
            cause="server_restart",
        )
        .execution_options(synchronize_session=False)
    )
    await db.commit()
    return sorted(lesson_ids)


async def room_sessions_of(db: AsyncSession, lesson_id: int) -> list[RoomSession]:
    """A lesson's connections in the order they began."""
    rows = await db.scalars(
        sa.select(RoomSession)
        .where(RoomSession.lesson_id == lesson_id)
        .order_by(RoomSession.joined_at, RoomSession.id)
    )
    return list(rows.all())


# ------------------------------------------------------------------ intervals


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering the same time (two connections of one
    room overlap for a moment when a box rejoins before its old link is closed)."""
    merged: list[Interval] = []
    for interval in sorted(intervals, key=lambda i: i.start):
        if interval.end <= interval.start:
            continue
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Where both sets of intervals (each already a union) cover the time."""
    result: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i].start, b[j].start)
        end = min(a[i].end, b[j].end)
        if start < end:
            result.append(Interval(start, end))
        if a[i].end < b[j].end:
            i += 1
        else:
            j += 1
    return result


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    return [
        Interval(max(i.start, start), min(i.end, end))
        for i in intervals
        if i.end > start and i.start < end
    ]


def total_seconds(intervals: Iterable[Interval]) -> float:
    return sum(i.seconds for i in intervals)
