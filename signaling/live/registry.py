"""The live lessons of this server process, by lesson id.

A lesson's media lives in one process (docs/ARCHITECTURE.md, decision 4); with more nodes, placement
decides which. Here: create on first join, forget when the lesson ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from classroom.lessons import LessonRoster
from signaling import protocol
from signaling.errors import ErrorCode
from signaling.live.lesson import LiveLesson, Participant, now_utc
from signaling.live.state import LiveLessonState

logger = logging.getLogger(__name__)


class LiveLessonRegistry:
    def __init__(self) -> None:
        self.lessons: dict[int, LiveLesson] = {}
        self._lock = asyncio.Lock()
        # Called with each LiveLesson when it is created (the recorder attaches here).
        self.on_lesson_created: list[Callable[[LiveLesson], None]] = []
        # Awaited after a lesson ended and its rooms were closed (the recorder finalises).
        self.on_lesson_ended: list[Callable[[LiveLesson, str], Awaitable[None]]] = []
        # Add what other parts know about a live lesson (the broadcast) to its snapshot.
        self.snapshot_hooks: list[Callable[[LiveLessonState], None]] = []
        # Lessons a person started by hand before their bell and before any room joined.
        self._started_by_hand: set[int] = set()

    async def attach(self, roster: LessonRoster, session: Participant) -> LiveLesson:
        """Add a session to its lesson; the same classroom joining again replaces the old."""
        async with self._lock:
            lesson = self.lessons.get(roster.lesson_id)
            if lesson is None:
                lesson = LiveLesson(roster)
                self.lessons[roster.lesson_id] = lesson
                for hook in self.on_lesson_created:
                    hook(lesson)
                by_hand = roster.lesson_id in self._started_by_hand
                self._started_by_hand.discard(roster.lesson_id)
                lesson.start_class_at_bell(started_by_hand=by_hand)
            if session.role == "main":
                lesson.state = "live"
        if session.classroom_id is None:
            lesson.watchers.add(session)
            return lesson
        previous = lesson.rooms.get(session.classroom_id)
        presence = lesson.presence[session.classroom_id]
        if previous is not None and previous is not session:
            await previous.send_error(
                ErrorCode.REPLACED,
                "this classroom joined again on another connection",
                fatal=True,
            )
            await previous.close(reason="replaced")
        if presence.joins:
            presence.reconnects += 1
        presence.joins += 1
        presence.connected_since = now_utc()
        lesson.rooms[session.classroom_id] = session
        lesson.emit("join", session.classroom_id, role=session.role,
                    reconnect=presence.reconnects > 0)
        return lesson

    async def detach(self, lesson: LiveLesson, session: Participant) -> None:
        if session.classroom_id is None:
            lesson.watchers.discard(session)
        elif lesson.rooms.get(session.classroom_id) is session:
            del lesson.rooms[session.classroom_id]
            lesson.drop_publications_of(session.classroom_id)
            lesson.emit("leave", session.classroom_id, reason=session.end_reason)
            if lesson.stage == session.classroom_id:
                pass  # the stage stays: when the room comes back, everyone sees it again
        if self.lessons.get(lesson.lesson_id) is lesson:
            try:
                await lesson.reconcile()
            except Exception:
                logger.exception("reconcile after %s left failed", session.id)

    def snapshot(self, lesson_id: int) -> LiveLessonState | None:
        lesson = self.lessons.get(lesson_id)
        if lesson is None:
            return None
        state = lesson.snapshot()
        for hook in self.snapshot_hooks:
            hook(state)
        return state

    def start_class(self, lesson_id: int) -> None:
        """A person started the class (开始上课) before its bell: record from now on, or
        from the moment its media go live here if no room has joined yet."""
        lesson = self.lessons.get(lesson_id)
        if lesson is not None:
            lesson.start_class("by_hand")
        else:
            self._started_by_hand.add(lesson_id)

    def waiting_for_bell(self, lesson_id: int) -> bool:
        """Live here, with rooms in their lead-in, and its class not yet begun."""
        lesson = self.lessons.get(lesson_id)
        return lesson is not None and lesson.class_started_at is None

    async def revoke(self, username: str, still_valid: Callable[[int | None], bool]) -> int:
        """Close the live sessions joined with tokens minted for `username` whose classroom
        (None for a watcher) no longer passes `still_valid`; how many were closed."""
        closing = [
            session
            for lesson in self.lessons.values()
            for session in lesson.sessions()
            if session.claims is not None
            and session.claims.subject == username
            and not still_valid(session.classroom_id)
        ]
        for session in closing:
            await session.send_error(
                ErrorCode.TOKEN_REVOKED,
                f"the account {username!r} may no longer be in this lesson",
                fatal=True,
            )
            await session.close(reason="revoked")
        return len(closing)

    async def end_lesson(self, lesson_id: int, reason: str) -> None:
        """Tell every room the lesson is over and close their connections."""
        self._started_by_hand.discard(lesson_id)
        lesson = self.lessons.pop(lesson_id, None)
        if lesson is None:
            return
        lesson.state = "ended"
        lesson.cancel_bell()
        for session in lesson.sessions():
            await session.send(protocol.LessonEnded(reason=reason))
        await asyncio.gather(
            *(s.close(reason="lesson_ended") for s in lesson.sessions()), return_exceptions=True
        )
        lesson.emit("ended", reason=reason)
        for hook in self.on_lesson_ended:
            try:
                await hook(lesson, reason)
            except Exception:
                logger.exception("lesson-ended hook failed for lesson %s", lesson_id)
