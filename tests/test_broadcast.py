"""Live broadcast (HLS) of a famous_school lesson, read over plain HTTP like any viewer.

The teacher's test pattern carries its room tag, a frame counter and the wall-clock time
of capture, so a decoded segment proves what it shows and how late: the newest frame of
the newest segment against the moment the playlist listing it was fetched is the
glass-to-playlist latency.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest

from classroom.agent.testpattern import read_pattern_frame
from recorder.broadcast.hls_live import LivePlaylist, Segment, continue_counters, mux_segment
from recorder.broadcast.live import BROADCASTS
from tests.live_harness import Api, join_token, running_server, start_agent, stop_all, wait_for

pytestmark = pytest.mark.timeout(240)

LISTEN_SECONDS = 14.0


@dataclass
class Lesson:
    lesson_id: int
    main_id: int
    receiving_ids: list[int]


async def create_lesson(api: Api, kind: str, tag: str, broadcast: bool | None = None) -> Lesson:
    city = await api.call("POST", "/schools", {"name": f"名校{tag}", "kind": "city"})
    main = await api.call("POST", "/classrooms", {"school_id": city["id"], "name": "主讲教室"})
    rural = await api.call("POST", "/schools", {"name": f"乡村小学{tag}", "kind": "rural"})
    room = await api.call("POST", "/classrooms", {"school_id": rural["id"], "name": "听课1"})
    pairing = await api.call("POST", "/pairings", {
        "name": f"结对{tag}", "main_classroom_id": main["id"],
        "receiving_classroom_ids": [room["id"]]})
    start = datetime.now(UTC).replace(microsecond=0)
    body: dict[str, object] = {
        "pairing_id": pairing["id"], "kind": kind, "subject": "物理", "grade": "初二",
        "teacher_name": "李老师", "title": "浮力",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(minutes=45)).isoformat(),
    }
    if broadcast is not None:
        body["broadcast"] = broadcast
    lesson = await api.call("POST", "/lessons", body)
    await api.call("POST", f"/lessons/{lesson['id']}/open")
    return Lesson(lesson["id"], main["id"], [room["id"]])


# ------------------------------------------------------------------ reading HLS


@dataclass
class Listed:
    name: str
    duration: float
    program_date_time: datetime


@dataclass
class MediaPlaylist:
    version: int
    target_duration: int
    media_sequence: int
    segments: list[Listed]
    ended: bool


def parse_playlist(text: str) -> MediaPlaylist:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U", text
    tags = {}
    segments = []
    pdt = None
    duration = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00"))
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].rstrip(","))
        elif line.startswith("#EXT"):
            key, _, value = line.partition(":")
            tags[key] = value
        elif line.strip():
            assert duration is not None and pdt is not None, text
            segments.append(Listed(line.strip(), duration, pdt))
            duration = pdt = None
    target = int(tags["#EXT-X-TARGETDURATION"])
    for segment in segments:
        assert round(segment.duration) <= target, text
    return MediaPlaylist(
        version=int(tags["#EXT-X-VERSION"]),
        target_duration=target,
        media_sequence=int(tags["#EXT-X-MEDIA-SEQUENCE"]),
        segments=segments,
        ended="#EXT-X-ENDLIST" in tags,
    )


@dataclass
class DecodedSegment:
    codes: list  # PatternCode of every readable frame, in order
    frames: int
    audio_samples: int
    tone_hz: float | None


def decode_segment(data: bytes) -> DecodedSegment:
    """Decode one TS segment on its own, as a player starting there would."""
    codes = []
    frames = 0
    audio: list[np.ndarray] = []
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                frames += 1
                if (code := read_pattern_frame(frame)) is not None:
                    codes.append(code)
            else:
                audio.append(frame.to_ndarray().reshape(-1))
    samples = np.concatenate(audio) if audio else np.zeros(0)
    tone = None
    if len(samples) >= 4800:
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        tone = float(np.argmax(spectrum[1:]) + 1) * 48000 / len(samples)
    return DecodedSegment(codes, frames, len(samples), tone)


@dataclass
class Viewer:
    """A plain-HTTP HLS client polling the live playlist, as a player does."""

    http: aiohttp.ClientSession
    url: str
    playlists: list[MediaPlaylist] = field(default_factory=list)
    seen: dict[str, float] = field(default_factory=dict)  # segment → first listed (fetch time)
    decoded: dict[str, DecodedSegment] = field(default_factory=dict)
    newest_latency: list[float] = field(default_factory=list)
    oldest_latency: list[float] = field(default_factory=list)

    async def poll(self) -> MediaPlaylist | None:
        async with self.http.get(self.url) as response:
            if response.status == 404:
                return None
            assert response.status == 200, await response.text()
            assert response.content_type == "application/vnd.apple.mpegurl"
            assert response.headers["Cache-Control"] == "no-cache"
            text = await response.text()
        fetched = time.time()
        playlist = parse_playlist(text)
        self.playlists.append(playlist)
        new = [s for s in playlist.segments if s.name not in self.seen]
        for segment in new:
            self.seen[segment.name] = fetched
        if self.playlists[:-1] and new:
            # The newest segment, listed for the first time in this fetch: how old is
            # its newest frame now? (The first fetch may list segments made long ago.)
            newest = new[-1]
            decoded = await self.fetch(newest.name)
            if decoded.codes:
                self.newest_latency.append(_age(decoded.codes[-1].timestamp_ms, fetched))
                self.oldest_latency.append(_age(decoded.codes[0].timestamp_ms, fetched))
        return playlist

    async def fetch(self, name: str) -> DecodedSegment:
        if name not in self.decoded:
            async with self.http.get(self.url.rsplit("/", 1)[0] + "/" + name) as response:
                assert response.status == 200, name
                assert response.content_type == "video/mp2t"
                data = await response.read()
            self.decoded[name] = await asyncio.to_thread(decode_segment, data)
        return self.decoded[name]


def _age(timestamp_ms: int, at: float) -> float:
    """Seconds from a pattern timestamp (wall ms mod 2**32) to `at` (Unix seconds)."""
    return ((int(at * 1000) - timestamp_ms) % 2**32) / 1000


async def ffprobe_errors(*args: str) -> tuple[int, str]:
    """Run ffprobe/ffmpeg without blocking the loop the server runs on."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, stderr.decode(errors="replace")


