"""The lesson scheduler: opens each lesson before its start and ends it after its end.

Lessons run themselves (issue 6): `open_lead` before a lesson's planned start the
scheduler opens it (rooms may join; the main room's join makes it live, and the first
room's join starts its recording), and `end_grace` after its planned end it ends it,
whether or not rooms are still connected, exactly as POST /lessons/{id}/end does: the
rooms are told and disconnected, and the recording is finished and finalised.

Why nothing here lives in memory: every step is one conditional UPDATE (`WHERE state =
expected`, classroom.lessons.transition_if) committed together with its audit row, and
what is due is read back from `lessons` on every tick. So a server restarted in the middle
of the day catches up on its first tick (opens what should be open, ends what should
have ended), a step is never taken twice, and two server processes on one PostgreSQL
database never both take it: the database lets one UPDATE match, the other finds the
row already moved. A lesson whose whole planned time passed while no scheduler ran is
ended as not held (`end_reason` "not_held"), never opened late.

Media live in one process: the process whose UPDATE ended a lesson closes it if it hosts
it, and every process closes, on each tick, the lessons it hosts that the database says
are over (ended by another node's scheduler or API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom.lessons import transition_if
from classroom.models import AuditEvent, Lesson, LessonState, utcnow

logger = logging.getLogger(__name__)

ACTOR = "scheduler"  # the audit trail's actor name for every automatic transition
NOT_HELD = "not_held"  # end_reason: nobody taught (never live), or missed altogether
SCHEDULED_END = "scheduled_end"  # end_reason: a live lesson ended at its end + grace
BATCH = 200  # lessons per query; a long outage is caught up batch after batch

Action = Literal["open", "end", "missed"]

SCHEDULED, OPEN, LIVE, ENDED = (
    LessonState.SCHEDULED,
    LessonState.OPEN,
    LessonState.LIVE,
    LessonState.ENDED,
)


@dataclass(frozen=True)
class Transition:
    """One step this scheduler took (its UPDATE matched)."""

    lesson_id: int
    action: Action
    from_state: LessonState
    to_state: LessonState
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class DueAction:
    """A step the scheduler will take (or should have taken: `due_at` in the past)."""

    lesson_id: int
    title: str
    state: LessonState
    action: Action
    due_at: datetime


LocalLessons = Callable[[], Collection[int]]
EndLocal = Callable[[int, str], Awaitable[None]]


@dataclass
class LessonScheduler:
    """Opens and ends lessons on time; `tick()` is one pass, `start()` runs it every
    `interval_s`. `local_lessons`/`end_local` reach the lessons this process hosts (the
    live registry); without them (a test, a CLI) only the database moves."""

    db: async_sessionmaker[AsyncSession]
    open_lead: timedelta = timedelta(minutes=10)
    end_grace: timedelta = timedelta(minutes=5)
    interval_s: float = 5.0
    local_lessons: LocalLessons | None = None
    end_local: EndLocal | None = None
    # What the overview shows: when the last pass ran and how it went.
    last_tick_at: datetime | None = None
    last_error: str | None = None
    ticks: int = 0
    done: int = 0  # transitions this instance made
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ one pass

    async def tick(self, now: datetime | None = None) -> list[Transition]:
        """Take every step that is due at `now` (default: the clock); returns those this
        instance took. Safe to run at the same time as another instance on the same
        database: each step is taken by exactly one of them."""
        now = now or utcnow()
        taken: list[Transition] = []
        for _ in range(1000):  # bounded: a row that keeps changing cannot loop us forever
            candidates = await self._due(now)
            for lesson_id, state, planned_end in candidates:
                step = await self._step(lesson_id, LessonState(state), planned_end, now)
                if step is not None:
                    taken.append(step)
            if len(candidates) < BATCH:
                break
        for step in taken:
            if step.to_state == ENDED and self.end_local is not None:
                await self._close_here(step.lesson_id, step.reason or SCHEDULED_END)
        await self._close_finished_here()
        self.ticks += 1
        self.done += len(taken)
        self.last_tick_at = now
        return taken

    async def _due(self, now: datetime) -> list[tuple[int, str, datetime]]:
        """(id, state, planned_end) of lessons with a step due: scheduled ones within the
        lead of their start (to open, or to end as missed), open or live ones past their
        end plus grace (to end)."""
        async with self.db() as db:
            rows = await db.execute(
                sa.select(Lesson.id, Lesson.state, Lesson.planned_end)
                .where(
                    sa.or_(
                        sa.and_(
                            Lesson.state == SCHEDULED.value,
                            Lesson.planned_start <= now + self.open_lead,
                        ),
                        sa.and_(
                            Lesson.state.in_([OPEN.value, LIVE.value]),
                            Lesson.planned_end <= now - self.end_grace,
                        ),
                    )
                )
                .order_by(Lesson.planned_start, Lesson.id)
                .limit(BATCH)
            )
            return [(r.id, r.state, r.planned_end) for r in rows]

    async def _step(
        self, lesson_id: int, state: LessonState, planned_end: datetime, now: datetime
    ) -> Transition | None:
        """One conditional UPDATE and its audit row, in one transaction."""
        if state == SCHEDULED and planned_end <= now:
            action: Action = "missed"
            to, reason = ENDED, NOT_HELD
            where = [Lesson.planned_end <= now]
        elif state == SCHEDULED:
            action, to, reason = "open", OPEN, None
            where = [Lesson.planned_start <= now + self.open_lead, Lesson.planned_end > now]
        else:
            action, to = "end", ENDED
            reason = SCHEDULED_END if state == LIVE else NOT_HELD
            where = [Lesson.planned_end <= now - self.end_grace]
        async with self.db() as db:
            moved = await transition_if(
                db, lesson_id, state, to, reason=reason, now=now, where=where
            )
            if not moved:
                await db.rollback()  # another instance (or a person) moved it first
                return None
            detail: dict[str, object] = {"from": state.value, "auto": True}
            if reason:
                detail["reason"] = reason
            db.add(
                AuditEvent(
                    actor_id=None,
                    actor_name=ACTOR,
                    action=f"lesson_{to.value}",
                    target=f"lesson:{lesson_id}",
                    detail=detail,
                    at=now,
                )
            )
            await db.commit()
        logger.info(
            "scheduler: lesson %s %s -> %s%s",
            lesson_id,
            state.value,
            to.value,
            f" ({reason})" if reason else "",
        )
        return Transition(lesson_id, action, state, to, now, reason)

    async def _close_here(self, lesson_id: int, reason: str) -> None:
        assert self.end_local is not None
        try:
            await self.end_local(lesson_id, reason)
        except Exception:
            # The database already says ended; the next pass's sweep tries again.
            logger.exception("scheduler: closing live lesson %s failed", lesson_id)

    async def _close_finished_here(self) -> None:
        """Close lessons this process hosts that the database says are over."""
        if self.local_lessons is None or self.end_local is None:
            return
        hosted = list(self.local_lessons())
        if not hosted:
            return
        async with self.db() as db:
            rows = await db.execute(
                sa.select(Lesson.id, Lesson.state, Lesson.end_reason).where(
                    Lesson.id.in_(hosted),
                    Lesson.state.in_([ENDED.value, LessonState.CANCELLED.value]),
                )
            )
            over = [(r.id, r.end_reason or r.state) for r in rows]
        for lesson_id, reason in over:
            logger.info("scheduler: closing lesson %s here, it is over (%s)", lesson_id, reason)
            await self._close_here(lesson_id, reason)

    # ------------------------------------------------------------- what is next

    async def due_actions(
        self,
        now: datetime | None = None,
        *,
        horizon: timedelta = timedelta(hours=24),
        limit: int = 20,
    ) -> list[DueAction]:
        """The next steps, soonest first, overdue ones included (a stopped scheduler shows
        its backlog): opens within `horizon`, and the end of every open or live lesson."""
        now = now or utcnow()
        async with self.db() as db:
            upcoming = await db.execute(
                sa.select(
                    Lesson.id, Lesson.title, Lesson.state, Lesson.planned_start, Lesson.planned_end
                )
                .where(
                    sa.or_(
                        sa.and_(
                            Lesson.state == SCHEDULED.value,
                            Lesson.planned_start <= now + horizon + self.open_lead,
                        ),
                        Lesson.state.in_([OPEN.value, LIVE.value]),
                    )
                )
                .order_by(Lesson.planned_start, Lesson.id)
                .limit(limit * 4)
            )
            actions = []
            for r in upcoming:
                state = LessonState(r.state)
                if state == SCHEDULED and r.planned_end <= now:
                    actions.append(DueAction(r.id, r.title, state, "missed", r.planned_end))
                elif state == SCHEDULED:
                    opens = r.planned_start - self.open_lead
                    actions.append(DueAction(r.id, r.title, state, "open", opens))
                else:
                    ends = r.planned_end + self.end_grace
                    actions.append(DueAction(r.id, r.title, state, "end", ends))
        actions.sort(key=lambda a: (a.due_at, a.lesson_id))
        return actions[:limit]

    # ---------------------------------------------------------------- running

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database may be restarting: say so and try again next interval.
                self.last_error = repr(exc)[:300]
                logger.exception("scheduler: pass failed; retrying in %.0f s", self.interval_s)
            await asyncio.sleep(self.interval_s)


# ---------------------------------------------------------------- the app

SCHEDULER: web.AppKey[LessonScheduler] = web.AppKey("scheduler", LessonScheduler)


def setup_scheduler(app: web.Application) -> None:
    """Run the scheduler in this server (unless settings.scheduler is off).

    Call after setup_signaling(app): it closes lessons through the live registry. The
    scheduler object exists even when off, so the overview can show what is due.
    """
    from signaling.appkeys import DB, SETTINGS
    from signaling.live.ws import REGISTRY

    settings = app[SETTINGS]
    registry = app.get(REGISTRY)
    scheduler = LessonScheduler(
        app[DB],
        open_lead=timedelta(seconds=settings.open_lead_s),
        end_grace=timedelta(seconds=settings.end_grace_s),
        interval_s=settings.scheduler_interval_s,
        local_lessons=(lambda: list(registry.lessons)) if registry is not None else None,
        end_local=registry.end_lesson if registry is not None else None,
    )
    app[SCHEDULER] = scheduler
    if not settings.scheduler:
        return

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Appended after the database's context, so the schema is migrated by now.
        scheduler.start()
        logger.info(
            "scheduler: every %.0f s; opens %s before a lesson, ends it %s after",
            scheduler.interval_s,
            scheduler.open_lead,
            scheduler.end_grace,
        )
        yield
        await scheduler.stop()

    async def stop_first(app: web.Application) -> None:
        # Before the rooms are closed and recorders put aside for the next start: a pass
        # during shutdown must not end a lesson that is only being interrupted.
        await scheduler.stop()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.insert(0, stop_first)
