"""Registering schools, classrooms and pairings through the API, and how it says no."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from classroom.models import UserRole


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
