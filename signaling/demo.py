"""`tongbu demo`: one command from a fresh checkout to a live 1拖4 lesson in the browser.

Starts the real server (SQLite and a local folder), creates a demo city school, four rural
schools and their classrooms, pairs them, opens a lesson, and starts one main and four
receiving classroom agents publishing test patterns as separate processes, so everything
the newcomer sees goes through the same protocol and router as a real lesson.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import lessons, schools, users
from classroom.config import Settings
from classroom.models import Lesson, LessonState, Pairing, Recording, User, utcnow
from signaling.appkeys import DB, LIVE, TOKENS
from signaling.tokens import JoinRole

DEMO_PAIRING = "演示结对 Demo pairing"
CITY_SCHOOL = "城关第一中学"
RURAL_SCHOOLS = ("青山村小学", "河口镇中心小学", "石桥村小学", "云岭乡中学")
DEMO_ADMIN = "admin"
LESSON_LENGTH = timedelta(minutes=45)
TOKEN_TTL = timedelta(hours=3)
FINALISE_WAIT_S = 300  # the composite of a short demo takes seconds; a long one, minutes


def add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="start the server with a live demo lesson (1 main + 4 receiving rooms)",
        description="Start the server with SQLite in --data-dir, create demo schools and a "
        "pairing, open a lesson, start five classroom agents with test patterns and print "
        "the URL where a browser watches all rooms live. Ctrl-C ends the lesson.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, default=Path("tongbu-data"))
    parser.add_argument("--width", type=int, default=640, help="agents' video width")
    parser.add_argument("--height", type=int, default=360, help="agents' video height")
    parser.add_argument("--fps", type=int, default=15, help="agents' frame rate")
    parser.add_argument("--duration", type=float, help="end the lesson after this many seconds")
    parser.add_argument("--no-open", action="store_true",
                        help="accepted for scripts; the demo never opens a browser itself")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    settings = Settings.from_env(host=args.host, port=args.port, data_dir=args.data_dir)
    try:
        asyncio.run(_demo(settings, args))
    except KeyboardInterrupt:
        pass
    return 0


@dataclass(frozen=True)
class DemoRoom:
    classroom_id: int
    name: str
    role: JoinRole


@dataclass(frozen=True)
class DemoSetup:
    lesson_id: int
    rooms: tuple[DemoRoom, ...]
    admin_password: str | None


async def _demo(settings: Settings, args: argparse.Namespace) -> None:
    from signaling.app import create_app

    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    base_url = f"http://{settings.host}:{settings.port}"
    agents: list[subprocess.Popen[bytes]] = []
    try:
        async with app[DB]() as db:
            setup = await prepare_demo(db, settings.data_dir)
        tokens = app[TOKENS]
        log_dir = settings.data_dir / "demo-agents"
        log_dir.mkdir(parents=True, exist_ok=True)
        for room in setup.rooms:
            token, _ = tokens.mint(lesson_id=setup.lesson_id, classroom_id=room.classroom_id,
                                   role=room.role, ttl=TOKEN_TTL, subject="demo")
            agents.append(_start_agent(base_url, token, log_dir / f"room-{room.classroom_id}",
                                       args))
        watch, _ = tokens.mint(lesson_id=setup.lesson_id, classroom_id=None,
                               role=JoinRole.WATCH, ttl=TOKEN_TTL, subject="demo")
        _announce(base_url, setup, watch, log_dir)
        await _wait_for_stop(args.duration)
        await _end_lesson(app, setup)
        await _stop_agents(agents)
        await _show_replay(app, base_url, setup.lesson_id, wait_for_composite=True)
        if args.duration is None:
            print("  服务器继续运行以便回放; Ctrl-C 退出 / the server keeps running for the "
                  "replay; Ctrl-C quits.", flush=True)
            await _wait_for_stop(None)
    finally:
        await _end_lesson(app, locals().get("setup"))
        await _stop_agents(agents)
        await runner.cleanup()


async def prepare_demo(db: AsyncSession, data_dir: Path) -> DemoSetup:
    """Demo schools and pairing (made once, reused), a fresh open lesson, a demo admin."""
    pairing = await db.scalar(sa.select(Pairing).where(Pairing.name == DEMO_PAIRING))
    if pairing is None:
        city = await schools.create_school(db, name=CITY_SCHOOL, kind="city", region="示范区")
        main = await schools.create_classroom(db, school_id=city.id, name="初二(1)班 主讲教室")
        receiving = []
        for name in RURAL_SCHOOLS:
            school = await schools.create_school(db, name=name, kind="rural", region="示范区")
            room = await schools.create_classroom(db, school_id=school.id, name="听课教室")
            receiving.append(room.id)
        pairing = await schools.create_pairing(
            db, name=DEMO_PAIRING, main_classroom_id=main.id, receiving_classroom_ids=receiving
        )
    # A demo stopped by a power cut leaves its lesson open; the new one would clash with it.
    stale = await db.scalars(
        sa.select(Lesson.id).where(
            Lesson.pairing_id == pairing.id,
            Lesson.state.in_([LessonState.OPEN, LessonState.LIVE, LessonState.SCHEDULED]),
        )
    )
    for lesson_id in list(stale):
        current = await lessons.get_lesson(db, lesson_id)
        to = LessonState.CANCELLED if current.state == LessonState.SCHEDULED else LessonState.ENDED
        await lessons.transition(db, lesson_id, to, reason="superseded_by_demo")
    start = utcnow().replace(microsecond=0)
    lesson = await lessons.create_lesson(
        # 名校网络课堂: broadcast live over HLS and public in the library, so a newcomer
        # can watch and replay it without an account.
        db, pairing_id=pairing.id, kind="famous_school", subject="数学", grade="初二",
        teacher_name="王老师", title="一次函数的图像 (演示课)",
        planned_start=start, planned_end=start + LESSON_LENGTH,
    )
    await lessons.transition(db, lesson.id, LessonState.OPEN)
    roster = await lessons.load_roster(db, lesson.id)
    assert roster is not None
    rooms = tuple(DemoRoom(r.classroom_id, f"{r.school_name} {r.name}", JoinRole(r.role))
                  for r in roster.rooms)
    # Kept beside the database (0600) so a rerun can print it again.
    password_file = data_dir / "demo-admin-password"
    password = None
    if await db.scalar(sa.select(User.id).where(User.username == DEMO_ADMIN)) is None:
        password = secrets.token_urlsafe(9)
        await users.create_user(db, username=DEMO_ADMIN, password=password, role="admin",
                                display_name="演示管理员")
        password_file.touch(mode=0o600)
        password_file.write_text(password)
    elif password_file.exists():
        password = password_file.read_text().strip()
    return DemoSetup(lesson.id, rooms, password)


def _start_agent(base_url: str, token: str, log: Path,
                 args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "signaling", "agent", "--server", base_url,
               "--token", token, "--width", str(args.width), "--height", str(args.height),
               "--fps", str(args.fps), "--report", str(log.with_suffix(".jsonl")),
               "--report-interval", "5"]
    with log.with_suffix(".log").open("ab") as stderr:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)


def _announce(base_url: str, setup: DemoSetup, watch_token: str, log_dir: Path) -> None:
    url = f"{base_url}/watch/{setup.lesson_id}#token={watch_token}"
    lines = [
        "",
        "Tongbu 同步课堂 — 演示课已开始 / demo lesson is live",
        f"  服务器 server:      {base_url}",
        f"  课程 lesson:        #{setup.lesson_id} 初二数学 (1 主讲 + 4 听课教室)",
    ]
    for room in setup.rooms:
        lines.append(f"    - {room.role.value:9} {room.name} (classroom {room.classroom_id})")
    lines.append(f"  管理员 admin:       {DEMO_ADMIN} / {setup.admin_password or '(changed)'}")
    lines += [
        f"  agents' reports:    {log_dir}",
        "  在浏览器中打开以观看全部教室 / open in a browser to watch all rooms:",
        f"WATCH_URL={url}",
        "  HLS 直播 (名校网络课堂) / live broadcast for any number of viewers:",
        f"BROADCAST_URL={base_url}/live/{setup.lesson_id}/index.m3u8",
        "  Ctrl-C 结束演示课 / ends the lesson.",
        "",
    ]
    print("\n".join(lines), flush=True)


async def _wait_for_stop(duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration)


async def _stop_agents(agents: list[subprocess.Popen[bytes]]) -> None:
    """The agents leave by themselves when the lesson ends; SIGTERM the stragglers."""
    for agent in agents:
        if agent.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                agent.send_signal(signal.SIGTERM)
    for agent in agents:
        try:
            await asyncio.to_thread(agent.wait, 10)
        except subprocess.TimeoutExpired:
            agent.kill()
    agents.clear()


async def _show_replay(app: web.Application, base_url: str, lesson_id: int, *,
                       wait_for_composite: bool) -> None:
    """Wait for the recording to reach the library and say where to replay it."""
    from recorder.jobs import FINALISATION

    print("  正在生成录像 / finalising the recording…", flush=True)
    queue = app.get(FINALISATION)
    if queue is not None and wait_for_composite:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FINALISE_WAIT_S):
                await queue.wait(lesson_id)
    async with app[DB]() as db:
        recording_id = await db.scalar(
            sa.select(Recording.id).where(Recording.lesson_id == lesson_id))
    if recording_id is None:
        print("  录像尚未入库 / the recording is not in the library yet; see "
              f"{base_url}/library", flush=True)
        return
    print(f"  录像已入库 / in the library: {base_url}/library", flush=True)
    print(f"REPLAY_URL={base_url}/replay/{recording_id}", flush=True)


async def _end_lesson(app: web.Application, setup: DemoSetup | None) -> None:
    if setup is None:
        return
    async with app[DB]() as db:
        lesson = await lessons.get_lesson(db, setup.lesson_id)
    if lesson is None or lesson.state in (LessonState.ENDED, LessonState.CANCELLED):
        return
    with contextlib.suppress(Exception):
        async with app[DB]() as db:
            await lessons.transition(db, setup.lesson_id, LessonState.ENDED, reason="demo_stopped")
    with contextlib.suppress(Exception):
        await app[LIVE].end_lesson(setup.lesson_id, "demo_stopped")
