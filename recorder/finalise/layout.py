"""Where each classroom sits in the composite picture, from the lesson's recorded events.

The composite view (see `recorder.finalise.composite`) shows the teacher large and the receiving
rooms as tiles; while a room is on stage, the teacher and that room are shown side by side
and the others small underneath. Which layout holds when is decided only by the lesson's
timeline events (join, leave, stage, unstage), so it is computed once per lesson as a list
of segments (`layout_timeline`) and the renderer does no layout work per frame.

Geometry at 1280x720 (every edge even, as I420 needs):

    normal                                  staged (room 23 on stage)
    +------------------------+------+       +-------------+-------------+
    |                        | r21  |       |   teacher   |    r23      |
    |       teacher          +------+       |   640x360   |   640x360   |
    |       960x540          | r22  |       +------+------+------+------+
    |     (y = 90)           +------+              | r21  | r22  | r24  |
    |                        | r23  |              +------+------+------+
    +------------------------+------+
                             | r24  |  320x180 each
    zero receiving rooms: the teacher fills the frame.

Connection state: a room with join/leave events is connected between a join and the next
leave (if its first such event is a leave, it was connected before it). A room with no
join/leave events at all is taken as connected throughout (an event log that was lost must
not hide recorded media); the renderer still shows a placeholder while a room has no fresh
frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

Role = Literal["main", "receiving"]
Size = tuple[int, int]

DEFAULT_SIZE: Size = (1280, 720)
MAIN_NAME = "主讲教室"
_ASPECT = 16 / 9  # tiles are 16:9; a source of another aspect is letterboxed inside its tile


@dataclass(frozen=True)
class RoomMedia:
    """One classroom's recorded media, as the finaliser hands it to the composite.

    `offset_s` is where the file's t=0 sits on the lesson clock. `video` and `audio` may be
    the same file (MP4 with H.264 + Opus, WebM with VP8 + Opus), either may be None.
    """

    classroom_id: int
    role: Role
    name: str
    position: int
    video: Path | None = None
    audio: Path | None = None
    offset_s: float = 0.0


@dataclass(frozen=True)
class TimelineEvent:
    """One event of the lesson timeline; kinds other than join/leave/stage/unstage are
    ignored here."""

    t_s: float
    kind: str
    classroom_id: int | None = None


@dataclass(frozen=True)
class Tile:
    """One classroom's rectangle in the composite, in output pixels (all even)."""

    classroom_id: int | None  # None: the teacher's place when there is no main room
    x: int
    y: int
    w: int
    h: int
    role: Role = "receiving"
    name: str = ""
    connected: bool = True
    staged: bool = False


class LayoutSegment(NamedTuple):
    start_s: float
    end_s: float
    tiles: tuple[Tile, ...]


_LAYOUT_KINDS = frozenset({"join", "leave", "stage", "unstage"})


