"""Calendar feeds: a classroom's and a teacher's timetable as iCalendar, read back with the
`icalendar` package the way a calendar program reads a subscription."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import icalendar
from aiohttp.test_utils import TestClient

from classroom.models import UserRole
from tests.test_timetable_api import TERM, YEAR, Client, registers, series_body

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def fetch(app_client: TestClient, url: str, status: int = 200) -> icalendar.Calendar | None:
    """GET a feed URL as a calendar program would: no cookie, no Authorization header."""
    parts = urlsplit(url)
    response = await app_client.get(f"{parts.path}?{parts.query}")
    assert response.status == status, await response.text()
    if status != 200:
        return None
    assert response.content_type == "text/calendar" and response.charset == "utf-8"
    return icalendar.Calendar.from_ical(await response.read())


def events(cal: icalendar.Calendar) -> list[icalendar.Event]:
    return list(cal.walk("VEVENT"))


async def test_a_classroom_feed_lists_its_lessons_and_shows_a_cancelled_one(
    app_client: TestClient, admin_headers
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)
    term = await admin.call("POST", "/terms", 201, json=TERM)
    series = (
        await admin.call(
            "POST", f"/terms/{term['id']}/series", 201, json=series_body(ids["pairing"])
        )
    )["series"]
    occurrences = (await admin.call("GET", f"/series/{series['id']}/occurrences", 200))["items"]
    issued = await admin.call(
        "POST",
        "/calendar-feeds",
        201,
        json={"kind": "classroom", "classroom_id": ids["room"], "name": "听课教室课表"},
    )
    assert issued["token"] in issued["url"] and "/api/v1/feeds/calendar.ics?token=" in issued["url"]

    cal = await fetch(app_client, issued["url"])
    assert cal is not None
    assert str(cal["X-WR-CALNAME"]) == "乡村小学 听课 · 同步课堂课表"
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Asia/Shanghai"]
    found = events(cal)
    assert len(found) == len(occurrences) == 20
    first = found[0]
    assert str(first["SUMMARY"]) == "【专递课堂】数学：一次函数"
    assert str(first["LOCATION"]) == "城关一中 301"
    assert "听课教室：乡村小学 听课" in str(first["DESCRIPTION"])
    start = first.decoded("DTSTART")
    assert start.tzinfo is not None and getattr(start.tzinfo, "key", None) == "Asia/Shanghai"
    assert start == datetime.fromisoformat(occurrences[0]["planned_start"])
    assert start.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") == f"{YEAR}-09-02 09:55"
    assert first.decoded("DTEND") == datetime.fromisoformat(occurrences[0]["planned_end"])
    assert str(first["STATUS"]) == "CONFIRMED"
    uids = [str(e["UID"]) for e in found]
    assert len(set(uids)) == 20

    # Cancel one and move another: same UIDs, the cancelled one struck out, the moved one moved.
    await admin.call("POST", f"/lessons/{occurrences[3]['lesson_id']}/cancel", 200)
    await admin.call(
        "POST",
        f"/lessons/{occurrences[4]['lesson_id']}/move",
        200,
        json={"date": f"{YEAR}-10-09", "period": 1},
    )
    again = await fetch(app_client, issued["url"])
    assert again is not None
    by_uid = {str(e["UID"]): e for e in events(again)}
    assert list(by_uid) == uids or set(by_uid) == set(uids)
    assert str(by_uid[uids[3]]["STATUS"]) == "CANCELLED"
    moved = by_uid[uids[4]].decoded("DTSTART").astimezone(SHANGHAI)
    assert moved.strftime("%m-%d %H:%M") == "10-09 08:00"


async def test_a_feed_needs_its_token_and_dies_when_revoked(
    app_client: TestClient, admin_headers, headers_for
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)
    issued = await admin.call(
        "POST", "/calendar-feeds", 201, json={"kind": "classroom", "classroom_id": ids["main"]}
    )
    assert await fetch(app_client, issued["url"]) is not None
    # A login is not a feed token, and a made-up token opens nothing.
    response = await app_client.get("/api/v1/feeds/calendar.ics", headers=admin_headers)
    assert response.status == 400
    await fetch(app_client, "/api/v1/feeds/calendar.ics?token=tbcal_madeup", 404)
    login = admin_headers["Authorization"].removeprefix("Bearer ")
    await fetch(app_client, f"/api/v1/feeds/calendar.ics?token={login}", 404)

    # Only the feed's digest is stored; the list never shows the token again.
    listed = await admin.call("GET", "/calendar-feeds", 200)
    assert issued["token"] not in str(listed) and listed["items"][0]["last_used_at"] is not None

    # Another school's admin may not revoke it; its own school's may.
    other = await admin.call("POST", "/schools", 201, json={"name": "实验中学", "kind": "city"})
    stranger = Client(app_client, await headers_for(UserRole.SCHOOL_ADMIN, school_id=other["id"]))
    await stranger.call("DELETE", f"/calendar-feeds/{issued['feed']['id']}", 403)
    owner = Client(app_client, await headers_for(UserRole.SCHOOL_ADMIN, school_id=ids["city"]))
    revoked = await owner.call("DELETE", f"/calendar-feeds/{issued['feed']['id']}", 200)
    assert revoked["revoked"] is True
    await fetch(app_client, issued["url"], 404)


async def test_a_teacher_subscribes_to_their_own_lessons_only(
    app_client: TestClient, admin_headers, headers_for
) -> None:
    admin = Client(app_client, admin_headers)
    ids = await registers(admin)
    term = await admin.call("POST", "/terms", 201, json=TERM)
    me = await admin.call(
        "POST",
        "/users",
        201,
        json={
            "username": "wangfang",
            "password": "correct horse battery",
            "role": "teacher",
            "school_id": ids["city"],
            "display_name": "王芳",
        },
    )
    colleague = await admin.call(
        "POST",
        "/users",
        201,
        json={
            "username": "liming",
            "password": "correct horse battery",
            "role": "teacher",
            "school_id": ids["city"],
            "display_name": "李明",
        },
    )
    await admin.call(
        "POST",
        f"/terms/{term['id']}/series",
        201,
        json=series_body(ids["pairing"], teacher_name="王芳", teacher_user_id=me["id"]),
    )
    await admin.call(
        "POST",
        f"/terms/{term['id']}/series",
        201,
        json=series_body(
            ids["pairing"],
            weekday=1,
            teacher_name="李明",
            teacher_user_id=colleague["id"],
            subject="语文",
            title="春",
        ),
    )
    login = await app_client.post(
        "/api/v1/auth/login", json={"username": "wangfang", "password": "correct horse battery"}
    )
    teacher = Client(app_client, {"Authorization": f"Bearer {(await login.json())['token']}"})
    await teacher.call(
        "POST", "/calendar-feeds", 403, json={"kind": "teacher", "teacher_user_id": colleague["id"]}
    )
    issued = await teacher.call(
        "POST", "/calendar-feeds", 201, json={"kind": "teacher", "teacher_user_id": me["id"]}
    )
    cal = await fetch(app_client, issued["url"])
    assert cal is not None
    found = events(cal)
    assert len(found) == 20 and {str(e["SUMMARY"]) for e in found} == {"【专递课堂】数学：一次函数"}
    assert all("教师：王芳" in str(e["DESCRIPTION"]) for e in found)
    assert str(cal["X-WR-CALNAME"]) == "王芳 · 同步课堂课表"
