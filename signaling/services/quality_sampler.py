"""Attendance and link quality of live lessons, written to the database off the media path.

- Attendance: a lesson's join and leave events become `room_sessions` rows as they happen
  (classroom/attendance.py), in event order.
- Link samples: every `interval` seconds, per room and direction, the deltas of what the
  router already counts (RTP bytes and packets, RTCP receiver reports both ways, RTT from
  LSR/DLSR, freezes, keyframe requests) become `link_samples` rows
  (classroom/link_samples.py).
- Summaries: when a lesson ends, and for lessons that ended without a live session here
  (nobody joined), classroom/lesson_stats.py computes the lesson's summary.

Nothing here runs per packet. Sampling reads counters (a few dozen objects per lesson,
every few seconds); every database write goes through one `StatisticsWriter` task that
drains an ordered queue, batching samples, so forwarding never waits on the database,
and a slow database only grows a bounded buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom.attendance import close_orphaned_sessions, close_room_session, open_room_session
from classroom.lesson_stats import STALE_AFTER, lessons_due_for_summary, summarise_lesson
from classroom.link_samples import Sample, insert_samples
from classroom.models import Lesson, LessonState
from signaling.appkeys import DB, SETTINGS
from signaling.live.lesson import LessonEvent, LiveLesson, now_utc
from signaling.media.publication import Publication
from signaling.media.room_connection import RoomConnection

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 60.0  # s between looks for lessons that ended without a live session here
MAX_PENDING_SAMPLES = 50_000  # ~ 40 min of 100 rooms at 10 s while the database is away

Job = Callable[[AsyncSession], Awaitable[object]]


# ------------------------------------------------------------------ sampling


class _Figures(TypedDict):
    """One direction's figures of a Sample, beside its lesson, room, time and RTT."""

    bitrate_kbps: float
    packets: int
    packets_lost: int
    jitter_ms: float
    freezes: int
    freeze_ms: int
    keyframe_requests: int


@dataclass
class _Previous:
    """A counter set's values at the previous sample (for deltas)."""

    bytes: int = 0
    packets: int = 0
    lost: int = 0
    freezes: int = 0
    freeze_ms: float = 0.0
    keyframe_requests: int = 0


class RoomProbe:
    """Samples one connection of one room; kept until the connection leaves the lesson."""

    def __init__(self, connection: RoomConnection, since: float) -> None:
        self.connection = connection
        self.since = since  # time.monotonic() of the previous sample (or of the join)
        self._previous: weakref.WeakKeyDictionary[object, _Previous] = weakref.WeakKeyDictionary()

    def take(self, lesson_id: int, classroom_id: int, now: float, at: datetime) -> list[Sample]:
        seconds = now - self.since
        if seconds < 0.05:
            return []
        self.since = now
        rtts = [
            leg.counters.rtt_ms for leg in self.connection.legs if leg.counters.rtt_ms is not None
        ]
        rtt = sum(rtts) / len(rtts) if rtts else None
        return [
            Sample(
                lesson_id=lesson_id,
                classroom_id=classroom_id,
                at=at,
                direction=direction,
                seconds=round(seconds, 3),
                rtt_ms=round(rtt, 2) if rtt is not None else None,
                **figures,
            )
            for direction, figures in (
                ("up", self._upstream(seconds)),
                ("down", self._downstream(seconds)),
            )
        ]

    def _upstream(self, seconds: float) -> _Figures:
        """What the room sends us: our own reception statistics of its tracks."""
        total = _Previous()
        jitter = 0.0
        for publication in self.connection.publications.values():
            expected, lost = publication.reception()
            delta = self._delta(
                publication,
                _Previous(
                    publication.counters.bytes,
                    expected,
                    lost,
                    publication.freezes.freezes,
                    publication.freezes.freeze_ms,
                    publication.counters.keyframe_requests,
                ),
                total,
            )
            if delta:
                jitter = max(jitter, _jitter_ms(publication))
        return _figures(total, seconds, jitter)

    def _downstream(self, seconds: float) -> _Figures:
        """What we send the room: our legs' counters and the room's receiver reports."""
        total = _Previous()
        jitter = 0.0
        for leg in self.connection.legs:
            c = leg.counters
            delta = self._delta(
                leg,
                _Previous(
                    c.bytes,
                    c.packets,
                    c.packets_lost,
                    leg.freezes.freezes,
                    leg.freezes.freeze_ms,
                    c.plis_received,
                ),
                total,
            )
            if delta:
                jitter = max(jitter, c.jitter_ms)
        return _figures(total, seconds, jitter)

    def _delta(self, source: object, current: _Previous, total: _Previous) -> int:
        """Add `source`'s change since the previous sample to `total`; returns its packets."""
        previous = self._previous.get(source) or _Previous()
        self._previous[source] = current
        packets = max(0, current.packets - previous.packets)
        total.bytes += max(0, current.bytes - previous.bytes)
        total.packets += packets
        # Receiver reports trail the packets they count; a loss never exceeds what was sent.
        total.lost += min(packets, max(0, current.lost - previous.lost))
        total.freezes += max(0, current.freezes - previous.freezes)
        total.freeze_ms += max(0.0, current.freeze_ms - previous.freeze_ms)
        total.keyframe_requests += max(0, current.keyframe_requests - previous.keyframe_requests)
        return packets


