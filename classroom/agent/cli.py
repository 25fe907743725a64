"""`tongbu agent`: the headless classroom box, joining one lesson with a join token, or
(`--auto`) every lesson of its classroom's timetable with its device token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from classroom.agent.defaults import KEYFRAME_INTERVAL_S, POLL_S, REFRESH_S

if TYPE_CHECKING:
    from classroom.agent.auto import AutoAgent
    from classroom.agent.client import ClassroomAgent


def add_agent_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="join a lesson as a classroom box (camera, file or test pattern)",
        description="Join a lesson with a join token, publish the room's camera and "
        "microphone (or a test pattern and tone), receive the other rooms, and report "
        "per-track statistics as JSON lines. Reconnects with backoff until the lesson ends. "
        "With --auto and a device token: follow the timetable of the classroom the device "
        "account is bound to, joining each lesson when it opens and leaving when it ends, "
        "until stopped.",
    )
    parser.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", help="join token for this classroom (one lesson)")
    parser.add_argument(
        "--auto",
        action="store_true",
        help="follow the timetable: join every lesson of the classroom on time",
    )
    parser.add_argument(
        "--device-token",
        default=os.environ.get("TONGBU_DEVICE_TOKEN"),
        help="with --auto: the API token of the classroom's device account "
        "(default $TONGBU_DEVICE_TOKEN, which keeps it out of the process list)",
    )
    parser.add_argument(
        "--classroom",
        type=int,
        metavar="ID",
        help="with --auto, optional: the classroom this box is; checked against the one "
        "its device account is bound to (a mismatch stops the box, status 2)",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=REFRESH_S,
        metavar="SECONDS",
        help="with --auto: how often the timetable is read again",
    )
    parser.add_argument(
        "--source", default="testpattern", help="testpattern | camera:N | file:PATH"
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    parser.add_argument(
        "--keyframe-interval",
        type=float,
        default=KEYFRAME_INTERVAL_S,
        metavar="SECONDS",
        help="periodic keyframes this often (rooms that join or lose packets also ask for "
        "one at once); longer saves bitrate on a poor uplink",
    )
    parser.add_argument("--report-interval", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--report", type=Path, help="write JSON lines here instead of stdout")
    parser.add_argument("--save", type=Path, metavar="DIR", help="save received video here")
    parser.set_defaults(handler=run_agent_command)


def run_agent_command(args: argparse.Namespace) -> int:
    # the media stack (aiortc, PyAV, OpenCV) loads here, not for every `tongbu` command
    from classroom.agent.auto import AutoAgent
    from classroom.agent.client import ClassroomAgent, Reporter
    from classroom.agent.publisher import publisher_factory
    from classroom.agent.sources import parse_source

    if args.auto and (args.token or not args.device_token):
        print(
            "tongbu agent: --auto takes --device-token (or $TONGBU_DEVICE_TOKEN), not --token",
            file=sys.stderr,
        )
        return 2
    if not args.auto and not args.token:
        print("tongbu agent: give --token (one lesson) or --auto --device-token", file=sys.stderr)
        return 2
    if not args.keyframe_interval > 0:
        print("tongbu agent: --keyframe-interval must be a positive number of seconds",
              file=sys.stderr)
        return 2
    try:
        parse_source(args.source)  # fail before connecting, with the reason
    except ValueError as exc:
        print(f"tongbu agent: {exc}", file=sys.stderr)
        return 2
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    stream = args.report.open("a", encoding="utf-8") if args.report else sys.stdout
    agent: ClassroomAgent | None = None
    auto: AutoAgent | None = None

    def room_name(classroom_id: int, role: str) -> str:
        current = auto.agent if auto is not None else agent
        joined = current.state.joined if current is not None else None
        return joined.you.name if joined is not None else f"{role} {classroom_id}"

    factory = publisher_factory(
        args.source,
        width=args.width,
        height=args.height,
        fps=args.fps,
        codec=args.codec,
        label_for=room_name,
        keyframe_interval_s=args.keyframe_interval,
    )
    reporter = Reporter(stream)

    def make_agent(token: str) -> ClassroomAgent:
        return ClassroomAgent(
            args.server,
            token,
            publisher_factory=factory,
            reporter=reporter,
            report_interval=args.report_interval,
            save_dir=args.save,
        )

    try:
        if args.auto:
            auto = AutoAgent(
                args.server,
                args.device_token,
                make_agent=make_agent,
                classroom_id=args.classroom,
                reporter=reporter,
                refresh_s=args.refresh,
                poll_s=min(POLL_S, args.refresh),
            )
            return asyncio.run(_run_until_signalled(auto))
        agent = make_agent(args.token)
        return asyncio.run(_run_until_signalled(agent))
    finally:
        if stream is not sys.stdout:
            stream.close()


async def _run_until_signalled(agent: ClassroomAgent | AutoAgent) -> int:
    """SIGTERM and Ctrl-C leave the lesson cleanly, so the server records who left when."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, agent.stop)
    return await agent.run()
