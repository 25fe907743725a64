"""Issue 6, done: an admin imports a term's CSV, walks away, and reads the statistics of
lessons that ran themselves.

Everything is a real process: `tongbu serve` (SQLite, its own data folder, the scheduler on)
and three `tongbu agent --auto` classroom boxes holding device tokens. The admin works only
through the REST API: schools, classrooms, two pairings, device accounts bound to their
classrooms, a term holding today (Asia/Shanghai) whose first period starts a little after
now, and the timetable imported as the CSV file a school would export (Chinese headers,
UTF-8 with the BOM Excel writes). Two weekly lessons fall today, in the same period: one
of the pairing whose three rooms have boxes, and one of a pairing with no box at all, so
nobody joins it. Then the test touches nothing until both lessons have ended by
themselves, and reads what the admin would read: each lesson's verdict and attendance,
link figures, the week's statistics and their CSV, the recording in the library.

Periods are minute-granular ("HH:MM"), so the period is the first whole local minute at
least BOX_START_S + LEAD_S seconds away, one minute long: the test waits up to a minute
more than it would with second-granular times. About 2-3 minutes in all.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import av
import pytest
import sqlalchemy as sa

from classroom.db import close_database, open_database
from classroom.lesson_stats import GROUP_COLUMNS
from classroom.models import AuditEvent
from classroom.statistics_models import LinkSample
from tests.live_harness import TONGBU, AgentProcess, Api, free_port, wait_for
from tests.test_auto_agents import joins, left, listening, start_auto_agent
from tests.test_recording_e2e import download, wait_for_entry

pytestmark = pytest.mark.timeout(420)

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEAD_S, GRACE_S = 5, 3  # the scheduler's open lead and end grace, short for the test
BOX_START_S = 20  # time for three boxes to start and read their timetable, with room to spare
SERVER_ENV = {
    "TONGBU_SCHEDULER": "on",
    "TONGBU_SCHEDULER_INTERVAL_S": "1",
    "TONGBU_OPEN_LEAD_S": str(LEAD_S),
    "TONGBU_END_GRACE_S": str(GRACE_S),
    "TONGBU_LINK_SAMPLE_INTERVAL_S": "2",
}
WEEKDAYS = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
ZH = json.loads(
    (Path(__file__).resolve().parent.parent / "web/static/i18n/zh-CN.json").read_text("utf-8")
)


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (data_dir.parent / "server.log").open("wb")
    return subprocess.Popen(
        [TONGBU, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **SERVER_ENV},
    )


async def stop_process(process: subprocess.Popen[bytes], within: float = 30) -> None:
    """SIGTERM as systemd would, SIGKILL if it does not go: never leave one behind."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process the test starts, stopped at teardown whatever happened: a timeout
    interrupts the event loop, and the test's own `finally` may never run."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def first_period(now: datetime) -> datetime:
    """Local start of a one-minute period: the first whole minute leaving the boxes
    BOX_START_S to start before the lesson opens, moved to midnight if it would cross it."""
    local = now.astimezone(SHANGHAI) + timedelta(seconds=BOX_START_S + LEAD_S + 59)
    start = local.replace(second=0, microsecond=0)
    if (start + timedelta(minutes=1)).date() != start.date():  # 23:59: no "HH:MM" end
        start = (start + timedelta(minutes=1)).replace(hour=0, minute=0)
    return start


def timetable_csv(day: date) -> bytes:
    """The shape a school exports: one row per weekly lesson; UTF-8 with Excel's BOM."""
    weekday = WEEKDAYS[day.isoweekday() - 1]
    rows = [
        ["星期", "节次", "学科", "年级", "主讲教室", "听课教室", "教师", "课题", "类型", "单双周"],
        [weekday, "第1节", "数学", "初二", "城关一中/主讲教室",
         "乡村小学一/听课教室、乡村小学二/听课教室", "王芳", "一次函数", "专递课堂", "每周"],
        [weekday, "1", "英语", "初一", "城关二中/主讲教室", "乡村小学三/听课教室",
         "李明", "自我介绍", "专递课堂", "每周"],
    ]  # fmt: skip
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")


def at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def lesson_ids_of(api: Api, series_id: int) -> dict[str, int]:
    """The series' lessons by local date."""
    occurrences = await api.call("GET", f"/series/{series_id}/occurrences")
    return {o["occurrence_date"]: o["lesson_id"] for o in occurrences["items"]}


def by_key(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["key"]: g for g in answer["groups"]}


