"""Shared fixtures for every test module. Generic on purpose: add yours in other files.

Fixtures (all function-scoped):
- `database_url`: a fresh database URL, migrated to head and holding no rows,
  parametrized over two engines: "sqlite" (a file under tmp_path) and "postgresql" (a
  throwaway database `tongbu_test_<random>` created on the server at
  $TONGBU_TEST_POSTGRES_URL, default postgresql+asyncpg://postgres@127.0.0.1:5432/test,
  dropped when the test process ends). Each is a copy of a template the test process
  migrates once per engine (a file copy; CREATE DATABASE ... TEMPLATE), which saves every
  test the migrations' DDL; PostgreSQL copies are emptied and reused (_Templates). Postgres
  params carry the `postgresql` mark: `pytest -m "not
  postgresql"` runs SQLite only. PostgreSQL is always present in CI, so a missing server
  fails rather than skips.
- `empty_database_url`: the same, but empty: for tests of the migrations themselves.
- `db`: an async_sessionmaker on `database_url`, migrated; use `async with db() as s:`.
- `settings`: classroom.config.Settings with a tmp data dir, `database_url` and a fixed
  secret key; `empty_settings` the same on `empty_database_url`.
- `app_client`: an aiohttp TestClient on signaling.app.create_app(settings), started.
- `admin_headers`: {"Authorization": "Bearer ..."} for a fresh admin user of `app_client`.
- `headers_for`: async factory `await headers_for(role, school_id=None, username=None,
  classroom_id=None)` returning auth headers for a new user of that role in `app_client`'s
  database (a device names its classroom, and takes the classroom's school).
- `lesson_factory`: async factory `await lesson_factory(receiving=2, start=None,
  kind="dedicated")` that creates, through the REST API as admin, a city school with a
  main classroom, `receiving` rural schools with one classroom each, their pairing and a
  scheduled lesson (default: starting in one minute, 40 minutes long). Returns the
  lesson's JSON (GET /api/v1/lessons/{id}), whose "rooms" list main first.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import profiles as argon2_profiles
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom.config import Settings
from classroom.db import close_database, open_database
from classroom.models import UserRole
from classroom.schema import METADATA
from classroom.users import create_user, issue_token, use_password_parameters
from signaling.app import create_app
from signaling.appkeys import DB

POSTGRES_URL = os.environ.get(
    "TONGBU_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]

HeadersFor = Callable[..., Awaitable[dict[str, str]]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: runs against a throwaway PostgreSQL database")
    # The suite makes a few thousand accounts and signs in thousands of times: at the real
    # argon2 cost (~0.15 s of CPU each) that was minutes of the suite's CPU. Servers the tests
    # start as subprocesses keep the real cost (tests/test_lockout.py checks it).
    use_password_parameters(argon2_profiles.CHEAPEST)


# The files that take longest (real agents, real lesson clocks, a browser, many
# subprocesses), longest first as measured on the 2-core CI box. scripts/test hands whole
# files to its workers in collection order (--dist loadfile --no-loadscope-reorder), so
# these start first and the many quick files fill the gaps at the end: longest first keeps
# one worker from starting a two-minute file while the other has nothing left. (xdist's
# default order, most tests first, ran these single-test files last.) Only the order
# changes; a file missing from the list keeps its place after them.
LONG_FILES = (
    "test_term_e2e.py",
    "test_auto_agents.py",
    "test_pages_reach_browser.py",
    "test_recording_e2e.py",
    "test_link_quality.py",
    "test_admin_browser.py",
    "test_reviewer_browser.py",
    "test_recorder_capture.py",
    "test_broadcast_browser.py",
    "test_console_browser.py",
    "test_permissions.py",
    "test_recording_bell.py",
    "test_link_drop.py",
    "test_live_lesson.py",
    "test_timetable_browser.py",
    "test_demo.py",
    "test_broadcast.py",
    "test_timetable_cli.py",
    "test_device_binding.py",
    "test_viewer_browser.py",
    "test_replay_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def _postgres_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def _migrated(url: str) -> None:
    await close_database(await open_database(url))


class _Templates:
    """Per test process (xdist worker): one migrated database per engine, made when a
    test first asks. SQLite: a file copied for every test. PostgreSQL: copies of the
    template kept in a pool, each put back as the template left it when its test is done
    (_Seed.restore: 20 ms, where a new copy and a DROP took 0.3 s) and handed to the next
    test. Sync methods with their own short loops: they run before a test's loop
    exists."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sqlite: Path | None = None
        self.postgres: str | None = None
        self.seed: _Seed | None = None
        self.idle: list[str] = []  # PostgreSQL databases migrated and empty
        self.made: list[str] = []

    def sqlite_copy(self, to: Path) -> None:
        if self.sqlite is None:
            path = self.directory / "template.sqlite3"
            asyncio.run(_migrated(f"sqlite+aiosqlite:///{path}"))
            self.sqlite = path  # closed: WAL checkpointed into the one file
        shutil.copyfile(self.sqlite, to)

    def postgres_database(self) -> str:
        if self.idle:
            return self.idle.pop()
        if self.postgres is None:
            template = f"tongbu_template_{secrets.token_hex(6)}"
            asyncio.run(_admin(f'CREATE DATABASE "{template}"'))
            asyncio.run(_migrated(_postgres_url(template)))
            self.seed = asyncio.run(_Seed.read(template))
            self.postgres = template
            self.made.append(template)
        name = f"tongbu_test_{secrets.token_hex(6)}"
        # FILE_COPY: for a small database, a copy of its files beats writing it to WAL.
        # No test needs a commit to survive a crash of the server: don't wait for the disk.
        asyncio.run(_admin(
            f'CREATE DATABASE "{name}" TEMPLATE "{self.postgres}" STRATEGY FILE_COPY',
            f'ALTER DATABASE "{name}" SET synchronous_commit = off',
        ))
        self.made.append(name)
        return name

    def postgres_done(self, name: str) -> None:
        """Back as the template left it, for the next test; if that fails, dropped."""
        assert self.seed is not None
        try:
            asyncio.run(self.seed.restore(name))
        except (asyncpg.PostgresError, OSError):
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self.made.remove(name)
        else:
            self.idle.append(name)

    def drop(self) -> None:
        for name in reversed(self.made):
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class _Seed:
    """What the migrations left in the template: the rows they seed (a default rubric) and
    where each sequence stands."""

    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]]
    sequences: dict[str, int | None]

    @classmethod
    async def read(cls, name: str) -> _Seed:
        conn = await asyncpg.connect(_asyncpg_dsn(_postgres_url(name)))
        try:
            rows = {}
            for table in METADATA.sorted_tables:
                records = await conn.fetch(f'SELECT * FROM "{table.name}"')
                if records:
                    rows[table.name] = (list(records[0].keys()), [tuple(r) for r in records])
            sequences = {
                r["sequencename"]: r["last_value"]
                for r in await conn.fetch(
                    "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'"
                )
            }
            return cls(rows, sequences)
        finally:
            await conn.close()

    async def restore(self, name: str) -> None:
        """Every row a test wrote gone, the seeded ones back, every sequence where it was.
        Connections the test left behind are ended first, so none writes into the next test."""
        conn = await asyncpg.connect(_asyncpg_dsn(_postgres_url(name)))
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await conn.execute("SET lock_timeout = '5s'")
            async with conn.transaction():
                for table in reversed(METADATA.sorted_tables):  # children before parents
                    await conn.execute(f'DELETE FROM "{table.name}"')
                for table in METADATA.sorted_tables:
                    if table.name in self.rows:
                        columns, records = self.rows[table.name]
                        await conn.copy_records_to_table(
                            table.name, records=records, columns=columns
                        )
                for sequence, last in self.sequences.items():
                    if last is None:  # never used
                        await conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
                    else:
                        await conn.execute("SELECT setval($1, $2)", f'"{sequence}"', last)
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("templates"))
    try:
        yield templates
    finally:
        templates.drop()


