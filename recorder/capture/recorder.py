"""Crash-safe capture of a live lesson: every published track, as encoded frames.

The recorder is a client like any room (STYLE: "every sink is a client"): for each
publication the lesson announces, a `TrackRecorder` subscribes as a `TrackSink`, starts at
a keyframe (and asks for one), assembles RTP into frames (recorder/capture/depacketize.py), stamps
them on the lesson clock (recorder/capture/clock.py) and appends them to a packet log
(recorder/capture/packetlog.py). Nothing is decoded.

On disk, `<data_dir>/recordings/<lesson_id>/capture/`:
- `lesson.json` — the roster and `clock_origin_unix`; `state` "recording", rewritten
  atomically to "complete" (with `ended_at_unix`, `end_reason`) when the lesson ends;
- `events.jsonl` — the lesson's timeline on the same clock;
- `<classroom_id>-<kind>.<part:03d>.tbl` — one packet log per track per connection.

Durability: frames reach the OS as they are appended; a background task fsyncs every
open log and the events file from a worker thread every `SYNC_INTERVAL` s. Recording
failures are logged and counted, never raised into the router.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiortc.rtp import RtpPacket

from recorder.capture.clock import RoomClock, TrackClock
from recorder.capture.depacketize import AssembledFrame, FrameAssembler, frame_size
from recorder.capture.packetlog import PacketLogWriter, TrackMeta

if TYPE_CHECKING:
    from signaling.live.lesson import LessonEvent, LiveLesson
    from signaling.media.publication import Publication

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 0.5  # s between fsyncs: a power cut loses at most about this much
ANCHOR_HOLD = 1.2  # s a track's first frames wait for its first SR (see recorder/capture/clock.py)
LOG_NAME = re.compile(r"^(?P<classroom>\d+)-(?P<kind>audio|video)\.(?P<part>\d{3,})\.tbl$")


def capture_dir(data_dir: Path, lesson_id: int) -> Path:
    return Path(data_dir) / "recordings" / str(lesson_id) / "capture"


def capture_begun(data_dir: Path, lesson_id: int) -> bool:
    """Whether this lesson's capture has started before (lesson.json is its first write)."""
    return (capture_dir(data_dir, lesson_id) / "lesson.json").exists()


def log_name(classroom_id: int, kind: str, part: int) -> str:
    return f"{classroom_id}-{kind}.{part:03d}.tbl"


@dataclass
class RecordingCounters:
    """One lesson's recording, as the admin pages and tests see it."""

    tracks: int = 0  # packet logs opened
    frames: int = 0
    bytes: int = 0
    errors: int = 0
    keyframe_waits: int = 0  # times a track started waiting for a keyframe (start, loss)
    dropped_frames: int = 0
    lost_packets: int = 0
    events: int = 0
    syncs: int = 0
    sync_ms_max: float = 0.0
    sync_ms_total: float = 0.0


