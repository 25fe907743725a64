"""Wires the recorder into the server: one `LessonRecorder` per live lesson.

Call `setup_recorder(app)` from `create_app`, after `setup_signaling(app)` (it needs the
live-lesson registry). Finalisers (remux, composite, library…) register on
`app[FINALISERS]`; each is awaited with `(lesson_id, capture_dir)` after that lesson's
capture is complete (lesson.json says "complete"), in a background task, one after the
other, so the REST call that ended the lesson does not wait for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from recorder.capture.recorder import LessonRecorder, RecordingCounters, capture_begun
from signaling.appkeys import SETTINGS
from signaling.live.lesson import LiveLesson
from signaling.live.state import LiveLessonState, RecordingState

logger = logging.getLogger(__name__)

Finaliser = Callable[[int, Path], Awaitable[None]]

# Each finaliser is awaited with (lesson_id, capture dir) once the capture is complete.
FINALISERS: web.AppKey[list[Finaliser]] = web.AppKey("recorder_finalisers", list)
# The lessons being recorded now, by lesson id.
RECORDERS: web.AppKey[dict[int, LessonRecorder]] = web.AppKey("recorders", dict)
# Finalisation runs in progress, by lesson id (a test or shutdown may await them).
FINALISING: web.AppKey[dict[int, asyncio.Task[None]]] = web.AppKey("recorder_finalising", dict)


def setup_recorder(app: web.Application) -> None:
    from signaling.live.ws import REGISTRY

    if RECORDERS in app:
        return  # already set up
    registry = app[REGISTRY]
    data_dir = Path(app[SETTINGS].data_dir)
    recorders: dict[int, LessonRecorder] = {}
    finalising: dict[int, asyncio.Task[None]] = {}
    app[RECORDERS] = recorders
    app[FINALISERS] = []
    app[FINALISING] = finalising

    def add_recording_state(state: LiveLessonState) -> None:
        recorder = recorders.get(state.lesson_id)
        if recorder is None:
            if state.class_started_at is None and state.planned_start is not None:
                state.recording = RecordingState(state="waiting", starts_at=state.planned_start)
            return
        c = recorder.counters
        state.recording = RecordingState(
            state="recording", tracks=c.tracks, frames=c.frames, bytes=c.bytes,
            errors=c.errors, dropped_frames=c.dropped_frames, last_sync_ms_max=c.sync_ms_max,
        )

    registry.snapshot_hooks.append(add_recording_state)

    def start_recording(lesson: LiveLesson) -> None:
        # Called once per live lesson, when its class starts (never after its end, which
        # drops the callbacks of a class that never began).
        try:
            recorder = LessonRecorder(lesson, data_dir)
        except Exception:
            # The lesson goes on unrecorded rather than not at all.
            logger.exception("cannot record lesson %s", lesson.lesson_id)
            return
        recorders[lesson.lesson_id] = recorder
        lesson.recording = True
        recorder.start()
        logger.info("recording lesson %s into %s", lesson.lesson_id, recorder.directory)

    def lesson_created(lesson: LiveLesson) -> None:
        # Pupils are filmed from the bell, not while rooms connect during the lead-in. A
        # capture already begun (the server restarted mid-lesson) goes on at once: its
        # class had started, if by hand before its bell, too.
        lesson.when_class_starts(start_recording)
        if capture_begun(data_dir, lesson.lesson_id):
            lesson.start_class("resumed")

    async def lesson_ended(lesson: LiveLesson, reason: str) -> None:
        recorder = recorders.get(lesson.lesson_id)
        if recorder is None or recorder.lesson is not lesson:
            return
        del recorders[lesson.lesson_id]
        try:
            await recorder.finish(reason)
        except Exception:
            logger.exception("finishing the recording of lesson %s failed", lesson.lesson_id)
            return
        logger.info("lesson %s recorded: %s", lesson.lesson_id, recorder.counters)
        task = asyncio.ensure_future(_finalise(app, lesson.lesson_id, recorder.directory))
        lid = lesson.lesson_id
        finalising[lid] = task
        task.add_done_callback(lambda _t: finalising.pop(lid, None))

    async def stop_recording(app: web.Application) -> None:
        # Server shutdown mid-lesson: close the logs cleanly, leave state "recording" so a
        # restarted server resumes the lesson's capture (same clock, next part).
        for recorder in list(recorders.values()):
            try:
                await recorder.finish(None)
            except Exception:
                logger.exception("closing the recording of lesson %s failed", recorder.lesson_id)
        recorders.clear()
        if finalising:
            await asyncio.wait(list(finalising.values()), timeout=10)

    registry.on_lesson_created.append(lesson_created)
    registry.on_lesson_ended.append(lesson_ended)
    app.on_shutdown.append(stop_recording)


async def _finalise(app: web.Application, lesson_id: int, directory: Path) -> None:
    for finaliser in app[FINALISERS].copy():
        try:
            await finaliser(lesson_id, directory)
        except Exception:
            logger.exception("finaliser %r failed for lesson %s", finaliser, lesson_id)


def recording_counters(app: web.Application, lesson_id: int) -> RecordingCounters | None:
    """The live recording counters of a lesson being recorded, if it is."""
    recorder = app[RECORDERS].get(lesson_id) if RECORDERS in app else None
    return recorder.counters if recorder is not None else None