def _jitter_ms(publication: Publication) -> float:
    return publication.loss()[2]


def _figures(total: _Previous, seconds: float, jitter: float) -> _Figures:
    return {
        "bitrate_kbps": round(total.bytes * 8 / seconds / 1000, 2),
        "packets": total.packets,
        "packets_lost": total.lost,
        "jitter_ms": round(jitter, 2),
        "freezes": total.freezes,
        "freeze_ms": round(total.freeze_ms),
        "keyframe_requests": total.keyframe_requests,
    }


class LessonSampler:
    """The probes of one live lesson's rooms, fed by its events."""

    def __init__(self, lesson: LiveLesson, sink: Callable[[list[Sample]], None]) -> None:
        self.lesson = lesson
        self.probes: dict[int, RoomProbe] = {}
        self._joined_at: dict[int, float] = {}
        self._sink = sink

    def on_join(self, classroom_id: int) -> None:
        # The room's peer connection is made just after the join event: found on a tick.
        self._joined_at[classroom_id] = time.monotonic()
        self.probes.pop(classroom_id, None)

    def on_publication(self, publication: Publication) -> None:
        """A room's track started: its connection exists now, so a short stay is sampled."""
        self._discover(publication.classroom_id, time.monotonic())

    def on_leave(self, classroom_id: int) -> None:
        """Sample the rest of the connection's last interval, then forget it."""
        probe = self.probes.pop(classroom_id, None)
        self._joined_at.pop(classroom_id, None)
        if probe is not None:
            self._sink(probe.take(self.lesson.lesson_id, classroom_id, time.monotonic(), now_utc()))

    def tick(self) -> list[Sample]:
        now, at = time.monotonic(), now_utc()
        samples: list[Sample] = []
        for classroom_id in list(self.lesson.rooms):
            probe = self._discover(classroom_id, now)
            if probe is not None:
                samples.extend(probe.take(self.lesson.lesson_id, classroom_id, now, at))
        return samples

    def _discover(self, classroom_id: int, now: float) -> RoomProbe | None:
        session = self.lesson.rooms.get(classroom_id)
        connection = session.connection if session is not None else None
        probe = self.probes.get(classroom_id)
        if connection is None:
            return probe
        if probe is None or probe.connection is not connection:
            since = self._joined_at.pop(classroom_id, now)
            probe = self.probes[classroom_id] = RoomProbe(connection, since)
        return probe


# ------------------------------------------------------------------- writing


