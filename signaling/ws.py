"""WebSocket signaling endpoint (being written; see issue 3)."""

from __future__ import annotations

from aiohttp import web

from signaling.appkeys import LIVE
from signaling.live_state import LiveLessonState


class _NoLiveLessons:
    def snapshot(self, lesson_id: int) -> LiveLessonState | None:
        return None

    async def end_lesson(self, lesson_id: int, reason: str) -> None:
        return None


def setup_signaling(app: web.Application) -> None:
    app[LIVE] = _NoLiveLessons()
