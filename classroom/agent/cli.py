"""`tongbu agent`: the headless classroom box joining one lesson with a join token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from classroom.agent.client import ClassroomAgent, Reporter


def add_agent_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="join a lesson as a classroom box (camera, file or test pattern)",
        description="Join a lesson with a join token, publish the room's camera and "
        "microphone (or a test pattern and tone), receive the other rooms, and report "
        "per-track statistics as JSON lines. Reconnects with backoff until the lesson ends.",
    )
    parser.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", required=True, help="join token for this classroom")
    parser.add_argument(
        "--source", default="testpattern", help="testpattern | camera:N | file:PATH"
    )
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    parser.add_argument("--report-interval", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--report", type=Path, help="write JSON lines here instead of stdout")
    parser.add_argument("--save", type=Path, metavar="DIR", help="save received video here")
    parser.set_defaults(handler=run_agent_command)


def run_agent_command(args: argparse.Namespace) -> int:
    from classroom.agent.publisher import publisher_factory
    from classroom.agent.sources import parse_source

    try:
        parse_source(args.source)  # fail before connecting, with the reason
    except ValueError as exc:
        print(f"tongbu agent: {exc}", file=sys.stderr)
        return 2
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    stream = args.report.open("a", encoding="utf-8") if args.report else sys.stdout
    agent: ClassroomAgent | None = None

    def room_name(classroom_id: int, role: str) -> str:
        joined = agent.state.joined if agent is not None else None
        return joined.you.name if joined is not None else f"{role} {classroom_id}"

    factory = publisher_factory(
        args.source,
        width=args.width,
        height=args.height,
        fps=args.fps,
        codec=args.codec,
        label_for=room_name,
    )
    agent = ClassroomAgent(
        args.server,
        args.token,
        publisher_factory=factory,
        reporter=Reporter(stream),
        report_interval=args.report_interval,
        save_dir=args.save,
    )
    try:
        return asyncio.run(_run_until_signalled(agent))
    finally:
        if stream is not sys.stdout:
            stream.close()


async def _run_until_signalled(agent: ClassroomAgent) -> int:
    """SIGTERM and Ctrl-C leave the lesson cleanly, so the server records who left when."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, agent.stop)
    return await agent.run()
