"""Finalisation with real media: packet logs written by the real writer from real encoders.

A synthetic lesson (`make_capture`): a main room (H.264), a receiving room (VP8) whose
link drops for a few seconds (two parts), a receiving room (H.264); every room also sends
Opus. Each video frame carries the test pattern's counter = its frame number on the lesson
clock, so a decoded file proves continuity (and where the gap is) frame by frame.
`make_capture` is also used by bench/finalise.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer, read_pattern_frame
from recorder.capture.packetlog import PacketLogWriter, TrackMeta
from recorder.finalise.hls_vod import parse_playlist
from recorder.finalise.jobs import FinalisationQueue, final_dir_of, recover_unfinished
from recorder.finalise.steps import finalise_lesson, is_finalised, read_manifest

FPS = 15
SIZE = (320, 180)
ORIGIN = 1_790_000_000.0


@dataclass
class RoomPlan:
    classroom_id: int
    role: str
    name: str
    position: int
    codec: str  # "h264" | "vp8"
    start_s: float
    end_s: float
    gaps: list[tuple[float, float]] = field(default_factory=list)  # link drops


def _parts(plan: RoomPlan) -> list[tuple[float, float]]:
    spans, t = [], plan.start_s
    for gap_from, gap_to in plan.gaps:
        spans.append((t, gap_from))
        t = gap_to
    spans.append((t, plan.end_s))
    return spans


def encode_video(codec: str, tag: int, frames: list[int], fps: int = FPS,
                 size: tuple[int, int] = SIZE) -> list[tuple[int, bool, bytes]]:
    """(frame number, keyframe, data) for those frame numbers, one encoder (one part)."""
    encoder = VideoEncoder(codec, size[0], size[1], fps, 300_000, keyframe_interval_s=2.0)
    renderer = PatternRenderer(size[0], size[1], f"room {tag}", tag)
    out = []
    for n in frames:
        frame = renderer.render_frame(n, 0)
        frame.pts = round(n * 90000 / fps)
        for packet in encoder.encode(frame):
            out.append((n, packet.is_keyframe, bytes(packet)))
    return out


def encode_opus(seconds: float, hz: float = 440.0) -> list[bytes]:
    """20 ms Opus packets of a tone, mono, as the agent sends them."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = 48000
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = 32000
    ctx.time_base = Fraction(1, 48000)
    ctx.options = {"application": "voip", "frame_duration": "20"}
    count = round(seconds / 0.02)
    t = np.arange(960 * count) / 48000
    samples = (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
    packets = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(samples[i * 960:(i + 1) * 960].reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = i * 960
        frame.time_base = Fraction(1, 48000)
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets[:count]


def make_capture(data_dir: Path, lesson_id: int, rooms: list[RoomPlan],
                 events: list[tuple[float, str, int | None]], duration_s: float, *,
                 state: str = "complete", video_cache: dict | None = None) -> Path:
    """A capture dir as recorder.capture.recorder writes it, with real encoded media."""
    capture = data_dir / "recordings" / str(lesson_id) / "capture"
    capture.mkdir(parents=True)
    for room in rooms:
        for part, (t0, t1) in enumerate(_parts(room)):
            frames = list(range(round(t0 * FPS), round(t1 * FPS)))
            video = encode_video(room.codec, room.classroom_id, frames)
            meta = TrackMeta(lesson_id, room.classroom_id, "video",
                             "video/H264" if room.codec == "h264" else "video/VP8", 90000,
                             part, ORIGIN + t0, SIZE[0], SIZE[1])
            writer = PacketLogWriter(capture / f"{room.classroom_id}-video.{part:03d}.tbl",
                                     meta)
            for n, key, data in video:
                writer.append(round(n * 1_000_000 / FPS), key, data)
            writer.close()
            audio = encode_opus(t1 - t0)
            meta = TrackMeta(lesson_id, room.classroom_id, "audio", "audio/opus", 48000, part,
                             ORIGIN + t0)
            writer = PacketLogWriter(capture / f"{room.classroom_id}-audio.{part:03d}.tbl",
                                     meta)
            for i, data in enumerate(audio):
                writer.append(round(t0 * 1_000_000) + i * 20_000, True, data)
            writer.close()
    info = {
        "lesson_id": lesson_id,
        "title": "一次函数的图像",
        "rooms": [{"classroom_id": r.classroom_id, "name": r.name, "school_name": "",
                   "role": r.role, "position": r.position} for r in rooms],
        "clock_origin_unix": ORIGIN,
        "state": state,
    }
    if state == "complete":
        info.update(ended_at_unix=ORIGIN + duration_s, end_reason="ended")
    (capture / "lesson.json").write_text(json.dumps(info, ensure_ascii=False))
    with open(capture / "events.jsonl", "w", encoding="utf-8") as file:
        for t_s, kind, classroom_id in events:
            file.write(json.dumps({"t_us": round(t_s * 1e6), "kind": kind,
                                   "classroom_id": classroom_id, "detail": {}}) + "\n")
    return capture


DURATION = 12.0
GAP = (5.0, 8.0)  # room 22 drops for 3 s
ROOMS = [
    RoomPlan(11, "main", "城区实验小学 主讲", 0, "h264", 0.2, DURATION),
    RoomPlan(22, "receiving", "村小 一", 1, "vp8", 0.6, DURATION, gaps=[GAP]),
    RoomPlan(33, "receiving", "村小 二", 2, "h264", 1.0, DURATION),
]
EVENTS = [
    (0.0, "recording_started", None),
    (0.2, "join", 11), (0.6, "join", 22), (1.0, "join", 33),
    (3.0, "stage", 33), (4.0, "hand_raised", 22), (4.5, "hand_lowered", 22),
    (GAP[0], "leave", 22), (GAP[1], "join", 22),
    (9.0, "unstage", 33), (9.5, "mute", 33),
    (DURATION, "ended", None),
]


@pytest.fixture(scope="module")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One lesson, captured and finalised once (with the composite) for the module."""
    data_dir = tmp_path_factory.mktemp("data")
    capture = make_capture(data_dir, 7, ROOMS, EVENTS, DURATION)
    manifest = asyncio.run(finalise_lesson(capture, final_dir_of(capture)))
    return final_dir_of(capture), manifest


def ffprobe_errors(path: Path) -> str:
    """What ffprobe and a full ffmpeg decode complain about (empty: nothing)."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams",
                            str(path)], capture_output=True, text=True, timeout=60)
    decode = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                            capture_output=True, text=True, timeout=120)
    return (probe.stderr + decode.stderr).strip()


