"""The timetable through /api/v1: terms, series, one-occurrence changes, CSV import, scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from classroom.models import UserRole
from signaling.appkeys import DB

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A term far enough ahead that every lesson is still to come when the test runs, in a year
# whose calendar is 2026's (both start on a Thursday, neither is a leap year).
YEAR = 2037
assert datetime(YEAR, 1, 1).weekday() == datetime(2026, 1, 1).weekday() == 3
TERM = {
    "school_year": f"{YEAR}-{YEAR + 1}",
    "name": f"{YEAR}秋",
    "start_date": f"{YEAR}-09-01",
    "end_date": f"{YEAR + 1}-01-15",
    "holidays": [{"start_date": f"{YEAR}-10-01", "end_date": f"{YEAR}-10-07", "name": "国庆节"}],
    "makeup_days": [{"date": f"{YEAR}-10-10", "follows_weekday": 3, "name": "调休"}],
    "periods": [
        {"number": 1, "starts_at": "08:00", "ends_at": "08:45"},
        {"number": 3, "starts_at": "09:55", "ends_at": "10:40"},
    ],
}


class Client:
    def __init__(self, app_client: TestClient, headers: dict[str, str]) -> None:
        self.app_client, self.headers = app_client, headers

    async def call(self, method: str, path: str, status: int, **kw: Any) -> Any:
        headers = {**self.headers, **kw.pop("headers", {})}
        response = await self.app_client.request(method, f"/api/v1{path}", headers=headers, **kw)
        assert response.status == status, await response.text()
        return await response.json()


async def registers(admin: Client) -> dict[str, int]:
    city = await admin.call("POST", "/schools", 201, json={"name": "城关一中", "kind": "city"})
    rural = await admin.call("POST", "/schools", 201, json={"name": "乡村小学", "kind": "rural"})
    main = await admin.call(
        "POST", "/classrooms", 201, json={"school_id": city["id"], "name": "301"}
    )
    room = await admin.call(
        "POST", "/classrooms", 201, json={"school_id": rural["id"], "name": "听课"}
    )
    pairing = await admin.call(
        "POST",
        "/pairings",
        201,
        json={
            "name": "结对",
            "main_classroom_id": main["id"],
            "receiving_classroom_ids": [room["id"]],
        },
    )
    return {
        "city": city["id"],
        "rural": rural["id"],
        "main": main["id"],
        "room": room["id"],
        "pairing": pairing["id"],
    }


def series_body(pairing: int, **kw: Any) -> dict[str, Any]:
    body = {
        "pairing_id": pairing,
        "subject": "数学",
        "grade": "初二",
        "title": "一次函数",
        "teacher_name": "王老师",
        "weekday": 3,
        "period": 3,
    }
    body.update(kw)
    return body


async def test_an_admin_plans_a_term_and_a_school_schedules_on_it(
    app_client: TestClient, admin_headers, headers_for
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)
    term = await admin.call("POST", "/terms", 201, json=TERM)
    assert term["weeks"] == 20 and term["periods"][1] == {
        "number": 3,
        "starts_at": "09:55",
        "ends_at": "10:40",
    }
    school_admin = Client(
        app_client, await headers_for(UserRole.SCHOOL_ADMIN, school_id=ids["city"])
    )
    rural_admin = Client(
        app_client, await headers_for(UserRole.SCHOOL_ADMIN, school_id=ids["rural"])
    )
    teacher = Client(app_client, await headers_for(UserRole.TEACHER, school_id=ids["rural"]))

    # Terms are the bureau's: schools read them, do not write them.
    await school_admin.call("POST", "/terms", 403, json={**TERM, "name": "x"})
    assert [t["id"] for t in (await teacher.call("GET", "/terms", 200))["items"]] == [term["id"]]

    # The main classroom's school admin schedules; the receiving school's may not.
    await rural_admin.call(
        "POST", f"/terms/{term['id']}/series", 403, json=series_body(ids["pairing"])
    )
    created = await school_admin.call(
        "POST", f"/terms/{term['id']}/series", 201, json=series_body(ids["pairing"])
    )
    assert created["generation"]["created"] == 20  # Wednesdays but 10-07, and Saturday 10-10
    series = created["series"]
    # Both schools see it; its lessons are ordinary lessons.
    listed = await teacher.call("GET", f"/terms/{term['id']}/series", 200)
    assert [x["id"] for x in listed["items"]] == [series["id"]]
    occurrences = (await teacher.call("GET", f"/series/{series['id']}/occurrences", 200))["items"]
    first = occurrences[0]
    assert first["occurrence_date"] == f"{YEAR}-09-02"
    start = datetime.fromisoformat(first["planned_start"])
    assert start.astimezone(SHANGHAI).strftime("%H:%M") == "09:55"
    lesson = await teacher.call("GET", f"/lessons/{first['lesson_id']}", 200)
    assert lesson["state"] == "scheduled" and lesson["rooms"][1]["classroom_id"] == ids["room"]

    # A clash is refused with 409 naming it; nothing is created.
    clash = await school_admin.call(
        "POST",
        f"/terms/{term['id']}/series",
        409,
        json=series_body(ids["pairing"], subject="语文", teacher_name="李老师"),
    )
    assert clash["error"]["code"] == "conflict"
    assert f"(series {series['id']})" in clash["error"]["message"]
    assert "09:55–10:40 +08:00" in clash["error"]["message"]

    # One occurrence moved and another given a substitute; then the series changes.
    moved = await school_admin.call(
        "POST",
        f"/lessons/{occurrences[1]['lesson_id']}/move",
        200,
        json={"date": f"{YEAR}-09-10", "period": 1},
    )
    assert (
        moved["changed"]
        and datetime.fromisoformat(moved["planned_start"])
        .astimezone(SHANGHAI)
        .strftime("%m-%d %H:%M")
        == "09-10 08:00"
    )
    sub = await school_admin.call(
        "POST",
        f"/lessons/{occurrences[2]['lesson_id']}/substitute",
        200,
        json={"teacher_name": "赵老师"},
    )
    assert sub["teacher_name"] == "赵老师" and sub["changed"]
    changed = await school_admin.call(
        "PUT", f"/series/{series['id']}", 200, json=series_body(ids["pairing"], period=1)
    )
    assert changed["generation"]["updated"] == 18 and changed["generation"]["kept"] == 2
    after = (await teacher.call("GET", f"/series/{series['id']}/occurrences", 200))["items"]
    assert after[1]["planned_start"] == moved["planned_start"]
    assert after[2]["teacher_name"] == "赵老师"

    # The term check finds nothing; a second generation creates nothing.
    assert (await admin.call("GET", f"/terms/{term['id']}/clashes", 200))["items"] == []
    again = await admin.call("POST", f"/terms/{term['id']}/generate", 200)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 18)

    # A new holiday through PUT removes its lessons.
    term2 = {
        **TERM,
        "holidays": [
            *TERM["holidays"],
            {"start_date": f"{YEAR}-11-04", "end_date": f"{YEAR}-11-04"},
        ],
    }
    replaced = await admin.call("PUT", f"/terms/{term['id']}", 200, json=term2)
    assert replaced["generation"]["removed"] == 1 and len(replaced["term"]["holidays"]) == 2

    # Removing the series removes its lessons to come.
    gone = await school_admin.call("DELETE", f"/series/{series['id']}", 200)
    assert gone["removed"] == 19
    await teacher.call("GET", f"/series/{series['id']}", 404)


async def test_an_ad_hoc_lesson_over_a_series_lesson_is_refused(
    app_client: TestClient, admin_headers
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)
    term = await admin.call("POST", "/terms", 201, json=TERM)
    created = await admin.call(
        "POST", f"/terms/{term['id']}/series", 201, json=series_body(ids["pairing"])
    )
    occurrence = (await admin.call("GET", f"/series/{created['series']['id']}/occurrences", 200))[
        "items"
    ][0]
    refused = await admin.call(
        "POST",
        "/lessons",
        409,
        json={
            "pairing_id": ids["pairing"],
            "kind": "dedicated",
            "subject": "语文",
            "grade": "初二",
            "teacher_name": "李老师",
            "title": "春",
            "planned_start": occurrence["planned_start"],
            "planned_end": occurrence["planned_end"],
        },
    )
    assert f"lesson {occurrence['lesson_id']}" in refused["error"]["message"]


async def test_csv_import_through_the_api_reports_every_bad_row(
    app_client: TestClient, admin_headers
) -> None:
    admin = Client(app_client, admin_headers)
    await registers(admin)
    term = await admin.call("POST", "/terms", 201, json=TERM)
    header = "星期,节次,学科,年级,主讲教室,听课教室,教师,课题\n"
    good = "星期一,1,数学,初二,城关一中/301,乡村小学/听课,王老师,一次函数\n"
    bad = (
        good
        + "星期九,1,语文,初二,城关一中/301,乡村小学/听课,李老师,春\n"
        + ("星期一,第一节,语文,初二,城关一中/301,听课,李老师,春\n")
    )
    rejected = await admin.call(
        "POST",
        f"/terms/{term['id']}/import",
        400,
        data=(header + bad).encode("gb18030"),
        headers={"Content-Type": "text/csv"},
    )
    assert rejected["error"]["code"] == "invalid_body"
    assert [(r["line"], r["column"]) for r in rejected["rows"]] == [(3, "星期"), (4, None)]
    assert "CSV line 2" in rejected["rows"][1]["message"]
    series = await admin.call("GET", f"/terms/{term['id']}/series", 200)
    assert series["items"] == []

    dry = await admin.call(
        "POST",
        f"/terms/{term['id']}/import?dry_run=true",
        200,
        data=("\ufeff" + header + good).encode(),
    )
    assert dry == {
        "rows": 1,
        "series_created": 1,
        "lessons_created": 18,
        "dry_run": True,
    }  # Mondays but 10-05
    done = await admin.call(
        "POST", f"/terms/{term['id']}/import", 200, data=("\ufeff" + header + good).encode()
    )
    assert done["lessons_created"] == 18
    async with app_client.app[DB]() as db:
        from classroom import audit

        events = await audit.list_events(db, action="term.imported")
    assert events[0].detail == {"series": 1, "lessons": 18}


async def test_a_teacher_is_not_booked_twice_by_ad_hoc_or_edited_lessons(
    app_client: TestClient, admin_headers
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)
    second = await admin.call(
        "POST", "/classrooms", 201, json={"school_id": ids["city"], "name": "302"}
    )
    room2 = await admin.call(
        "POST", "/classrooms", 201, json={"school_id": ids["rural"], "name": "二"}
    )
    other_pairing = await admin.call(
        "POST",
        "/pairings",
        201,
        json={
            "name": "302",
            "main_classroom_id": second["id"],
            "receiving_classroom_ids": [room2["id"]],
        },
    )
    wang = await admin.call(
        "POST",
        "/users",
        201,
        json={
            "username": "wang",
            "password": "correct horse battery",
            "role": "teacher",
            "school_id": ids["city"],
            "display_name": "王老师",
        },
    )
    term = await admin.call("POST", "/terms", 201, json=TERM)
    created = await admin.call(
        "POST",
        f"/terms/{term['id']}/series",
        201,
        json=series_body(ids["pairing"], teacher_user_id=wang["id"]),
    )
    occurrence = (await admin.call("GET", f"/series/{created['series']['id']}/occurrences", 200))[
        "items"
    ][0]
    lesson = {
        "pairing_id": other_pairing["id"],
        "kind": "dedicated",
        "subject": "数学",
        "grade": "初一",
        "teacher_name": "王老师",
        "title": "有理数",
        "planned_start": occurrence["planned_start"],
        "planned_end": occurrence["planned_end"],
    }
    # Other rooms, same teacher account, same time: refused, naming the teacher and lesson.
    refused = await admin.call(
        "POST", "/lessons", 409, json={**lesson, "teacher_user_id": wang["id"]}
    )
    message = refused["error"]["message"]
    assert message.startswith(
        f"teacher 王老师 (user {wang['id']}) is booked by lesson "
        f"{occurrence['lesson_id']} '一次函数' (series {created['series']['id']})"
    )
    # Another teacher may take those rooms then; giving it to 王老师 by PATCH is refused too.
    other = await admin.call("POST", "/lessons", 201, json={**lesson, "teacher_name": "李老师"})
    patched = await admin.call(
        "PATCH",
        f"/lessons/{other['id']}",
        409,
        json={"teacher_name": "王老师", "teacher_user_id": wang["id"]},
    )
    assert patched["error"]["field"] == "teacher_name"
    assert f"lesson {occurrence['lesson_id']}" in patched["error"]["message"]
