"""K concurrent full 1拖4 lessons on one server process: CPU per lesson, forwarding latency.

For each K in --lessons, a fresh server (bench/_server.py --instrument: the real app, with
the forward path timed in its own process, see there) gets K lessons created over the REST
API, each with a main room and four receiving rooms. Each lesson's five rooms run in one
worker process (this file, --worker) as light peers (bench/_peers.py): real ICE, DTLS,
SRTP and RTCP, no encoding and no decoding:
- the main room replays a 1280x720@30 H.264 clip at ~2 Mbit/s and Opus silence;
- each receiving room replays a 640x360@15 H.264 clip at ~500 kbit/s and Opus silence;
- the main room puts receiving room 1 on stage (--no-stage to skip), so the server
  forwards main -> 4 rooms, and room 1 -> main + 3 rooms, and rooms 2-4 -> main: 18 legs.

Figures over a steady window after a warm-up: server CPU (utime+stime of the server
process, /proc/<pid>/stat) in total and per lesson; forwarding latency inside the server,
from `Publication.on_rtp` entry to each `SubscriberLeg.write_rtp` having handed the
SRTP-protected packet to the socket ("leg"), and for the whole packet to all its sinks
("packet"); and event-loop lag (how late a 5 ms timer fires: the wait a datagram would
have before the loop reads it). Rooms report delivered fps and kbit/s. --profile adds a
cProfile of the server's event loop at the largest K.

    .venv/bin/python bench/lessons.py --lessons 1,2,4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench._harness import NICE, PYTHON, Child, CpuWindow, loadavg, machine, start_child
from bench._peers import ProtocolPeer, encode_clip
from signaling import protocol
from tests.live_harness import Api, create_lesson, join_token

BENCH = Path(__file__).resolve().parent
MAIN_VIDEO = (1280, 720, 30, 2_000_000)
ROOM_VIDEO = (640, 360, 15, 500_000)


# ------------------------------------------------------------------ worker (one lesson)


async def worker(args: argparse.Namespace) -> None:
    main_clip = encode_clip(*MAIN_VIDEO, 10.0, args.cache)
    room_clip = encode_clip(*ROOM_VIDEO, 10.0, args.cache)
    tokens = json.loads(args.tokens)
    main = ProtocolPeer(args.server, tokens["main"], main_clip)
    rooms = [ProtocolPeer(args.server, t, room_clip) for t in tokens["receiving"]]
    peers = [main, *rooms]
    for peer in peers:
        await peer.start()
    if args.stage and rooms:
        await asyncio.sleep(2)
        stage = rooms[0].joined.you.classroom_id  # type: ignore[union-attr]
        await main.send(protocol.Stage(classroom_id=stage))
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"snap":
            snap = []
            for role, peer in [("main", main), *(("receiving", r) for r in rooms)]:
                video, audio = peer.totals("video"), peer.totals("audio")
                snap.append({"role": role, "frames": video.frames, "bytes": video.bytes,
                             "audio": audio.packets,
                             "errors": [f"{e.code}: {e.message}" for e in peer.errors]})
            print(json.dumps(snap), flush=True)
        elif line.strip() == b"stop":
            break
    for peer in peers:
        with contextlib.suppress(Exception):
            await peer.close()


# ------------------------------------------------------------------ driver


@dataclass
class Row:
    lessons: int
    server_cpu: float
    server_sys: float
    leg: dict[str, float]
    packet: dict[str, float]
    lag: dict[str, float]
    main_in_fps: float  # what the main room receives from each receiving room, mean
    room_in_fps: float  # a receiving room's video in: main (30) + stage room (15), mean
    room_in_kbps: float
    errors: list[str]
    load: str
    rooms_cpu: float
    costs: dict[str, dict[str, float]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def snap(workers: list[Child]) -> list[list[dict[str, int]]]:
    loop = asyncio.get_running_loop()
    result = []
    for w in workers:
        assert w.process.stdin is not None and w.process.stdout is not None
        w.process.stdin.write(b"snap\n")
        w.process.stdin.flush()
        line = await loop.run_in_executor(None, w.process.stdout.readline)
        result.append(json.loads(line))
    return result


async def run(k: int, args: argparse.Namespace, work: Path, profile: bool) -> Row:
    port = free_port()
    data = work / f"k{k}"
    data.mkdir()
    server = await start_child(
        [PYTHON, str(BENCH / "_server.py"), "--data-dir", str(data), "--port", str(port),
         "--instrument"], work / f"k{k}-server.log")
    base = f"http://127.0.0.1:{port}"
    workers: list[Child] = []
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(base, str(server.info["token"]), http)
            for i in range(k):
                lesson = await create_lesson(api, receiving=4, tag=f"-L{i}")
                tokens = {
                    "main": await join_token(api, lesson.lesson_id, "main",
                                             lesson.main_classroom_id),
                    "receiving": [await join_token(api, lesson.lesson_id, "receiving", room)
                                  for room in lesson.receiving_classroom_ids],
                }
                worker_child = await start_child(
                    [*NICE, PYTHON, str(BENCH / "lessons.py"), "--worker", "--server", base,
                     "--tokens", json.dumps(tokens), "--cache", str(args.cache),
                     *([] if args.stage else ["--no-stage"])],
                    work / f"k{k}-worker{i}.log", stdin=True)
                workers.append(worker_child)
            await asyncio.sleep(args.warmup)
            before = await snap(workers)
            async with http.get(f"{base}/bench/stats") as response:
                await response.json()  # reset the samples
            cpu = CpuWindow(server.pid)
            generators = [CpuWindow(w.pid) for w in workers]
            await asyncio.sleep(args.seconds)
            server_cpu = cpu.percent()
            rooms_cpu = sum(g.percent() for g in generators)
            load = loadavg()
            async with http.get(f"{base}/bench/stats") as response:
                stats = await response.json()
            after = await snap(workers)
            if profile:
                async with http.get(f"{base}/bench/profile?action=start"):
                    pass
                await asyncio.sleep(args.seconds / 2)
                async with http.get(f"{base}/bench/profile?action=stop&top=35") as response:
                    print(f"\ncProfile of the server event loop, K={k}, "
                          f"{args.seconds / 2:g} s, by own time:\n")
                    print(await response.text(), flush=True)
    finally:
        for w in workers:
            with contextlib.suppress(Exception):
                assert w.process.stdin is not None
                w.process.stdin.write(b"stop\n")
                w.process.stdin.flush()
        for w in workers:
            w.stop()
        server.stop()
    main_fps, room_fps, room_kbps, errors = [], [], [], []
    for b_lesson, a_lesson in zip(before, after, strict=True):
        for b, a in zip(b_lesson, a_lesson, strict=True):
            fps = (a["frames"] - b["frames"]) / args.seconds
            kbps = (a["bytes"] - b["bytes"]) * 8 / args.seconds / 1000
            errors += a["errors"]
            if a["role"] == "main":
                main_fps.append(fps / 4)  # four receiving rooms' video
            else:
                room_fps.append(fps)
                room_kbps.append(kbps)
    return Row(k, server_cpu, cpu.system, stats["leg"], stats["packet"], stats["lag"],
               sum(main_fps) / len(main_fps), sum(room_fps) / len(room_fps),
               sum(room_kbps) / len(room_kbps), errors, load, rooms_cpu,
               stats["costs"])


def fmt(summary: dict[str, float]) -> str:
    if not summary.get("n"):
        return "-"
    return f"{summary['p50_ms']:.2f} / {summary['p99_ms']:.2f}"


async def main(args: argparse.Namespace) -> int:
    counts = [int(c) for c in args.lessons.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tongbu-lessons-"))
    main_clip = encode_clip(*MAIN_VIDEO, 10.0, args.cache)
    room_clip = encode_clip(*ROOM_VIDEO, 10.0, args.cache)
    print(f"machine: {machine()}")
    print(f"main room: {MAIN_VIDEO[0]}x{MAIN_VIDEO[1]}@{MAIN_VIDEO[2]} clip "
          f"{main_clip.kbps:.0f} kbit/s; receiving rooms: {ROOM_VIDEO[0]}x{ROOM_VIDEO[1]}@"
          f"{ROOM_VIDEO[2]} clip {room_clip.kbps:.0f} kbit/s; Opus silence 50 pkt/s each; "
          f"stage: {'room 1' if args.stage else 'none'}; warm-up {args.warmup:g} s, "
          f"window {args.seconds:g} s; logs in {work}\n")
    print("| lessons | server CPU, % of one core (of which system) | per lesson "
          "| leg latency p50 / p99 ms "
          "| packet (all sinks) p50 / p99 ms | loop lag p50 / p99 ms | legs timed "
          "| main gets, fps per room | room gets, fps | room gets, kbit/s | errors "
          "| light rooms' CPU, % | box load |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| ---: |",
          flush=True)
    rows = []
    for k in counts:
        row = await run(k, args, work, args.profile and k == counts[-1])
        rows.append(row)
        print(f"| {k} | {row.server_cpu:.1f} ({row.server_sys:.1f}) "
              f"| {row.server_cpu / k:.1f} | {fmt(row.leg)} "
              f"| {fmt(row.packet)} | {fmt(row.lag)} | {row.leg.get('n', 0)} "
              f"| {row.main_in_fps:.1f} | {row.room_in_fps:.1f} | {row.room_in_kbps:.0f} "
              f"| {len(row.errors)} | {row.rooms_cpu:.0f} | {row.load} |", flush=True)
    print("\nserver CPU per forwarded packet (all costs: receive, forward, RTCP, signaling), "
          "and time inside single calls of the forward path, over the window:\n")
    print("| lessons | server CPU µs per leg packet | call | µs per call | calls/s "
          "| % of one core |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    for row in rows:
        legs = row.leg.get("n", 0)
        per_leg = row.server_cpu / 100 * args.seconds / legs * 1e6 if legs else 0.0
        for name, cost in row.costs.items():
            print(f"| {row.lessons} | {per_leg:.0f} | {name} | {cost['us_per_call']:.1f} "
                  f"| {cost['calls'] / args.seconds:.0f} "
                  f"| {100 * cost['seconds'] / args.seconds:.1f} |")
    print()
    for row in rows:
        for error in sorted(set(row.errors)):
            print(f"K={row.lessons}: a room was told `{error}`")
    for row in rows:
        ok = row.leg.get("n") and row.leg["p99_ms"] < 5
        print(f"K={row.lessons}: leg p99 {row.leg.get('p99_ms', '-')} ms, max "
              f"{row.leg.get('max_ms', '-')} ms: {'meets' if ok else 'MISSES'} the 5 ms target")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lessons", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--no-stage", dest="stage", action="store_false")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tongbu-bench-clips"))
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    if arguments.worker:
        asyncio.run(worker(arguments))
        sys.exit(0)
    sys.exit(asyncio.run(main(arguments)))
