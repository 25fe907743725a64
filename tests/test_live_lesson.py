"""A whole 1拖4 lesson through the real server, with real agents as separate processes.

What each room receives is read back from decoded frames: the test pattern carries the
sending room's tag and a frame counter, and each room's tone has its own frequency. So a
frame that arrives from the wrong room, a frozen picture or a silent track all fail here.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest

from classroom.agent.client import ClassroomAgent, Reporter
from classroom.agent.publisher import publisher_factory
from classroom.agent.reception import TrackReception
from classroom.agent.testpattern import read_pattern_frame
from signaling import protocol
from signaling.live.ws import REGISTRY
from tests.live_harness import (
    AgentProcess,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)


def tag_of(classroom_id: int) -> int:
    return classroom_id & 0xFF


def tone_of(classroom_id: int) -> float:
    return 300 + 100 * (classroom_id % 16)


def receiving_from(agent: AgentProcess, classroom_id: int, kind: str, since: float) -> dict | None:
    """The agent's latest report of a track from `classroom_id`, if it shows real media."""
    track = agent.track_from(classroom_id, kind, since)
    if track is None or track["frames"] == 0:
        return None
    if kind == "video" and track["tag"] != tag_of(classroom_id):
        return None
    return track


async def assert_video_advancing(agent: AgentProcess, classroom_id: int, within: float = 30,
                                 codec: str = "video/H264"):
    """Two reports at least a second apart, both decoding this room's pattern, counter up."""
    first = await wait_for(
        lambda: receiving_from(agent, classroom_id, "video", 0), within,
        f"{agent.name} to decode video of classroom {classroom_id}",
    )
    seen_at = time.time()
    second = await wait_for(
        lambda: (t := receiving_from(agent, classroom_id, "video", seen_at + 1.0))
        and t["counter"] > first["counter"] and t,
        within, f"{agent.name}'s counter of classroom {classroom_id} to advance",
    )
    # No frame went backwards while we watched (a room that rejoined restarts its counter
    # once, before the window).
    assert second["counter_regressions"] == first["counter_regressions"]
    assert second["codec"] == codec  # forwarded as published, never transcoded
    # Frames flowed: the pattern's counter went up between the two reports (waited for
    # above). Neither one report's fps (0 when the shared box stalls an agent for a report
    # interval) nor the frame count (it restarts when the agent rejoins) can say more.
    return second


async def assert_tone(agent: AgentProcess, classroom_id: int, within: float = 20) -> None:
    expected = tone_of(classroom_id)
    await wait_for(
        lambda: (t := receiving_from(agent, classroom_id, "audio", 0))
        and t["tone_hz"] is not None and abs(t["tone_hz"] - expected) < 15,
        within, f"{agent.name} to hear classroom {classroom_id}'s {expected:.0f} Hz tone",
    )


def subscribers_of(live, track_id: str) -> int:
    return next(t.subscribers for t in live.tracks if t.track_id == track_id)


def keyframe_requests_of(live, track_id: str) -> int:
    return next(t.keyframe_requests for t in live.tracks if t.track_id == track_id)


def video_reception(agent: ClassroomAgent, classroom_id: int) -> TrackReception | None:
    for reception in agent.state.receptions.values():
        if reception.classroom_id == classroom_id and reception.kind == "video":
            return reception
    return None


def audio_reception(agent: ClassroomAgent, classroom_id: int) -> TrackReception | None:
    for reception in agent.state.receptions.values():
        if reception.classroom_id == classroom_id and reception.kind == "audio":
            return reception
    return None


async def in_process_main(server_url: str, token: str, workdir: Path) -> tuple[ClassroomAgent,
                                                                               asyncio.Task]:
    """The teacher's room runs in the test process so the test can stage rooms through it."""
    factory = publisher_factory("testpattern", width=320, height=180, fps=15, codec="h264")
    reporter = Reporter((workdir / "main.jsonl").open("w"))
    agent = ClassroomAgent(server_url, token, publisher_factory=factory, reporter=reporter,
                           report_interval=0.5)
    return agent, asyncio.ensure_future(agent.run())


