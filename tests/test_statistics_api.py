"""GET /statistics, /statistics.csv and /lessons/{id}/statistics on SQLite and PostgreSQL.

The lessons are made through the API; their attendance rows and link samples through the
domain functions the server itself uses (classroom/attendance.py, link_samples.py), and
their summaries by `summarise_lesson`, so every figure the API answers comes from real
summaries. The expected group figures are recomputed here in Python from those stored
summaries (the API computes them in SQL), and the scenario is checked too: one lesson
held with a room that dropped and came back, one held but late, one partial, one nobody
joined, one cancelled.

Scope: a school admin sees the lessons of their school (and all rooms of those lessons),
a teacher their own lessons, a school account without a school nothing; naming another
school is 403. The CSV is decoded with its BOM and its Chinese headers.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp.test_utils import TestClient

from classroom import attendance
from classroom.lesson_stats import (
    GROUP_COLUMNS,
    LessonSummary,
    stored_summary,
    summarise_lesson,
)
from classroom.link_samples import Sample, insert_samples
from classroom.models import Recording, UserRole
from classroom.users import create_user
from signaling.appkeys import DB
from tests.conftest import HeadersFor

API = "/api/v1"
BEIJING = timezone(timedelta(hours=8))
WEEK1 = datetime(2026, 11, 9, 9, 55, tzinfo=BEIJING)  # a Monday, period 3
WEEK2 = WEEK1 + timedelta(weeks=1)
LESSON = timedelta(minutes=45)
I18N = Path(__file__).resolve().parent.parent / "web" / "static" / "i18n"
ZH = json.loads((I18N / "zh-CN.json").read_text(encoding="utf-8"))
EN = json.loads((I18N / "en.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ the world


@dataclass
class World:
    client: TestClient
    admin: dict[str, str]
    school: dict[str, int] = field(default_factory=dict)
    room: dict[str, int] = field(default_factory=dict)
    pairing: dict[str, int] = field(default_factory=dict)
    lesson: dict[str, int] = field(default_factory=dict)
    teacher_id: int = 0
    summaries: dict[str, LessonSummary] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        response = await self.client.request(
            method, API + path, json=body, headers=headers or self.admin
        )
        assert response.status < 300, (path, response.status, await response.text())
        return await response.json()

    def of(self, *names: str) -> list[LessonSummary]:
        return [self.summaries[n] for n in names]


def at(start: datetime, minutes: float) -> datetime:
    return start + timedelta(minutes=minutes)


async def attend(
    w: World, lesson: str, room: str, start: datetime, spans: list[tuple[float, float, str]]
) -> None:
    """The room's connections to the lesson as the server writes them: a row at the join,
    closed at the leave with the connection's own close reason; and a link sample each
    way every minute while connected (bitrate, loss and RTT varying with the minute)."""
    lesson_id, classroom_id = w.lesson[lesson], w.room[room]
    role = "main" if room.startswith("main") else "receiving"
    async with w.client.app[DB]() as db:
        samples = []
        for joined, left, cause in spans:
            await attendance.open_room_session(db, lesson_id, classroom_id, role, at(start, joined))
            await attendance.close_room_session(db, lesson_id, classroom_id, at(start, left), cause)
            minute = joined + 1
            while minute <= left:
                for direction, base in (("up", 900.0), ("down", 700.0)):
                    samples.append(
                        Sample(
                            lesson_id=lesson_id,
                            classroom_id=classroom_id,
                            at=at(start, minute),
                            direction=direction,
                            seconds=60.0,
                            bitrate_kbps=base + 10 * (minute % 7) + classroom_id,
                            packets=6000,
                            packets_lost=int(minute) % 5 * classroom_id,
                            jitter_ms=3.0,
                            rtt_ms=20.0 + 3 * (minute % 11) + classroom_id,
                            freezes=1 if minute % 17 == 0 and direction == "down" else 0,
                            freeze_ms=700 if minute % 17 == 0 and direction == "down" else 0,
                            keyframe_requests=0,
                        )
                    )
                minute += 1
        await insert_samples(db, samples)


@pytest.fixture
async def world(app_client: TestClient, admin_headers: dict[str, str]) -> World:
    """Schools A (city) → B, C (rural) on pairing 甲; D (city) → C on pairing 乙.

    Week 1: L1 (甲, held; B drops for three minutes and comes back), L2 (甲, held but the
    main room 8 minutes late), L3 (乙, partial). Week 2: L4 (甲, nobody joined: missed),
    L5 (乙, cancelled). L1 and L2 are taught by the teacher account, L4 names the same
    teacher without the account. L1 has a recording in the library.
    """
    w = World(app_client, admin_headers)
    for key, name, kind, room in (
        ("A", "城关一中", "city", "主讲教室"),
        ("B", "河口小学", "rural", "三年级一班"),
        ("C", "石门小学", "rural", "四年级一班"),
        ("D", "城关二中", "city", "录播室"),
    ):
        w.school[key] = (await w.call("POST", "/schools", {"name": name, "kind": kind}))["id"]
        room_key = f"main{key}" if kind == "city" else key
        body = {"school_id": w.school[key], "name": room}
        w.room[room_key] = (await w.call("POST", "/classrooms", body))["id"]
    for key, main, receiving in (("甲", "mainA", ["B", "C"]), ("乙", "mainD", ["C"])):
        body = {
            "name": f"结对{key}",
            "main_classroom_id": w.room[main],
            "receiving_classroom_ids": [w.room[r] for r in receiving],
        }
        w.pairing[key] = (await w.call("POST", "/pairings", body))["id"]
    async with app_client.app[DB]() as db:
        teacher = await create_user(
            db,
            username="wang",
            password="correct horse battery",
            role="teacher",
            school_id=w.school["A"],
        )
        w.teacher_id = teacher.id
    plans = {
        "L1": ("甲", WEEK1, "王老师", True),
        "L2": ("甲", WEEK1 + timedelta(days=1), "王老师", True),
        "L3": ("乙", WEEK1 + timedelta(hours=1), "李老师", False),
        "L4": ("甲", WEEK2, "王老师", False),
        "L5": ("乙", WEEK2 + timedelta(hours=1), "李老师", False),
    }
    for key, (pairing, start, teacher_name, account) in plans.items():
        body = {
            "pairing_id": w.pairing[pairing],
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": teacher_name,
            "title": f"一次函数{key}",
            "planned_start": start.isoformat(),
            "planned_end": (start + LESSON).isoformat(),
        }
        if account:
            body["teacher_user_id"] = w.teacher_id
        w.lesson[key] = (await w.call("POST", "/lessons", body))["id"]
    for key in ("L1", "L2", "L3"):
        for step in ("open", "start", "end"):
            await w.call("POST", f"/lessons/{w.lesson[key]}/{step}")
    await w.call("POST", f"/lessons/{w.lesson['L5']}/cancel")

    start = plans["L1"][1]
    await attend(w, "L1", "mainA", start, [(-2, 45, "lesson_ended")])
    await attend(w, "L1", "B", start, [(-1, 20, "closed"), (23, 45, "lesson_ended")])
    await attend(w, "L1", "C", start, [(0, 45, "lesson_ended")])
    start = plans["L2"][1]
    await attend(w, "L2", "mainA", start, [(8, 45, "lesson_ended")])
    await attend(w, "L2", "B", start, [(0, 45, "lesson_ended")])
    start = plans["L3"][1]
    await attend(w, "L3", "mainD", start, [(0, 10, "left")])
    await attend(w, "L3", "C", start, [(12, 30, "closed")])
    async with app_client.app[DB]() as db:
        db.add(
            Recording(
                lesson_id=w.lesson["L1"],
                title="一次函数L1",
                kind="dedicated",
                subject="数学",
                grade="初二",
                teacher_name="王老师",
                started_at=WEEK1,
                term="",
                state="ready",
            )
        )
        await db.commit()
        for key, lesson_id in w.lesson.items():
            await summarise_lesson(db, lesson_id)
            summary = await stored_summary(db, lesson_id)
            assert summary is not None
            w.summaries[key] = summary
    return w


# ------------------------------------------------------ the figures, recomputed


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def expected(
    summaries: list[LessonSummary],
    rooms: set[int] | None = None,
    recordings: int = 0,
) -> dict[str, Any]:
    """A group's figures from stored summaries, as docs/statistics.md defines them;
    `rooms` limits the room figures (grouping by school or classroom)."""
    room_rows = [
        (s, r) for s in summaries for r in s.rooms if rooms is None or r.classroom_id in rooms
    ]
    attended = sum(r.attendance_s for _, r in room_rows)
    planned = sum(s.planned_s for s, _ in room_rows)
    return {
        "scheduled": len(summaries),
        "held": sum(s.verdict == "held" for s in summaries),
        "partial": sum(s.verdict == "partial" for s in summaries),
        "late": sum(s.late for s in summaries),
        "missed": sum(s.verdict == "missed" for s in summaries),
        "cancelled": sum(s.verdict == "cancelled" for s in summaries),
        "pending": 0,
        "room_lessons": len(room_rows),
        "attendance_minutes": attended / 60,
        "attendance_rate": attended / planned if planned else None,
        "reconnects": sum(r.reconnects for _, r in room_rows),
        "drops": sum(r.drops for _, r in room_rows),
        "freezes": sum(r.down_freezes for _, r in room_rows),
        "freeze_minutes": sum(r.down_freeze_s for _, r in room_rows) / 60,
        "down_bitrate_kbps": mean([r.down_bitrate_mean_kbps for _, r in room_rows]),
        "up_bitrate_kbps": mean([r.up_bitrate_mean_kbps for _, r in room_rows]),
        "down_loss": mean([r.down_loss for _, r in room_rows]),
        "up_loss": mean([r.up_loss for _, r in room_rows]),
        "rtt_ms": mean([r.rtt_mean_ms for _, r in room_rows]),
        "rtt_p95_ms": mean([r.rtt_p95_ms for _, r in room_rows]),
        "recordings": recordings,
    }


def assert_group(group: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        if isinstance(value, float):
            assert group[name] == pytest.approx(value, rel=1e-6), name
        else:
            assert group[name] == value, name


def by_key(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["key"]: g for g in answer["groups"]}


# --------------------------------------------------------------- the scenario


async def test_the_lessons_happened_as_planned(world: World) -> None:
    s = world.summaries
    assert (s["L1"].verdict, s["L1"].late, s["L1"].drops, s["L1"].reconnects) == (
        "held",
        False,
        1,
        1,
    )
    assert s["L1"].room(world.room["B"]).attendance_s == pytest.approx((20 + 22) * 60)
    assert (s["L2"].verdict, s["L2"].late) == ("held", True)
    assert s["L2"].main_lateness_s == pytest.approx(8 * 60)
    assert s["L3"].verdict == "partial" and s["L3"].together_s == 0
    assert (s["L4"].verdict, s["L4"].rooms_joined) == ("missed", 0)
    assert s["L5"].verdict == "cancelled"
    # The link figures come from the samples: every joined room has them.
    assert all(
        r.samples > 0 and r.down_bitrate_mean_kbps and r.rtt_p95_ms
        for key in ("L1", "L2", "L3")
        for r in s[key].rooms
        if r.connected_s > 0
    )


async def test_every_grouping_matches_the_summaries(world: World) -> None:
    w = world
    weeks = await w.call("GET", "/statistics?by=week")
    assert weeks["by"] == "week" and weeks["timezone"] == "Asia/Shanghai"
    assert weeks["held_min_fraction"] == 0.5 and weeks["late_after_s"] == 300
    assert [g["key"] for g in weeks["groups"]] == ["2026-11-09", "2026-11-16"]
    assert_group(by_key(weeks)["2026-11-09"], expected(w.of("L1", "L2", "L3"), recordings=1))
    assert_group(by_key(weeks)["2026-11-16"], expected(w.of("L4", "L5")))

    pairings = by_key(await w.call("GET", "/statistics?by=pairing"))
    first, second = str(w.pairing["甲"]), str(w.pairing["乙"])
    assert (pairings[first]["label"], pairings[second]["label"]) == ("结对甲", "结对乙")
    assert_group(pairings[first], expected(w.of("L1", "L2", "L4"), recordings=1))
    assert_group(pairings[second], expected(w.of("L3", "L5")))

    teachers = by_key(await w.call("GET", "/statistics?by=teacher"))
    assert_group(teachers["王老师"], expected(w.of("L1", "L2", "L4"), recordings=1))
    assert_group(teachers["李老师"], expected(w.of("L3", "L5")))

    # Per school: the lessons its rooms were in, the figures of its rooms only.
    schools = by_key(await w.call("GET", "/statistics?by=school"))
    assert {g["label"] for g in schools.values()} == {
        "城关一中",
        "河口小学",
        "石门小学",
        "城关二中",
    }
    c_room = {w.room["C"]}
    c_lessons = w.of("L1", "L2", "L3", "L4", "L5")  # C is in both pairings
    assert_group(schools[str(w.school["C"])], expected(c_lessons, c_room, recordings=1))
    b_want = expected(w.of("L1", "L2", "L4"), {w.room["B"]}, recordings=1)
    assert_group(schools[str(w.school["B"])], b_want)
    assert schools[str(w.school["B"])]["drops"] == 1  # B's link went once in L1

    rooms = by_key(await w.call("GET", f"/statistics?by=classroom&pairing_id={w.pairing['乙']}"))
    assert rooms[str(w.room["C"])]["label"] == "石门小学 四年级一班"
    assert_group(rooms[str(w.room["C"])], expected(w.of("L3", "L5"), c_room))

    # Filters: a window (week 2 only), a teacher, a school.
    window = "from=2026-11-16T00:00:00%2B08:00&to=2026-11-23T00:00:00%2B08:00"
    only_week2 = await w.call("GET", f"/statistics?by=pairing&{window}")
    assert sum(g["scheduled"] for g in only_week2["groups"]) == 2
    assert only_week2["from"].startswith("2026-11-16")
    wang = await w.call("GET", "/statistics?by=week&teacher=%E7%8E%8B%E8%80%81%E5%B8%88")
    assert [g["scheduled"] for g in wang["groups"]] == [2, 1]
    d_only = await w.call("GET", f"/statistics?by=week&school_id={w.school['D']}")
    assert_group(by_key(d_only)["2026-11-09"], expected(w.of("L3"), {w.room["mainD"]}))


async def test_a_term_groups_its_own_lessons_and_names_those_of_no_term(world: World) -> None:
    w = world
    term = await w.call(
        "POST",
        "/terms",
        {
            "school_year": "2026-2027",
            "name": "2026秋",
            "start_date": "2026-09-01",
            "end_date": "2027-01-20",
        },
    )
    answer = await w.call("GET", f"/statistics?by=pairing&term_id={term['id']}")
    assert sum(g["scheduled"] for g in answer["groups"]) == 5  # by hand, within its dates
    by_term = await w.call("GET", "/statistics?by=term")
    assert [(g["key"], g["label"], g["scheduled"]) for g in by_term["groups"]] == [("", "", 5)]
    response = await w.client.get(f"{API}/statistics.csv?by=term", headers=w.admin)
    rows = list(csv.reader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert rows[1][:3] == ["", ZH["stats.no_term"], "5"]


# ------------------------------------------------------------------------ CSV


async def test_csv_is_excel_ready_with_chinese_headers_and_a_chinese_file_name(
    world: World,
) -> None:
    w = world
    window = "from=2026-11-09T00:00:00%2B08:00&to=2026-11-23T00:00:00%2B08:00"
    response = await w.client.get(f"{API}/statistics.csv?by=pairing&{window}", headers=w.admin)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    data = await response.read()
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    assert b"\r\n" in data
    header, *rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert header == [ZH[f"stats_csv.{c}"] for c in GROUP_COLUMNS]
    assert header[:4] == ["编号", "名称", "计划课时", "实际开课"]
    answer = await w.call("GET", f"/statistics?by=pairing&{window}")
    assert len(rows) == len(answer["groups"]) == 2
    for row, group in zip(rows, answer["groups"], strict=True):
        cells = dict(zip(GROUP_COLUMNS, row, strict=True))
        assert (cells["key"], cells["label"]) == (group["key"], group["label"])
        for name in ("scheduled", "held", "partial", "late", "missed", "cancelled", "drops"):
            assert int(cells[name]) == group[name], name
        for name in ("attendance_minutes", "attendance_rate", "rtt_ms", "down_loss"):
            if group[name] is None:
                assert cells[name] == ""
            else:
                assert float(cells[name]) == pytest.approx(group[name], abs=1e-4), name

    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    ascii_name = re.search(r'filename="([^"]+)"', disposition)
    assert ascii_name and ascii_name[1] == "tongbu-statistics-pairing-2026-11-09~2026-11-22.csv"
    encoded = re.search(r"filename\*=UTF-8''(\S+)", disposition)
    assert encoded and unquote(encoded[1]) == "常态化统计_按结对_2026-11-09~2026-11-22.csv"
    assert disposition.isascii()

    english = await w.client.get(f"{API}/statistics.csv?by=week&lang=en", headers=w.admin)
    header = next(csv.reader(io.StringIO((await english.read()).decode("utf-8-sig"))))
    assert header == [EN[f"stats_csv.{c}"] for c in GROUP_COLUMNS]
    assert "Statistics_By%20week_" in english.headers["Content-Disposition"]


# ------------------------------------------------------------- one lesson


async def test_one_lesson_room_by_room(world: World) -> None:
    w = world
    answer = await w.call("GET", f"/lessons/{w.lesson['L1']}/statistics")
    summary = w.summaries["L1"]
    assert (answer["verdict"], answer["final"], answer["recordings"]) == ("held", True, 1)
    assert answer["together_s"] == pytest.approx(summary.together_s)
    assert [r["classroom_id"] for r in answer["rooms"]] == [
        w.room["mainA"],
        w.room["B"],
        w.room["C"],
    ]
    b = next(r for r in answer["rooms"] if r["classroom_id"] == w.room["B"])
    assert (b["school_name"], b["classroom_name"]) == ("河口小学", "三年级一班")
    stored = summary.room(w.room["B"])
    assert b["summary"]["attendance_s"] == pytest.approx(stored.attendance_s)
    assert (b["summary"]["drops"], b["summary"]["reconnects"]) == (1, 1)
    assert b["summary"]["rtt_p95_ms"] == pytest.approx(stored.rtt_p95_ms)
    assert b["summary"]["down_bitrate_p95_kbps"] == pytest.approx(stored.down_bitrate_p95_kbps)


async def test_a_lesson_not_over_is_pending_and_computed_as_it_stands(world: World) -> None:
    w = world
    start = datetime.now(BEIJING).replace(microsecond=0) - timedelta(minutes=3)
    body = {
        "pairing_id": w.pairing["甲"],
        "kind": "dedicated",
        "subject": "数学",
        "grade": "初二",
        "teacher_name": "王老师",
        "title": "正在上的课",
        "planned_start": start.isoformat(),
        "planned_end": (start + LESSON).isoformat(),
    }
    lesson_id = (await w.call("POST", "/lessons", body))["id"]
    await w.call("POST", f"/lessons/{lesson_id}/open")
    async with w.client.app[DB]() as db:
        await attendance.open_room_session(
            db, lesson_id, w.room["mainA"], "main", start + timedelta(minutes=1)
        )
    answer = await w.call("GET", f"/lessons/{lesson_id}/statistics")
    assert (answer["verdict"], answer["final"], answer["rooms_joined"]) == ("pending", False, 1)
    main = answer["rooms"][0]
    assert main["classroom_id"] == w.room["mainA"]
    assert main["summary"]["attendance_s"] >= 120  # connected since a minute after the start
    assert main["summary"]["first_join_at"] is not None


# ---------------------------------------------------------------------- scope


async def test_a_school_admin_sees_the_lessons_of_their_school(
    world: World, headers_for: HeadersFor
) -> None:
    w = world
    sa_b = await headers_for(UserRole.SCHOOL_ADMIN, school_id=w.school["B"])
    schools = by_key(await w.call("GET", "/statistics?by=school", headers=sa_b))
    # B's lessons are L1, L2, L4 (pairing 甲): their schools, counted on those lessons only.
    assert set(schools) == {str(w.school[k]) for k in ("A", "B", "C")}
    assert_group(
        schools[str(w.school["C"])],
        expected(w.of("L1", "L2", "L4"), {w.room["C"]}, recordings=1),
    )
    weeks = await w.call("GET", "/statistics?by=week", headers=sa_b)
    assert [g["scheduled"] for g in weeks["groups"]] == [2, 1]
    own = await w.call("GET", f"/statistics?school_id={w.school['B']}", headers=sa_b)
    assert sum(g["scheduled"] for g in own["groups"]) == 3
    refused = await w.client.get(f"{API}/statistics?school_id={w.school['D']}", headers=sa_b)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "forbidden"
    refused = await w.client.get(f"{API}/lessons/{w.lesson['L3']}/statistics", headers=sa_b)
    assert refused.status == 403
    ok = await w.client.get(f"{API}/lessons/{w.lesson['L1']}/statistics", headers=sa_b)
    assert ok.status == 200

    csv_b = await w.client.get(f"{API}/statistics.csv?by=school", headers=sa_b)
    _, *rows = list(csv.reader(io.StringIO((await csv_b.read()).decode("utf-8-sig"))))
    assert {r[1] for r in rows} == {"城关一中", "河口小学", "石门小学"}


async def test_a_teacher_sees_their_own_lessons(world: World, app_client: TestClient) -> None:
    w = world
    login = await app_client.post(
        f"{API}/auth/login", json={"username": "wang", "password": "correct horse battery"}
    )
    token = (await login.json())["token"]
    mine = {"Authorization": f"Bearer {token}"}
    teachers = await w.call("GET", "/statistics?by=teacher", headers=mine)
    # L4 names 王老师 but not this account: the admin counts three, the teacher two.
    assert_group(teachers["groups"][0], expected(w.of("L1", "L2"), recordings=1))
    assert len(teachers["groups"]) == 1
    assert (await app_client.get(f"{API}/lessons/{w.lesson['L2']}/statistics", headers=mine)).ok
    other = await app_client.get(f"{API}/lessons/{w.lesson['L4']}/statistics", headers=mine)
    assert other.status == 403


async def test_others_see_nothing(world: World, headers_for: HeadersFor) -> None:
    w = world
    reviewer = await headers_for(UserRole.REVIEWER)
    for path in ("/statistics", "/statistics.csv", f"/lessons/{w.lesson['L1']}/statistics"):
        response = await w.client.get(API + path, headers=reviewer)
        assert response.status == 403, path
    assert (await w.client.get(f"{API}/statistics")).status == 401
    stray = await headers_for(UserRole.SCHOOL_ADMIN)  # of no school: nothing, not everything
    assert (await w.call("GET", "/statistics?by=school", headers=stray))["groups"] == []
    assert (await w.call("GET", "/alerts", headers=stray))["items"] == []


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("by=month", 400, "by"),
        ("from=2026-11-09T00:00:00", 400, "from"),  # no zone: ambiguous by eight hours
        ("from=2026-11-10T00:00:00Z&to=2026-11-09T00:00:00Z", 400, "to"),
        ("school_id=0", 400, "school_id"),
        ("colour=red", 400, "colour"),
        ("term_id=999999", 404, "term_id"),
        ("lang=fr", 400, "lang"),
    ],
)
async def test_bad_filters_are_refused_with_the_field_named(
    app_client: TestClient, admin_headers: dict[str, str], query: str, status: int, field: str
) -> None:
    path = "/statistics.csv" if query.startswith("lang") else "/statistics"
    response = await app_client.get(f"{API}{path}?{query}", headers=admin_headers)
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["field"] == field


async def test_an_unknown_lesson_is_404(
    app_client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = await app_client.get(f"{API}/lessons/999999/statistics", headers=admin_headers)
    assert response.status == 404
