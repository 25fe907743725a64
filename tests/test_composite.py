"""The composite picture-in-picture MP4: layout from events, real decode, mix and encode.

A 10 s 1拖4 lesson is recorded as real per-room files (test pattern video, one Opus tone
per room: H.264 + Opus in MP4, one room VP8 + Opus in WebM), with offsets, a late joiner,
an early leaver and a gap; room 23 is on stage from 4 s to 7 s. The composite is decoded
and every tile is checked for its room: the room colour at the pattern's colour probe, and
the pattern's code block read back from the tile's luma, or the placeholder while absent.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from classroom.agent.testpattern import COLOUR_PROBE, PatternRenderer, read_pattern, room_colour
from recorder.finalise.composite import render_composite
from recorder.finalise.layout import RoomMedia, Tile, TimelineEvent, layout_at, layout_timeline

FPS = 15
DURATION = 10.0


@dataclass(frozen=True)
class Recording:
    """How one room's test file is made: on the lesson clock, from `start` to `end`,
    missing `gap`."""

    classroom_id: int
    role: str
    name: str
    position: int
    tone_hz: float
    codec: str  # "h264" (MP4) or "vp8" (WebM)
    start: float
    end: float
    gap: tuple[float, float] | None = None
    size: tuple[int, int] = (320, 180)


def write_room_file(rec: Recording, folder: Path) -> RoomMedia:
    """Encode the room's pattern and tone into one file whose t=0 is the room's start."""
    suffix = ".mp4" if rec.codec == "h264" else ".webm"
    path = folder / f"room{rec.classroom_id}{suffix}"
    width, height = rec.size
    renderer = PatternRenderer(width, height, rec.name, rec.classroom_id)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264" if rec.codec == "h264" else "libvpx", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 400_000
        video.codec_context.thread_count = 1
        if rec.codec == "h264":
            video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        else:
            video.codec_context.options = {"deadline": "realtime", "cpu-used": "8"}
        audio = out.add_stream("libopus", rate=48000, layout="mono")
        audio.bit_rate = 32_000

        def in_gap(t: float) -> bool:
            return rec.gap is not None and rec.gap[0] <= t < rec.gap[1]

        frames = round((rec.end - rec.start) * FPS)
        for i in range(frames):
            if in_gap(rec.start + i / FPS):
                continue
            frame = renderer.render_frame(i, 0)
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = round((rec.end - rec.start) * 48000)
        step = 960
        for at in range(0, samples - step + 1, step):
            if in_gap(rec.start + at / 48000):
                continue
            t = (np.arange(step) + at) / 48000
            tone = (0.3 * np.sin(2 * np.pi * rec.tone_hz * t)).astype(np.float32)
            aframe = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
            aframe.sample_rate, aframe.pts, aframe.time_base = 48000, at, Fraction(1, 48000)
            out.mux(audio.encode(aframe))
        out.mux(audio.encode(None))
    return RoomMedia(
        rec.classroom_id,
        rec.role,
        rec.name,
        rec.position,  # type: ignore[arg-type]
        path,
        path,
        rec.start,
    )


LESSON = [
    Recording(11, "main", "主讲教室", 0, 300.0, "h264", 0.0, 10.0, size=(640, 360)),
    Recording(21, "receiving", "一小", 1, 500.0, "h264", 0.0, 8.5),  # leaves at 8.5 s
    Recording(22, "receiving", "二小", 2, 700.0, "vp8", 0.5, 10.0, gap=(5.0, 7.6)),
    Recording(23, "receiving", "三小", 3, 1100.0, "h264", 0.0, 10.0),  # on stage 4-7 s
    Recording(24, "receiving", "四小", 4, 1300.0, "h264", 3.0, 10.0),  # joins at 3 s
]
EVENTS = [
    TimelineEvent(0.0, "join", 11),
    TimelineEvent(0.0, "join", 21),
    TimelineEvent(0.5, "join", 22),
    TimelineEvent(0.0, "join", 23),
    TimelineEvent(3.0, "join", 24),
    TimelineEvent(3.5, "hand_raised", 23),  # ignored by the layout
    TimelineEvent(4.0, "stage", 23),
    TimelineEvent(7.0, "unstage", 23),
    TimelineEvent(8.5, "leave", 21),
]
TONES = {r.classroom_id: r.tone_hz for r in LESSON}


def rooms_without_media() -> list[RoomMedia]:
    return [
        RoomMedia(r.classroom_id, r.role, r.name, r.position)  # type: ignore[arg-type]
        for r in LESSON
    ]


# ------------------------------------------------------------------------------- layout


def by_id(tiles: list[Tile]) -> dict[int | None, Tile]:
    return {t.classroom_id: t for t in tiles}


def test_teacher_is_large_and_receiving_rooms_are_tiles() -> None:
    tiles = by_id(layout_at(2.0, rooms_without_media(), EVENTS))
    teacher = tiles[11]
    assert (teacher.w, teacher.h) == (960, 540)
    for cid in (21, 22, 23, 24):
        assert (tiles[cid].w, tiles[cid].h) == (320, 180)
        assert tiles[cid].x >= teacher.x + teacher.w
    assert [tiles[c].y for c in (21, 22, 23, 24)] == [0, 180, 360, 540]
    assert not tiles[24].connected  # joins at 3 s
    assert tiles[21].connected


def test_staged_room_is_enlarged_beside_the_teacher() -> None:
    tiles = by_id(layout_at(5.0, rooms_without_media(), EVENTS))
    assert tiles[23].staged
    assert (tiles[11].w, tiles[11].h) == (tiles[23].w, tiles[23].h) == (640, 360)
    assert tiles[11].y == tiles[23].y and tiles[23].x == tiles[11].x + tiles[11].w
    for cid in (21, 22, 24):
        assert tiles[cid].w * tiles[cid].h < tiles[23].w * tiles[23].h
    # nothing overlaps and everything is inside the frame, with even edges
    rects = list(tiles.values())
    for a in rects:
        assert 0 <= a.x and a.x + a.w <= 1280 and 0 <= a.y and a.y + a.h <= 720
        assert a.x % 2 == a.y % 2 == a.w % 2 == a.h % 2 == 0
        for b in rects:
            if a is not b:
                assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y


def test_layout_segments_follow_the_events() -> None:
    segments = layout_timeline(rooms_without_media(), EVENTS, DURATION)
    bounds = [(s.start_s, s.end_s) for s in segments]
    assert bounds == [(0.0, 0.5), (0.5, 3.0), (3.0, 4.0), (4.0, 7.0), (7.0, 8.5), (8.5, 10.0)]
    assert not by_id(list(segments[-1].tiles))[21].connected


def test_zero_receiving_rooms_gives_the_teacher_the_whole_frame() -> None:
    teacher = RoomMedia(11, "main", "主讲教室", 0)
    assert layout_at(1.0, [teacher], []) == [
        Tile(11, 0, 0, 1280, 720, "main", "主讲教室", True, False)
    ]


def test_unstage_of_another_room_and_a_first_leave() -> None:
    rooms = rooms_without_media()
    events = [
        TimelineEvent(1.0, "stage", 22),
        TimelineEvent(2.0, "unstage", 23),
        TimelineEvent(3.0, "leave", 24),
        TimelineEvent(4.0, "stage", 11),
    ]
    assert by_id(layout_at(2.5, rooms, events))[22].staged  # 23 was not on stage
    assert by_id(layout_at(0.5, rooms, events))[24].connected  # was there before its leave
    assert not by_id(layout_at(3.5, rooms, events))[24].connected
    assert not any(t.staged for t in layout_at(4.5, rooms, events))  # the teacher can't be


# ------------------------------------------------------------------------------- render


@pytest.fixture(scope="module")
def lesson(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("composite")
    rooms = [write_room_file(r, folder) for r in LESSON]
    out = folder / "composite.mp4"
    stats = render_composite(rooms, EVENTS, DURATION, out)
    with av.open(str(out)) as container:
        video_stream = container.streams.video[0]
        frames: dict[int, np.ndarray] = {}
        bgr: dict[int, np.ndarray] = {}
        for frame in container.decode(video_stream):
            k = round(float(frame.pts * frame.time_base) * FPS)
            if k % 3 == 0:
                frames[k] = frame.to_ndarray(format="gray")
                bgr[k] = frame.to_ndarray(format="bgr24")
    with av.open(str(out)) as container:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return {"rooms": rooms, "out": out, "stats": stats, "luma": frames, "bgr": bgr, "audio": audio}


def ffprobe(path: Path) -> tuple[dict, str]:
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout), result.stderr


def what_tile_shows(lesson: dict, t: float, tile: Tile) -> str:
    """'room <tag>' if the tile shows that room's pattern (colour and code), else
    'placeholder' or 'unknown'."""
    k = round(t * FPS)
    luma = lesson["luma"][k][tile.y : tile.y + tile.h, tile.x : tile.x + tile.w]
    bgr = lesson["bgr"][k][tile.y : tile.y + tile.h, tile.x : tile.x + tile.w]
    code = read_pattern(luma)
    px, py = round(COLOUR_PROBE[0] * tile.w), round(COLOUR_PROBE[1] * tile.h)
    r = max(2, tile.h // 60)
    colour = bgr[py - r : py + r, px - r : px + r].reshape(-1, 3).mean(axis=0)
    if code is not None:
        expected = np.array(room_colour(code.tag), dtype=np.float64)
        assert np.abs(colour - expected).max() < 30, (t, tile, colour, expected)
        return f"room {code.tag}"
    grey = bgr.reshape(-1, 3).astype(np.float64)
    if np.median(grey, axis=0).max() < 70 and np.ptp(np.median(grey, axis=0)) < 8:
        return "placeholder"
    return "unknown"


# what each room's tile shows at sample times: a room number, or a placeholder
EXPECTED = {
    1.0: {11: 11, 21: 21, 22: 22, 23: 23, 24: None},
    3.6: {11: 11, 21: 21, 22: 22, 23: 23, 24: 24},
    4.8: {11: 11, 21: 21, 22: 22, 23: 23, 24: 24},  # 23 on stage
    6.6: {11: 11, 21: 21, 22: None, 23: 23, 24: 24},  # 22 in its gap (after the hold)
    8.0: {11: 11, 21: 21, 22: 22, 23: 23, 24: 24},
    9.4: {11: 11, 21: None, 22: 22, 23: 23, 24: 24},  # 21 left
}


@pytest.mark.parametrize("t", sorted(EXPECTED))
def test_every_tile_shows_its_room_or_a_placeholder(lesson: dict, t: float) -> None:
    tiles = layout_at(t, lesson["rooms"], EVENTS)
    shown = {tile.classroom_id: what_tile_shows(lesson, t, tile) for tile in tiles}
    expected = {cid: f"room {cid}" if who else "placeholder" for cid, who in EXPECTED[t].items()}
    assert shown == expected


def test_staged_room_is_shown_larger_than_the_others(lesson: dict) -> None:
    tiles = by_id(layout_at(4.8, lesson["rooms"], EVENTS))
    assert tiles[23].w > 2 * 320 - 1
    assert what_tile_shows(lesson, 4.8, tiles[23]) == "room 23"
    assert all(tiles[c].w < tiles[23].w for c in (21, 22, 24))


def test_file_is_clean_and_as_long_as_the_lesson(lesson: dict) -> None:
    info, errors = ffprobe(lesson["out"])
    assert errors == ""
    assert abs(float(info["format"]["duration"]) - DURATION) < 0.2
    codecs = {s["codec_type"]: s for s in info["streams"]}
    assert codecs["video"]["codec_name"] == "h264"
    assert (codecs["video"]["width"], codecs["video"]["height"]) == (1280, 720)
    assert codecs["video"]["pix_fmt"] == "yuv420p"
    assert codecs["audio"]["codec_name"] == "aac"
    assert int(codecs["audio"]["sample_rate"]) == 48000
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(lesson["out"]), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert decode.stderr == ""
    # +faststart: the index (moov) comes before the media (mdat)
    head = lesson["out"].read_bytes()[:4096]
    assert 0 <= head.find(b"moov") < max(head.find(b"mdat"), 4096)
    stats = lesson["stats"]
    assert stats.frames == DURATION * FPS and stats.video_rooms == 5 and stats.audio_rooms == 5


def test_keyframe_every_two_seconds(lesson: dict) -> None:
    with av.open(str(lesson["out"])) as container:
        keys = [
            float(p.pts * p.time_base)
            for p in container.demux(video=0)
            if p.is_keyframe and p.pts is not None
        ]
    assert keys[:5] == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0], abs=0.01)


def tone_levels(audio: np.ndarray, start: float, end: float) -> dict[int, float]:
    """Each room's tone level in the mix over [start, end), relative to the strongest."""
    window = audio[round(start * 48000) : round(end * 48000)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(window.size)))
    freqs = np.fft.rfftfreq(window.size, 1 / 48000)
    levels = {cid: float(spectrum[np.abs(freqs - hz) < 6].max()) for cid, hz in TONES.items()}
    top = max(levels.values())
    return {cid: v / top for cid, v in levels.items()}


