"""Forged state changes are refused on every unsafe route, and only forged ones.

tests/test_accounts.py shows the CSRF rules on POST /schools and DELETE /auth/session.
Here they are swept over every POST, PUT, PATCH and DELETE of ROUTES (so a new route is
covered the day it lands), each made by a caller the permission matrix allows: signed
by the session cookie, the request is refused with 403 `csrf_failed` and an
`auth.csrf_failed` audit row without the X-CSRF-Token header, with a wrong one, with
another session's, and from another origin (Origin, else Referer); with the right header
from this origin it gets the matrix's answer; with a bearer token it needs no header and
no origin check. The two sign-in routes take no cookie, but refuse another origin.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom import sessions
from classroom.models import AuditEvent, User
from classroom.sessions import COOKIE_NAME
from signaling.app import ROUTES
from signaling.appkeys import DB
from signaling.rest.auth import CSRF_HEADER, SAFE_METHODS
from tests.permission_matrix import ACTOR_NAMES, API, ROWS, Row, World, build_world, send

EVIL = "https://evil.example"
UNSAFE = [r for r in ROUTES if r.method not in SAFE_METHODS]
SIGN_IN = {f"{r.method} {r.path}" for r in UNSAFE if r.public and not r.optional_auth}


def row_for(route_key: str) -> tuple[Row, str]:
    """The route's first matrix row, and the first signed-in actor it allows."""
    rows = [r for r in ROWS if r.route == route_key]
    assert rows, f"{route_key} has no row in tests/permission_matrix.py ROWS"
    actors = [a for a in ACTOR_NAMES if a != "anonymous" and a in rows[0].allowed]
    assert actors, f"{route_key}: its first row allows no signed-in actor"
    return rows[0], actors[0]


@pytest.fixture
async def world(app_client: TestClient, tmp_path: Path) -> World:
    return await build_world(app_client, tmp_path)


async def new_session(w: World, actor: str) -> tuple[str, str]:
    async with w.client.app[DB]() as db:
        user = await db.get(User, w.user[actor][0])
        assert user is not None
        made = await sessions.create_session(db, user)
    return made.cookie, made.session.csrf_token


async def attempt(
    w: World, row: Row, actor: str, headers: dict[str, str]
) -> tuple[int, str | None]:
    response = await send(w, row.method, await row.build(w, actor), headers)
    if response.status >= 400:
        return response.status, (await response.json())["error"]["code"]
    await response.read()
    return response.status, None


async def csrf_failures(w: World) -> Counter[tuple[str, str, str | None]]:
    async with w.client.app[DB]() as db:
        rows = await db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "auth.csrf_failed")
        )
        return Counter((e.actor_name, e.detail["route"], e.detail["via"]) for e in rows.all())


def test_the_sweep_covers_every_unsafe_route() -> None:
    assert {"POST", "PUT", "PATCH", "DELETE"} <= {r.method for r in UNSAFE}
    assert SIGN_IN == {"POST /auth/login", "POST /auth/session"}
    for route in UNSAFE:
        row_for(f"{route.method} {route.path}")  # a matrix row with an allowed actor


async def test_cookie_signed_state_changes_need_the_sessions_token_from_this_origin(
    world: World,
) -> None:
    w = world
    expected: Counter[tuple[str, str, str | None]] = Counter()
    wrong: list[str] = []
    for route in UNSAFE:
        key = f"{route.method} {route.path}"
        if key in SIGN_IN:
            continue
        row, actor = row_for(key)
        cookie, csrf = await new_session(w, actor)
        _, other_csrf = await new_session(w, actor)  # the same user's other session
        signed = {"Cookie": f"{COOKIE_NAME}={cookie}"}
        forgeries = {
            "no header": {**signed, "Origin": w.origin},
            "wrong header": {**signed, CSRF_HEADER: "x" * 43, "Origin": w.origin},
            "another session's token": {**signed, CSRF_HEADER: other_csrf, "Origin": w.origin},
            "foreign Origin": {**signed, CSRF_HEADER: csrf, "Origin": EVIL},
            "foreign Referer": {**signed, CSRF_HEADER: csrf, "Referer": f"{EVIL}/page"},
        }
        for what, headers in forgeries.items():
            answer = await attempt(w, row, actor, headers)
            if answer != (403, "csrf_failed"):
                wrong.append(f"{key} as {actor}, {what}: {answer}")
            expected[(w.user[actor][1], f"{route.method} {API}{route.path}", "session")] += 1
        right = {**signed, CSRF_HEADER: csrf, "Origin": w.origin}
        status, code = await attempt(w, row, actor, right)
        if status != row.ok or code != row.ok_code:
            wrong.append(f"{key} as {actor}, right token: {status} {code}, want {row.ok}")
        # Without Origin and Referer (a non-browser client) the token alone decides.
        status, code = await attempt(w, row, actor, {**signed, CSRF_HEADER: csrf})
        if status != row.ok:
            wrong.append(f"{key} as {actor}, right token, no Origin: {status} {code}")
    assert wrong == [], "\n".join(wrong)
    assert await csrf_failures(w) == expected
    assert sum(expected.values()) >= 5 * 25


async def test_bearer_calls_need_no_csrf_token_whatever_their_origin(world: World) -> None:
    w = world
    wrong: list[str] = []
    for route in UNSAFE:
        key = f"{route.method} {route.path}"
        if key in SIGN_IN:
            continue
        row, actor = row_for(key)
        headers = await w.credentials(actor, "bearer", route.method, fresh=True)
        status, code = await attempt(w, row, actor, {**headers, "Origin": EVIL})
        if status != row.ok or code != row.ok_code:
            wrong.append(f"{key} as {actor}: {status} {code}, want {row.ok} {row.ok_code}")
    assert wrong == [], "\n".join(wrong)
    assert await csrf_failures(w) == Counter()


async def test_sign_in_from_another_origin_is_refused(world: World) -> None:
    w = world
    expected: Counter[tuple[str, str, str | None]] = Counter()
    for key in sorted(SIGN_IN):
        row, _ = row_for(key)
        for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/login"}):
            assert await attempt(w, row, "anonymous", headers) == (403, "csrf_failed"), key
            expected[("anonymous", f"POST {API}{row.path}", None)] += 1
        for headers in ({"Origin": w.origin}, {}):  # this origin, or a script
            assert await attempt(w, row, "anonymous", headers) == (200, None), key
    assert await csrf_failures(w) == expected
