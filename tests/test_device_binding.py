"""A device account is its classroom's own credential (users.classroom_id, revision 0008).

A classroom box may read, list and join only the lessons of its one classroom; creating one
names the classroom and takes its school; a device made before the binding existed is
refused, saying so, until an admin binds it, and the migration keeps its row, its tokens
and its sessions. Through the API on SQLite and PostgreSQL, the `tongbu admin` commands as
real processes, and `tongbu agent --auto` against a running server.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from classroom import audit
from classroom.config import Settings
from classroom.db import close_database, create_engine, migrate, open_database
from classroom.models import ApiToken, AuditEvent, Classroom, School, User
from classroom.users import create_user, hash_password, issue_token
from signaling.app import create_app
from signaling.appkeys import DB
from tests.live_harness import TONGBU, AgentProcess, running_server, wait_for

API = "/api/v1"
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent


async def call(
    client: TestClient, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    response = await client.request(method, API + path, json=body, headers=headers)
    return response.status, await response.json()


async def post(client: TestClient, headers: dict[str, str], path: str, body: Any) -> dict:
    status, answer = await call(client, "POST", path, headers, body)
    assert status == 201, answer
    return answer


async def bearer_for(client: TestClient, **fields: Any) -> tuple[int, dict[str, str]]:
    async with client.app[DB]() as s:
        user = await create_user(s, password=PASSWORD, **fields)
        return user.id, {"Authorization": f"Bearer {await issue_token(s, user, name='test')}"}


async def registers(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    """City school A (main room), rural school B with two rooms B1 and B2, and two lessons
    tomorrow: L on A → [B1, B2], L2 on a second city room A2 → [B1] an hour later."""
    a = await post(client, admin, "/schools", {"name": "城关一中", "kind": "city"})
    b = await post(client, admin, "/schools", {"name": "青山村小", "kind": "rural"})
    room = {
        name: (await post(client, admin, "/classrooms", {"school_id": s["id"], "name": name}))["id"]
        for name, s in (("A", a), ("A2", a), ("B1", b), ("B2", b))
    }
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    lessons = {}
    for name, main, receiving, at in (
        ("L", "A", ["B1", "B2"], start),
        ("L2", "A2", ["B1"], start + timedelta(hours=1)),
    ):
        pairing = await post(
            client,
            admin,
            "/pairings",
            {
                "name": f"结对{name}",
                "main_classroom_id": room[main],
                "receiving_classroom_ids": [room[r] for r in receiving],
            },
        )
        lesson = await post(
            client,
            admin,
            "/lessons",
            {
                "pairing_id": pairing["id"],
                "kind": "dedicated",
                "subject": "数学",
                "grade": "初二",
                "teacher_name": "王老师",
                "title": f"一次函数{name}",
                "planned_start": at.isoformat(),
                "planned_end": (at + timedelta(minutes=40)).isoformat(),
            },
        )
        lessons[name] = lesson["id"]
    return {"school": {"A": a["id"], "B": b["id"]}, "room": room, "lesson": lessons}


async def test_creating_a_device_names_its_classroom_and_takes_its_school(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    w = await registers(app_client, admin_headers)
    room, school = w["room"], w["school"]
    box = {"password": PASSWORD, "role": "device"}

    status, missing = await call(
        app_client, "POST", "/users", admin_headers, {**box, "username": "b0"}
    )
    assert status == 400 and missing["error"]["field"] == "classroom_id"
    assert "name the classroom" in missing["error"]["message"]

    made = await post(
        app_client, admin_headers, "/users", {**box, "username": "b1", "classroom_id": room["B1"]}
    )
    assert (made["classroom_id"], made["school_id"]) == (room["B1"], school["B"])
    async with app_client.app[DB]() as s:
        row = await s.scalar(sa.select(User).where(User.username == "b1"))
        assert (row.classroom_id, row.school_id) == (room["B1"], school["B"])
        created = await audit.list_events(s, action="user.created")
    assert created[0].detail["classroom_id"] == room["B1"]

    # A school that is not the classroom's, another role with a classroom, no such room.
    refusals = [
        (
            {"username": "b2", "classroom_id": room["B1"], "school_id": school["A"]},
            400,
            "school_id",
        ),
        ({"username": "b3", "classroom_id": 999_999}, 404, "classroom_id"),
    ]
    for body, want, field in refusals:
        status, answer = await call(app_client, "POST", "/users", admin_headers, {**box, **body})
        assert (status, answer["error"]["field"]) == (want, field), answer
    teacher = {"username": "t1", "password": PASSWORD, "role": "teacher"}
    status, answer = await call(
        app_client,
        "POST",
        "/users",
        admin_headers,
        {**teacher, "school_id": school["A"], "classroom_id": room["A"]},
    )
    assert (status, answer["error"]["field"]) == (400, "classroom_id")

    # A school admin makes the boxes of their own school's classrooms only.
    _, sa_b = await bearer_for(
        app_client, username="sa_b", role="school_admin", school_id=school["B"]
    )
    assert (
        await call(
            app_client,
            "POST",
            "/users",
            sa_b,
            {**box, "username": "b4", "classroom_id": room["B2"]},
        )
    )[0] == 201
    status, answer = await call(
        app_client, "POST", "/users", sa_b, {**box, "username": "b5", "classroom_id": room["A"]}
    )
    assert (status, answer["error"]["code"]) == (403, "forbidden")

    # An archived classroom gets no new box.
    archived = await post(
        app_client, admin_headers, "/classrooms", {"school_id": school["B"], "name": "旧教室"}
    )
    patched = await app_client.patch(
        f"{API}/classrooms/{archived['id']}", json={"active": False}, headers=admin_headers
    )
    assert patched.status == 200
    status, answer = await call(
        app_client,
        "POST",
        "/users",
        admin_headers,
        {**box, "username": "b6", "classroom_id": archived["id"]},
    )
    assert (status, answer["error"]["code"]) == (409, "conflict")


async def test_a_device_reads_lists_and_joins_only_its_own_classroom(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    w = await registers(app_client, admin_headers)
    room, lesson = w["room"], w["lesson"]
    _, b1 = await bearer_for(app_client, username="box-b1", role="device", classroom_id=room["B1"])
    _, b2 = await bearer_for(app_client, username="box-b2", role="device", classroom_id=room["B2"])

    async def lesson_ids(headers: dict[str, str]) -> list[int]:
        status, page = await call(app_client, "GET", "/lessons", headers)
        assert status == 200, page
        return [x["id"] for x in page["items"]]

    # B1 is in both lessons, B2 in L only: same school, different boxes.
    assert await lesson_ids(b1) == [lesson["L"], lesson["L2"]]
    assert await lesson_ids(b2) == [lesson["L"]]
    assert (await call(app_client, "GET", f"/lessons/{lesson['L2']}", b1))[0] == 200
    status, refused = await call(app_client, "GET", f"/lessons/{lesson['L2']}", b2)
    assert status == 403 and "your classroom" in refused["error"]["message"]

    status, mine = await call(app_client, "GET", "/devices/me/lessons", b2)
    assert status == 200, mine
    assert [(i["lesson_id"], i["classroom_id"]) for i in mine["items"]] == [
        (lesson["L"], room["B2"])
    ]
    status, other = await call(
        app_client, "GET", f"/devices/me/lessons?classroom_id={room['B1']}", b2
    )
    assert status == 403 and "classroom" in other["error"]["message"]

    # Join tokens: its own room only, even in a lesson it takes part in.
    await call(app_client, "POST", f"/lessons/{lesson['L']}/open", admin_headers)
    path = f"/lessons/{lesson['L']}/join-tokens"
    own = {"role": "receiving", "classroom_id": room["B2"]}
    status, token = await call(app_client, "POST", path, b2, own)
    assert status == 201 and token["classroom_id"] == room["B2"]
    neighbour = {"role": "receiving", "classroom_id": room["B1"]}
    status, refused = await call(app_client, "POST", path, b2, neighbour)
    assert status == 403 and f"classroom {room['B2']}'s" in refused["error"]["message"]
    async with app_client.app[DB]() as s:
        denied = await s.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "permission.denied", AuditEvent.actor_name == "box-b2"
            )
        )
        routes = sorted(e.detail["route"] for e in denied)
    assert routes == [
        f"GET {API}/devices/me/lessons",
        f"GET {API}/lessons/{{id}}",
        f"POST {API}/lessons/{{id}}/join-tokens",
    ]


async def test_binding_follows_the_device_through_edits(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    w = await registers(app_client, admin_headers)
    room, school = w["room"], w["school"]
    box_id, _ = await bearer_for(app_client, username="box", role="device", classroom_id=room["B1"])

    async def patch(body: dict, headers: dict[str, str] = admin_headers) -> tuple[int, Any]:
        return await call(app_client, "PATCH", f"/users/{box_id}", headers, body)

    # Moving a box to another school needs a classroom there; the classroom brings it.
    status, answer = await patch({"school_id": school["A"]})
    assert (status, answer["error"]["field"]) == (400, "classroom_id")
    status, moved = await patch({"classroom_id": room["A2"]})
    assert status == 200 and (moved["classroom_id"], moved["school_id"]) == (
        room["A2"],
        school["A"],
    )
    # A school admin binds only to their school's classrooms, and only their own boxes.
    _, sa_a = await bearer_for(
        app_client, username="sa_a", role="school_admin", school_id=school["A"]
    )
    assert (await patch({"classroom_id": room["A"]}, sa_a))[0] == 200
    assert (await patch({"classroom_id": room["B2"]}, sa_a))[0] == 403
    # A classroom with a box is in use: not deleted, not moved to another school.
    spare = await post(
        app_client, admin_headers, "/classrooms", {"school_id": school["A"], "name": "空"}
    )
    assert (await patch({"classroom_id": spare["id"]}))[0] == 200
    status, answer = await call(app_client, "DELETE", f"/classrooms/{spare['id']}", admin_headers)
    assert status == 409 and "1 users" in answer["error"]["message"]
    status, answer = await call(
        app_client, "PATCH", f"/classrooms/{spare['id']}", admin_headers, {"school_id": school["B"]}
    )
    assert status == 409 and answer["error"]["field"] == "school_id"
    # No longer a device: no classroom. A device again: name it.
    status, teacher = await patch({"role": "teacher"})
    assert status == 200 and teacher["classroom_id"] is None
    status, answer = await patch({"role": "device"})
    assert (status, answer["error"]["field"]) == (400, "classroom_id")
    status, device = await patch({"role": "device", "classroom_id": room["A"]})
    assert status == 200 and device["classroom_id"] == room["A"]


async def _pre_binding_world(database_url: str) -> dict[str, Any]:
    """A database at revision 0007 (before the binding) with a school, a classroom and a
    device account that has a live API token, written as that revision's tables were."""
    engine = create_engine(database_url)
    token = "tb_legacy-device-token"
    try:
        await migrate(engine, "0007")
        async with engine.begin() as conn:
            school = (
                await conn.execute(
                    sa.insert(School.__table__)
                    .values(name="青山村小", kind="rural", region="", timezone="Asia/Shanghai")
                    .returning(School.__table__.c.id)
                )
            ).scalar_one()
            classroom = (
                await conn.execute(
                    sa.insert(Classroom.__table__)
                    .values(school_id=school, name="听课教室")
                    .returning(Classroom.__table__.c.id)
                )
            ).scalar_one()
            users = User.__table__
            device = (
                await conn.execute(
                    sa.insert(users)
                    .values(
                        username="old-box",
                        display_name="old-box",
                        role="device",
                        school_id=school,
                        password_hash=await hash_password(PASSWORD),
                    )
                    .returning(users.c.id)
                )
            ).scalar_one()
            await conn.execute(
                sa.insert(ApiToken.__table__).values(
                    user_id=device,
                    token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                    name="box",
                )
            )
    finally:
        await engine.dispose()
    return {"school": school, "classroom": classroom, "device": device, "token": token}


