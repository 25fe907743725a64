"""`tongbu agent --auto`: a classroom box that follows its timetable with nobody at it.

With its device credentials (an API token of the classroom's `device` account, which the
server binds to that one classroom) the box asks the server which classroom it is (GET
/api/v1/me) and for that classroom's lessons (GET /api/v1/devices/me/lessons), and when one
opens it mints its own join token and joins it as the classroom's role (main or
receiving), through the same `ClassroomAgent` as `tongbu agent --token`; when the lesson
ends it leaves and waits for the next one. The timetable is read again every `refresh_s`
(changes, cancellations) and, while a lesson is due to open, every `poll_s`.

The box never gives up: a server that refuses connections or answers 5xx is retried with
backoff (jittered, so forty boxes do not knock at once); a server restarted during a
lesson is rejoined by the ClassroomAgent with its rejoin token, and a box restarted during
a lesson finds it open or live and joins it again. Only a refused device token (401/403), an
account bound to no classroom, or a `--classroom` that is not the account's stops it, with
exit status 2: no retry can fix that, a person must.

Reports are JSON lines like the agent's: `timetable` (when it changes), `attending`,
`joined` (from the agent, each connection), `left` (lesson_id, reason), `waiting`,
`server_unavailable`, `refused`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp

from classroom.agent.client import ClassroomAgent, Reporter
from classroom.agent.defaults import POLL_S, REFRESH_S

logger = logging.getLogger(__name__)

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
HTTP_TIMEOUT_S = 15.0
RUNNING = frozenset({"open", "live"})

T = TypeVar("T")


class ServerUnavailable(Exception):
    """Connection refused or reset, a timeout, a 5xx: the server will be back."""


class DeviceRefused(Exception):
    """The server refuses this box (unknown or revoked token, not a device, no classroom)."""


class LessonOver(Exception):
    """Too late to join: the lesson ended or was cancelled meanwhile."""


@dataclass(frozen=True)
class TimetableLesson:
    """One lesson of this classroom, as GET /devices/me/lessons gives it."""

    lesson_id: int
    title: str
    state: str
    role: str
    classroom_id: int
    planned_start: datetime
    planned_end: datetime
    opens_at: datetime
    ends_at: datetime

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> TimetableLesson:
        return cls(
            lesson_id=int(item["lesson_id"]),
            title=str(item["title"]),
            state=str(item["state"]),
            role=str(item["role"]),
            classroom_id=int(item["classroom_id"]),
            planned_start=_aware(item["planned_start"]),
            planned_end=_aware(item["planned_end"]),
            opens_at=_aware(item["opens_at"]),
            ends_at=_aware(item["ends_at"]),
        )


@dataclass(frozen=True)
class Timetable:
    lessons: tuple[TimetableLesson, ...]
    clock_offset: timedelta  # server clock minus ours: a box's clock is often wrong

    def server_now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def running(self) -> TimetableLesson | None:
        """The lesson to be in now: open or live (the earliest, if two overlap)."""
        return next((x for x in self.lessons if x.state in RUNNING), None)

    def wait_s(self, refresh_s: float, poll_s: float) -> float:
        """How long to sleep before looking again: until the next lesson opens (polling
        while it is due and not open yet), at most `refresh_s`."""
        now = self.server_now()
        waits = [refresh_s]
        for lesson in self.lessons:
            if lesson.state != "scheduled" or lesson.ends_at <= now:
                continue
            until = (lesson.opens_at - now).total_seconds()
            waits.append(poll_s if until <= 0 else max(poll_s, until))
        return min(waits)


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class DeviceApi:
    """The few REST calls a box makes, with errors sorted into retry or give up."""

    def __init__(self, server: str, token: str, http: aiohttp.ClientSession) -> None:
        self.base = server.rstrip("/") + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.http = http

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        try:
            async with self.http.request(
                method, self.base + path, json=body, headers=self.headers
            ) as response:
                status = response.status
                try:
                    data = await response.json(content_type=None)
                except ValueError:
                    data = None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ServerUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if status >= 500 or (status < 400 and not isinstance(data, dict)):
            raise ServerUnavailable(f"HTTP {status}")
        if status in (401, 403):
            raise DeviceRefused(_message(data, status))
        return status, data

    async def me(self) -> dict[str, Any]:
        """The device account: its role and the classroom it is bound to."""
        status, data = await self.call("GET", "/me")
        if status != 200:
            raise DeviceRefused(_message(data, status))
        return data

    async def timetable(self, classroom_id: int) -> Timetable:
        sent = time.time()
        status, data = await self.call("GET", f"/devices/me/lessons?classroom_id={classroom_id}")
        if status != 200:
            raise DeviceRefused(_message(data, status))
        midpoint = datetime.fromtimestamp((sent + time.time()) / 2, UTC)
        return Timetable(
            lessons=tuple(TimetableLesson.from_json(item) for item in data["items"]),
            clock_offset=_aware(data["server_time"]) - midpoint,
        )

    async def lesson_state(self, lesson_id: int) -> str:
        """The lesson's state now; "gone" when it is deleted or no longer this school's."""
        try:
            status, data = await self.call("GET", f"/lessons/{lesson_id}")
        except DeviceRefused:
            return "gone"  # 403: the lesson has no classroom of ours any more
        return str(data["state"]) if status == 200 else "gone"

    async def join_token(self, lesson: TimetableLesson) -> str:
        try:
            status, data = await self.call(
                "POST",
                f"/lessons/{lesson.lesson_id}/join-tokens",
                {"role": lesson.role, "classroom_id": lesson.classroom_id},
            )
        except DeviceRefused as exc:
            raise LessonOver(str(exc)) from None  # e.g. the pairing changed: not ours now
        if status == 201:
            return str(data["token"])
        raise LessonOver(_message(data, status))


def _message(data: Any, status: int) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        return f"HTTP {status} {error.get('code')}: {error.get('message')}"
    return f"HTTP {status}"


AgentFactory = Callable[[str], ClassroomAgent]


class AutoAgent:
    """Follows its classroom's timetable; `run()` returns only when stopped (0) or when
    the device is refused for good (2). `classroom_id`, when given (`--classroom`), must be
    the classroom the device account is bound to: a box set up for one room never acts
    for another."""

    def __init__(
        self,
        server: str,
        device_token: str,
        *,
        make_agent: AgentFactory,
        classroom_id: int | None = None,
        reporter: Reporter | None = None,
        refresh_s: float = REFRESH_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.server = server
        self.device_token = device_token
        self.make_agent = make_agent
        self.classroom_id = classroom_id
        self.reporter = reporter or Reporter()
        self.refresh_s = refresh_s
        self.poll_s = poll_s
        self.agent: ClassroomAgent | None = None  # in a lesson now
        self._stopping = asyncio.Event()
        self._last_reported: tuple[tuple[int, str], ...] | None = None

    def stop(self) -> None:
        """Leave the current lesson (the server records when) and return from run()."""
        self._stopping.set()
        if self.agent is not None:
            self.agent.stop()

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            api = DeviceApi(self.server, self.device_token, http)
            try:
                bound = await self._which_classroom(api)
                if bound is None:
                    return 0 if self._stopping.is_set() else 2
                self.classroom_id = bound
                while not self._stopping.is_set():
                    timetable = await self._retrying(lambda: api.timetable(self._classroom))
                    if timetable is None:
                        break
                    self._report(timetable)
                    lesson = timetable.running()
                    if lesson is not None:
                        await self._attend(api, lesson)
                        continue
                    await self._sleep(timetable.wait_s(self.refresh_s, self.poll_s))
            except DeviceRefused as exc:
                self.reporter.emit("refused", code="device_refused", message=str(exc))
                return 2
        return 0

    @property
    def _classroom(self) -> int:
        assert self.classroom_id is not None
        return self.classroom_id

    async def _which_classroom(self, api: DeviceApi) -> int | None:
        """The classroom the device account is bound to, checked against --classroom;
        None (after a `refused` report) when there is none to follow, or when stopped."""
        me = await self._retrying(api.me)
        if me is None:
            return None
        bound = me.get("classroom_id")
        if me.get("role") != "device":
            code, message = "not_a_device", f"account {me.get('username')!r} is not a device"
        elif bound is None:
            code = "device_unbound"
            message = (
                f"device account {me.get('username')!r} is bound to no classroom; an admin "
                "must bind it (tongbu admin bind-device --username … --classroom ID)"
            )
        elif self.classroom_id is not None and self.classroom_id != bound:
            code = "classroom_mismatch"
            message = (
                f"--classroom {self.classroom_id}, but device account "
                f"{me.get('username')!r} is classroom {bound}'s"
            )
        else:
            return int(bound)
        self.reporter.emit("refused", code=code, message=message)
        return None

    async def _attend(self, api: DeviceApi, lesson: TimetableLesson) -> None:
        """Be in `lesson` until it is over on the server (or we are stopped)."""
        self.reporter.emit(
            "attending",
            lesson_id=lesson.lesson_id,
            role=lesson.role,
            classroom_id=lesson.classroom_id,
            state=lesson.state,
        )
        backoff = BACKOFF_START
        while not self._stopping.is_set():
            try:
                token = await self._retrying(lambda: api.join_token(lesson))
            except LessonOver as exc:
                self.reporter.emit("left", lesson_id=lesson.lesson_id, reason=str(exc))
                return
            if token is None:
                break
            agent = self.make_agent(token)
            self.agent = agent
            watcher = asyncio.ensure_future(self._watch(api, lesson, agent))
            try:
                code = await agent.run()
            finally:
                self.agent = None
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if self._stopping.is_set():
                break
            # Over, or refused (an expired rejoin token after a long outage): ask the server.
            state = await self._retrying(lambda: api.lesson_state(lesson.lesson_id))
            if state is None:
                break
            if state not in RUNNING:
                self.reporter.emit("left", lesson_id=lesson.lesson_id, reason=state)
                return
            self.reporter.emit("rejoining", lesson_id=lesson.lesson_id, agent_status=code)
            await self._sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(BACKOFF_MAX, backoff * 2)
        self.reporter.emit("left", lesson_id=lesson.lesson_id, reason="stopped")

    async def _watch(self, api: DeviceApi, lesson: TimetableLesson, agent: ClassroomAgent) -> None:
        """Leave a lesson that is over on the server even if no `lesson_ended` reached us
        (cancelled while the link was down, ended on another node)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                state = await api.lesson_state(lesson.lesson_id)
            except ServerUnavailable:
                continue  # the agent is reconnecting on its own
            if state not in RUNNING:
                agent.stop()
                return

    # -------------------------------------------------------------- helpers

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call()` until the server answers; None when stopped meanwhile."""
        backoff = BACKOFF_START
        while not self._stopping.is_set():
            try:
                return await call()
            except ServerUnavailable as exc:
                delay = backoff * random.uniform(0.8, 1.2)
                self.reporter.emit(
                    "server_unavailable", reason=str(exc)[:200], retry_in_s=round(delay, 2)
                )
                await self._sleep(delay)
                backoff = min(BACKOFF_MAX, backoff * 2)
        return None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))

    def _report(self, timetable: Timetable) -> None:
        """A `timetable` line when what the box knows changed, not at every poll."""
        seen = tuple((x.lesson_id, x.state) for x in timetable.lessons)
        if seen == self._last_reported:
            return
        self._last_reported = seen
        self.reporter.emit(
            "timetable",
            classroom_id=self.classroom_id,
            clock_offset_s=round(timetable.clock_offset.total_seconds(), 3),
            lessons=[
                {
                    "lesson_id": x.lesson_id,
                    "state": x.state,
                    "role": x.role,
                    "opens_at": x.opens_at.isoformat(),
                    "ends_at": x.ends_at.isoformat(),
                }
                for x in timetable.lessons
            ],
        )
