"""The composition root: the one place that builds a server's services and wires them.

Each service is built once here and set on the app under a typed key (signaling/appkeys.py):
the database, the join tokens, the library's storage, the live registry, the scheduler, the
recorder and its finalisation queue, the broadcast. Everything below (docs/ARCHITECTURE.md
gives the layers) receives what it needs through those keys and never imports this module.
Only the schema migration waits for startup, because it is async.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from classroom.config import Settings
from classroom.db import create_engine, migrate, sessionmaker_for
from classroom.users import dummy_hash
from recorder.broadcast.setup import setup_broadcast
from recorder.capture.setup import setup_recorder
from recorder.finalise.jobs import setup_finalisation
from recorder.library.api import ROUTES as LIBRARY_ROUTES
from recorder.storage.configured import storage_from_settings
from signaling.appkeys import DB, SETTINGS, STORAGE, TOKENS
from signaling.live.tokens import JoinTokens
from signaling.live.ws import setup_signaling
from signaling.rest import accounts, kit, lessons, registers, schedule, statistics, timetable, users
from signaling.rest.openapi import Route, build_document
from signaling.services.quality_sampler import setup_statistics
from signaling.services.scheduler import setup_scheduler
from web.pages import setup_pages

logger = logging.getLogger(__name__)

# Every REST endpoint, in the order the router tries them (a literal path such as
# /library/facets before /library/{id}); the same table feeds the OpenAPI document.
ROUTES: tuple[Route, ...] = (
    *kit.ROUTES,  # the OpenAPI document itself
    *accounts.ROUTES,  # sign-in, sessions, me, password
    *users.ROUTES,
    *registers.ROUTES,  # schools, classrooms, pairings
    *lessons.ROUTES,  # lessons, transitions, join tokens, live state
    *schedule.ROUTES,  # the scheduler's next steps; a classroom box's own lessons
    *LIBRARY_ROUTES,  # the resource library: search, replay, comments, ratings
    *timetable.ROUTES,  # terms, lesson series, CSV import, calendar feeds
    *statistics.ROUTES,  # 常态化 statistics and CSV, one lesson's rooms, live alerts
)


def openapi(version: str = "1.0.0") -> dict[str, Any]:
    return build_document(ROUTES, title="Tongbu API", version=version)


@functools.cache
def openapi_json() -> bytes:
    """Built once per process: ROUTES never change, and building costs ~50 ms."""
    return msgspec.json.encode(openapi())


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application; the database is migrated when it starts."""
    app = web.Application()
    app[SETTINGS] = settings
    engine = create_engine(settings.resolved_database_url)
    app[DB] = sessionmaker_for(engine)
    app[TOKENS] = JoinTokens(settings.resolved_secret_key())
    app[STORAGE] = storage_from_settings(settings)

    async def database(app: web.Application) -> AsyncIterator[None]:
        await asyncio.gather(migrate(engine), asyncio.to_thread(dummy_hash))
        logger.info("database ready: %s", engine.url.render_as_string(hide_password=True))
        yield
        await engine.dispose()

    async def close_storage(app: web.Application) -> None:
        await app[STORAGE].close()

    app.cleanup_ctx.append(database)
    app.on_cleanup.append(close_storage)
    kit.setup_api(app, ROUTES, openapi_json())
    setup_signaling(app)
    setup_statistics(app)  # attendance, link samples and lesson summaries, as they happen
    setup_scheduler(app)  # opens and ends lessons on time (settings.scheduler turns it off)
    if settings.record_lessons:  # off only to measure recording's cost (bench/recording.py)
        setup_recorder(app)
        setup_finalisation(app)
    setup_broadcast(app)
    setup_pages(app, media_origin=app[STORAGE].media_origin)
    return app
