"""RTP → frames for the recorder and the broadcaster (recorder/capture/depacketize.py).

Beside tests/test_recorder_capture.py (whole streams byte-exact, one lost delta frame, one
retransmission, audio loss): here the losses that are hard to get right. The rule under
test is the module's own: a frame with a hole is never emitted, so every frame that comes
out is byte for byte a frame the encoder made (H.264 as Annex-B) and decodes cleanly.
Real media throughout: x264, libvpx and libopus output, packetised by aiortc.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer, read_pattern_frame
from recorder.capture.depacketize import FrameAssembler

STEP = 6000  # 90 kHz ticks per frame at 15 fps


# --------------------------------------------------------------------------- media


@functools.cache
def agent_frames(codec: str, width: int, height: int, count: int) -> tuple[bytes, ...]:
    """The classroom agent's encoder output, keyframes at 0, 15, 30."""
    encoder = VideoEncoder(codec, width, height, 15, 1_500_000, keyframe_interval_s=1.0)
    renderer = PatternRenderer(width, height, "loss", 5)
    out = []
    for i in range(count):
        out.extend(bytes(p) for p in encoder.encode(renderer.render_frame(i, i * 66)))
    return tuple(out)


@functools.cache
def sliced_h264_frames(count: int) -> tuple[bytes, ...]:
    """x264 with many slices per picture (as hardware encoders and some browsers send)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = 640, 360
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 15)
    ctx.bit_rate = 1_500_000
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": "slice-max-size=900:keyint=15:min-keyint=15:scenecut=0"}
    renderer = PatternRenderer(640, 360, "slices", 6)
    out = []
    for i in range(count):
        frame = renderer.render_frame(i, i * 66)
        frame.pts = i
        out.extend(bytes(p) for p in ctx.encode(frame))
    out.extend(bytes(p) for p in ctx.encode(None))
    return tuple(out[:count])


def packetise(codec: str, frames: tuple[bytes, ...], *, seq0: int = 0, ts0: int = 0
              ) -> list[list[RtpPacket]]:
    packer = H264Encoder() if codec == "h264" else Vp8Encoder()
    seq = seq0
    stream = []
    for i, frame in enumerate(frames):
        packet = av.Packet(frame)
        packet.pts = 0
        packet.time_base = Fraction(1, 90000)
        payloads, _ = packer.pack(packet)
        stream.append([
            RtpPacket(payload_type=96, marker=j == len(payloads) - 1,
                      sequence_number=(seq + j) & 0xFFFF,
                      timestamp=(ts0 + i * STEP) & 0xFFFFFFFF, ssrc=42, payload=payload)
            for j, payload in enumerate(payloads)
        ])
        seq += len(payloads)
    return stream


def annexb(frame: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in H264Encoder._split_bitstream(frame))


def counters_of(codec: str, frames: list[bytes]) -> list[int]:
    """The pattern counter of every picture, decoding the frames in order."""
    context = av.CodecContext.create("h264" if codec == "h264" else "libvpx", "r")
    pictures = []
    for data in frames:
        pictures.extend(context.decode(av.Packet(data)))
    pictures.extend(context.decode(None))
    codes = [read_pattern_frame(p) for p in pictures]
    assert None not in codes, "a picture without its pattern: a corrupt frame"
    return [c.counter for c in codes]


def push_all(assembler: FrameAssembler, stream: list[list[RtpPacket]],
             lost: set[tuple[int, int]]) -> list[bytes]:
    """Every packet but the lost (frame, index) ones, in order; the frames that came out."""
    out = []
    for i, packets in enumerate(stream):
        for j, packet in enumerate(packets):
            if (i, j) not in lost:
                out.extend(f.data for f in assembler.push(packet))
    out.extend(f.data for f in assembler.flush())
    return out


# --------------------------------------------------------------------------- H.264


def test_a_keyframe_that_lost_its_first_slices_is_dropped_not_emitted_short() -> None:
    frames = sliced_h264_frames(31)
    stream = packetise("h264", frames, seq0=65_000)
    # frame 15 is an IDR in many slices: its parameter sets in a STAP-A, then one
    # packet per slice. A burst loses the STAP-A and the first slice; the next packet
    # is the IDR's second slice, which looks like the start of a picture but is not.
    assert len(stream[15]) > 4
    assert stream[15][1].payload[0] & 0x1F == 5 and stream[15][2].payload[0] & 0x1F == 5
    assembler = FrameAssembler("video/H264", max_delay=0.1)
    got = push_all(assembler, stream, {(15, 0), (15, 1)})
    originals = [annexb(f) for f in frames]
    assert all(g in originals for g in got), "a frame came out that the encoder never made"
    assert [originals.index(g) for g in got] == [*range(15), 30]
    assert assembler.counters.lost_packets == 2
    assert counters_of("h264", got) == [*range(15), 30]


def test_a_lost_middle_fragment_of_an_idr_drops_it_and_every_frame_until_the_next() -> None:
    frames = agent_frames("h264", 1280, 720, 31)
    stream = packetise("h264", frames, seq0=100)
    fragments = [j for j, p in enumerate(stream[15]) if p.payload[0] & 0x1F == 28]
    middle = fragments[len(fragments) // 2]
    assert not stream[15][middle].payload[1] & 0xC0  # neither start nor end of the NAL
    assembler = FrameAssembler("video/H264", max_delay=0.1)
    got = push_all(assembler, stream, {(15, middle)})
    originals = [annexb(f) for f in frames]
    assert [originals.index(g) for g in got] == [*range(15), 30]
    assert assembler.counters.dropped_frames == 15  # 15 broken, 16..29 without reference
    assert assembler.counters.keyframe_waits == 2
    assert counters_of("h264", got) == [*range(15), 30]


def test_a_lost_marker_packet_ends_its_frame_at_the_next_timestamp_and_drops_it() -> None:
    frames = agent_frames("h264", 1280, 720, 31)
    stream = packetise("h264", frames)
    victim = next(i for i in range(16, 30) if len(stream[i]) > 1)
    assembler = FrameAssembler("video/H264", max_delay=0.1)
    got = push_all(assembler, stream, {(victim, len(stream[victim]) - 1)})
    originals = [annexb(f) for f in frames]
    assert [originals.index(g) for g in got] == [*range(victim), 30]
    assert counters_of("h264", got) == [*range(victim), 30]


def test_a_publisher_that_restarts_its_numbering_is_picked_up_at_its_next_keyframe() -> None:
    frames = agent_frames("h264", 320, 180, 31)
    before = packetise("h264", frames[:20], seq0=10)
    after = packetise("h264", frames, seq0=40_000, ts0=123_456)  # far away: a new stream
    assembler = FrameAssembler("video/H264")
    got = push_all(assembler, before + after[5:], set())
    originals = [annexb(f) for f in frames]
    # the old stream whole, then the new one from its first keyframe (15); 5..14 dropped
    assert [originals.index(g) for g in got] == [*range(20), *range(15, 31)]
    assert assembler.counters.lost_packets == 0
    assert counters_of("h264", got) == [*range(20), *range(15, 31)]


# --------------------------------------------------------------------------- VP8


def test_a_vp8_key_frame_missing_one_packet_is_dropped_with_the_frames_that_need_it() -> None:
    frames = agent_frames("vp8", 1280, 720, 31)
    stream = packetise("vp8", frames, seq0=65_500)
    assert len(stream[15]) > 2
    assembler = FrameAssembler("video/VP8", max_delay=0.1)
    got = push_all(assembler, stream, {(15, 1)})
    assert [frames.index(g) for g in got] == [*range(15), 30]
    assert counters_of("vp8", got) == [*range(15), 30]
    # a duplicate (a retransmission the room asked for twice) changes nothing
    assembler = FrameAssembler("video/VP8")
    doubled = [[*packets, packets[-1]] for packets in stream]
    got = push_all(assembler, doubled, set())
    assert got == list(frames)
    assert assembler.counters.late_packets == len(stream)


# --------------------------------------------------------------------------- Opus


@functools.cache
def opus_packets(count: int) -> tuple[bytes, ...]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate = 48000
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = 32000
    ctx.time_base = Fraction(1, 48000)
    samples = (np.sin(np.arange(960 * count) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
    out = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(samples[i * 960:(i + 1) * 960].reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = i * 960
        out.extend(bytes(p) for p in ctx.encode(frame))
    return tuple(out[:count])


def test_opus_packets_come_out_whole_in_order_after_reordering_and_a_loss() -> None:
    packets = opus_packets(30)
    rtp = [RtpPacket(payload_type=111, sequence_number=(65_530 + i) & 0xFFFF,
                     timestamp=(0xFFFF_F000 + 960 * i) & 0xFFFFFFFF, ssrc=7, payload=p)
           for i, p in enumerate(packets)]
    arrival = [*rtp[:5], rtp[6], rtp[5], *rtp[7:12], *rtp[13:]]  # 5/6 swapped, 12 lost
    assembler = FrameAssembler("audio/opus")
    got = [f for p in arrival for f in assembler.push(p)] + assembler.flush()
    expected = [i for i in range(30) if i != 12]
    assert [f.data for f in got] == [packets[i] for i in expected]
    assert [f.rtp_timestamp for f in got] == [rtp[i].timestamp for i in expected]
    assert assembler.counters.lost_packets == 1
    assert assembler.counters.recovered_packets == 1  # the swapped one filled its hole
    assert not assembler.needs_keyframe  # audio never waits for a keyframe
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = 48000
    decoder.layout = "mono"
    samples = sum(d.samples for f in got for d in decoder.decode(av.Packet(f.data)))
    assert samples == 960 * len(expected)


def test_a_stream_joined_after_an_idrs_parameter_sets_waits_for_a_whole_keyframe() -> None:
    """The first packet seen is the IDR of frame 0, its SPS and PPS (a STAP-A) gone before:
    an IDR alone decodes to nothing and no muxer takes it (a room's recording and the
    live broadcast were lost that way), so the wait goes on to frame 15's keyframe."""
    frames = agent_frames("h264", 320, 180, 31)
    stream = packetise("h264", frames)
    assert stream[0][0].payload[0] & 0x1F == 24  # STAP-A: SPS and PPS
    assembler = FrameAssembler("video/H264", max_delay=0.1)
    got = push_all(assembler, stream, {(0, 0)})
    originals = [annexb(f) for f in frames]
    assert [originals.index(g) for g in got] == list(range(15, 31))
    assert counters_of("h264", got) == list(range(15, 31))
