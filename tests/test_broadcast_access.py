"""Who may watch a private live broadcast (/live/{id}/...): whoever may read the lesson, and
each viewer's first access is audited once, not per segment.

A private broadcast (a 专递课堂 lesson with broadcast on) shows minors' faces and voices:
the admin, reviewers, the staff of a school taking part and the box of a classroom in the
lesson may watch it; every other account gets 403, an anonymous caller 401. The playlist
and a segment are placed where the live broadcaster writes them (tests/test_broadcast.py
runs the broadcaster itself); the server under test is the real application on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom import sessions
from classroom.models import AuditEvent, User
from classroom.sessions import COOKIE_NAME
from classroom.users import create_user, issue_token
from recorder.broadcast import http as broadcast_http
from recorder.broadcast.live import BROADCASTS
from signaling.appkeys import DB

API = "/api/v1"
PASSWORD = "correct horse battery"
SEGMENT = "000001.ts"
FILES = ("lesson.json", "index.m3u8", SEGMENT)


async def post(client: TestClient, headers: dict, path: str, body: dict) -> dict[str, Any]:
    response = await client.post(API + path, json=body, headers=headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def lesson_on(
    client: TestClient, admin: dict, pairing: int, hour: int, kind: str = "dedicated", **extra: Any
) -> int:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1, hours=hour)
    lesson = await post(
        client,
        admin,
        "/lessons",
        {
            "pairing_id": pairing,
            "kind": kind,
            "subject": "物理",
            "grade": "初二",
            "teacher_name": "王老师",
            "title": "浮力",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(minutes=40)).isoformat(),
            **extra,
        },
    )
    return lesson["id"]


def broadcast_files(client: TestClient, lesson_id: int) -> None:
    """What the live broadcaster leaves in the lesson's folder: a playlist and a segment."""
    folder = client.app[BROADCASTS].directory(lesson_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n{SEGMENT}\n"
    )
    (folder / SEGMENT).write_bytes(b"\x47" + bytes(187))  # one MPEG-TS packet


ACCOUNTS = {
    # name: (role, school, classroom of a device, may watch L)
    "admin": ("admin", None, None, True),
    "reviewer": ("reviewer", None, None, True),
    "sa_A": ("school_admin", "A", None, True),
    "t_A": ("teacher", "A", None, True),
    "t_B": ("teacher", "B", None, True),
    "box_B1": ("device", "B", "B1", True),
    "box_B2": ("device", "B", "B2", False),  # same school, a classroom not in the lesson
    "sa_C": ("school_admin", "C", None, False),
    "t_C": ("teacher", "C", None, False),
    "box_C": ("device", "C", "C", False),
}


@pytest.fixture
async def world(app_client: TestClient, admin_headers: dict) -> dict[str, Any]:
    """Schools A (main room), B (rooms B1 in the lesson, B2 not), C (unrelated); a private
    broadcast L and a second one L2 on A → B1, a public one and one not broadcast; an
    account of each kind with a bearer token."""
    school, room = {}, {}
    for name, kind in (("A", "city"), ("B", "rural"), ("C", "city")):
        made = await post(app_client, admin_headers, "/schools", {"name": name, "kind": kind})
        school[name] = made["id"]
    for name, where in (("A", "A"), ("B1", "B"), ("B2", "B"), ("C", "C")):
        body = {"school_id": school[where], "name": f"教室{name}"}
        room[name] = (await post(app_client, admin_headers, "/classrooms", body))["id"]
    pairing = await post(
        app_client,
        admin_headers,
        "/pairings",
        {"name": "P", "main_classroom_id": room["A"], "receiving_classroom_ids": [room["B1"]]},
    )
    lessons = {
        "L": await lesson_on(app_client, admin_headers, pairing["id"], 0, broadcast=True),
        "L2": await lesson_on(app_client, admin_headers, pairing["id"], 1, broadcast=True),
        "public": await lesson_on(app_client, admin_headers, pairing["id"], 2, "famous_school"),
        "quiet": await lesson_on(app_client, admin_headers, pairing["id"], 3),
    }
    for lesson_id in lessons.values():
        broadcast_files(app_client, lesson_id)
    headers = {"anonymous": {}}
    async with app_client.app[DB]() as s:
        for name, (role, where, classroom, _) in ACCOUNTS.items():
            user = await create_user(
                s,
                username=f"u_{name}",
                password=PASSWORD,
                role=role,
                school_id=school[where] if where else None,
                classroom_id=room[classroom] if classroom else None,
            )
            headers[name] = {"Authorization": f"Bearer {await issue_token(s, user)}"}
    return {"room": room, "lesson": lessons, "headers": headers}


async def get(client: TestClient, lesson_id: int, name: str, headers: dict) -> int:
    response = await client.get(f"/live/{lesson_id}/{name}", headers=headers)
    await response.read()
    return response.status


async def audit_rows(client: TestClient, action: str) -> list[AuditEvent]:
    async with client.app[DB]() as s:
        rows = await s.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
        return list(rows.all())


