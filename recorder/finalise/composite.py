"""The composite picture-in-picture MP4 of a lesson: the one decode + encode we allow.

All else the recorder produces is remuxed (docs/ARCHITECTURE.md, decision 2). The composite is
rendered after or beside the lesson, at low priority, on one core: the caller (the
finaliser) runs it in a worker process under `nice`; nothing here changes the process's
priority, since that would outlive the call.

Pipeline, per output frame at lesson time t = k / fps (the hot path):
- each classroom's video is decoded once with PyAV (one decoder thread), lazily: a room's
  decoder only runs up to the latest frame at or before t (frame-hold);
- that frame is resized once per tile size, plane by plane in I420 with cv2 INTER_AREA,
  and the result cached until the room's next decoded frame; a tile whose frame did not
  change since the previous output frame is not painted again;
- tiles are painted into one persistent I420 canvas (no BGR anywhere), labels are blended
  into the planes from masks drawn once per lesson;
- the canvas goes to libx264 (`superfast`, yuv420p, a keyframe every 2 s) and the MP4 is
  written with +faststart. x264 is over half of the cost: `veryfast` takes ~40% more CPU
  and misses 4x real time on one core with camera-like content, `ultrafast` saves ~45%
  of x264's time but needs ~1.7x the bits for the same picture (docs/PERFORMANCE.md).
Audio: every classroom's Opus is decoded, resampled to 48 kHz mono, placed on the lesson
clock by its timestamps (so gaps stay silent), summed with 6 dB of headroom, soft-clipped
and encoded as AAC into the same MP4, in steps of one video frame so memory stays bounded
for a lesson of any length.

Which room sits where comes from `recorder.finalise.layout` (segments computed once from events).
A room is shown as a labelled placeholder (name + 未连接) while the events say it is not
connected, while it has no video at all, or while its last decoded frame is older than
`hold_s` (a gap in the recording).

Labels: OpenCV's Hershey fonts are ASCII only. Chinese names are drawn once per lesson,
in order of preference, with Pillow (if installed) or the ffmpeg CLI's drawtext filter
(one call for every label), both with a CJK system font found by fontconfig
(fonts-wqy-zenhei / Noto CJK); failing that, with Hershey in ASCII ("room 23", "offline").
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from recorder.finalise.layout import (
    LayoutSegment,
    RoomMedia,
    Size,
    Tile,
    TimelineEvent,
    fit_rect,
    layout_timeline,
)

logger = logging.getLogger(__name__)

AUDIO_RATE = 48000
KEYFRAME_INTERVAL_S = 2.0
DEFAULT_VIDEO_BITRATE = 1_500_000
DEFAULT_PRESET = "superfast"
AUDIO_BITRATE = 96_000
HOLD_S = 1.0  # a frame older than this means the room's picture stopped: placeholder
MIX_HEADROOM = 0.5  # -6 dB before the soft clip
_SOFT_KNEE = 0.7  # above this, the mix bends smoothly towards full scale

NOT_CONNECTED = "未连接"
NOT_CONNECTED_ASCII = "offline"

Y_BACKGROUND = 16
Y_PLACEHOLDER = 48
Y_TEXT = 235


@dataclass
class CompositeStats:
    """What one render did and cost. CPU is the whole process's user + system time."""

    frames: int = 0
    duration_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    decoded_frames: dict[int, int] = field(default_factory=dict)
    corrupt_packets: int = 0
    resizes: int = 0
    tiles_painted: int = 0
    layout_segments: int = 0
    audio_rooms: int = 0
    video_rooms: int = 0
    label_backend: str = ""

    @property
    def realtime_factor(self) -> float:
        return self.duration_s / self.wall_s if self.wall_s > 0 else math.inf

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


# ------------------------------------------------------------------------------- labels


