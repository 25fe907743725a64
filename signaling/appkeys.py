"""Typed keys for what the aiohttp application carries, so handlers share one vocabulary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from classroom.config import Settings
from signaling.live.state import LiveLessonState

if TYPE_CHECKING:
    from collections.abc import Callable

    from recorder.storage import Storage
    from signaling.live.tokens import JoinTokens


class LiveLessons(Protocol):
    """What the REST API may ask of the media side (implemented by signaling.live.ws)."""

    def snapshot(self, lesson_id: int) -> LiveLessonState | None: ...

    async def end_lesson(self, lesson_id: int, reason: str) -> None: ...

    def start_class(self, lesson_id: int) -> None: ...

    def waiting_for_bell(self, lesson_id: int) -> bool: ...

    async def revoke(self, username: str, still_valid: Callable[[int | None], bool]) -> int: ...


SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", async_sessionmaker)
TOKENS: web.AppKey[JoinTokens] = web.AppKey("tokens")
LIVE = web.AppKey("live", LiveLessons)
STORAGE: web.AppKey[Storage] = web.AppKey("library_storage")  # one per app: built in app.py
