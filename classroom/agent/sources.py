"""Where a classroom box's pictures and sound come from: test pattern, camera, file, tone.

A video source is driven by a clock, not by the camera: `tick()` waits for the next frame
slot and returns its 90 kHz timestamp, `frame_at(pts)` gives the picture for it (the latest
camera image, the next file frame, or a freshly drawn test pattern). Splitting the two lets
a muted track keep the pace without drawing or grabbing anything, and keeps timestamps
on the wall clock even when a camera delivers irregularly.

Camera and file decoding run in their own threads: `cv2.VideoCapture.read()` and PyAV
decoding block for a frame time, and the event loop also carries the other rooms' media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol

import av
import cv2
import numpy as np

from classroom.agent.testpattern import PatternRenderer

logger = logging.getLogger(__name__)

VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)


class FrameClock:
    """Paces frames at `fps` on the monotonic clock; returns 90 kHz timestamps.

    Slots are absolute (start + n / fps), so time spent encoding is absorbed instead of
    accumulating; if we fall more than a frame behind we skip ahead rather than burst.
    """

    def __init__(self, fps: float, clock_rate: int = VIDEO_CLOCK_RATE) -> None:
        self.fps = fps
        self.clock_rate = clock_rate
        self._start: float | None = None
        self._index = 0

    async def tick(self) -> int:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._index += 1
            due = self._start + self._index / self.fps
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1 / self.fps:
                self._index = math.floor((now - self._start) * self.fps)
        return round(self._index / self.fps * self.clock_rate)


class VideoSource(Protocol):
    width: int
    height: int
    fps: float

    async def tick(self) -> int: ...

    def frame_at(self, pts: int) -> av.VideoFrame: ...

    def close(self) -> None: ...


def _i420_frame(i420: np.ndarray, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    frame.pts = pts
    frame.time_base = VIDEO_TIME_BASE
    return frame


def black_frame(width: int, height: int, pts: int) -> av.VideoFrame:
    """A black yuv420p frame, for a muted camera (cheap to encode: all skip blocks)."""
    i420 = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    i420[:height] = 16
    return _i420_frame(i420, pts)


class TestPatternSource:
    """The room's test pattern; the counter advances by one per frame sent."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, width: int, height: int, fps: float, label: str, tag: int) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.renderer = PatternRenderer(width, height, label, tag)
        self.counter = 0
        self._clock = FrameClock(fps)

    async def tick(self) -> int:
        return await self._clock.tick()

    def frame_at(self, pts: int) -> av.VideoFrame:
        timestamp_ms = int(time.time() * 1000) % 2**32
        frame = _i420_frame(self.renderer.render(self.counter, timestamp_ms), pts)
        self.counter = (self.counter + 1) & 0xFFFFFF
        return frame

    def close(self) -> None:
        pass


class _Capture:
    """One camera device, read in a thread; keeps only the latest image (as I420)."""

    def __init__(self, index: int, width: int, height: int, fps: float) -> None:
        self.index = index
        self.width, self.height, self.fps = width, height, fps
        self.latest: np.ndarray | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cap = cv2.VideoCapture(self.index)
        try:
            if not cap.isOpened():
                self.error = f"camera {self.index} cannot be opened"
                return
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest image, not a queue of old ones
            self._opened.set()
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    self.error = f"camera {self.index} stopped delivering"
                    time.sleep(0.1)
                    continue
                if bgr.shape[1] != self.width or bgr.shape[0] != self.height:
                    bgr = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
                self.latest = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
                self.error = None
        finally:
            self._opened.set()
            cap.release()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)


class CameraSource:
    """A local camera (`/dev/videoN` via OpenCV); shows black until the first image."""

    def __init__(self, index: int, width: int, height: int, fps: float) -> None:
        self.index = index
        self.width = width
        self.height = height
        self.fps = fps
        self._clock = FrameClock(fps)
        self._capture = _Capture(index, width, height, fps)

    @property
    def error(self) -> str | None:
        return self._capture.error

    async def tick(self) -> int:
        return await self._clock.tick()

    def frame_at(self, pts: int) -> av.VideoFrame:
        latest = self._capture.latest
        if latest is None:
            return black_frame(self.width, self.height, pts)
        return _i420_frame(latest, pts)

    def close(self) -> None:
        """Release the device, so the next connection's source can open it."""
        self._capture.stop()