@functools.cache
def cjk_font() -> str | None:
    """A font file with Chinese glyphs, from fontconfig, or None."""
    fc_list = shutil.which("fc-list")
    if fc_list:
        try:
            out = subprocess.run(
                [fc_list, ":lang=zh", "file"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        files = sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip())
        # prefer the families we know render well at small sizes
        for wanted in ("wqy-zenhei", "NotoSansCJK", "wqy-microhei"):
            for f in files:
                if wanted in f:
                    return f
        if files:
            return files[0]
    for candidate in (
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ):
        if os.path.exists(candidate):
            return candidate
    return None


def _ascii(text: str) -> str:
    return "".join(ch for ch in text if 32 <= ord(ch) < 127).strip()


@dataclass(frozen=True)
class _LabelRequest:
    text: str
    fallback: str  # ASCII text for Hershey
    px: int  # font size in pixels


def _crop_mask(mask: np.ndarray) -> np.ndarray:
    cols = np.flatnonzero(mask.max(axis=0) > 16)
    rows = np.flatnonzero(mask.max(axis=1) > 16)
    if cols.size == 0 or rows.size == 0:
        return np.zeros((2, 2), dtype=np.float32)
    crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return crop.astype(np.float32) / 255.0


class LabelPainter:
    """Draws every label of a lesson once, as alpha masks (float32 0..1, tight crop)."""

    def __init__(self, backend: str | None = None) -> None:
        self.font = cjk_font()
        if backend is None:
            backend = "hershey"
            if self.font is not None:
                if _pillow_available():
                    backend = "pillow"
                elif shutil.which("ffmpeg"):
                    backend = "ffmpeg-drawtext"
        self.backend = backend
        self._masks: dict[_LabelRequest, np.ndarray] = {}

    def prepare(self, requests: set[_LabelRequest]) -> None:
        todo = [r for r in requests if r not in self._masks]
        if not todo:
            return
        if self.backend == "pillow":
            for r in todo:
                self._masks[r] = self._pillow(r)
            return
        if self.backend == "ffmpeg-drawtext":
            try:
                self._masks.update(self._drawtext(todo))
                return
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                logger.warning("drawtext labels failed (%s); ASCII labels instead", e)
                self.backend = "hershey"
        for r in todo:
            self._masks[r] = self._hershey(r)

    def mask(self, request: _LabelRequest) -> np.ndarray:
        if request not in self._masks:
            self.prepare({request})
        return self._masks[request]

    def _pillow(self, r: _LabelRequest) -> np.ndarray:
        from PIL import Image, ImageDraw, ImageFont

        font = ImageFont.truetype(self.font, r.px)
        image = Image.new("L", (len(r.text) * r.px + 2 * r.px, 2 * r.px), 0)
        ImageDraw.Draw(image).text((r.px // 2, r.px // 4), r.text, fill=255, font=font)
        return _crop_mask(np.asarray(image))

    def _drawtext(self, todo: list[_LabelRequest]) -> dict[_LabelRequest, np.ndarray]:
        """All labels in one ffmpeg call: one text per band of a grey canvas."""
        width = max(len(r.text) * r.px + 2 * r.px for r in todo)
        width = (width + 15) // 16 * 16
        bands: list[tuple[int, int]] = []
        top = 0
        for r in todo:
            bands.append((top, 2 * r.px))
            top += 2 * r.px
        height = (top + 1) // 2 * 2
        if self.font is None:  # a backend named by the caller on a host without the font
            raise ValueError("no CJK font for drawtext")
        font = self.font.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")
        with tempfile.TemporaryDirectory(prefix="tongbu-labels-") as tmp:
            filters = []
            for i, (r, (y, _)) in enumerate(zip(todo, bands, strict=True)):
                text_file = Path(tmp) / f"{i}.txt"
                text_file.write_text(r.text, encoding="utf-8")  # textfile: no escaping needed
                filters.append(
                    f"drawtext=fontfile='{font}':textfile='{text_file}'"
                    f":fontsize={r.px}:fontcolor=white:x={r.px // 2}"
                    f":y={y + r.px // 4}"
                )
            result = subprocess.run(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-v",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    f"color=c=black:s={width}x{height}",
                    "-vf",
                    ",".join(filters),
                    "-frames:v",
                    "1",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "gray",
                    "pipe:1",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
        if result.returncode != 0 or len(result.stdout) != width * height:
            raise ValueError(result.stderr.decode(errors="replace").strip()[:300])
        canvas = np.frombuffer(result.stdout, dtype=np.uint8).reshape(height, width)
        return {r: _crop_mask(canvas[y : y + h]) for r, (y, h) in zip(todo, bands, strict=True)}

    @staticmethod
    def _hershey(r: _LabelRequest) -> np.ndarray:
        text = r.fallback or "?"
        scale = r.px / 30.0
        thickness = max(1, r.px // 14)
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        canvas = np.zeros((h + base + 8, w + 8), dtype=np.uint8)
        cv2.putText(
            canvas, text, (4, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, cv2.LINE_AA
        )
        return _crop_mask(canvas)


@functools.cache
def _pillow_available() -> bool:
    try:
        from PIL import ImageFont  # noqa: F401
    except ImportError:
        return False
    return True


def _fallback_name(tile: Tile) -> str:
    return _ascii(tile.name) or ("teacher" if tile.role == "main" else f"room {tile.classroom_id}")


def _tag_label(tile: Tile, h: int) -> _LabelRequest:
    px = int(min(28, max(14, h // 10)))
    return _LabelRequest(tile.name or _fallback_name(tile), _fallback_name(tile), px)


def _placeholder_labels(tile: Tile) -> tuple[_LabelRequest, _LabelRequest]:
    px = int(min(40, max(14, tile.h // 8)))
    name = _LabelRequest(tile.name or _fallback_name(tile), _fallback_name(tile), px)
    status = _LabelRequest(NOT_CONNECTED, NOT_CONNECTED_ASCII, max(12, px * 3 // 4))
    return name, status


# ------------------------------------------------------------------------------- canvas


def _plane_view(plane: av.video.plane.VideoPlane, width: int, height: int) -> np.ndarray:
    """A (height, width) writable numpy view on one plane of a frame (rows are line_size).

    memoryview(plane), here and for audio: the same buffer, in a type numpy's stubs take."""
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]


# A label's blend at one place: x0, y0, x1, y1, then the keep and add weights
_Overlay = tuple[int, int, int, int, np.ndarray, np.ndarray]


class _Canvas:
    """An I420 picture with numpy views on its three planes.

    The output canvas *is* an av.VideoFrame that is painted in place and handed to the
    encoder again and again: libx264 copies the picture into its own frame pool during
    encode(), so no per-frame 1.4 MB copy into a new frame is needed.
    """

    def __init__(self, width: int, height: int, *, as_frame: bool = False) -> None:
        self.width, self.height = width, height
        self._overlays: dict[tuple[int, int, int, bool], _Overlay | None] = {}
        self.frame: av.VideoFrame | None = None
        if as_frame:
            self.frame = av.VideoFrame(width, height, "yuv420p")
            planes = self.frame.planes
            self.y = _plane_view(planes[0], width, height)
            self.u = _plane_view(planes[1], width // 2, height // 2)
            self.v = _plane_view(planes[2], width // 2, height // 2)
        else:
            data = np.empty(width * height * 3 // 2, dtype=np.uint8)
            area = width * height
            self.y = data[:area].reshape(height, width)
            self.u = data[area : area + area // 4].reshape(height // 2, width // 2)
            self.v = data[area + area // 4 :].reshape(height // 2, width // 2)
        self.clear()

    def clear(self) -> None:
        self.y[:] = Y_BACKGROUND
        self.u[:] = 128
        self.v[:] = 128

    def fill(self, x: int, y: int, w: int, h: int, luma: int) -> None:
        self.y[y : y + h, x : x + w] = luma
        self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = 128
        self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = 128

    def paste(self, x: int, y: int, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        py, pu, pv = planes
        h, w = py.shape
        self.y[y : y + h, x : x + w] = py
        self.u[y // 2 : y // 2 + h // 2, x // 2 : x // 2 + w // 2] = pu
        self.v[y // 2 : y // 2 + h // 2, x // 2 : x // 2 + w // 2] = pv

    def text(self, x: int, y: int, mask: np.ndarray, *, box: bool) -> None:
        """Blend white text (an alpha mask) at (x, y); with `box`, on a darkened box so it
        reads on any picture. Clipped to the canvas. Per painted tile: the blend weights
        are computed once per place and label, then it is one multiply-add."""
        key = (x, y, id(mask), box)
        overlay = self._overlays.get(key)
        if overlay is None:
            overlay = self._overlays[key] = self._overlay(x, y, mask, box)
        if overlay is None:
            return
        x0, y0, x1, y1, keep, add = overlay
        region = self.y[y0:y1, x0:x1]
        region[:] = region * keep + add
        if box:
            for plane in (self.u, self.v):
                c = plane[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
                c[:] = (c >> 1) + 64  # halfway to grey

    def _overlay(
        self, x: int, y: int, mask: np.ndarray, box: bool
    ) -> _Overlay | None:
        pad = 4 if box else 0
        x0, y0 = max(0, (x - pad) & ~1), max(0, (y - pad) & ~1)
        x1 = min(self.width, (x + mask.shape[1] + pad + 1) & ~1)
        y1 = min(self.height, (y + mask.shape[0] + pad + 1) & ~1)
        if x1 <= x0 or y1 <= y0:
            return None
        alpha = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        mx, my = x - x0, y - y0
        mh = min(mask.shape[0], alpha.shape[0] - my)
        mw = min(mask.shape[1], alpha.shape[1] - mx)
        if mh <= 0 or mw <= 0:
            return None
        alpha[my : my + mh, mx : mx + mw] = mask[:mh, :mw]
        keep = (0.35 if box else 1.0) * (1.0 - alpha)
        return x0, y0, x1, y1, keep, Y_TEXT * alpha


def _placeholder_image(
    painter: LabelPainter, tile: Tile
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A placeholder tile (dark grey, name and 未连接 centred) as I420 planes."""
    scratch = _Canvas(tile.w, tile.h)
    scratch.fill(0, 0, tile.w, tile.h, Y_PLACEHOLDER)
    name_req, status_req = _placeholder_labels(tile)
    name, status = painter.mask(name_req), painter.mask(status_req)
    gap = status_req.px // 2
    total = name.shape[0] + gap + status.shape[0]
    top = (tile.h - total) // 2
    scratch.text((tile.w - name.shape[1]) // 2, top, name, box=False)
    scratch.text((tile.w - status.shape[1]) // 2, top + name.shape[0] + gap, status, box=False)
    return scratch.y.copy(), scratch.u.copy(), scratch.v.copy()


# ------------------------------------------------------------------------------- sources


def _open(path: Path, what: str) -> av.container.InputContainer | None:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as e:
        logger.warning("composite: cannot open %s %s: %s", what, path, e)
        return None


class _VideoSource:
    """One room's decoded video on the lesson clock, with frame-hold and a resize cache."""

    def __init__(self, room: RoomMedia, stats: CompositeStats) -> None:
        self.classroom_id = room.classroom_id
        self._stats = stats
        self._frames = self._decode(room)
        self._current: av.VideoFrame | None = None
        self._current_t = -math.inf
        self.seq = 0  # increments with every frame made current
        self._pending = next(self._frames, None)
        self._resized_key: tuple[int, int, int] | None = None
        self._resized: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _decode(self, room: RoomMedia) -> Generator[tuple[float, av.VideoFrame], None, None]:
        assert room.video is not None
        container = _open(room.video, "video")
        if container is None:
            return
        with container:
            if not container.streams.video:
                logger.warning("composite: no video stream in %s", room.video)
                return
            stream = container.streams.video[0]
            ctx = stream.codec_context
            ctx.thread_type = "SLICE"  # one core: no frame threads, and no thread pool
            ctx.thread_count = 1
            assert stream.time_base is not None  # a demuxed stream has one
            time_base = float(stream.time_base)
            stats = self._stats
            stats.decoded_frames.setdefault(room.classroom_id, 0)
            try:
                for packet in container.demux(stream):
                    try:
                        frames = ctx.decode(packet)  # the final empty packet flushes
                    except av.FFmpegError:
                        stats.corrupt_packets += 1  # a damaged packet: skip, keep holding
                        continue
                    for frame in frames:
                        if frame.pts is None or frame.is_corrupt:
                            continue
                        stats.decoded_frames[room.classroom_id] += 1
                        yield room.offset_s + frame.pts * time_base, frame
            except av.FFmpegError as e:  # a truncated or damaged container: end here
                logger.warning("composite: %s ends early: %s", room.video, e)

    def frame_at(self, t: float, hold_s: float) -> av.VideoFrame | None:
        """The latest frame at or before t, if not older than hold_s (hot path)."""
        pending = self._pending
        while pending is not None and pending[0] <= t + 1e-6:
            self._current_t, self._current = pending
            self.seq += 1
            pending = next(self._frames, None)
        self._pending = pending
        if self._current is None or t - self._current_t > hold_s:
            return None
        return self._current

    def resized(self, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The current frame resized to w x h as I420 planes; once per frame and size."""
        key = (self.seq, w, h)
        if key == self._resized_key and self._resized is not None:
            return self._resized
        frame = self._current
        assert frame is not None
        if frame.format.name not in ("yuv420p", "yuvj420p"):
            frame = frame.reformat(format="yuv420p")
        planes = []
        for i, (pw, ph) in enumerate(((w, h), (w // 2, h // 2), (w // 2, h // 2))):
            src_w = frame.width if i == 0 else (frame.width + 1) // 2
            src_h = frame.height if i == 0 else (frame.height + 1) // 2
            view = _plane_view(frame.planes[i], src_w, src_h)
            if (src_w, src_h) == (pw, ph):
                planes.append(view.copy())
            else:
                # INTER_AREA averages when shrinking (no aliasing of the code block's
                # cells); when enlarging it is bilinear anyway, and INTER_LINEAR is faster
                shrink = pw < src_w
                interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                planes.append(cv2.resize(view, (pw, ph), interpolation=interpolation))
        self._stats.resizes += 1
        self._resized_key = key
        self._resized = (planes[0], planes[1], planes[2])
        return self._resized

    def close(self) -> None:
        self._frames.close()


def _mono_48k(frame: av.AudioFrame) -> np.ndarray | None:
    """The frame's samples as mono float32 without a resampler, if it is 48 kHz float;
    mono planar (what Opus gives) is a zero-copy view. Per audio frame (every 20 ms)."""
    if frame.sample_rate != AUDIO_RATE or frame.samples == 0:
        return None
    channels = len(frame.layout.channels)
    name = frame.format.name
    if name == "fltp":
        first = np.frombuffer(memoryview(frame.planes[0]), dtype=np.float32, count=frame.samples)
        if channels == 1:
            return first
        total = first.copy()
        for plane in frame.planes[1:channels]:
            total += np.frombuffer(memoryview(plane), dtype=np.float32, count=frame.samples)
        return total / channels
    if name == "flt":
        packed = np.frombuffer(
            memoryview(frame.planes[0]), dtype=np.float32, count=frame.samples * channels
        )
        return packed if channels == 1 else packed.reshape(-1, channels).mean(axis=1)
    return None


class _AudioSource:
    """One room's audio as 48 kHz mono float32 chunks placed on the lesson clock."""

    def __init__(self, room: RoomMedia) -> None:
        self._chunks = self._decode(room)
        self._pending: tuple[int, np.ndarray] | None = None

    @staticmethod
    def _decode(room: RoomMedia) -> Generator[tuple[int, np.ndarray], None, None]:
        assert room.audio is not None
        container = _open(room.audio, "audio")
        if container is None:
            return
        with container:
            if not container.streams.audio:
                logger.warning("composite: no audio stream in %s", room.audio)
                return
            stream = container.streams.audio[0]
            stream.codec_context.thread_count = 1
            assert stream.time_base is not None  # a demuxed stream has one
            time_base = float(stream.time_base)
            resampler: av.AudioResampler | None = None
            expected: int | None = None
            try:
                for packet in container.demux(stream):
                    try:
                        frames = stream.codec_context.decode(packet)
                    except av.FFmpegError:
                        continue
                    for frame in frames:
                        if frame.pts is not None:
                            at = round((room.offset_s + frame.pts * time_base) * AUDIO_RATE)
                            # timestamps within 1 ms of continuous: keep continuous (no clicks)
                            if expected is not None and abs(at - expected) <= AUDIO_RATE // 1000:
                                at = expected
                        elif expected is not None:
                            at = expected
                        else:
                            at = round(room.offset_s * AUDIO_RATE)
                        samples = _mono_48k(frame)
                        if samples is not None:  # Opus decodes to 48 kHz float: no resampler
                            yield at, samples
                            at += samples.size
                        else:
                            if resampler is None:
                                resampler = av.AudioResampler(
                                    format="flt", layout="mono", rate=AUDIO_RATE
                                )
                            for out in resampler.resample(frame):
                                samples = out.to_ndarray().reshape(-1)
                                yield at, samples
                                at += samples.size
                        expected = at
            except av.FFmpegError as e:
                logger.warning("composite: %s ends early: %s", room.audio, e)

    def add_into(self, buf: np.ndarray, start: int) -> None:
        """Add this room's samples covering [start, start + len(buf)) into buf."""
        end = start + buf.size
        while True:
            if self._pending is None:
                self._pending = next(self._chunks, None)
                if self._pending is None:
                    return
            at, samples = self._pending
            stop = at + samples.size
            if stop <= start:
                self._pending = None
                continue
            if at >= end:
                return
            lo, hi = max(at, start), min(stop, end)
            buf[lo - start : hi - start] += samples[lo - at : hi - at]
            if stop > end:
                return
            self._pending = None

    def close(self) -> None:
        self._chunks.close()


def soft_clip(x: np.ndarray) -> np.ndarray:
    """Linear below the knee, then a tanh curve that never passes full scale (in place)."""
    over = np.abs(x) > _SOFT_KNEE
    if over.any():
        v = x[over]
        span = 1.0 - _SOFT_KNEE
        x[over] = np.sign(v) * (_SOFT_KNEE + span * np.tanh((np.abs(v) - _SOFT_KNEE) / span))
    return x


# ------------------------------------------------------------------------------- render


def _label_requests(segments: list[LayoutSegment]) -> set[_LabelRequest]:
    requests: set[_LabelRequest] = set()
    for segment in segments:
        for tile in segment.tiles:
            requests.add(_tag_label(tile, tile.h))
            requests.update(_placeholder_labels(tile))
    return requests


def render_composite(
    rooms: list[RoomMedia],
    events: list[TimelineEvent],
    duration_s: float,
    out_path: Path | str,
    *,
    size: Size = (1280, 720),
    fps: int = 15,
    video_bitrate: int = DEFAULT_VIDEO_BITRATE,
    threads: int = 1,
    preset: str = DEFAULT_PRESET,
    hold_s: float = HOLD_S,
    label_backend: str | None = None,
) -> CompositeStats:
    """Render the lesson's composite MP4 (H.264 + AAC) to out_path; returns what it did.

    `rooms`: each classroom's media on the lesson clock (see `RoomMedia`); `events`: the
    lesson timeline (join, leave, stage, unstage matter); `duration_s`: the lesson's length,
    which is the composite's. `threads` is libx264's thread count; each room's decoder
    always has one thread. `hold_s`: how long a room's last frame stays up when its video
    stops (a gap) before the placeholder. `label_backend`: "pillow", "ffmpeg-drawtext" or
    "hershey" (ASCII), chosen automatically when None.

    The file is written beside out_path and renamed into place when complete, so a crash
    never leaves a half file under the final name.
    """
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, not {duration_s}")
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"composite size must be even, not {width}x{height}")
    wall0, cpu0 = time.monotonic(), time.process_time()
    stats = CompositeStats(duration_s=duration_s)
    out_path = Path(out_path)
    partial = out_path.with_name(out_path.name + ".part")

    segments = layout_timeline(rooms, events, duration_s, size)
    stats.layout_segments = len(segments)
    painter = LabelPainter(label_backend)
    painter.prepare(_label_requests(segments))
    stats.label_backend = painter.backend

    videos = {r.classroom_id: _VideoSource(r, stats) for r in rooms if r.video is not None}
    audios = [_AudioSource(r) for r in rooms if r.audio is not None]
    stats.video_rooms, stats.audio_rooms = len(videos), len(audios)
    placeholders: dict[Tile, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    canvas = _Canvas(width, height, as_frame=True)
    frame_count = max(1, round(duration_s * fps))
    video_tb = Fraction(1, fps)
    audio_tb = Fraction(1, AUDIO_RATE)

    complete = False
    output = av.open(str(partial), mode="w", format="mp4", options={"movflags": "+faststart"})
    try:
        vstream = output.add_stream("libx264", rate=fps)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        vstream.bit_rate = video_bitrate
        gop = max(1, round(KEYFRAME_INTERVAL_S * fps))
        vstream.codec_context.gop_size = gop
        vstream.codec_context.thread_count = threads
        vstream.codec_context.options = {
            "preset": preset,
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        astream = output.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        astream.bit_rate = AUDIO_BITRATE

        segment_index = -1
        segment: LayoutSegment | None = None
        painted: dict[int, tuple[object, ...]] = {}
        audio_done = 0
        for k in range(frame_count):  # hot path: one output frame
            t = k / fps
            while segment is None or (t >= segment.end_s and segment_index + 1 < len(segments)):
                segment_index += 1
                segment = segments[segment_index]
                canvas.clear()
                painted.clear()
            for slot, tile in enumerate(segment.tiles):
                source = videos.get(tile.classroom_id) if tile.classroom_id is not None else None
                frame = source.frame_at(t, hold_s) if source and tile.connected else None
                if frame is not None and source is not None:
                    key: tuple[object, ...] = ("video", source.seq)
                    if painted.get(slot) == key:
                        continue
                    x, y, w, h = fit_rect(tile, frame.width, frame.height)
                    if (w, h) != (tile.w, tile.h):
                        canvas.fill(tile.x, tile.y, tile.w, tile.h, Y_BACKGROUND)
                    canvas.paste(x, y, source.resized(w, h))
                    label = painter.mask(_tag_label(tile, tile.h))
                    canvas.text(x + 8, y + 8, label, box=True)
                else:
                    key = ("placeholder",)
                    if painted.get(slot) == key:
                        continue
                    image = placeholders.get(tile)
                    if image is None:
                        image = placeholders[tile] = _placeholder_image(painter, tile)
                    canvas.paste(tile.x, tile.y, image)
                painted[slot] = key
                stats.tiles_painted += 1
            frame = canvas.frame
            assert frame is not None
            frame.pts = k
            frame.time_base = video_tb
            output.mux(vstream.encode(frame))
            stats.frames += 1

            audio_end = round((k + 1) * AUDIO_RATE / fps)
            if audio_end > audio_done:
                mix = np.zeros(audio_end - audio_done, dtype=np.float32)
                for audio in audios:
                    audio.add_into(mix, audio_done)
                mix *= MIX_HEADROOM
                soft_clip(mix)
                aframe = av.AudioFrame.from_ndarray(
                    mix.reshape(1, -1), format="fltp", layout="mono"
                )
                aframe.sample_rate = AUDIO_RATE
                aframe.pts = audio_done
                aframe.time_base = audio_tb
                output.mux(astream.encode(aframe))
                audio_done = audio_end
        output.mux(vstream.encode(None))
        output.mux(astream.encode(None))
        complete = True
    finally:
        output.close()
        for source in videos.values():
            source.close()
        for audio in audios:
            audio.close()
        if not complete:
            partial.unlink(missing_ok=True)
    os.replace(partial, out_path)
    stats.wall_s = time.monotonic() - wall0
    stats.cpu_s = time.process_time() - cpu0
    return stats
