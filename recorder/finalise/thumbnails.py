"""The lesson's poster and thumbnail strip (OpenCV), from a finished video file.

- Poster: one decoded frame about 10% into the lesson (past the greetings and the
  camera settling), JPEG, at most 1280 px wide. Taken from the main room's file, i.e. the
  teacher.
- Thumbnail strip: a sprite sheet (JPEG, `COLUMNS` thumbnails a row) with one thumbnail
  every `interval_s`, plus its index as JSON ({t_s, x, y, w, h}) and WebVTT (the
  `sprite.jpg#xywh=x,y,w,h` cues that players use for seek-bar previews).

Cost: only keyframes are decoded for the strip (`skip_frame = NONKEY`), a slot takes the
last keyframe at or before its time. An agent sends an IDR every 4 s, so a 10 s slot
always has a fresh picture; a publisher that sends keyframes only on request (browsers)
gives repeated thumbnails between keyframes, which a strip tolerates. A 45-minute 720p
room decodes ~700 keyframes: seconds, not minutes.
Times in the index are seconds from the start of the *source file*; `finalise` adds the
file's `offset_s` to put them on the lesson clock.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from recorder.finalise.chapters import vtt_time

logger = logging.getLogger(__name__)

THUMB_WIDTH = 160
COLUMNS = 10
POSTER_MAX_WIDTH = 1280
POSTER_AT = 0.10  # of the duration
JPEG_QUALITY = 85


@dataclass
class StripResult:
    sprite: Path
    index_json: Path
    index_vtt: Path
    count: int
    interval_s: float
    thumb_size: tuple[int, int]


def strip_interval(duration_s: float, wanted_s: float = 10.0, min_count: int = 10) -> float:
    """`wanted_s`, shortened for a short recording so the strip has `min_count` pictures."""
    if duration_s <= 0:
        return wanted_s
    return max(0.5, min(wanted_s, duration_s / min_count))


def _bgr(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="bgr24")


def _scaled(image: np.ndarray, width: int) -> np.ndarray:
    height, source_width = image.shape[:2]
    if source_width == width:
        return image
    new_height = max(2, round(height * width / source_width) & ~1)
    return cv2.resize(image, (width, new_height), interpolation=cv2.INTER_AREA)


def make_poster(video: Path, out_path: Path, *, at_fraction: float = POSTER_AT) -> Path | None:
    """A JPEG of the frame `at_fraction` into the video; None if nothing decodes."""
    with av.open(str(video)) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = (container.duration or 0) / av.time_base
        target = duration * at_fraction
        image = None
        if target > 0 and stream.time_base is not None:  # a demuxed stream has one
            try:
                container.seek(int(target / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError:
                container.seek(0)
        try:
            for frame in container.decode(stream):
                image = _bgr(frame)
                if frame.time is None or frame.time >= target:
                    break
        except av.FFmpegError as exc:
            logger.warning("poster: %s stopped decoding: %s", video, exc)
    if image is None:
        return None
    if image.shape[1] > POSTER_MAX_WIDTH:
        image = _scaled(image, POSTER_MAX_WIDTH)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"could not write {out_path}")
    return out_path


def make_strip(
    video: Path, out_dir: Path, *, interval_s: float | None = None, stem: str = "thumbnails"
) -> StripResult | None:
    """The sprite sheet and its index for `video`; None if it has no decodable keyframe."""
    shots: list[tuple[float, np.ndarray]] = []  # (time, thumbnail) of each keyframe
    with av.open(str(video)) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        stream.thread_type = "AUTO"
        duration = (container.duration or 0) / av.time_base
        interval = interval_s or strip_interval(duration)
        next_slot = 0.0
        try:
            for frame in container.decode(stream):
                t = frame.time or 0.0
                # keep at most one picture per slot, and only the latest before the slot
                if shots and t < next_slot:
                    continue
                shots.append((t, _scaled(_bgr(frame), THUMB_WIDTH)))
                next_slot = (math.floor(t / interval) + 1) * interval
        except av.FFmpegError as exc:
            logger.warning("strip: %s stopped decoding: %s", video, exc)
    if not shots:
        return None
    count = max(1, math.ceil(duration / interval)) if duration > 0 else len(shots)
    thumb_h, thumb_w = shots[0][1].shape[:2]
    rows = math.ceil(count / COLUMNS)
    sheet = np.zeros((rows * thumb_h, min(count, COLUMNS) * thumb_w, 3), dtype=np.uint8)
    index: list[dict[str, float | int]] = []
    shot = 0
    for slot in range(count):
        t = slot * interval
        while shot + 1 < len(shots) and shots[shot + 1][0] <= t + 1e-3:
            shot += 1
        image = shots[shot][1]
        if image.shape[:2] != (thumb_h, thumb_w):  # the source changed size mid-lesson
            image = cv2.resize(image, (thumb_w, thumb_h), interpolation=cv2.INTER_AREA)
        x, y = (slot % COLUMNS) * thumb_w, (slot // COLUMNS) * thumb_h
        sheet[y : y + thumb_h, x : x + thumb_w] = image
        index.append({"t_s": round(t, 3), "x": x, "y": y, "w": thumb_w, "h": thumb_h})
    out_dir.mkdir(parents=True, exist_ok=True)
    sprite = out_dir / f"{stem}.jpg"
    if not cv2.imwrite(str(sprite), sheet, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"could not write {sprite}")
    index_json = out_dir / f"{stem}.json"
    index_json.write_text(
        json.dumps(
            {
                "sprite": sprite.name,
                "interval_s": interval,
                "columns": COLUMNS,
                "thumb_width": thumb_w,
                "thumb_height": thumb_h,
                "thumbnails": index,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    index_vtt = out_dir / f"{stem}.vtt"
    index_vtt.write_text(_strip_vtt(index, interval, duration, sprite.name), encoding="utf-8")
    return StripResult(sprite, index_json, index_vtt, count, interval, (thumb_w, thumb_h))


def _strip_vtt(
    index: list[dict[str, float | int]], interval: float, duration: float, sprite: str
) -> str:
    lines = ["WEBVTT", ""]
    for item in index:
        start = float(item["t_s"])
        end = min(start + interval, duration) if duration > start else start + interval
        lines += [
            f"{vtt_time(start)} --> {vtt_time(end)}",
            f"{sprite}#xywh={item['x']},{item['y']},{item['w']},{item['h']}",
            "",
        ]
    return "\n".join(lines)