def test_audio_mixes_the_rooms_present(lesson: dict) -> None:
    audio = lesson["audio"]
    assert abs(audio.size / 48000 - DURATION) < 0.1
    assert np.abs(audio).max() <= 1.0
    early = tone_levels(audio, 1.0, 2.5)  # 24 has not joined
    assert all(early[c] > 0.5 for c in (11, 21, 22, 23)) and early[24] < 0.05
    gap = tone_levels(audio, 5.2, 7.4)  # 22 in its gap
    assert all(gap[c] > 0.5 for c in (11, 21, 23, 24)) and gap[22] < 0.05
    late = tone_levels(audio, 8.7, 9.9)  # 21 left
    assert all(late[c] > 0.5 for c in (11, 22, 23, 24)) and late[21] < 0.05


def test_room_offsets_hold_on_the_lesson_clock(lesson: dict) -> None:
    """Room 24's file starts at lesson 3.0 s: its first frame's counter 0 is shown at 3.0."""
    for t in (3.6, 6.0, 9.0):
        tile = by_id(layout_at(t, lesson["rooms"], EVENTS))[24]
        k = round(t * FPS)
        crop = lesson["luma"][k][tile.y : tile.y + tile.h, tile.x : tile.x + tile.w]
        code = read_pattern(crop)
        assert code is not None and code.tag == 24
        assert code.counter == pytest.approx((t - 3.0) * FPS, abs=1)


