"""The server application: database, join tokens, REST API, signaling and pages in one app.

Everything a request handler needs is set on the app before it starts (typed AppKeys in
signaling/appkeys.py); only the schema migration waits for startup, because it is async.
"""

from __future__ import annotations

import logging

from aiohttp import web

from classroom.config import Settings
from classroom.db import create_engine, migrate, sessionmaker_for
from signaling.api import setup_api
from signaling.appkeys import DB, SETTINGS, TOKENS
from signaling.live.tokens import JoinTokens

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application; the database is migrated when it starts."""
    app = web.Application()
    app[SETTINGS] = settings
    engine = create_engine(settings.resolved_database_url)
    app[DB] = sessionmaker_for(engine)
    app[TOKENS] = JoinTokens(settings.resolved_secret_key())

    async def database(app: web.Application):  # type: ignore[no-untyped-def]
        await migrate(engine)
        logger.info("database ready: %s", engine.url.render_as_string(hide_password=True))
        yield
        await engine.dispose()

    app.cleanup_ctx.append(database)
    setup_api(app)

    from signaling.live.ws import setup_signaling

    setup_signaling(app)

    from signaling.services.quality_sampler import setup_statistics

    setup_statistics(app)  # attendance, link samples and lesson summaries, as they happen

    from signaling.services.scheduler import setup_scheduler

    setup_scheduler(app)  # opens and ends lessons on time (settings.scheduler turns it off)

    from recorder.broadcast.live import setup_broadcast
    from recorder.capture.setup import setup_recorder
    from recorder.finalise.jobs import setup_finalisation

    if settings.record_lessons:  # off only to measure recording's cost (bench/recording.py)
        setup_recorder(app)
        setup_finalisation(app)
    setup_broadcast(app)

    from recorder.library.api import STORAGE
    from web.pages import setup_pages

    setup_pages(app, media_origin=app[STORAGE].media_origin)
    return app
