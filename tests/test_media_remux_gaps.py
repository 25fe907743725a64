"""Remuxing a room's packet logs with holes in the lesson clock (recorder/finalise/remux.py).

A room's track can stop mid-part (a publisher stalled) or between parts (it reconnected),
and a part can begin without a keyframe. The file must still be whole: it decodes from
start to end, the picture after a hole sits at its lesson-clock time, the last picture
before it is held across the hole (its sample lasts until the next), and the audio is
filled with Opus silence so players keep audio and video together. Each file is read
back with PyAV. Real media: the agent's encoder and libopus.
"""

from __future__ import annotations

import functools
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer, read_pattern_frame
from recorder.capture.packetlog import PacketLogWriter, TrackMeta
from recorder.finalise.remux import find_room_logs, h264_extradata, remux_room, split_annexb

FPS = 15
US = 1_000_000
ROOM = 4


@functools.cache
def video(codec: str, frames: tuple[int, ...]) -> tuple[tuple[int, bool, bytes], ...]:
    """(frame number, keyframe, data) for these frame numbers, from one encoder run
    (a hole in the numbers is a stall: the encoder goes on from where it was)."""
    encoder = VideoEncoder(codec, 320, 180, FPS, 300_000, keyframe_interval_s=1.0)
    renderer = PatternRenderer(320, 180, "gaps", ROOM)
    out = []
    for n in frames:
        frame = renderer.render_frame(n, 0)
        frame.pts = n * 90000 // FPS
        out.extend((n, p.is_keyframe, bytes(p)) for p in encoder.encode(frame))
    return tuple(out)


@functools.cache
def opus(count: int) -> tuple[bytes, ...]:
    """20 ms mono Opus packets of a tone."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = 48000
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = 32000
    ctx.time_base = Fraction(1, 48000)
    t = np.arange(960 * count) / 48000
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(samples[i * 960:(i + 1) * 960].reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = i * 960
        out.extend(bytes(p) for p in ctx.encode(frame))
    out.extend(bytes(p) for p in ctx.encode(None))
    return tuple(out[:count])


def write_log(capture: Path, kind: str, part: int, codec: str,
              frames: list[tuple[int, bool, bytes]]) -> None:
    """A packet log as the recorder writes it: (pts_us, keyframe, data) per frame."""
    meta = TrackMeta(lesson_id=1, classroom_id=ROOM, kind=kind, codec=codec,
                     clock_rate=90000 if kind == "video" else 48000, part=part,
                     started_at_unix=time.time(),
                     width=320 if kind == "video" else None,
                     height=180 if kind == "video" else None)
    writer = PacketLogWriter(capture / f"{ROOM}-{kind}.{part:03d}.tbl", meta)
    for pts_us, key, data in frames:
        writer.append(pts_us, key, data)
    writer.close()


def video_log(codec: str, numbers: list[int], *, offset_us: int = 0
              ) -> list[tuple[int, bool, bytes]]:
    return [(offset_us + n * US // FPS, key, data)
            for n, key, data in video(codec, tuple(numbers))]


def audio_log(seconds: list[tuple[float, float]]) -> list[tuple[int, bool, bytes]]:
    """Opus packets covering these spans of the lesson clock, 20 ms apart."""
    out = []
    for start, end in seconds:
        count = round((end - start) / 0.02)
        out.extend((round(start * US) + i * 20_000, True, p) for i, p in enumerate(opus(count)))
    return out


def read_back(path: Path, *, strict: bool = True
              ) -> tuple[list[tuple[float, int]], list[av.Packet], float]:
    """(time, counter) of every decoded picture (-1: no readable pattern, refused if
    strict); the video packets; the audio's length."""
    pictures = []
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            code = read_pattern_frame(frame)
            assert code is not None or not strict, f"a corrupt picture at {frame.time}"
            pictures.append((frame.time, code.counter if code is not None else -1))
    audio_s = 0.0
    with av.open(str(path)) as container:
        if container.streams.audio:
            stream = container.streams.audio[0]
            audio_s = sum(float(p.duration * stream.time_base)
                          for p in container.demux(stream) if p.size)
    return pictures, packets, audio_s


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("codec", "mime", "suffix"),
                         [("h264", "video/H264", "mp4"), ("vp8", "video/VP8", "webm")])
