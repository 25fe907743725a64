"""Locked and disabled accounts, through the API, on SQLite and PostgreSQL.

tests/test_api_auth.py and tests/test_accounts.py show a lock on one door at a time and
an admin lifting it. Here: both doors count towards one lock, the lock holds on both
with its own code and ends by itself after LOCKOUT, a school admin lifts their own
teacher's lock but not another school's, and disabling cuts every credential at once
without re-enabling bringing the old ones back.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
from aiohttp.test_utils import TestClient

import classroom.users
from classroom import audit, sessions
from classroom.models import User, utcnow
from classroom.sessions import COOKIE_NAME
from classroom.users import LOCKOUT, MAX_FAILED_LOGINS, create_user, issue_token
from signaling.appkeys import DB

API = "/api/v1"
PASSWORD = "correct horse battery"
DOORS = ("/auth/login", "/auth/session")


async def knock(client: TestClient, door: str, username: str, password: str) -> tuple[int, str]:
    """Sign in at `door`; the status and the error code (None on success)."""
    response = await client.post(API + door, json={"username": username, "password": password})
    body = await response.json()
    client.session.cookie_jar.clear()
    return response.status, body["error"]["code"] if response.status >= 400 else None


async def add_user(client: TestClient, username: str, role: str, school_id: int | None = None):
    async with client.app[DB]() as db:
        return await create_user(
            db, username=username, password=PASSWORD, role=role, school_id=school_id
        )


async def bearer_of(client: TestClient, user: User) -> dict[str, str]:
    async with client.app[DB]() as db:
        return {"Authorization": f"Bearer {await issue_token(db, user, name='t')}"}


async def events(client: TestClient, action: str) -> list:
    """Oldest first."""
    async with client.app[DB]() as db:
        return list(reversed(await audit.list_events(db, action=action)))


async def lock(client: TestClient, username: str) -> None:
    """MAX_FAILED_LOGINS wrong passwords, alternating between the two doors."""
    for i in range(MAX_FAILED_LOGINS):
        status, code = await knock(client, DOORS[i % 2], username, "wrong password!")
        assert (status, code) == (401, "unauthorized")


async def test_failures_at_both_doors_make_one_lock_that_holds_at_both(
    app_client: TestClient, admin_headers: dict
) -> None:
    user = await add_user(app_client, "wu", "teacher")
    await lock(app_client, "wu")
    for door in DOORS:
        assert await knock(app_client, door, "wu", PASSWORD) == (401, "account_locked")
    # An unknown name never locks: it cannot be told from a wrong password by its answer.
    for _ in range(MAX_FAILED_LOGINS + 1):
        assert await knock(app_client, "/auth/login", "ghost", "x") == (401, "unauthorized")

    failed = [e for e in await events(app_client, "auth.login_failed") if e.actor_name == "wu"]
    assert [(e.detail["reason"], e.detail["via"]) for e in failed] == [
        ("bad_password", "token"),
        ("bad_password", "session"),
        ("bad_password", "token"),
        ("bad_password", "session"),
        ("locked_now", "token"),
        ("locked", "token"),
        ("locked", "session"),
    ]
    assert all(e.actor_id == user.id and e.remote for e in failed)
    (locked,) = await events(app_client, "auth.locked")
    assert (locked.actor_name, locked.target) == ("wu", "user:wu")
    seen = await app_client.get(f"{API}/users/{user.id}", headers=admin_headers)
    locked_until = datetime.fromisoformat((await seen.json())["locked_until"])
    assert LOCKOUT * 0.9 < locked_until - utcnow() <= LOCKOUT


async def test_the_lock_ends_by_itself_after_the_lockout(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_user(app_client, "wu", "teacher")
    await lock(app_client, "wu")
    locked_at = utcnow()
    # The accounts module's clock moves on; the rest of the server keeps real time.
    monkeypatch.setattr(classroom.users, "utcnow", lambda: locked_at + LOCKOUT * 0.9)
    assert await knock(app_client, "/auth/session", "wu", PASSWORD) == (401, "account_locked")
    monkeypatch.setattr(classroom.users, "utcnow", lambda: locked_at + LOCKOUT * 1.05)
    for door in DOORS:
        assert await knock(app_client, door, "wu", PASSWORD) == (200, None)
    # A successful login starts the count afresh: four more failures do not lock.
    for _ in range(MAX_FAILED_LOGINS - 1):
        await knock(app_client, "/auth/login", "wu", "wrong password!")
    assert await knock(app_client, "/auth/login", "wu", PASSWORD) == (200, None)


async def test_a_school_admin_unlocks_their_teacher_and_only_theirs(
    app_client: TestClient, admin_headers: dict
) -> None:
    schools = []
    for name in ("城关一中", "青山村小"):
        response = await app_client.post(
            f"{API}/schools", json={"name": name, "kind": "city"}, headers=admin_headers
        )
        schools.append((await response.json())["id"])
    teacher = await add_user(app_client, "wu", "teacher", schools[0])
    own = await bearer_of(app_client, await add_user(app_client, "sa1", "school_admin", schools[0]))
    other = await bearer_of(
        app_client, await add_user(app_client, "sa2", "school_admin", schools[1])
    )
    await lock(app_client, "wu")
    refused = await app_client.post(f"{API}/users/{teacher.id}/unlock", headers=other)
    assert refused.status == 403
    assert await knock(app_client, "/auth/login", "wu", PASSWORD) == (401, "account_locked")
    (denied,) = await events(app_client, "permission.denied")
    assert (denied.actor_name, denied.target) == ("sa2", f"{API}/users/{teacher.id}/unlock")
    unlocked = await app_client.post(f"{API}/users/{teacher.id}/unlock", headers=own)
    assert unlocked.status == 200 and (await unlocked.json())["locked_until"] is None
    assert await knock(app_client, "/auth/session", "wu", PASSWORD) == (200, None)
    (event,) = await events(app_client, "user.unlocked")
    assert (event.actor_name, event.target) == ("sa1", "user:wu")


async def test_disabling_cuts_every_credential_at_once_and_enabling_revives_none(
    app_client: TestClient, admin_headers: dict
) -> None:
    school = await app_client.post(
        f"{API}/schools", json={"name": "城关一中", "kind": "city"}, headers=admin_headers
    )
    school_id = (await school.json())["id"]
    user = await add_user(app_client, "li", "teacher", school_id)
    boss = await bearer_of(app_client, await add_user(app_client, "sa", "school_admin", school_id))
    issued = await bearer_of(app_client, user)  # a script's token (no expiry)
    login = await app_client.post(
        f"{API}/auth/login", json={"username": "li", "password": PASSWORD}
    )
    logged_in = {"Authorization": f"Bearer {(await login.json())['token']}"}
    async with app_client.app[DB]() as db:
        page = await sessions.create_session(db, user)
    cookie = {"Cookie": f"{COOKIE_NAME}={page.cookie}"}
    credentials = (issued, logged_in, cookie)
    for headers in credentials:
        assert (await app_client.get(f"{API}/me", headers=headers)).status == 200

    disabled = await app_client.patch(
        f"{API}/users/{user.id}", json={"disabled": True}, headers=boss
    )
    assert disabled.status == 200
    for headers in credentials:
        answer = await app_client.get(f"{API}/me", headers=headers)
        assert answer.status == 401, headers
    for door in DOORS:
        assert await knock(app_client, door, "li", PASSWORD) == (401, "unauthorized")
    reasons = [e.detail["reason"] for e in await events(app_client, "auth.login_failed")]
    assert reasons == ["disabled", "disabled"]

    enabled = await app_client.patch(
        f"{API}/users/{user.id}", json={"disabled": False}, headers=boss
    )
    assert enabled.status == 200
    for headers in credentials:  # revoked and ended, not merely suspended
        assert (await app_client.get(f"{API}/me", headers=headers)).status == 401
    assert await knock(app_client, "/auth/login", "li", PASSWORD) == (200, None)


async def test_a_user_disabled_outside_the_api_is_refused_at_the_next_request(
    app_client: TestClient,
) -> None:
    """The `disabled` flag itself stops the credentials, not only the revocation that the
    API's PATCH adds: a row changed by hand or by another tool takes effect at once."""
    user = await add_user(app_client, "li", "teacher")
    token = await bearer_of(app_client, user)
    async with app_client.app[DB]() as db:
        page = await sessions.create_session(db, user)
    cookie = {"Cookie": f"{COOKIE_NAME}={page.cookie}", "X-CSRF-Token": page.session.csrf_token}
    for headers in (token, cookie):
        assert (await app_client.get(f"{API}/me", headers=headers)).status == 200
    async with app_client.app[DB]() as db:
        row = await db.get(User, user.id)
        assert row is not None
        row.disabled = True
        await db.commit()
    for headers in (token, cookie):
        assert (await app_client.get(f"{API}/me", headers=headers)).status == 401
        changed = await app_client.post(
            f"{API}/me/password", json={"current": PASSWORD, "new": "another one 123"},
            headers=headers,
        )  # fmt: skip
        assert changed.status == 401


def test_a_real_process_hashes_passwords_at_full_cost() -> None:
    """The suite hashes with argon2's cheapest parameters (tests/conftest.py); a process
    that is not the test process must use RFC 9106's: argon2id, 64 MiB, 3 passes, 4 lanes."""
    code = (
        "import asyncio; from classroom.users import hash_password; "
        "print(asyncio.run(hash_password('a-long-password')))"
    )
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert made.stdout.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), made.stdout
