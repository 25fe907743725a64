"""A join token opens one lesson, as one room, in one role: never another.

tests/test_tokens.py checks the signature, expiry and claims of tokens made by hand, and
tests/test_signaling_abuse.py refuses an expired, a tampered, a wrong-lesson and a
wrong-role token on a live server. What they leave out, here over the WebSocket on
SQLite and PostgreSQL with tokens minted through the API by the accounts that would
really ask: a room's token cannot be pointed at a second lesson that holds the very
same classroom; the rejoin token handed out in `joined` is bound exactly like the token
it replaces; a watcher's token cannot speak for a room; a token outlives neither its
lesson's end nor opens a lesson before it is open; and a token naming a classroom that
is not in the lesson is refused even when correctly signed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from classroom.models import UserRole
from signaling.appkeys import TOKENS
from signaling.live.tokens import JoinRole

API = "/api/v1"
WS = "/ws/v1"


async def call(client: TestClient, method: str, path: str, headers: dict, body: Any = None):
    response = await client.request(method, API + path, json=body, headers=headers)
    assert response.status in (200, 201), (path, await response.text())
    return await response.json()


async def first(ws: aiohttp.ClientWebSocketResponse, *types: str) -> dict[str, Any]:
    """The next message of one of `types` (offers and slot updates may come between)."""
    while True:
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data = json.loads(message.data)
        if data["type"] in types:
            return data


async def join(client: TestClient, token: str, **fields: Any) -> dict[str, Any]:
    """Join on a new socket: `joined` or the fatal error (the socket then closes)."""
    async with client.ws_connect(WS) as ws:
        await ws.send_str(json.dumps({"type": "join", "v": 1, "token": token, **fields}))
        reply = await first(ws, "joined", "error")
        if reply["type"] == "error":
            assert reply["fatal"] is True
            closing = await ws.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        return reply


def code(reply: dict[str, Any]) -> str:
    return reply["code"] if reply["type"] == "error" else "joined"


@pytest.fixture
async def two_lessons(app_client: TestClient, admin_headers: dict, lesson_factory, headers_for):
    """Lessons L and L2 on the same pairing (so with the same receiving classroom), both
    open, and the receiving school's device account."""
    lesson = await lesson_factory(receiving=1)
    main, room = (r["classroom_id"] for r in lesson["rooms"])
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    second = await call(
        app_client,
        "POST",
        "/lessons",
        admin_headers,
        {
            "pairing_id": lesson["pairing_id"],
            "kind": "dedicated",
            "subject": "语文",
            "grade": "初二",
            "teacher_name": "李老师",
            "title": "背影",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(minutes=40)).isoformat(),
        },
    )
    for lesson_id in (lesson["id"], second["id"]):
        await call(app_client, "POST", f"/lessons/{lesson_id}/open", admin_headers)
    device = await headers_for(UserRole.DEVICE, classroom_id=room)
    return {"L": lesson["id"], "L2": second["id"], "main": main, "room": room, "device": device}


async def test_a_rooms_token_joins_its_lesson_only_as_its_room(
    app_client: TestClient, two_lessons: dict
) -> None:
    lessons, room = two_lessons, two_lessons["room"]
    minted = await call(
        app_client,
        "POST",
        f"/lessons/{lessons['L']}/join-tokens",
        lessons["device"],
        {"role": "receiving", "classroom_id": room},
    )
    token = minted["token"]
    # L2 holds the same classroom as a receiving room, yet the token is L's.
    assert code(await join(app_client, token, lesson_id=lessons["L2"])) == "token_wrong_lesson"
    assert code(await join(app_client, token, role="main")) == "token_wrong_role"
    assert code(await join(app_client, token, role="watch")) == "token_wrong_role"
    joined = await join(app_client, token)
    assert joined["lesson"]["lesson_id"] == lessons["L"]
    assert joined["you"]["classroom_id"] == room and joined["you"]["role"] == "receiving"

    # The rejoin token is bound exactly like the token it replaces.
    rejoin = joined["rejoin_token"]
    claims = app_client.app[TOKENS].verify(rejoin, lesson_id=lessons["L"])
    assert (claims.classroom_id, claims.role) == (room, JoinRole.RECEIVING)
    assert code(await join(app_client, rejoin, lesson_id=lessons["L2"])) == "token_wrong_lesson"
    assert code(await join(app_client, rejoin, role="main")) == "token_wrong_role"
    again = await join(app_client, rejoin, lesson_id=lessons["L"], role="receiving")
    assert (again["you"]["classroom_id"], again["lesson"]["lesson_id"]) == (room, lessons["L"])


