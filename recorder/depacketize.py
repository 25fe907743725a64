"""RTP packets → encoded frames, for any sink that stores or remuxes (recorder, HLS).

The payload formats are parsed by aiortc's own code (`aiortc.codecs.depayload`, i.e.
`H264PayloadDescriptor` / `VpxPayloadDescriptor`); this module only adds what a recorder
needs around it that aiortc's JitterBuffer does not give: frame boundaries from the marker
bit, a short reorder window so NACK retransmissions (which arrive late, on the media SSRC:
the server negotiates no RTX) can still fill a hole, and explicit loss handling. A frame
with a hole is never emitted: it is dropped and, for video, every frame up to the next
keyframe too (a decoder would show garbage until then); `needs_keyframe` tells the owner
to ask the publisher for one.

Output: H.264 as Annex-B access units (4-byte start codes, as aiortc writes them), VP8 as
raw frames, audio packets as they are (one packet, one frame).
Sequence numbers are unwrapped (16 bit); timestamps are only compared for equality or
as a signed 32-bit difference, so their wrap needs no care here (see recorder/clock.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28

MAX_MISORDER = 3000  # packets: a jump further than this is a restarted stream, not loss


@dataclass
class AssembledFrame:
    rtp_timestamp: int  # as sent, 32 bit
    keyframe: bool
    data: bytes


@dataclass
class AssemblerCounters:
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    lost_packets: int = 0  # holes given up on
    dropped_frames: int = 0  # incomplete, or waiting for a keyframe
    late_packets: int = 0  # arrived after their hole was given up (or duplicates)
    recovered_packets: int = 0  # filled a hole before it was given up (NACK worked)
    errors: int = 0  # payloads aiortc could not parse
    keyframe_waits: int = 0  # times the assembler started waiting for a keyframe


def _h264_keyframe_part(payload: bytes) -> bool:
    """Does this RTP payload carry an IDR slice or an SPS (RFC 6184)?"""
    if len(payload) < 2:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _H264_FU_A:
        return (payload[1] & 0x1F) == _H264_IDR
    if nal_type == _H264_STAP_A:
        pos = 1
        end = len(payload)
        while pos + 2 < end:
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in (_H264_SPS, _H264_IDR):
                return True
            pos += 2 + size
        return False
    return nal_type in (_H264_SPS, _H264_IDR)


def _h264_starts_frame(payload: bytes) -> bool:
    """Can this packet be the first of an access unit (not an FU-A continuation)?"""
    if len(payload) < 2:
        return False
    if payload[0] & 0x1F == _H264_FU_A:
        return bool(payload[1] & 0x80)
    return True


def _vp8_starts_frame(payload: bytes) -> bool:
    # S bit and partition index 0 (RFC 7741)
    return bool(payload) and bool(payload[0] & 0x10) and not (payload[0] & 0x0F)


class FrameAssembler:
    """Turns one RTP stream (one SSRC) into whole encoded frames.

    `push` is called for every packet in arrival order (hot path) and returns the frames
    it completed, oldest first. A hole waits up to `max_delay` seconds of RTP time (newest
    packet's timestamp against the hole's) for a retransmission, then counts as lost.
    """

    def __init__(
        self, codec_mime: str, *, clock_rate: int | None = None, max_delay: float | None = None
    ) -> None:
        mime = codec_mime.lower()
        self.codec_mime = codec_mime
        self.kind = mime.split("/", 1)[0]
        self.is_video = self.kind == "video"
        name = mime.split("/", 1)[-1]
        self.clock_rate = clock_rate or (90000 if self.is_video else 48000)
        # aiortc's depayload dispatches on the codec name only.
        self._codec = RTCRtpCodecParameters(
            mimeType=codec_mime, clockRate=self.clock_rate, payloadType=0
        )
        self._depayload = depayload
        if name == "h264":
            self._keyframe_part = _h264_keyframe_part
            self._starts_frame = _h264_starts_frame
        elif name == "vp8":
            self._keyframe_part = lambda p: _vp8_starts_frame(p) and _vp8_key(p)
            self._starts_frame = _vp8_starts_frame
        else:
            self._keyframe_part = lambda p: not self.is_video
            self._starts_frame = lambda p: True
        if max_delay is None:
            max_delay = 0.3 if self.is_video else 0.08
        self._max_delay_ticks = int(max_delay * self.clock_rate)
        self.needs_keyframe = self.is_video
        self.counters = AssemblerCounters()
        if self.is_video:
            self.counters.keyframe_waits = 1
        # reorder window
        self._highest: int | None = None  # highest extended seq seen
        self._next: int | None = None  # extended seq of the next packet to consume
        self._pending: dict[int, RtpPacket] = {}
        self._hole_since: int | None = None  # RTP ts of the first packet seen past a hole
        # frame in progress
        self._ts: int | None = None
        self._parts: list[bytes] = []
        self._key = False
        self._broken = False

    # ------------------------------------------------------------------ input

    def push(self, packet: RtpPacket) -> list[AssembledFrame]:
        """Feed one packet (hot path); the frames it completes, oldest first."""
        out: list[AssembledFrame] = []
        ext = self._extend(packet.sequence_number)
        if self._next is None or abs(ext - self._next) > MAX_MISORDER:
            if self._next is not None:
                self._lose(out)  # the stream restarted: whatever was pending is gone
            self._pending.clear()
            self._highest = ext
            self._next = ext
            self._hole_since = None
        if ext < self._next or ext in self._pending:
            self.counters.late_packets += 1
            return out
        if ext == self._next:
            if self._hole_since is not None or self._pending:
                if self._hole_since is not None:
                    self.counters.recovered_packets += 1
                self._hole_since = None
            self._consume(packet, out)
            self._next += 1
            self._drain(out)
        else:
            self._pending[ext] = packet
            if self._hole_since is None:
                self._hole_since = packet.timestamp
            elif _ts_diff(packet.timestamp, self._hole_since) > self._max_delay_ticks or (
                len(self._pending) > MAX_MISORDER // 4
            ):
                self._give_up_hole(out)
        return out

    # -------------------------------------------------------------- internals

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            self._highest = seq
            return seq
        delta = (seq - self._highest) & 0xFFFF
        if delta < 0x8000:
            ext = self._highest + delta
            self._highest = ext
            return ext
        return self._highest + delta - 0x10000

    def _drain(self, out: list[AssembledFrame]) -> None:
        pending = self._pending
        while pending and self._next in pending:
            self._consume(pending.pop(self._next), out)  # type: ignore[arg-type]
            self._next += 1  # type: ignore[operator]
        # a later hole waits from the first packet held behind it
        self._hole_since = pending[min(pending)].timestamp if pending else None

    def _give_up_hole(self, out: list[AssembledFrame]) -> None:
        first = min(self._pending)
        self.counters.lost_packets += first - self._next  # type: ignore[operator]
        self._lose(out)
        self._next = first
        self._hole_since = None
        self._drain(out)

    def _lose(self, out: list[AssembledFrame]) -> None:
        """Packets are missing: the frame in progress cannot be whole."""
        if self._ts is not None:
            self._broken = True
        if self.is_video:
            if not self.needs_keyframe:
                self.counters.keyframe_waits += 1
            self.needs_keyframe = True
        self._after_loss = True

    _after_loss = False

    def _consume(self, packet: RtpPacket, out: list[AssembledFrame]) -> None:
        payload = packet.payload
        if not payload:
            return  # padding only: it fills its sequence number, nothing else
        if self._ts is not None and packet.timestamp != self._ts:
            self._finish(out)  # the previous frame had no marker (or lost it)
        if self._ts is None:
            self._ts = packet.timestamp
            if self._after_loss:
                self._after_loss = False
                # the frame's head may be what was lost
                if not self._starts_frame(payload):
                    self._broken = True
        elif self._after_loss:
            self._after_loss = False
            self._broken = True
        if not self._broken:
            try:
                self._parts.append(self._depayload(self._codec, payload))
            except ValueError:
                self.counters.errors += 1
                self._lose(out)
                self._after_loss = False
                self._broken = True
            else:
                if not self._key and self._keyframe_part(payload):
                    self._key = True
        if packet.marker or not self.is_video:
            self._finish(out)

    def _finish(self, out: list[AssembledFrame]) -> None:
        ts, parts, key, broken = self._ts, self._parts, self._key, self._broken
        self._ts = None
        self._parts = []
        self._key = False
        self._broken = False
        if ts is None:
            return
        if broken or not parts:
            self.counters.dropped_frames += 1
            return
        if self.needs_keyframe:
            if not key:
                self.counters.dropped_frames += 1
                return
            self.needs_keyframe = False
        data = b"".join(parts)
        self.counters.frames += 1
        self.counters.bytes += len(data)
        if key:
            self.counters.keyframes += 1
        out.append(AssembledFrame(ts, key, data))


def _vp8_key(payload: bytes) -> bool:
    """First packet of a VP8 frame: is the frame a key frame (P bit clear)?"""
    pos = 1
    if payload[0] & 0x80:
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:
            pos += 1
        if ext & 0x30:
            pos += 1
    return len(payload) > pos and not (payload[pos] & 0x01)


def _ts_diff(a: int, b: int) -> int:
    """a - b for 32-bit RTP timestamps, signed, across wrap."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d