async def test_full_lesson_main_and_four_receiving_rooms(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=4)
        lid = lesson.lesson_id
        events: list = []
        server.app[REGISTRY].on_lesson_created.append(
            lambda live: live.event_observers.append(events.append))
        main_token = await join_token(api, lid, "main", lesson.main_classroom_id)
        main, main_task = await in_process_main(server.base_url, main_token, tmp_path)
        agents = [
            start_agent(f"room{cid}", server.base_url,
                        await join_token(api, lid, "receiving", cid), tmp_path)
            for cid in lesson.receiving_classroom_ids
        ]
        try:
            teacher = lesson.main_classroom_id
            # Every receiving room decodes the teacher's frames and hears the teacher.
            for agent in agents:
                await assert_video_advancing(agent, teacher)
                await assert_tone(agent, teacher)

            # The main room decodes four distinct rooms and hears each one.
            for cid in lesson.receiving_classroom_ids:
                reception = await wait_for(
                    lambda cid=cid: (r := video_reception(main, cid)) and r.last_tag == tag_of(cid)
                    and r, 30, f"main room to decode classroom {cid}")
                before = reception.last_counter
                await wait_for(lambda r=reception, b=before: r.last_counter > b, 15,
                               f"classroom {cid}'s counter to advance at the main room")
                heard = await wait_for(lambda cid=cid: audio_reception(main, cid), 10, "audio")
                heard.take_rates()
                assert heard.tone_hz is not None and abs(heard.tone_hz - tone_of(cid)) < 15

            # Staging room 3 makes every room receive room 3.
            staged = lesson.receiving_classroom_ids[2]
            await main.send(protocol.Stage(classroom_id=staged))
            await wait_for(lambda: server.live(lid).stage_classroom_id == staged, 5, "stage")
            for agent in agents:
                if agent.name != f"room{staged}":
                    await assert_video_advancing(agent, staged)
                    await assert_tone(agent, staged)

            # The REST API reports the live state, and nothing was transcoded.
            live = await api.call("GET", f"/lessons/{lid}/live")
            assert live["forwarding"]["transcodes"] == 0
            assert live["recording"]["state"] == "recording"
            assert live["recording"]["frames"] > 0 and live["recording"]["errors"] == 0
            assert live["forwarding"]["packets_out"] > live["forwarding"]["packets_in"] > 0
            assert sorted(r["classroom_id"] for r in live["rooms"] if r["connected"]) == sorted(
                [teacher, *lesson.receiving_classroom_ids])
            for room in live["rooms"]:
                assert room["upstream"]["bitrate_kbps"] > 0, room
                assert room["upstream"]["rtt_ms"] is not None, room
            video = {t["classroom_id"]: t for t in live["tracks"] if t["kind"] == "video"}
            assert {t["codec"] for t in video.values()} == {"video/H264"}
            assert video[staged]["subscribers"] == 4  # the teacher and the three others

            # Unstaging stops room 3's media to the other receiving rooms.
            await main.send(protocol.Stage(classroom_id=None))
            await wait_for(lambda: subscribers_of(server.live(lid), f"{staged}-video") == 1,
                           10, "room 3 to be forwarded to the teacher only")

            # The lesson's timeline, which the recorder keeps, saw all of it in order.
            joins = {e.classroom_id for e in events if e.kind == "join"}
            assert joins == {teacher, *lesson.receiving_classroom_ids}
            staging = [(e.kind, e.classroom_id) for e in events if "stage" in e.kind]
            assert staging == [("stage", staged), ("unstage", staged)]
        finally:
            main.stop()
            await stop_all(agents)
            await asyncio.wait_for(main_task, 10)
            for agent in agents:
                assert agent.process.returncode in (0, -15), agent.stderr_tail()


async def test_room_joining_mid_lesson_starts_on_a_keyframe_asked_for_it(tmp_path: Path) -> None:
    """The teacher's box sends periodic keyframes only once a minute here, so the late room's
    first picture can only come from the keyframe the router asked for on its behalf. How soon
    it comes (the one-second target) is measured by `bench/late_join.py`, not here."""
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=2)
        lid = lesson.lesson_id
        main_token = await join_token(api, lid, "main", lesson.main_classroom_id)
        first, late_room = lesson.receiving_classroom_ids
        agents = [start_agent("main", server.base_url, main_token, tmp_path,
                              extra=("--keyframe-interval", "60"))]
        agents.append(start_agent("first", server.base_url,
                                  await join_token(api, lid, "receiving", first), tmp_path))
        try:
            await assert_video_advancing(agents[1], lesson.main_classroom_id)
            # Long past the publisher's first keyframe: only a keyframe request helps now.
            await asyncio.sleep(1.5)
            teacher_track = f"{lesson.main_classroom_id}-video"
            requests_before = keyframe_requests_of(server.live(lid), teacher_track)
            late = start_agent("late", server.base_url,
                               await join_token(api, lid, "receiving", late_room), tmp_path,
                               extra=("--save", str(tmp_path / "saved")))
            agents.append(late)
            joined = await wait_for(lambda: late.of("joined"), 20, "the late room to join")
            # Within 20 s, when the next periodic keyframe is up to 60 s away: the router
            # asked the teacher's box for this one.
            track = await wait_for(
                lambda: receiving_from(late, lesson.main_classroom_id, "video", 0), 20,
                "the late room's first frame")
            delay = track["first_frame_unix"] - joined[0]["t"]
            print(f"late joiner: first decodable frame {delay:.3f} s after joining")
            assert keyframe_requests_of(server.live(lid), teacher_track) > requests_before
            await asyncio.sleep(1)
        finally:
            await stop_all(agents)
        # `--save` kept what the late room received: a file that decodes to the teacher.
        saved = sorted((tmp_path / "saved").glob("*.mp4"))
        assert saved, "the agent saved no received video"
        with av.open(str(saved[0])) as container:
            codes = [c for f in container.decode(video=0) if (c := read_pattern_frame(f))]
        assert len(codes) >= 10
        assert {c.tag for c in codes} == {lesson.main_classroom_id & 0xFF}
        assert [c.counter for c in codes] == sorted(c.counter for c in codes)


async def test_a_vp8_publisher_is_forwarded_as_vp8(tmp_path: Path) -> None:
    """VP8 is accepted: each leg carries the publisher's codec, nothing is transcoded."""
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1)
        lid, room = lesson.lesson_id, lesson.receiving_classroom_ids[0]
        agents = [
            start_agent("main", server.base_url, await join_token(
                api, lid, "main", lesson.main_classroom_id), tmp_path, extra=("--codec", "vp8")),
            start_agent("rural", server.base_url, await join_token(api, lid, "receiving", room),
                        tmp_path),
        ]
        try:
            await assert_video_advancing(agents[1], lesson.main_classroom_id, codec="video/VP8")
            await assert_video_advancing(agents[0], room, codec="video/H264")
            live = await api.call("GET", f"/lessons/{lid}/live")
            codecs = {t["classroom_id"]: t["codec"] for t in live["tracks"] if t["kind"] == "video"}
            assert codecs == {lesson.main_classroom_id: "video/VP8", room: "video/H264"}
            assert live["forwarding"]["transcodes"] == 0
        finally:
            await stop_all(agents)
