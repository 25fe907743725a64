"""How soon a room that joins a running lesson sees the teacher: the one-second target.

A real server (in this process) runs a lesson; the teacher's box is a real `tongbu agent`
(1280x720@30 H.264 by default, periodic keyframes every 4 s as shipped) and one receiving
room watches it from the start. Then a second receiving room joins and leaves --rounds
times, each at a random moment of the teacher's keyframe cycle. For each join it prints the
time from the agent being told `joined` to its first decoded frame of the teacher
(`first_frame_unix` in the agent's report), and whether the router asked the teacher's box
for a keyframe on its behalf.

Without keyframe requests a late room would wait for the next periodic keyframe: on average
half the interval (2 s), up to the whole of it. --busy K adds K CPU-bound processes at normal
priority, as a shared or overloaded box would have (CI runs two test workers on two cores).

    .venv/bin/python bench/late_join.py --rounds 10
    .venv/bin/python bench/late_join.py --rounds 10 --busy 2
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import PYTHON, loadavg, machine
from tests.live_harness import (
    AgentProcess,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.test_live_lesson import keyframe_requests_of, receiving_from

BUSY_LOOP = "while True: pass"


async def time_to_first_frame(late: AgentProcess, teacher: int) -> float:
    """Seconds from the late room being told `joined` to its first decoded teacher frame."""
    joined = await wait_for(lambda: late.of("joined"), 30, "the late room to join")
    track = await wait_for(lambda: receiving_from(late, teacher, "video", 0), 30,
                           "the late room's first frame")
    return track["first_frame_unix"] - joined[0]["t"]


async def run(args: argparse.Namespace, work: Path) -> list[tuple[float, bool]]:
    results: list[tuple[float, bool]] = []
    async with running_server(work / "data") as server:
        lesson = await create_lesson(server.api, receiving=2)
        lid, teacher = lesson.lesson_id, lesson.main_classroom_id
        first, late_room = lesson.receiving_classroom_ids
        main = start_agent("main", server.base_url, await join_token(server.api, lid, "main",
                                                                      teacher), work,
                           extra=("--width", str(args.width), "--height", str(args.height),
                                  "--fps", str(args.fps)))
        watcher = start_agent("first", server.base_url,
                              await join_token(server.api, lid, "receiving", first), work)
        try:
            await wait_for(lambda: receiving_from(watcher, teacher, "video", 0), 30,
                           "the first room's video")
            track_id = f"{teacher}-video"
            for n in range(args.rounds):
                await asyncio.sleep(random.uniform(1.0, 5.0))  # a random point of the cycle
                before = keyframe_requests_of(server.live(lid), track_id)
                late = start_agent(f"late{n}", server.base_url,
                                   await join_token(server.api, lid, "receiving", late_room),
                                   work)
                try:
                    delay = await time_to_first_frame(late, teacher)
                finally:
                    await late.stop()
                asked = keyframe_requests_of(server.live(lid), track_id) > before
                results.append((delay, asked))
                print(f"  join {n + 1:2d}: first frame {delay * 1000:6.0f} ms after joined"
                      f"{'' if asked else '  (no keyframe request seen)'}", flush=True)
        finally:
            await stop_all([main, watcher])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--busy", type=int, default=0, metavar="K",
                        help="CPU-bound processes running alongside")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    if args.rounds < 1 or args.busy < 0:
        parser.error("--rounds must be at least 1 and --busy not negative")
    print(machine())
    print(f"teacher {args.width}x{args.height}@{args.fps} H.264, keyframes every 4 s; "
          f"{args.busy} busy process(es) alongside")
    busy = [subprocess.Popen([PYTHON, "-c", BUSY_LOOP]) for _ in range(args.busy)]
    try:
        with tempfile.TemporaryDirectory(prefix="late-join-") as tmp:
            results = asyncio.run(run(args, Path(tmp)))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    delays = sorted(d for d, _ in results)
    # (bench/statistics.py shadows the standard module of that name here)
    median = delays[(len(delays) - 1) // 2]
    p90 = delays[round(0.9 * (len(delays) - 1))]
    print(f"first frame after joining: median {median * 1000:.0f} ms, "
          f"p90 {p90 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms over {len(delays)} joins; "
          f"keyframe asked for {sum(a for _, a in results)}/{len(results)}; "
          f"load average {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