class StatisticsWriter:
    """The one task that writes attendance, samples and summaries, in the order queued."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db
        self.samples: deque[Sample] = deque()
        self.dropped_samples = 0
        self.written_samples = 0
        self.failures = 0
        self._jobs: asyncio.Queue[tuple[str, Job] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def add_samples(self, samples: list[Sample]) -> None:
        self.samples.extend(samples)
        overflow = len(self.samples) - MAX_PENDING_SAMPLES
        if overflow > 0:
            for _ in range(overflow):
                self.samples.popleft()
            self.dropped_samples += overflow
            logger.warning(
                "database too slow: %d link samples dropped so far", self.dropped_samples
            )

    def enqueue(self, what: str, job: Job) -> None:
        self._jobs.put_nowait((what, job))

    def flush_samples(self) -> None:
        """Queue the buffered samples for writing (in one statement)."""
        if self.samples:
            batch = list(self.samples)
            self.samples.clear()

            async def write(db: AsyncSession) -> None:
                await insert_samples(db, batch)
                self.written_samples += len(batch)

            self.enqueue(f"{len(batch)} link samples", write)

    async def drain(self) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        self.flush_samples()
        await self._jobs.join()

    async def stop(self) -> None:
        await self.drain()
        self._jobs.put_nowait(None)
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            item = await self._jobs.get()
            if item is None:
                self._jobs.task_done()
                return
            what, job = item
            for attempt in (1, 2, 3):
                try:
                    async with self.db() as db:
                        await job(db)
                    break
                except Exception:
                    if attempt == 3:
                        self.failures += 1
                        logger.exception("statistics: could not write %s; given up", what)
                    else:
                        await asyncio.sleep(0.5 * attempt)
            self._jobs.task_done()


# ------------------------------------------------------------------- service


class LessonStatistics:
    """Attaches to every live lesson, samples, and keeps the writer fed."""

    def __init__(self, db: async_sessionmaker[AsyncSession], interval: float) -> None:
        self.writer = StatisticsWriter(db)
        self.samplers: dict[int, LessonSampler] = {}
        self.interval = interval
        self.sweep_interval = SWEEP_INTERVAL
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0

    def set_intervals(self, sample: float | None = None, sweep: float | None = None) -> None:
        """Change the sampling (and sweep) interval now, without waiting for the next tick."""
        for name, value in (("sample", sample), ("sweep", sweep)):
            if value is not None and value <= 0:
                raise ValueError(f"the {name} interval must be more than 0 seconds")
        if sample is not None:
            self.interval = sample
        if sweep is not None:
            self.sweep_interval = sweep
        self._wake.set()

    # -------------------------------------------------------------- lessons

    def lesson_created(self, lesson: LiveLesson) -> None:
        sampler = LessonSampler(lesson, self.writer.add_samples)
        self.samplers[lesson.lesson_id] = sampler
        lesson.publication_observers.append(sampler.on_publication)
        lesson.event_observers.append(lambda event: self._on_event(sampler, event))

    def _on_event(self, sampler: LessonSampler, event: LessonEvent) -> None:
        lesson_id, classroom_id = sampler.lesson.lesson_id, event.classroom_id
        if classroom_id is None:
            return
        if event.kind == "join":
            role = str(event.detail.get("role", ""))
            sampler.on_join(classroom_id)
            self.writer.enqueue(
                f"join of classroom {classroom_id}",
                lambda db: open_room_session(db, lesson_id, classroom_id, role, event.at),
            )
        elif event.kind == "leave":
            sampler.on_leave(classroom_id)
            cause = str(event.detail.get("reason") or "closed")
            self.writer.enqueue(
                f"leave of classroom {classroom_id}",
                lambda db: close_room_session(db, lesson_id, classroom_id, event.at, cause),
            )

    async def lesson_ended(self, lesson: LiveLesson, reason: str) -> None:
        sampler = self.samplers.get(lesson.lesson_id)
        if sampler is not None and sampler.lesson is lesson:
            del self.samplers[lesson.lesson_id]
            self.writer.add_samples(sampler.tick())
        self.summarise(lesson.lesson_id)

    def summarise(self, lesson_id: int) -> None:
        """Queue the lesson's summary behind everything already known of it."""
        self.writer.flush_samples()
        self.writer.enqueue(
            f"summary of lesson {lesson_id}", lambda db: summarise_lesson(db, lesson_id)
        )

    # ----------------------------------------------------------------- loop

    def start(self) -> None:
        self.writer.start()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sampler in self.samplers.values():
            self.writer.add_samples(sampler.tick())
        await self.writer.stop()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            try:
                self.tick()
            except Exception:
                logger.exception("statistics: sampling failed")

    def tick(self) -> None:
        for sampler in list(self.samplers.values()):
            self.writer.add_samples(sampler.tick())
        self.writer.flush_samples()
        now = time.monotonic()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            self.writer.enqueue("summaries due", self._sweep)

    async def _sweep(self, db: AsyncSession) -> None:
        """Summarise lessons that ended without a live session here (nobody joined)."""
        for lesson_id in await lessons_due_for_summary(db):
            if lesson_id not in self.samplers:
                await summarise_lesson(db, lesson_id)

    async def recover(self, db: AsyncSession) -> list[int]:
        """At start: close attendance a crash left open; re-summarise lessons already over."""
        lesson_ids = await close_orphaned_sessions(db)
        for lesson_id in lesson_ids:
            lesson = await db.get(Lesson, lesson_id)
            over = lesson is not None and (
                lesson.state in (LessonState.ENDED, LessonState.CANCELLED)
                or lesson.planned_end < now_utc() - STALE_AFTER
            )
            if over:
                await summarise_lesson(db, lesson_id)
        if lesson_ids:
            logger.info("closed attendance left open by a stop, lessons %s", lesson_ids)
        return lesson_ids


STATISTICS: web.AppKey[LessonStatistics] = web.AppKey("lesson_statistics", LessonStatistics)


def setup_statistics(app: web.Application) -> None:
    """Call from create_app after setup_signaling (it needs the live-lesson registry)."""
    from signaling.live.ws import REGISTRY

    registry = app[REGISTRY]
    interval = app[SETTINGS].link_sample_interval_s
    if interval <= 0:
        raise ValueError("link_sample_interval_s must be more than 0 seconds")
    statistics = LessonStatistics(app[DB], interval)
    app[STATISTICS] = statistics
    registry.on_lesson_created.append(statistics.lesson_created)
    registry.on_lesson_ended.append(statistics.lesson_ended)

    async def running(app: web.Application) -> AsyncIterator[None]:
        # After the database context: the schema is migrated, and it is disposed after us.
        async with app[DB]() as db:
            await statistics.recover(db)
        statistics.start()
        yield
        await statistics.stop()

    app.cleanup_ctx.append(running)
