"""`tongbu demo`: one command from a fresh checkout to a live 1拖4 lesson in the browser.

Starts the real server (SQLite and a local folder), creates a demo city school, four rural
schools and their classrooms, pairs them, opens a lesson, and starts one main and four
receiving classroom agents publishing test patterns as separate processes, so everything
the newcomer sees goes through the same protocol and router as a real lesson.

Beside it, a second lesson scheduled now with no agents (the city school's other main
classroom and two more rural schools), and accounts to run it from the pages alone: its
teacher, a reviewer, and a school admin and a classroom device of one receiving school.
The newcomer signs in at the server's home page as any of them.
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
from classroom.models import (
    Classroom,
    Lesson,
    LessonState,
    Pairing,
    Recording,
    School,
    User,
    utcnow,
)
from signaling.appkeys import DB, LIVE, TOKENS
from signaling.live.tokens import JoinRole

DEMO_PAIRING = "演示结对 Demo pairing"
CITY_SCHOOL = "城关第一中学"
RURAL_SCHOOLS = ("青山村小学", "河口镇中心小学", "石桥村小学", "云岭乡中学")
DEMO_ADMIN = "admin"
# The lesson the newcomer teaches from the browser: no agents, two receiving rooms.
PAGES_PAIRING = "演示结对二 Browser demo pairing"
PAGES_MAIN_CLASSROOM = "初二(2)班 主讲教室"
PAGES_RURAL_SCHOOLS = ("松林村小学", "溪头镇中学")
DEMO_TEACHER = "teacher"
DEMO_REVIEWER = "reviewer"
DEMO_SCHOOL_ADMIN = "songlin-admin"
DEMO_DEVICE = "songlin-room"
LESSON_LENGTH = timedelta(minutes=45)
TOKEN_TTL = timedelta(hours=3)
JOIN_WAIT_S = 120  # --duration: how long the lesson waits for its rooms before counting
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
    parser.add_argument(
        "--duration",
        type=float,
        help="end the lesson after this many seconds, counted once every room has joined",
    )
    parser.add_argument(
        "--no-open",
        action="store_true",
        help="accepted for scripts; the demo never opens a browser itself",
    )
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
class DemoAccount:
    """A demo user and its password (None: changed since the demo made it)."""

    label: str
    username: str
    password: str | None
    note: str = ""


@dataclass(frozen=True)
class DemoSetup:
    lesson_id: int
    rooms: tuple[DemoRoom, ...]
    admin_password: str | None
    pages_lesson_id: int
    pages_rooms: tuple[DemoRoom, ...]
    accounts: tuple[DemoAccount, ...]


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
            token, _ = tokens.mint(
                lesson_id=setup.lesson_id,
                classroom_id=room.classroom_id,
                role=room.role,
                ttl=TOKEN_TTL,
                subject="demo",
            )
            agents.append(
                _start_agent(base_url, token, log_dir / f"room-{room.classroom_id}", args)
            )
        watch, _ = tokens.mint(
            lesson_id=setup.lesson_id,
            classroom_id=None,
            role=JoinRole.WATCH,
            ttl=TOKEN_TTL,
            subject="demo",
        )
        _announce(base_url, setup, watch, log_dir)
        await _wait_for_stop(args.duration, app, setup)
        await _end_lesson(app, setup)
        await _close_lesson(app, setup.pages_lesson_id)
        await _stop_agents(agents)
        await _show_replay(app, base_url, setup.lesson_id, wait_for_composite=True)
        if args.duration is None:
            print(
                "  服务器继续运行以便回放; Ctrl-C 退出 / the server keeps running for the "
                "replay; Ctrl-C quits.",
                flush=True,
            )
            await _wait_for_stop(None)
    finally:
        done = locals().get("setup")
        await _end_lesson(app, done)
        if done is not None:
            await _close_lesson(app, done.pages_lesson_id)
        await _stop_agents(agents)
        await runner.cleanup()


async def _school(db: AsyncSession, name: str, kind: str) -> School:
    found = await db.scalar(sa.select(School).where(School.name == name))
    return found or await schools.create_school(db, name=name, kind=kind, region="示范区")


async def _classroom(db: AsyncSession, school: School, name: str) -> Classroom:
    found = await db.scalar(
        sa.select(Classroom).where(Classroom.school_id == school.id, Classroom.name == name)
    )
    return found or await schools.create_classroom(db, school_id=school.id, name=name)


async def _pairing(db: AsyncSession, name: str, main_room: str, rural: tuple[str, ...]) -> Pairing:
    """The named demo pairing of the city school's `main_room` and one room per rural
    school, made once and reused (schools and rooms are shared between pairings)."""
    pairing = await db.scalar(sa.select(Pairing).where(Pairing.name == name))
    if pairing is not None:
        return pairing
    city = await _school(db, CITY_SCHOOL, "city")
    main = await _classroom(db, city, main_room)
    receiving = [
        (await _classroom(db, await _school(db, n, "rural"), "听课教室")).id for n in rural
    ]
    return await schools.create_pairing(
        db, name=name, main_classroom_id=main.id, receiving_classroom_ids=receiving
    )


async def _supersede(db: AsyncSession, pairing: Pairing) -> None:
    """A demo stopped by a power cut leaves its lesson open; a new one would clash with it."""
    stale = await db.scalars(
        sa.select(Lesson.id).where(
            Lesson.pairing_id == pairing.id,
            Lesson.state.in_([LessonState.OPEN, LessonState.LIVE, LessonState.SCHEDULED]),
        )
    )
    for lesson_id in list(stale):
        current = await lessons.get_lesson(db, lesson_id)
        assert current is not None  # listed just now, in this session
        to = LessonState.CANCELLED if current.state == LessonState.SCHEDULED else LessonState.ENDED
        await lessons.transition(db, lesson_id, to, reason="superseded_by_demo")


async def _account(
    db: AsyncSession,
    data_dir: Path,
    username: str,
    role: str,
    display_name: str,
    school_id: int | None = None,
    password_file: str | None = None,
    classroom_id: int | None = None,
) -> str | None:
    """The demo user's password: made (and kept beside the database, 0600, so a rerun can
    print it again) the first time; None when someone has changed it since."""
    path = data_dir / (password_file or f"demo-{username}-password")
    if await db.scalar(sa.select(User.id).where(User.username == username)) is None:
        password = secrets.token_urlsafe(9)
        await users.create_user(
            db,
            username=username,
            password=password,
            role=role,
            display_name=display_name,
            school_id=school_id,
            classroom_id=classroom_id,
        )
        path.touch(mode=0o600)
        path.write_text(password)
        return password
    return path.read_text().strip() if path.exists() else None


async def prepare_demo(db: AsyncSession, data_dir: Path) -> DemoSetup:
    """Demo schools, pairings and accounts (made once, reused), a fresh open lesson for
    the agents and a fresh scheduled one for the newcomer to teach from the pages."""
    pairing = await _pairing(db, DEMO_PAIRING, "初二(1)班 主讲教室", RURAL_SCHOOLS)
    pages_pairing = await _pairing(db, PAGES_PAIRING, PAGES_MAIN_CLASSROOM, PAGES_RURAL_SCHOOLS)
    await _supersede(db, pairing)
    await _supersede(db, pages_pairing)
    start = utcnow().replace(microsecond=0)
    lesson = await lessons.create_lesson(
        # 名校网络课堂: broadcast live over HLS and public in the library, so a newcomer
        # can watch and replay it without an account.
        db,
        pairing_id=pairing.id,
        kind="famous_school",
        subject="数学",
        grade="初二",
        teacher_name="王老师",
        title="一次函数的图像 (演示课)",
        planned_start=start,
        planned_end=start + LESSON_LENGTH,
    )
    await lessons.transition(db, lesson.id, LessonState.OPEN)
    rooms = await _rooms(db, lesson.id)
    admin_password = await _account(
        db, data_dir, DEMO_ADMIN, "admin", "演示管理员", password_file="demo-admin-password"
    )

    city = await _school(db, CITY_SCHOOL, "city")
    songlin = await _school(db, PAGES_RURAL_SCHOOLS[0], "rural")
    accounts = (
        DemoAccount(
            "教师 teacher:",
            DEMO_TEACHER,
            await _account(db, data_dir, DEMO_TEACHER, "teacher", "李老师", city.id),
            f"{CITY_SCHOOL}",
        ),
        DemoAccount(
            "教研员 reviewer:",
            DEMO_REVIEWER,
            await _account(db, data_dir, DEMO_REVIEWER, "reviewer", "赵教研员"),
        ),
        DemoAccount(
            "学校管理员 school admin:",
            DEMO_SCHOOL_ADMIN,
            await _account(
                db, data_dir, DEMO_SCHOOL_ADMIN, "school_admin", "松林村小学管理员", songlin.id
            ),
            songlin.name,
        ),
        DemoAccount(
            "教室设备 device:",
            DEMO_DEVICE,
            await _account(
                db,
                data_dir,
                DEMO_DEVICE,
                "device",
                "松林村小学听课教室",
                classroom_id=(await _classroom(db, songlin, "听课教室")).id,
            ),
            f"{songlin.name} 听课教室",
        ),
    )
    teacher_id = await db.scalar(sa.select(User.id).where(User.username == DEMO_TEACHER))
    # Scheduled, not opened: the teacher's "开始上课" on the console opens and starts it.
    pages_lesson = await lessons.create_lesson(
        db,
        pairing_id=pages_pairing.id,
        kind="dedicated",
        subject="英语",
        grade="初二",
        teacher_name="李老师",
        title="Unit 3 课文朗读 (演示课·网页上课)",
        planned_start=start,
        planned_end=start + LESSON_LENGTH,
    )
    pages_lesson.teacher_user_id = teacher_id
    await db.commit()
    return DemoSetup(
        lesson.id,
        rooms,
        admin_password,
        pages_lesson.id,
        await _rooms(db, pages_lesson.id),
        accounts,
    )


async def _rooms(db: AsyncSession, lesson_id: int) -> tuple[DemoRoom, ...]:
    roster = await lessons.load_roster(db, lesson_id)
    assert roster is not None
    return tuple(
        DemoRoom(r.classroom_id, f"{r.school_name} {r.name}", JoinRole(r.role))
        for r in roster.rooms
    )


def _start_agent(
    base_url: str, token: str, log: Path, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "signaling",
        "agent",
        "--server",
        base_url,
        "--token",
        token,
        "--width",
        str(args.width),
        "--height",
        str(args.height),
        "--fps",
        str(args.fps),
        "--report",
        str(log.with_suffix(".jsonl")),
        "--report-interval",
        "5",
    ]
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
        "",
        f"  第二节课 lesson:    #{setup.pages_lesson_id} 初二英语, 无 agent, 在网页上上课 / "
        "taught from the pages:",
    ]
    for room in setup.pages_rooms:
        lines.append(f"    - {room.role.value:9} {room.name} (classroom {room.classroom_id})")
    lines.append("  演示账号 accounts (用户名 / 密码, username / password):")
    for account in setup.accounts:
        note = f"  ({account.note})" if account.note else ""
        lines.append(
            f"    {account.label:26} {account.username} / {account.password or '(changed)'}{note}"
        )
    lines += [
        "  在浏览器中登录 / sign in with a browser: teacher → 进入主讲教室 → 开始上课;",
        "  another browser (or a private window) as songlin-room → 进入听课教室:",
        f"LOGIN_URL={base_url}/",
        "",
        f"  agents' reports:    {log_dir}",
        "  在浏览器中打开以观看全部教室 / open in a browser to watch all rooms:",
        f"WATCH_URL={url}",
        "  直播页面 (名校网络课堂, 无需登录) / broadcast page, no sign-in, any number of viewers:",
        f"BROADCAST_PAGE={base_url}/broadcast/{setup.lesson_id}",
        "  HLS 播放列表 (VLC, ffplay) / the HLS playlist for players:",
        f"BROADCAST_URL={base_url}/live/{setup.lesson_id}/index.m3u8",
        "  Ctrl-C 结束演示课 / ends the lesson.",
        "",
    ]
    print("\n".join(lines), flush=True)


async def _wait_for_stop(
    duration: float | None, app: web.Application | None = None, setup: DemoSetup | None = None
) -> None:
    """Until Ctrl-C (SIGINT or SIGTERM), or `duration` seconds of lesson: counted from the
    moment every room of the demo lesson is connected, so agents slow to start on a busy
    machine still get their full lesson (at most JOIN_WAIT_S is spent waiting for them)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if duration is not None and app is not None and setup is not None:
        deadline = loop.time() + JOIN_WAIT_S
        while not stop.is_set() and loop.time() < deadline:
            live = app[LIVE].snapshot(setup.lesson_id)
            joined = {r.classroom_id for r in live.rooms if r.connected} if live else set()
            if joined >= {room.classroom_id for room in setup.rooms}:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
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


