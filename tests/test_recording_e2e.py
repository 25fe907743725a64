"""A lesson recorded from real agents lands in the library, playable, seconds after it ends.

The whole path runs as in production: agents publish through the router, the recorder
writes packet logs, ending the lesson over the REST API triggers finalisation, and the
files are fetched back through the library API (Range, audit) and checked by decoding.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import pytest

from classroom.agent.testpattern import read_pattern, read_pattern_frame
from signaling import protocol
from signaling.appkeys import DB
from tests.live_harness import (
    TONGBU,
    AgentProcess,
    Api,
    create_lesson,
    free_port,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.test_live_lesson import assert_video_advancing, in_process_main

pytestmark = pytest.mark.timeout(300)


async def library_entry(api: Api, lesson_id: int) -> dict[str, Any] | None:
    page = await api.call("GET", "/library?limit=200")
    for item in page["items"]:
        if item["lesson_id"] == lesson_id:
            return await api.call("GET", f"/library/{item['id']}")
    return None


async def wait_for_entry(api: Api, lesson_id: int, roles: set[str], within: float) -> dict:
    deadline = time.monotonic() + within
    while True:
        entry = await library_entry(api, lesson_id)
        if entry and entry["state"] == "ready" and roles <= {f["role"] for f in entry["files"]}:
            return entry
        if time.monotonic() > deadline:
            seen = entry and (entry["state"], [f["role"] for f in entry["files"]])
            raise AssertionError(f"library entry with {roles} not ready in {within:.0f} s: {seen}")
        await asyncio.sleep(0.25)


async def download(api: Api, file: dict, to: Path) -> Path:
    async with api.session.get(f"{api.base_url}{file['url']}",
                               headers={"Authorization": f"Bearer {api.token}"}) as response:
        assert response.status == 200, await response.text()
        body = await response.read()
    await asyncio.to_thread(to.write_bytes, body)
    return to


def decoded_codes(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return [c for f in container.decode(video=0) if (c := read_pattern_frame(f))]


def counter_runs(counters: list[int]) -> list[list[int]]:
    """Split at each step back: one run per time the room published."""
    runs: list[list[int]] = []
    for counter in counters:
        if runs and counter >= runs[-1][-1]:
            runs[-1].append(counter)
        else:
            runs.append([counter])
    return runs


def media_duration(path: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)["format"]["duration"])


async def ffprobe_errors(path_or_url: str, *extra: str) -> str:
    """In a thread: the server under test runs on this event loop and must keep serving."""
    out = await asyncio.to_thread(
        subprocess.run, ["ffprobe", "-v", "error", *extra, path_or_url],
        capture_output=True, text=True, timeout=60)
    return out.stderr.strip()


async def test_recorded_lesson_is_in_the_library_within_seconds(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=4)
        lid = lesson.lesson_id
        main, main_task = await in_process_main(
            server.base_url, await join_token(api, lid, "main", lesson.main_classroom_id),
            tmp_path)
        agents = [start_agent(f"room{cid}", server.base_url,
                              await join_token(api, lid, "receiving", cid), tmp_path)
                  for cid in lesson.receiving_classroom_ids]
        staged = lesson.receiving_classroom_ids[2]
        try:
            for agent in agents:
                await assert_video_advancing(agent, lesson.main_classroom_id, within=30)
            started = time.time()
            await asyncio.sleep(2)
            await main.send(protocol.Stage(classroom_id=staged))
            await asyncio.sleep(3)
            await main.send(protocol.Stage(classroom_id=None))
            await asyncio.sleep(2)
            ended_at = time.monotonic()
            await api.call("POST", f"/lessons/{lid}/end")
            entry = await wait_for_entry(api, lid, {"room_video"}, within=10)
            ready_after = time.monotonic() - ended_at
            print(f"per-room files playable {ready_after:.1f} s after the lesson ended")
        finally:
            main.stop()
            await stop_all(agents)
            await asyncio.wait_for(main_task, 15)
        lesson_seconds = time.time() - started

        visits = {lesson.main_classroom_id: main.state.connections,
                  **{cid: len(agent.of("joined"))
                     for cid, agent in zip(lesson.receiving_classroom_ids, agents, strict=True)}}
        # The entry names its rooms and places each room's file on the lesson clock.
        assert {r["classroom_id"]: r["role"] for r in entry["rooms"]} == {
            lesson.main_classroom_id: "main",
            **{cid: "receiving" for cid in lesson.receiving_classroom_ids}}
        # Per-room files: every room, decoding end to end to its own pattern, continuous.
        rooms = {f["classroom_id"]: f for f in entry["files"] if f["role"] == "room_video"}
        assert all(f["offset_s"] is not None and f["offset_s"] >= 0 for f in rooms.values())
        assert set(rooms) == {lesson.main_classroom_id, *lesson.receiving_classroom_ids}
        for cid, file in rooms.items():
            path = await download(api, file, tmp_path / f"room-{cid}{Path(file['url']).suffix}")
            assert await ffprobe_errors(str(path)) == ""
            codes = decoded_codes(path)
            assert {c.tag for c in codes} == {cid & 0xFF}
            runs = counter_runs([c.counter for c in codes])
            # A room that rejoined (a box on a loaded machine can lose its first link)
            # publishes afresh from counter 0: its file holds one run per visit, in order.
            assert len(runs) <= visits[cid], (
                f"room {cid}: the pattern counter restarted {len(runs) - 1} times "
                f"in {visits[cid]} visits: frames out of order")
            missing = sum((run[-1] - run[0] + 1) - len(set(run)) for run in runs)
            assert missing <= 0.02 * len(codes), f"room {cid}: {missing} frames missing"
            # The room was recorded for the whole lesson we watched (it joined earlier).
            assert media_duration(path) >= lesson_seconds - 1.0

        # The slow phase follows: composite, HLS, thumbnails, chapters.
        entry = await wait_for_entry(
            api, lid, {"composite", "hls_playlist", "poster", "thumbnail_strip", "chapters"},
            within=120)
        files = {f["role"]: f for f in entry["files"]}
        composite = await download(api, files["composite"], tmp_path / "composite.mp4")
        assert await ffprobe_errors(str(composite)) == ""
        assert abs(media_duration(composite) - entry["duration_s"]) < 1.0
        check_composite_tiles(composite, tmp_path / "data" / "recordings" / str(lid),
                              entry, staged)
        poster = await download(api, files["poster"], tmp_path / "poster.jpg")
        assert poster.stat().st_size > 2000
        chapters_json = next(f for f in entry["files"]
                             if f["role"] == "chapters" and f["mime"] == "application/json")
        chapters = json.loads((await download(api, chapters_json,
                                              tmp_path / "chapters.json")).read_text())
        titles = json.dumps(chapters, ensure_ascii=False)
        assert "上台" in titles and "下课" in titles
        # The HLS playlist plays through the library API (segments rewritten to API URLs).
        playlist_url = f"{api.base_url}{files['hls_playlist']['url']}"
        # Segment URLs are API paths without a file extension, which ffmpeg's HLS demuxer
        # refuses by default (browsers' players do not care).
        assert await ffprobe_errors(playlist_url, "-extension_picky", "0", "-headers",
                              f"Authorization: Bearer {api.token}\r\n") == ""


def check_composite_tiles(composite: Path, recording_dir: Path, entry: dict,
                          staged: int) -> None:
    """Each room's pattern is where the layout puts it, before and during the staging."""
    from recorder.finalise.chapters import read_events
    from recorder.finalise.layout import RoomMedia, TimelineEvent, layout_at

    events = [TimelineEvent(e.t_s, e.kind, e.classroom_id)
              for e in read_events(recording_dir / "capture" / "events.jsonl")]
    rooms = [RoomMedia(r["classroom_id"], r["role"], r["name"], r["position"])
             for r in entry["rooms"]]
    stage_on = next(e.t_s for e in events if e.kind == "stage" and e.classroom_id == staged)
    stage_off = next(e.t_s for e in events if e.kind == "unstage")
    moments = {"before": stage_on - 1.0, "staged": (stage_on + stage_off) / 2}
    frames = sample_frames(composite, list(moments.values()))
    for (label, t), luma in zip(moments.items(), frames, strict=True):
        tiles = layout_at(t, rooms, events, (luma.shape[1], luma.shape[0]))
        for tile in tiles:
            crop = luma[tile.y:tile.y + tile.h, tile.x:tile.x + tile.w]
            code = read_pattern(crop)
            assert code is not None and code.tag == tile.classroom_id & 0xFF, (
                f"{label} (t={t:.1f} s): tile {tile} shows {code}")
        receiving = {tile.classroom_id: tile.w * tile.h for tile in tiles
                     if tile.role == "receiving"}
        if label == "staged":  # the staged room is enlarged, the others stay small
            others = [area for cid, area in receiving.items() if cid != staged]
            assert receiving[staged] > max(others), receiving
        else:
            assert len(set(receiving.values())) == 1, receiving


