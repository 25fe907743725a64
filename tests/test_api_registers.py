"""Registering schools, classrooms and pairings through the API, and how it says no."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom import audit, lessons
from classroom.models import (
    Classroom,
    LessonRoom,
    LessonState,
    Pairing,
    PairingMember,
    School,
    UserRole,
)
from signaling.appkeys import DB


async def post(client: TestClient, path: str, body: object, headers: dict) -> tuple[int, dict]:
    response = await client.post(f"/api/v1{path}", json=body, headers=headers)
    return response.status, await response.json()


async def get(client: TestClient, path: str, headers: dict) -> tuple[int, dict]:
    response = await client.get(f"/api/v1{path}", headers=headers)
    return response.status, await response.json()


async def test_an_admin_registers_schools_classrooms_and_a_pairing(
    app_client: TestClient, admin_headers: dict
) -> None:
    status, city = await post(
        app_client,
        "/schools",
        {"name": "城关一中", "kind": "city", "region": "东区"},
        admin_headers,
    )
    assert status == 201 and city["timezone"] == "Asia/Shanghai"
    _, rural = await post(
        app_client, "/schools", {"name": "青山村小", "kind": "rural"}, admin_headers
    )
    _, main = await post(
        app_client, "/classrooms", {"school_id": city["id"], "name": "主讲"}, admin_headers
    )
    rooms = [
        (
            await post(
                app_client,
                "/classrooms",
                {"school_id": rural["id"], "name": f"听{i}"},
                admin_headers,
            )
        )[1]
        for i in range(4)
    ]
    status, pairing = await post(
        app_client,
        "/pairings",
        {
            "name": "城乡结对",
            "main_classroom_id": main["id"],
            "receiving_classroom_ids": [r["id"] for r in reversed(rooms)],
        },
        admin_headers,
    )
    assert status == 201
    assert pairing["receiving_classroom_ids"] == [r["id"] for r in reversed(rooms)]
    assert (await get(app_client, f"/pairings/{pairing['id']}", admin_headers))[1] == pairing
    assert (await get(app_client, "/pairings", admin_headers))[1]["items"] == [pairing]
    assert (await get(app_client, f"/schools/{city['id']}", admin_headers))[1] == city
    assert len((await get(app_client, "/schools", admin_headers))[1]["items"]) == 2
    _, listed = await get(app_client, f"/classrooms?school_id={rural['id']}", admin_headers)
    assert [c["name"] for c in listed["items"]] == ["听0", "听1", "听2", "听3"]
    assert {c["school_name"] for c in listed["items"]} == {"青山村小"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/schools", {"name": "x", "kind": "suburban"}, "kind"),
        ("/schools", {"kind": "city"}, "name"),
        ("/schools", {"name": "", "kind": "city"}, "name"),
        ("/schools", {"name": "x", "kind": "city", "colour": "red"}, "colour"),
        ("/schools", {"name": "x", "kind": "city", "timezone": "Mars/Base"}, "timezone"),
        ("/classrooms", {"school_id": "one", "name": "x"}, "school_id"),
        ("/classrooms", {"school_id": 0, "name": "x"}, "school_id"),
        (
            "/pairings",
            {"name": "p", "main_classroom_id": 1, "receiving_classroom_ids": [2, 3, 4, 5, 6]},
            "receiving_classroom_ids",
        ),
        (
            "/pairings",
            {"name": "p", "main_classroom_id": 1, "receiving_classroom_ids": [2, "x"]},
            "receiving_classroom_ids[1]",
        ),
        (
            "/pairings",
            {"name": "p", "main_classroom_id": 1, "receiving_classroom_ids": []},
            "receiving_classroom_ids",
        ),
    ],
)
async def test_invalid_bodies_name_the_field(
    app_client: TestClient, admin_headers: dict, path: str, body: dict, field: str
) -> None:
    status, answer = await post(app_client, path, body, admin_headers)
    assert status == 400
    assert answer["error"]["code"] == "invalid_body"
    assert answer["error"]["field"] == field
    assert answer["error"]["message"]


async def test_bodies_that_are_not_json_or_too_large_are_refused(
    app_client: TestClient, admin_headers: dict
) -> None:
    response = await app_client.post("/api/v1/schools", data=b"{name", headers=admin_headers)
    assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_body"
    huge = {"name": "x" * 70_000, "kind": "city"}
    response = await app_client.post("/api/v1/schools", json=huge, headers=admin_headers)
    assert response.status == 413 and (await response.json())["error"]["code"] == "too_large"
    response = await app_client.post("/api/v1/schools", headers=admin_headers)
    assert response.status == 400


async def test_unknown_ids_and_duplicate_classrooms(app_client: TestClient, admin_headers) -> None:
    assert (await get(app_client, "/schools/77", admin_headers))[0] == 404
    assert (await get(app_client, "/pairings/77", admin_headers))[0] == 404
    assert (await get(app_client, "/schools/abc", admin_headers))[0] == 404
    status, answer = await post(
        app_client, "/classrooms", {"school_id": 77, "name": "x"}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (404, "school_id")
    _, school = await post(app_client, "/schools", {"name": "s", "kind": "city"}, admin_headers)
    await post(app_client, "/classrooms", {"school_id": school["id"], "name": "301"}, admin_headers)
    status, answer = await post(
        app_client, "/classrooms", {"school_id": school["id"], "name": "301"}, admin_headers
    )
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (409, "conflict", "name")
    status, answer = await post(
        app_client,
        "/pairings",
        {"name": "p", "main_classroom_id": 1, "receiving_classroom_ids": [999]},
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (404, "receiving_classroom_ids")


async def test_a_school_admin_registers_classrooms_of_their_own_school_only(
    app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    _, mine = await post(app_client, "/schools", {"name": "甲", "kind": "rural"}, admin_headers)
    _, theirs = await post(app_client, "/schools", {"name": "乙", "kind": "rural"}, admin_headers)
    school_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=mine["id"])
    status, _ = await post(
        app_client, "/classrooms", {"school_id": mine["id"], "name": "1"}, school_admin
    )
    assert status == 201
    status, answer = await post(
        app_client, "/classrooms", {"school_id": theirs["id"], "name": "1"}, school_admin
    )
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    status, _ = await post(app_client, "/schools", {"name": "丙", "kind": "city"}, school_admin)
    assert status == 403


# ------------------------------------------------------------------ edits and removal


async def patch(client: TestClient, path: str, body: object, headers: dict) -> tuple[int, dict]:
    response = await client.patch(f"/api/v1{path}", json=body, headers=headers)
    return response.status, await response.json()


async def delete(client: TestClient, path: str, headers: dict) -> tuple[int, dict]:
    response = await client.delete(f"/api/v1{path}", headers=headers)
    return response.status, await response.json()


async def row(client: TestClient, model: type, ident: int) -> Any:
    """The row as the database holds it, read in a fresh session (not through the API)."""
    async with client.app[DB]() as s:
        return await s.get(model, ident)


async def members(client: TestClient, pairing_id: int) -> list[int]:
    async with client.app[DB]() as s:
        rows = await s.scalars(
            sa.select(PairingMember.classroom_id)
            .where(PairingMember.pairing_id == pairing_id)
            .order_by(PairingMember.position)
        )
        return list(rows.all())


async def registers(client: TestClient, headers: dict, rural_rooms: int = 3) -> dict[str, Any]:
    """A city school with a main room, a rural school with `rural_rooms` rooms, a pairing."""
    _, city = await post(client, "/schools", {"name": "城关一中", "kind": "city"}, headers)
    _, rural = await post(client, "/schools", {"name": "青山村小", "kind": "rural"}, headers)
    _, main = await post(client, "/classrooms", {"school_id": city["id"], "name": "主讲"}, headers)
    rooms = [
        (await post(client, "/classrooms", {"school_id": rural["id"], "name": f"听{i}"}, headers))[
            1
        ]["id"]
        for i in range(rural_rooms)
    ]
    _, pairing = await post(
        client,
        "/pairings",
        {"name": "城乡结对", "main_classroom_id": main["id"], "receiving_classroom_ids": rooms[:2]},
        headers,
    )
    return {"city": city, "rural": rural, "main": main["id"], "rooms": rooms, "pairing": pairing}


async def schedule(
    client: TestClient, pairing_id: int, headers: dict, day: int = 1, teacher: str = "王老师"
) -> dict:
    start = datetime(2031, 3, 3, 8, 0, tzinfo=UTC) + timedelta(days=day)
    status, lesson = await post(
        client,
        "/lessons",
        {
            "pairing_id": pairing_id,
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": teacher,
            "title": "一次函数",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(minutes=40)).isoformat(),
        },
        headers,
    )
    assert status == 201, lesson
    return lesson


async def test_an_admin_edits_a_school_a_classroom_and_a_pairing_and_each_edit_is_audited(
    app_client: TestClient, admin_headers: dict
) -> None:
    r = await registers(app_client, admin_headers)
    status, school = await patch(
        app_client,
        f"/schools/{r['rural']['id']}",
        {"name": "青山村完全小学", "region": "北山乡"},
        admin_headers,
    )
    assert status == 200
    assert (school["name"], school["region"], school["kind"]) == (
        "青山村完全小学",
        "北山乡",
        "rural",
    )
    status, room = await patch(
        app_client, f"/classrooms/{r['rooms'][0]}", {"name": "一年级教室"}, admin_headers
    )
    assert (status, room["name"], room["school_name"]) == (200, "一年级教室", "青山村完全小学")
    # Swapping two rooms' places and adding a third: the rows keep their primary keys at
    # new positions, all in one transaction.
    new_order = [r["rooms"][1], r["rooms"][0], r["rooms"][2]]
    status, pairing = await patch(
        app_client,
        f"/pairings/{r['pairing']['id']}",
        {"name": "城关—青山", "receiving_classroom_ids": new_order},
        admin_headers,
    )
    assert status == 200
    assert (pairing["name"], pairing["receiving_classroom_ids"]) == ("城关—青山", new_order)
    assert await members(app_client, r["pairing"]["id"]) == new_order
    assert pairing.pop("lessons_rerouted") == []  # it has no lessons
    assert (await get(app_client, f"/pairings/{r['pairing']['id']}", admin_headers))[1] == pairing

    # The same edit again changes nothing and leaves no event.
    assert (
        await patch(
            app_client, f"/classrooms/{r['rooms'][0]}", {"name": "一年级教室"}, admin_headers
        )
    )[0] == 200
    async with app_client.app[DB]() as s:
        events = {e.action: e for e in await audit.list_events(s)}
        updated = [e for e in await audit.list_events(s) if e.action == "classroom_updated"]
    assert events["school_updated"].detail == {
        "changes": {"name": ["青山村小", "青山村完全小学"], "region": ["", "北山乡"]}
    }
    assert events["school_updated"].target == f"school:{r['rural']['id']}"
    assert len(updated) == 1 and updated[0].detail == {"changes": {"name": ["听0", "一年级教室"]}}
    assert events["pairing_updated"].detail["changes"]["receiving_classroom_ids"] == [
        r["rooms"][:2],
        new_order,
    ]
    assert events["pairing_updated"].actor_name == "admin"


async def test_a_refused_edit_leaves_the_row_as_it_was(
    app_client: TestClient, admin_headers: dict
) -> None:
    r = await registers(app_client, admin_headers)
    room, other = r["rooms"][0], r["rooms"][1]
    # A clash on the classroom's name in its school: 409, and nothing else sent is applied.
    status, answer = await patch(app_client, f"/classrooms/{other}", {"name": "听0"}, admin_headers)
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (409, "conflict", "name")
    assert (await row(app_client, Classroom, other)).name == "听1"
    # A valid name with invalid rooms: the name is not saved either.
    pairing_id = r["pairing"]["id"]
    status, answer = await patch(
        app_client,
        f"/pairings/{pairing_id}",
        {"name": "新名字", "receiving_classroom_ids": [r["main"], room]},
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (400, "receiving_classroom_ids")
    assert "cannot also receive" in answer["error"]["message"]
    assert (await row(app_client, Pairing, pairing_id)).name == "城乡结对"
    assert await members(app_client, pairing_id) == r["rooms"][:2]
    status, answer = await patch(
        app_client,
        f"/pairings/{pairing_id}",
        {"name": "新名字", "receiving_classroom_ids": [room, 999]},
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (404, "receiving_classroom_ids")
    assert (await row(app_client, Pairing, pairing_id)).name == "城乡结对"
    # A good name and an unknown time zone: neither is saved.
    school_id = r["city"]["id"]
    status, answer = await patch(
        app_client,
        f"/schools/{school_id}",
        {"name": "改名", "timezone": "Mars/Base"},
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (400, "timezone")
    school = await row(app_client, School, school_id)
    assert (school.name, school.timezone) == ("城关一中", "Asia/Shanghai")
    async with app_client.app[DB]() as s:
        assert not [e for e in await audit.list_events(s) if e.action.endswith("_updated")]
    assert (await patch(app_client, "/schools/999", {"name": "x"}, admin_headers))[0] == 404
    assert (await patch(app_client, "/classrooms/999", {"name": "x"}, admin_headers))[0] == 404
    assert (await patch(app_client, "/pairings/999", {"name": "x"}, admin_headers))[0] == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/schools/{school}", {"name": ""}, "name"),
        ("/schools/{school}", {"name": None}, "name"),
        ("/schools/{school}", {"kind": "town"}, "kind"),
        ("/schools/{school}", {"colour": "red"}, "colour"),
        ("/schools/{school}", {"region": "长" * 201}, "region"),
        ("/schools/{school}", {"active": "no"}, "active"),
        ("/classrooms/{room}", {"name": ""}, "name"),
        ("/classrooms/{room}", {"school_id": 0}, "school_id"),
        ("/pairings/{pairing}", {"receiving_classroom_ids": []}, "receiving_classroom_ids"),
        (
            "/pairings/{pairing}",
            {"receiving_classroom_ids": [1, 2, 3, 4, 5]},
            "receiving_classroom_ids",
        ),
        ("/pairings/{pairing}", {"main_classroom_id": "x"}, "main_classroom_id"),
        (
            "/pairings/{pairing}",
            {"receiving_classroom_ids": ["{room}", "{room}"]},
            "receiving_classroom_ids",
        ),
    ],
)
async def test_invalid_edits_name_the_field(
    app_client: TestClient, admin_headers: dict, path: str, body: dict, field: str
) -> None:
    r = await registers(app_client, admin_headers)
    ids = {"school": r["city"]["id"], "room": r["rooms"][0], "pairing": r["pairing"]["id"]}

    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return int(value.format(**ids)) if isinstance(value, str) and value == "{room}" else value

    status, answer = await patch(
        app_client, path.format(**ids), {k: fill(v) for k, v in body.items()}, admin_headers
    )
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (
        400,
        "invalid_body",
        field,
    )
    assert (await row(app_client, Pairing, r["pairing"]["id"])).name == "城乡结对"
    assert await members(app_client, r["pairing"]["id"]) == r["rooms"][:2]


async def test_what_nothing_refers_to_is_deleted_and_audited(
    app_client: TestClient, admin_headers: dict
) -> None:
    r = await registers(app_client, admin_headers)
    pairing_id = r["pairing"]["id"]
    assert await delete(app_client, f"/pairings/{pairing_id}", admin_headers) == (
        200,
        {"id": pairing_id},
    )
    assert await row(app_client, Pairing, pairing_id) is None
    assert await members(app_client, pairing_id) == []
    for room in r["rooms"]:
        assert (await delete(app_client, f"/classrooms/{room}", admin_headers))[0] == 200
        assert await row(app_client, Classroom, room) is None
    assert (await delete(app_client, f"/schools/{r['rural']['id']}", admin_headers))[0] == 200
    assert await row(app_client, School, r["rural"]["id"]) is None
    assert (await delete(app_client, f"/schools/{r['rural']['id']}", admin_headers))[0] == 404
    async with app_client.app[DB]() as s:
        actions = [e.action for e in await audit.list_events(s)]
    assert actions.count("classroom_deleted") == 3
    assert {"pairing_deleted", "school_deleted"} <= set(actions)


async def test_what_lessons_refer_to_is_not_deleted_but_can_be_archived(
    app_client: TestClient, admin_headers: dict
) -> None:
    r = await registers(app_client, admin_headers)
    pairing_id, main = r["pairing"]["id"], r["main"]
    lesson = await schedule(app_client, pairing_id, admin_headers)
    for path, uses in [
        (f"/pairings/{pairing_id}", "1 lessons"),
        (f"/classrooms/{main}", "1 lessons, 1 pairings"),
        (f"/schools/{r['city']['id']}", "1 classrooms"),
    ]:
        status, answer = await delete(app_client, path, admin_headers)
        assert (status, answer["error"]["code"]) == (409, "conflict"), path
        assert f"is in use: {uses}; archive it instead" in answer["error"]["message"], answer
    assert await row(app_client, Pairing, pairing_id) is not None
    assert await row(app_client, Classroom, main) is not None

    # Archiving waits for what is to come: the scheduled lesson, then the active pairing.
    status, answer = await patch(
        app_client, f"/pairings/{pairing_id}", {"active": False}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (409, "active")
    assert f"lesson {lesson['id']} '一次函数' to come" in answer["error"]["message"]
    status, answer = await patch(
        app_client, f"/classrooms/{main}", {"active": False}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (409, "active")
    assert f"active pairing {pairing_id}" in answer["error"]["message"]
    assert (await row(app_client, Pairing, pairing_id)).active is True

    await post(app_client, f"/lessons/{lesson['id']}/cancel", {}, admin_headers)
    status, pairing = await patch(
        app_client, f"/pairings/{pairing_id}", {"active": False}, admin_headers
    )
    assert (status, pairing["active"]) == (200, False)
    assert (await row(app_client, Pairing, pairing_id)).active is False
    # An archived pairing is kept, listed as archived, and offered for no new lesson.
    listed = (await get(app_client, "/pairings", admin_headers))[1]["items"]
    assert [(p["id"], p["active"]) for p in listed] == [(pairing_id, False)]
    status, answer = await post(
        app_client,
        "/lessons",
        {
            "pairing_id": pairing_id,
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": "王",
            "title": "t",
            "planned_start": "2031-05-01T08:00:00+08:00",
            "planned_end": "2031-05-01T08:40:00+08:00",
        },
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (409, "pairing_id")

    # Now the classroom archives; a school archives once its classrooms have.
    assert (await patch(app_client, f"/classrooms/{main}", {"active": False}, admin_headers))[
        0
    ] == 200
    status, answer = await post(
        app_client,
        "/pairings",
        {"name": "新", "main_classroom_id": main, "receiving_classroom_ids": [r["rooms"][2]]},
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (409, "main_classroom_id")
    status, school = await patch(
        app_client, f"/schools/{r['city']['id']}", {"active": False}, admin_headers
    )
    assert (status, school["active"]) == (200, False)
    status, answer = await post(
        app_client, "/classrooms", {"school_id": r["city"]["id"], "name": "新教室"}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (409, "school_id")
    # Restoring goes the other way round: the school first, then its classroom.
    status, answer = await patch(
        app_client, f"/schools/{r['rural']['id']}", {"active": False}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (409, "active")
    assert "has 3 active classrooms" in answer["error"]["message"]
    assert (
        await patch(app_client, f"/schools/{r['city']['id']}", {"active": True}, admin_headers)
    )[0] == 200
    assert (await patch(app_client, f"/classrooms/{main}", {"active": True}, admin_headers))[
        0
    ] == 200
    status, pairing = await patch(
        app_client, f"/pairings/{pairing_id}", {"active": True}, admin_headers
    )
    assert (status, pairing["active"]) == (200, True)


async def test_a_classroom_moves_school_only_while_nothing_uses_it(
    app_client: TestClient, admin_headers: dict
) -> None:
    r = await registers(app_client, admin_headers)
    spare = r["rooms"][2]  # in no pairing
    _, other = await post(
        app_client, "/schools", {"name": "白水村小", "kind": "rural"}, admin_headers
    )
    await post(app_client, "/classrooms", {"school_id": other["id"], "name": "听2"}, admin_headers)
    status, answer = await patch(
        app_client, f"/classrooms/{spare}", {"school_id": other["id"]}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (409, "name")  # 白水村小 has a 听2
    status, moved = await patch(
        app_client,
        f"/classrooms/{spare}",
        {"school_id": other["id"], "name": "听3"},
        admin_headers,
    )
    assert (status, moved["school_id"], moved["school_name"]) == (200, other["id"], "白水村小")
    status, answer = await patch(
        app_client, f"/classrooms/{r['rooms'][0]}", {"school_id": other["id"]}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (409, "school_id")
    assert "is in use: 1 pairings" in answer["error"]["message"]
    assert (await row(app_client, Classroom, r["rooms"][0])).school_id == r["rural"]["id"]
    status, answer = await patch(
        app_client, f"/classrooms/{spare}", {"school_id": 999}, admin_headers
    )
    assert (status, answer["error"]["field"]) == (404, "school_id")


async def test_a_school_admin_edits_and_removes_only_their_own_schools_things(
    app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    r = await registers(app_client, admin_headers)
    city_id, rural_id = r["city"]["id"], r["rural"]["id"]
    city_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=city_id)
    rural_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=rural_id)
    teacher = await headers_for(UserRole.TEACHER, school_id=city_id)

    assert (await patch(app_client, f"/schools/{city_id}", {"region": "东区"}, city_admin))[
        0
    ] == 200
    assert (await patch(app_client, f"/schools/{rural_id}", {"region": "x"}, city_admin))[0] == 403
    assert (await patch(app_client, f"/schools/{city_id}", {"active": False}, city_admin))[0] == 403
    assert (await delete(app_client, f"/schools/{city_id}", city_admin))[0] == 403
    assert (await patch(app_client, f"/schools/{city_id}", {"region": "y"}, teacher))[0] == 403

    status, _ = await patch(app_client, f"/classrooms/{r['main']}", {"name": "主讲一"}, city_admin)
    assert status == 200
    status, answer = await patch(
        app_client, f"/classrooms/{r['main']}", {"school_id": rural_id}, city_admin
    )
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert (await row(app_client, Classroom, r["main"])).school_id == city_id
    assert (await patch(app_client, f"/classrooms/{r['rooms'][2]}", {"name": "x"}, city_admin))[
        0
    ] == 403
    assert (await delete(app_client, f"/classrooms/{r['rooms'][2]}", city_admin))[0] == 403
    assert (await delete(app_client, f"/classrooms/{r['rooms'][2]}", rural_admin))[0] == 200

    # A pairing across schools is the district admin's to change, not even the main
    # classroom's school's: it books the other school's rooms.
    across = r["pairing"]["id"]
    for admin in (rural_admin, city_admin):
        assert (await patch(app_client, f"/pairings/{across}", {"name": "p"}, admin))[0] == 403
        assert (await delete(app_client, f"/pairings/{across}", admin))[0] == 403
    status, answer = await patch(app_client, f"/pairings/{across}", {"name": "p"}, city_admin)
    assert "district admin" in answer["error"]["message"]
    assert (await patch(app_client, f"/pairings/{across}", {"name": "p"}, admin_headers))[0] == 200
    # One within the school is the school admin's.
    status, second = await post(
        app_client, "/classrooms", {"school_id": city_id, "name": "二"}, admin_headers
    )
    assert status == 201
    body = {
        "name": "校内",
        "main_classroom_id": r["main"],
        "receiving_classroom_ids": [second["id"]],
    }
    status, made = await post(app_client, "/pairings", body, city_admin)
    assert status == 201, made
    pairing_id = made["id"]
    assert (await patch(app_client, f"/pairings/{pairing_id}", {"name": "p"}, city_admin))[0] == 200
    status, _ = await patch(
        app_client, f"/pairings/{pairing_id}", {"main_classroom_id": r["rooms"][0]}, city_admin
    )
    assert status == 403  # not a classroom of their school
    status, _ = await patch(
        app_client,
        f"/pairings/{pairing_id}",
        {"receiving_classroom_ids": [second["id"], r["rooms"][0]]},
        city_admin,
    )
    assert status == 403  # nor a receiving room of another school
    assert (await row(app_client, Pairing, pairing_id)).main_classroom_id == r["main"]
    assert await members(app_client, pairing_id) == [second["id"]]
    assert (await delete(app_client, f"/pairings/{pairing_id}", city_admin))[0] == 200
    async with app_client.app[DB]() as s:
        denied = await audit.list_events(s, action="permission.denied")
    assert len(denied) >= 8


async def rooms_of(client: TestClient, lesson_id: int) -> list[int]:
    """The lesson's rooms as the database holds them: main first, then by position."""
    async with client.app[DB]() as s:
        rows = await s.scalars(
            sa.select(LessonRoom.classroom_id)
            .where(LessonRoom.lesson_id == lesson_id)
            .order_by(LessonRoom.position)
        )
        return list(rows.all())


