"""Alerts of the live overview (classroom/alerts.py, GET /alerts).

The rules on constructed rows: a lesson not started five minutes after its time (and not
before, and not after its end), a room whose link dropped and did not come back (and not
one that left, rejoined or was never there); then the same through the database and the
API on SQLite and PostgreSQL, with the attendance rows the server writes, scoped per
school. tests/test_live_alerts_browser.py shows them on the page from a real lesson.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient

from classroom import attendance
from classroom.alerts import (
    NOT_STARTED_AFTER,
    Attendance,
    PlannedRoom,
    WatchedLesson,
    alerts_of,
)
from classroom.models import UserRole
from signaling.appkeys import DB
from tests.conftest import HeadersFor, LessonFactory

T0 = datetime(2026, 11, 30, 1, 55, tzinfo=UTC)  # 09:55 in Beijing
MAIN = PlannedRoom(1, "主讲教室", 10, "城关一中", "main")
RURAL = PlannedRoom(2, "三年级一班", 20, "河口小学", "receiving")
OTHER = PlannedRoom(3, "四年级一班", 30, "石门小学", "receiving")


def lesson(state: str, lesson_id: int = 7) -> WatchedLesson:
    return WatchedLesson(
        lesson_id=lesson_id,
        title="一次函数",
        state=state,
        planned_start=T0,
        planned_end=T0 + timedelta(minutes=45),
        rooms=(MAIN, RURAL, OTHER),
    )


def row(
    room: PlannedRoom, joined: float, left: float | None, reason: str | None = None
) -> Attendance:
    return Attendance(
        lesson_id=7,
        classroom_id=room.classroom_id,
        joined_at=T0 + timedelta(minutes=joined),
        left_at=T0 + timedelta(minutes=left) if left is not None else None,
        end_reason=reason,
    )


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


# ------------------------------------------------------------------ the rules


@pytest.mark.parametrize("state", ["scheduled", "open"])
def test_a_lesson_not_started_five_minutes_after_its_time_is_an_alert(state: str) -> None:
    assert NOT_STARTED_AFTER == timedelta(minutes=5)
    assert alerts_of([lesson(state)], [], now=minutes(4.9)) == []
    (alert,) = alerts_of([lesson(state)], [], now=minutes(5))
    assert (alert.kind, alert.lesson_id, alert.since) == ("not_started", 7, T0)
    assert (alert.school_name, alert.classroom_name, alert.role) == ("城关一中", "主讲教室", "main")
    # Receiving rooms already there do not make it started: the teacher is not.
    early = [row(RURAL, -3, None)]
    assert [a.kind for a in alerts_of([lesson(state)], early, now=minutes(20))] == ["not_started"]
    # Past its end it is a missed lesson, for the statistics, not an alert any more.
    assert alerts_of([lesson(state)], [], now=minutes(45)) == []


def test_a_lesson_whose_main_room_is_connected_is_no_alert() -> None:
    rows = [row(MAIN, 6, None)]
    assert alerts_of([lesson("open")], rows, now=minutes(7)) == []
    assert alerts_of([lesson("live")], [], now=minutes(30)) == []  # started, then ran


def test_a_room_that_dropped_and_is_not_back_is_an_alert_until_it_rejoins() -> None:
    rows = [row(MAIN, 0, None), row(RURAL, 0, 12, "dropped")]
    (alert,) = alerts_of([lesson("live")], rows, now=minutes(13))
    assert (alert.kind, alert.classroom_id, alert.since) == ("dropped", 2, minutes(12))
    assert (alert.school_name, alert.classroom_name) == ("河口小学", "三年级一班")
    back = [*rows, row(RURAL, 14, None)]
    assert alerts_of([lesson("live")], back, now=minutes(15)) == []
    # Dropped again later: the alert is the latest drop.
    again = [*rows, row(RURAL, 14, 20, "dropped")]
    (alert,) = alerts_of([lesson("live")], again, now=minutes(21))
    assert alert.since == minutes(20)


def test_a_room_that_left_on_purpose_or_never_came_is_no_drop() -> None:
    rows = [
        row(MAIN, 0, None),
        row(RURAL, 0, 12, "dropped"),
        row(RURAL, 13, 30, "left"),  # came back, then said goodbye
    ]
    assert alerts_of([lesson("live")], rows, now=minutes(31)) == []
    # OTHER never joined: the overview shows it offline; it did not drop.


def test_the_main_room_dropping_is_a_drop_too_and_ended_lessons_raise_nothing() -> None:
    rows = [row(MAIN, 0, 10, "dropped"), row(RURAL, 0, None)]
    assert [(a.kind, a.role) for a in alerts_of([lesson("live")], rows, now=minutes(11))] == [
        ("dropped", "main")
    ]
    # An open lesson whose teacher dropped before starting: both alerts, naming the room.
    found = alerts_of([lesson("open")], rows, now=minutes(11))
    assert sorted(a.kind for a in found) == ["dropped", "not_started"]
    assert alerts_of([lesson("ended")], rows, now=minutes(11)) == []


def test_alerts_come_oldest_first_with_stable_keys() -> None:
    late = WatchedLesson(8, "春", "scheduled", minutes(-20), minutes(25), (MAIN,))
    rows = [row(MAIN, 0, None), row(RURAL, 0, 12, "dropped")]
    found = alerts_of([lesson("live"), late], rows, now=minutes(13))
    assert [(a.kind, a.lesson_id) for a in found] == [("not_started", 8), ("dropped", 7)]
    again = alerts_of([lesson("live"), late], rows, now=minutes(14))
    assert [a.key for a in found] == [a.key for a in again]


# ------------------------------------------------------- the database and API


async def test_alerts_through_the_api_from_attendance_rows(
    app_client: TestClient,
    admin_headers: dict[str, str],
    headers_for: HeadersFor,
    lesson_factory: LessonFactory,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    late = await lesson_factory(receiving=1, start=now - timedelta(minutes=6))
    live = await lesson_factory(receiving=2, start=now - timedelta(minutes=1, hours=1))
    soon = await lesson_factory(receiving=1, start=now - timedelta(minutes=2))

    async def alerts(headers: dict[str, str] = admin_headers) -> list[dict]:
        response = await app_client.get("/api/v1/alerts", headers=headers)
        assert response.status == 200, await response.text()
        return (await response.json())["items"]

    # The live lesson: main and both rooms joined; one room's link goes.
    for step in ("open", "start"):
        response = await app_client.post(
            f"/api/v1/lessons/{live['id']}/{step}", headers=admin_headers
        )
        assert response.status == 200, await response.text()
    main, rural, other = (r["classroom_id"] for r in live["rooms"])
    async with app_client.app[DB]() as db:
        for room, role in ((main, "main"), (rural, "receiving"), (other, "receiving")):
            await attendance.open_room_session(db, live["id"], room, role, now - timedelta(hours=1))
        went = now - timedelta(seconds=30)
        await attendance.close_room_session(db, live["id"], rural, went, "timeout")
        await attendance.close_room_session(db, live["id"], other, went, "left")

    found = await alerts()
    assert [(a["kind"], a["lesson_id"]) for a in found] == [
        ("not_started", late["id"]),
        ("dropped", live["id"]),
    ]  # `soon` is two minutes past its start: not yet
    not_started, dropped = found
    assert not_started["classroom_id"] == late["rooms"][0]["classroom_id"]
    assert not_started["school_name"] == late["rooms"][0]["school_name"]
    assert datetime.fromisoformat(not_started["since"]) == now - timedelta(minutes=6)
    assert (dropped["classroom_id"], dropped["role"]) == (rural, "receiving")
    assert datetime.fromisoformat(dropped["since"]) == went
    assert soon["id"] not in {a["lesson_id"] for a in found}

    # Scope: the dropped room's school admin sees its alert, not the other lesson's.
    rooms = await (await app_client.get("/api/v1/classrooms", headers=admin_headers)).json()
    rural_school = next(c["school_id"] for c in rooms["items"] if c["id"] == rural)
    assert dropped["school_id"] == rural_school
    school_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=rural_school)
    assert [a["lesson_id"] for a in await alerts(school_admin)] == [live["id"]]

    # The room rejoins: its alert goes. The late lesson's teacher connects: that one too.
    async with app_client.app[DB]() as db:
        await attendance.open_room_session(db, live["id"], rural, "receiving", now)
        await attendance.open_room_session(
            db, late["id"], late["rooms"][0]["classroom_id"], "main", now
        )
    assert await alerts() == []
