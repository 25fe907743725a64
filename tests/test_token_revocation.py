"""A join token speaks for its account only while the account may still join.

Join tokens are signed, not stored: a box's rejoin token lasts until half an hour after its
lesson. Disabling the account (a stolen box, a teacher who left) or moving a device to
another classroom must end what those tokens open, at once and at every later join, over
the real WebSocket on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom.models import AuditEvent
from signaling.appkeys import DB, TOKENS
from signaling.live.tokens import JoinRole
from tests.test_device_binding import bearer_for, call, registers
from tests.test_join_token_binding import WS, code, first, join


async def mint(client: TestClient, lesson_id: int, headers: dict, body: dict) -> str:
    status, minted = await call(client, "POST", f"/lessons/{lesson_id}/join-tokens", headers,
                                body)
    assert status == 201, minted
    return minted["token"]


async def joined_socket(client: TestClient, token: str) -> tuple[Any, dict[str, Any]]:
    ws = await client.ws_connect(WS)
    await ws.send_str(json.dumps({"type": "join", "v": 1, "token": token}))
    reply = await first(ws, "joined", "error")
    assert reply["type"] == "joined", reply
    return ws, reply


async def put_out(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The fatal error that ends a joined socket, and the close that follows it."""
    error = await first(ws, "error")
    assert error["fatal"] is True
    closing = await ws.receive(timeout=5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    return error


async def audit_rows(client: TestClient, action: str) -> list[AuditEvent]:
    async with client.app[DB]() as s:
        return list(await s.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


@dataclass
class BoxInLesson:
    """A receiving room's box (a device account) joined to open lesson L on its socket."""

    world: dict[str, Any]
    lesson: int
    box_id: int
    box: dict[str, str]
    token: str
    ws: aiohttp.ClientWebSocketResponse
    joined: dict[str, Any]


async def box_in_lesson(
    client: TestClient, admin: dict[str, str], username: str, room: str
) -> BoxInLesson:
    world = await registers(client, admin)
    lesson, classroom = world["lesson"]["L"], world["room"][room]
    box_id, box = await bearer_for(client, username=username, role="device",
                                   classroom_id=classroom)
    await call(client, "POST", f"/lessons/{lesson}/open", admin)
    token = await mint(client, lesson, box, {"role": "receiving", "classroom_id": classroom})
    ws, joined = await joined_socket(client, token)
    return BoxInLesson(world, lesson, box_id, box, token, ws, joined)


async def test_a_disabled_box_is_put_out_of_its_lesson_and_its_tokens_join_no_more(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    b = await box_in_lesson(app_client, admin_headers, "box-b1", "B1")
    box_id, token, joined = b.box_id, b.token, b.joined
    try:
        status, _ = await call(app_client, "PATCH", f"/users/{box_id}", admin_headers,
                               {"disabled": True})
        assert status == 200
        error = await put_out(b.ws)
        assert error["code"] == "token_revoked" and "box-b1" in error["message"]
    finally:
        await b.ws.close()
    # Neither the token it joined with nor the rejoin token it was given opens the lesson.
    assert code(await join(app_client, token)) == "token_revoked"
    assert code(await join(app_client, joined["rejoin_token"])) == "token_revoked"

    [updated] = [r for r in await audit_rows(app_client, "user.updated")
                 if r.target == "user:box-b1"]
    assert updated.detail["live_sessions_closed"] == 1 and updated.detail["disabled"] is True
    # One row per address and code per 10 s (join_refusals): the first refusal is on record.
    refusals = await audit_rows(app_client, "signaling.join_refused")
    assert [r.detail["code"] for r in refusals] == ["token_revoked"]

    # Enabled again (a false alarm), the same box joins with the token it holds.
    await call(app_client, "PATCH", f"/users/{box_id}", admin_headers, {"disabled": False})
    assert code(await join(app_client, joined["rejoin_token"])) == "joined"


async def test_a_box_moved_to_another_classroom_leaves_the_old_rooms_lesson(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    b = await box_in_lesson(app_client, admin_headers, "box-moving", "B1")
    b2 = b.world["room"]["B2"]
    try:
        status, moved = await call(app_client, "PATCH", f"/users/{b.box_id}", admin_headers,
                                   {"classroom_id": b2})
        assert status == 200 and moved["classroom_id"] == b2, moved
        assert (await put_out(b.ws))["code"] == "token_revoked"
    finally:
        await b.ws.close()
    assert code(await join(app_client, b.joined["rejoin_token"])) == "token_revoked"
    # In its new classroom it joins as that room, with a token for it.
    token = await mint(app_client, b.lesson, b.box, {"role": "receiving", "classroom_id": b2})
    assert code(await join(app_client, token)) == "joined"


async def test_a_disabled_reviewers_watch_token_and_an_operators_token(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    w = await registers(app_client, admin_headers)
    lesson = w["lesson"]["L"]
    reviewer_id, reviewer = await bearer_for(app_client, username="jiaoyan", role="reviewer")
    await call(app_client, "POST", f"/lessons/{lesson}/open", admin_headers)
    watch = await mint(app_client, lesson, reviewer, {"role": "watch"})
    await call(app_client, "PATCH", f"/users/{reviewer_id}", admin_headers, {"disabled": True})
    assert code(await join(app_client, watch)) == "token_revoked"
    # A token the server's operator minted (the demo's agents) names no account: it joins.
    operator, _ = app_client.app[TOKENS].mint(
        lesson_id=lesson, classroom_id=None, role=JoinRole.WATCH,
        ttl=timedelta(minutes=5), subject="demo")
    assert code(await join(app_client, operator)) == "joined"