def sample_frames(path: Path, times: list[float]) -> list[Any]:
    """The luma plane of the first decoded frame at or after each time."""
    wanted, out = sorted(times), []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if wanted and frame.time >= wanted[0]:
                out.append(frame.to_ndarray(format="gray"))
                wanted.pop(0)
            if not wanted:
                break
    assert len(out) == len(times), f"the composite ends before {wanted}"
    return out


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (data_dir.parent / f"server-{port}-{time.time():.0f}.log").open("wb")
    return subprocess.Popen([TONGBU, "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            stdout=log, stderr=subprocess.STDOUT)


def _admin_token(data_dir: Path) -> str:
    subprocess.run([TONGBU, "admin", "create-user", "--data-dir", str(data_dir),
                    "--username", "root", "--password", "kill-nine-test-1", "--role", "admin"],
                   check=True, capture_output=True)
    out = subprocess.run([TONGBU, "admin", "issue-token", "--data-dir", str(data_dir),
                          "--username", "root"], check=True, capture_output=True, text=True)
    return out.stdout.strip().split()[-1]


async def test_kill_nine_mid_lesson_then_recovery_finalises(tmp_path: Path) -> None:
    import aiohttp

    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    token = _admin_token(data_dir)
    base_url = f"http://127.0.0.1:{port}"
    server = _serve(data_dir, port)
    agents: list[AgentProcess] = []
    async with aiohttp.ClientSession() as http:
        api = Api(base_url, token, http)
        try:
            await wait_for(lambda: _listening(port), 30, "the server to listen")
            lesson = await create_lesson(api, receiving=2)
            lid = lesson.lesson_id
            agents.append(start_agent("main", base_url, await join_token(
                api, lid, "main", lesson.main_classroom_id), tmp_path))
            for cid in lesson.receiving_classroom_ids:
                agents.append(start_agent(f"room{cid}", base_url,
                                          await join_token(api, lid, "receiving", cid), tmp_path))
            for agent in agents[1:]:
                await assert_video_advancing(agent, lesson.main_classroom_id, within=30)
            await asyncio.sleep(3)
            server.send_signal(signal.SIGKILL)
            killed_at = time.time()
            server.wait()
            await stop_all(agents)
            agents = []

            server = _serve(data_dir, port)  # recovery runs at start-up
            await wait_for(lambda: _listening(port), 30, "the server to come back")
            entry = await wait_for_entry(api, lid, {"room_video"}, within=60)
            for file in (f for f in entry["files"] if f["role"] == "room_video"):
                path = await download(api, file, tmp_path / f"k9-{file['classroom_id']}.mp4")
                codes = decoded_codes(path)
                assert codes, f"room {file['classroom_id']} lost everything"
                # The last frame the room drew that reached the disk is within 2 s of the kill.
                last_drawn = max(c.timestamp_ms for c in codes) / 1000
                lag = (killed_at * 1000 % 2**32) / 1000 - last_drawn
                assert lag < 2.0, f"room {file['classroom_id']}: {lag:.2f} s before the kill lost"
        finally:
            await stop_all(agents)
            server.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.wait, 20)
        capture = json.loads((data_dir / "recordings" / str(lid) / "final" /
                              "manifest.json").read_text())
        assert capture["state"] in ("partial", "done")


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_room_dropping_for_ten_seconds_leaves_one_file_with_a_gap(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1)
        lid, room = lesson.lesson_id, lesson.receiving_classroom_ids[0]
        room_token = await join_token(api, lid, "receiving", room)
        agents = [start_agent("main", server.base_url, await join_token(
            api, lid, "main", lesson.main_classroom_id), tmp_path),
            start_agent("rural", server.base_url, room_token, tmp_path)]
        try:
            await assert_video_advancing(agents[1], lesson.main_classroom_id, within=30)
            await asyncio.sleep(2)
            left = time.monotonic()
            await agents[1].stop()
            await asyncio.sleep(10)
            agents.append(start_agent("rural-again", server.base_url, room_token, tmp_path))
            await assert_video_advancing(agents[2], lesson.main_classroom_id, within=30)
            away_ms = (time.monotonic() - left) * 1000  # an agent starts in 2-8 s: load
            await asyncio.sleep(2)
            await api.call("POST", f"/lessons/{lid}/end")
            entry = await wait_for_entry(api, lid, {"room_video"}, within=20)
        finally:
            await stop_all(agents)
        file = next(f for f in entry["files"]
                    if f["role"] == "room_video" and f["classroom_id"] == room)
        path = await download(api, file, tmp_path / "rural.mp4")
        assert await ffprobe_errors(str(path)) == ""
        codes = decoded_codes(path)
        # Two visits of one room in one file: the counter restarts once, after the gap.
        restarts = sum(1 for a, b in itertools.pairwise(codes) if b.counter < a.counter)
        assert restarts == 1
        gap = max((b.timestamp_ms - a.timestamp_ms) for a, b in itertools.pairwise(codes))
        # At least the ten seconds it was gone; at most until its video was seen again
        # (+2 s: its own camera reaches the recorder just after it sees the main room).
        assert 9000 < gap <= away_ms + 2000, f"gap of {gap} ms, away {away_ms:.0f} ms"
        manifest = json.loads((tmp_path / "data" / "recordings" / str(lid) / "final" /
                               "manifest.json").read_text())
        assert manifest["state"] in ("partial", "done")


@pytest.mark.browser
async def test_chromium_plays_a_recorded_room_and_the_composite(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium

    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, kind="famous_school")
        lid = lesson.lesson_id
        agents = [start_agent("main", server.base_url, await join_token(
            api, lid, "main", lesson.main_classroom_id), tmp_path),
            start_agent("rural", server.base_url, await join_token(
                api, lid, "receiving", lesson.receiving_classroom_ids[0]), tmp_path)]
        try:
            await assert_video_advancing(agents[1], lesson.main_classroom_id, within=30)
            await asyncio.sleep(4)
            await api.call("POST", f"/lessons/{lid}/end")
        finally:
            await stop_all(agents)
        entry = await wait_for_entry(api, lid, {"room_video", "composite"}, within=120)
        assert entry["published"], "famous_school entries are public by default"
        urls = [f"{server.base_url}{f['url']}" for f in entry["files"]
                if f["role"] in ("room_video", "composite")]
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                page = await browser.new_page()
                await page.goto(f"{server.base_url}/static/i18n/zh-CN.json")
                for url in urls:
                    played = await page.evaluate(
                        """async (url) => {
                            const v = document.createElement('video');
                            v.muted = true; v.src = url; document.body.appendChild(v);
                            await v.play();
                            const t0 = v.currentTime;
                            await new Promise(r => setTimeout(r, 1500));
                            const t1 = v.currentTime;
                            v.currentTime = 1.0;  // a seek, which needs Range
                            await new Promise(r => v.addEventListener('seeked', r, {once: true}));
                            return {t0, t1, width: v.videoWidth, error: v.error && v.error.code};
                        }""", url)
                    assert played["error"] is None and played["width"] > 0, (url, played)
                    assert played["t1"] > played["t0"] + 0.5, (url, played)
            finally:
                await browser.close()
        # Every fetch the player made went through the access check and the audit log.
        async with server.app[DB]() as db:
            from classroom.audit import list_events

            events = await list_events(db)
        assert any(e.action == "recording.play" for e in events)