def test_missing_and_broken_media_give_placeholders_with_ascii_labels(tmp_path: Path) -> None:
    teacher = write_room_file(
        Recording(11, "main", "主讲教室", 0, 300.0, "h264", 0.0, 2.0), tmp_path
    )
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40)
    rooms = [
        teacher,
        RoomMedia(21, "receiving", "一小", 1, None, None, 0.0),  # no media at all
        RoomMedia(22, "receiving", "二小", 2, broken, broken, 0.0),  # unreadable
        RoomMedia(23, "receiving", "三小", 3, tmp_path / "missing.webm", None, 0.0),
    ]
    out = tmp_path / "out.mp4"
    # ASCII labels, as on a box without a CJK font
    stats = render_composite(rooms, [], 2.0, out, size=(640, 360), label_backend="hershey")
    assert stats.label_backend == "hershey"
    assert stats.frames == 30
    info, errors = ffprobe(out)
    assert errors == "" and abs(float(info["format"]["duration"]) - 2.0) < 0.2
    with av.open(str(out)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 15)
        bgr = frame.to_ndarray(format="bgr24")
        luma = frame.to_ndarray(format="gray")
    lesson = {"luma": {15: luma}, "bgr": {15: bgr}}
    shown = {
        t.classroom_id: what_tile_shows(lesson, 1.0, t)
        for t in layout_at(1.0, rooms, [], size=(640, 360))
    }
    assert shown == {11: "room 11", 21: "placeholder", 22: "placeholder", 23: "placeholder"}


