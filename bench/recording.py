"""Recording cost: server CPU of K full 1拖4 lessons, recorded against not recorded.

The same machinery as bench/lessons.py (a real server process, each lesson's five rooms as
light peers in a niced worker process: main room 720p30 ~2 Mbit/s, four rooms 360p15
~0.5 Mbit/s, Opus silence, room 1 on stage, 18 legs), run in pairs: once with the server
recording every lesson (the default, `Settings.record_lessons`), once with recording off
(`record_lessons=False`: create_app sets up neither the recorder nor finalisation). The
order alternates from pair to pair, so a slow drift of the shared box's load falls on
both sides. Server CPU = utime + stime of the server process (/proc/<pid>/stat, all its
threads: the capture's fsyncs run in a worker thread and are counted).

    .venv/bin/python bench/recording.py --lessons 1 --pairs 3
    .venv/bin/python bench/recording.py --lessons 1,2 --pairs 3 --profile

--profile adds one recorded run with a cProfile of the server's event loop (CPU time),
printing the recorder's own functions and the top of the whole loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench._harness import NICE, PYTHON, Child, CpuWindow, loadavg, machine, start_child
from bench._peers import encode_clip
from bench.lessons import MAIN_VIDEO, ROOM_VIDEO, free_port, snap
from tests.live_harness import Api, create_lesson, join_token

BENCH = Path(__file__).resolve().parent
TARGET = 1.20  # recorded / unrecorded server CPU, at most


# ------------------------------------------------------------------ the server, either way


def serve(record: bool, argv: list[str]) -> None:
    """bench/_server.py with `Settings.record_lessons` set (production code untouched)."""
    import bench._server as server
    from classroom.config import Settings

    server.Settings = partial(Settings, record_lessons=record)  # type: ignore[misc]
    sys.argv = [str(BENCH / "_server.py"), *argv]
    server.main()


# ------------------------------------------------------------------ one run


@dataclass
class Run:
    lessons: int
    recorded: bool
    cpu: float
    system: float
    leg_fps: float  # video fps a receiving room gets, mean (45 = main 30 + stage 15)
    captured_mb: float
    load: str
    errors: int


async def run(k: int, recorded: bool, args: argparse.Namespace, work: Path, index: int,
              profile: bool = False) -> Run:
    port = free_port()
    data = work / f"run{index}-k{k}-{'rec' if recorded else 'off'}"
    data.mkdir()
    server = await start_child(
        [PYTHON, str(BENCH / "recording.py"), "--serve", "record" if recorded else "off",
         "--data-dir", str(data), "--port", str(port), *(["--instrument"] if profile else [])],
        data.with_suffix(".server.log"))
    base = f"http://127.0.0.1:{port}"
    workers: list[Child] = []
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(base, str(server.info["token"]), http)
            for i in range(k):
                lesson = await create_lesson(api, receiving=4, tag=f"-R{index}L{i}")
                tokens = {
                    "main": await join_token(api, lesson.lesson_id, "main",
                                             lesson.main_classroom_id),
                    "receiving": [await join_token(api, lesson.lesson_id, "receiving", room)
                                  for room in lesson.receiving_classroom_ids],
                }
                workers.append(await start_child(
                    [*NICE, PYTHON, str(BENCH / "lessons.py"), "--worker", "--server", base,
                     "--tokens", json.dumps(tokens), "--cache", str(args.cache)],
                    data.with_suffix(f".worker{i}.log"), stdin=True))
            await asyncio.sleep(args.warmup)
            before = await snap(workers)
            cpu = CpuWindow(server.pid)
            if profile:
                async with http.get(f"{base}/bench/profile?action=start"):
                    pass
            await asyncio.sleep(args.seconds)
            if profile:
                async with http.get(f"{base}/bench/profile?action=stop&top=400") as response:
                    text = await response.text()
                print_profile(text, k)
            percent = cpu.percent()
            load = loadavg()
            after = await snap(workers)
    finally:
        for w in workers:
            with contextlib.suppress(Exception):
                assert w.process.stdin is not None
                w.process.stdin.write(b"stop\n")
                w.process.stdin.flush()
        for w in workers:
            w.stop()
        server.stop()
    fps, errors = [], 0
    for b_lesson, a_lesson in zip(before, after, strict=True):
        for b, a in zip(b_lesson, a_lesson, strict=True):
            errors += len(a["errors"])
            if a["role"] == "receiving":
                fps.append((a["frames"] - b["frames"]) / args.seconds)
    captured = sum(p.stat().st_size for p in data.glob("recordings/*/capture/*.tbl"))
    return Run(k, recorded, percent, cpu.system, statistics.mean(fps), captured / 1e6, load,
               errors)


def print_profile(text: str, k: int) -> None:
    """The recorder's own lines, then the top of the loop, from pstats' output."""
    lines = text.splitlines()
    head = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    mine = [line for line in lines[head + 1:]
            if "recorder/" in line or "packetlog" in line or "depayload" in line
            or "zlib" in line or "posix.write" in line]
    print(f"\ncProfile of the server's event loop (CPU time), K={k}, recorded, "
          "recorder lines:\n")
    print("\n".join([lines[head], *mine[:30]]))
    print("\ntop of the loop by own time:\n")
    print("\n".join(lines[: head + 26]), flush=True)


# ------------------------------------------------------------------ driver


async def main(args: argparse.Namespace) -> int:
    counts = [int(c) for c in args.lessons.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tongbu-recording-"))
    main_clip = encode_clip(*MAIN_VIDEO, 10.0, args.cache)
    room_clip = encode_clip(*ROOM_VIDEO, 10.0, args.cache)
    print(f"machine: {machine()}")
    print(f"main room {main_clip.kbps:.0f} kbit/s 720p30, receiving rooms "
          f"{room_clip.kbps:.0f} kbit/s 360p15, Opus silence; room 1 on stage; warm-up "
          f"{args.warmup:g} s, window {args.seconds:g} s; {args.pairs} pairs per K, order "
          f"alternating; logs in {work}\n")
    print("| lessons | pair | recorded | server CPU, % of one core (system) | room gets, fps "
          "| captured MB | errors | box load |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
    runs: list[Run] = []
    index = 0
    for k in counts:
        for pair in range(args.pairs):
            order = (True, False) if pair % 2 == 0 else (False, True)
            for recorded in order:
                index += 1
                r = await run(k, recorded, args, work, index)
                runs.append(r)
                print(f"| {k} | {pair + 1} | {'yes' if recorded else 'no'} "
                      f"| {r.cpu:.1f} ({r.system:.1f}) | {r.leg_fps:.1f} "
                      f"| {r.captured_mb:.0f} | {r.errors} | {r.load} |", flush=True)
    print("\n| lessons | unrecorded, % (median of pairs) | recorded, % | recording adds, "
          "points | ratio recorded / unrecorded (median of pair ratios) | per-pair ratios "
          "| target ≤ 1.20 |")
    print("| ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for k in counts:
        rec = [r for r in runs if r.lessons == k and r.recorded]
        off = [r for r in runs if r.lessons == k and not r.recorded]
        ratios = [a.cpu / b.cpu for a, b in zip(rec, off, strict=True)]
        ratio = statistics.median(ratios)
        on_cpu, off_cpu = statistics.median(r.cpu for r in rec), statistics.median(
            r.cpu for r in off)
        print(f"| {k} | {off_cpu:.1f} | {on_cpu:.1f} | {on_cpu - off_cpu:+.1f} "
              f"| **{ratio:.2f}** | {', '.join(f'{x:.2f}' for x in ratios)} "
              f"| {'meets' if ratio <= TARGET else 'MISSES'} |", flush=True)
    if args.profile:
        index += 1
        await run(counts[-1], True, args, work, index, profile=True)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", default="1")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tongbu-bench-clips"))
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2] == "record", sys.argv[3:])
        sys.exit(0)
    sys.exit(asyncio.run(main(parse())))