async def _show_replay(
    app: web.Application, base_url: str, lesson_id: int, *, wait_for_composite: bool
) -> None:
    """Wait for the recording to reach the library and say where to replay it."""
    from recorder.finalise.jobs import FINALISATION

    print("  正在生成录像 / finalising the recording…", flush=True)
    queue = app.get(FINALISATION)
    if queue is not None and wait_for_composite:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FINALISE_WAIT_S):
                await queue.wait(lesson_id)
    async with app[DB]() as db:
        recording_id = await db.scalar(
            sa.select(Recording.id).where(Recording.lesson_id == lesson_id)
        )
    if recording_id is None:
        print(
            f"  录像尚未入库 / the recording is not in the library yet; see {base_url}/library",
            flush=True,
        )
        return
    print(f"  录像已入库 / in the library: {base_url}/library", flush=True)
    print(f"REPLAY_URL={base_url}/replay/{recording_id}", flush=True)


async def _close_lesson(app: web.Application, lesson_id: int) -> None:
    """End the pages' lesson if the newcomer started it; a scheduled one is left for the
    next run to supersede."""
    async with app[DB]() as db:
        lesson = await lessons.get_lesson(db, lesson_id)
    if lesson is None or lesson.state not in (LessonState.OPEN, LessonState.LIVE):
        return
    with contextlib.suppress(Exception):
        async with app[DB]() as db:
            await lessons.transition(db, lesson_id, LessonState.ENDED, reason="demo_stopped")
    with contextlib.suppress(Exception):
        await app[LIVE].end_lesson(lesson_id, "demo_stopped")


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