def _database(engine: str, tmp_path: Path, templates: _Templates | None) -> Iterator[str]:
    if engine == "sqlite":
        path = tmp_path / "tongbu.sqlite3"
        if templates is not None:
            templates.sqlite_copy(path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if templates is not None:
        name = templates.postgres_database()
        yield _postgres_url(name)
        templates.postgres_done(name)
        return
    name = f"tongbu_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _postgres_url(name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=ENGINES)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, _templates: _Templates
) -> Iterator[str]:
    yield from _database(request.param, tmp_path, _templates)


@pytest.fixture(params=ENGINES)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _database(request.param, tmp_path, None)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    sessionmaker = await open_database(database_url)
    try:
        yield sessionmaker
    finally:
        await close_database(sessionmaker)


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=b"test-secret-key-that-is-32-bytes!",
        # Tests decide when lessons open and end; tests/test_scheduler.py runs the scheduler.
        scheduler=False,
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return _settings(tmp_path, database_url)


@pytest.fixture
def empty_settings(tmp_path: Path, empty_database_url: str) -> Settings:
    return _settings(tmp_path, empty_database_url)


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
        role: UserRole | str,
        school_id: int | None = None,
        username: str | None = None,
        classroom_id: int | None = None,
    ) -> dict[str, str]:
        async with app_client.app[DB]() as s:
            user = await create_user(
                s,
                username=username or f"{role}-{secrets.token_hex(3)}",
                password="correct horse battery",
                role=role,
                school_id=school_id,
                classroom_id=classroom_id,
            )
            token = await issue_token(s, user, name="test")
        return {"Authorization": f"Bearer {token}"}

    return make


LessonFactory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def lesson_factory(app_client: TestClient, admin_headers: dict[str, str]) -> LessonFactory:
    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await app_client.post(f"/api/v1{path}", json=body, headers=admin_headers)
        assert response.status == 201, await response.text()
        return await response.json()

    async def make(
        receiving: int = 2, start: datetime | None = None, kind: str = "dedicated"
    ) -> dict[str, Any]:
        start = start or datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
        city = await post("/schools", {"name": "城关一中", "kind": "city"})
        main = await post("/classrooms", {"school_id": city["id"], "name": "主讲教室"})
        rural = []
        for i in range(receiving):
            school = await post("/schools", {"name": f"乡村小学{i + 1}", "kind": "rural"})
            rural.append(
                (await post("/classrooms", {"school_id": school["id"], "name": "听课"}))["id"]
            )
        pairing = await post(
            "/pairings",
            {"name": "结对", "main_classroom_id": main["id"], "receiving_classroom_ids": rural},
        )
        return await post(
            "/lessons",
            {
                "pairing_id": pairing["id"],
                "kind": kind,
                "subject": "数学",
                "grade": "初二",
                "teacher_name": "王老师",
                "title": "一次函数",
                "planned_start": start.isoformat(),
                "planned_end": (start + timedelta(minutes=40)).isoformat(),
            },
        )

    return make


@pytest.fixture
async def admin_headers(headers_for: HeadersFor) -> dict[str, str]:
    return await headers_for(UserRole.ADMIN, username="admin")
