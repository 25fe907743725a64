"""Statistics of lessons that really ran: a real server, real agents, real rows.

- A lesson where a receiving room's box dies mid-lesson (SIGKILL: no goodbye) and comes
  back: its attendance rows, its link samples and the lesson's summary match what happened.
- A lesson nobody joined: no rows, no samples, summarised as missed by the server itself.
- A server killed mid-lesson: on the next start the rows it left open are closed at the
  last sample, and the agents' rejoins open new rows.
Also the freeze meter the samples count with, on its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from classroom.attendance import room_sessions_of
from classroom.lesson_stats import stored_summary
from classroom.link_samples import samples_of
from classroom.statistics_models import LinkSample
from signaling.appkeys import DB
from signaling.media.freezes import FREEZE_GAP, FreezeMeter
from signaling.services.quality_sampler import STATISTICS
from tests.live_harness import (
    TONGBU,
    Api,
    ApiError,
    free_port,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.test_live_lesson import assert_video_advancing

pytestmark = pytest.mark.timeout(300)

SAMPLE_S = 1.0  # sampling interval in these tests (10 s in production)
LEAD_S = 20  # the boxes join this long before the planned start, as they do at school


# ------------------------------------------------------------------ the meter


def test_a_gap_between_frames_longer_than_the_limit_is_one_freeze() -> None:
    meter = FreezeMeter()
    for t in (0.0, 0.066, 0.133):
        meter.frame(t)
    assert meter.freezes == 0
    resumed = 0.133 + FREEZE_GAP + 0.2
    meter.frame(resumed)
    assert meter.freezes == 1 and meter.freeze_ms == pytest.approx((FREEZE_GAP + 0.2) * 1000)
    meter.frame(resumed + FREEZE_GAP - 0.01)  # just under the limit
    assert meter.freezes == 1


def test_keyframe_requests_of_one_episode_count_once_until_the_keyframe() -> None:
    meter = FreezeMeter()
    meter.picture_lost(0.0)  # before any picture: the room is starting, not freezing
    assert meter.freezes == 0
    meter.frame(1.0)
    meter.picture_lost(1.1)
    meter.picture_lost(1.3)  # the same episode
    meter.frame(1.9)  # delta frames the room cannot decode: no second count
    meter.keyframe(2.1)
    meter.frame(2.15)
    assert meter.freezes == 1 and meter.freeze_ms == pytest.approx(1000)


def test_a_reset_is_no_freeze_and_closes_an_open_episode() -> None:
    meter = FreezeMeter()
    meter.frame(0.0)
    meter.reset(5.0)  # muted, or another room on stage
    meter.frame(9.0)
    assert meter.freezes == 0
    meter.picture_lost(9.5)
    meter.reset(10.0)
    assert meter.freezes == 1 and meter.freeze_ms == pytest.approx(500)


# ------------------------------------------------------------- live lessons


async def short_lesson(
    api: Api, *, tag: str, receiving: int, start: datetime, seconds: float
) -> dict[str, Any]:
    """A pairing and a lesson planned for [start, start + seconds), opened."""
    city = await api.call("POST", "/schools", {"name": f"城关一中{tag}", "kind": "city"})
    main = await api.call("POST", "/classrooms", {"school_id": city["id"], "name": "主讲教室"})
    rural = []
    for i in range(receiving):
        school = await api.call("POST", "/schools", {"name": f"村小{tag}{i}", "kind": "rural"})
        room = await api.call("POST", "/classrooms", {"school_id": school["id"], "name": "听课"})
        rural.append(room["id"])
    pairing = await api.call(
        "POST",
        "/pairings",
        {"name": f"结对{tag}", "main_classroom_id": main["id"], "receiving_classroom_ids": rural},
    )
    lesson = await api.call(
        "POST",
        "/lessons",
        {
            "pairing_id": pairing["id"],
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": f"王老师{tag}",
            "title": "一次函数",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(seconds=seconds)).isoformat(),
        },
    )
    try:
        await api.call("POST", f"/lessons/{lesson['id']}/open")
    except ApiError as exc:
        if exc.status != 409:  # the scheduler may have opened it first
            raise
    return {"id": lesson["id"], "main": main["id"], "rural": rural, "pairing": pairing["id"]}


def connected(server: Any, lesson_id: int, classroom_id: int) -> bool:
    state = server.live(lesson_id)
    room = next((r for r in state.rooms if r.classroom_id == classroom_id), None) if state else None
    return bool(room and room.connected)


async def until(moment: datetime) -> None:
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


async def test_a_room_that_dropped_and_came_back_and_a_lesson_nobody_joined(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        server.app[STATISTICS].set_intervals(sample=SAMPLE_S, sweep=1.0)
        now = datetime.now(UTC).replace(microsecond=0)
        empty = await short_lesson(
            api, tag="空", receiving=1, start=now - timedelta(seconds=30), seconds=32
        )
        start = now + timedelta(seconds=LEAD_S)
        planned = 40.0
        lesson = await short_lesson(api, tag="课", receiving=1, start=start, seconds=planned)
        lid, main_id, rural_id = lesson["id"], lesson["main"], lesson["rural"][0]
        main = start_agent(
            "main", server.base_url, await join_token(api, lid, "main", main_id), tmp_path
        )
        rural = start_agent(
            "rural", server.base_url, await join_token(api, lid, "receiving", rural_id), tmp_path
        )
        agents = [main, rural]
        try:
            await assert_video_advancing(rural, main_id, within=40)
            await assert_video_advancing(main, rural_id)

            # Nobody came to the other lesson; it is ended by hand after its time.
            await api.call("POST", f"/lessons/{empty['id']}/end", {"reason": "nobody came"})

            await until(start + timedelta(seconds=10))
            flowing_until = datetime.now(UTC)
            rural.process.kill()  # the box dies: no goodbye, the socket just closes
            await wait_for(lambda: not connected(server, lid, rural_id), 10, "the drop seen")
            dropped_at = datetime.now(UTC)
            await asyncio.sleep(3)
            back = start_agent(
                "rural-again",
                server.base_url,
                await join_token(api, lid, "receiving", rural_id),
                tmp_path,
            )
            agents.append(back)
            await wait_for(lambda: connected(server, lid, rural_id), 30, "the room back")
            back_at = datetime.now(UTC)
            await assert_video_advancing(back, main_id)

            await until(start + timedelta(seconds=planned + 1))
            await api.call("POST", f"/lessons/{lid}/end", {"reason": "bell"})
            ended_at = datetime.now(UTC)
        finally:
            await stop_all(agents)

        statistics = server.app[STATISTICS]
        async with server.app[DB]() as db:

            async def summaries() -> bool:
                async with server.app[DB]() as s:
                    return all([await stored_summary(s, lid), await stored_summary(s, empty["id"])])

            deadline = time.monotonic() + 20
            while not await summaries():
                assert time.monotonic() < deadline, "the server never summarised both lessons"
                await asyncio.sleep(0.3)
            await statistics.writer.drain()
            rows = await room_sessions_of(db, lid)
            samples = await samples_of(db, lid)
            summary = await stored_summary(db, lid)
            missed = await stored_summary(db, empty["id"])
            empty_rows = await room_sessions_of(db, empty["id"])
            empty_samples = await samples_of(db, empty["id"])
        assert statistics.writer.failures == 0 and statistics.writer.dropped_samples == 0

    # --- attendance rows: what happened, as it happened
    main_rows = [r for r in rows if r.classroom_id == main_id]
    rural_rows = [r for r in rows if r.classroom_id == rural_id]
    assert [(r.end_reason, r.reconnects) for r in main_rows] == [("ended", 0)]
    assert [(r.end_reason, r.cause, r.reconnects) for r in rural_rows] == [
        ("dropped", "closed", 0),
        ("ended", "lesson_ended", 1),
    ]
    first, second = rural_rows
    assert flowing_until <= first.left_at <= dropped_at + timedelta(seconds=1)
    assert dropped_at < second.joined_at <= back_at + timedelta(seconds=1)
    assert abs((second.left_at - ended_at).total_seconds()) < 3

    # --- the summary: held, the gap and the reconnect counted
    gap = (second.joined_at - first.left_at).total_seconds()
    assert 3 <= gap < planned / 2  # the scenario as designed: a drop, back within the lesson
    end = start + timedelta(seconds=planned)
    teacher = main_rows[0]

    def within(joined: datetime, left: datetime, lo: datetime, hi: datetime) -> float:
        return max(0.0, (min(left, hi) - max(joined, lo)).total_seconds())

    assert summary is not None and summary.verdict == "held" and not summary.late
    main_room, rural_room = summary.room(main_id), summary.room(rural_id)
    assert main_room.attendance_s == pytest.approx(
        within(teacher.joined_at, teacher.left_at, start, end), abs=0.01
    )
    assert rural_room.attendance_s == pytest.approx(
        sum(within(r.joined_at, r.left_at, start, end) for r in rural_rows), abs=0.01
    )
    lo, hi = max(start, teacher.joined_at), min(end, teacher.left_at)
    assert summary.together_s == pytest.approx(
        sum(within(r.joined_at, r.left_at, lo, hi) for r in rural_rows), abs=0.01
    )
    assert rural_room.attendance_s < planned - 3  # the gap is missing from it
    assert (rural_room.reconnects, rural_room.drops) == (1, 1)
    assert (summary.reconnects, summary.drops) == (1, 1)
    assert main_room.lateness_s == pytest.approx((teacher.joined_at - start).total_seconds())

    # --- samples: only while connected, with media flowing and plausible figures
    rural_samples = [s for s in samples if s.classroom_id == rural_id]
    assert rural_samples and all(
        first.joined_at <= s.at <= first.left_at + timedelta(seconds=0.5)
        or second.joined_at <= s.at <= second.left_at + timedelta(seconds=0.5)
        for s in rural_samples
    )
    steady = [
        s
        for s in samples
        if first.joined_at + timedelta(seconds=4) < s.at < flowing_until - timedelta(seconds=0.5)
        and s.seconds > 0.5
    ]
    for direction in ("up", "down"):
        for room in (main_id, rural_id):
            mine = [s for s in steady if s.classroom_id == room and s.direction == direction]
            assert len(mine) >= 3, (room, direction)
            assert all(s.bitrate_kbps > 0 and s.packets > 0 for s in mine), (room, direction)
            assert all(0 <= s.packets_lost <= s.packets for s in mine)
    assert sum(s.packets_lost for s in steady) <= 0.05 * sum(s.packets for s in steady)
    rtts = [s.rtt_ms for s in samples if s.rtt_ms is not None]
    assert rtts and all(0 <= r < 1000 for r in rtts)  # loopback, a loaded box: well under 1 s
    for room in (main_room, rural_room):
        assert room.down_bitrate_mean_kbps and 10 < room.down_bitrate_mean_kbps < 10_000
        assert room.up_bitrate_mean_kbps and 10 < room.up_bitrate_mean_kbps < 10_000
        assert room.rtt_mean_ms is not None and room.samples >= 10
        assert room.down_loss is not None and room.down_loss < 0.05

    # --- the lesson nobody joined
    assert empty_rows == [] and empty_samples == []
    assert missed is not None and missed.verdict == "missed" and missed.rooms_joined == 0


def _serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TONGBU_DATA_DIR": str(data_dir),
        "TONGBU_SECRET_KEY": "k" * 32,  # running_server's key: rejoin tokens stay valid
        "TONGBU_LINK_SAMPLE_INTERVAL_S": str(SAMPLE_S),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [TONGBU, "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _cli(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "TONGBU_DATA_DIR": str(data_dir)}
    done = subprocess.run([TONGBU, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


async def test_rows_a_killed_server_left_open_are_closed_when_it_starts_again(
    tmp_path: Path,
) -> None:
    import aiohttp

    data_dir, port = tmp_path / "data", free_port()
    _cli(
        data_dir,
        "admin",
        "create-user",
        "--username",
        "e2e-admin",
        "--password",
        "e2e-password-1",
        "--role",
        "admin",
    )
    token = _cli(data_dir, "admin", "issue-token", "--username", "e2e-admin")
    server = _serve(data_dir, port, tmp_path / "server.log")
    base_url = f"http://127.0.0.1:{port}"
    agents = []
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(base_url, token, http)
            await wait_for(lambda: server.poll() is not None or _listening(port), 30, "serve")
            start = datetime.now(UTC).replace(microsecond=0)
            lesson = await short_lesson(api, tag="崩", receiving=1, start=start, seconds=600)
            lid, main_id, rural_id = lesson["id"], lesson["main"], lesson["rural"][0]
            main = start_agent(
                "main", base_url, await join_token(api, lid, "main", main_id), tmp_path
            )
            rural = start_agent(
                "rural", base_url, await join_token(api, lid, "receiving", rural_id), tmp_path
            )
            agents = [main, rural]
            await assert_video_advancing(rural, main_id, within=40)
            await asyncio.sleep(3 * SAMPLE_S + 1)  # a few samples reach the database
        server.send_signal(signal.SIGKILL)  # a crash: nothing is closed, nothing flushed
        await asyncio.to_thread(server.wait)
        killed_at = datetime.now(UTC)

        async with running_server(data_dir, port=port) as restarted:
            async with restarted.app[DB]() as db:
                rows = await room_sessions_of(db, lid)
                last_sample = dict(
                    (
                        await db.execute(
                            sa.select(LinkSample.classroom_id, sa.func.max(LinkSample.at))
                            .where(LinkSample.lesson_id == lid)
                            .group_by(LinkSample.classroom_id)
                        )
                    ).all()
                )
            # Recovery ran before the server took its first request.
            assert sorted(r.classroom_id for r in rows) == sorted([main_id, rural_id])
            for row in rows:
                assert row.end_reason == "server_restart" and row.cause == "server_restart"
                assert row.left_at == last_sample[row.classroom_id]
                assert row.joined_at < row.left_at < killed_at
            # The boxes find the server again by themselves: new rows, counted as rejoins.
            await wait_for(lambda: len(rural.of("joined")) >= 2, 60, "the rural box to rejoin")
            await wait_for(lambda: len(main.of("joined")) >= 2, 60, "the main box to rejoin")

            async def reopened() -> list:
                async with restarted.app[DB]() as db:
                    return [r for r in await room_sessions_of(db, lid) if r.left_at is None]

            deadline = time.monotonic() + 20
            while len(again := await reopened()) < 2:
                assert time.monotonic() < deadline, again
                await asyncio.sleep(0.3)
            assert sorted((r.classroom_id, r.reconnects) for r in again) == sorted(
                [(main_id, 1), (rural_id, 1)]
            )
    finally:
        await stop_all(agents)
        if server.poll() is None:
            server.kill()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
