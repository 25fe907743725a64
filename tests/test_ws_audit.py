"""Refused WebSocket joins leave an audit row (`signaling.join_refused`), and a flood of
them cannot fill the table: one row per address and error code per window, the rest
counted into the next row. Over the real WebSocket on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom.models import AuditEvent
from signaling.appkeys import DB, TOKENS
from signaling.live.join_refusals import ACTION, OVERFLOW, JoinRefusalLog
from signaling.live.tokens import JoinRole
from signaling.live.ws import JOIN_REFUSALS
from tests.test_join_token_binding import call, code, join


async def refusals(client: TestClient) -> list[AuditEvent]:
    async with client.app[DB]() as s:
        rows = await s.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == ACTION).order_by(AuditEvent.id)
        )
        return list(rows.all())


async def open_lessons(client: TestClient, admin: dict, lesson_factory) -> dict[str, Any]:
    """Two open lessons and one ended, each with a main and a receiving room."""
    made = {}
    for name in ("L", "L2", "ended"):
        lesson = await lesson_factory(receiving=1)
        await call(client, "POST", f"/lessons/{lesson['id']}/open", admin)
        made[name] = lesson
    await call(client, "POST", f"/lessons/{made['ended']['id']}/end", admin)
    return made


async def test_every_kind_of_refused_join_leaves_a_row_naming_what_was_refused(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lessons = await open_lessons(app_client, admin_headers, lesson_factory)
    L, L2 = lessons["L"]["id"], lessons["L2"]["id"]
    rural = lessons["L"]["rooms"][1]["classroom_id"]
    tokens = app_client.app[TOKENS]

    def mint(lesson_id: int, role: JoinRole, classroom_id: int | None, ttl_s: int = 300) -> str:
        return tokens.mint(
            lesson_id=lesson_id,
            classroom_id=classroom_id,
            role=role,
            ttl=timedelta(seconds=ttl_s),
            subject="box-rural",
        )[0]

    room = mint(L, JoinRole.RECEIVING, rural)
    ok = await join(app_client, room)
    assert ok["type"] == "joined"
    assert await refusals(app_client) == []  # a join let in is no refusal

    elsewhere = lessons["L2"]["rooms"][1]["classroom_id"]
    attempts = [
        ("token_invalid", "not-a-token", {"lesson_id": L}),
        ("token_expired", mint(L, JoinRole.RECEIVING, rural, ttl_s=-60), {}),
        ("token_wrong_lesson", room, {"lesson_id": L2}),
        ("token_wrong_role", mint(L, JoinRole.RECEIVING, elsewhere), {}),  # signed, not L's
        ("lesson_ended", mint(lessons["ended"]["id"], JoinRole.WATCH, None), {}),
    ]
    for want, token, fields in attempts:
        assert code(await join(app_client, token, **fields)) == want

    rows = await refusals(app_client)
    assert [r.detail["code"] for r in rows] == [a[0] for a in attempts]
    by_code = {r.detail["code"]: r for r in rows}
    assert all(r.remote == "127.0.0.1" and r.detail["suppressed"] == 0 for r in rows)
    # A token that did not verify says nothing trusted: the message's lesson, no user.
    bad = by_code["token_invalid"]
    assert (bad.actor_name, bad.target, bad.detail["lesson_id"]) == ("", f"lesson:{L}", L)
    assert bad.detail["classroom_id"] is None
    # A verified one names who it was minted for and the room it speaks for.
    wrong_room = by_code["token_wrong_role"]
    assert wrong_room.actor_name == "box-rural"
    assert (wrong_room.detail["lesson_id"], wrong_room.detail["classroom_id"]) == (L, elsewhere)
    assert wrong_room.detail["role"] == "receiving"
    assert str(elsewhere) in wrong_room.detail["reason"]
    assert by_code["lesson_ended"].detail["role"] == "watch"


async def test_a_flood_of_refused_joins_writes_one_row_and_counts_the_rest(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lessons = await open_lessons(app_client, admin_headers, lesson_factory)
    log = app_client.app[JOIN_REFUSALS]
    log.window = 3600.0  # the whole flood falls in one window, however slow the machine
    for _ in range(30):
        assert code(await join(app_client, "forged")) == "token_invalid"
    rows = await refusals(app_client)
    assert [(r.detail["code"], r.detail["suppressed"]) for r in rows] == [("token_invalid", 0)]

    # Another code from the same address has its own row; the window over, the next row
    # says how many were held back.
    expired = app_client.app[TOKENS].mint(
        lesson_id=lessons["L"]["id"], classroom_id=None, role=JoinRole.WATCH,
        ttl=timedelta(seconds=-60),
    )[0]  # fmt: skip
    assert code(await join(app_client, expired)) == "token_expired"
    log.window = 0.0
    assert code(await join(app_client, "forged")) == "token_invalid"
    rows = await refusals(app_client)
    assert [(r.detail["code"], r.detail["suppressed"]) for r in rows] == [
        ("token_invalid", 0),
        ("token_expired", 0),
        ("token_invalid", 29),
    ]


def test_the_log_keeps_one_slot_per_address_and_code_and_stays_bounded() -> None:
    log = JoinRefusalLog(window=10.0, max_keys=3)
    assert log.admit("10.0.0.1", "token_invalid", now=0.0) == 0
    assert log.admit("10.0.0.1", "token_invalid", now=1.0) is None
    assert log.admit("10.0.0.1", "token_invalid", now=9.9) is None
    assert log.admit("10.0.0.1", "token_expired", now=2.0) == 0  # another code
    assert log.admit("10.0.0.2", "token_invalid", now=3.0) == 0  # another address
    assert log.admit("10.0.0.1", "token_invalid", now=10.0) == 2  # the window is over
    # Full: a new address shares the overflow slot of its code...
    assert log.admit("10.0.0.3", "token_invalid", now=11.0) == 0
    assert (OVERFLOW, "token_invalid") in log._slots
    assert log.admit("10.0.0.4", "token_invalid", now=12.0) is None
    # ...until slots older than the window without held-back refusals are forgotten.
    assert log.admit("10.0.0.5", "token_invalid", now=40.0) == 0
    assert ("10.0.0.5", "token_invalid") in log._slots
    assert len(log._slots) <= 3