async def test_a_watchers_token_speaks_for_no_room(
    app_client: TestClient, two_lessons: dict, headers_for
) -> None:
    reviewer = await headers_for(UserRole.REVIEWER)
    minted = await call(
        app_client,
        "POST",
        f"/lessons/{two_lessons['L']}/join-tokens",
        reviewer,
        {"role": "watch"},
    )
    for role in ("receiving", "main"):
        assert code(await join(app_client, minted["token"], role=role)) == "token_wrong_role"
    assert code(await join(app_client, minted["token"], lesson_id=two_lessons["L2"])) == (
        "token_wrong_lesson"
    )
    joined = await join(app_client, minted["token"])
    assert joined["you"] == {"classroom_id": None, "role": "watch", "name": joined["you"]["name"]}
    rejoin = app_client.app[TOKENS].verify(joined["rejoin_token"], lesson_id=two_lessons["L"])
    assert (rejoin.role, rejoin.classroom_id) == (JoinRole.WATCH, None)


async def test_a_token_neither_outlives_its_lesson_nor_opens_it_early(
    app_client: TestClient, admin_headers: dict, two_lessons: dict, lesson_factory
) -> None:
    lessons = two_lessons
    body = {"role": "receiving", "classroom_id": lessons["room"]}
    minted = await call(
        app_client, "POST", f"/lessons/{lessons['L']}/join-tokens", lessons["device"], body
    )
    await call(app_client, "POST", f"/lessons/{lessons['L']}/end", admin_headers)
    assert code(await join(app_client, minted["token"])) == "lesson_ended"

    scheduled = await lesson_factory(receiving=1)
    rural = scheduled["rooms"][1]["classroom_id"]
    early = await call(
        app_client,
        "POST",
        f"/lessons/{scheduled['id']}/join-tokens",
        admin_headers,
        {"role": "receiving", "classroom_id": rural},
    )
    assert code(await join(app_client, early["token"])) == "lesson_not_open"
    await call(app_client, "POST", f"/lessons/{scheduled['id']}/cancel", admin_headers)
    assert code(await join(app_client, early["token"])) == "lesson_ended"


async def test_a_signed_token_for_a_classroom_outside_the_lesson_is_refused(
    app_client: TestClient, two_lessons: dict, lesson_factory
) -> None:
    """Only the server can sign one (the API refuses to mint it: 400 unknown_room), so
    this is the last line: the join checks the lesson's rooms itself."""
    elsewhere = (await lesson_factory(receiving=1))["rooms"][1]["classroom_id"]
    tokens = app_client.app[TOKENS]
    for role in (JoinRole.RECEIVING, JoinRole.MAIN):
        token, _ = tokens.mint(
            lesson_id=two_lessons["L"], classroom_id=elsewhere, role=role, ttl=timedelta(minutes=5)
        )
        assert code(await join(app_client, token)) == "token_wrong_role"
    # The main room's classroom presented as a receiving room (the reverse is in
    # tests/test_signaling_abuse.py).
    token, _ = tokens.mint(
        lesson_id=two_lessons["L"],
        classroom_id=two_lessons["main"],
        role=JoinRole.RECEIVING,
        ttl=timedelta(minutes=5),
    )
    assert code(await join(app_client, token)) == "token_wrong_role"
