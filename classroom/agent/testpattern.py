"""The classroom agent's test pattern: a room you can recognise, and a code you can read back.

Tests and the monitoring tools need to know, from a *decoded* frame, which room it came
from, which frame it is and when it was captured: that is how they prove forwarding, stage
switches, frame continuity and glass-to-glass latency without any side channel. So every
frame carries a block of big black/white cells (`PatternCode`: room tag, frame counter,
wall-clock milliseconds, CRC-16) at a fixed *relative* position, big enough to survive
H.264/VP8 at 300 kbit/s from 320x180 up to 720p, and readable at any resolution.

The picture is rendered straight into I420 (the encoder's input format), because a BGR
frame would cost a full colour conversion per frame (about 1 ms at 720p). The static part
(room colour, name, tag) is drawn once; each frame only copies it and stamps the moving
square, the counter text and the code block.

Hershey fonts (the only ones OpenCV has without FreeType) draw ASCII only, so a Chinese
room name is shown with its non-ASCII characters as "?" next to the room tag; the tag and
the colour are what machines read.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass

import av
import cv2
import numpy as np

# --- code block geometry, in units of one cell; a cell is W/40 x H/22.5 (square at 16:9,
# 8x8 px at 320x180, 32x32 px at 1280x720). Chosen so that a cell covers at least one
# 8x8 transform block at the smallest size we send.
COLUMNS = 24
ROWS = 4
_CELLS_ACROSS = 40.0
_CELLS_DOWN = 22.5
_LEFT = 1.5  # cells from the left edge
_BOTTOM = 1.5  # cells from the bottom edge
_QUIET = 0.5  # mid-grey margin around the block, so the background does not bleed in

MAGIC = 0xA5
_DATA_COLUMNS = COLUMNS - 2  # first and last columns are guards
_BITS = ROWS * _DATA_COLUMNS  # 88 = magic 8 + tag 8 + counter 24 + timestamp 32 + crc 16
# Guard cells: 1 = white. Left column W,B,W,B; right column B,W,B,W. They give the
# reader its black and white references and reject most images that are not a pattern.
_GUARD_LEFT = (1, 0, 1, 0)
_GUARD_RIGHT = (0, 1, 0, 1)

Y_BLACK = 16
Y_WHITE = 235
Y_QUIET = 128
_MIN_CONTRAST = 48  # luma levels between the darkest white guard and the brightest black

# Relative (x, y) of a point that always shows the room's colour, for the recorder.
COLOUR_PROBE = (0.92, 0.35)


@dataclass(frozen=True)
class PatternCode:
    """What one frame says about itself."""

    tag: int  # 8 bits: classroom_id & 0xFF
    counter: int  # 24 bits: frame number since the source started, wraps
    timestamp_ms: int  # 32 bits: wall clock (time.time() * 1000) mod 2**32 at capture


def room_colour(tag: int) -> tuple[int, int, int]:
    """The room's background colour as (b, g, r): hues spread by the golden ratio.

    Neighbouring tags get far-apart hues, so the five rooms of a lesson are told apart by
    one pixel sample; saturation and value are moderate so white text and the code block
    keep their contrast.
    """
    hue = int(((tag & 0xFF) * 0.6180339887) % 1.0 * 180)
    hsv = np.array([[[hue, 200, 190]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _pack_bits(code: PatternCode) -> np.ndarray:
    payload = bytes([MAGIC, code.tag & 0xFF]) + (code.counter & 0xFFFFFF).to_bytes(3, "big")
    payload += (code.timestamp_ms & 0xFFFFFFFF).to_bytes(4, "big")
    crc = binascii.crc_hqx(payload, 0xFFFF)
    data = np.frombuffer(payload + crc.to_bytes(2, "big"), dtype=np.uint8)
    return np.unpackbits(data)  # 88 bits, most significant first


def _unpack_bits(bits: np.ndarray) -> PatternCode | None:
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    if raw[0] != MAGIC:
        return None
    if binascii.crc_hqx(raw[:9], 0xFFFF) != int.from_bytes(raw[9:11], "big"):
        return None
    return PatternCode(
        tag=raw[1],
        counter=int.from_bytes(raw[2:5], "big"),
        timestamp_ms=int.from_bytes(raw[5:9], "big"),
    )


@dataclass(frozen=True)
class _Layout:
    xs: tuple[int, ...]  # COLUMNS + 1 cell edges
    ys: tuple[int, ...]  # ROWS + 1 cell edges
    quiet: tuple[int, int, int, int]  # x0, y0, x1, y1 of the grey margin
    sample_rows: np.ndarray  # (cells * 9,) row indices of the 3x3 samples per cell
    sample_cols: np.ndarray


@functools.lru_cache(maxsize=16)
def _layout(width: int, height: int) -> _Layout:
    """Cell edges and sample points for one frame size; the same for writer and reader."""
    cw = width / _CELLS_ACROSS
    ch = height / _CELLS_DOWN
    x0 = _LEFT * cw
    y0 = height - (_BOTTOM + ROWS) * ch
    xs = tuple(round(x0 + i * cw) for i in range(COLUMNS + 1))
    ys = tuple(round(y0 + j * ch) for j in range(ROWS + 1))
    quiet = (
        max(0, round(x0 - _QUIET * cw)),
        max(0, round(y0 - _QUIET * ch)),
        min(width, round(x0 + (COLUMNS + _QUIET) * cw)),
        min(height, round(y0 + (ROWS + _QUIET) * ch)),
    )
    # 3x3 samples in the middle third of each cell: away from edges, where the codec
    # rings and where neighbouring cells blur in.
    fractions = (0.35, 0.5, 0.65)
    rows: list[int] = []
    cols: list[int] = []
    for r in range(ROWS):
        for c in range(COLUMNS):
            for fy in fractions:
                for fx in fractions:
                    rows.append(min(height - 1, int(y0 + (r + fy) * ch)))
                    cols.append(min(width - 1, int(x0 + (c + fx) * cw)))
    return _Layout(xs, ys, quiet, np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp))


def _cell_bits(code: PatternCode) -> np.ndarray:
    """ROWS x COLUMNS of 0/1, guards included."""
    grid = np.zeros((ROWS, COLUMNS), dtype=np.uint8)
    grid[:, 0] = _GUARD_LEFT
    grid[:, -1] = _GUARD_RIGHT
    grid[:, 1:-1] = _pack_bits(code).reshape(ROWS, _DATA_COLUMNS)
    return grid


def _ascii(text: str) -> str:
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


class PatternRenderer:
    """Renders the test pattern of one room at one size, as I420 (yuv420p) arrays."""

    def __init__(self, width: int, height: int, label: str, tag: int) -> None:
        if width % 2 or height % 2 or width < 64 or height < 36:
            raise ValueError(f"pattern size must be even and at least 64x36, not {width}x{height}")
        self.width = width
        self.height = height
        self.label = label
        self.tag = tag & 0xFF
        self._layout = _layout(width, height)
        self._background = self._draw_background()
        side = max(8, height // 8) & ~1
        self._square = side
        self._square_y = int(height * 0.42) & ~1
        self._text_scale = height / 400.0
        self._text_thickness = max(1, height // 180)

    def _draw_background(self) -> np.ndarray:
        """Everything that never changes, drawn once in BGR and converted once."""
        w, h = self.width, self.height
        bgr = np.empty((h, w, 3), dtype=np.uint8)
        bgr[:] = room_colour(self.tag)
        scale = h / 240.0
        thick = max(1, round(h / 120))
        title = _ascii(self.label)[:32] or "?"
        org = (round(w * 0.04), round(h * 0.16))
        cv2.putText(bgr, title, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2,
                    cv2.LINE_AA)
        cv2.putText(bgr, title, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
        sub = f"tongbu  room tag {self.tag}  {w}x{h}"
        cv2.putText(bgr, sub, (round(w * 0.04), round(h * 0.27)), cv2.FONT_HERSHEY_SIMPLEX,
                    scale * 0.45, (255, 255, 255), max(1, thick // 2), cv2.LINE_AA)
        x0, y0, x1, y1 = self._layout.quiet
        bgr[y0:y1, x0:x1] = Y_QUIET
        i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
        # the grey margin must be exactly neutral in Y and chroma
        i420[y0:y1, x0:x1] = Y_QUIET
        self._chroma_neutral(i420, x0, y0, x1, y1)
        return i420

    def _chroma_neutral(self, i420: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
        w, h = self.width, self.height
        u = i420[h : h + h // 4].reshape(h // 2, w // 2)
        v = i420[h + h // 4 :].reshape(h // 2, w // 2)
        u[y0 // 2 : (y1 + 1) // 2, x0 // 2 : (x1 + 1) // 2] = 128
        v[y0 // 2 : (y1 + 1) // 2, x0 // 2 : (x1 + 1) // 2] = 128

    def render(self, counter: int, timestamp_ms: int) -> np.ndarray:
        """One frame as an (H*3/2, W) uint8 I420 array. Hot path: ~0.3 ms at 720p."""
        w, h = self.width, self.height
        frame = self._background.copy()
        y = frame[:h]
        # moving square: one pass across the picture every 4 s at 30 fps
        side = self._square
        travel = w - side
        x = (counter * max(2, travel // 120)) % (2 * travel)
        x = (x if x < travel else 2 * travel - x) & ~1
        top = self._square_y
        y[top : top + side, x : x + side] = Y_WHITE
        self._chroma_neutral(frame, x, top, x + side, top + side)
        cv2.putText(y, f"#{counter & 0xFFFFFF:07d}", (round(w * 0.68), round(h * 0.93)),
                    cv2.FONT_HERSHEY_SIMPLEX, self._text_scale * 1.3, Y_WHITE,
                    self._text_thickness + 1, cv2.LINE_8)
        self._stamp(y, PatternCode(self.tag, counter & 0xFFFFFF, timestamp_ms & 0xFFFFFFFF))
        return frame

    def render_frame(self, counter: int, timestamp_ms: int) -> av.VideoFrame:
        """The same, wrapped as a yuv420p av.VideoFrame (pts left for the caller)."""
        return av.VideoFrame.from_ndarray(self.render(counter, timestamp_ms), format="yuv420p")

    def _stamp(self, y: np.ndarray, code: PatternCode) -> None:
        xs, ys = self._layout.xs, self._layout.ys
        grid = _cell_bits(code)
        for r in range(ROWS):
            row = y[ys[r] : ys[r + 1]]
            bits = grid[r]
            for c in range(COLUMNS):
                row[:, xs[c] : xs[c + 1]] = Y_WHITE if bits[c] else Y_BLACK


def read_pattern(luma: np.ndarray) -> PatternCode | None:
    """Read the code block from a grey image or a Y plane of any size; None if absent or bad.

    Only the 3x3 sample points of each cell are touched (864 pixels), so this costs tens of
    microseconds regardless of resolution. Each cell is thresholded halfway between the
    guards' black and white, so a codec's level shifts and a limited/full range mix-up do
    not matter; the CRC-16 and the magic byte reject what is not a valid block.
    """
    if luma.ndim != 2:
        raise ValueError("read_pattern takes a 2-D grey image or Y plane")
    height, width = luma.shape
    if width < 64 or height < 36:
        return None
    layout = _layout(width, height)
    samples = luma[layout.sample_rows, layout.sample_cols].astype(np.float32)
    cells = samples.reshape(ROWS, COLUMNS, 9).mean(axis=2)
    whites = np.concatenate([cells[0::2, 0], cells[1::2, -1]])
    blacks = np.concatenate([cells[1::2, 0], cells[0::2, -1]])
    if float(whites.min()) - float(blacks.max()) < _MIN_CONTRAST:
        return None
    threshold = (float(whites.min()) + float(blacks.max())) / 2
    bits = (cells[:, 1:-1] > threshold).reshape(-1)
    return _unpack_bits(bits)


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a planar YUV frame as a zero-copy (H, W) view; converts otherwise."""
    if frame.format.name in ("yuv420p", "yuvj420p", "nv12", "yuv422p", "yuv444p", "nv21"):
        plane = frame.planes[0]
        buf = np.frombuffer(memoryview(plane), dtype=np.uint8)  # memoryview: for numpy's types
        return buf.reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


def read_pattern_frame(frame: av.VideoFrame) -> PatternCode | None:
    """`read_pattern` on a decoded frame's Y plane, without colour conversion (per frame)."""
    return read_pattern(luma_plane(frame))
