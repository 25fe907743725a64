"""Live broadcast of a lesson (名校网络课堂) as HLS: one more client of the media router.

A `LiveBroadcaster` subscribes to the teacher's video and audio publications exactly as a
receiving room's leg does (it implements `signaling.media.publication.TrackSink`), assembles
the RTP into frames (`recorder.capture.depacketize.FrameAssembler`), puts them on the lesson clock
(`recorder.capture.clock.TrackClock`, RTCP SR based, so audio and video stay in sync) and hands
them to `recorder.broadcast.hls_live.HlsLiveWriter`, which writes MPEG-TS segments and the sliding
playlist under <data_dir>/broadcast/<lesson_id>/. Any number of viewers then read plain
files over HTTP (`recorder.broadcast.http`): the router's cost does not grow with them.

What is broadcast: the main classroom's (teacher's) camera and microphone, whatever is on
stage. A rural room on stage is seen by the other rooms of the lesson, but a public
broadcast must not carry rural pupils' faces and voices to anyone on the internet
(the lesson policy in signaling/live/lesson.py allows it only inside the lesson).

Segments are cut at keyframes; to keep them near `segment_target` the broadcaster asks the
publisher for a keyframe (PLI, through `Publication.request_keyframe`) shortly before each
target, as a newly joined room would. Video is never decoded; the only transcode is the
teacher's Opus voice to AAC (see recorder/broadcast/hls_live.py for why), counted in the lesson's
`transcodes`. A VP8 publisher cannot be broadcast (HLS carries H.264, not VP8): the
broadcaster then reports state `unsupported_codec` and writes no playlist.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiortc.rtp import RtpPacket

from classroom.models import LessonKind
from recorder.broadcast.hls_live import (
    CLOCK,
    DEFAULT_SEGMENT_TARGET,
    DEFAULT_WINDOW,
    PLAYLIST_NAME,
    HlsLiveWriter,
    OpusToAac,
)
from recorder.capture.clock import RoomClock, TrackClock
from recorder.capture.depacketize import FrameAssembler
from signaling.live.lesson import LiveLesson
from signaling.live.state import BroadcastState
from signaling.media.publication import Publication

logger = logging.getLogger(__name__)

# Ask for the keyframe this long before the segment target: the publisher encodes its next
# frame as an IDR (one frame interval) and it crosses the network once.
KEYFRAME_LEAD = 0.25  # s
KEYFRAME_RETRY = 1.0  # s between requests while a keyframe is overdue
# Timestamps start this far into the MPEG-TS clock so SR corrections never go negative.
TIMELINE_OFFSET = 10 * CLOCK
STALLED_AFTER = 3.0  # segment targets without a new segment: state "stalled"


def live_path(lesson_id: int, name: str = PLAYLIST_NAME) -> str:
    return f"/live/{lesson_id}/{name}"


def is_public(kind: str, broadcast: bool) -> bool:
    return broadcast and kind == LessonKind.FAMOUS_SCHOOL


class LiveBroadcaster:
    """The HLS live output of one lesson; subscribes to the teacher like a room."""

    def __init__(
        self,
        lesson: LiveLesson,
        directory: Path,
        *,
        segment_target: float = DEFAULT_SEGMENT_TARGET,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.lesson = lesson
        self.lesson_id = lesson.lesson_id
        self.source_classroom_id = lesson.main_id
        self.public = is_public(str(lesson.roster.kind), lesson.roster.broadcast)
        self.directory = directory
        self.segment_target = segment_target
        self.origin_unix = time.time()
        self.writer = HlsLiveWriter(directory, segment_target=segment_target, window=window)
        self.video_codec: str | None = None
        self.unsupported: str | None = None
        self.ended = False
        self.keyframe_requests = 0
        self.discontinuities = 0
        self.audio_transcoded = False
        self._sinks: list[_BroadcastSink] = []
        self._room_clock = RoomClock()
        self._seen_kinds: set[str] = set()

    # ---------------------------------------------------------- lifecycle

    def attach(self) -> None:
        """Hear of the lesson's tracks from now on, and take those already published."""
        self.lesson.publication_observers.append(self._on_publication)
        for publication in list(self.lesson.publications.values()):
            if publication.codec is not None and not publication.ended:
                self._on_publication(publication)

    async def finish(self, *, ended: bool = True) -> None:
        """Stop listening; write the last segment and the final playlist (EXT-X-ENDLIST)."""
        if self._on_publication in self.lesson.publication_observers:
            self.lesson.publication_observers.remove(self._on_publication)
        for sink in self._sinks:
            sink.close()
        self._sinks.clear()
        self.ended = ended
        await asyncio.wrap_future(self.writer.finish(ended=ended))

    # ------------------------------------------------------------ sources

    def _on_publication(self, publication: Publication) -> None:
        if publication.classroom_id != self.source_classroom_id or publication.codec is None:
            return
        mime = publication.codec.mimeType
        if not any(not s.publication.ended for s in self._sinks):
            # A new connection of the teacher's room (the first, or a reconnection): its
            # own clock offset; tracks of one connection share it, so they stay in sync.
            self._room_clock = RoomClock()
        if publication.kind in self._seen_kinds:
            # A reconnection: a new encoder whose parameters may differ.
            self.discontinuities += 1
            self.writer.discontinuity()
        self._seen_kinds.add(publication.kind)
        for sink in [s for s in self._sinks if s.publication.kind == publication.kind]:
            sink.close()
            self._sinks.remove(sink)
        if publication.kind == "video":
            self.video_codec = mime
            if mime.lower() != "video/h264":
                self.unsupported = (
                    f"the teacher publishes {mime}; HLS broadcast needs an H.264 publisher"
                )
                logger.warning("lesson %s: no broadcast: %s", self.lesson_id, self.unsupported)
                return
            self.unsupported = None
            sink = _VideoSink(self, publication)
        elif publication.kind == "audio":
            if mime.lower() != "audio/opus":
                logger.warning("lesson %s: audio %s not broadcast", self.lesson_id, mime)
                return
            if not self.audio_transcoded:
                self.audio_transcoded = True
                self.lesson.transcodes += 1  # counted: docs/ARCHITECTURE.md, decision 1
            sink = _AudioSink(self, publication)
        else:
            return
        self._sinks.append(sink)
        publication.subscribe(sink)

    def track_clock(self, publication: Publication) -> TrackClock:
        assert publication.codec is not None
        return TrackClock(publication.codec.clockRate, self.origin_unix, self._room_clock)

    # -------------------------------------------------------------- state

    def state(self) -> BroadcastState:
        writer = self.writer
        listed = writer.listed()
        now = time.time()
        age = now - writer.last_segment_at if writer.last_segment_at is not None else None
        delay = None
        if listed and writer.last_segment_at is not None:
            last = listed[-1]
            delay = writer.last_segment_at - (
                last.program_date_time.timestamp() + last.duration
            )
        if self.ended:
            state = "ended"
        elif self.unsupported:
            state = "unsupported_codec"
        elif age is None:
            state = "waiting"
        elif age > STALLED_AFTER * self.segment_target:
            state = "stalled"
        else:
            state = "live"
        return BroadcastState(
            lesson_id=self.lesson_id,
            state=state,
            playlist_url=live_path(self.lesson_id),
            public=self.public,
            source_classroom_id=self.source_classroom_id,
            video_codec=self.video_codec,
            audio_transcoded=self.audio_transcoded,
            segment_target_s=self.segment_target,
            segments=writer.counters.segments,
            media_sequence=listed[0].sequence if listed else 0,
            last_segment_age_s=round(age, 3) if age is not None else None,
            listing_delay_s=round(delay, 3) if delay is not None else None,
            keyframe_requests=self.keyframe_requests,
            discontinuities=self.discontinuities,
            reason=self.unsupported,
        )


