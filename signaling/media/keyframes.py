"""Is this RTP payload the first packet of a keyframe? Per codec, without depacketising.

Called for every forwarded video packet (hot path): a few byte reads, no allocation.
A subscriber starts (or resumes after a source switch) at such a packet, so its decoder
never sees a delta frame without its reference.
"""

from __future__ import annotations

from collections.abc import Callable

KeyframeDetector = Callable[[bytes], bool]

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


def h264_keyframe_start(payload: bytes) -> bool:
    """True for a packet carrying an SPS or the start of an IDR picture's first slice
    (RFC 6184). A slice's first byte starts first_mb_in_slice, ue(v): its top bit is set
    iff it is 0, so a later slice of a multi-slice IDR is no place to start."""
    if len(payload) < 2:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _H264_FU_A:
        # FU header: S bit and the original NAL type; then the slice's first byte
        return (
            bool(payload[1] & 0x80)
            and (payload[1] & 0x1F) == _H264_IDR
            and len(payload) > 2
            and bool(payload[2] & 0x80)
        )
    if nal_type == _H264_STAP_A:
        pos = 1
        end = len(payload)
        while pos + 2 < end:
            size = (payload[pos] << 8) | payload[pos + 1]
            inner = payload[pos + 2] & 0x1F
            if inner == _H264_SPS:
                return True
            if inner == _H264_IDR and pos + 3 < end and payload[pos + 3] & 0x80:
                return True
            pos += 2 + size
        return False
    if nal_type == _H264_IDR:
        return bool(payload[1] & 0x80)
    return nal_type == _H264_SPS


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 key frame (RFC 7741 descriptor, then P bit)."""
    if not payload:
        return False
    first = payload[0]
    # S bit set and partition index 0: this packet starts the frame
    if not (first & 0x10) or (first & 0x0F):
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if len(payload) <= pos:
        return False
    # VP8 payload header: P bit clear means key frame
    return not (payload[pos] & 0x01)


def keyframe_detector(mime_type: str) -> KeyframeDetector | None:
    """The detector for a negotiated codec, or None for codecs without keyframes (audio)."""
    mime = mime_type.lower()
    if mime == "video/h264":
        return h264_keyframe_start
    if mime == "video/vp8":
        return vp8_keyframe_start
    return None
