"""The finalisation queue: one worker, durable because the truth is on disk.

A lesson needs finalising when its capture dir (`<data_dir>/recordings/<id>/capture/`)
has no `final/manifest.json` in state "done" made from the capture as it is now
(`recorder.finalise.steps.is_finalised`). The in-memory queue only orders the work; after a
crash or a restart `recover_unfinished` finds the same work again by scanning the disk:
- `lesson.json` state "complete", not finalised: finalise;
- state "recording" while this process records no such lesson: the server that recorded
  it died (kill -9, power cut). It is finalised at once, so the library has what was
  captured, and after `resume_grace_s` — unless a room came back and the capture resumed
  (recorder.capture.recorder continues a "recording" capture on the same clock) — it is marked
  complete with `end_reason` "server_crashed" and `ended_at_unix` at its last frame.
  A resumed lesson is finalised again when it ends (its inputs changed).

Library: `create_pending_recording` when a lesson is queued (listed at once, processing),
`register_recording` after the per-room files (ready, playable) and again after each later
phase (thumbnails, composite); a lesson that cannot be finalised is marked failed.

Wiring (in create_app, after setup_recorder(app)): `setup_finalisation(app)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from recorder.capture.packetlog import PacketLogError, PacketLogReader
from recorder.finalise.steps import (
    capture_fingerprint,
    finalise_lesson,
    is_finalised,
    read_json,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

RESUME_GRACE_S = 60.0  # how long a crashed lesson may take to come back before it is closed


def capture_dirs(data_dir: Path) -> list[tuple[int, Path]]:
    """(lesson_id, capture dir) of every recorded lesson under data_dir."""
    found = []
    for lesson_json in sorted(Path(data_dir).glob("recordings/*/capture/lesson.json")):
        capture = lesson_json.parent
        try:
            found.append((int(capture.parent.name), capture))
        except ValueError:
            continue
    return sorted(found)


def final_dir_of(capture_dir: Path) -> Path:
    return Path(capture_dir).parent / "final"


def last_frame_s(capture_dir: Path) -> float:
    """Lesson time of the last intact frame in any packet log (0 if none); from the
    finalised manifest when there is one (reading every log of a long lesson is slow)."""
    manifest = read_json(final_dir_of(capture_dir) / "manifest.json")
    if manifest is not None and manifest.get("inputs") == capture_fingerprint(capture_dir):
        ends = [float(r["end_s"]) for r in manifest.get("rooms", [])]
        if ends:
            return max(ends)
    last = 0
    for path in capture_dir.glob("*.tbl"):
        try:
            with PacketLogReader(path) as reader:
                for frame in reader:
                    last = max(last, frame.pts_us)
        except (PacketLogError, OSError):
            continue
    return last / 1_000_000


def mark_crashed(capture_dir: Path) -> dict[str, Any] | None:
    """lesson.json "recording" → "complete", end_reason "server_crashed" (blocking).

    Returns the new lesson.json, or None if it was not in state "recording"."""
    path = capture_dir / "lesson.json"
    info = read_json(path)
    if info is None or info.get("state") != "recording":
        return None
    origin = float(info.get("clock_origin_unix") or 0.0)
    info = {
        **info,
        "state": "complete",
        "end_reason": "server_crashed",
        "ended_at_unix": origin + last_frame_s(capture_dir),
        "tracks": sorted(p.name for p in capture_dir.glob("*.tbl")),
    }
    write_json_atomic(path, info)
    return info


@dataclass
class LibraryLink:
    """How the queue tells the library (recorder.library.catalogue) about a lesson."""

    sessionmaker: Any  # async_sessionmaker
    storage: Any  # recorder.storage.Storage

    async def pending(self, lesson_id: int) -> None:
        from recorder.library.catalogue import create_pending_recording

        async with self.sessionmaker() as db:
            await create_pending_recording(db, lesson_id)

    async def register(self, lesson_id: int, final_dir: Path, manifest: dict[str, Any]) -> None:
        from recorder.library.catalogue import register_recording

        async with self.sessionmaker() as db:
            await register_recording(db, self.storage, lesson_id=lesson_id,
                                     final_dir=final_dir, manifest=manifest)

    async def failed(self, lesson_id: int, reason: str) -> None:
        from recorder.library.catalogue import mark_recording_failed

        async with self.sessionmaker() as db:
            await mark_recording_failed(db, lesson_id, reason)


@dataclass
class JobResult:
    lesson_id: int
    manifest: dict[str, Any] | None = None
    error: str | None = None
    playable_at: float | None = None  # time.time() when the per-room files were registered
    done_at: float | None = None


@dataclass
class FinalisationQueue:
    """Lessons waiting to be finalised, and one worker that finalises them in order."""

    library: LibraryLink | None = None
    composite: bool = True
    results: dict[int, JobResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[tuple[int, Path]] = asyncio.Queue()
        self._queued: set[int] = set()
        self._worker: asyncio.Task[None] | None = None
        self._events: dict[int, asyncio.Event] = {}

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Cancel the worker (a child process running slow steps is killed); the disk
        keeps what is left to do for the next start."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None

    async def enqueue(self, lesson_id: int, capture_dir: Path) -> None:
        """Queue a lesson (again queued only once); listed in the library at once."""
        self._events.setdefault(lesson_id, asyncio.Event()).clear()
        if self.library is not None:
            try:
                await self.library.pending(lesson_id)
            except Exception:
                logger.exception("lesson %s: cannot list it in the library", lesson_id)
        if lesson_id in self._queued:
            return
        self._queued.add(lesson_id)
        self.results[lesson_id] = JobResult(lesson_id)
        await self._queue.put((lesson_id, Path(capture_dir)))

    async def wait(self, lesson_id: int) -> JobResult:
        """Until the lesson's finalisation is over (done or failed); wrap it in
        `asyncio.timeout` to bound it."""
        event = self._events.setdefault(lesson_id, asyncio.Event())
        await event.wait()
        return self.results[lesson_id]

    async def _run(self) -> None:
        while True:
            lesson_id, capture_dir = await self._queue.get()
            self._queued.discard(lesson_id)
            try:
                await self._finalise(lesson_id, capture_dir)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.exception("lesson %s: finalisation failed", lesson_id)
                self.results[lesson_id].error = repr(exc)
                if self.library is not None:
                    with contextlib.suppress(Exception):
                        await self.library.failed(lesson_id, repr(exc))
            finally:
                self._queue.task_done()
                if lesson_id not in self._queued:
                    self._events.setdefault(lesson_id, asyncio.Event()).set()

    async def _finalise(self, lesson_id: int, capture_dir: Path) -> None:
        final_dir = final_dir_of(capture_dir)
        result = self.results.setdefault(lesson_id, JobResult(lesson_id))

        async def on_manifest(manifest: dict[str, Any]) -> None:
            result.manifest = manifest
            if self.library is not None:
                try:
                    await self.library.register(lesson_id, final_dir, manifest)
                except Exception:
                    # the files stay on disk; the next phase (or restart) registers again
                    logger.exception("lesson %s: library registration failed", lesson_id)
            if result.playable_at is None:
                result.playable_at = time.time()

        started = time.monotonic()
        manifest = await finalise_lesson(capture_dir, final_dir, composite=self.composite,
                                         on_manifest=on_manifest)
        result.manifest = manifest
        result.done_at = time.time()
        logger.info("lesson %s finalised in %.1f s (per-room files after %s s)", lesson_id,
                    time.monotonic() - started, manifest.get("playable_after_s"))


def pending_lessons(data_dir: Path, live: Collection[int] = ()) -> list[tuple[int, Path, bool]]:
    """(lesson_id, capture dir, crashed) of every capture left to finalise (blocking)."""
    pending = []
    for lesson_id, capture in capture_dirs(data_dir):
        if lesson_id in live:
            continue  # being recorded by this process: finalised when it ends
        info = read_json(capture / "lesson.json") or {}
        crashed = info.get("state") == "recording"
        if crashed or not is_finalised(capture, final_dir_of(capture)):
            if not crashed and info.get("state") != "complete":
                continue
            pending.append((lesson_id, capture, crashed))
    return pending


async def recover_unfinished(data_dir: Path, queue: FinalisationQueue | None = None, *,
                             live: Callable[[], Collection[int]] = frozenset,
                             resume_grace_s: float = 0.0) -> list[int]:
    """At startup: queue every capture left unfinished; returns their lesson ids.

    Without a queue (tests, the CLI) the lessons are finalised here, one after another.
    `live()` gives the lessons this process records now; a crashed capture is closed
    (`mark_crashed`) after `resume_grace_s` unless it is live by then.
    """
    pending = await asyncio.to_thread(pending_lessons, data_dir, live())
    for lesson_id, capture, crashed in pending:
        if crashed:
            # A clean restart mid-lesson leaves this too: the lesson goes on, so wait.
            logger.warning("lesson %s: the server stopped while recording it; the capture "
                           "resumes if a room rejoins within %.0f s, else what was captured "
                           "is finalised", lesson_id, resume_grace_s)
            if resume_grace_s <= 0:
                await asyncio.to_thread(mark_crashed, capture)
            else:
                asyncio.get_running_loop().call_later(
                    resume_grace_s, _close_if_not_resumed, lesson_id, capture, live)
        if queue is not None:
            await queue.enqueue(lesson_id, capture)
        else:
            await finalise_lesson(capture, final_dir_of(capture))
    return [lesson_id for lesson_id, _capture, _crashed in pending]


def _close_if_not_resumed(lesson_id: int, capture: Path,
                          live: Callable[[], Collection[int]]) -> None:
    # Synchronous on purpose: the check and the write happen in one loop step, so a room
    # rejoining (LessonRecorder reads lesson.json in the same loop) cannot interleave.
    if lesson_id in live():
        logger.info("lesson %s resumed after the restart; not closing its capture", lesson_id)
        return
    if mark_crashed(capture) is not None:
        logger.info("lesson %s: capture closed as server_crashed", lesson_id)


# ---------------------------------------------------------------- the app

FINALISATION: web.AppKey[FinalisationQueue] = web.AppKey("finalisation", FinalisationQueue)


def setup_finalisation(app: web.Application, *, composite: bool = True,
                       resume_grace_s: float = RESUME_GRACE_S) -> None:
    """Finalise every lesson the recorder completes, and at start-up what a crash left.

    Call after `setup_recorder(app)` (it registers on its FINALISERS)."""
    from recorder.capture.setup import FINALISERS, RECORDERS
    from signaling.appkeys import DB, SETTINGS, STORAGE

    settings = app[SETTINGS]
    data_dir = Path(settings.data_dir)
    queue = FinalisationQueue(LibraryLink(app[DB], app[STORAGE]), composite=composite)
    app[FINALISATION] = queue

    async def finaliser(lesson_id: int, capture_dir: Path) -> None:
        await queue.enqueue(lesson_id, capture_dir)

    app[FINALISERS].append(finaliser)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        queue.start()
        recovered = await recover_unfinished(
            data_dir, queue, live=lambda: set(app[RECORDERS].keys()), resume_grace_s=resume_grace_s)
        if recovered:
            logger.info("finalisation: recovering lessons %s", recovered)
        yield
        await queue.stop()

    app.cleanup_ctx.append(lifecycle)


def manifest_summary(final_dir: Path) -> str:
    """One line for logs and the CLI."""
    manifest = read_json(final_dir / "manifest.json")
    if manifest is None:
        return "no manifest"
    return json.dumps({k: manifest.get(k) for k in ("state", "duration_s", "playable_after_s",
                                                    "finalised_after_s")})