async def statistics_csv(api: Api, query: str) -> list[dict[str, str]]:
    async with api.session.get(
        f"{api.base_url}/api/v1/statistics.csv?{query}",
        headers={"Authorization": f"Bearer {api.token}"},
    ) as response:
        assert response.status == 200, await response.text()
        data = await response.read()
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with the BOM Excel needs"
    header, *rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert header == [ZH[f"stats_csv.{c}"] for c in GROUP_COLUMNS]
    return [dict(zip(GROUP_COLUMNS, row, strict=True)) for row in rows]


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_an_imported_term_runs_itself_and_its_statistics_tell_what_happened(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    await asyncio.to_thread(
        subprocess.run,
        [TONGBU, "admin", "create-user", "--username", "root", "--password", "term-e2e-pass-1",
         "--role", "admin", "--data-dir", str(data_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    server = serve(data_dir, port)
    spawned.append(server)
    boxes: list[AgentProcess] = []
    async with aiohttp.ClientSession() as http:
        try:
            await wait_for(lambda: listening(port), 60, "the server to listen")

            async def login(username: str, password: str) -> str:
                anonymous = Api(base_url, "", http)
                answer = await anonymous.call(
                    "POST", "/auth/login", {"username": username, "password": password}
                )
                return answer["token"]

            api = Api(base_url, await login("root", "term-e2e-pass-1"), http)

            # ---- the registers: two pairings; boxes only in the first one's rooms
            async def classroom(school: str, kind: str, name: str) -> int:
                s = await api.call("POST", "/schools", {"name": school, "kind": kind})
                room = await api.call("POST", "/classrooms", {"school_id": s["id"], "name": name})
                return room["id"]

            rooms = {
                "main": await classroom("城关一中", "city", "主讲教室"),
                "rural1": await classroom("乡村小学一", "rural", "听课教室"),
                "rural2": await classroom("乡村小学二", "rural", "听课教室"),
            }
            idle_main = await classroom("城关二中", "city", "主讲教室")
            idle_rural = await classroom("乡村小学三", "rural", "听课教室")
            attended = await api.call(
                "POST",
                "/pairings",
                {"name": "城关一中—乡村小学", "main_classroom_id": rooms["main"],
                 "receiving_classroom_ids": [rooms["rural1"], rooms["rural2"]]},
            )  # fmt: skip
            unattended = await api.call(
                "POST",
                "/pairings",
                {"name": "城关二中—乡村小学三", "main_classroom_id": idle_main,
                 "receiving_classroom_ids": [idle_rural]},
            )  # fmt: skip
            device_tokens = {}
            for name, classroom_id in rooms.items():
                await api.call(
                    "POST",
                    "/users",
                    {"username": f"box-{name}", "password": "box-password-1", "role": "device",
                     "classroom_id": classroom_id},
                )  # fmt: skip
                device_tokens[name] = await login(f"box-{name}", "box-password-1")

            # ---- a term holding today, its first period a little after now
            start = first_period(datetime.now(UTC))
            end = start + timedelta(minutes=1)
            today = start.date()
            monday = today - timedelta(days=today.weekday())
            term = await api.call(
                "POST",
                "/terms",
                {"school_year": f"{today.year}-{today.year + 1}", "name": "测试学期",
                 "start_date": monday.isoformat(),
                 "end_date": (monday + timedelta(weeks=3, days=6)).isoformat(),
                 "periods": [{"number": 1, "starts_at": f"{start:%H:%M}",
                              "ends_at": f"{end:%H:%M}"}]},
            )  # fmt: skip
            assert term["timezone"] == "Asia/Shanghai" and term["weeks"] == 4

            # ---- the timetable, imported as the file a school exports
            csv_file = tmp_path / "课表.csv"
            csv_file.write_bytes(timetable_csv(today))
            async with http.post(
                f"{base_url}/api/v1/terms/{term['id']}/import",
                data=csv_file.read_bytes(),
                headers={"Authorization": f"Bearer {api.token}", "Content-Type": "text/csv"},
            ) as response:
                imported = await response.json()
                assert response.status == 200, imported
            # Today's and the next three weeks' lessons of both rows: still to come.
            assert (imported["series_created"], imported["lessons_created"]) == (2, 8), imported
            generated = await api.call("POST", f"/terms/{term['id']}/generate")
            assert generated["created"] == 0, generated  # idempotent
            assert generated["unchanged"] == 8, generated
            series = (await api.call("GET", f"/terms/{term['id']}/series"))["items"]
            by_pairing = {s["pairing_id"]: s["id"] for s in series}
            first = (await lesson_ids_of(api, by_pairing[attended["id"]]))[today.isoformat()]
            nobody = (await lesson_ids_of(api, by_pairing[unattended["id"]]))[today.isoformat()]
            for lesson_id in (first, nobody):
                lesson = await api.call("GET", f"/lessons/{lesson_id}")
                assert lesson["state"] == "scheduled"
                assert (at(lesson["planned_start"]), at(lesson["planned_end"])) == (
                    start.timestamp(),
                    end.timestamp(),
                )

            # ---- the boxes start before anything opens; then nobody touches anything
            opens_at = start.timestamp() - LEAD_S
            boxes = [
                start_auto_agent(name, base_url, device_tokens[name], None, tmp_path)
                for name in rooms
            ]
            spawned.extend(box.process for box in boxes)
            for box in boxes:
                report = await wait_for(
                    lambda b=box: b.of("timetable"), 60, f"{box.name} to read its timetable"
                )
                mine = {x["lesson_id"] for x in report[0]["lessons"]}
                assert first in mine and nobody not in mine, (box.name, mine)
            read_by = max(box.of("timetable")[0]["t"] for box in boxes)
            assert read_by < opens_at, "the boxes were not ready before the lesson opened"
            print(f"boxes ready {opens_at - read_by:.0f} s before the opening")

            for box in boxes:
                await wait_for(lambda b=box: left(b, first), 150, f"{box.name} to leave")
            ended = {}
            for lesson_id in (first, nobody):
                deadline = time.monotonic() + 30
                while (lesson := await api.call("GET", f"/lessons/{lesson_id}"))["state"] != (
                    "ended"
                ):
                    assert time.monotonic() < deadline, f"lesson {lesson_id} never ended: {lesson}"
                    await asyncio.sleep(0.5)
                ended[lesson_id] = lesson

            # ---- lesson 1 ran itself: opened, joined before its bell, ended by the scheduler
            lesson = ended[first]
            assert (lesson["end_reason"], lesson["started_at"] is not None) == (
                "scheduled_end",
                True,
            ), lesson
            assert opens_at <= at(lesson["opened_at"]) < start.timestamp()
            assert at(lesson["ended_at"]) >= end.timestamp() + GRACE_S
            for box in boxes:
                assert opens_at <= joins(box, first)[0] < start.timestamp(), box.name
                assert [e["reason"] for e in left(box, first)] == ["ended"], box.name
                assert not box.of("refused") and box.process.poll() is None, box.stderr_tail()
            # Lesson 2: opened on time, never live, ended as not held.
            lesson = ended[nobody]
            assert (lesson["end_reason"], lesson["started_at"]) == ("not_held", None), lesson
            status = await api.call("GET", "/scheduler?limit=100")
            automatic = Counter((e["lesson_id"], e["action"]) for e in status["recent"])
            assert automatic == Counter(
                {(lid, action): 1 for lid in (first, nobody)
                 for action in ("lesson_open", "lesson_ended")}
            ), status["recent"]  # fmt: skip
            assert all(e["detail"].get("auto") is True for e in status["recent"])

            # ---- lesson 1's recording: in the library with every room and the composite
            entry = await wait_for_entry(api, first, {"composite", "room_video"}, within=180)
            assert {f["classroom_id"] for f in entry["files"] if f["role"] == "room_video"} == (
                set(rooms.values())
            )
            composite = next(f for f in entry["files"] if f["role"] == "composite")
            path = await download(api, composite, tmp_path / "composite.mp4")
            frames = await asyncio.to_thread(decoded_frames, path)
            assert frames > 0
            print(f"composite: {frames} frames decoded")
            library = await api.call("GET", "/library?limit=200")
            assert [i["lesson_id"] for i in library["items"]] == [first], "lesson 2: nothing"

            # ---- what the admin reads: each lesson
            stats = await wait_for_final(api, first)
            assert stats["verdict"] == "held" and not stats["late"], stats
            assert stats["planned_s"] == 60
            assert stats["rooms_joined"] == stats["rooms_planned"] == 3
            assert (stats["reconnects"], stats["drops"]) == (0, 0)
            assert stats["recordings"] == 1
            assert {r["classroom_id"] for r in stats["rooms"]} == set(rooms.values())
            for room in stats["rooms"]:
                summary = room["summary"]
                # In from before the bell until after the end: the whole planned minute.
                assert 0.9 * 60 <= summary["attendance_s"] <= 60, room
                assert summary["samples"] > 0, room
                assert summary["up_bitrate_mean_kbps"] > 0, room
                assert summary["down_bitrate_mean_kbps"] > 0, room
            stats = await api.call("GET", f"/lessons/{nobody}/statistics")
            assert (stats["verdict"], stats["rooms_joined"], stats["recordings"]) == (
                "missed",
                0,
                0,
            ), stats

            # ---- the week, by week and by pairing, as JSON and as the CSV for Excel
            weeks = by_key(await api.call("GET", "/statistics?by=week"))
            assert set(weeks) == {(monday + timedelta(weeks=n)).isoformat() for n in range(4)}
            week = weeks[monday.isoformat()]
            assert {k: week[k] for k in ("scheduled", "held", "missed", "partial", "pending",
                                         "cancelled", "recordings")} == {
                "scheduled": 2, "held": 1, "missed": 1, "partial": 0, "pending": 0,
                "cancelled": 0, "recordings": 1,
            }, week  # fmt: skip
            assert 0.9 * 3 <= week["attendance_minutes"] <= 3, week  # three rooms, a minute
            for later in (monday + timedelta(weeks=n) for n in (1, 2, 3)):
                row = weeks[later.isoformat()]
                assert (row["scheduled"], row["pending"], row["held"]) == (2, 2, 0), row
            week_start = datetime.combine(monday, datetime.min.time(), SHANGHAI)
            window = urlencode(
                {
                    "from": week_start.isoformat(),
                    "to": (week_start + timedelta(weeks=1)).isoformat(),
                }
            )
            pairings = by_key(await api.call("GET", f"/statistics?by=pairing&{window}"))
            assert {k: (g["scheduled"], g["held"], g["missed"]) for k, g in pairings.items()} == {
                str(attended["id"]): (1, 1, 0),
                str(unattended["id"]): (1, 0, 1),
            }, pairings
            totals = [sum(g[k] for g in pairings.values()) for k in ("scheduled", "held", "missed")]
            assert totals == [2, 1, 1]
            for query, answer in (("by=week", weeks), (f"by=pairing&{window}", pairings)):
                rows = {r["key"]: r for r in await statistics_csv(api, query)}
                assert set(rows) == set(answer)
                for key, row in rows.items():
                    for column in ("scheduled", "held", "missed", "pending", "recordings"):
                        assert int(row[column]) == answer[key][column], (query, key, column)
                    assert row["label"] == answer[key]["label"]
                    assert float(row["attendance_minutes"]) == pytest.approx(
                        answer[key]["attendance_minutes"], abs=1e-3
                    )

        finally:
            await asyncio.gather(*(box.stop() for box in boxes), return_exceptions=True)
            await stop_process(server)

    # The rows behind those figures, read from the stopped server's database.
    db = await open_database(f"sqlite+aiosqlite:///{data_dir / 'tongbu.sqlite3'}")
    try:
        async with db() as s:
            steps = Counter(
                (r.actor_name, r.action, r.target)
                for r in await s.execute(
                    sa.select(AuditEvent.actor_name, AuditEvent.action, AuditEvent.target).where(
                        AuditEvent.action.in_(["lesson_open", "lesson_live", "lesson_ended"])
                    )
                )
            )
            samples = Counter(
                (r.classroom_id, r.direction)
                for r in await s.execute(
                    sa.select(LinkSample.classroom_id, LinkSample.direction).where(
                        LinkSample.lesson_id == first, LinkSample.bitrate_kbps > 0
                    )
                )
            )
    finally:
        await close_database(db)
    assert steps == Counter(
        {("scheduler", action, f"lesson:{lid}"): 1
         for lid in (first, nobody) for action in ("lesson_open", "lesson_ended")}
    )  # fmt: skip
    assert set(samples) == {(cid, d) for cid in rooms.values() for d in ("up", "down")}, samples


async def wait_for_final(api: Api, lesson_id: int, within: float = 60) -> dict[str, Any]:
    """The lesson's stored summary, written when the scheduler ended it."""
    deadline = time.monotonic() + within
    while not (stats := await api.call("GET", f"/lessons/{lesson_id}/statistics"))["final"]:
        assert time.monotonic() < deadline, f"lesson {lesson_id}'s summary never stored: {stats}"
        await asyncio.sleep(0.5)
    return stats
