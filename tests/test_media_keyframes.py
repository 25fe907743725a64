"""Keyframe detection on RTP payloads (signaling/media/keyframes.py), without depacketising.

The router starts every subscriber (and resumes it after a switch of source) at the packet
these functions flag, so a false "yes" shows a room garbage and a false "no" freezes it.
Real payloads: the classroom agent's H.264 and VP8 encoders, packetised by aiortc; and
hand-made payloads for the descriptor variants a browser may send.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor

from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer
from signaling.media.keyframes import h264_keyframe_start, keyframe_detector, vp8_keyframe_start


@functools.cache
def packetised(codec: str, width: int, height: int, count: int = 31
               ) -> tuple[tuple[bool, tuple[bytes, ...]], ...]:
    """(keyframe, RTP payloads) per frame of the agent's encoder, keyframes every 15."""
    encoder = VideoEncoder(codec, width, height, 15, 1_500_000, keyframe_interval_s=1.0)
    renderer = PatternRenderer(width, height, "keys", 3)
    packer = H264Encoder() if codec == "h264" else Vp8Encoder()
    frames = []
    for i in range(count):
        for packet in encoder.encode(renderer.render_frame(i, i * 66)):
            wrapped = av.Packet(bytes(packet))
            wrapped.pts = 0
            wrapped.time_base = Fraction(1, 90000)
            payloads, _ = packer.pack(wrapped)
            frames.append((packet.is_keyframe, tuple(payloads)))
    assert [k for k, _p in frames] == [i % 15 == 0 for i in range(count)]
    return tuple(frames)


def nal(nal_type: int, body: bytes = b"\x88\x84\x00") -> bytes:
    return bytes([0x60 | nal_type]) + body


def stap_a(*units: bytes) -> bytes:
    return b"\x78" + b"".join(len(u).to_bytes(2, "big") + u for u in units)


def fu_a(nal_type: int, *, start: bool, end: bool = False) -> bytes:
    header = (0x80 if start else 0) | (0x40 if end else 0) | nal_type
    return bytes([0x7C, header]) + b"\x88\x84\x00\x33"


# --------------------------------------------------------------------------- H.264


@pytest.mark.parametrize("size", [(320, 180), (1280, 720)])
def test_every_h264_keyframe_is_found_at_its_first_packet_and_no_delta_frame_is(
    size: tuple[int, int]
) -> None:
    frames = packetised("h264", *size)
    for index, (keyframe, payloads) in enumerate(frames):
        flags = [h264_keyframe_start(p) for p in payloads]
        if keyframe:
            # aiortc aggregates SPS and PPS into a STAP-A ahead of the IDR slice
            assert payloads[0][0] & 0x1F == 24, index
            assert flags[0], index
        else:
            assert not any(flags), index
    if size == (1280, 720):
        # a 720p IDR is fragmented: only its first fragment is a start, not the rest
        _key, payloads = frames[0]
        fragments = [p for p in payloads if p[0] & 0x1F == 28]
        assert len(fragments) > 2
        assert [h264_keyframe_start(p) for p in fragments] == [True] + [False] * (
            len(fragments) - 1
        )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (nal(7), True),  # SPS sent on its own (some browsers)
        (nal(5), True),  # an IDR slice that fits in one packet
        (nal(1), False),  # a delta slice
        (nal(8), False),  # a PPS alone does not start a picture
        (nal(6), False),  # SEI
        (stap_a(nal(7), nal(8)), True),
        (stap_a(nal(6), nal(5)), True),  # the IDR is the second unit
        (stap_a(nal(6), nal(8)), False),
        (stap_a(nal(6), nal(1)), False),
        (fu_a(5, start=True), True),
        (fu_a(5, start=False), False),  # the middle of an IDR: too late to start
        (fu_a(5, start=False, end=True), False),
        (fu_a(1, start=True), False),
        (nal(5, b"\x4e\x00"), False),  # an IDR's later slice (first_mb_in_slice = 1)
        (bytes([0x7C, 0x85]) + b"\x4e\x00", False),  # the same, fragmented
        (stap_a(nal(6), nal(5, b"\x4e\x00")), False),
        # a delta unit whose stated size covers the rest: what follows is its data, not a unit
        (b"\x78\x00\x40" + nal(1) + b"\x00\x04" + nal(5), False),
        (b"\x7c", False),  # an FU-A cut after its indicator
        (b"", False),
        (b"\x65", False),
    ],
)
def test_h264_payload_kinds_are_told_apart(payload: bytes, expected: bool) -> None:
    assert h264_keyframe_start(payload) is expected