async def test_an_existing_device_survives_the_migration_unbound_and_is_refused_until_bound(
    empty_settings: Settings,
) -> None:
    settings = empty_settings
    old = await _pre_binding_world(settings.database_url)
    client = TestClient(TestServer(create_app(settings)))  # serving migrates to 0008
    await client.start_server()
    try:
        async with client.app[DB]() as s:
            row = await s.get(User, old["device"])
            assert row is not None and (row.classroom_id, row.school_id) == (None, old["school"])
            admin = await create_user(s, username="root", password=PASSWORD, role="admin")
            admin_headers = {"Authorization": f"Bearer {await issue_token(s, admin)}"}
        box = {"Authorization": f"Bearer {old['token']}"}  # its token outlived the migration

        status, me = await call(client, "GET", "/me", box)
        assert status == 200 and me["classroom_id"] is None
        for method, path in (
            ("GET", "/lessons"),
            ("GET", "/devices/me/lessons"),
            ("GET", "/classrooms"),
        ):
            status, refused = await call(client, method, path, box)
            assert status == 403, (path, refused)
            message = refused["error"]["message"]
            assert "bound to no classroom" in message and f"/users/{old['device']}" in message

        status, bound = await call(
            client, "PATCH", f"/users/{old['device']}", admin_headers,
            {"classroom_id": old["classroom"]},
        )  # fmt: skip
        assert status == 200 and bound["classroom_id"] == old["classroom"]
        status, mine = await call(client, "GET", "/devices/me/lessons", box)
        assert status == 200 and mine["items"] == []
        async with client.app[DB]() as s:
            updated = await audit.list_events(s, action="user.updated")
        assert updated[0].detail == {"classroom_id": old["classroom"]}
    finally:
        await client.close()