def _even(v: float) -> int:
    """A size rounded down to even (I420), at least 2."""
    return max(2, int(v) // 2 * 2)


def _at(v: float) -> int:
    """A position rounded down to even (I420 chroma is 2x2)."""
    return max(0, int(v) // 2 * 2)


def _main_room(rooms: list[RoomMedia]) -> RoomMedia | None:
    mains = sorted((r for r in rooms if r.role == "main"), key=lambda r: r.classroom_id)
    return mains[0] if mains else None


def _receiving_rooms(rooms: list[RoomMedia]) -> list[RoomMedia]:
    return sorted(
        (r for r in rooms if r.role == "receiving"), key=lambda r: (r.position, r.classroom_id)
    )


@dataclass(frozen=True)
class _State:
    connected: frozenset[int]
    staged: int | None


def _relevant(events: list[TimelineEvent]) -> list[TimelineEvent]:
    ordered = sorted((e for e in events if e.kind in _LAYOUT_KINDS), key=lambda e: e.t_s)
    return ordered  # sorted() is stable: same-time events keep their recorded order


def _initial_state(rooms: list[RoomMedia], events: list[TimelineEvent]) -> _State:
    first: dict[int, str] = {}
    for e in events:
        if e.kind in ("join", "leave") and e.classroom_id is not None:
            first.setdefault(e.classroom_id, e.kind)
    connected = frozenset(r.classroom_id for r in rooms if first.get(r.classroom_id) != "join")
    return _State(connected, None)


def _apply(state: _State, event: TimelineEvent, receiving: set[int]) -> _State:
    cid = event.classroom_id
    if event.kind == "join" and cid is not None:
        return _State(state.connected | {cid}, state.staged)
    if event.kind == "leave" and cid is not None:
        return _State(state.connected - {cid}, state.staged)
    if event.kind == "stage":
        # only a receiving room of this lesson goes on stage; "stage None" clears it
        return _State(state.connected, cid if cid in receiving else None)
    if event.kind == "unstage" and (cid is None or cid == state.staged):
        return _State(state.connected, None)
    return state


def _tiles(rooms: list[RoomMedia], state: _State, size: Size) -> tuple[Tile, ...]:
    width, height = size
    main = _main_room(rooms)
    receiving = _receiving_rooms(rooms)

    def tile(
        room: RoomMedia | None, x: float, y: float, w: float, h: float, staged: bool = False
    ) -> Tile:
        if room is None:
            # no main room in the lesson's media: its place stays, as a placeholder
            return Tile(None, _at(x), _at(y), _even(w), _even(h), "main", MAIN_NAME, False)
        return Tile(
            room.classroom_id,
            _at(x),
            _at(y),
            _even(w),
            _even(h),
            room.role,
            room.name,
            room.classroom_id in state.connected,
            staged,
        )

    if not receiving:
        return (tile(main, 0, 0, width, height),)

    staged = next((r for r in receiving if r.classroom_id == state.staged), None)
    if staged is None:
        strip_w = _even(width / 4)
        slots = max(4, len(receiving))
        tile_h = _even(min(strip_w / _ASPECT, height / slots))
        tile_w = _even(tile_h * _ASPECT)
        teacher_w = width - strip_w
        teacher_h = _even(min(teacher_w / _ASPECT, height))
        out = [tile(main, 0, (height - teacher_h) / 2, teacher_w, teacher_h)]
        top = (height - len(receiving) * tile_h) / 2
        for i, room in enumerate(receiving):
            out.append(
                tile(room, teacher_w + (strip_w - tile_w) / 2, top + i * tile_h, tile_w, tile_h)
            )
        return tuple(out)

    others = [r for r in receiving if r is not staged]
    big_w = _even(width / 2)
    big_h = _even(min(big_w / _ASPECT, height))
    small_w = _even(min(width / 4, width / max(1, len(others))))
    small_h = _even(min(small_w / _ASPECT, height - big_h))
    small_w = _even(min(small_w, small_h * _ASPECT))
    block = big_h + (small_h if others else 0)
    top = max(0, (height - block) / 2)
    out = [tile(main, 0, top, big_w, big_h), tile(staged, big_w, top, big_w, big_h, True)]
    left = (width - len(others) * small_w) / 2
    for i, room in enumerate(others):
        out.append(tile(room, left + i * small_w, top + big_h, small_w, small_h))
    return tuple(out)


def layout_timeline(
    rooms: list[RoomMedia],
    events: list[TimelineEvent],
    duration_s: float,
    size: Size = DEFAULT_SIZE,
) -> list[LayoutSegment]:
    """The layout as consecutive segments covering [0, duration_s); consecutive identical
    layouts are merged. Events before 0 set the initial state; events after the end are
    ignored."""
    ordered = _relevant(events)
    receiving = {r.classroom_id for r in rooms if r.role == "receiving"}
    state = _initial_state(rooms, ordered)
    i = 0
    while i < len(ordered) and ordered[i].t_s <= 0:
        state = _apply(state, ordered[i], receiving)
        i += 1
    segments: list[LayoutSegment] = []
    start = 0.0
    current = _tiles(rooms, state, size)
    while i < len(ordered) and ordered[i].t_s < duration_s:
        t = ordered[i].t_s
        while i < len(ordered) and ordered[i].t_s == t:  # apply same-time events together
            state = _apply(state, ordered[i], receiving)
            i += 1
        tiles = _tiles(rooms, state, size)
        if tiles != current:
            segments.append(LayoutSegment(start, t, current))
            start, current = t, tiles
    end = duration_s if duration_s > start else math.inf
    segments.append(LayoutSegment(start, end, current))
    return segments


def layout_at(
    t: float, rooms: list[RoomMedia], events: list[TimelineEvent], size: Size = DEFAULT_SIZE
) -> list[Tile]:
    """The tiles shown at lesson time `t` (teacher first, then receiving rooms)."""
    segments = layout_timeline(rooms, events, math.inf, size)
    for segment in segments:
        if t < segment.end_s:
            return list(segment.tiles)
    return list(segments[-1].tiles)


def fit_rect(tile: Tile, source_w: int, source_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a source of that size letterboxed inside the tile, all even."""
    if source_w <= 0 or source_h <= 0:
        return tile.x, tile.y, tile.w, tile.h
    scale = min(tile.w / source_w, tile.h / source_h)
    w = min(tile.w, _even(source_w * scale + 1))
    h = min(tile.h, _even(source_h * scale + 1))
    if tile.w - w <= 2:
        w = tile.w
    if tile.h - h <= 2:
        h = tile.h
    return tile.x + (tile.w - w) // 2 // 2 * 2, tile.y + (tile.h - h) // 2 // 2 * 2, w, h