# --------------------------------------------------------------------------- VP8


@pytest.mark.parametrize("size", [(320, 180), (1280, 720)])
def test_every_vp8_keyframe_is_found_at_its_first_packet_only(size: tuple[int, int]) -> None:
    frames = packetised("vp8", *size)
    for index, (keyframe, payloads) in enumerate(frames):
        flags = [vp8_keyframe_start(p) for p in payloads]
        assert flags == [keyframe] + [False] * (len(payloads) - 1), index
    assert max(len(p) for _k, p in frames) > 1  # a frame in several packets was seen


VP8_KEY = b"\x50\x22\x00\x9d\x01\x2a"  # frame tag with P clear, then the start code
VP8_DELTA = b"\x51\x22\x00"


@pytest.mark.parametrize(
    "descriptor",
    [
        VpxPayloadDescriptor(partition_start=1, partition_id=0),
        VpxPayloadDescriptor(partition_start=1, partition_id=0, picture_id=0x1234),
        VpxPayloadDescriptor(partition_start=1, partition_id=0, picture_id=7, tl0picidx=3),
        VpxPayloadDescriptor(partition_start=1, partition_id=0, picture_id=7, tl0picidx=3,
                             tid=(1, 1), keyidx=5),
        VpxPayloadDescriptor(partition_start=1, partition_id=0, keyidx=2),
    ],
    ids=["plain", "picture-id", "tl0picidx", "all-fields", "keyidx-only"],
)
def test_vp8_descriptor_fields_are_skipped_to_find_the_frame_tag(
    descriptor: VpxPayloadDescriptor,
) -> None:
    head = bytes(descriptor)
    assert vp8_keyframe_start(head + VP8_KEY)
    assert not vp8_keyframe_start(head + VP8_DELTA)
    # a descriptor with nothing after it is no keyframe (and no IndexError)
    assert not vp8_keyframe_start(head)


def test_a_7_bit_picture_id_and_non_starting_packets() -> None:
    # X, S; I; picture id with M clear (7 bits): one byte, then the frame tag
    assert vp8_keyframe_start(b"\x90\x80\x05" + VP8_KEY)
    assert not vp8_keyframe_start(b"\x90\x80\x05" + VP8_DELTA)
    # S clear: a continuation of a key frame is not its start
    assert not vp8_keyframe_start(b"\x00" + VP8_KEY)
    # S set but partition 1: not the frame's first packet
    assert not vp8_keyframe_start(b"\x11" + VP8_KEY)
    assert not vp8_keyframe_start(b"")
    assert not vp8_keyframe_start(b"\x90")  # X promised an extension byte
    assert not vp8_keyframe_start(b"\x90\x80")  # I promised a picture id


def test_the_detector_follows_the_negotiated_codec_and_audio_has_none() -> None:
    assert keyframe_detector("video/H264") is h264_keyframe_start
    assert keyframe_detector("VIDEO/h264") is h264_keyframe_start
    assert keyframe_detector("video/VP8") is vp8_keyframe_start
    assert keyframe_detector("audio/opus") is None
    assert keyframe_detector("video/VP9") is None


def test_only_the_first_slice_of_a_multi_slice_idr_is_a_place_to_start() -> None:
    """Hardware encoders cut a picture into slices; a room that starts at the second slice
    of an IDR decodes a partial picture, and every delta frame after it, until the next."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = 640, 360
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 15)
    ctx.bit_rate = 1_500_000
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": "slice-max-size=900"}
    frame = PatternRenderer(640, 360, "slices", 6).render_frame(0, 0)
    frame.pts = 0
    (idr,) = [bytes(p) for p in ctx.encode(frame)]
    wrapped = av.Packet(idr)
    wrapped.pts = 0
    wrapped.time_base = Fraction(1, 90000)
    payloads, _ = H264Encoder().pack(wrapped)
    slices = [p for p in payloads if p[0] & 0x1F == 5]  # one IDR slice per packet
    assert len(slices) > 3
    assert [h264_keyframe_start(p) for p in payloads] == [
        True if i == 0 else p is slices[0] for i, p in enumerate(payloads)
    ]