class TrackRecorder:
    """A `TrackSink` writing one publication into packet logs of its room's track."""

    def __init__(self, lesson: LessonRecorder, publication: Publication) -> None:
        codec = publication.codec
        assert codec is not None
        self.lesson = lesson
        self.publication = publication
        self.classroom_id = publication.classroom_id
        self.kind = publication.kind
        self.codec_mime = codec.mimeType
        self.clock_rate = codec.clockRate
        self.assembler = FrameAssembler(self.codec_mime, clock_rate=self.clock_rate)
        self.clock = TrackClock(
            self.clock_rate, lesson.origin_unix, lesson.room_clock(self.classroom_id, self.kind)
        )
        self.writer: PacketLogWriter | None = None
        self.ended = False
        self._held: list[AssembledFrame] = []  # first frames, until the clock is anchored
        self._hold_started: float | None = None
        self._waits_seen = self.assembler.counters.keyframe_waits
        self._lost_seen = 0
        self._dropped_seen = 0
        self._error_logged = 0.0

    # ---------------------------------------------------------------- TrackSink

    @property
    def waiting_for_keyframe(self) -> bool:
        return not self.ended and self.assembler.needs_keyframe

    async def write_rtp(self, packet: RtpPacket, keyframe: bool) -> None:
        # Hot path: every packet of every published track. Never raises.
        if self.ended:
            return
        try:
            self._write(packet)
        except Exception as exc:
            self._failed(exc)

    def resync(self) -> None:
        """Unmuted: the packets in between never came; start over at a keyframe."""
        self.assembler = FrameAssembler(self.codec_mime, clock_rate=self.clock_rate)
        self._waits_seen = self._lost_seen = self._dropped_seen = 0  # counted on next write

    def source_ended(self, publication: Publication) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _write(self, packet: RtpPacket) -> None:
        assembler = self.assembler
        frames = assembler.push(packet)
        counters = self.lesson.counters
        ac = assembler.counters
        if ac.keyframe_waits != self._waits_seen:
            counters.keyframe_waits += ac.keyframe_waits - self._waits_seen
            self._waits_seen = ac.keyframe_waits
        if ac.lost_packets != self._lost_seen or ac.dropped_frames != self._dropped_seen:
            counters.lost_packets += ac.lost_packets - self._lost_seen
            counters.dropped_frames += ac.dropped_frames - self._dropped_seen
            self._lost_seen, self._dropped_seen = ac.lost_packets, ac.dropped_frames
        if assembler.needs_keyframe:
            self.publication.request_keyframe()  # rate limited by the publication
        if not frames:
            return
        now = time.time()
        report = self.publication.sender_report
        sr = None
        if report is not None:
            sr = (report.ntp, report.rtp, now - (time.monotonic() - report.received_at))
        clock = self.clock
        if not clock.anchored:
            # Hold a track's first frames for ANCHOR_HOLD: its first pts must not inherit
            # the lateness of a start-up burst (see recorder/capture/clock.py).
            for frame in frames:
                clock.observe_arrival(frame.rtp_timestamp, now)
                self._held.append(frame)
            if sr is not None:
                clock.observe_sender_report(*sr)
            if now - self._held_since(now) < ANCHOR_HOLD:
                return
            frames, self._held = self._held, []
            for frame in frames:
                self._append(frame, clock.to_lesson_us(frame.rtp_timestamp, None, sr))
            return
        for frame in frames:
            self._append(frame, clock.to_lesson_us(frame.rtp_timestamp, now, sr))

    def _held_since(self, now: float) -> float:
        if self._hold_started is None:
            self._hold_started = now
        return self._hold_started

    def _append(self, frame: AssembledFrame, pts_us: int) -> None:
        if self.writer is None:
            self.writer = self.lesson.open_log(self, frame.data if frame.keyframe else None)
        self.writer.append(pts_us, frame.keyframe, frame.data)
        counters = self.lesson.counters
        counters.frames += 1
        counters.bytes += len(frame.data)

    def _failed(self, exc: Exception) -> None:
        self.lesson.counters.errors += 1
        now = time.monotonic()
        if now - self._error_logged > 10:
            self._error_logged = now
            logger.error(
                "recording lesson %s, classroom %s %s failed: %r",
                self.lesson.lesson_id,
                self.classroom_id,
                self.kind,
                exc,
            )

    def close(self) -> None:
        """Stop taking packets; the log is closed (fsync) off the event loop."""
        if self.ended:
            return
        self.ended = True
        self.publication.unsubscribe(self)
        try:  # frames held for the anchor, or behind a hole that will never be filled now
            for frame in [*self._held, *self.assembler.flush()]:
                self._append(frame, self.clock.to_lesson_us(frame.rtp_timestamp))
            self._held = []
        except Exception as exc:
            self._failed(exc)
        writer, self.writer = self.writer, None
        if writer is not None:
            self.lesson.close_later(writer)


