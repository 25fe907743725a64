"""Pupils are recorded and broadcast from the bell, not while their rooms connect early.

The scheduler opens a lesson ten minutes before its bell so that boxes can join and links
be checked; the rooms then see and hear each other, but nothing of that lead-in is written
to disk or shown to the public. A teacher starting the class by hand before the bell starts
the recording at once; a lesson ended before its bell leaves no recording at all.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from classroom import audit
from recorder.capture.recorder import capture_dir
from signaling import protocol
from signaling.appkeys import DB
from tests.live_harness import (
    Api,
    ApiError,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.page_session import eventually
from tests.test_live_lesson import assert_video_advancing, in_process_main, video_reception
from tests.test_recording_e2e import (
    decoded_codes,
    download,
    library_entry,
    media_duration,
    wait_for_entry,
)

pytestmark = pytest.mark.timeout(240)

LEAD_IN_S = 12.0


def rendered_after(code_ms: int, at_unix: float, slack_ms: int = 150) -> bool:
    """The pattern's 32-bit wall-clock stamp is at or after `at_unix` (modular)."""
    return (code_ms - (round(at_unix * 1000) - slack_ms)) % 2**32 < 2**31


async def live_state(api: Api, lesson_id: int) -> dict:
    return await api.call("GET", f"/lessons/{lesson_id}/live")


async def playlist_status(api: Api, lesson_id: int) -> int:
    async with api.session.get(f"{api.base_url}/live/{lesson_id}/index.m3u8") as response:
        return response.status