class FileSource:
    """A video file decoded with PyAV in a thread and paced at its frame rate; loops."""

    def __init__(self, path: str | Path, loop: bool = True, fps: float | None = None) -> None:
        self.path = Path(path)
        self.loop = loop
        with av.open(str(self.path)) as container:
            if not container.streams.video:
                raise ValueError(f"{self.path} has no video stream")
            stream = container.streams.video[0]
            self.width = stream.codec_context.width & ~1
            self.height = stream.codec_context.height & ~1
            rate = stream.average_rate or stream.guessed_rate or 25
            self.fps = float(fps or rate)
        self._clock = FrameClock(self.fps)
        self._frames: queue.Queue[av.VideoFrame | None] = queue.Queue(maxsize=4)
        self._last: av.VideoFrame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with av.open(str(self.path)) as container:
                    stream = container.streams.video[0]
                    stream.thread_type = "AUTO"
                    for frame in container.decode(stream):
                        while not self._stop.is_set():
                            try:
                                self._frames.put(frame, timeout=0.2)
                                break
                            except queue.Full:
                                continue
                        if self._stop.is_set():
                            return
                if not self.loop:
                    break
        except Exception:
            logger.exception("file source %s failed", self.path)
        finally:
            with contextlib.suppress(queue.Full):
                self._frames.put_nowait(None)

    async def tick(self) -> int:
        return await self._clock.tick()

    def frame_at(self, pts: int) -> av.VideoFrame:
        """The next decoded frame, or the previous one again if decoding lags."""
        if not self._ended:
            try:
                frame = self._frames.get_nowait()
                if frame is None:
                    self._ended = True
                else:
                    self._last = frame
            except queue.Empty:
                pass
        if self._last is None:
            return black_frame(self.width, self.height, pts)
        frame = self._last
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame

    @property
    def ended(self) -> bool:
        return self._ended

    def close(self) -> None:
        self._stop.set()


class ToneSource:
    """A sine tone as s16 audio frames, paced in real time, phase-continuous.

    Each room gets its own frequency, so a receiver proves which room it hears with an FFT.
    """

    def __init__(
        self,
        frequency_hz: float,
        sample_rate: int = 48000,
        frame_ms: int = 20,
        channels: int = 1,
        amplitude: float = 0.25,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError("tone channels must be 1 or 2")
        self.frequency_hz = frequency_hz
        self.sample_rate = sample_rate
        self.samples_per_frame = sample_rate * frame_ms // 1000
        self.channels = channels
        self.amplitude = amplitude
        self._clock = FrameClock(1000 / frame_ms, clock_rate=sample_rate)
        self._sample_index = 0
        self._silence: np.ndarray | None = None

    async def tick(self) -> int:
        await self._clock.tick()
        return self._sample_index

    def frame(self, silent: bool = False) -> av.AudioFrame:
        """The next frame of tone (or of silence, keeping the timeline)."""
        n = self.samples_per_frame
        if silent:
            if self._silence is None:
                self._silence = np.zeros((1, n * self.channels), dtype=np.int16)
            samples = self._silence
        else:
            t = (self._sample_index + np.arange(n)) / self.sample_rate
            wave = self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency_hz * t)
            mono = wave.astype(np.int16)
            samples = np.repeat(mono, self.channels) if self.channels == 2 else mono
            samples = samples.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(
            samples, format="s16", layout="mono" if self.channels == 1 else "stereo"
        )
        frame.sample_rate = self.sample_rate
        frame.pts = self._sample_index
        frame.time_base = Fraction(1, self.sample_rate)
        self._sample_index += n
        return frame


@dataclass(frozen=True)
class SourceSpec:
    """A parsed `--source`: what to open, for each connection afresh."""

    kind: Literal["testpattern", "camera", "file"]
    camera_index: int = 0
    path: Path | None = None

    def open(self, width: int, height: int, fps: float, label: str, tag: int) -> VideoSource:
        if self.kind == "testpattern":
            return TestPatternSource(width, height, fps, label, tag)
        if self.kind == "camera":
            return CameraSource(self.camera_index, width, height, fps)
        assert self.path is not None
        return FileSource(self.path, loop=True, fps=fps)


def parse_source(spec: str) -> SourceSpec:
    """`testpattern`, `camera:N` or `file:PATH`; ValueError saying what is wrong otherwise."""
    text = spec.strip()
    if text == "testpattern":
        return SourceSpec("testpattern")
    kind, sep, arg = text.partition(":")
    if kind == "camera" and sep:
        if not arg.isdigit():
            raise ValueError(f"camera source needs a device number, like camera:0 (got {spec!r})")
        return SourceSpec("camera", camera_index=int(arg))
    if kind == "file" and sep:
        if not arg:
            raise ValueError("file source needs a path, like file:/srv/lesson.mp4")
        path = Path(arg).expanduser()
        if not path.is_file():
            raise ValueError(f"file source {str(path)!r} does not exist or is not a file")
        return SourceSpec("file", path=path)
    raise ValueError(f"unknown source {spec!r}: use testpattern, camera:N or file:PATH")