def probe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True)
    return float(out.stdout.strip())


def decoded_counters(path: Path) -> list[tuple[float, int]]:
    """(time in the file, pattern counter) of every decoded video frame."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            code = read_pattern_frame(frame)
            assert code is not None, f"{path.name}: frame at {frame.time} has no pattern"
            out.append((frame.time, code.counter))
    return out


def room(manifest: dict, classroom_id: int) -> dict:
    return next(r for r in manifest["rooms"] if r["classroom_id"] == classroom_id)


def test_every_room_file_decodes_without_errors(lesson):
    final_dir, manifest = lesson
    files = [f for f in manifest["files"] if f["role"] in ("room_video", "room_audio")]
    assert {f["classroom_id"] for f in files} == {11, 22, 33}
    assert {Path(f["path"]).suffix for f in files} == {".mp4", ".webm", ".ogg"}
    for file in files:
        assert ffprobe_errors(final_dir / file["path"]) == "", file["path"]


def test_room_durations_match_the_lesson(lesson):
    final_dir, manifest = lesson
    assert manifest["duration_s"] == pytest.approx(DURATION, abs=0.01)
    for plan in ROOMS:
        entry = room(manifest, plan.classroom_id)
        assert entry["offset_s"] == pytest.approx(plan.start_s, abs=0.01)
        video = final_dir / entry["files"][0]
        # the file covers the room's time in the lesson: offset + file = lesson end, ±1 s
        assert entry["offset_s"] + probe_duration(video) == pytest.approx(DURATION, abs=1.0)


def test_counters_are_continuous_and_on_the_lesson_clock(lesson):
    final_dir, manifest = lesson
    for plan in (ROOMS[0], ROOMS[2]):
        entry = room(manifest, plan.classroom_id)
        frames = decoded_counters(final_dir / entry["files"][0])
        counters = [c for _t, c in frames]
        first = round(plan.start_s * FPS)
        assert counters == list(range(first, round(DURATION * FPS)))
        for t, counter in frames:  # each frame sits where it was on the lesson clock
            assert t + entry["offset_s"] == pytest.approx(counter / FPS, abs=0.002)
        assert entry["gaps"] == []


def test_a_room_that_dropped_has_one_file_with_the_gap(lesson):
    final_dir, manifest = lesson
    entry = room(manifest, 22)
    assert [f for f in entry["files"] if f.endswith((".mp4", ".webm"))] == ["room-22.webm"]
    frames = decoded_counters(final_dir / "room-22.webm")
    counters = [c for _t, c in frames]
    before = list(range(round(0.6 * FPS), round(GAP[0] * FPS)))
    after = list(range(round(GAP[1] * FPS), round(DURATION * FPS)))
    assert counters == before + after  # continuous except the known gap
    resumed = frames[len(before)]
    assert resumed[0] + entry["offset_s"] == pytest.approx(GAP[1], abs=0.002)
    kinds = {g["kind"]: (g["from_s"], g["to_s"]) for g in entry["gaps"]}
    assert kinds["video"][0] == pytest.approx(GAP[0], abs=0.1)
    assert kinds["video"][1] == pytest.approx(GAP[1], abs=0.01)
    assert "audio" in kinds
    assert entry["parts"] == 4  # two connections, audio and video each
    # the audio is continuous (silence in the gap), so players keep A/V in sync
    assert probe_duration(final_dir / "room-22-audio.ogg") == pytest.approx(
        DURATION - 0.6, abs=0.1)


def test_hls_playlists_parse_and_play_through_ffprobe(lesson):
    final_dir, manifest = lesson
    playlists = [f for f in manifest["files"] if f["role"] == "hls_playlist"]
    # the two H.264 rooms and the composite; VP8 has no HLS packaging
    assert sorted(str(f["classroom_id"]) for f in playlists) == ["11", "33", "None"]
    for entry in playlists:
        playlist = final_dir / entry["path"]
        segments = parse_playlist(playlist)
        assert segments and all(0 < d <= 8.5 for d, _uri in segments)
        assert all((playlist.parent / uri).exists() for _d, uri in segments)
        assert sum(d for d, _ in segments) == pytest.approx(entry["duration_s"], abs=0.01)
        assert ffprobe_errors(playlist) == ""
        expected = DURATION - (entry["offset_s"] or 0.0)
        assert probe_duration(playlist) == pytest.approx(expected, abs=1.0)


def test_poster_and_thumbnail_strip_exist(lesson):
    final_dir, manifest = lesson
    roles = {f["path"]: f["role"] for f in manifest["files"]}
    assert roles["poster.jpg"] == "poster"
    poster = cv2.imread(str(final_dir / "poster.jpg"))
    assert poster.shape == (SIZE[1], SIZE[0], 3)
    # it is the teacher's picture (room 11's colour), not a black frame
    assert poster.mean() > 40
    sprite = cv2.imread(str(final_dir / "thumbnails.jpg"))
    index = json.loads((final_dir / "thumbnails.json").read_text())
    assert len(index["thumbnails"]) >= 10
    assert sprite.shape[1] == index["columns"] * index["thumb_width"]
    last = index["thumbnails"][-1]
    assert last["y"] + last["h"] <= sprite.shape[0]
    assert (final_dir / "thumbnails.vtt").read_text().startswith("WEBVTT")


def test_chapters_match_the_events(lesson):
    final_dir, _manifest = lesson
    chapters = json.loads((final_dir / "chapters.json").read_text())
    assert [(c["t_s"], c["title"]) for c in chapters] == [
        (0.0, "上课"),
        (3.0, "听课教室2 上台"),
        (4.0, "听课教室1 举手"),
        (5.0, "听课教室1 离开"),
        (8.0, "听课教室1 重新加入"),
        (9.0, "听课教室2 下台"),
        (DURATION, "下课"),
    ]
    vtt = (final_dir / "chapters.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "00:00:03.000 --> 00:00:04.000\n听课教室2 上台" in vtt


def test_composite_is_made_and_decodes(lesson):
    final_dir, manifest = lesson
    assert manifest["state"] == "done"
    composite = next(f for f in manifest["files"] if f["role"] == "composite")
    assert ffprobe_errors(final_dir / composite["path"]) == ""
    assert probe_duration(final_dir / composite["path"]) == pytest.approx(DURATION, abs=1.0)
    assert not (final_dir / ".work").exists()


async def test_finalising_again_is_idempotent_and_resumes_after_a_crash(tmp_path):
    capture = make_capture(tmp_path, 8, ROOMS[:1], EVENTS[:2] + EVENTS[-1:], DURATION)
    final_dir = final_dir_of(capture)
    first = await finalise_lesson(capture, final_dir, composite=False)
    assert first["state"] == "done" and is_finalised(capture, final_dir)
    written = {f: f.stat().st_mtime_ns for f in final_dir.rglob("*") if f.is_file()}
    again = await finalise_lesson(capture, final_dir, composite=False)
    # nothing was done again: every file is the one the first run wrote
    assert again == first
    assert {f: f.stat().st_mtime_ns for f in final_dir.rglob("*") if f.is_file()} == written
    # a crash in the middle: manifest says partial, a step's scratch dir is left over and
    # one of its files is gone; the next run redoes only what is missing
    manifest = read_manifest(final_dir)
    manifest["state"] = "partial"
    del manifest["steps"]["thumbnails"]
    (final_dir / "manifest.json").write_text(json.dumps(manifest))
    (final_dir / "poster.jpg").unlink()
    (final_dir / ".work" / "thumbnails").mkdir(parents=True)
    resumed = await finalise_lesson(capture, final_dir, composite=False)
    assert resumed["state"] == "done" and (final_dir / "poster.jpg").exists()
    assert resumed["steps"]["remux"] == first["steps"]["remux"]  # not redone
    assert not (final_dir / ".work").exists()


async def test_recovery_finalises_a_capture_the_server_left_recording(tmp_path):
    capture = make_capture(tmp_path, 9, ROOMS[:2], EVENTS[:3], DURATION, state="recording")
    # kill -9 tears the last record of a log
    log = capture / "11-video.000.tbl"
    log.write_bytes(log.read_bytes() + b"\x10\x00\x00\x00garbage")
    finished = make_capture(tmp_path, 10, ROOMS[:1], EVENTS[:2], DURATION)
    await finalise_lesson(finished, final_dir_of(finished), composite=False)

    queue = FinalisationQueue(composite=False)
    queue.start()
    try:
        recovered = await recover_unfinished(tmp_path, queue)
        assert recovered == [9]  # lesson 10 is already finalised
        async with asyncio.timeout(120):
            result = await queue.wait(9)
    finally:
        await queue.stop()
    assert result.error is None and result.manifest["state"] == "done"
    info = json.loads((capture / "lesson.json").read_text())
    assert info["state"] == "complete" and info["end_reason"] == "server_crashed"
    # ended at the last intact frame
    assert info["ended_at_unix"] - ORIGIN == pytest.approx(DURATION, abs=0.2)
    assert ffprobe_errors(final_dir_of(capture) / "room-11.mp4") == ""
    assert await recover_unfinished(tmp_path, queue) == []


async def test_a_crashed_capture_that_resumes_is_not_closed(tmp_path):
    capture = make_capture(tmp_path, 12, ROOMS[:1], EVENTS[:2], DURATION, state="recording")
    live: set[int] = set()
    queue = FinalisationQueue(composite=False)
    queue.start()
    try:
        await recover_unfinished(tmp_path, queue, live=lambda: live, resume_grace_s=0.3)
        live.add(12)  # a room rejoined: recorder.capture.recorder resumed the lesson
        async with asyncio.timeout(120):
            await queue.wait(12)
        await asyncio.sleep(0.5)
    finally:
        await queue.stop()
    assert json.loads((capture / "lesson.json").read_text())["state"] == "recording"
    assert read_manifest(final_dir_of(capture))["state"] == "done"


async def test_parallel_remux_workers_make_the_same_room_files(tmp_path, monkeypatch, lesson):
    """Long lessons remux rooms in worker processes: same frames, hashes in the manifest."""
    import recorder.finalise.steps as finalise_module

    monkeypatch.setattr(finalise_module, "PARALLEL_REMUX_MIN_BYTES", 0)
    capture = make_capture(tmp_path / "data", 8, ROOMS, EVENTS, DURATION)
    manifest = await finalise_lesson(capture, final_dir_of(capture), composite=False)
    serial_dir, serial = lesson
    for plan in ROOMS:
        parallel_room = room(manifest, plan.classroom_id)
        serial_room = room(serial, plan.classroom_id)
        assert parallel_room["offset_s"] == pytest.approx(serial_room["offset_s"], abs=0.001)
        mine = decoded_counters(final_dir_of(capture) / parallel_room["files"][0])
        theirs = decoded_counters(serial_dir / serial_room["files"][0])
        assert [c for _t, c in mine] == [c for _t, c in theirs]
    videos = [f for f in manifest["files"] if f["role"] == "room_video"]
    assert videos and all(len(f.get("sha256") or "") == 64 for f in videos)
