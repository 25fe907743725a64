"""Accounts and roles (issue 5): browser sessions with CSRF protection, lockout, password
change, user management, and what each role may see and do — refusals audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from classroom import audit
from classroom.sessions import COOKIE_NAME
from classroom.users import MAX_FAILED_LOGINS, create_user, issue_token
from signaling.appkeys import DB

PASSWORD = "correct horse battery"
API = "/api/v1"


# ----------------------------------------------------------------- helpers


@dataclass
class Browser:
    """A signed-in browser: its session cookie and the CSRF token the page keeps."""

    cookie: str
    csrf: str
    origin: str

    def headers(self, *, csrf: str | bool | None = True, origin: str | None = None) -> dict:
        headers = {"Cookie": f"{COOKIE_NAME}={self.cookie}"}
        if csrf is True:
            headers["X-CSRF-Token"] = self.csrf
        elif csrf:
            headers["X-CSRF-Token"] = csrf
        if origin is not None:
            headers["Origin"] = origin
        return headers


def origin_of(client: TestClient) -> str:
    url = client.make_url("/")
    return f"{url.scheme}://{url.host}:{url.port}"


async def sign_in(
    client: TestClient, username: str, password: str = PASSWORD, **headers: str
) -> tuple[int, dict[str, Any], Any]:
    response = await client.post(
        f"{API}/auth/session", json={"username": username, "password": password}, headers=headers
    )
    body = await response.json()
    client.session.cookie_jar.clear()  # each test Browser sends its own cookie explicitly
    return response.status, body, response.cookies.get(COOKIE_NAME)


async def browser(client: TestClient, username: str, password: str = PASSWORD) -> Browser:
    status, body, cookie = await sign_in(client, username, password)
    assert status == 200, body
    return Browser(cookie=cookie.value, csrf=body["csrf_token"], origin=origin_of(client))


async def add_user(
    client: TestClient,
    username: str,
    role: str,
    school_id: int | None = None,
    classroom_id: int | None = None,
):
    async with client.app[DB]() as s:
        return await create_user(
            s,
            username=username,
            password=PASSWORD,
            role=role,
            school_id=school_id,
            classroom_id=classroom_id,
        )


async def bearer(client: TestClient, user) -> dict[str, str]:
    async with client.app[DB]() as s:
        return {"Authorization": f"Bearer {await issue_token(s, user, name='test')}"}


async def events(client: TestClient, action: str):
    async with client.app[DB]() as s:
        return await audit.list_events(s, action=action)


# ---------------------------------------------------------------- sessions


async def test_session_login_sets_a_safe_cookie_and_answers_the_csrf_token(
    app_client: TestClient,
) -> None:
    await add_user(app_client, "li", "teacher")
    status, body, cookie = await sign_in(app_client, "li")
    assert status == 200
    assert body["user"]["username"] == "li" and len(body["csrf_token"]) >= 32
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http here; see the https test below
    assert cookie.value != body["csrf_token"]

    page = Browser(cookie.value, body["csrf_token"], origin_of(app_client))
    me = await app_client.get(f"{API}/me", headers=page.headers(csrf=False))
    assert me.status == 200 and (await me.json())["username"] == "li"
    # A reloaded page gets its CSRF token back from the session itself.
    again = await app_client.get(f"{API}/auth/session", headers=page.headers(csrf=False))
    assert (await again.json())["csrf_token"] == page.csrf
    (login,) = await events(app_client, "auth.login")
    assert login.actor_name == "li" and login.detail["via"] == "session" and login.remote


async def test_the_cookie_is_secure_behind_https(app_client: TestClient) -> None:
    await add_user(app_client, "li", "teacher")
    _, _, cookie = await sign_in(app_client, "li", **{"X-Forwarded-Proto": "https"})
    assert cookie["secure"] is True


async def test_state_changes_by_cookie_need_the_sessions_csrf_token(
    app_client: TestClient,
) -> None:
    await add_user(app_client, "admin1", "admin")
    page = await browser(app_client, "admin1")
    school = {"name": "城关一中", "kind": "city"}
    for headers in (page.headers(csrf=False), page.headers(csrf="not-the-token" * 3)):
        refused = await app_client.post(f"{API}/schools", json=school, headers=headers)
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "csrf_failed"
    created = await app_client.post(f"{API}/schools", json=school, headers=page.headers())
    assert created.status == 201
    # Another session's token is no good either: tokens are bound to their session.
    other = await browser(app_client, "admin1")
    mixed = await app_client.post(
        f"{API}/schools", json=school, headers=page.headers(csrf=other.csrf)
    )
    assert mixed.status == 403
    failures = await events(app_client, "auth.csrf_failed")
    assert len(failures) == 3 and failures[0].actor_name == "admin1"
    assert failures[0].detail["route"] == "POST /api/v1/schools"


async def test_a_cross_origin_request_is_refused_even_with_the_token(
    app_client: TestClient,
) -> None:
    await add_user(app_client, "admin1", "admin")
    page = await browser(app_client, "admin1")
    school = {"name": "城关一中", "kind": "city"}
    evil = await app_client.post(
        f"{API}/schools", json=school, headers=page.headers(origin="https://evil.example")
    )
    assert evil.status == 403 and (await evil.json())["error"]["code"] == "csrf_failed"
    referred = page.headers()
    referred["Referer"] = "https://evil.example/page"
    assert (await app_client.post(f"{API}/schools", json=school, headers=referred)).status == 403
    same = await app_client.post(
        f"{API}/schools", json=school, headers=page.headers(origin=page.origin)
    )
    assert same.status == 201
    # Nor may a foreign page sign a browser in (login CSRF).
    status, body, _ = await sign_in(app_client, "admin1", Origin="https://evil.example")
    assert (status, body["error"]["code"]) == (403, "csrf_failed")


async def test_bearer_requests_need_no_csrf_token(
    app_client: TestClient, admin_headers: dict
) -> None:
    created = await app_client.post(
        f"{API}/schools",
        json={"name": "城关一中", "kind": "city"},
        headers={**admin_headers, "Origin": "https://script.example"},
    )
    assert created.status == 201


async def test_logout_ends_the_session(app_client: TestClient) -> None:
    await add_user(app_client, "li", "teacher")
    page = await browser(app_client, "li")
    refused = await app_client.delete(f"{API}/auth/session", headers=page.headers(csrf=False))
    assert refused.status == 403
    out = await app_client.delete(f"{API}/auth/session", headers=page.headers())
    assert out.status == 200 and (await out.json())["ended"] is True
    assert out.cookies[COOKIE_NAME].value == ""
    after = await app_client.get(f"{API}/me", headers=page.headers())
    assert after.status == 401
    assert len(await events(app_client, "auth.logout")) == 1


# ----------------------------------------------------- lockout and passwords


async def test_lockout_after_five_failures_refuses_the_right_password_until_unlocked(
    app_client: TestClient, admin_headers: dict
) -> None:
    user = await add_user(app_client, "wu", "teacher")
    for _ in range(MAX_FAILED_LOGINS):
        status, body, cookie = await sign_in(app_client, "wu", "wrong password")
        assert (status, body["error"]["code"], cookie) == (401, "unauthorized", None)
    status, _, cookie = await sign_in(app_client, "wu")  # the right one, while locked
    assert (status, cookie) == (401, None)
    failed = await events(app_client, "auth.login_failed")
    assert len(failed) == MAX_FAILED_LOGINS + 1 and failed[0].detail["reason"] == "locked"
    (locked,) = await events(app_client, "auth.locked")
    assert locked.actor_name == "wu"

    seen = await app_client.get(f"{API}/users/{user.id}", headers=admin_headers)
    assert (await seen.json())["locked_until"] is not None
    unlocked = await app_client.post(f"{API}/users/{user.id}/unlock", headers=admin_headers)
    assert unlocked.status == 200 and (await unlocked.json())["locked_until"] is None
    assert (await sign_in(app_client, "wu"))[0] == 200
    assert len(await events(app_client, "user.unlocked")) == 1


async def test_password_change_ends_other_sessions_and_tokens(app_client: TestClient) -> None:
    user = await add_user(app_client, "li", "teacher")
    token = await bearer(app_client, user)
    here = await browser(app_client, "li")
    elsewhere = await browser(app_client, "li")
    url = f"{API}/me/password"
    for body, field in (
        ({"current": "wrong password", "new": "a new password 1"}, "current"),
        ({"current": PASSWORD, "new": "short"}, "new"),
        ({"current": PASSWORD, "new": "LI"}, "new"),
    ):
        answer = await app_client.post(url, json=body, headers=here.headers())
        assert (answer.status, (await answer.json())["error"]["field"]) == (400, field)
    changed = await app_client.post(
        url, json={"current": PASSWORD, "new": "a new password 1"}, headers=here.headers()
    )
    assert changed.status == 200
    assert await changed.json() == {"sessions_ended": 1, "tokens_revoked": 1}
    assert (await app_client.get(f"{API}/me", headers=here.headers())).status == 200
    assert (await app_client.get(f"{API}/me", headers=elsewhere.headers())).status == 401
    assert (await app_client.get(f"{API}/me", headers=token)).status == 401
    assert (await sign_in(app_client, "li"))[0] == 401
    assert (await sign_in(app_client, "li", "a new password 1"))[0] == 200
    assert len(await events(app_client, "auth.password_changed")) == 1


async def test_a_disabled_user_can_neither_sign_in_nor_use_sessions_or_tokens(
    app_client: TestClient, admin_headers: dict
) -> None:
    user = await add_user(app_client, "li", "teacher")
    token = await bearer(app_client, user)
    page = await browser(app_client, "li")
    disabled = await app_client.patch(
        f"{API}/users/{user.id}", json={"disabled": True}, headers=admin_headers
    )
    assert disabled.status == 200 and (await disabled.json())["disabled"] is True
    assert (await app_client.get(f"{API}/me", headers=page.headers())).status == 401
    assert (await app_client.get(f"{API}/me", headers=token)).status == 401
    assert (await sign_in(app_client, "li"))[0] == 401
    (event,) = await events(app_client, "user.updated")
    assert event.detail["disabled"] is True and event.detail["tokens_revoked"] == 1
    enabled = await app_client.patch(
        f"{API}/users/{user.id}", json={"disabled": False}, headers=admin_headers
    )
    assert enabled.status == 200 and (await sign_in(app_client, "li"))[0] == 200


async def test_an_admin_cannot_disable_itself(app_client: TestClient) -> None:
    me = await add_user(app_client, "root", "admin")
    headers = await bearer(app_client, me)
    answer = await app_client.patch(
        f"{API}/users/{me.id}", json={"disabled": True}, headers=headers
    )
    assert answer.status == 400


# --------------------------------------------------------- the permission matrix


@dataclass
class World:
    school: dict[str, int]  # A (city, main of L1), B (rural, receives L1), C, D (L2)
    room: dict[str, int]  # classroom per school
    pairing: dict[str, int]  # P1: A→B, P2: C→D
    lesson: dict[str, int]  # L1 (teacher t_own), L2, L3 (on P1, cancelled)
    headers: dict[str, dict[str, str]]  # per actor; "anonymous" is {}
    user_id: dict[str, int]


@pytest.fixture
async def world(app_client: TestClient, admin_headers: dict) -> World:
    async def post(path: str, body: dict) -> dict:
        response = await app_client.post(API + path, json=body, headers=admin_headers)
        assert response.status == 201, await response.text()
        return await response.json()

    school, room = {}, {}
    for name, kind in (("A", "city"), ("B", "rural"), ("C", "city"), ("D", "rural")):
        school[name] = (await post("/schools", {"name": f"学校{name}", "kind": kind}))["id"]
        room[name] = (await post("/classrooms", {"school_id": school[name], "name": "教室"}))["id"]
    pairing = {
        "P1": (
            await post(
                "/pairings",
                {
                    "name": "P1",
                    "main_classroom_id": room["A"],
                    "receiving_classroom_ids": [room["B"]],
                },
            )
        )["id"],
        "P2": (
            await post(
                "/pairings",
                {
                    "name": "P2",
                    "main_classroom_id": room["C"],
                    "receiving_classroom_ids": [room["D"]],
                },
            )
        )["id"],
    }
    actors = {
        "admin": ("admin", None),
        "sa_A": ("school_admin", "A"),
        "sa_B": ("school_admin", "B"),
        "sa_C": ("school_admin", "C"),
        "t_own": ("teacher", "A"),
        "t_other": ("teacher", "A"),
        "t_B": ("teacher", "B"),
        "reviewer": ("reviewer", None),
        "device_B": ("device", "B"),
    }
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    user_id: dict[str, int] = {}
    for actor, (role, where) in actors.items():
        school_id = school[where] if where else None
        classroom_id = room[where] if role == "device" else None  # a device is its room's
        user = await add_user(app_client, f"u_{actor}", role, school_id, classroom_id)
        headers[actor], user_id[actor] = await bearer(app_client, user), user.id

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

    async def lesson(pairing_id: int, at: datetime, **extra: Any) -> int:
        body = {
            "pairing_id": pairing_id,
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": "王老师",
            "title": "一次函数",
            "planned_start": at.isoformat(),
            "planned_end": (at + timedelta(minutes=40)).isoformat(),
            **extra,
        }
        return (await post("/lessons", body))["id"]

    lessons = {
        "L1": await lesson(pairing["P1"], start, teacher_user_id=user_id["t_own"]),
        "L2": await lesson(pairing["P2"], start),
        "L3": await lesson(pairing["P1"], start + timedelta(hours=2)),
    }
    cancel = await app_client.post(f"{API}/lessons/{lessons['L3']}/cancel", headers=admin_headers)
    assert cancel.status == 200
    return World(school, room, pairing, lessons, headers, user_id)


ALL = ("admin", "sa_A", "sa_B", "sa_C", "t_own", "t_other", "t_B", "reviewer", "device_B")


def case(method: str, path: str, allowed: dict[str, int], body=None, refused: int = 403):
    """Actors in `allowed` get that status; every other signed-in actor `refused`;
    anonymous callers 401."""
    return method, path, allowed, body, refused


def matrix(w: World) -> list[tuple]:
    A, B, L1, L3 = w.school["A"], w.school["B"], w.lesson["L1"], w.lesson["L3"]
    return [
        case("GET", "/me", dict.fromkeys(ALL, 200)),
        case("GET", f"/schools/{A}", {"admin": 200, "sa_A": 200, "t_own": 200, "t_other": 200}),
        case("POST", "/schools", {"admin": 201}, lambda a: {"name": f"新{a}", "kind": "city"}),
        case(
            "GET",
            f"/classrooms?school_id={B}",
            {"admin": 200, "sa_B": 200, "t_B": 200, "device_B": 200},
        ),
        case(
            "POST",
            "/classrooms",
            {"admin": 201, "sa_A": 201},
            lambda a: {"school_id": A, "name": f"教室{a}"},
        ),
        case(
            "GET",
            f"/pairings/{w.pairing['P1']}",
            {"admin": 200, "sa_A": 200, "sa_B": 200, "t_own": 200, "t_other": 200, "t_B": 200},
        ),
        # Across schools, a pairing is the district admin's to make.
        case(
            "POST",
            "/pairings",
            {"admin": 201},
            lambda a: {
                "name": a,
                "main_classroom_id": w.room["A"],
                "receiving_classroom_ids": [w.room["B"]],
            },
        ),
        case(
            "GET",
            f"/lessons/{L1}",
            {
                a: 200
                for a in (
                    "admin",
                    "sa_A",
                    "sa_B",
                    "t_own",
                    "t_other",
                    "t_B",
                    "reviewer",
                    "device_B",
                )
            },
        ),
        # Start on a scheduled lesson is an illegal move: 409 shows the permission passed.
        case("POST", f"/lessons/{L1}/start", {"admin": 409, "sa_A": 409, "t_own": 409}),
        case("POST", f"/lessons/{L3}/cancel", {"admin": 409, "sa_A": 409}),
        case(
            "POST",
            f"/lessons/{L1}/join-tokens",
            {"admin": 201, "sa_A": 201, "t_own": 201},
            lambda a: {"role": "main", "classroom_id": w.room["A"]},
        ),
        case(
            "POST",
            f"/lessons/{L1}/join-tokens",
            {"admin": 201, "sa_B": 201, "t_B": 201, "device_B": 201},
            lambda a: {"role": "receiving", "classroom_id": w.room["B"]},
        ),
        case(
            "POST",
            f"/lessons/{L1}/join-tokens",
            {a: 201 for a in ("admin", "sa_A", "sa_B", "t_own", "t_other", "t_B", "reviewer")},
            lambda a: {"role": "watch"},
        ),
        case(
            "GET",
            f"/lessons/{L1}/live",
            {a: 404 for a in ("admin", "sa_A", "sa_B", "t_own", "t_other", "t_B", "reviewer")},
        ),
        case("GET", "/users", {"admin": 200, "sa_A": 200, "sa_B": 200, "sa_C": 200}),
        case(
            "POST",
            "/users",
            {"admin": 201, "sa_A": 201},
            lambda a: {
                "username": f"new_{a}",
                "password": PASSWORD,
                "role": "teacher",
                "school_id": A,
            },
        ),
        case(
            "POST",
            "/users",
            {"admin": 201},
            lambda a: {
                "username": f"sa_{a}",
                "password": PASSWORD,
                "role": "school_admin",
                "school_id": A,
            },
        ),
        case(
            "PATCH",
            f"/users/{w.user_id['t_other']}",
            {"admin": 200, "sa_A": 200, "t_other": 403},
            lambda a: {"display_name": f"by {a}"},
        ),
        case("POST", f"/users/{w.user_id['t_B']}/unlock", {"admin": 200, "sa_B": 200}),
        case("GET", "/library", {**dict.fromkeys(ALL, 200), "anonymous": 200}),
    ]


async def test_each_role_is_refused_what_it_may_not_see_or_do(
    app_client: TestClient, world: World
) -> None:
    refusals = 0
    for method, path, allowed, body, refused in matrix(world):
        for actor in (*ALL, "anonymous"):
            expected = allowed.get(actor, 401 if actor == "anonymous" else refused)
            response = await app_client.request(
                method,
                API + path,
                json=body(actor) if body else None,
                headers=world.headers[actor],
            )
            answer = await response.json()
            assert response.status == expected, (method, path, actor, answer)
            if expected == 403:
                assert answer["error"]["code"] == "forbidden"
                refusals += 1
    denied = await events(app_client, "permission.denied")
    assert len(denied) == refusals > 80
    by_reviewer = next(e for e in denied if e.actor_name == "u_reviewer")
    assert by_reviewer.detail["route"] and by_reviewer.remote and by_reviewer.target


async def test_lists_show_only_what_is_yours(app_client: TestClient, world: World) -> None:
    async def ids(actor: str, path: str) -> set[int]:
        response = await app_client.get(API + path, headers=world.headers[actor])
        assert response.status == 200, path
        return {x["id"] for x in (await response.json())["items"]}

    L1, L2, L3 = world.lesson["L1"], world.lesson["L2"], world.lesson["L3"]
    assert await ids("admin", "/lessons") == {L1, L2, L3}
    assert await ids("sa_B", "/lessons") == {L1, L3}  # receives them
    assert await ids("sa_C", "/lessons") == {L2}
    assert await ids("device_B", "/lessons?state=scheduled") == {L1}
    # One classroom's lessons (a room's week), within what the caller may list.
    room = world.room
    assert await ids("admin", f"/lessons?classroom_id={room['B']}") == {L1, L3}
    assert await ids("admin", f"/lessons?classroom_id={room['C']}") == {L2}
    assert await ids("sa_B", f"/lessons?classroom_id={room['A']}") == {L1, L3}
    assert await ids("sa_B", f"/lessons?classroom_id={room['C']}") == set()
    assert await ids("device_B", f"/lessons?classroom_id={room['D']}") == set()
    assert await ids("admin", f"/lessons?classroom_id={room['B']}&state=scheduled") == {L1}
    assert await ids("t_own", "/schools") == {world.school["A"]}
    assert await ids("sa_B", "/pairings") == {world.pairing["P1"]}
    assert await ids("sa_C", "/classrooms") == {world.room["C"]}
    assert await ids("sa_A", "/users") == {world.user_id[a] for a in ("sa_A", "t_own", "t_other")}


async def test_a_lessons_own_teacher_runs_it_and_a_colleague_does_not(
    app_client: TestClient, world: World
) -> None:
    L1, L2 = world.lesson["L1"], world.lesson["L2"]
    other = await app_client.post(f"{API}/lessons/{L1}/open", headers=world.headers["t_other"])
    assert other.status == 403
    own = await app_client.post(f"{API}/lessons/{L1}/open", headers=world.headers["t_own"])
    assert own.status == 200 and (await own.json())["teacher_user_id"] == world.user_id["t_own"]
    ended = await app_client.post(f"{API}/lessons/{L1}/end", headers=world.headers["t_own"])
    assert ended.status == 200
    # A receiving school's teacher never runs the lesson, a teacher of another school no.
    for actor in ("t_B", "t_own"):
        response = await app_client.post(f"{API}/lessons/{L2}/open", headers=world.headers[actor])
        assert response.status == 403
    # Teachers do not cancel: that is scheduling.
    response = await app_client.post(f"{API}/lessons/{L1}/cancel", headers=world.headers["t_own"])
    assert response.status == 403


async def test_a_school_admin_grants_only_teacher_and_device_in_their_school(
    app_client: TestClient, world: World
) -> None:
    sa_a = world.headers["sa_A"]

    async def create(body: dict) -> int:
        response = await app_client.post(f"{API}/users", json=body, headers=sa_a)
        return response.status

    base = {"password": PASSWORD, "school_id": world.school["A"]}
    box = {"password": PASSWORD, "role": "device"}
    assert await create({**box, "username": "dev_a", "classroom_id": world.room["A"]}) == 201
    assert await create({**box, "username": "dev_b", "classroom_id": world.room["B"]}) == 403
    assert await create({**base, "username": "boss", "role": "admin"}) == 403
    assert await create({**base, "username": "rv", "role": "reviewer"}) == 403
    assert (
        await create({**base, "username": "x", "role": "teacher", "school_id": world.school["B"]})
        == 403
    )
    promote = await app_client.patch(
        f"{API}/users/{world.user_id['t_own']}", json={"role": "school_admin"}, headers=sa_a
    )
    assert promote.status == 403
    foreign = await app_client.patch(
        f"{API}/users/{world.user_id['t_B']}", json={"disabled": True}, headers=sa_a
    )
    assert foreign.status == 403
    weak = await create({**base, "username": "weak", "role": "teacher", "password": "short"})
    assert weak == 400


async def test_a_lessons_teacher_account_must_teach_at_its_main_school(
    app_client: TestClient, world: World, admin_headers: dict
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    body = {
        "pairing_id": world.pairing["P1"],
        "kind": "dedicated",
        "subject": "数学",
        "grade": "初二",
        "teacher_name": "王老师",
        "title": "一次函数",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(minutes=40)).isoformat(),
        "teacher_user_id": world.user_id["t_B"],
    }
    response = await app_client.post(f"{API}/lessons", json=body, headers=admin_headers)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "teacher_user_id"
    # A school admin schedules only on pairings taught from their school.
    body["teacher_user_id"] = world.user_id["t_own"]
    refused = await app_client.post(f"{API}/lessons", json=body, headers=world.headers["sa_B"])
    assert refused.status == 403
    created = await app_client.post(f"{API}/lessons", json=body, headers=world.headers["sa_A"])
    assert created.status == 201
