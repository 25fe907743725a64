"""Scheduling and running lessons through the API, and minting join tokens for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from classroom import audit
from classroom.models import UserRole
from signaling.appkeys import DB, LIVE, TOKENS
from signaling.live_state import LiveLessonState, RoomState
from signaling.tokens import JoinRole


async def call(client: TestClient, method: str, path: str, headers: dict, body=None):
    response = await client.request(method, f"/api/v1{path}", json=body, headers=headers)
    return response.status, await response.json()


async def test_a_scheduled_lesson_lists_its_rooms_main_first(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson = await lesson_factory(receiving=4, kind="famous_school")
    assert lesson["state"] == "scheduled" and lesson["broadcast"] is True
    assert [r["role"] for r in lesson["rooms"]] == ["main"] + ["receiving"] * 4
    assert lesson["planned_start"].endswith("Z")
    status, again = await call(app_client, "GET", f"/lessons/{lesson['id']}", admin_headers)
    assert (status, again) == (200, lesson)
    assert (await call(app_client, "GET", "/lessons/999", admin_headers))[0] == 404


async def test_double_booking_is_a_conflict_naming_the_clash(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson = await lesson_factory(receiving=1)
    start = datetime.fromisoformat(lesson["planned_start"]) + timedelta(minutes=20)
    body = {
        "pairing_id": lesson["pairing_id"],
        "kind": "dedicated",
        "subject": "音乐",
        "grade": "三",
        "teacher_name": "李",
        "title": "重叠",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(minutes=40)).isoformat(),
    }
    status, answer = await call(app_client, "POST", "/lessons", admin_headers, body)
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert f"lesson {lesson['id']}" in answer["error"]["message"]
    body["planned_start"] = "2025-03-03T08:00:00"  # no zone
    status, answer = await call(app_client, "POST", "/lessons", admin_headers, body)
    assert (status, answer["error"]["field"]) == (400, "planned_start")


async def test_lessons_are_filtered_and_paged(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    day = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
    ids = [
        (await lesson_factory(receiving=1, start=day + timedelta(days=d)))["id"] for d in range(3)
    ]
    await call(app_client, "POST", f"/lessons/{ids[2]}/cancel", admin_headers)
    status, page = await call(app_client, "GET", "/lessons?limit=2&offset=1", admin_headers)
    assert status == 200
    assert ([x["id"] for x in page["items"]], page["total"], page["limit"]) == (ids[1:], 3, 2)
    query = "/lessons?from=2025-03-04T00:00:00Z&to=2025-03-05T00:00:00%2B08:00"
    assert [x["id"] for x in (await call(app_client, "GET", query, admin_headers))[1]["items"]] == [
        ids[1]
    ]
    _, cancelled = await call(app_client, "GET", "/lessons?state=cancelled", admin_headers)
    assert [x["id"] for x in cancelled["items"]] == [ids[2]]
    for bad, field in [
        ("limit=0", "limit"),
        ("state=done", "state"),
        ("colour=red", "colour"),
        ("from=yesterday", "from"),
    ]:
        status, answer = await call(app_client, "GET", f"/lessons?{bad}", admin_headers)
        assert (status, answer["error"]["field"]) == (400, field), bad


async def test_a_lesson_runs_open_start_end_and_each_step_is_audited(
    app_client: TestClient, admin_headers: dict, lesson_factory, monkeypatch
) -> None:
    ended: list[tuple[int, str]] = []

    async def end_lesson(lesson_id: int, reason: str) -> None:
        ended.append((lesson_id, reason))

    monkeypatch.setattr(app_client.app[LIVE], "end_lesson", end_lesson)
    lesson_id = (await lesson_factory())["id"]
    for step, state in [("open", "open"), ("start", "live"), ("end", "ended")]:
        status, lesson = await call(
            app_client, "POST", f"/lessons/{lesson_id}/{step}", admin_headers
        )
        assert (status, lesson["state"]) == (200, state)
    assert lesson["end_reason"] == "ended_by_api" and lesson["ended_at"]
    assert ended == [(lesson_id, "ended_by_api")]
    status, answer = await call(app_client, "POST", f"/lessons/{lesson_id}/open", admin_headers)
    assert (status, answer["error"]["code"]) == (409, "illegal_transition")
    async with app_client.app[DB]() as s:
        actions = [e.action for e in await audit.list_events(s)]
    assert {"lesson_open", "lesson_live", "lesson_ended"} <= set(actions)


async def test_end_takes_an_optional_reason_and_cancel_frees_the_rooms(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson_id = (await lesson_factory())["id"]
    await call(app_client, "POST", f"/lessons/{lesson_id}/open", admin_headers)
    status, lesson = await call(
        app_client, "POST", f"/lessons/{lesson_id}/end", admin_headers, {"reason": "power cut"}
    )
    assert (status, lesson["end_reason"]) == (200, "power cut")
    status, answer = await call(
        app_client, "POST", f"/lessons/{lesson_id}/end", admin_headers, {"why": "x"}
    )
    assert status == 400 and answer["error"]["field"] == "why"
    other = (await lesson_factory())["id"]
    status, lesson = await call(app_client, "POST", f"/lessons/{other}/cancel", admin_headers)
    assert (status, lesson["state"]) == (200, "cancelled")


async def test_join_tokens_are_bound_to_the_room_and_its_role(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson = await lesson_factory(receiving=2)
    main, rural, _ = (r["classroom_id"] for r in lesson["rooms"])
    path = f"/lessons/{lesson['id']}/join-tokens"
    status, minted = await call(
        app_client,
        "POST",
        path,
        admin_headers,
        {"role": "receiving", "classroom_id": rural, "ttl_s": 600},
    )
    assert status == 201 and minted["ws_url"] == "/ws/v1"
    claims = app_client.app[TOKENS].verify(minted["token"], lesson_id=lesson["id"])
    assert (claims.classroom_id, claims.role, claims.subject) == (
        rural,
        JoinRole.RECEIVING,
        "admin",
    )
    expires = datetime.fromisoformat(minted["expires_at"])
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)

    status, watch = await call(app_client, "POST", path, admin_headers, {"role": "watch"})
    assert status == 201 and watch["classroom_id"] is None
    refusals = [
        ({"role": "main", "classroom_id": rural}, "token_wrong_role", "role"),
        ({"role": "main", "classroom_id": 999}, "unknown_room", "classroom_id"),
        ({"role": "main"}, "invalid_body", "classroom_id"),
        ({"role": "watch", "classroom_id": main}, "invalid_body", "classroom_id"),
        ({"role": "teacher", "classroom_id": main}, "invalid_body", "role"),
        ({"role": "main", "classroom_id": main, "ttl_s": 10**6}, "invalid_body", "ttl_s"),
    ]
    for body, code, field in refusals:
        status, answer = await call(app_client, "POST", path, admin_headers, body)
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, code, field), (
            body
        )
    async with app_client.app[DB]() as s:
        minted_events = await audit.list_events(s, action="join_token_minted")
    assert len(minted_events) == 2


async def test_devices_get_tokens_for_their_own_school_and_reviewers_only_watch(
    app_client: TestClient, lesson_factory, headers_for
) -> None:
    lesson = await lesson_factory(receiving=1)
    main, rural = (r["classroom_id"] for r in lesson["rooms"])
    async with app_client.app[DB]() as s:
        from classroom.schools import get_classroom

        rural_school = (await get_classroom(s, rural)).school_id
    device = await headers_for(UserRole.DEVICE, school_id=rural_school)
    reviewer = await headers_for(UserRole.REVIEWER)
    path = f"/lessons/{lesson['id']}/join-tokens"
    assert (
        await call(app_client, "POST", path, device, {"role": "receiving", "classroom_id": rural})
    )[0] == 201
    assert (await call(app_client, "POST", path, device, {"role": "main", "classroom_id": main}))[
        0
    ] == 403
    assert (await call(app_client, "POST", path, device, {"role": "watch"}))[0] == 403
    assert (await call(app_client, "POST", path, reviewer, {"role": "watch"}))[0] == 201
    assert (
        await call(app_client, "POST", path, reviewer, {"role": "receiving", "classroom_id": rural})
    )[0] == 403


async def test_no_tokens_for_a_finished_lesson(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson_id = (await lesson_factory())["id"]
    await call(app_client, "POST", f"/lessons/{lesson_id}/cancel", admin_headers)
    status, answer = await call(
        app_client, "POST", f"/lessons/{lesson_id}/join-tokens", admin_headers, {"role": "watch"}
    )
    assert (status, answer["error"]["code"]) == (409, "lesson_ended")
    status, answer = await call(
        app_client, "POST", "/lessons/999/join-tokens", admin_headers, {"role": "watch"}
    )
    assert status == 404


async def test_live_state_comes_from_the_router_or_is_not_live(
    app_client: TestClient, admin_headers: dict, lesson_factory, monkeypatch
) -> None:
    lesson_id = (await lesson_factory())["id"]
    status, answer = await call(app_client, "GET", f"/lessons/{lesson_id}/live", admin_headers)
    assert (status, answer["error"]["code"]) == (404, "not_live")
    state = LiveLessonState(
        lesson_id=lesson_id,
        state="live",
        rooms=[RoomState(classroom_id=1, name="主讲", role="main", connected=True)],
    )
    monkeypatch.setattr(
        app_client.app[LIVE], "snapshot", lambda i: state if i == lesson_id else None
    )
    status, live = await call(app_client, "GET", f"/lessons/{lesson_id}/live", admin_headers)
    assert status == 200
    assert live["rooms"][0]["name"] == "主讲" and live["forwarding"]["transcodes"] == 0


@pytest.mark.parametrize("role", [UserRole.TEACHER, UserRole.SCHOOL_ADMIN])
async def test_school_staff_control_lessons(
    app_client: TestClient, lesson_factory, headers_for, role: UserRole
) -> None:
    lesson = await lesson_factory()
    lesson_id = lesson["id"]
    async with app_client.app[DB]() as s:
        from classroom.schools import get_classroom

        main_school = (await get_classroom(s, lesson["rooms"][0]["classroom_id"])).school_id
    outsider = await headers_for(role)  # no school: not theirs to run
    status, _ = await call(app_client, "POST", f"/lessons/{lesson_id}/open", outsider)
    assert status == 403
    staff = await headers_for(role, school_id=main_school)
    status, lesson = await call(app_client, "POST", f"/lessons/{lesson_id}/open", staff)
    assert (status, lesson["state"]) == (200, "open")