def test_a_publisher_that_stalls_mid_part_leaves_a_held_picture_and_silence_not_a_break(
    tmp_path: Path, codec: str, mime: str, suffix: str
) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    # 2 s of pictures, nothing for 2 s, then 2 s more: one connection, one part
    numbers = [*range(0, 30), *range(60, 90)]
    write_log(capture, "video", 0, mime, video_log(codec, numbers, offset_us=1_000_000))
    write_log(capture, "audio", 0, "audio/opus", audio_log([(1.0, 3.0), (5.0, 7.0)]))
    (room,) = find_room_logs(capture).values()
    result = remux_room(room, tmp_path / "out")

    assert result.offset_s == 1.0  # the file's zero is the room's first frame
    assert result.video_frames == 60 and result.dropped == 0
    assert result.audio_packets == 200
    assert result.silence_packets == 100  # exactly the 2 s hole, in 20 ms packets
    gaps = {g.kind: (g.from_s, g.to_s) for g in result.gaps}
    assert gaps["video"] == (pytest.approx(1.0 + 29 / FPS), pytest.approx(1.0 + 60 / FPS))
    assert gaps["audio"] == (pytest.approx(3.0), pytest.approx(5.0))
    assert result.duration_s == pytest.approx(6.0, abs=0.07)

    path = tmp_path / "out" / f"room-{ROOM}.{suffix}"
    assert result.files[0].path == path
    pictures, packets, audio_s = read_back(path)
    assert [c for _t, c in pictures] == numbers  # every picture, none garbled
    times = [t for t, _c in pictures]
    assert times[30] == pytest.approx(60 / FPS, abs=0.002)  # on time after the hole
    held = packets[29]  # the last picture before the hole lasts until the next
    assert float(held.duration * held.time_base) == pytest.approx(31 / FPS, abs=0.002)
    assert audio_s == pytest.approx(6.0, abs=0.03)  # sound and silence, no jump


def test_a_reconnected_part_is_played_from_its_first_keyframe_after_the_gap(
    tmp_path: Path,
) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    # part 0: 0..2 s. Part 1 (the room came back at 4 s) was captured from frame 5 of
    # its encoder: frames 5..14 are deltas whose keyframe was never recorded.
    write_log(capture, "video", 0, "video/H264", video_log("h264", list(range(30))))
    second = video_log("h264", list(range(45)), offset_us=3_666_667)[5:]
    write_log(capture, "video", 1, "video/H264", second)
    write_log(capture, "audio", 0, "audio/opus", audio_log([(0.0, 2.0)]))
    write_log(capture, "audio", 1, "audio/opus", audio_log([(4.0, 6.6)]))
    (room,) = find_room_logs(capture).values()
    assert [p.name for p in room.video[0].parts] == [f"{ROOM}-video.000.tbl",
                                                     f"{ROOM}-video.001.tbl"]
    result = remux_room(room, tmp_path / "out")
    assert result.parts == 4
    assert result.dropped == 10
    assert result.video_frames == 30 + 30
    (video_gap,) = [g for g in result.gaps if g.kind == "video"]
    assert video_gap.from_s == pytest.approx(29 / FPS)
    assert video_gap.to_s == pytest.approx(3.666_667 + 15 / FPS)

    pictures, _packets, audio_s = read_back(tmp_path / "out" / f"room-{ROOM}.mp4")
    assert [c for _t, c in pictures] == [*range(30), *range(15, 45)]
    assert pictures[30][0] == pytest.approx(3.666_667 + 15 / FPS, abs=0.002)
    assert audio_s == pytest.approx(6.6, abs=0.03)


def test_frames_that_go_back_in_time_are_dropped_and_the_file_stays_whole(
    tmp_path: Path,
) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    frames = video_log("h264", list(range(30)))
    # a clock step backwards after frame 19: frames 20..24 carry earlier times
    stepped = frames[:20] + [(pts - 1_000_000, k, d) for pts, k, d in frames[20:25]] \
        + frames[25:]
    write_log(capture, "video", 0, "video/H264", stepped)
    (room,) = find_room_logs(capture).values()
    result = remux_room(room, tmp_path / "out")
    assert result.dropped == 5 and result.video_frames == 25
    pictures, packets, _audio = read_back(tmp_path / "out" / f"room-{ROOM}.mp4",
                                          strict=False)
    # The file is whole: every sample decodes to a picture, in time order, and 0..19 are
    # intact. 25..29 refer to pictures the file does not have (remux keeps them: it does
    # not wait for a keyframe after dropping a frame), so what they show is not checked.
    times = [t for t, _c in pictures]
    assert times == sorted(times) and len(pictures) == len(packets) == 25
    assert [c for _t, c in pictures][:20] == list(range(20))


def test_a_capture_that_begins_on_an_idr_without_its_sps_and_pps_starts_at_the_next_keyframe(
    tmp_path: Path,
) -> None:
    """The capture began between the SPS/PPS packets of frame 0 and its IDR slice: frame 0
    is flagged a keyframe but no MP4 can begin with it. Starting there used to lose the
    room's whole file (an avcC needs the SPS and PPS)."""
    capture = tmp_path / "capture"
    capture.mkdir()
    frames = video_log("h264", list(range(45)))  # keyframes at 0, 15 and 30
    first_pts, first_key, first_data = frames[0]
    assert first_key and h264_extradata(first_data) is not None
    idr_only = b"".join(b"\x00\x00\x00\x01" + unit for unit in split_annexb(first_data)
                        if unit[0] & 0x1F not in (7, 8))
    assert h264_extradata(idr_only) is None
    write_log(capture, "video", 0, "video/H264", [(first_pts, True, idr_only), *frames[1:]])
    (room,) = find_room_logs(capture).values()
    result = remux_room(room, tmp_path / "out")
    assert result.offset_s == pytest.approx(15 / FPS)  # the file begins at frame 15
    assert result.video_frames == 30 and result.dropped == 15
    assert (result.width, result.height) == (320, 180)
    pictures, _packets, _audio = read_back(tmp_path / "out" / f"room-{ROOM}.mp4")
    assert [c for _t, c in pictures] == list(range(15, 45))
