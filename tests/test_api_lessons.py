"""Scheduling and running lessons through the API, and minting join tokens for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from classroom import audit
from classroom.models import Lesson, UserRole
from signaling.appkeys import DB, LIVE, TOKENS
from signaling.live.state import LiveLessonState, RoomState
from signaling.live.tokens import JoinRole


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


async def test_devices_get_tokens_for_their_own_classroom_and_reviewers_only_watch(
    app_client: TestClient, lesson_factory, headers_for
) -> None:
    lesson = await lesson_factory(receiving=1)
    main, rural = (r["classroom_id"] for r in lesson["rooms"])
    device = await headers_for(UserRole.DEVICE, classroom_id=rural)
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


# ------------------------------------------------------------------ editing a lesson


async def stored(client: TestClient, lesson_id: int) -> Lesson:
    """The lesson as the database holds it, read in a fresh session (not through the API)."""
    async with client.app[DB]() as s:
        lesson = await s.get(Lesson, lesson_id)
        assert lesson is not None
        return lesson


def receiving_of(lesson: Lesson | dict) -> list[int]:
    if isinstance(lesson, dict):
        return [r["classroom_id"] for r in lesson["rooms"] if r["role"] == "receiving"]
    rooms = sorted(lesson.rooms, key=lambda r: r.position)
    return [r.classroom_id for r in rooms if r.role == "receiving"]


async def test_a_scheduled_lesson_is_edited_and_the_edit_is_audited(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson = await lesson_factory(receiving=3)
    first, second, third = receiving_of(lesson)
    start = datetime.fromisoformat(lesson["planned_start"])
    # Moved by ten minutes: it overlaps only itself, which is no clash.
    new_start, new_end = start + timedelta(minutes=10), start + timedelta(minutes=55)
    status, edited = await call(
        app_client,
        "PATCH",
        f"/lessons/{lesson['id']}",
        admin_headers,
        {
            "title": "一次函数的图像",
            "subject": "数学（复习）",
            "grade": "初三",
            "teacher_name": "李老师",
            "planned_start": new_start.isoformat(),
            "planned_end": new_end.isoformat(),
            "receiving_classroom_ids": [third, first],  # second leaves, third comes first
        },
    )
    assert status == 200, edited
    assert (edited["title"], edited["subject"], edited["grade"], edited["teacher_name"]) == (
        "一次函数的图像",
        "数学（复习）",
        "初三",
        "李老师",
    )
    assert datetime.fromisoformat(edited["planned_start"]) == new_start
    assert [r["role"] for r in edited["rooms"]] == ["main", "receiving", "receiving"]
    assert receiving_of(edited) == [third, first]
    row = await stored(app_client, lesson["id"])
    assert (row.title, row.planned_end, receiving_of(row)) == (
        "一次函数的图像",
        new_end,
        [third, first],
    )
    assert (await call(app_client, "GET", f"/lessons/{lesson['id']}", admin_headers))[1] == edited
    async with app_client.app[DB]() as s:
        (event,) = await audit.list_events(s, action="lesson_updated")
    changes = event.detail["changes"]
    assert changes["title"] == ["一次函数", "一次函数的图像"]
    assert changes["receiving_classroom_ids"] == [[first, second, third], [third, first]]
    assert datetime.fromisoformat(changes["planned_start"][1]) == new_start
    assert event.target == f"lesson:{lesson['id']}"
    # The room that left is free at that time again: another lesson may have it.
    assert second not in receiving_of(await stored(app_client, lesson["id"]))


async def test_an_edit_that_double_books_is_refused_and_changes_nothing(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    day = datetime(2031, 3, 3, 0, 0, tzinfo=UTC)
    first = await lesson_factory(receiving=1, start=day)
    other = await lesson_factory(receiving=1, start=day)  # other rooms, same time
    taken = receiving_of(first)[0]
    status, answer = await call(
        app_client,
        "PATCH",
        f"/lessons/{other['id']}",
        admin_headers,
        {"title": "改了", "receiving_classroom_ids": [taken]},
    )
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert answer["error"]["field"] == "receiving_classroom_ids"
    assert f"is booked by lesson {first['id']} '一次函数'" in answer["error"]["message"]
    row = await stored(app_client, other["id"])
    assert (row.title, receiving_of(row)) == ("一次函数", receiving_of(other))
    # New times as well: the room just added is still what is at fault.
    later_end = datetime.fromisoformat(other["planned_end"]) + timedelta(minutes=5)
    status, answer = await call(
        app_client,
        "PATCH",
        f"/lessons/{other['id']}",
        admin_headers,
        {"planned_end": later_end.isoformat(), "receiving_classroom_ids": [taken]},
    )
    assert (status, answer["error"]["field"]) == (409, "receiving_classroom_ids")
    row = await stored(app_client, other["id"])
    assert row.planned_end.isoformat().replace("+00:00", "Z") == other["planned_end"]

    # A second lesson of the first pairing, an hour later, moved onto the first's time.
    later = day + timedelta(hours=1)
    body = {
        "pairing_id": first["pairing_id"],
        "kind": "dedicated",
        "subject": "语文",
        "grade": "初二",
        "teacher_name": "李",
        "title": "背影",
        "planned_start": later.isoformat(),
        "planned_end": (later + timedelta(minutes=40)).isoformat(),
    }
    status, second = await call(app_client, "POST", "/lessons", admin_headers, body)
    assert status == 201
    status, answer = await call(
        app_client,
        "PATCH",
        f"/lessons/{second['id']}",
        admin_headers,
        {"planned_start": (day + timedelta(minutes=30)).isoformat(), "title": "x"},
    )
    assert (status, answer["error"]["field"]) == (409, "planned_start")
    row = await stored(app_client, second["id"])
    assert (row.planned_start, row.title) == (later, "背影")
    async with app_client.app[DB]() as s:
        assert await audit.list_events(s, action="lesson_updated") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"planned_end": "2031-03-03T07:00:00+08:00"}, "planned_end"),
        ({"planned_start": "2031-03-04T08:00:00"}, "planned_start"),
        ({"title": ""}, "title"),
        ({"kind": "lecture"}, "kind"),
        ({"receiving_classroom_ids": []}, "receiving_classroom_ids"),
        ({"receiving_classroom_ids": [1, 2, 3, 4, 5]}, "receiving_classroom_ids"),
        ({"receiving_classroom_ids": [999]}, "receiving_classroom_ids"),
        ({"pairing_id": 1}, "pairing_id"),
        ({"teacher_user_id": 999}, "teacher_user_id"),
    ],
)
async def test_invalid_lesson_edits_name_the_field_and_change_nothing(
    app_client: TestClient, admin_headers: dict, lesson_factory, body: dict, field: str
) -> None:
    lesson = await lesson_factory(receiving=1, start=datetime(2031, 3, 3, 0, 0, tzinfo=UTC))
    status, answer = await call(
        app_client, "PATCH", f"/lessons/{lesson['id']}", admin_headers, {"grade": "初三", **body}
    )
    assert status in (400, 404) and answer["error"]["field"] == field, answer
    row = await stored(app_client, lesson["id"])
    assert (row.grade, row.planned_end.isoformat().replace("+00:00", "Z")) == (
        "初二",
        lesson["planned_end"],
    )


async def test_a_live_or_finished_lesson_cannot_be_edited(
    app_client: TestClient, admin_headers: dict, lesson_factory
) -> None:
    lesson_id = (await lesson_factory())["id"]
    path = f"/lessons/{lesson_id}"
    await call(app_client, "POST", f"{path}/open", admin_headers)
    status, edited = await call(app_client, "PATCH", path, admin_headers, {"title": "开放后改"})
    assert (status, edited["title"], edited["state"]) == (200, "开放后改", "open")
    await call(app_client, "POST", f"{path}/start", admin_headers)
    status, answer = await call(app_client, "PATCH", path, admin_headers, {"title": "直播中改"})
    assert (status, answer["error"]["code"]) == (409, "conflict")
    assert answer["error"]["message"] == (
        f"lesson {lesson_id} is live; only a scheduled or open lesson can be changed"
    )
    assert (await stored(app_client, lesson_id)).title == "开放后改"
    await call(app_client, "POST", f"{path}/end", admin_headers)
    status, answer = await call(app_client, "PATCH", path, admin_headers, {"title": "结束后改"})
    assert status == 409 and "is ended" in answer["error"]["message"]
    cancelled = (await lesson_factory())["id"]
    await call(app_client, "POST", f"/lessons/{cancelled}/cancel", admin_headers)
    status, answer = await call(
        app_client, "PATCH", f"/lessons/{cancelled}", admin_headers, {"title": "x"}
    )
    assert status == 409 and "is cancelled" in answer["error"]["message"]
    assert (await call(app_client, "PATCH", "/lessons/999", admin_headers, {"title": "x"}))[
        0
    ] == 404


async def test_rooms_do_not_change_while_rooms_are_connected(
    app_client: TestClient, admin_headers: dict, lesson_factory, monkeypatch
) -> None:
    lesson = await lesson_factory(receiving=2)
    lesson_id = lesson["id"]
    await call(app_client, "POST", f"/lessons/{lesson_id}/open", admin_headers)
    state = LiveLessonState(
        lesson_id=lesson_id,
        state="open",
        rooms=[
            RoomState(
                classroom_id=receiving_of(lesson)[0], name="听课", role="receiving", connected=True
            )
        ],
    )
    monkeypatch.setattr(
        app_client.app[LIVE], "snapshot", lambda i: state if i == lesson_id else None
    )
    status, answer = await call(
        app_client,
        "PATCH",
        f"/lessons/{lesson_id}",
        admin_headers,
        {"receiving_classroom_ids": receiving_of(lesson)[:1]},
    )
    assert (status, answer["error"]["field"]) == (409, "receiving_classroom_ids")
    assert receiving_of(await stored(app_client, lesson_id)) == receiving_of(lesson)
    # The title may still change: the rooms already joined are not affected by it.
    status, _ = await call(
        app_client, "PATCH", f"/lessons/{lesson_id}", admin_headers, {"title": "t"}
    )
    assert status == 200


async def test_school_staff_edit_lessons_of_their_main_classroom_only(
    app_client: TestClient, lesson_factory, headers_for
) -> None:
    lesson = await lesson_factory(receiving=1)
    main, rural = (r["classroom_id"] for r in lesson["rooms"])
    async with app_client.app[DB]() as s:
        from classroom.schools import get_classroom

        main_school = (await get_classroom(s, main)).school_id
        rural_school = (await get_classroom(s, rural)).school_id
    path = f"/lessons/{lesson['id']}"
    for headers in (
        await headers_for(UserRole.SCHOOL_ADMIN, school_id=rural_school),
        await headers_for(UserRole.TEACHER, school_id=main_school),
        await headers_for(UserRole.REVIEWER),
    ):
        status, answer = await call(app_client, "PATCH", path, headers, {"title": "x"})
        assert (status, answer["error"]["code"]) == (403, "forbidden")
    school_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=main_school)
    teacher_headers = await headers_for(UserRole.TEACHER, school_id=main_school, username="li")
    async with app_client.app[DB]() as s:
        from classroom.users import get_user_by_name

        teacher = await get_user_by_name(s, "li")
        assert teacher is not None
    status, edited = await call(
        app_client, "PATCH", path, school_admin, {"teacher_user_id": teacher.id}
    )
    assert (status, edited["teacher_user_id"]) == (200, teacher.id)
    # Now only that teacher (and admins, the school admin) may run it; unbinding reopens it.
    assert (await call(app_client, "PATCH", path, school_admin, {"teacher_user_id": None}))[1][
        "teacher_user_id"
    ] is None
    assert (await stored(app_client, lesson["id"])).teacher_user_id is None
    assert (await call(app_client, "POST", f"{path}/open", teacher_headers))[0] == 200