# ------------------------------------------------------------------ scenarios


async def test_famous_school_lesson_is_watched_live_over_plain_http(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, "famous_school", "甲")
        lid = lesson.lesson_id
        quiet = await create_lesson(api, "dedicated", "乙")  # broadcast off by default
        private = await create_lesson(api, "dedicated", "丙", broadcast=True)
        playlist_url = f"{server.base_url}/live/{lid}/index.m3u8"

        agents = [
            start_agent("main", server.base_url,
                        await join_token(api, lid, "main", lesson.main_id), tmp_path),
            start_agent("rural", server.base_url,
                        await join_token(api, lid, "receiving", lesson.receiving_ids[0]),
                        tmp_path),
        ]
        async with aiohttp.ClientSession() as anonymous:
            try:
                viewer = Viewer(anonymous, playlist_url)
                await wait_for(lambda: server.app[BROADCASTS].state(lid) is not None
                               and server.app[BROADCASTS].state(lid).segments >= 2, 30,
                               "the broadcaster to write two segments")
                first = await viewer.poll()
                assert first is not None and first.version == 3 and not first.ended
                assert first.target_duration <= 3

                # A viewer polls for a while: new segments keep coming, the window slides.
                deadline = time.monotonic() + LISTEN_SECONDS
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    await viewer.poll()
                sequences = [p.media_sequence for p in viewer.playlists]
                assert sequences == sorted(sequences) and sequences[-1] > sequences[0], sequences
                assert len(viewer.seen) >= 6, viewer.seen
                # Every listed segment stays fetchable and PDT moves forward.
                last = viewer.playlists[-1]
                stamps = [s.program_date_time for s in last.segments]
                assert stamps == sorted(stamps)

                # Each segment decodes on its own and shows the teacher's test pattern,
                # its counter running on across segments; the teacher's tone is heard.
                for segment in last.segments:
                    await viewer.fetch(segment.name)
                teacher_tag = lesson.main_id & 0xFF
                counters = []
                tones = []
                for segment in last.segments:
                    decoded = viewer.decoded[segment.name]
                    assert decoded.frames > 0 and decoded.codes, segment.name
                    assert {c.tag for c in decoded.codes} == {teacher_tag}, segment.name
                    counters.append([c.counter for c in decoded.codes])
                    assert decoded.audio_samples > 0, segment.name
                    tones.append(decoded.tone_hz)
                    # EXTINF tells the truth: about one frame per 1/15 s listed.
                    assert abs(decoded.frames / 15 - segment.duration) < 0.5, segment
                flat = [c for run in counters for c in run]
                assert flat == sorted(flat), counters
                assert all(a[-1] < b[0] for a, b in itertools.pairwise(counters))
                expected_tone = 300 + 100 * (lesson.main_id % 16)
                heard = [t for t in tones if t is not None]
                assert heard and statistics.median(abs(t - expected_tone) for t in heard) < 15

                # ffprobe, a third-party HLS reader, takes the live playlist without error.
                code, errors = await ffprobe_errors(
                    "ffprobe", "-v", "error", "-show_entries", "stream=codec_name",
                    "-of", "csv=p=0", playlist_url)
                assert code == 0 and not errors.strip(), errors

                # Glass-to-playlist latency.
                assert viewer.newest_latency, "no segment was seen appearing"
                newest = statistics.median(viewer.newest_latency)
                oldest = statistics.median(viewer.oldest_latency)
                print(f"\nglass-to-playlist latency over {len(viewer.newest_latency)} segments:"
                      f" newest frame median {newest:.2f} s (max"
                      f" {max(viewer.newest_latency):.2f}), first frame median {oldest:.2f} s")
                assert newest < 8.0, viewer.newest_latency

                state = server.app[BROADCASTS].state(lid)
                assert state is not None and state.state == "live", state
                assert state.public and state.audio_transcoded and state.keyframe_requests > 0
                assert state.video_codec is not None and state.video_codec.lower() == "video/h264"
                print(f"broadcast state: {state}")
                live = await server.api.call("GET", f"/lessons/{lid}/live")
                assert live["broadcast"]["state"] == "live"
                assert live["broadcast"]["playlist_url"].endswith(f"/live/{lid}/index.m3u8")

                # Only broadcast lessons have a playlist; a non-public one needs a user.
                async with anonymous.get(
                        f"{server.base_url}/live/{quiet.lesson_id}/index.m3u8") as response:
                    assert response.status == 404
                async with anonymous.get(
                        f"{server.base_url}/live/{private.lesson_id}/index.m3u8") as response:
                    assert response.status in (401, 403)
                async with anonymous.get(
                        f"{server.base_url}/live/{private.lesson_id}/index.m3u8",
                        headers={"Authorization": f"Bearer {api.token}"}) as response:
                    assert response.status == 404  # allowed, but not live yet
                async with anonymous.get(f"{server.base_url}/live/{lid}/../secret.key") as r:
                    assert r.status == 404
            finally:
                await api.call("POST", f"/lessons/{lid}/end", {"reason": "下课"})
                await stop_all(agents)

            # The ended lesson's playlist says so, and a whole read decodes cleanly.
            async with anonymous.get(playlist_url) as response:
                final = parse_playlist(await response.text())
            assert final.ended
            assert server.app[BROADCASTS].state(lid).state == "ended"
            code, errors = await ffprobe_errors(
                "ffmpeg", "-v", "error", "-i", playlist_url, "-f", "null", "-")
            assert code == 0 and not errors.strip(), errors


