"""Chapters of a recorded lesson, from its timeline events (capture/events.jsonl).

A reviewer (教研员) jumps to the moments that matter in a lesson: the start (上课), a rural
room put on stage (听课教室N 上台) or taken off, a raised hand (举手), a room that dropped
out and came back, the end (下课). Each event of those kinds becomes a chapter; the rest
(mute, hand lowered) are not places one jumps to.

Times are on the lesson clock (seconds since the capture's `clock_origin_unix`), which is
also the composite's time. A per-room file starts at its `offset_s` on that clock: a player
showing a room file seeks to `t_s - offset_s`.

Output: `chapters.json` (a list of {t_s, title, kind, classroom_id}) for the library and
`chapters.vtt` (WebVTT chapter cues, `<track kind="chapters">`) for the player.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class LessonEvent:
    """One line of events.jsonl."""

    t_s: float  # lesson clock
    kind: str
    classroom_id: int | None
    detail: dict[str, object]


@dataclass
class Chapter:
    t_s: float
    title: str
    kind: str
    classroom_id: int | None


def read_events(path: Path) -> list[LessonEvent]:
    """events.jsonl → events in time order; a torn last line (a crash) is skipped."""
    events: list[LessonEvent] = []
    if not path.exists():
        return events
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.strip()
            if not line:
                continue
            try:
                raw = json.loads(line)
                events.append(
                    LessonEvent(
                        t_s=int(raw["t_us"]) / 1_000_000,
                        kind=str(raw["kind"]),
                        classroom_id=(
                            int(raw["classroom_id"])
                            if raw.get("classroom_id") is not None
                            else None
                        ),
                        detail=dict(raw.get("detail") or {}),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("%s:%d: skipping unreadable event: %s", path, number, exc)
    events.sort(key=lambda e: e.t_s)
    return events


def room_label(room: Mapping[str, object] | None, classroom_id: int | None) -> str:
    """How a chapter names a room: 主讲教室, or 听课教室N by its position in the lesson."""
    if room is None:
        return f"教室{classroom_id}" if classroom_id is not None else "教室"
    if room.get("role") == "main":
        return "主讲教室"
    position = room.get("position")
    return f"听课教室{position}" if position is not None else f"听课教室 {room.get('name', '')}"


def chapters_from_events(
    events: Iterable[LessonEvent],
    rooms: Mapping[int, Mapping[str, object]],
    duration_s: float | None = None,
) -> list[Chapter]:
    """The lesson's chapters, in time order.

    - the first `recording_started` (or, without one, the first event): 上课
    - `stage` / `unstage`: 听课教室N 上台 / 下台
    - `hand_raised`: 听课教室N 举手
    - `leave` before the end: 听课教室N 离开; a `join` after a leave of that room: 重新加入
    - `ended`: 下课
    """
    chapters: list[Chapter] = []
    started = False
    ended = False
    left: set[int] = set()
    for event in events:
        label = room_label(
            rooms.get(event.classroom_id) if event.classroom_id is not None else None,
            event.classroom_id,
        )
        t_s = max(0.0, event.t_s)
        title: str | None = None
        if not started and event.kind in ("recording_started", "join"):
            chapters.append(Chapter(t_s, "上课", "start", None))
            started = True
            if event.kind == "recording_started":
                continue
        if ended:
            continue
        if event.kind == "stage":
            title = f"{label} 上台"
        elif event.kind == "unstage":
            title = f"{label} 下台"
        elif event.kind == "hand_raised":
            title = f"{label} 举手"
        elif event.kind == "leave" and event.classroom_id is not None:
            left.add(event.classroom_id)
            title = f"{label} 离开"
        elif event.kind == "join" and event.classroom_id in left:
            left.discard(event.classroom_id)
            title = f"{label} 重新加入"
        elif event.kind == "ended":
            title = "下课"
            ended = True
        if title is not None:
            chapters.append(Chapter(t_s, title, event.kind, event.classroom_id))
    if not started:
        chapters.insert(0, Chapter(0.0, "上课", "start", None))
    if duration_s is not None:
        chapters = [c for c in chapters if c.t_s <= duration_s + 1.0]
    return chapters


def vtt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def chapters_vtt(chapters: list[Chapter], duration_s: float) -> str:
    """WebVTT chapter cues: each chapter lasts until the next one (the last: to the end)."""
    lines = ["WEBVTT", ""]
    for index, chapter in enumerate(chapters):
        end = chapters[index + 1].t_s if index + 1 < len(chapters) else duration_s
        end = max(end, chapter.t_s + 0.001)
        lines += [
            str(index + 1),
            f"{vtt_time(chapter.t_s)} --> {vtt_time(end)}",
            chapter.title,
            "",
        ]
    return "\n".join(lines)


def write_chapters(chapters: list[Chapter], duration_s: float, out_dir: Path) -> tuple[Path, Path]:
    """chapters.json and chapters.vtt in out_dir."""
    json_path = out_dir / "chapters.json"
    vtt_path = out_dir / "chapters.vtt"
    json_path.write_text(
        json.dumps([asdict(c) for c in chapters], ensure_ascii=False, indent=1), encoding="utf-8"
    )
    vtt_path.write_text(chapters_vtt(chapters, duration_s), encoding="utf-8")
    return json_path, vtt_path
