"""Per-frame costs of two small hot paths that run on an event loop, once per frame.

- Reading the test pattern's code from a received 720p frame (`read_pattern_frame`): the
  agent does it for every decoded frame it reports on, and the tests for every frame they
  check, so it must stay far below a frame's time (33 ms at 30 fps).
- Appending a frame to a recorder packet log (`PacketLogWriter.append`: struct, CRC32, one
  `os.write`), which runs on the server's event loop for every recorded frame; and the
  fsync of what was appended, which runs in a worker thread.

    .venv/bin/python bench/hot_paths.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import machine
from classroom.agent.testpattern import PatternRenderer, read_pattern_frame
from recorder.capture.packetlog import PacketLogWriter, TrackMeta


def pattern_read_us(width: int, height: int, reads: int) -> float:
    frame = PatternRenderer(width, height, "Room", 1).render_frame(5, 5)
    started = time.perf_counter()
    for _ in range(reads):
        if read_pattern_frame(frame) is None:
            raise SystemExit("the pattern did not read back: the bench measures nothing")
    return (time.perf_counter() - started) / reads * 1e6


def append_and_sync(directory: Path, frames: int, frame_bytes: int) -> tuple[float, float]:
    """(µs per append, ms for the fsync of all of them)."""
    meta = TrackMeta(lesson_id=1, classroom_id=2, kind="video", codec="video/H264",
                     clock_rate=90000, part=0, started_at_unix=time.time())
    writer = PacketLogWriter(directory / "bench.tbl", meta)
    data = os.urandom(frame_bytes)
    try:
        started = time.perf_counter()
        for i in range(frames):
            writer.append(i * 33_333, i % 60 == 0, data)
        append_us = (time.perf_counter() - started) / frames * 1e6
        started = time.perf_counter()
        writer.flush(sync=True)
        sync_ms = (time.perf_counter() - started) * 1000
    finally:
        writer.close()
    return append_us, sync_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--frame-bytes", type=int, default=8000,
                        help="about one 720p30 frame at 2 Mbit/s")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the packet log goes (default: a temporary directory)")
    args = parser.parse_args()
    print(machine())
    for width, height in ((1280, 720), (320, 180)):
        print(f"read_pattern_frame {width}x{height}: "
              f"{pattern_read_us(width, height, args.reads):.0f} µs per frame")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        append_us, sync_ms = append_and_sync(Path(tmp), args.frames, args.frame_bytes)
    total_mb = args.frames * args.frame_bytes / 1e6
    print(f"packet log append of {args.frame_bytes} B: {append_us:.1f} µs per frame; "
          f"fsync of {total_mb:.0f} MB: {sync_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
