"""How fast is the composite picture-in-picture render on one core? (target: >= 4x real time)

A synthetic 1拖4 lesson: five rooms (teacher + four receiving rooms), each a 640x360 15 fps
H.264 + Opus MP4 of the classroom test pattern (`--content texture`: a detailed image
panning 3 px a frame, camera-like), room 23 on stage from 20 s to 35 s and room 22 from 40
s to 50 s, room 24 joining at 5 s. The inputs are made once and cached in --workdir (not
timed). The render runs in this process pinned to one CPU (sched_setaffinity) with one
decoder and one encoder thread, at 1280x720 15 fps.

Real-time factor = lesson seconds / wall seconds; CPU is this process's user + system
time over wall time, in % of one core.

    .venv/bin/python bench/composite.py
    .venv/bin/python bench/composite.py --preset ultrafast --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import cv2
import numpy as np

from classroom.agent.testpattern import PatternRenderer
from recorder.finalise.composite import DEFAULT_PRESET, render_composite
from recorder.finalise.layout import RoomMedia, TimelineEvent

FPS = 15
ROOMS = [  # classroom_id, role, name, position, tone Hz, joins at
    (11, "main", "主讲教室", 0, 300.0, 0.0),
    (21, "receiving", "一小", 1, 500.0, 0.0),
    (22, "receiving", "二小", 2, 700.0, 0.0),
    (23, "receiving", "三小", 3, 1100.0, 0.0),
    (24, "receiving", "四小", 4, 1300.0, 5.0),
]


def _texture(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height // 8, width // 8), dtype=np.uint8)
    big = cv2.resize(noise, (width * 2, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), 1.2)


def make_room(workdir: Path, room: tuple, seconds: float, content: str) -> RoomMedia:
    cid, role, name, position, tone_hz, joins = room
    path = workdir / f"{content}-{seconds:g}s-room{cid}.mp4"
    media = RoomMedia(cid, role, name, position, path, path, joins)
    if path.exists():
        return media
    width, height = 640, 360
    renderer = PatternRenderer(width, height, name, cid)
    texture = _texture(width, height, cid) if content == "texture" else None
    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 600_000
        video.codec_context.gop_size = 4 * FPS
        video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        audio = out.add_stream("libopus", rate=48000, layout="mono")
        audio.bit_rate = 32_000
        for i in range(round((seconds - joins) * FPS)):
            i420 = renderer.render(i, 0)
            if texture is not None:
                shift = (i * 3) % width
                i420[: height * 2 // 3] = texture[: height * 2 // 3, shift : shift + width]
            frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        step = 960
        for at in range(0, round((seconds - joins) * 48000) - step + 1, step):
            t = (np.arange(step) + at) / 48000
            tone = (0.2 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, at, Fraction(1, 48000)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    part.replace(path)
    return media


def events() -> list[TimelineEvent]:
    out = [TimelineEvent(joins, "join", cid) for cid, _, _, _, _, joins in ROOMS]
    out += [
        TimelineEvent(20.0, "stage", 23),
        TimelineEvent(35.0, "unstage", 23),
        TimelineEvent(40.0, "stage", 22),
        TimelineEvent(50.0, "unstage", 22),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--content", choices=("testpattern", "texture"), default="testpattern")
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--cpu", type=int, default=0, help="the one CPU to run on")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tongbu-bench-composite"))
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 25")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    rooms = [make_room(args.workdir, room, args.seconds, args.content) for room in ROOMS]
    os.sched_setaffinity(0, {args.cpu})
    out = args.workdir / f"composite-{args.content}-{args.preset}.mp4"
    # CPU time, not wall time: on a shared machine wall time blames whoever was running
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler:
        profiler.enable()
    stats = render_composite(
        rooms,
        events(),
        args.seconds,
        out,
        size=(1280, 720),
        fps=FPS,
        video_bitrate=args.bitrate,
        threads=1,
        preset=args.preset,
    )
    if profiler:
        profiler.disable()
    load = os.getloadavg()
    print(
        f"machine: {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"Python {platform.python_version()}, PyAV {av.__version__}, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(
        f"inputs: 5 rooms 640x360 {FPS} fps H.264 + Opus, {args.content}, "
        f"{args.seconds:g} s; output 1280x720 {FPS} fps libx264 {args.preset} "
        f"{args.bitrate // 1000} kbit/s + AAC, pinned to CPU {args.cpu}"
    )
    print(
        f"wall {stats.wall_s:.2f} s  cpu {stats.cpu_s:.2f} s  "
        f"real-time factor {stats.realtime_factor:.2f}x  CPU {stats.cpu_percent:.0f}%  "
        f"(cpu-time factor {stats.duration_s / stats.cpu_s:.2f}x)"
    )
    print(
        f"frames {stats.frames}, decoded {sum(stats.decoded_frames.values())}, "
        f"resizes {stats.resizes}, tiles painted {stats.tiles_painted}, "
        f"layout segments {stats.layout_segments}, labels {stats.label_backend}, "
        f"output {out.stat().st_size * 8 / stats.duration_s / 1000:.0f} kbit/s"
    )
    print("target >= 4x real time:", "MET" if stats.realtime_factor >= 4 else "NOT MET")
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())


if __name__ == "__main__":
    main()
