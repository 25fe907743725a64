"""Drives a real Tongbu server and real classroom agents for end-to-end lesson tests.

The server runs in the test's process (so a test can also read the router's live state),
agents run as `tongbu agent` subprocesses: separate processes with their own WebRTC peers,
exactly as classroom boxes are. Agents report JSON lines to a file that tests read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from classroom.config import Settings
from classroom.users import create_user, issue_token
from signaling.app import create_app
from signaling.appkeys import DB, LIVE

TONGBU = str(Path(sys.executable).with_name("tongbu"))

# Small frames keep five agents and a server affordable on a two-core CI machine; the
# media path is the same as at 720p.
AGENT_VIDEO = ("--width", "320", "--height", "180", "--fps", "15")


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str | None:
        return (self.body.get("error") or {}).get("code")


@dataclass
class Api:
    """The REST API as an admin script would use it."""

    base_url: str
    token: str
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: object = None) -> Any:
        async with self.session.request(
            method,
            f"{self.base_url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                raise ApiError(response.status, data)
            return data


@dataclass
class LiveServer:
    app: web.Application
    base_url: str
    api: Api

    def live(self, lesson_id: int) -> Any:
        """The router's own view of the lesson (what GET /lessons/{id}/live serves)."""
        return self.app[LIVE].snapshot(lesson_id)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def running_server(
    data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None,
    public_host: str = "127.0.0.1", scheduler: bool = False,
) -> AsyncIterator[LiveServer]:
    """The real application on a real TCP port, with an admin API token. The lesson
    scheduler is off unless asked for: tests open and end their lessons themselves."""
    port = port or free_port()
    settings = Settings(data_dir=data_dir, host=host, port=port, secret_key=b"k" * 32,
                        scheduler=scheduler)
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    try:
        async with app[DB]() as db:
            if (user := await _existing_admin(db)) is None:
                user = await create_user(db, username="e2e-admin", password="e2e-password-1",
                                         role="admin")
            token = await issue_token(db, user, name="e2e")
        base_url = f"http://{public_host}:{port}"
        async with aiohttp.ClientSession() as http:
            yield LiveServer(app, base_url, Api(base_url, token, http))
    finally:
        await runner.cleanup()


async def _existing_admin(db: Any) -> Any:
    from classroom.users import get_user_by_name

    return await get_user_by_name(db, "e2e-admin")


@dataclass
class DemoLesson:
    lesson_id: int
    main_classroom_id: int
    receiving_classroom_ids: list[int]
    names: dict[int, str]


async def create_lesson(
    api: Api, receiving: int = 4, *, tag: str = "", kind: str = "dedicated",
    starts_in: float = 0.0,
) -> DemoLesson:
    """A city school's main classroom paired with `receiving` rural classrooms, lesson open.
    `starts_in` seconds puts its bell in the future: rooms joining now are in its lead-in."""
    city = await api.call("POST", "/schools", {"name": f"城关一中{tag}", "kind": "city"})
    main = await api.call("POST", "/classrooms", {"school_id": city["id"], "name": "主讲教室"})
    names = {main["id"]: "主讲教室"}
    rural_ids = []
    for i in range(receiving):
        school = await api.call(
            "POST", "/schools", {"name": f"乡村小学{tag}{i + 1}", "kind": "rural"})
        room = await api.call(
            "POST", "/classrooms", {"school_id": school["id"], "name": f"听课{i + 1}"})
        rural_ids.append(room["id"])
        names[room["id"]] = f"听课{i + 1}"
    pairing = await api.call(
        "POST",
        "/pairings",
        {"name": f"结对{tag}", "main_classroom_id": main["id"],
         "receiving_classroom_ids": rural_ids},
    )
    start = (datetime.now(UTC) + timedelta(seconds=starts_in)).replace(microsecond=0)
    lesson = await api.call(
        "POST",
        "/lessons",
        {
            "pairing_id": pairing["id"],
            "kind": kind,
            "subject": "数学",
            "grade": "初二",
            "teacher_name": "王老师",
            "title": "一次函数",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(minutes=45)).isoformat(),
        },
    )
    await api.call("POST", f"/lessons/{lesson['id']}/open")
    return DemoLesson(lesson["id"], main["id"], rural_ids, names)


async def join_token(api: Api, lesson_id: int, role: str, classroom_id: int | None = None) -> str:
    body: dict[str, object] = {"role": role}
    if classroom_id is not None:
        body["classroom_id"] = classroom_id
    minted = await api.call("POST", f"/lessons/{lesson_id}/join-tokens", body)
    return minted["token"]


@dataclass
class AgentProcess:
    """One `tongbu agent` subprocess and the JSON lines it reported."""

    name: str
    report_path: Path
    process: subprocess.Popen[bytes]
    _offset: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    def poll(self) -> list[dict[str, Any]]:
        """Read the lines written since the last poll."""
        with self.report_path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        new = [json.loads(line) for line in complete.splitlines() if line.strip()]
        self.events.extend(new)
        return new

    def of(self, event: str) -> list[dict[str, Any]]:
        self.poll()
        return [e for e in self.events if e["event"] == event]

    def latest_tracks(self, since: float = 0.0) -> list[dict[str, Any]]:
        stats = [e for e in self.of("stats") if e["t"] >= since]
        return stats[-1]["tracks"] if stats else []

    def track_from(self, classroom_id: int, kind: str, since: float = 0.0) -> dict[str, Any] | None:
        for track in self.latest_tracks(since):
            if track["classroom_id"] == classroom_id and track["kind"] == kind:
                return track
        return None

    async def stop(self, within: float = 10) -> int:
        """SIGTERM, as systemd would; the event loop keeps running so the server answers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        return self.process.returncode

    def stderr_tail(self) -> str:
        path = self.report_path.with_suffix(".stderr")
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def start_agent(
    name: str,
    server_url: str,
    token: str,
    workdir: Path,
    *,
    extra: Sequence[str] = (),
    prefix: Sequence[str] = (),
) -> AgentProcess:
    """`prefix` runs the agent inside something, e.g. `ip netns exec <ns>`."""
    report = workdir / f"{name}.jsonl"
    report.touch()
    stderr = report.with_suffix(".stderr").open("wb")
    args = [*prefix, TONGBU, "agent", "--server", server_url, "--token", token,
            "--report", str(report), "--report-interval", "0.5", *AGENT_VIDEO, *extra]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    stderr.close()
    return AgentProcess(name, report, process)


async def wait_for(
    condition: Callable[[], object], within: float, what: str, interval: float = 0.2
) -> Any:
    """Poll until `condition()` is truthy; the failure message says what never happened."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def stop_all(agents: Sequence[AgentProcess]) -> None:
    await asyncio.gather(*(agent.stop() for agent in agents), return_exceptions=True)