async def test_lessons_to_come_follow_their_pairing_to_new_rooms(
    app_client: TestClient, admin_headers: dict
) -> None:
    r = await registers(app_client, admin_headers, rural_rooms=4)
    main, (a, b, c, d) = r["main"], r["rooms"]
    pairing_id = r["pairing"]["id"]
    following = await schedule(app_client, pairing_id, admin_headers, day=1)
    by_hand = await schedule(app_client, pairing_id, admin_headers, day=2)
    opened = await schedule(app_client, pairing_id, admin_headers, day=3)
    status, _ = await patch(
        app_client, f"/lessons/{by_hand['id']}", {"receiving_classroom_ids": [a]}, admin_headers
    )
    assert status == 200
    async with app_client.app[DB]() as s:
        await lessons.transition(s, opened["id"], LessonState.OPEN)

    # Room b is renovated; the rural school teaches in room c from now on.
    status, pairing = await patch(
        app_client, f"/pairings/{pairing_id}", {"receiving_classroom_ids": [a, c]}, admin_headers
    )
    assert (status, pairing["receiving_classroom_ids"]) == (200, [a, c])
    assert pairing["lessons_rerouted"] == [following["id"]]
    assert await rooms_of(app_client, following["id"]) == [main, a, c]
    status, lesson = await get(app_client, f"/lessons/{following['id']}", admin_headers)
    assert [room["classroom_id"] for room in lesson["rooms"]] == [main, a, c]
    assert await rooms_of(app_client, by_hand["id"]) == [main, a]  # decided on its own
    assert await rooms_of(app_client, opened["id"]) == [main, a, b]  # boxes may be in it
    async with app_client.app[DB]() as s:
        event = next(e for e in await audit.list_events(s) if e.action == "pairing_updated")
    assert event.detail["lessons_rerouted"] == [following["id"]]

    # Room d is taken by another pairing's lesson at the time of `following`: the edit is
    # refused whole, naming the room and both lessons, and nothing moves.
    _, other_main = await post(
        app_client, "/classrooms", {"school_id": r["city"]["id"], "name": "主讲2"}, admin_headers
    )
    _, other = await post(
        app_client,
        "/pairings",
        {"name": "另一结对", "main_classroom_id": other_main["id"], "receiving_classroom_ids": [d]},
        admin_headers,
    )
    taken = await schedule(app_client, other["id"], admin_headers, day=1, teacher="李老师")
    status, answer = await patch(
        app_client,
        f"/pairings/{pairing_id}",
        {"name": "改名", "receiving_classroom_ids": [a, d]},
        admin_headers,
    )
    assert (status, answer["error"]["field"]) == (409, "receiving_classroom_ids")
    message = answer["error"]["message"]
    assert f"lesson {following['id']}" in message and f"lesson {taken['id']}" in message
    assert f"classroom {d} (青山村小 听3)" in message
    assert await members(app_client, pairing_id) == [a, c]
    assert (await row(app_client, Pairing, pairing_id)).name == "城乡结对"
    assert await rooms_of(app_client, following["id"]) == [main, a, c]

    # A new main room is the teacher's new room in every lesson that follows.
    status, _ = await patch(
        app_client, f"/pairings/{pairing_id}", {"main_classroom_id": other_main["id"]},
        admin_headers,
    )
    assert status == 409  # other_main teaches `taken` then
    await post(app_client, f"/lessons/{taken['id']}/cancel", {}, admin_headers)
    status, _ = await patch(
        app_client, f"/pairings/{pairing_id}", {"main_classroom_id": other_main["id"]},
        admin_headers,
    )
    assert status == 200
    assert await rooms_of(app_client, following["id"]) == [other_main["id"], a, c]