class _BroadcastSink:
    """What the video and audio sinks share: a TrackSink on one publication."""

    def __init__(self, broadcaster: LiveBroadcaster, publication: Publication) -> None:
        assert publication.codec is not None
        self.broadcaster = broadcaster
        self.publication = publication
        self.writer = broadcaster.writer
        self.assembler = FrameAssembler(
            publication.codec.mimeType, clock_rate=publication.codec.clockRate
        )
        self.clock = broadcaster.track_clock(publication)
        self.closed = False

    @property
    def waiting_for_keyframe(self) -> bool:
        return False

    async def write_rtp(self, packet: RtpPacket, keyframe: bool) -> None:
        raise NotImplementedError  # _VideoSink and _AudioSink each write their own kind

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.publication.unsubscribe(self)

    def source_ended(self, publication: Publication) -> None:
        self.closed = True

    def resync(self) -> None:
        """Unmuted after a pause: the stream resumes with a hole; start clean."""
        codec = self.publication.codec
        assert codec is not None
        self.assembler = FrameAssembler(codec.mimeType, clock_rate=codec.clockRate)

    def lesson_us(self, rtp_timestamp: int) -> int:
        report = self.publication.sender_report
        sr = None
        if report is not None:
            # SenderReport.received_at is monotonic; the lesson clock speaks Unix time.
            sr = (report.ntp, report.rtp, time.time() - (time.monotonic() - report.received_at))
        return self.clock.to_lesson_us(rtp_timestamp, sender_report=sr)