async def test_vp8_teacher_is_not_broadcast_and_says_why(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, "famous_school", "丁")
        lid = lesson.lesson_id
        main = start_agent("main", server.base_url,
                           await join_token(api, lid, "main", lesson.main_id), tmp_path,
                           extra=("--codec", "vp8"))
        try:
            state = await wait_for(
                lambda: (s := server.app[BROADCASTS].state(lid)) and s.video_codec and s, 30,
                "the broadcaster to see the teacher's video")
            assert state.state == "unsupported_codec", state
            assert "H.264" in (state.reason or "")
            async with server.api.session.get(
                    f"{server.base_url}/live/{lid}/index.m3u8") as response:
                assert response.status == 404
        finally:
            await stop_all([main])


# ------------------------------------------------------------------ the parts


def test_playlist_slides_and_counts_discontinuities() -> None:
    playlist = LivePlaylist(segment_target=2.0, window=3)
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    for i in range(5):
        playlist.add(Segment(i, 1.9, at + timedelta(seconds=2 * i), discontinuity=i == 1))
    text = playlist.render()
    assert "#EXT-X-MEDIA-SEQUENCE:2" in text
    assert "#EXT-X-TARGETDURATION:2" in text
    # the discontinuity of segment 1 left the window: counted, no longer tagged
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text and "#EXT-X-DISCONTINUITY\n" not in text
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-03-02T08:00:04.000Z" in text
    assert re.findall(r"^\d+\.ts$", text, re.M) == ["000002.ts", "000003.ts", "000004.ts"]
    playlist.ended = True
    assert playlist.render().endswith("#EXT-X-ENDLIST\n")


def test_segments_continue_each_others_continuity_counters() -> None:
    # Two segments muxed separately restart their counters; renumbered, they continue.
    segment = bytearray(mux_segment([_idr()], [], audio_rate=48000))
    counters: dict[int, int] = {}
    continue_counters(segment, counters)
    first = dict(counters)
    again = bytearray(mux_segment([_idr()], [], audio_rate=48000))
    continue_counters(again, counters)
    pid_of = lambda d, o: ((d[o + 1] & 0x1F) << 8) | d[o + 2]  # noqa: E731
    for pid, last in first.items():
        offsets = [o for o in range(0, len(again), 188) if pid_of(again, o) == pid
                   and again[o + 3] & 0x10]
        assert again[offsets[0] + 3] & 0x0F == (last + 1) & 0x0F


def _idr() -> object:
    from fractions import Fraction

    from recorder.broadcast.hls_live import _Unit

    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 64, "yuv420p"
    encoder.time_base = Fraction(1, 90000)
    encoder.open()
    frame = av.VideoFrame(64, 64, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.pts = 0
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    return _Unit(bytes(packets[0]), 900000, True)
