"""Every route, every kind of caller: the answer is the one in the permission matrix.

The matrix (tests/permission_matrix.py) has a row for every route of ROUTES, so a route
added without deciding who may call it fails here; it runs against real rows, on SQLite
with session cookies and their CSRF token and on PostgreSQL with bearer tokens, and every
403 must have left its `permission.denied` audit row. docs/api.md's
permission table is generated from the same rows and must match them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom.models import AuditEvent
from classroom.users import create_user, issue_token
from signaling.app import ROUTES
from signaling.appkeys import DB
from tests.permission_matrix import (
    ACTOR_NAMES,
    API,
    DOC,
    PASSWORD,
    ROWS,
    World,
    build_world,
    documented_table,
    permission_table,
    send,
)


@pytest.fixture
async def world(app_client: TestClient, tmp_path: Path) -> World:
    return await build_world(app_client, tmp_path)


def test_every_route_has_a_row_and_every_row_a_route() -> None:
    routes = {f"{r.method} {r.path}" for r in ROUTES}
    rows = {row.route for row in ROWS}
    assert sorted(routes - rows) == [], "add rows for these to tests/permission_matrix.py ROWS"
    assert sorted(rows - routes) == [], "rows for routes that ROUTES no longer has"


def test_rows_name_only_known_actors() -> None:
    for row in ROWS:
        assert row.allowed <= set(ACTOR_NAMES), row.route
        assert not row.allowed & row.hidden, row.route
        assert row.hidden <= set(ACTOR_NAMES), row.route


def test_the_docs_permission_table_is_the_matrix() -> None:
    documented = documented_table(DOC.read_text(encoding="utf-8"))
    assert documented is not None, "docs/api.md lost its generated permission table"
    assert documented == permission_table(), (
        "docs/api.md disagrees with the matrix: run `.venv/bin/python -m tests.permission_matrix`"
    )


async def _denials(client: TestClient, action: str) -> list[AuditEvent]:
    async with client.app[DB]() as db:
        rows = await db.scalars(sa.select(AuditEvent).where(AuditEvent.action == action))
        return list(rows.all())


async def run_matrix(w: World, mode: str) -> tuple[list[str], Counter[tuple[str, str]]]:
    """Every row as every actor; the mismatches, and the 403s that must be audited."""
    mismatches: list[str] = []
    refused: Counter[tuple[str, str]] = Counter()
    for row in ROWS:
        for actor in ACTOR_NAMES:
            probe = await row.build(w, actor)
            headers = await w.credentials(actor, mode, row.method, fresh=row.fresh_credential)
            response = await send(w, row.method, probe, headers)
            expected = row.expect(actor)
            code = None
            if response.status >= 400:
                code = (await response.json())["error"]["code"]
            else:
                await response.read()
            wanted_code = {403: "forbidden", 401: "unauthorized"}.get(expected)
            if actor in row.allowed and row.ok_code:
                wanted_code = row.ok_code
            if response.status != expected or (wanted_code and code != wanted_code):
                mismatches.append(
                    f"{row.route} [{row.target}] {actor}: got {response.status} {code}, "
                    f"want {expected} {wanted_code or ''}"
                )
            if response.status == 403:
                refused[(w.user[actor][1], response.url.path)] += 1
    return mismatches, refused


# Each engine once and each way of signing in once (a run is ~1,000 calls, 15 s): which of
# the two a row is answered through does not depend on the engine.
@pytest.mark.parametrize(
    ("database_url", "mode"),
    [("sqlite", "session"), pytest.param("postgresql", "bearer", marks=pytest.mark.postgresql)],
    indirect=["database_url"],
)
async def test_every_caller_gets_the_matrix_answer_on_every_route(world: World, mode: str) -> None:
    mismatches, refused = await run_matrix(world, mode)
    assert mismatches == [], "\n".join(mismatches)
    denied = await _denials(world.client, "permission.denied")
    assert Counter((e.actor_name, e.target) for e in denied) == refused
    assert sum(refused.values()) > 250
    assert {e.detail["via"] for e in denied} == {mode}
    assert all(e.detail["route"].startswith(("GET ", "POST ", "PUT ", "PATCH ", "DELETE "))
               for e in denied)  # fmt: skip
    assert all(e.remote for e in denied)
    # The right CSRF token and this origin on every unsafe cookie call: none refused.
    assert await _denials(world.client, "auth.csrf_failed") == []


async def test_a_school_account_without_a_school_sees_nothing_of_any_school(
    world: World,
) -> None:
    """`tongbu admin create-user --role school_admin` without --school-id makes one; it
    must be scoped to no school, not to every school."""
    async with world.client.app[DB]() as db:
        stray = await create_user(db, username="stray", password=PASSWORD, role="school_admin")
        headers = {"Authorization": f"Bearer {await issue_token(db, stray, name='t')}"}
    for path in ("/users", "/schools", "/classrooms", "/pairings", "/lessons"):
        response = await world.client.get(API + path, headers=headers)
        assert response.status == 200, path
        assert (await response.json())["items"] == [], path
    response = await world.client.get(
        f"{API}/terms/{world.timetable['term']}/series", headers=headers
    )
    assert (await response.json())["items"] == []
    for path in (f"/users/{world.user['t_A'][0]}", f"/lessons/{world.lesson['L1']}"):
        assert (await world.client.get(API + path, headers=headers)).status == 403, path
