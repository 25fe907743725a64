"""What a classroom agent receives: per-track frame rate, bitrate, latency, and content.

Each received track gets a consumer that pulls decoded frames (aiortc decodes them) and
keeps the figures a teacher's box would show and a test would assert: which room a video
comes from (read from the test pattern), whether its counter advances, the capture-to-
display latency, and the dominant frequency of audio (each room publishes its own tone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from classroom.agent.testpattern import read_pattern_frame

logger = logging.getLogger(__name__)

AUDIO_WINDOW_S = 0.5


@dataclass
class TrackReception:
    mid: str
    kind: str
    classroom_id: int | None = None
    codec: str | None = None  # e.g. "video/H264"
    frames: int = 0
    bytes: int = 0
    last_tag: int | None = None
    last_counter: int | None = None
    counter_regressions: int = 0
    decoded_patterns: int = 0
    width: int = 0
    height: int = 0
    first_frame_at: float | None = None
    first_frame_unix: float | None = None
    last_frame_at: float | None = None
    tone_hz: float | None = None
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=300))
    _audio: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=50))
    _rate_frames: int = 0
    _rate_bytes: int = 0
    _rate_stamp: float = field(default_factory=time.monotonic)
    fps: float = 0.0
    kbps: float = 0.0

    def take_rates(self) -> None:
        """Fold counts since the last report into fps and kbit/s."""
        now = time.monotonic()
        elapsed = now - self._rate_stamp
        if elapsed <= 0:
            return
        self.fps = (self.frames - self._rate_frames) / elapsed
        self.kbps = (self.bytes - self._rate_bytes) * 8 / elapsed / 1000
        self._rate_frames, self._rate_bytes, self._rate_stamp = self.frames, self.bytes, now
        if self.kind == "audio":
            self.tone_hz = dominant_frequency(list(self._audio), 48000)

    def report(self) -> dict[str, object]:
        latencies = sorted(self.latencies_ms)
        return {
            "mid": self.mid,
            "kind": self.kind,
            "codec": self.codec,
            "classroom_id": self.classroom_id,
            "frames": self.frames,
            "first_frame_unix": self.first_frame_unix,
            "fps": round(self.fps, 1),
            "kbps": round(self.kbps, 1),
            "width": self.width,
            "height": self.height,
            "tag": self.last_tag,
            "counter": self.last_counter,
            "counter_regressions": self.counter_regressions,
            "latency_ms_p50": round(latencies[len(latencies) // 2], 1) if latencies else None,
            "latency_ms_p95": (
                round(latencies[int(len(latencies) * 0.95)], 1) if latencies else None
            ),
            "tone_hz": round(self.tone_hz, 1) if self.tone_hz else None,
        }


def dominant_frequency(chunks: list[np.ndarray], sample_rate: int) -> float | None:
    if not chunks:
        return None
    samples = np.concatenate(chunks).astype(np.float32)
    samples = samples[-int(sample_rate * AUDIO_WINDOW_S) :]
    if len(samples) < 1024 or not np.any(samples):
        return None
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[:3] = 0  # ignore DC
    peak = int(np.argmax(spectrum))
    return peak * sample_rate / len(samples)


def count_received_bytes(receiver: RTCRtpReceiver, reception: TrackReception) -> None:
    """Count RTP payload bytes per track, which aiortc's stats do not report.

    Wraps the instance's packet handler (the entry point aiortc's transport calls, see
    signaling/media/rtp_glue.py) and passes every packet on unchanged.
    """
    original = receiver._handle_rtp_packet

    async def counted(packet: RtpPacket, arrival_time_ms: int) -> None:
        reception.bytes += len(packet.payload)
        await original(packet, arrival_time_ms=arrival_time_ms)

    # an instance attribute shadowing aiortc's (private) method: what rtp_glue.py does too
    receiver._handle_rtp_packet = counted  # type: ignore[method-assign]


class FrameSaver:
    """Writes a received video track to an MP4 file (re-encoded: this is a debugging aid).

    Each picture is stamped with when it arrived (90 kHz from the first), so the file plays
    at the pace the room saw, freezes included; a reconnection's track goes to a new file
    beside the first (`received-mid1-2.mp4`), never over it."""

    TIME_BASE = Fraction(1, 90000)

    def __init__(self, path: Path) -> None:
        self.path = _unused(path)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._first: float | None = None
        self._last_pts = -1

    def write(self, frame: av.VideoFrame, arrived: float) -> None:
        """`arrived`: time.monotonic() when the picture came."""
        if self._container is None or self._stream is None:  # both are set together
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Fragmented MP4, each packet flushed to the file: what was written stays
            # playable if the agent is killed (an unflushed I/O buffer would hold the header).
            self._container = av.open(
                str(self.path), "w", format="mp4",
                options={"movflags": "frag_keyframe+empty_moov+default_base_moof",
                         "flush_packets": "1"},
            )
            self._stream = self._container.add_stream("libx264", rate=30)
            self._stream.width = frame.width
            self._stream.height = frame.height
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = self.TIME_BASE
            self._stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30"}
            self._first = arrived
        if (frame.width, frame.height) != (self._stream.width, self._stream.height):
            frame = frame.reformat(width=self._stream.width, height=self._stream.height)
        assert self._first is not None
        # Strictly increasing: two pictures in one tick still get their own stamps.
        self._last_pts = max(self._last_pts + 1, round((arrived - self._first) * 90000))
        frame.pts = self._last_pts
        frame.time_base = self.TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is not None and self._stream is not None:
            with contextlib.suppress(Exception):
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            self._container = None


def _unused(path: Path) -> Path:
    """`path`, or the first `<stem>-N<suffix>` beside it that does not exist yet."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


async def consume(track: MediaStreamTrack, reception: TrackReception,
                  saver: FrameSaver | None = None) -> None:
    """Pull every frame of a received track until it ends."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            frame = await track.recv()
            now = time.monotonic()
            reception.frames += 1
            reception.last_frame_at = now
            if reception.first_frame_at is None:
                reception.first_frame_at = now
                reception.first_frame_unix = time.time()
            if isinstance(frame, av.VideoFrame):
                reception.width, reception.height = frame.width, frame.height
                code = read_pattern_frame(frame)
                if code is not None:
                    if reception.last_counter is not None and code.counter < reception.last_counter:
                        if code.tag == reception.last_tag:
                            reception.counter_regressions += 1
                    reception.decoded_patterns += 1
                    reception.last_tag = code.tag
                    reception.last_counter = code.counter
                    latency = (time.time() * 1000 - code.timestamp_ms) % 2**32
                    if latency < 60_000:
                        reception.latencies_ms.append(latency)
                if saver is not None:
                    try:
                        await loop.run_in_executor(None, saver.write, frame, now)
                    except (av.FFmpegError, OSError, ValueError) as exc:
                        # Loud, and the reception goes on: a broken file must not look
                        # like a frozen picture in the stats.
                        logger.error("--save: writing %s failed, no more frames saved: %r",
                                     saver.path, exc)
                        await loop.run_in_executor(None, saver.close)
                        saver = None
            elif isinstance(frame, av.AudioFrame):
                samples = frame.to_ndarray()
                # interleaved stereo s16 from aiortc's Opus decoder: take one channel
                if samples.ndim == 2 and frame.layout.nb_channels > 1:
                    samples = samples.reshape(-1, frame.layout.nb_channels)[:, 0]
                reception._audio.append(samples.reshape(-1))
    except MediaStreamError:
        pass
    finally:
        if saver is not None:
            await loop.run_in_executor(None, saver.close)