def test_damaged_packets_are_skipped_and_the_render_goes_on(tmp_path: Path) -> None:
    room = write_room_file(Recording(21, "receiving", "一小", 1, 500.0, "h264", 0.0, 4.0), tmp_path)
    data = bytearray(room.video.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = bytes((i * 7919) & 0xFF for i in range(3000))
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    rooms = [RoomMedia(21, "receiving", "一小", 1, damaged, damaged, 0.0)]  # no teacher
    out = tmp_path / "out.mp4"
    stats = render_composite(rooms, [], 4.0, out, size=(640, 360))
    assert stats.frames == 60 and stats.decoded_frames[21] > 30 and stats.corrupt_packets >= 1
    info, errors = ffprobe(out)
    assert errors == "" and abs(float(info["format"]["duration"]) - 4.0) < 0.2
    tiles = layout_at(0.5, rooms, [], size=(640, 360))
    assert tiles[0].classroom_id is None and tiles[0].name == "主讲教室"
    with av.open(str(out)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 6)
    lesson = {
        "luma": {6: frame.to_ndarray(format="gray")},
        "bgr": {6: frame.to_ndarray(format="bgr24")},
    }
    assert [what_tile_shows(lesson, 0.4, t) for t in tiles] == ["placeholder", "room 21"]


def test_teacher_alone_fills_the_frame(tmp_path: Path) -> None:
    teacher = write_room_file(
        Recording(11, "main", "主讲教室", 0, 300.0, "h264", 0.0, 1.0), tmp_path
    )
    out = tmp_path / "alone.mp4"
    render_composite([teacher], [], 1.0, out, size=(640, 360))
    with av.open(str(out)) as container:
        frame = next(iter(container.decode(video=0)))
        assert read_pattern(frame.to_ndarray(format="gray")).tag == 11
