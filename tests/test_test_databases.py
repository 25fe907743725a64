"""The PostgreSQL databases tests/conftest.py hands out are reused: each must come back as
the migrations left the template (their seeded rubric, no other row, ids from the start),
or one test's rows would leak into the next."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _asyncpg_dsn, _postgres_url, _Templates

pytestmark = pytest.mark.postgresql

SCHOOL = (
    "INSERT INTO schools (name, kind, region, timezone, created_at, active)"
    " VALUES ('{}', 'city', '', 'Asia/Shanghai', now(), true) RETURNING id"
)


async def _query(name: str, *statements: str) -> list[list[tuple[object, ...]]]:
    conn = await asyncpg.connect(_asyncpg_dsn(_postgres_url(name)))
    try:
        return [[tuple(r) for r in await conn.fetch(sql)] for sql in statements]
    finally:
        await conn.close()


def test_a_reused_database_is_as_the_template_left_it(tmp_path: Path) -> None:
    templates = _Templates(tmp_path)
    try:
        name = templates.postgres_database()
        fresh, first_id = asyncio.run(
            _query(name, "SELECT * FROM rubrics ORDER BY id", SCHOOL.format("城关一中"))
        )
        assert fresh, "the migrations seed a default rubric"
        asyncio.run(_query(name, "UPDATE rubrics SET name = 'changed by a test'"))
        templates.postgres_done(name)

        assert templates.postgres_database() == name  # the same database, reused
        rubrics, schools, next_id = asyncio.run(
            _query(
                name,
                "SELECT * FROM rubrics ORDER BY id",
                "SELECT count(*) FROM schools",
                SCHOOL.format("乡村小学"),
            )
        )
        assert rubrics == fresh
        assert schools == [(0,)]
        assert next_id == first_id == [(1,)]
    finally:
        templates.drop()