class _VideoSink(_BroadcastSink):
    def __init__(self, broadcaster: LiveBroadcaster, publication: Publication) -> None:
        super().__init__(broadcaster, publication)
        self._last_request = 0.0

    @property
    def waiting_for_keyframe(self) -> bool:
        # The publication retries its PLI while this is true (a lost PLI must not stall us).
        return self.assembler.needs_keyframe or not self.writer.has_open_segment

    async def write_rtp(self, packet: RtpPacket, keyframe: bool) -> None:
        # Hot path: every video packet of the teacher.
        if self.closed:
            return
        for frame in self.assembler.push(packet):
            us = self.lesson_us(frame.rtp_timestamp)
            pts = us * 9 // 100 + TIMELINE_OFFSET
            wall = self.broadcaster.origin_unix + us / 1_000_000
            self.writer.add_video(frame.data, pts, frame.keyframe, wall)
        if self.writer.open_duration() >= self.broadcaster.segment_target - KEYFRAME_LEAD:
            self._ask_keyframe()

    def _ask_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_request >= KEYFRAME_RETRY:
            self._last_request = now
            if self.publication.request_keyframe():
                self.broadcaster.keyframe_requests += 1

    def resync(self) -> None:
        super().resync()
        self.writer.discontinuity()
        self.broadcaster.discontinuities += 1

    def source_ended(self, publication: Publication) -> None:
        super().source_ended(publication)
        self.writer.discontinuity()


class _AudioSink(_BroadcastSink):
    def __init__(self, broadcaster: LiveBroadcaster, publication: Publication) -> None:
        super().__init__(broadcaster, publication)
        self.transcoder = OpusToAac()

    async def write_rtp(self, packet: RtpPacket, keyframe: bool) -> None:
        # Hot path: every audio packet of the teacher (50 a second), one Opus→AAC step each.
        if self.closed:
            return
        for frame in self.assembler.push(packet):
            us = self.lesson_us(frame.rtp_timestamp)
            samples = us * 48 // 1000 + TIMELINE_OFFSET * 48000 // CLOCK
            for adts, pts in self.transcoder.push(frame.data, samples):
                self.writer.add_audio(adts, pts)

    def _flush(self) -> None:
        for adts, pts in self.transcoder.flush():
            self.writer.add_audio(adts, pts)

    def close(self) -> None:
        if not self.closed:
            self._flush()
        super().close()

    def source_ended(self, publication: Publication) -> None:
        if not self.closed:
            self._flush()
        super().source_ended(publication)


# ------------------------------------------------------------- the service


@dataclass
class Access:
    broadcast: bool
    public: bool
    checked_at: float


class Broadcasts:
    """Every broadcast of this server process, and who may watch which lesson."""

    ACCESS_TTL = 30.0  # s a database answer about a lesson is reused

    def __init__(
        self,
        root: Path,
        *,
        segment_target: float = DEFAULT_SEGMENT_TARGET,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.root = root
        self.segment_target = segment_target
        self.window = window
        self.live: dict[int, LiveBroadcaster] = {}
        self.ended: dict[int, BroadcastState] = {}
        self._access: dict[int, Access] = {}

    def directory(self, lesson_id: int) -> Path:
        return self.root / str(lesson_id)

    def lesson_created(self, lesson: LiveLesson) -> None:
        roster = lesson.roster
        self._access[lesson.lesson_id] = Access(
            roster.broadcast, is_public(str(roster.kind), roster.broadcast), time.monotonic()
        )
        if roster.broadcast:
            # Viewers see "waiting" through the lead-in: the broadcast starts with the class.
            lesson.when_class_starts(self._start)

    def _start(self, lesson: LiveLesson) -> None:
        broadcaster = LiveBroadcaster(
            lesson,
            self.directory(lesson.lesson_id),
            segment_target=self.segment_target,
            window=self.window,
        )
        self.live[lesson.lesson_id] = broadcaster
        self.ended.pop(lesson.lesson_id, None)
        broadcaster.attach()
        logger.info("lesson %s: live broadcast at %s", lesson.lesson_id,
                    live_path(lesson.lesson_id))

    async def lesson_ended(self, lesson: LiveLesson, reason: str) -> None:
        broadcaster = self.live.pop(lesson.lesson_id, None)
        if broadcaster is not None:
            await broadcaster.finish(ended=True)
            self.ended[lesson.lesson_id] = broadcaster.state()

    async def shutdown(self) -> None:
        """The server stops mid-lesson: close files, no ENDLIST (the lesson goes on)."""
        live, self.live = self.live, {}
        await asyncio.gather(*(b.finish(ended=False) for b in live.values()),
                             return_exceptions=True)

    def state(self, lesson_id: int) -> BroadcastState | None:
        """The broadcast of a lesson, live or ended in this process; None if none."""
        broadcaster = self.live.get(lesson_id)
        if broadcaster is not None:
            return broadcaster.state()
        return self.ended.get(lesson_id)

    def known_access(self, lesson_id: int) -> Access | None:
        access = self._access.get(lesson_id)
        if access is None:
            return None
        if lesson_id in self.live or time.monotonic() - access.checked_at < self.ACCESS_TTL:
            return access
        return None

    def remember_access(self, lesson_id: int, broadcast: bool, kind: str) -> Access:
        access = Access(broadcast, is_public(kind, broadcast), time.monotonic())
        self._access[lesson_id] = access
        return access

    def remove(self, lesson_id: int) -> None:
        """Delete a finished broadcast's files (the recording is the lasting copy)."""
        if lesson_id not in self.live:
            shutil.rmtree(self.directory(lesson_id), ignore_errors=True)


BROADCASTS = web.AppKey("broadcasts", Broadcasts)
