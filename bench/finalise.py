"""Finalisation benchmarks: per-room remux speed and lesson end → playable in the library.

    .venv/bin/python bench/finalise.py [--minutes 45] [--rooms 5] [--keep DIR]

1. A synthetic 45-minute room: packet logs written with the real writer from a short
   encoded loop (4 s of the test pattern at 720p30 through the agent's VideoEncoder, one
   GOP, and 4 s of Opus), repeated with shifted timestamps. Remuxed to MP4 with
   `+faststart` and as fragmented MP4; speed = lesson seconds per wall second.
2. A 45-minute 1拖4 lesson (5 such rooms): the fast finalisation phase (per-room files and
   chapters, `finalise._run_steps(FAST_STEPS)`: rooms remuxed in parallel worker
   processes, one per core, each hashing the files it wrote) plus what library
   registration costs with the default local storage (what `register_recording` does
   without its database rows: the manifest's sha256, else the file hashed, then
   `put_file`, a hard link into the library folder checked against that digest). That
   is the time from the lesson's end to per-room files playable in the library.
   `--compare` first runs the same lesson the way it was done before: rooms one after
   another in one process (`remux_processes=1`) and a checked copy into the library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av

from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer
from recorder.capture.packetlog import PacketLogWriter, TrackMeta
from recorder.finalise.remux import find_room_logs, remux_room
from recorder.finalise.steps import FAST_STEPS, _new_manifest, _run_steps
from recorder.storage import file_sha256
from recorder.storage.local import LocalStorage

FPS = 30
LOOP_S = 4.0
ORIGIN = 1_790_000_000.0


def encoded_loop(width: int, height: int, bitrate: int) -> tuple[list, list]:
    """One GOP of video (keyframe first) and the same time of Opus: (pts_us, key, data)."""
    encoder = VideoEncoder("h264", width, height, FPS, bitrate, keyframe_interval_s=LOOP_S)
    renderer = PatternRenderer(width, height, "bench", 1)
    video = []
    for n in range(round(LOOP_S * FPS)):
        frame = renderer.render_frame(n, 0)
        frame.pts = round(n * 90000 / FPS)
        for packet in encoder.encode(frame):
            video.append((round(n * 1e6 / FPS), packet.is_keyframe, bytes(packet)))
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "mono", "s16"
    opus.bit_rate, opus.time_base = 32000, Fraction(1, 48000)
    import numpy as np

    audio = []
    for i in range(round(LOOP_S / 0.02)):
        samples = (np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, Fraction(1, 48000)
        audio += [(i * 20000, True, bytes(p)) for p in opus.encode(frame)]
    return video, audio[: round(LOOP_S / 0.02)]


def write_room(capture: Path, classroom_id: int, minutes: float, loop: tuple[list, list],
               start_us: int = 0) -> None:
    video, audio = loop
    loops = round(minutes * 60 / LOOP_S)
    for kind, frames, codec, rate in (("video", video, "video/H264", 90000),
                                      ("audio", audio, "audio/opus", 48000)):
        meta = TrackMeta(1, classroom_id, kind, codec, rate, 0, ORIGIN, 1280, 720)
        writer = PacketLogWriter(capture / f"{classroom_id}-{kind}.000.tbl", meta)
        for k in range(loops):
            shift = start_us + round(k * LOOP_S * 1e6)
            for pts, key, data in frames:
                writer.append(pts + shift, key, data)
        writer.close()


def make_lesson(root: Path, rooms: int, minutes: float, loop: tuple[list, list]) -> Path:
    capture = root / "recordings" / "1" / "capture"
    capture.mkdir(parents=True)
    for i in range(rooms):
        write_room(capture, 100 + i, minutes, loop, start_us=i * 300_000)
    info = {"lesson_id": 1, "title": "bench", "clock_origin_unix": ORIGIN,
            "rooms": [{"classroom_id": 100 + i, "name": f"room {i}",
                       "role": "main" if i == 0 else "receiving", "position": i}
                      for i in range(rooms)],
            "state": "complete", "ended_at_unix": ORIGIN + minutes * 60, "end_reason": "ended"}
    (capture / "lesson.json").write_text(json.dumps(info))
    (capture / "events.jsonl").write_text(json.dumps(
        {"t_us": 0, "kind": "recording_started", "classroom_id": None, "detail": {}}) + "\n")
    return capture


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def drop_caches_hint() -> str:
    return "page cache warm (logs just written)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--bitrate", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--compare", action="store_true",
                        help="also run the old way first (one process, copy)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="tongbu-bench-finalise-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        loop = encoded_loop(1280, 720, args.bitrate)
        lesson_s = args.minutes * 60
        capture = make_lesson(root, args.rooms, args.minutes, loop)
        size = sum(p.stat().st_size for p in capture.glob("*.tbl"))
        print(f"synthetic lesson: {args.rooms} rooms x {args.minutes:.0f} min 720p30 H.264 "
              f"~{args.bitrate // 1000} kbit/s + Opus, {size / 1e6:.0f} MB of packet logs, "
              f"made in {time.perf_counter() - t:.1f} s ({drop_caches_hint()})")

        # 1. one room, both MP4 flavours
        room = find_room_logs(capture)[100]
        for faststart in (True, False):
            out = root / ("faststart" if faststart else "fragmented")
            t = time.perf_counter()
            result = remux_room(room, out, faststart=faststart)
            wall = time.perf_counter() - t
            mp4 = out / "room-100.mp4"
            flavour = "faststart" if faststart else "fragmented"
            print(f"remux one room ({flavour} MP4, H.264 + Opus): "
                  f"{wall:.2f} s for {lesson_s:.0f} s = {lesson_s / wall:.0f}x real time; "
                  f"{result.video_frames} frames, {result.audio_packets} audio packets, "
                  f"MP4 {mp4.stat().st_size / 1e6:.0f} MB")
            shutil.rmtree(out)

        # 2. end of lesson → per-room files in the library
        cases = [("parallel remux + hard link", None, True)]
        if args.compare:
            cases.insert(0, ("one process + copy (before)", 1, False))
        for name, processes, link in cases:
            final_dir = capture.parent / "final"
            shutil.rmtree(final_dir, ignore_errors=True)
            shutil.rmtree(root / "library", ignore_errors=True)
            final_dir.mkdir()
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            cpu0 = _cpu_s()
            manifest = _run_steps(capture, final_dir, _new_manifest(capture, json.loads(
                (capture / "lesson.json").read_text())), FAST_STEPS,
                remux_processes=processes)
            t1 = time.perf_counter()
            cpu = _cpu_s() - cpu0
            storage = LocalStorage(root / "library", link=link)

            async def register(manifest: dict = manifest, storage: LocalStorage = storage,
                               final_dir: Path = final_dir, hashed: bool = link) -> None:
                for entry in manifest["files"]:
                    path = final_dir / entry["path"]
                    digest = (entry.get("sha256") if hashed else None) or \
                        await asyncio.to_thread(file_sha256, path)
                    await storage.put_file(f"lessons/1/{entry['path']}", path, digest)

            asyncio.run(register())
            t2 = time.perf_counter()
            total = sum((final_dir / f["path"]).stat().st_size for f in manifest["files"])
            remux_s = [r["remux_s"] for r in manifest["rooms"]]
            print(f"lesson end → playable, {args.rooms} rooms x {args.minutes:.0f} min, "
                  f"{name}: per-room files {t1 - t0:.2f} s (each room's remux "
                  f"{min(remux_s):.2f}–{max(remux_s):.2f} s; CPU {cpu:.1f} s, this process "
                  f"and its workers), library registration "
                  f"({total / 1e6:.0f} MB) {t2 - t1:.2f} s, total {t2 - t0:.2f} s; "
                  f"load average {load:.1f} → {os.getloadavg()[0]:.1f}", flush=True)
        print(f"CPU count {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