def tongbu(
    database_url: str, *args: str, password: str | None = PASSWORD
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if password is not None:
        env["TONGBU_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "signaling", "admin", *args, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_the_command_line_makes_and_binds_device_accounts(database_url: str) -> None:
    async def setup() -> dict[str, int]:
        sessionmaker = await open_database(database_url)
        try:
            async with sessionmaker() as s:
                from classroom import schools

                school = await schools.create_school(s, name="青山村小", kind="rural")
                first = await schools.create_classroom(s, school_id=school.id, name="一班")
                second = await schools.create_classroom(s, school_id=school.id, name="二班")
                return {"school": school.id, "first": first.id, "second": second.id}
        finally:
            await close_database(sessionmaker)

    ids = asyncio.run(setup())
    refused = tongbu(database_url, "create-user", "--username", "box", "--role", "device",
                     password=None)  # fmt: skip
    assert refused.returncode == 2
    assert "give --classroom ID" in refused.stderr  # said before asking for a password
    made = tongbu(
        database_url, "create-user", "--username", "box", "--role", "device",
        "--classroom", str(ids["first"]),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    moved = tongbu(database_url, "bind-device", "--username", "box", "--classroom",
                   str(ids["second"]))  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    assert f"to classroom {ids['second']} (school {ids['school']})" in moved.stdout
    teacher = tongbu(database_url, "create-user", "--username", "t", "--role", "teacher",
                     "--school-id", str(ids["school"]))  # fmt: skip
    assert teacher.returncode == 0, teacher.stderr
    not_a_box = tongbu(database_url, "bind-device", "--username", "t", "--classroom",
                       str(ids["first"]))  # fmt: skip
    assert not_a_box.returncode == 1 and "not a device" in not_a_box.stderr
    nowhere = tongbu(database_url, "bind-device", "--username", "box", "--classroom", "999999")
    assert nowhere.returncode == 1 and "no classroom 999999" in nowhere.stderr

    async def stored() -> tuple[Any, list[Any]]:
        sessionmaker = await open_database(database_url)
        try:
            async with sessionmaker() as s:
                user = await s.scalar(sa.select(User).where(User.username == "box"))
                events = await audit.list_events(s, action="user.updated")
                return (user.classroom_id, user.school_id), [e.detail for e in events]
        finally:
            await close_database(sessionmaker)

    binding, events = asyncio.run(stored())
    assert binding == (ids["second"], ids["school"])
    assert events == [{"changes": {"classroom_id": [ids["first"], ids["second"]]}}]


@pytest.mark.timeout(180)
async def test_an_auto_box_follows_its_binding_and_stops_on_a_wrong_or_missing_one(
    tmp_path: Path,
) -> None:
    """`tongbu agent --auto` asks the server which classroom it is; `--classroom` naming
    another one, or an account bound to none, stops it (status 2) with the reason."""
    async with running_server(tmp_path / "data") as server:
        api = server.api
        school = await api.call("POST", "/schools", {"name": "青山村小", "kind": "rural"})
        rooms = [
            (await api.call("POST", "/classrooms", {"school_id": school["id"], "name": n}))["id"]
            for n in ("一班", "二班")
        ]
        await api.call(
            "POST", "/users",
            {"username": "box", "password": PASSWORD, "role": "device", "classroom_id": rooms[1]},
        )  # fmt: skip
        async with server.app[DB]() as s:
            box = await s.scalar(sa.select(User).where(User.username == "box"))
            token = await issue_token(s, box, name="box")
            unbound = User(
                username="old-box",
                role="device",
                school_id=school["id"],
                password_hash=await hash_password(PASSWORD),
            )  # as a row from before revision 0008
            s.add(unbound)
            await s.commit()
            old_token = await issue_token(s, unbound, name="old")

        def start(name: str, device_token: str, *extra: str) -> AgentProcess:
            report = tmp_path / f"{name}.jsonl"
            report.touch()
            process = subprocess.Popen(
                [TONGBU, "agent", "--auto", "--server", server.base_url,
                 "--device-token", device_token, "--refresh", "2", "--report", str(report),
                 *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            return AgentProcess(name, report, process)

        agents = [
            start("follows", token),
            start("mismatch", token, "--classroom", str(rooms[0])),
            start("unbound", old_token),
        ]
        try:
            follows = agents[0]
            seen = await wait_for(lambda: follows.of("timetable"), 60, "its timetable")
            assert seen[0]["classroom_id"] == rooms[1] and follows.process.poll() is None
            for agent, code in ((agents[1], "classroom_mismatch"), (agents[2], "device_unbound")):
                await wait_for(lambda a=agent: a.process.poll() is not None, 60, f"{code} stop")
                assert agent.process.returncode == 2
                assert [r["code"] for r in agent.of("refused")] == [code]
            assert "二班" not in agents[1].of("refused")[0]["message"]  # says ids, not guesses
            assert f"classroom {rooms[1]}'s" in agents[1].of("refused")[0]["message"]
        finally:
            for agent in agents:
                await agent.stop()
