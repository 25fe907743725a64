"""Real-time video encoding for the classroom agent, handing aiortc ready-made packets.

Why not let aiortc encode: its H.264 encoder runs libx264 at the default preset and costs
about 87% of a core at 720p30; a classroom box must publish for under 25%. x264's
`ultrafast` preset with `zerolatency` tuning does it for ~13%. aiortc's RTCRtpSender sends
a track's `av.Packet` through its codec's `pack()` (H.264: split the Annex-B byte stream
on start codes, then STAP-A/FU-A; VP8: add the payload descriptor) without encoding again,
so we only have to produce the right bytes with 90 kHz timestamps.

Going around aiortc's encoder also means going around its reaction to RTCP: PLI/FIR and
REMB reach us through `classroom.agent.feedback`, and land here as `request_keyframe()` and
`set_target_bitrate()`. Both only leave a note; the encoding thread picks it up before the
next frame, so nothing touches the codec context from two threads.
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from typing import Literal

import av
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext

from classroom.agent.defaults import KEYFRAME_INTERVAL_S

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = Fraction(1, 90000)  # RTP video clock; aiortc's pack() expects it
Codec = Literal["h264", "vp8"]

MIN_BITRATE = 150_000
MAX_BITRATE = 2_500_000
BITRATE_HYSTERESIS = 0.15  # ignore REMB wobble smaller than this
RECONFIGURE_INTERVAL_S = 1.0  # at most one rate change per second
# x264 changes its ABR target live, but its VBV ceiling (maxrate) only on reopen. We open
# with maxrate = target * headroom and reopen when the target leaves [maxrate / 3, maxrate].
_MAXRATE_HEADROOM = 1.5
_MAXRATE_SPAN = 3.0


def h264_level(width: int, height: int, fps: float) -> str:
    """The lowest of the levels we use that fits the size and rate (Table A-1)."""
    mbs = ((width + 15) // 16) * ((height + 15) // 16)
    for level, max_fs, max_mbps in (("3.1", 3600, 108_000), ("4.0", 8192, 245_760)):
        if mbs <= max_fs and mbs * fps <= max_mbps:
            return level
    return "5.1"


class VideoEncoder:
    """One H.264 (libx264) or VP8 (libvpx) encoder producing `av.Packet`s for aiortc.

    `encode()` is called from one thread at a time (the track's executor); the other
    methods may be called from the event loop.
    """

    def __init__(
        self,
        codec: Codec,
        width: int,
        height: int,
        fps: float,
        bitrate_bps: int,
        *,
        min_bitrate_bps: int = MIN_BITRATE,
        max_bitrate_bps: int = MAX_BITRATE,
        keyframe_interval_s: float = KEYFRAME_INTERVAL_S,
        reconfigure_interval_s: float = RECONFIGURE_INTERVAL_S,
        threads: int = 1,
    ) -> None:
        if codec not in ("h264", "vp8"):
            raise ValueError(f"codec must be 'h264' or 'vp8', not {codec!r}")
        if width % 2 or height % 2:
            raise ValueError(f"frame size must be even, not {width}x{height}")
        if not keyframe_interval_s > 0:
            raise ValueError(f"keyframe interval must be positive, not {keyframe_interval_s}")
        self.codec: Codec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self.min_bitrate = min_bitrate_bps
        self.max_bitrate = max_bitrate_bps
        self.keyframe_interval_s = keyframe_interval_s
        self.reconfigure_interval_s = reconfigure_interval_s
        self.threads = threads
        self._lock = threading.Lock()  # guards the notes below, not the codec context
        self._wanted_bitrate = self._clamp(bitrate_bps)
        self._keyframe_wanted = False
        self._applied_bitrate = self._wanted_bitrate
        self._maxrate = 0
        self._last_change = -1e9
        self._context: VideoCodecContext | None = None
        self._next_pts = 0
        self._last_pts = -1
        # counters for stats, tests and the bench
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.reopens = 0

    # ------------------------------------------------------------ control

    @property
    def target_bitrate(self) -> int:
        """The bitrate the encoder is running at now (after clamping and hysteresis)."""
        return self._applied_bitrate

    def request_keyframe(self) -> None:
        """Make the next encoded frame an IDR (VP8: key frame), with SPS/PPS before it."""
        with self._lock:
            self._keyframe_wanted = True

    def set_target_bitrate(self, bps: int) -> None:
        """Note the bitrate the receiver side asks for (REMB); applied before a next frame.

        Clamped to [min, max]. Changes under 15% and changes less than a second after the
        previous one wait, because every REMB wobble would otherwise reconfigure (and for
        VP8 reopen, with a key frame) the encoder.
        """
        with self._lock:
            self._wanted_bitrate = self._clamp(bps)

    def _clamp(self, bps: int) -> int:
        return max(self.min_bitrate, min(self.max_bitrate, int(bps)))

    # ------------------------------------------------------------ encoding

    def encode(self, frame: av.VideoFrame) -> list[av.Packet]:
        """Encode one frame (hot path); returns its packet(s), pts in 90 kHz.

        A frame without pts gets one from the frame rate; pts that do not advance are
        nudged forward, since x264 and libvpx reject or misorder them.
        """
        with self._lock:
            keyframe = self._keyframe_wanted
            self._keyframe_wanted = False
            wanted = self._wanted_bitrate
        now = time.monotonic()
        if self._context is None:
            self._open(wanted)
            self._last_change = now
        elif self._should_change(wanted, now):
            self._change_bitrate(wanted)
            self._last_change = now
            if self._context is None:  # reopened
                self._open(wanted)
        if frame.format.name != "yuv420p" or frame.width != self.width or (
            frame.height != self.height
        ):
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        pts = self._pts_of(frame)
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.I if keyframe else (
            av.video.frame.PictureType.NONE
        )
        assert self._context is not None
        packets = list(self._context.encode(frame))
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
            if packet.pts is None:
                packet.pts = pts
            self.bytes += packet.size
            if packet.is_keyframe:
                self.keyframes += 1
        self.frames += 1
        return packets

    def _pts_of(self, frame: av.VideoFrame) -> int:
        if frame.pts is None or frame.time_base is None:
            pts = self._next_pts
        elif frame.time_base == VIDEO_TIME_BASE:
            pts = int(frame.pts)
        else:
            pts = int(frame.pts * frame.time_base / VIDEO_TIME_BASE)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        self._next_pts = pts + round(90000 / self.fps)
        return pts

    def _should_change(self, wanted: int, now: float) -> bool:
        if wanted == self._applied_bitrate:
            return False
        if abs(wanted - self._applied_bitrate) / self._applied_bitrate <= BITRATE_HYSTERESIS:
            return False
        return now - self._last_change >= self.reconfigure_interval_s

    def _change_bitrate(self, bps: int) -> None:
        assert self._context is not None
        live = self.codec == "h264" and self._maxrate / _MAXRATE_SPAN <= bps <= self._maxrate
        logger.debug("video bitrate %d -> %d bps (%s)", self._applied_bitrate, bps,
                     "live" if live else "reopen")
        self._applied_bitrate = bps
        if live:
            # libavcodec's libx264 wrapper notices bit_rate changed and calls
            # x264_encoder_reconfig before the next frame: no key frame needed.
            self._context.bit_rate = bps
            return
        # libvpx (in libavcodec) takes no live rate change, and x264's VBV ceiling is fixed
        # at open: start a new stream. Its first frame is a key frame by nature.
        self._close()
        self.reopens += 1

    def _open(self, bps: int) -> None:
        self._applied_bitrate = bps
        gop = max(1, round(self.keyframe_interval_s * self.fps))
        if self.codec == "h264":
            self._context = self._open_h264(bps, gop)
        else:
            self._context = self._open_vp8(bps, gop)

    def _base_context(
        self, name: Literal["libx264", "libvpx"], bps: int, gop: int
    ) -> VideoCodecContext:
        ctx = CodecContext.create(name, "w")
        ctx.width = self.width
        ctx.height = self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = VIDEO_TIME_BASE
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        ctx.bit_rate = bps
        ctx.gop_size = gop
        ctx.max_b_frames = 0
        ctx.thread_count = self.threads
        return ctx

    def _open_h264(self, bps: int, gop: int) -> VideoCodecContext:
        maxrate = min(self.max_bitrate, int(bps * _MAXRATE_HEADROOM))
        maxrate = max(maxrate, bps)
        self._maxrate = maxrate
        ctx = self._base_context("libx264", bps, gop)
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",  # no lookahead, no B-frames, no frame delay
            "profile": "baseline",  # x264's baseline is constrained baseline (42e0xx)
            "level": h264_level(self.width, self.height, self.fps),
            "maxrate": str(maxrate),
            "bufsize": str(maxrate),  # a one-second VBV: frames stay near the mean size
            "forced-idr": "1",  # a requested key frame is an IDR, not an open-GOP I
            # SPS/PPS before every IDR (a subscriber can start at any key frame); one
            # slice per picture; no periodic intra refresh, which never yields an IDR.
            "x264-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"
                ":intra-refresh=0:slices=1:sliced-threads=0:aud=0"
            ),
        }
        ctx.open()
        return ctx

    def _open_vp8(self, bps: int, gop: int) -> VideoCodecContext:
        self._maxrate = bps
        ctx = self._base_context("libvpx", bps, gop)
        ctx.qmin = 4
        ctx.qmax = 56
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "12",  # faster ones (up to 16) stop following a lower bitrate
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "error-resilient": "1",
            "minrate": str(bps),  # minrate = maxrate = bitrate: CBR, as WebRTC encoders do
            "maxrate": str(bps),
            "bufsize": str(bps),
            "undershoot-pct": "100",
            "overshoot-pct": "15",
            "static-thresh": "1",
        }
        ctx.open()
        return ctx

    def _close(self) -> None:
        self._context = None  # PyAV frees the context when it is collected

    def close(self) -> None:
        """Drop the codec context; the encoder reopens itself if used again."""
        self._close()
