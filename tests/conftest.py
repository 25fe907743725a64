"""Shared fixtures for every test module. Generic on purpose: add yours in other files.

Fixtures (all function-scoped):
- `database_url`: a fresh, empty database URL, parametrized over two engines:
  "sqlite" (a file under tmp_path) and "postgresql" (a throwaway database
  `tongbu_test_<random>` created on the server at $TONGBU_TEST_POSTGRES_URL, default
  postgresql+asyncpg://postgres@127.0.0.1:5432/test, dropped afterwards). Postgres params
  carry the `postgresql` mark: `pytest -m "not postgresql"` runs SQLite only. PostgreSQL
  is always present in CI, so a missing server fails rather than skips.
- `db`: an async_sessionmaker on `database_url`, migrated; use `async with db() as s:`.
- `settings`: classroom.config.Settings with a tmp data dir, `database_url` and a fixed
  secret key.
- `app_client`: an aiohttp TestClient on signaling.app.create_app(settings), started.
- `admin_headers`: {"Authorization": "Bearer ..."} for a fresh admin user of `app_client`.
- `headers_for`: async factory `await headers_for(role, school_id=None, username=None)`
  returning auth headers for a new user of that role in `app_client`'s database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom.config import Settings
from classroom.db import close_database, open_database
from classroom.models import UserRole
from classroom.users import create_user, issue_token
from signaling.app import create_app
from signaling.appkeys import DB

POSTGRES_URL = os.environ.get(
    "TONGBU_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]

HeadersFor = Callable[..., Awaitable[dict[str, str]]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: runs against a throwaway PostgreSQL database")


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tongbu.sqlite3'}"
        return
    name = f"tongbu_test_{secrets.token_hex(6)}"
    # Sync fixture with its own short loop: it runs before the test's loop exists.
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    sessionmaker = await open_database(database_url)
    try:
        yield sessionmaker
    finally:
        await close_database(sessionmaker)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=b"test-secret-key-that-is-32-bytes!",
    )


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def headers_for(app_client: TestClient) -> HeadersFor:
    async def make(
        role: UserRole | str, school_id: int | None = None, username: str | None = None
    ) -> dict[str, str]:
        async with app_client.app[DB]() as s:
            user = await create_user(
                s,
                username=username or f"{role}-{secrets.token_hex(3)}",
                password="correct horse battery",
                role=role,
                school_id=school_id,
            )
            token = await issue_token(s, user, name="test")
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
async def admin_headers(headers_for: HeadersFor) -> dict[str, str]:
    return await headers_for(UserRole.ADMIN, username="admin")