async def test_the_lead_in_is_live_between_rooms_but_recorded_and_broadcast_from_the_bell(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        # 名校网络课堂: broadcast to anonymous viewers, so the lead-in must not be public.
        lesson = await create_lesson(api, receiving=1, kind="famous_school",
                                     starts_in=LEAD_IN_S)
        lid, teacher = lesson.lesson_id, lesson.main_classroom_id
        (rural,) = lesson.receiving_classroom_ids
        bell = datetime.fromisoformat(
            (await api.call("GET", f"/lessons/{lid}"))["planned_start"]).timestamp()
        main, main_task = await in_process_main(
            server.base_url, await join_token(api, lid, "main", teacher), tmp_path)
        agents = [start_agent("rural", server.base_url,
                              await join_token(api, lid, "receiving", rural), tmp_path)]
        capture = capture_dir(tmp_path / "data", lid)
        try:
            # The lead-in: both rooms see each other, the lesson is live...
            await assert_video_advancing(agents[0], teacher)
            await wait_for(lambda: (r := video_reception(main, rural)) and r.decoded_patterns,
                           20, "the teacher to see the rural room")
            # ...and the teacher already brought the rural room on stage.
            await main.send(protocol.Stage(classroom_id=rural))
            assert time.time() < bell - 2, "the rooms took the whole lead-in to connect"
            live = await wait_for_live(api, lid, lambda s: s["stage_classroom_id"] == rural)
            assert live["state"] == "live" and live["class_started_at"] is None
            # Every room is told it is not recorded yet, and from when it will be.
            told = main.state.lesson_state
            assert told is not None and told.recording == "waiting"
            assert datetime.fromisoformat(told.planned_start).timestamp() == bell
            # ...but nothing is recorded, and the public sees only "waiting".
            assert live["recording"]["state"] == "waiting"
            assert datetime.fromisoformat(live["recording"]["starts_at"]).timestamp() == bell
            assert not capture.exists()
            assert await playlist_status(api, lid) == 404

            await asyncio.sleep(bell - time.time())
            live = await wait_for_live(api, lid, lambda s: s["recording"]["state"] == "recording")
            started = datetime.fromisoformat(live["class_started_at"]).timestamp()
            assert bell <= started < bell + 1.0
            await wait_for(lambda: (capture / "lesson.json").exists(), 5, "the capture")
            await wait_for(lambda: main.state.lesson_state.recording == "on", 5,
                           "the rooms to be told they are recorded")
            await eventually(lambda: playlist_status(api, lid), lambda status: status == 200,
                             30, "the broadcast to begin after the bell")
            await asyncio.sleep(4)
            ended = time.time()
            await api.call("POST", f"/lessons/{lid}/end")
            entry = await wait_for_entry(api, lid, {"room_video", "composite"}, within=120)
        finally:
            main.stop()
            await stop_all(agents)
            await asyncio.wait_for(main_task, 15)

        # Every recorded picture of each room was taken after the bell.
        rooms = {f["classroom_id"]: f for f in entry["files"] if f["role"] == "room_video"}
        assert set(rooms) == {teacher, rural}
        for cid, file in rooms.items():
            path = await download(api, file, tmp_path / f"room-{cid}{Path(file['url']).suffix}")
            codes = decoded_codes(path)
            assert len(codes) > 20 and {c.tag for c in codes} == {cid & 0xFF}
            early = [c for c in codes if not rendered_after(c.timestamp_ms, bell)]
            assert not early, f"room {cid}: {len(early)} frames from before the bell"
        composite = next(f for f in entry["files"] if f["role"] == "composite")
        path = await download(api, composite, tmp_path / "composite.mp4")
        assert media_duration(path) <= ended - bell + 1.5
        # The timeline says when and how the class began, at the start of the recording.
        events = [json.loads(line) for line in (capture / "events.jsonl").read_text().splitlines()]
        began = next(e for e in events if e["kind"] == "class_started")
        assert began["detail"] == {"how": "bell"} and began["t_us"] < 1_000_000
        # The stage set in the lead-in holds from the recording's start (the composite's
        # layout reads it from here).
        stage = next(e for e in events if e["kind"] == "stage")
        assert stage["classroom_id"] == rural and stage["t_us"] < 1_000_000


async def wait_for_live(api: Api, lesson_id: int, condition) -> dict:  # type: ignore[no-untyped-def]
    """The router's view of the lesson once `condition` holds ({} while no room joined)."""

    async def probe() -> dict:
        try:
            return await live_state(api, lesson_id)
        except ApiError as exc:
            assert exc.code == "not_live", exc
            return {}

    return await eventually(probe, lambda s: bool(s) and condition(s), 10, "the live state")


async def end_after(api: Api, lesson_id: int, seconds: float) -> dict:
    """Let the class run, end it, and wait for its per-room files in the library."""
    await asyncio.sleep(seconds)
    await api.call("POST", f"/lessons/{lesson_id}/end")
    return await wait_for_entry(api, lesson_id, {"room_video"}, within=60)


async def room_codes(api: Api, entry: dict, tmp_path: Path) -> list:
    """The pattern codes of the (one) recorded room's video, frame by frame."""
    file = next(f for f in entry["files"] if f["role"] == "room_video")
    return decoded_codes(await download(api, file, tmp_path / "room.mp4"))


async def test_a_teacher_starting_the_class_by_hand_before_its_bell_is_recorded_at_once(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, starts_in=3600)
        lid, teacher = lesson.lesson_id, lesson.main_classroom_id
        pressed = time.time()
        await api.call("POST", f"/lessons/{lid}/start")  # 开始上课 on the console
        agents = [start_agent("main", server.base_url,
                              await join_token(api, lid, "main", teacher), tmp_path)]
        try:
            live = await wait_for_live(
                api, lid, lambda s: (s.get("recording") or {}).get("state") == "recording")
            assert datetime.fromisoformat(live["class_started_at"]).timestamp() >= pressed
            await wait_for(lambda: (capture_dir(tmp_path / "data", lid) / "lesson.json").exists(),
                           5, "the capture")
            entry = await end_after(api, lid, seconds=3)
        finally:
            await stop_all(agents)
        codes = await room_codes(api, entry, tmp_path)
        assert codes and {c.tag for c in codes} == {teacher & 0xFF}


async def test_starting_the_class_of_a_lesson_a_box_made_live_early_records_from_then(
    tmp_path: Path,
) -> None:
    """The teacher's room is a box that joined in the lead-in, so the lesson is live; the
    teacher presses 开始上课 (the home page's button) an hour before the bell."""
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, starts_in=3600)
        lid, teacher = lesson.lesson_id, lesson.main_classroom_id
        agents = [start_agent("main", server.base_url,
                              await join_token(api, lid, "main", teacher), tmp_path)]
        try:
            await wait_for_live(
                api, lid, lambda s: (s.get("recording") or {}).get("state") == "waiting")
            assert (await api.call("GET", f"/lessons/{lid}"))["state"] == "live"
            pressed = time.time()
            await api.call("POST", f"/lessons/{lid}/start")
            live = await wait_for_live(
                api, lid, lambda s: (s.get("recording") or {}).get("state") == "recording")
            assert datetime.fromisoformat(live["class_started_at"]).timestamp() >= pressed
            with pytest.raises(ApiError) as again:  # begun: nothing more to start
                await api.call("POST", f"/lessons/{lid}/start")
            assert again.value.status == 409
            entry = await end_after(api, lid, seconds=3)
        finally:
            await stop_all(agents)
        codes = await room_codes(api, entry, tmp_path)
        assert codes and all(rendered_after(c.timestamp_ms, pressed) for c in codes)
        async with server.app[DB]() as db:
            events = await audit.list_events(db, action="lesson_class_started")
        assert [e.target for e in events] == [f"lesson:{lid}"]


async def test_a_lesson_ended_in_its_lead_in_leaves_no_recording(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, kind="famous_school", starts_in=3600)
        lid, teacher = lesson.lesson_id, lesson.main_classroom_id
        (rural,) = lesson.receiving_classroom_ids
        agents = [
            start_agent("main", server.base_url, await join_token(api, lid, "main", teacher),
                        tmp_path),
            start_agent("rural", server.base_url,
                        await join_token(api, lid, "receiving", rural), tmp_path),
        ]
        try:
            await assert_video_advancing(agents[1], teacher)
            await api.call("POST", f"/lessons/{lid}/end")
            for agent in agents:
                await wait_for(lambda a=agent: a.of("lesson_ended"), 15,
                               f"{agent.name} to be told the lesson ended")
        finally:
            await stop_all(agents)
        await asyncio.sleep(1)
        assert not (tmp_path / "data" / "recordings" / str(lid)).exists()
        assert await library_entry(api, lid) is None
        assert await playlist_status(api, lid) == 404
