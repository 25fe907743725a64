"""RTP packets → encoded frames, for any sink that stores or remuxes (recorder, HLS).

The payload formats are parsed by aiortc's own code (`aiortc.codecs.depayload`, i.e.
`H264PayloadDescriptor` / `VpxPayloadDescriptor`); this module only adds what a recorder
needs around it that aiortc's JitterBuffer does not give: frame boundaries from the marker
bit, a short reorder window so NACK retransmissions (which arrive late, on the media SSRC:
the server negotiates no RTX) can still fill a hole, and explicit loss handling. A frame
with a hole is never emitted: it is dropped and, for video, every frame up to the next
keyframe too (a decoder would show garbage until then); `needs_keyframe` tells the owner
to ask the publisher for one. An H.264 keyframe ends the wait only if it carries its SPS
and PPS: a stream joined (or lost) between a picture's parameter-set packets and its IDR
gives an IDR nothing can decode or mux on its own (an MP4 or MPEG-TS muxer refuses it).

Output: H.264 as Annex-B access units (4-byte start codes, as aiortc writes them), VP8 as
raw frames, audio packets as they are (one packet, one frame).
Sequence numbers are unwrapped (16 bit); timestamps are only compared for equality or
as a signed 32-bit difference, so their wrap needs no care here (see recorder/capture/clock.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

_H264_IDR = 5
_H264_SPS = 7
_H264_PPS = 8
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


def _h264_has_parameter_sets(access_unit: bytes) -> bool:
    """Does this Annex-B access unit carry an SPS and a PPS? (Only asked of a keyframe
    that would end a wait, never on the hot path.)"""
    types = set()
    start = access_unit.find(b"\x00\x00\x01")
    while start >= 0 and start + 3 < len(access_unit):
        types.add(access_unit[start + 3] & 0x1F)
        start = access_unit.find(b"\x00\x00\x01", start + 3)
    return _H264_SPS in types and _H264_PPS in types


def _h264_starts_frame(payload: bytes) -> bool:
    """Can this packet be the first of an access unit (not an FU-A continuation, nor a
    slice after the picture's first: first_mb_in_slice, ue(v), is 0 iff its bit is 1)?"""
    if len(payload) < 2:
        return False
    nal_type = payload[0] & 0x1F
    body = 1
    if nal_type == _H264_FU_A:
        if not payload[1] & 0x80:
            return False
        nal_type = payload[1] & 0x1F
        body = 2
    elif nal_type == _H264_STAP_A:
        if len(payload) < 4:
            return False
        nal_type = payload[3] & 0x1F
        body = 4
    if nal_type in (1, _H264_IDR):  # a slice: the picture's first one only
        return len(payload) > body and bool(payload[body] & 0x80)
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
        self._h264 = name == "h264"
        self._keyframe_part: Callable[[bytes], bool]
        self._starts_frame: Callable[[bytes], bool]
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
        if not self.is_video and ext == self._next and not self._pending and self._ts is None:
            # Hot path for audio, the common case: in order, nothing held, and one packet
            # is one whole frame (what _consume + _finish would do, without their work).
            self._next = ext + 1
            payload = packet.payload
            if not payload:
                return out
            self._after_loss = False
            counters = self.counters
            counters.frames += 1
            counters.keyframes += 1
            counters.bytes += len(payload)
            out.append(AssembledFrame(packet.timestamp, True, payload))
            return out
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

    def flush(self) -> list[AssembledFrame]:
        """The stream ended: give up on any hole and return the whole frames held behind
        it (a frame still waiting for its marker is dropped)."""
        out: list[AssembledFrame] = []
        while self._pending:
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
            self._consume(pending.pop(self._next), out)
            self._next += 1
        # a later hole waits from the first packet held behind it
        self._hole_since = pending[min(pending)].timestamp if pending else None

    def _give_up_hole(self, out: list[AssembledFrame]) -> None:
        first = min(self._pending)
        # _next is None only before the first packet, and a hole needs one before it
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
                if self._h264 and payload[0] & 0x1F == _H264_FU_A and len(payload) >= 2 \
                        and not payload[1] & 0x80:
                    # an FU-A continuation, most video packets: its fragment as is, which
                    # is what aiortc's parser returns for it, without the parser's cost
                    self._parts.append(payload[2:])
                else:
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
        data = b"".join(parts)
        if self.needs_keyframe:
            if not key or (self._h264 and not _h264_has_parameter_sets(data)):
                self.counters.dropped_frames += 1
                return
            self.needs_keyframe = False
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


# ------------------------------------------------------------------ frame size


def frame_size(codec_mime: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) from a keyframe's own headers (H.264 SPS, VP8 key frame header),
    without decoding; None when the frame does not say."""
    mime = codec_mime.lower()
    try:
        if mime == "video/vp8":
            if len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
                return (
                    int.from_bytes(data[6:8], "little") & 0x3FFF,
                    int.from_bytes(data[8:10], "little") & 0x3FFF,
                )
            return None
        if mime == "video/h264":
            for nal in _annexb_nals(data):
                if nal and nal[0] & 0x1F == _H264_SPS:
                    return _h264_sps_size(nal)
    except (IndexError, ValueError):
        return None
    return None


def _annexb_nals(data: bytes) -> list[bytes]:
    nals = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        # a 4-byte start code leaves a trailing zero on the previous NAL
        nals.append(data[start:end].rstrip(b"\x00") if nxt >= 0 else data[start:end])
        pos = nxt
    return nals


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _h264_sps_size(nal: bytes) -> tuple[int, int]:
    """Width and height from an SPS NAL (H.264 7.3.2.1.1), cropping applied."""
    rbsp = nal[1:].replace(b"\x00\x00\x03", b"\x00\x00")
    b = _Bits(rbsp)
    profile = b.u(8)
    b.u(16)  # constraint flags, level
    b.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = b.ue()
        if chroma_format == 3:
            b.u(1)
        b.ue()
        b.ue()
        b.u(1)
        if b.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if b.u(1):
                    last = next_ = 8
                    for _ in range(16 if i < 6 else 64):
                        if next_:
                            next_ = (last + b.se() + 256) % 256
                        last = next_ or last
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.u(1)
    width_mbs = b.ue() + 1
    height_units = b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)
    b.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if b.u(1):  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        crop_x = 1 if chroma_format in (0, 3) else 2
        crop_y = (2 - frame_mbs_only) * (2 if chroma_format == 1 else 1)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    return width, height
