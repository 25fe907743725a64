"""Server CPU for one 720p30 H.264 publisher fanned out to N subscribers: ours vs MediaRelay.

Cases, each on a freshly started server process, N in --subscribers:
- `ours`: the real Tongbu server (bench/_server.py: signaling.app.create_app, i.e. what
  `tongbu serve` runs). A lesson is created over the REST API with min(N, 4) receiving
  rooms; the main room is a publisher subprocess (below); the N subscribers are the
  lesson's receiving rooms, then watchers (role `watch`, who receive the main room's
  audio and video like a receiving room), as light peers (bench/_peers.py: real
  ICE/DTLS/SRTP, RR + REMB each second, no decoding).
- `relay`: a plain aiortc server (bench/_relay.py) that receives the same publisher and
  fans out with aiortc's MediaRelay: decode once, encode per subscriber. Subscribers are
  the same light peers.

Publisher (--publisher): `replay` (default) replays a 720p30 x264 clip of the agent's test
pattern with luma noise at ~2 Mbit/s (bench/_publisher.py, no encoding at publish time),
the same bytes to both servers; `agent` runs `tongbu agent --source testpattern --width
1280 --height 720 --fps 30` (for the relay, the same `MediaPublisher`), whose clean
pattern compresses to ~150 kbit/s, so it under-loads the forward path tenfold.

Server CPU is utime+stime of the server process only (/proc/<pid>/stat) over a steady
window after a warm-up; delivered fps and kbit/s are what the subscribers received.

    .venv/bin/python bench/fanout.py                       # 1,2,4,8 subscribers, both
    .venv/bin/python bench/fanout.py --subscribers 4 --cases ours --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from bench._harness import NICE, PYTHON, TONGBU, Child, CpuWindow, loadavg, machine, start_child
from bench._peers import LightPeer, OfferingSubscriber, ProtocolPeer, encode_clip
from tests.live_harness import Api, create_lesson, join_token

BENCH = Path(__file__).resolve().parent


@dataclass
class Row:
    case: str
    subscribers: int
    server_cpu: float
    server_sys: float
    publisher_cpu: float
    fps_mean: float
    fps_min: float
    kbps_mean: float
    audio_pps: float
    note: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def measure(case: str, server: Child, publisher: Child, peers: list[LightPeer],
                  warmup: float, seconds: float, note: str = "") -> Row:
    await asyncio.sleep(warmup)
    before = [(p.totals("video"), p.totals("audio")) for p in peers]
    server_cpu, publisher_cpu = CpuWindow(server.pid), CpuWindow(publisher.pid)
    await asyncio.sleep(seconds)
    s_cpu, p_cpu = server_cpu.percent(), publisher_cpu.percent()
    fps, kbps, audio = [], [], []
    for peer, (video0, audio0) in zip(peers, before, strict=True):
        video1, audio1 = peer.totals("video"), peer.totals("audio")
        fps.append((video1.frames - video0.frames) / seconds)
        kbps.append((video1.bytes - video0.bytes) * 8 / seconds / 1000)
        audio.append((audio1.packets - audio0.packets) / seconds)
    n = len(peers)
    return Row(case, n, s_cpu, server_cpu.system, p_cpu, sum(fps) / n, min(fps), sum(kbps) / n,
               sum(audio) / n, f"load {loadavg()}" + (f"; {note}" if note else ""))


async def run_ours(n: int, args: argparse.Namespace, work: Path) -> Row:
    port = free_port()
    data = work / f"ours-{n}"
    data.mkdir()
    server = await start_child(
        [PYTHON, str(BENCH / "_server.py"), "--data-dir", str(data), "--port", str(port)],
        work / f"ours-{n}-server.log")
    base = f"http://127.0.0.1:{port}"
    agent: Child | None = None
    peers: list[ProtocolPeer] = []
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(base, str(server.info["token"]), http)
            lesson = await create_lesson(api, receiving=min(n, 4), tag=f"-{n}")
            main_token = await join_token(api, lesson.lesson_id, "main",
                                          lesson.main_classroom_id)
            if args.publisher == "agent":
                agent = await start_child(
                    [*NICE, TONGBU, "agent", "--server", base, "--token", main_token,
                     "--source", "testpattern", *video_args(args),
                     "--report", str(work / f"ours-{n}-agent.jsonl"),
                     "--report-interval", "5"],
                    work / f"ours-{n}-agent.log", wait_line=False)
            else:
                agent = await start_child(
                    [*NICE, PYTHON, str(BENCH / "_publisher.py"), "tongbu", "--server", base,
                     "--token", main_token, *video_args(args), *clip_args(args)],
                    work / f"ours-{n}-publisher.log")
            tokens = [await join_token(api, lesson.lesson_id, "receiving", room)
                      for room in lesson.receiving_classroom_ids[:n]]
            tokens += [await join_token(api, lesson.lesson_id, "watch")
                       for _ in range(n - len(tokens))]
            await asyncio.sleep(3)  # the main room joins and publishes first
            for token in tokens:
                peer = ProtocolPeer(base, token)
                await peer.start()
                peers.append(peer)
            row = await measure("ours", server, agent, list(peers), args.warmup, args.seconds)
            live = await api.call("GET", f"/lessons/{lesson.lesson_id}/live")
            video = next((t for t in live["tracks"] if t["kind"] == "video"), None)
            if video is not None:
                row.note += (f"; publisher video in: {video['bitrate_kbps']:.0f} kbit/s, "
                            f"{video['subscribers']} subscribers")
            return row
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.close()
        if agent is not None:
            agent.stop()
        server.stop()


async def run_relay(n: int, args: argparse.Namespace, work: Path) -> Row:
    port = free_port()
    server = await start_child([PYTHON, str(BENCH / "_relay.py"), "serve", "--port", str(port)],
                               work / f"relay-{n}-server.log")
    url = f"http://127.0.0.1:{port}"
    publisher: Child | None = None
    peers: list[OfferingSubscriber] = []
    try:
        if args.publisher == "agent":
            command = [*NICE, PYTHON, str(BENCH / "_relay.py"), "publish", "--url", url,
                       *video_args(args)]
        else:
            command = [*NICE, PYTHON, str(BENCH / "_publisher.py"), "relay", "--url", url,
                       *video_args(args), *clip_args(args)]
        publisher = await start_child(command, work / f"relay-{n}-publisher.log")
        async with aiohttp.ClientSession() as http:
            for _ in range(n):
                peer = OfferingSubscriber()
                peers.append(peer)
                await peer.start(f"{url}/subscribe", http)
            return await measure("relay", server, publisher, list(peers), args.warmup,
                                 args.seconds)
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.close()
        if publisher is not None:
            publisher.stop()
        server.stop()


def video_args(args: argparse.Namespace) -> list[str]:
    return ["--width", str(args.width), "--height", str(args.height), "--fps", str(args.fps)]


def clip_args(args: argparse.Namespace) -> list[str]:
    return ["--bitrate", str(args.bitrate), "--cache", str(args.cache)]


def print_row(row: Row) -> None:
    print(f"| {row.case} | {row.subscribers} | {row.server_cpu:.1f} ({row.server_sys:.1f}) "
          f"| {row.publisher_cpu:.1f} "
          f"| {row.fps_mean:.1f} / {row.fps_min:.1f} | {row.kbps_mean:.0f} "
          f"| {row.audio_pps:.0f} | {row.note} |", flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="1,2,4,8")
    parser.add_argument("--cases", default="ours,relay")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000, help="replay clip bitrate")
    parser.add_argument(
        "--publisher", choices=("replay", "agent"), default="replay",
        help="replay: a pre-encoded 2 Mbit/s clip (x264, busy test pattern) replayed by a "
        "light peer; agent: `tongbu agent --source testpattern` (~150 kbit/s: the pattern "
        "compresses too well to stand for a camera)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tongbu-bench-clips"))
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    counts = [int(c) for c in args.subscribers.split(",")]
    cases = args.cases.split(",")
    work = Path(tempfile.mkdtemp(prefix="tongbu-fanout-"))
    print(f"machine: {machine()}")
    if args.publisher == "replay":
        clip = encode_clip(args.width, args.height, args.fps, args.bitrate, 10.0, args.cache)
        source = f"replayed x264 clip, {clip.kbps:.0f} kbit/s, Opus silence"
    else:
        source = "tongbu agent test pattern (x264 ultrafast) + Opus tone"
    print(f"publisher: {args.width}x{args.height}@{args.fps} H.264, {source}; "
          f"warm-up {args.warmup:g} s, window {args.seconds:g} s; logs in {work}\n")
    print("| case | subscribers | server CPU, % of one core (of which system) | publisher CPU, % "
          "| delivered fps mean / min | video kbit/s per subscriber | audio pkt/s | note |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |", flush=True)
    rows: list[Row] = []
    for n in counts:
        for case in cases:
            runner = run_ours if case == "ours" else run_relay
            row = await runner(n, args, work)
            rows.append(row)
            print_row(row)
    print()
    for n in counts:
        ours = next((r for r in rows if r.case == "ours" and r.subscribers == n), None)
        relay = next((r for r in rows if r.case == "relay" and r.subscribers == n), None)
        if ours and relay and ours.server_cpu > 0 and relay.fps_mean > 0:
            # per delivered frame: the baseline saturates and delivers fewer frames
            per_frame = (relay.server_cpu / relay.fps_mean) / (ours.server_cpu / ours.fps_mean)
            print(f"{n} subscribers: MediaRelay costs {relay.server_cpu / ours.server_cpu:.1f}x "
                  f"our router's CPU ({relay.server_cpu:.1f}% vs {ours.server_cpu:.1f}%), "
                  f"{per_frame:.1f}x per frame delivered")
    at4 = [r for r in rows if r.subscribers == 4]
    ours4 = next((r for r in at4 if r.case == "ours"), None)
    relay4 = next((r for r in at4 if r.case == "relay"), None)
    if ours4 and relay4:
        ratio = relay4.server_cpu / ours4.server_cpu
        print(f"\ntarget (>= 15x cheaper at 4 subscribers): {ratio:.1f}x, "
              f"{'met' if ratio >= 15 else 'MISSED'}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
