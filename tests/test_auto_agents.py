"""A short real timetable runs itself: a server with its scheduler, three classroom boxes
in `--auto` mode, two lessons one after the other, and a server restart in the middle of
the first one.

Everything is a real process: `tongbu serve` (stopped with SIGTERM and started again on
the same data folder and SQLite database) and three `tongbu agent --auto` boxes with
device tokens from `tongbu admin issue-token`. Nobody opens, joins, leaves or ends
anything by hand: the test only creates the lessons and watches.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from classroom.db import close_database, open_database
from classroom.models import AuditEvent
from recorder.finalise.steps import capture_fingerprint
from tests.live_harness import (
    AGENT_VIDEO,
    TONGBU,
    AgentProcess,
    Api,
    free_port,
    stop_all,
    wait_for,
)
from tests.test_live_lesson import assert_video_advancing

pytestmark = pytest.mark.timeout(420)

LEAD_S, GRACE_S = 6, 2  # the scheduler's open lead and end grace, short for the test
SCHEDULER_ENV = {
    "TONGBU_SCHEDULER_INTERVAL_S": "1",
    "TONGBU_OPEN_LEAD_S": str(LEAD_S),
    "TONGBU_END_GRACE_S": str(GRACE_S),
}


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (data_dir.parent / f"server-{time.time():.0f}.log").open("wb")
    return subprocess.Popen(
        [TONGBU, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **SCHEDULER_ENV},
    )


def listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd stops it: rooms are told to reconnect, captures left resumable."""
    server.send_signal(signal.SIGTERM)
    await asyncio.to_thread(server.wait, 30)


def cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run(
        [TONGBU, "admin", *args, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def api_token(data_dir: Path, username: str) -> str:
    return cli(data_dir, "issue-token", "--username", username).split()[-1]


def start_auto_agent(
    name: str, base_url: str, device_token: str, classroom_id: int | None, workdir: Path
) -> AgentProcess:
    report = workdir / f"{name}.jsonl"
    report.touch()
    stderr = report.with_suffix(".stderr").open("wb")
    args = [
        TONGBU, "agent", "--auto", "--server", base_url, "--device-token", device_token,
        "--refresh", "5", "--report", str(report), "--report-interval", "0.5", *AGENT_VIDEO,
    ]  # fmt: skip
    if classroom_id is not None:
        args += ["--classroom", str(classroom_id)]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    stderr.close()
    return AgentProcess(name, report, process)


def joins(agent: AgentProcess, lesson_id: int) -> list[float]:
    return [e["t"] for e in agent.of("joined") if e["lesson_id"] == lesson_id]


def left(agent: AgentProcess, lesson_id: int) -> list[dict[str, Any]]:
    return [e for e in agent.of("left") if e["lesson_id"] == lesson_id]


def at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def library_entry(api: Api, lesson_id: int) -> dict[str, Any] | None:
    page = await api.call("GET", "/library?limit=200")
    for item in page["items"]:
        if item["lesson_id"] == lesson_id:
            return await api.call("GET", f"/library/{item['id']}")
    return None


def finalised_from_final_capture(data_dir: Path, lesson_id: int) -> dict[str, Any] | None:
    """The lesson's manifest, once it was made from the capture as it is now (after the
    restart's second part), else None."""
    capture = data_dir / "recordings" / str(lesson_id) / "capture"
    manifest_path = capture.parent / "final" / "manifest.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("state") not in ("partial", "done"):
        return None
    if manifest.get("inputs") != capture_fingerprint(capture):
        return None
    return manifest


async def test_two_lessons_run_themselves_across_a_server_restart(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    cli(data_dir, "create-user", "--username", "root", "--password", "auto-agents-1",
        "--role", "admin")  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    server = serve(data_dir, port)
    agents: list[AgentProcess] = []
    async with aiohttp.ClientSession() as http:
        api = Api(base_url, api_token(data_dir, "root"), http)
        try:
            await wait_for(lambda: listening(port), 60, "the server to listen")

            # ---- a pairing, one device account per school, two lessons back to back
            city = await api.call("POST", "/schools", {"name": "城关一中", "kind": "city"})
            main = await api.call(
                "POST", "/classrooms", {"school_id": city["id"], "name": "主讲教室"}
            )
            rooms = {"main": (city["id"], main["id"])}
            for i in (1, 2):
                school = await api.call(
                    "POST", "/schools", {"name": f"乡村小学{i}", "kind": "rural"}
                )
                room = await api.call(
                    "POST", "/classrooms", {"school_id": school["id"], "name": "听课教室"}
                )
                rooms[f"rural{i}"] = (school["id"], room["id"])
            pairing = await api.call(
                "POST",
                "/pairings",
                {
                    "name": "结对",
                    "main_classroom_id": main["id"],
                    "receiving_classroom_ids": [rooms["rural1"][1], rooms["rural2"][1]],
                },
            )
            device_tokens = {}
            for name, (_, classroom_id) in rooms.items():
                await api.call(
                    "POST",
                    "/users",
                    {"username": f"box-{name}", "password": "box-password-1",
                     "role": "device", "classroom_id": classroom_id},
                )  # fmt: skip
                device_tokens[name] = await asyncio.to_thread(api_token, data_dir, f"box-{name}")
            t0 = datetime.now(UTC).replace(microsecond=0)
            planned = [(t0 + timedelta(seconds=22), t0 + timedelta(seconds=60)),
                       (t0 + timedelta(seconds=64), t0 + timedelta(seconds=78))]  # fmt: skip
            lesson_ids = []
            for n, (start, end) in enumerate(planned, 1):
                lesson = await api.call(
                    "POST",
                    "/lessons",
                    {"pairing_id": pairing["id"], "kind": "dedicated", "subject": "数学",
                     "grade": "初二", "teacher_name": "王老师", "title": f"第{n}节",
                     "planned_start": start.isoformat(), "planned_end": end.isoformat()},
                )  # fmt: skip
                lesson_ids.append(lesson["id"])
            first, second = lesson_ids

            # ---- the boxes start before anything opens, and wait. Each account is its
            # classroom's: the main box states its classroom (checked), the others ask.
            agents = [
                start_auto_agent(
                    name,
                    base_url,
                    device_tokens[name],
                    classroom_id if name == "main" else None,
                    tmp_path,
                )
                for name, (_, classroom_id) in rooms.items()
            ]
            for agent in agents:
                report = await wait_for(
                    lambda a=agent: a.of("timetable"), 60, f"{agent.name} to read its timetable"
                )
                states = {x["lesson_id"]: x["state"] for x in report[0]["lessons"]}
                assert states == {first: "scheduled", second: "scheduled"}, (agent.name, states)

            # ---- lesson 1 opens by itself; the boxes join it, media flows
            for agent in agents:
                await wait_for(lambda a=agent: joins(a, first), 60, f"{agent.name} to join")
            for agent in agents[1:]:
                await assert_video_advancing(agent, rooms["main"][1], within=40)
            await assert_video_advancing(agents[0], rooms["rural1"][1], within=40)
            lesson = await api.call("GET", f"/lessons/{first}")
            assert lesson["state"] == "live"
            opened_at = at(lesson["opened_at"])
            assert planned[0][0].timestamp() - LEAD_S <= opened_at < planned[0][0].timestamp()
            for agent in agents:
                # On time: after it opened, before its bell.
                assert opened_at <= joins(agent, first)[0] < planned[0][0].timestamp()

            # ---- recording begins at the bell (tests/test_recording_bell.py: not before)
            capture = data_dir / "recordings" / str(first) / "capture"
            await asyncio.sleep(max(0.0, planned[0][0].timestamp() - time.time()))
            await wait_for(lambda: list(capture.glob("*-video.000.tbl")), 10, "the recording")

            # ---- the server restarts in the middle of lesson 1
            await asyncio.sleep(2)
            await stop_server(server)
            restarted_at = time.time()
            server = serve(data_dir, port)
            await wait_for(lambda: listening(port), 60, "the server to come back")
            for agent in agents:
                await wait_for(
                    lambda a=agent: [t for t in joins(a, first) if t > restarted_at],
                    60,
                    f"{agent.name} to rejoin lesson 1",
                )
            for agent in agents[1:]:
                await assert_video_advancing(agent, rooms["main"][1], within=40)
            lesson = await api.call("GET", f"/lessons/{first}")
            assert lesson["state"] == "live" and lesson["ended_at"] is None, lesson
            print(f"rejoined {max(joins(a, first)[-1] for a in agents) - restarted_at:.1f} s "
                  "after the restart")  # fmt: skip

            # ---- lesson 1 ends by itself; the boxes go on to lesson 2, which ends too
            for agent in agents:
                await wait_for(lambda a=agent: left(a, first), 60, f"{agent.name} to leave 1")
                await wait_for(lambda a=agent: left(a, second), 90, f"{agent.name} to leave 2")
            for lesson_id, (_start, end) in zip(lesson_ids, planned, strict=True):
                lesson = await api.call("GET", f"/lessons/{lesson_id}")
                assert (lesson["state"], lesson["end_reason"]) == ("ended", "scheduled_end")
                assert lesson["started_at"] is not None, "the main room's join made it live"
                ended_at = at(lesson["ended_at"])
                assert end.timestamp() + GRACE_S <= ended_at, "not ended before end + grace"
                for agent in agents:
                    joined = joins(agent, lesson_id)
                    assert joined and joined[0] >= at(lesson["opened_at"]), agent.name
                    departure = left(agent, lesson_id)
                    assert len(departure) == 1 and departure[0]["reason"] == "ended"
                    assert departure[0]["t"] >= ended_at, (agent.name, departure, ended_at)
            for agent in agents:
                assert left(agent, first)[0]["t"] <= joins(agent, second)[0], agent.name
                assert agent.process.poll() is None, f"{agent.name} exited"
                assert not agent.of("refused"), agent.of("refused")

            # ---- both lessons recorded, lesson 1 once, across the restart
            for lesson_id in lesson_ids:
                manifest = await wait_for(
                    lambda lid=lesson_id: finalised_from_final_capture(data_dir, lid),
                    120,
                    f"lesson {lesson_id} finalised from its whole capture",
                )
                assert {r["classroom_id"] for r in manifest["rooms"]} == {
                    cid for _, cid in rooms.values()
                }
                entry = await library_entry(api, lesson_id)
                for _ in range(100):  # registered as the manifest is written
                    if entry is not None and entry["state"] == "ready":
                        break
                    await asyncio.sleep(0.2)
                    entry = await library_entry(api, lesson_id)
                assert entry is not None and entry["state"] == "ready", entry
                videos = {f["classroom_id"] for f in entry["files"] if f["role"] == "room_video"}
                assert videos == {cid for _, cid in rooms.values()}
        finally:
            await stop_all(agents)
            if server.poll() is None:
                await stop_server(server)

    recordings = sorted(int(p.name) for p in (data_dir / "recordings").iterdir() if p.is_dir())
    assert recordings == lesson_ids, "one recording folder per lesson, nothing else"
    capture = data_dir / "recordings" / str(first) / "capture"
    events = [json.loads(line) for line in (capture / "events.jsonl").read_text().splitlines()]
    started = [e for e in events if e["kind"] == "recording_started"]
    assert [bool((e.get("detail") or {}).get("resumed")) for e in started] == [False, True], (
        "one recording of lesson 1, resumed once on the same clock after the restart"
    )
    for _, classroom_id in rooms.values():
        parts = sorted(p.name for p in capture.glob(f"{classroom_id}-video.*.tbl"))
        assert len(parts) >= 2, f"room {classroom_id}: {parts} (before and after the restart)"
        assert not list((data_dir / "recordings" / str(second) / "capture").glob(
            f"{classroom_id}-video.001.tbl")), "lesson 2 was not interrupted"  # fmt: skip

    # The audit trail: each automatic step exactly once, by the scheduler.
    db = await open_database(f"sqlite+aiosqlite:///{data_dir / 'tongbu.sqlite3'}")
    try:
        async with db() as s:
            rows = await s.execute(
                sa.select(AuditEvent.actor_name, AuditEvent.action, AuditEvent.target).where(
                    AuditEvent.action.in_(["lesson_open", "lesson_live", "lesson_ended"])
                )
            )
            steps = Counter((r.actor_name, r.action, r.target) for r in rows)
    finally:
        await close_database(db)
    assert steps == Counter(
        {("scheduler", action, f"lesson:{lid}"): 1
         for lid in lesson_ids for action in ("lesson_open", "lesson_ended")}
    )  # fmt: skip


async def test_a_box_waits_for_the_server_and_stops_only_when_its_token_is_refused(
    tmp_path: Path,
) -> None:
    """Started while the server is down, the box retries instead of failing; it finds its
    timetable once the server is up; disabling its device account stops it (status 2)."""
    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    cli(data_dir, "create-user", "--username", "root", "--password", "auto-agents-1",
        "--role", "admin")  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    server = serve(data_dir, port)
    box: AgentProcess | None = None
    async with aiohttp.ClientSession() as http:
        api = Api(base_url, api_token(data_dir, "root"), http)
        try:
            await wait_for(lambda: listening(port), 60, "the server to listen")
            school = await api.call("POST", "/schools", {"name": "乡村小学", "kind": "rural"})
            room = await api.call(
                "POST", "/classrooms", {"school_id": school["id"], "name": "听课教室"}
            )
            device = await api.call(
                "POST",
                "/users",
                {"username": "box", "password": "box-password-1", "role": "device",
                 "classroom_id": room["id"]},
            )  # fmt: skip
            token = await asyncio.to_thread(api_token, data_dir, "box")
            await stop_server(server)

            # No --classroom: the account is its classroom's; the box asks which it is.
            box = start_auto_agent("box", base_url, token, None, tmp_path)
            await wait_for(lambda: len(box.of("server_unavailable")) >= 2, 60, "the box to retry")
            assert box.process.poll() is None, box.stderr_tail()
            server = serve(data_dir, port)
            await wait_for(lambda: box.of("timetable"), 60, "the box to read its timetable")
            assert box.of("timetable")[0]["classroom_id"] == room["id"]
            assert box.process.poll() is None

            await api.call("PATCH", f"/users/{device['id']}", {"disabled": True})
            await wait_for(lambda: box.process.poll() is not None, 30, "the box to stop")
            assert box.process.returncode == 2
            assert box.of("refused")[0]["code"] == "device_refused"
        finally:
            if box is not None:
                await box.stop()
            if server.poll() is None:
                await stop_server(server)