class LessonRecorder:
    """Records one live lesson: its tracks, its timeline, and its lesson.json."""

    def __init__(self, lesson: LiveLesson, data_dir: Path) -> None:
        self.lesson = lesson
        self.lesson_id = lesson.lesson_id
        self.directory = capture_dir(data_dir, lesson.lesson_id)
        self.counters = RecordingCounters()
        self.tracks: list[TrackRecorder] = []
        self.finished = False
        self._writers: list[PacketLogWriter] = []  # open logs, fsynced by the sync task
        self._closing: set[asyncio.Future[None]] = set()
        self._room_clocks: dict[int, tuple[RoomClock, set[str]]] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._parts = self._existing_parts()
        previous = self._read_lesson_json() or {}
        resumed = "clock_origin_unix" in previous
        if resumed:
            # The server restarted mid-lesson (or the lesson came back after a crash was
            # closed as such): same clock, next parts, events appended, "recording" again.
            self.origin_unix = float(previous["clock_origin_unix"])
        else:
            self.origin_unix = time.time()
        self._info = self._lesson_info()
        if not resumed or previous.get("state") != "recording":
            # small and once per lesson; its fsync waits for the first sync tick (thread)
            self._write_lesson_json(self._info, sync=False)
        self._info_synced = False
        self._events_fd = os.open(
            self.directory / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        self._events_dirty = True
        self.write_event(
            self.origin_unix if not resumed else time.time(),
            "recording_started",
            None,
            {"resumed": resumed} if resumed else {},
        )
        if lesson.stage is not None:
            # Put on stage before the recording began: the composite must show it from t=0.
            self.write_event(time.time(), "stage", lesson.stage, {"before_recording": True})
        lesson.publication_observers.append(self.on_publication)
        lesson.event_observers.append(self.on_event)
        for publication in list(lesson.publications.values()):
            if publication.codec is not None and not publication.ended:
                self.on_publication(publication)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the periodic fsync (needs a running loop)."""
        if self._sync_task is None:
            self._sync_task = asyncio.ensure_future(self._sync_loop())

    async def finish(self, reason: str | None) -> None:
        """The lesson ended (or the server stops): close every log; mark complete if the
        lesson really ended (`reason` given)."""
        if self.finished:
            return
        self.finished = True
        try:
            self.lesson.publication_observers.remove(self.on_publication)
        except ValueError:
            pass
        for track in self.tracks:
            track.close()
        if self._sync_task is not None:
            self._sync_task.cancel()
            try:
                await self._sync_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if reason is not None:
            self.write_event(time.time(), "recording_ended", None, {"reason": reason})
        try:
            self.lesson.event_observers.remove(self.on_event)
        except ValueError:
            pass
        await asyncio.to_thread(self._close_events)
        if reason is not None:
            info = {
                **self._info,
                "state": "complete",
                "ended_at_unix": time.time(),
                "end_reason": reason,
            }
            info["tracks"] = self.track_files()
            info["counters"] = asdict(self.counters)
            await asyncio.to_thread(self._write_lesson_json, info, True)

    def track_files(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob("*.tbl"))

    # ---------------------------------------------------------------- observers

    def on_publication(self, publication: Publication) -> None:
        if self.finished or publication.codec is None:
            return
        try:
            track = TrackRecorder(self, publication)
        except Exception as exc:
            self.counters.errors += 1
            logger.exception("cannot record publication %s: %r", publication.track_id, exc)
            return
        self.tracks = [t for t in self.tracks if not t.ended]
        self.tracks.append(track)
        publication.subscribe(track)

    def on_event(self, event: LessonEvent) -> None:
        self.write_event(event.at.timestamp(), event.kind, event.classroom_id, event.detail)

    def write_event(
        self, at_unix: float, kind: str, classroom_id: int | None, detail: dict[str, object]
    ) -> None:
        if self._events_fd < 0:
            return
        line = {
            "t_us": round((at_unix - self.origin_unix) * 1_000_000),
            "kind": kind,
            "classroom_id": classroom_id,
            "detail": detail,
        }
        try:
            data = (json.dumps(line, ensure_ascii=False, default=str) + "\n").encode()
            os.write(self._events_fd, data)  # one write per line: a crash tears at most one
            self._events_dirty = True
            self.counters.events += 1
        except Exception:
            self.counters.errors += 1
            logger.exception("recording lesson %s: event %s not written", self.lesson_id, kind)

    # ---------------------------------------------------------------- for tracks

    def room_clock(self, classroom_id: int, kind: str) -> RoomClock:
        """The room's publisher-clock offset, shared by its audio and video of one
        connection; a track of a kind already seen means a new connection."""
        entry = self._room_clocks.get(classroom_id)
        if entry is None or kind in entry[1]:
            entry = (RoomClock(), set())
            self._room_clocks[classroom_id] = entry
        entry[1].add(kind)
        return entry[0]

    def open_log(self, track: TrackRecorder, keyframe_data: bytes | None) -> PacketLogWriter:
        key = (track.classroom_id, track.kind)
        part = self._parts.get(key, -1) + 1
        self._parts[key] = part
        size = frame_size(track.codec_mime, keyframe_data) if keyframe_data else None
        meta = TrackMeta(
            lesson_id=self.lesson_id,
            classroom_id=track.classroom_id,
            kind=track.kind,
            codec=track.codec_mime,
            clock_rate=track.clock_rate,
            part=part,
            started_at_unix=time.time(),
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        writer = PacketLogWriter(self.directory / log_name(*key, part), meta)
        self._writers.append(writer)
        self.counters.tracks += 1
        return writer

    def close_later(self, writer: PacketLogWriter) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._close_writer(writer)
            return
        future = asyncio.ensure_future(asyncio.to_thread(self._close_writer, writer))
        self._closing.add(future)
        future.add_done_callback(self._closing.discard)

    # ---------------------------------------------------------------- disk

    def _close_writer(self, writer: PacketLogWriter) -> None:
        try:
            writer.close()
        except Exception:
            self.counters.errors += 1
            logger.exception("closing %s failed", writer.path)
        finally:
            try:
                self._writers.remove(writer)
            except ValueError:
                pass

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._sync_all)
            except Exception:
                self.counters.errors += 1
                logger.exception("recording lesson %s: fsync failed", self.lesson_id)
            elapsed = (time.perf_counter() - started) * 1000
            counters = self.counters
            counters.syncs += 1
            counters.sync_ms_total += elapsed
            counters.sync_ms_max = max(counters.sync_ms_max, elapsed)

    def _sync_all(self) -> None:
        """Worker thread: force every open log and the events file to the disk."""
        for writer in list(self._writers):
            try:
                writer.flush(sync=True)
            except Exception:
                self.counters.errors += 1
                logger.exception("fsync of %s failed", writer.path)
        if not self._info_synced:
            _fsync_path(self.directory / "lesson.json")
            _fsync_path(self.directory)
            self._info_synced = True
        if self._events_dirty and self._events_fd >= 0:
            self._events_dirty = False
            os.fsync(self._events_fd)

    def _close_events(self) -> None:
        fd, self._events_fd = self._events_fd, -1
        if fd >= 0:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _existing_parts(self) -> dict[tuple[int, str], int]:
        parts: dict[tuple[int, str], int] = {}
        for path in self.directory.glob("*.tbl"):
            if m := LOG_NAME.match(path.name):
                key = (int(m["classroom"]), m["kind"])
                parts[key] = max(parts.get(key, -1), int(m["part"]))
        return parts

    def _read_lesson_json(self) -> dict[str, Any] | None:
        try:
            data = json.loads((self.directory / "lesson.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _lesson_info(self) -> dict[str, object]:
        roster = self.lesson.roster
        return {
            "lesson_id": roster.lesson_id,
            "title": roster.title,
            "subject": roster.subject,
            "grade": roster.grade,
            "teacher_name": roster.teacher_name,
            "kind": getattr(roster.kind, "value", str(roster.kind)),
            "planned_start": _iso(roster.planned_start),
            "planned_end": _iso(roster.planned_end),
            "rooms": [
                {
                    "classroom_id": r.classroom_id,
                    "name": r.name,
                    "school_name": r.school_name,
                    "role": r.role,
                    "position": r.position,
                }
                for r in roster.rooms
            ],
            "clock_origin_unix": self.origin_unix,
            "state": "recording",
        }

    def _write_lesson_json(self, info: dict[str, object], sync: bool) -> None:
        """Atomically: a reader sees the old file or the new one, never half of one."""
        write_json_atomic(self.directory / "lesson.json", info, sync=sync)


def write_json_atomic(path: Path, data: object, *, sync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    body = json.dumps(data, ensure_ascii=False, indent=2, default=str).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, body)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        _fsync_path(path.parent)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
