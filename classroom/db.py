"""Opening the database: one async engine per process, migrated before first use.

The same code runs on SQLite (zero-setup default) and PostgreSQL (docs/ARCHITECTURE.md, decision 4);
only the URL differs. Migrations run in-process at startup so that an install or an
upgrade is "start the server", with no separate alembic step to forget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def create_engine(url: str) -> AsyncEngine:
    """An engine for `url`; for SQLite with WAL, foreign keys and a busy timeout.

    WAL lets the API read while a session records attendance; SQLite ignores foreign keys
    unless asked on every connection.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration built in code: there is no alembic.ini to ship or lose."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent: a migrated database is left alone)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


def sessionmaker_for(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: services return rows after committing, and an expired
    # attribute would need a lazy load, which async sessions cannot do implicitly.
    return async_sessionmaker(engine, expire_on_commit=False)


async def open_database(url: str) -> async_sessionmaker[AsyncSession]:
    """Create the engine, run migrations, and hand back the session factory."""
    engine = create_engine(url)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return sessionmaker_for(engine)


async def close_database(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Dispose of the engine behind a factory made by open_database or sessionmaker_for."""
    engine = sessionmaker.kw.get("bind")
    if isinstance(engine, AsyncEngine):
        await engine.dispose()