async def test_a_private_broadcast_is_watched_by_who_may_read_the_lesson(
    app_client: TestClient, world: dict
) -> None:
    lesson = world["lesson"]["L"]
    for name, headers in world["headers"].items():
        want = 401 if name == "anonymous" else (200 if ACCOUNTS[name][3] else 403)
        for file in FILES:
            assert await get(app_client, lesson, file, headers) == want, (name, file)
    response = await app_client.get(f"/live/{lesson}/lesson.json", headers=world["headers"]["t_C"])
    refused = await response.json()
    assert refused["error"]["code"] == "forbidden"
    watched = await app_client.get(f"/live/{lesson}/lesson.json", headers=world["headers"]["t_B"])
    info = await watched.json()
    assert (info["lesson_id"], info["public"], info["title"]) == (lesson, False, "浮力")

    # The pages' session cookie is a credential like a bearer token.
    async with app_client.app[DB]() as s:
        reviewer = await s.scalar(sa.select(User).where(User.username == "u_reviewer"))
        outsider = await s.scalar(sa.select(User).where(User.username == "u_sa_C"))
        cookies = {
            u.username: (await sessions.create_session(s, u, remote="127.0.0.1")).cookie
            for u in (reviewer, outsider)
        }
    for username, want in (("u_reviewer", 200), ("u_sa_C", 403)):
        headers = {"Cookie": f"{COOKIE_NAME}={cookies[username]}"}
        assert await get(app_client, lesson, SEGMENT, headers) == want, username


async def test_public_and_unbroadcast_lessons_keep_their_rules_and_no_viewer_is_looked_up(
    app_client: TestClient, world: dict
) -> None:
    public, quiet = world["lesson"]["public"], world["lesson"]["quiet"]
    for name in ("anonymous", "t_C", "box_C"):
        assert await get(app_client, public, SEGMENT, world["headers"][name]) == 200
    for name in ("admin", "reviewer", "t_A"):
        assert await get(app_client, quiet, "index.m3u8", world["headers"][name]) == 404
    assert await audit_rows(app_client, "broadcast.watch") == []


async def test_each_viewer_is_audited_once_per_lesson_not_per_segment(
    app_client: TestClient, world: dict
) -> None:
    L, L2 = world["lesson"]["L"], world["lesson"]["L2"]
    t_b, t_c = world["headers"]["t_B"], world["headers"]["t_C"]
    assert await get(app_client, L, "lesson.json", t_b) == 200
    for _ in range(3):
        assert await get(app_client, L, "index.m3u8", t_b) == 200
        for _ in range(10):
            assert await get(app_client, L, SEGMENT, t_b) == 200
    assert await get(app_client, L2, SEGMENT, t_b) == 200  # another lesson: its own row
    for _ in range(5):
        assert await get(app_client, L, "index.m3u8", t_c) == 403

    watched = await audit_rows(app_client, "broadcast.watch")
    assert [(e.actor_name, e.target) for e in watched] == [
        ("u_t_B", f"lesson:{L}"),
        ("u_t_B", f"lesson:{L2}"),
    ]
    first = watched[0]
    assert first.detail == {"route": f"GET /live/{L}/lesson.json", "via": "bearer"}
    assert first.remote == "127.0.0.1"
    assert watched[1].detail["route"] == f"GET /live/{L2}/{SEGMENT}"
    denied = await audit_rows(app_client, "permission.denied")
    assert Counter((e.actor_name, e.target) for e in denied) == {("u_t_C", f"lesson:{L}"): 1}
    assert denied[0].detail["route"] == f"GET /live/{L}/index.m3u8"
    assert "not one you may watch" in denied[0].detail["reason"]


async def test_a_changed_lesson_changes_who_may_watch_it(
    app_client: TestClient, world: dict, admin_headers: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict is asked again after VIEWER_TTL (set to nothing here): a classroom taken
    out of the lesson loses its box's view, the one put in gains it."""
    monkeypatch.setattr(broadcast_http, "VIEWER_TTL", 0.0)
    monkeypatch.setattr(broadcast_http, "LESSON_FACTS_TTL", 0.0)
    lesson, room = world["lesson"]["L"], world["room"]
    b1, b2 = world["headers"]["box_B1"], world["headers"]["box_B2"]
    assert await get(app_client, lesson, SEGMENT, b1) == 200
    assert await get(app_client, lesson, SEGMENT, b2) == 403
    response = await app_client.patch(
        f"{API}/lessons/{lesson}",
        json={"receiving_classroom_ids": [room["B2"]]},
        headers=admin_headers,
    )
    assert response.status == 200, await response.text()
    assert await get(app_client, lesson, SEGMENT, b1) == 403
    assert await get(app_client, lesson, SEGMENT, b2) == 200
    assert await get(app_client, lesson, SEGMENT, b2) == 200
    watched = Counter(e.actor_name for e in await audit_rows(app_client, "broadcast.watch"))
    denied = Counter(e.actor_name for e in await audit_rows(app_client, "permission.denied"))
    assert watched == {"u_box_B1": 1, "u_box_B2": 1}
    assert denied == {"u_box_B1": 1, "u_box_B2": 1}
