"""Live HLS from encoded frames: MPEG-TS segments cut at keyframes, and a sliding playlist.

Nothing here decodes video. H.264 access units (Annex-B, as `recorder.capture.depacketize` gives
them) are muxed as they are into one small MPEG-TS file per segment; audio arrives already
as AAC (ADTS framed, see `OpusToAac`), because browsers do not play Opus inside MPEG-TS.

Why MPEG-TS + AAC rather than fMP4 + Opus: TS segments with H.264 and AAC play in every
HLS client there is (Safari and iOS natively, hls.js on Chromium/Firefox, Android, smart
TVs, VLC, ffmpeg), while Opus-in-fMP4 HLS needs recent Apple systems. The price is an
Opus→AAC transcode of one mono voice track, about 1% of a core (docs/PERFORMANCE.md);
the video, where all the cost would be, is never decoded.

Each segment is muxed on its own by PyAV (so each is independently decodable: PAT/PMT
first, keyframe first), then its transport-stream continuity counters are renumbered to
continue the previous segment's, as one long-lived muxer would have written them (a
player reading segments back to back then sees no continuity error). Timestamps are one
continuous 90 kHz timeline across segments, also across a publisher's reconnection, which
is marked EXT-X-DISCONTINUITY (its SPS may differ).

Files are written tmp + rename (readers never see half a segment or half a playlist), by
one worker thread in order, so the event loop never waits on the disk or the muxer.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av

logger = logging.getLogger(__name__)

PLAYLIST_NAME = "index.m3u8"
SEGMENT_PATTERN = re.compile(r"^(\d{6,9})\.ts$")
CLOCK = 90000  # the segments' timeline: MPEG-TS time base
TIME_BASE = Fraction(1, CLOCK)
TS_PACKET = 188

DEFAULT_SEGMENT_TARGET = 2.0  # s; see docs/broadcast.md for the latency trade-off
DEFAULT_WINDOW = 6  # segments listed in the live playlist
KEEP_AFTER_WINDOW = 6  # segments kept on disk after leaving the playlist (slow readers)
AUDIO_GRACE = 0.4  # s a cut segment still waits for audio timestamped before the cut


def segment_name(sequence: int) -> str:
    return f"{sequence:06d}.ts"


# --------------------------------------------------------------- playlist


@dataclass
class Segment:
    sequence: int
    duration: float  # s
    program_date_time: datetime  # wall clock at capture of its first frame
    discontinuity: bool = False
    size: int = 0

    @property
    def name(self) -> str:
        return segment_name(self.sequence)


@dataclass
class LivePlaylist:
    """The sliding window of a live HLS media playlist (RFC 8216), rendered as text."""

    segment_target: float = DEFAULT_SEGMENT_TARGET
    window: int = DEFAULT_WINDOW
    segments: list[Segment] = field(default_factory=list)
    discontinuity_sequence: int = 0
    ended: bool = False
    _target_duration: int = 0

    def __post_init__(self) -> None:
        self._target_duration = max(1, math.ceil(self.segment_target))

    @property
    def media_sequence(self) -> int:
        return self.segments[0].sequence if self.segments else 0

    @property
    def target_duration(self) -> int:
        return self._target_duration

    def add(self, segment: Segment) -> list[Segment]:
        """List a new segment; returns the segments that slid out of the window."""
        self.segments.append(segment)
        # TARGETDURATION must bound every EXTINF (rounded) and should not change: it only
        # grows, when a publisher ignored our keyframe requests for a while.
        self._target_duration = max(self._target_duration, round(segment.duration))
        evicted = []
        while len(self.segments) > self.window:
            gone = self.segments.pop(0)
            if self.segments[0].discontinuity:
                # RFC 8216 4.3.3.3: count the discontinuity tags that left the playlist.
                self.discontinuity_sequence += 1
            evicted.append(gone)
        return evicted

    def render(self) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self._target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        for i, segment in enumerate(self.segments):
            if segment.discontinuity and i > 0:
                lines.append("#EXT-X-DISCONTINUITY")
            stamp = segment.program_date_time.astimezone(UTC).isoformat(timespec="milliseconds")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{stamp.replace('+00:00', 'Z')}")
            lines.append(f"#EXTINF:{segment.duration:.3f},")
            lines.append(segment.name)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------- TS muxing


def adts_frame(payload: bytes, sample_rate: int, channels: int) -> bytes:
    """One raw AAC-LC frame with its 7-byte ADTS header (ISO 14496-3 1.A.2), as TS wants."""
    index = _ADTS_RATES.index(sample_rate)
    length = len(payload) + 7
    return (
        bytes(
            (
                0xFF,
                0xF1,  # sync word, MPEG-4, layer 0, no CRC
                (1 << 6) | (index << 2) | (channels >> 2),  # profile AAC-LC (object type 2 - 1)
                ((channels & 3) << 6) | (length >> 11),
                (length >> 3) & 0xFF,
                ((length & 7) << 5) | 0x1F,
                0xFC,  # buffer fullness 0x7FF (VBR), one raw data block
            )
        )
        + payload
    )


_ADTS_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


def continue_counters(data: bytearray, counters: dict[int, int]) -> None:
    """Renumber TS continuity counters in place to follow `counters` (pid -> last cc).

    A packet carrying payload takes the next counter of its PID; one with only an
    adaptation field repeats the current one (ISO 13818-1 2.4.3.3).
    """
    for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        if data[offset] != 0x47:
            continue
        pid = ((data[offset + 1] & 0x1F) << 8) | data[offset + 2]
        if pid == 0x1FFF:
            continue
        flags = data[offset + 3]
        last = counters.get(pid)
        if flags & 0x10:
            cc = 0 if last is None else (last + 1) & 0x0F
        else:
            cc = 0 if last is None else last
        counters[pid] = cc
        data[offset + 3] = (flags & 0xF0) | cc


@dataclass
class _Unit:
    data: bytes
    pts: int  # 90 kHz
    keyframe: bool = False


def mux_segment(video: list[_Unit], audio: list[_Unit], *, audio_rate: int) -> bytes:
    """One self-contained MPEG-TS segment: H.264 as given, AAC (ADTS) as given."""
    buffer = io.BytesIO()
    container = av.open(buffer, "w", format="mpegts")
    try:
        video_stream = container.add_mux_stream("h264")
        video_stream.time_base = TIME_BASE
        audio_stream = None
        if audio:
            audio_stream = container.add_mux_stream("aac", rate=audio_rate)
            audio_stream.time_base = TIME_BASE
        # Interleave by time ourselves: the muxer then writes in this order.
        units = [(u.pts, 0, u) for u in video]
        units += [(u.pts, 1, u) for u in audio]
        units.sort(key=lambda x: (x[0], x[1]))
        for pts, kind, unit in units:
            packet = av.Packet(unit.data)
            stream = video_stream if kind == 0 else audio_stream
            assert stream is not None  # audio units come only with an audio stream
            packet.stream = stream
            packet.time_base = TIME_BASE
            packet.pts = packet.dts = pts
            if unit.keyframe or kind == 1:
                packet.is_keyframe = True
            container.mux(packet)
    finally:
        container.close()
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- writer


@dataclass
class _OpenSegment:
    sequence: int
    start_pts: int
    wall_start: float  # time.time() at capture of the first frame
    discontinuity: bool
    video: list[_Unit] = field(default_factory=list)
    audio: list[_Unit] = field(default_factory=list)
    end_pts: int | None = None
    cut_at: float = 0.0  # time.monotonic() when cut


@dataclass
class WriterCounters:
    segments: int = 0
    bytes: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    frames_before_keyframe: int = 0  # dropped: no segment can start without a keyframe
    late_audio: int = 0  # older than the segment it arrived in (kept, counted)
    write_errors: int = 0
    overlong_segments: int = 0  # longer than twice the target: keyframe requests ignored


class HlsLiveWriter:
    """Encoded video and audio in (event loop), live HLS on disk out (a worker thread).

    `add_video` cuts a new segment at a keyframe once the open one lasts at least half the
    target; the owner asks the publisher for a keyframe when `open_duration` nears the
    target, so segments stay close to it. Not thread-safe: call from one thread (the loop).
    """

    def __init__(
        self,
        directory: Path,
        *,
        segment_target: float = DEFAULT_SEGMENT_TARGET,
        window: int = DEFAULT_WINDOW,
        keep_after_window: int = KEEP_AFTER_WINDOW,
        audio_rate: int = 48000,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> None:
        self.directory = directory
        self.segment_target = segment_target
        self.audio_rate = audio_rate
        self.keep_after_window = keep_after_window
        self.counters = WriterCounters()
        self.playlist = LivePlaylist(segment_target=segment_target, window=window)
        self.last_segment_at: float | None = None  # time.time() when the last was listed
        self._on_segment = on_segment
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hls-live")
        self._lock = threading.Lock()  # playlist: rendered by the worker, read by the loop
        self._cc: dict[int, int] = {}
        self._open: _OpenSegment | None = None
        self._closing: _OpenSegment | None = None
        self._discontinuity = False
        self._last_video_pts: int | None = None
        self._frame_interval = CLOCK // 15
        self._pending: Future[None] | None = None
        self._on_disk: list[int] = []
        self.closed = False
        directory.mkdir(parents=True, exist_ok=True)
        self._next_sequence = self._resume_sequence()

    # ------------------------------------------------------------- input

    def open_duration(self, pts: int | None = None) -> float:
        """Seconds of video in the open segment (up to `pts`, or to the newest frame)."""
        if self._open is None:
            return 0.0
        end = pts if pts is not None else self._last_video_pts
        return 0.0 if end is None else (end - self._open.start_pts) / CLOCK

    @property
    def has_open_segment(self) -> bool:
        return self._open is not None

    def add_video(self, data: bytes, pts: int, keyframe: bool, wall: float) -> None:
        """One H.264 access unit (hot path, per frame); `wall` = its capture time."""
        if self.closed:
            return
        self._flush_closing_if_stale()
        segment = self._open
        if keyframe and (segment is None or self.open_duration(pts) >= self.segment_target / 2):
            self._cut(pts, wall)
            segment = self._open
        if segment is None:
            self.counters.frames_before_keyframe += 1
            return
        if self._last_video_pts is not None and pts > self._last_video_pts:
            self._frame_interval = min(pts - self._last_video_pts, CLOCK)
        self._last_video_pts = pts
        segment.video.append(_Unit(data, pts, keyframe))
        self.counters.video_frames += 1

    def add_audio(self, adts: bytes, pts: int) -> None:
        """One ADTS-framed AAC frame (hot path); it joins the segment its time falls in."""
        if self.closed:
            return
        closing = self._closing
        if closing is not None and closing.end_pts is not None:
            if pts < closing.end_pts:
                closing.audio.append(_Unit(adts, pts))
                self.counters.audio_frames += 1
                return
            self._flush_closing()
        segment = self._open
        if segment is None:
            return  # audio before the first keyframe has no segment to go in
        if pts < segment.start_pts - CLOCK:
            self.counters.late_audio += 1
        segment.audio.append(_Unit(adts, pts))
        self.counters.audio_frames += 1

    def discontinuity(self) -> None:
        """The source restarted (a reconnection): end the open segment, mark the next."""
        self._end_open_segment()
        self._discontinuity = True

    def finish(self, *, ended: bool = True) -> Future[None]:
        """Write what is open and the final playlist (with EXT-X-ENDLIST if `ended`)."""
        if self.closed:
            return self._pending or _done()
        self._end_open_segment()
        self._flush_closing()
        self.closed = True

        def job() -> None:
            with self._lock:
                self.playlist.ended = ended
                text = self.playlist.render()
            write_atomically(self.directory / PLAYLIST_NAME, text.encode())

        future = self._submit(job)
        self._executor.shutdown(wait=False)
        return future

    def render_playlist(self) -> str:
        with self._lock:
            return self.playlist.render()

    def listed(self) -> list[Segment]:
        with self._lock:
            return list(self.playlist.segments)

    # ---------------------------------------------------------- internals

    def _cut(self, pts: int, wall: float) -> None:
        self._end_open_segment(end_pts=pts)
        self._open = _OpenSegment(
            sequence=self._next_sequence,
            start_pts=pts,
            wall_start=wall,
            discontinuity=self._discontinuity,
        )
        self._next_sequence += 1
        self._discontinuity = False

    def _end_open_segment(self, end_pts: int | None = None) -> None:
        segment = self._open
        self._open = None
        if segment is None:
            return
        if end_pts is None:
            last = self._last_video_pts if self._last_video_pts is not None else segment.start_pts
            end_pts = last + self._frame_interval
        segment.end_pts = end_pts
        segment.cut_at = time.monotonic()
        self._flush_closing()
        # Audio captured before the cut may still be on its way: wait a little for it.
        self._closing = segment

    def _flush_closing_if_stale(self) -> None:
        closing = self._closing
        if closing is not None and time.monotonic() - closing.cut_at > AUDIO_GRACE:
            self._flush_closing()

    def _flush_closing(self) -> None:
        segment = self._closing
        self._closing = None
        if segment is None or not segment.video:
            return
        assert segment.end_pts is not None
        duration = (segment.end_pts - segment.start_pts) / CLOCK
        if duration > 2 * self.segment_target:
            self.counters.overlong_segments += 1
        listed = Segment(
            sequence=segment.sequence,
            duration=max(duration, 0.001),
            program_date_time=datetime.fromtimestamp(segment.wall_start, UTC),
            discontinuity=segment.discontinuity,
        )
        video, audio = segment.video, segment.audio
        self._submit(lambda: self._write_segment(listed, video, audio))

    def _submit(self, job: Callable[[], None]) -> Future[None]:
        def run() -> None:
            try:
                job()
            except Exception:
                self.counters.write_errors += 1
                logger.exception("live HLS write failed in %s", self.directory)

        self._pending = self._executor.submit(run)
        return self._pending

    def _write_segment(self, segment: Segment, video: list[_Unit], audio: list[_Unit]) -> None:
        # Worker thread: mux, write, list, forget old files.
        data = bytearray(mux_segment(video, audio, audio_rate=self.audio_rate))
        continue_counters(data, self._cc)
        segment.size = len(data)
        write_atomically(self.directory / segment.name, bytes(data))
        self._on_disk.append(segment.sequence)
        with self._lock:
            self.playlist.add(segment)
            text = self.playlist.render()
        write_atomically(self.directory / PLAYLIST_NAME, text.encode())
        self.last_segment_at = time.time()
        self.counters.segments += 1
        self.counters.bytes += segment.size
        keep = self.playlist.window + self.keep_after_window
        while len(self._on_disk) > keep:
            old = self._on_disk.pop(0)
            try:
                os.unlink(self.directory / segment_name(old))
            except FileNotFoundError:
                pass
        if self._on_segment is not None:
            self._on_segment(segment)

    def _resume_sequence(self) -> int:
        """After a server restart mid-lesson, number on from the files already there."""
        numbers = [
            int(m[1]) for p in self.directory.iterdir() if (m := SEGMENT_PATTERN.match(p.name))
        ]
        if not numbers:
            return 0
        self._discontinuity = True
        return max(numbers) + 1


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


# ------------------------------------------------------------ audio: Opus → AAC


class OpusToAac:
    """The one transcode of the broadcast: the teacher's Opus voice to mono AAC-LC.

    Per packet (20 ms) about 0.2 ms of CPU with FFmpeg's AAC encoder in its fast coder.
    Input timestamps are 48 kHz sample counts; output is ADTS frames with 90 kHz pts.
    A gap in the input (loss, mute) is filled with silence up to MAX_FILL, and a longer
    one restarts the encoder at the new time, so audio never drifts from video.
    """

    SAMPLE_RATE = 48000
    MAX_FILL = 1.0  # s

    def __init__(self, bitrate: int = 64000) -> None:
        self.bitrate = bitrate
        self.frames_in = 0
        self.frames_out = 0
        self.decode_errors = 0
        self.restarts = 0
        self._decoder = av.CodecContext.create("opus", "r")
        # Decode straight to mono (Opus decoders downmix for free): no resampling step.
        self._decoder.layout = "mono"
        self._decoder.sample_rate = self.SAMPLE_RATE
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=self.SAMPLE_RATE)
        self._encoder: av.audio.codeccontext.AudioCodecContext | None = None
        self._next: int | None = None  # sample time the encoder expects next

    def _new_encoder(self) -> av.audio.codeccontext.AudioCodecContext:
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate = self.SAMPLE_RATE
        encoder.layout = "mono"
        encoder.format = "fltp"
        encoder.bit_rate = self.bitrate
        encoder.time_base = Fraction(1, self.SAMPLE_RATE)
        encoder.options = {"aac_coder": "fast"}
        encoder.open()
        return encoder

    def push(self, opus: bytes, samples_at: int) -> list[tuple[bytes, int]]:
        """One Opus packet at `samples_at` (48 kHz); returns [(adts frame, pts 90 kHz)]."""
        packet = av.Packet(opus)
        packet.pts = samples_at
        packet.time_base = Fraction(1, self.SAMPLE_RATE)
        try:
            decoded = self._decoder.decode(packet)
        except av.error.FFmpegError:
            self.decode_errors += 1
            return []
        out: list[tuple[bytes, int]] = []
        for frame in decoded:
            if (frame.format.name, frame.layout.name, frame.sample_rate) == (
                "fltp", "mono", self.SAMPLE_RATE
            ):
                monos = [frame]
            else:
                monos = self._resampler.resample(frame)
            for mono in monos:
                self._encode(mono, samples_at, out)
                samples_at += mono.samples
        return out

    def flush(self) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        if self._encoder is not None:
            self._drain(self._encoder.encode(None), out)
            self._encoder = None
            self._next = None
        return out

    def _encode(self, frame: av.AudioFrame, at: int, out: list[tuple[bytes, int]]) -> None:
        if self._encoder is not None and self._next is not None:
            gap = at - self._next
            if gap > self.MAX_FILL * self.SAMPLE_RATE or gap < -self.SAMPLE_RATE // 10:
                out.extend(self.flush())
                self.restarts += 1
            elif gap >= frame.samples // 2:
                self._encode_frame(_silence(gap, self._next), out)
            else:
                at = self._next  # jitter of a few samples: keep the encoder's count
        if self._encoder is None:
            self._encoder = self._new_encoder()
        frame.pts = at
        frame.time_base = Fraction(1, self.SAMPLE_RATE)
        self._encode_frame(frame, out)
        self.frames_in += 1

    def _encode_frame(self, frame: av.AudioFrame, out: list[tuple[bytes, int]]) -> None:
        assert self._encoder is not None and frame.pts is not None
        self._next = frame.pts + frame.samples
        self._drain(self._encoder.encode(frame), out)

    def _drain(self, packets: list[av.Packet], out: list[tuple[bytes, int]]) -> None:
        for p in packets:
            if p.pts is None:
                continue
            out.append(
                (adts_frame(bytes(p), self.SAMPLE_RATE, 1), p.pts * CLOCK // self.SAMPLE_RATE)
            )
            self.frames_out += 1


def _silence(samples: int, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="mono", samples=samples)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = OpusToAac.SAMPLE_RATE
    frame.pts = pts
    frame.time_base = Fraction(1, OpusToAac.SAMPLE_RATE)
    return frame
