"""Unit tests of the forwarding path: Publication → SubscriberLeg → the room's wire.

Real objects of the media core (signaling/media/publication.py, subscription.py,
room_connection.py, signaling/live/session.py) fed real RTP packets: frames from the
classroom agent's own encoder, packetised by aiortc. The only things replaced are outside
our code: the clock (`time` in the two media modules, so no test waits on real time) and
the DTLS transport's `_send_rtp` (the network), which here records what the room would
receive. What a room receives is depacketised and decoded again, so "continuous" and
"starts at a keyframe" are checked on pictures, not only on numbers.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Iterator
from fractions import Fraction

import av
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

import signaling.media.publication as publication_module
import signaling.media.subscription as subscription_module
from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer, read_pattern_frame
from recorder.capture.depacketize import FrameAssembler
from signaling.live.session import SignalingSession
from signaling.media.publication import (
    CACHE_SIZE,
    KEYFRAME_MIN_INTERVAL,
    KEYFRAME_RETRY,
    Publication,
)
from signaling.media.room_connection import RoomConnection, codec_key
from signaling.media.subscription import SubscriberLeg

H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={
        "level-asymmetry-allowed": "1",
        "packetization-mode": "1",
        "profile-level-id": "42e01f",
    },
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
FPS = 15
TICKS = 90000 // FPS  # RTP timestamp step between frames


# --------------------------------------------------------------------------- fakes


class FakeClock:
    """Stands in for the `time` module of the media code: time moves when a test says."""

    def __init__(self) -> None:
        self.now = 1000.0  # the rate limiters start from 0.0: be well past it

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_790_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(publication_module, "time", fake)
    monkeypatch.setattr(subscription_module, "time", fake)
    return fake


class Room:
    """A subscribing room: real server-side transceivers, whose wire is a list."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.wire: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.wire.append(data)

    def leg(self, kind: str = "video", codec: RTCRtpCodecParameters = H264) -> SubscriberLeg:
        transceiver = self.pc.addTransceiver(kind, direction="sendonly")
        transceiver.sender.transport._send_rtp = self._send_rtp  # the network: recorded
        leg = SubscriberLeg(transceiver, kind=kind, codec_mime=codec.mimeType)
        leg.start(RTCRtpSendParameters(codecs=[codec], muxId="0"))
        return leg

    def received(self) -> list[RtpPacket]:
        return [RtpPacket.parse(data) for data in self.wire]

    async def close(self) -> None:
        await self.pc.close()


@pytest.fixture
async def room() -> Iterator[Room]:
    r = Room()
    yield r
    await r.close()


def video_publication(
    classroom_id: int = 1, *, max_bitrate: int | None = None
) -> tuple[Publication, list[bytes]]:
    """A started H.264 publication; the list collects the RTCP it sends its publisher."""
    rtcp: list[bytes] = []
    publication = Publication(
        track_id=f"{classroom_id}-video",
        classroom_id=classroom_id,
        kind="video",
        rtcp_ssrc=0xABC000 + classroom_id,
        send_rtcp=rtcp.append,
        max_bitrate=max_bitrate,
    )
    publication.start(RTCRtpReceiveParameters(codecs=[H264]))
    return publication, rtcp


def rtcp_of(sent: list[bytes]) -> list[object]:
    return [p for data in sent for p in RtcpPacket.parse(data)]


def plis(sent: list[bytes]) -> list[RtcpPsfbPacket]:
    return [
        p for p in rtcp_of(sent) if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI
    ]


# --------------------------------------------------------------------------- media


@functools.cache
def h264_frames(tag: int, count: int = 45) -> tuple[tuple[bytes, bool], ...]:
    """(access unit, keyframe) of the agent's H.264 test pattern; keyframes at 0, 15, 30."""
    encoder = VideoEncoder("h264", 320, 180, FPS, 400_000, keyframe_interval_s=1.0)
    renderer = PatternRenderer(320, 180, f"room {tag}", tag)
    out = []
    for i in range(count):
        for packet in encoder.encode(renderer.render_frame(i, i * 66)):
            out.append((bytes(packet), packet.is_keyframe))
    assert [k for _d, k in out] == [i % 15 == 0 for i in range(count)]
    return tuple(out)


def packetise(
    frames: tuple[tuple[bytes, bool], ...], *, ssrc: int, seq0: int, ts0: int
) -> list[list[RtpPacket]]:
    """Each frame as aiortc's packetiser sends it: RTP packets, marker on the last."""
    packer = H264Encoder()
    seq = seq0
    stream = []
    for i, (data, _key) in enumerate(frames):
        packet = av.Packet(data)
        packet.pts = 0
        packet.time_base = Fraction(1, 90000)
        payloads, _ = packer.pack(packet)
        ts = (ts0 + i * TICKS) & 0xFFFFFFFF
        stream.append(
            [
                RtpPacket(
                    payload_type=H264.payloadType,
                    marker=j == len(payloads) - 1,
                    sequence_number=(seq + j) & 0xFFFF,
                    timestamp=ts,
                    ssrc=ssrc,
                    payload=payload,
                )
                for j, payload in enumerate(payloads)
            ]
        )
        seq += len(payloads)
    return stream


def decoded(packets: list[RtpPacket]) -> list[tuple[int, int]]:
    """(tag, counter) of every picture a room decodes from what it received."""
    assembler = FrameAssembler("video/H264")
    context = av.CodecContext.create("h264", "r")
    pictures = []
    for packet in packets:
        for frame in assembler.push(packet):
            pictures.extend(context.decode(av.Packet(frame.data)))
    for frame in assembler.flush():
        pictures.extend(context.decode(av.Packet(frame.data)))
    pictures.extend(context.decode(None))
    codes = [read_pattern_frame(p) for p in pictures]
    assert None not in codes, "a picture without its pattern: a corrupt frame"
    return [(c.tag, c.counter) for c in codes]


async def publish(publication: Publication, frames: list[list[RtpPacket]], clock: FakeClock
                  ) -> None:
    """The publisher sends these frames, one frame interval apart."""
    for packets in frames:
        for packet in packets:
            await publication.on_rtp(packet, int(clock.now * 1000))
        clock.advance(1 / FPS)


def consecutive(numbers: list[int], modulo: int = 0x10000) -> bool:
    return all((b - a) % modulo == 1 for a, b in itertools.pairwise(numbers))


# --------------------------------------------------------------------------- keyframe gating


async def test_a_late_subscriber_starts_at_a_keyframe_and_decodes_every_picture_after_it(
    clock: FakeClock, room: Room
) -> None:
    publication, rtcp = video_publication(1)
    stream = packetise(h264_frames(1), ssrc=0x1111, seq0=500, ts0=77_000)
    await publish(publication, stream[:5], clock)
    leg = room.leg()
    leg.attach(publication)
    # joining asks the publisher for a keyframe at once
    assert [p.media_ssrc for p in plis(rtcp)] == [0x1111]
    assert leg.waiting_for_keyframe
    await publish(publication, stream[5:], clock)

    got = room.received()
    # nothing of frames 5..14 (deltas): the first packet out is the keyframe's first
    assert got[0].payload == stream[15][0].payload
    assert len(got) == sum(len(f) for f in stream[15:])
    assert not leg.waiting_for_keyframe
    # rewritten onto the leg's own stream: its SSRC and payload type, one numbering
    assert {p.ssrc for p in got} == {leg.transceiver.sender._ssrc}
    assert {p.payload_type for p in got} == {H264.payloadType}
    assert consecutive([p.sequence_number for p in got])
    first_ts = got[0].timestamp
    assert [(p.timestamp - first_ts) & 0xFFFFFFFF for p in got] == [
        (p.timestamp - stream[15][0].timestamp) & 0xFFFFFFFF
        for frame in stream[15:] for p in frame
    ]
    assert [p.marker for p in got] == [p.marker for f in stream[15:] for p in f]
    assert decoded(got) == [(1, n) for n in range(15, 45)]


# --------------------------------------------------------------------------- rewriting


async def test_a_leg_switched_to_another_room_continues_one_sequence_and_timestamp_space(
    clock: FakeClock, room: Room
) -> None:
    # room 1 publishes just below the 16-bit wrap, room 2 from an unrelated numbering
    one, _ = video_publication(1)
    two, rtcp_two = video_publication(2)
    a = packetise(h264_frames(1), ssrc=0x1111, seq0=65_520, ts0=0xFFFF_0000)
    b = packetise(h264_frames(2), ssrc=0x2222, seq0=9, ts0=1_234)
    await publish(two, b[:10], clock)  # room 2 is live, nobody receives it yet
    leg = room.leg()
    leg.attach(one)
    await publish(one, a[:20], clock)
    before = room.received()
    last = before[-1]

    clock.advance(0.5)  # the teacher puts another room on stage half a second later
    leg.attach(two)
    assert leg.counters.switches == 2
    assert [p.media_ssrc for p in plis(rtcp_two)] == [0x2222]
    await publish(two, b[10:], clock)  # joins room 2 mid-GOP: waits for its keyframe at 15

    after = room.received()[len(before):]
    assert after[0].payload == b[15][0].payload
    assert after[0].sequence_number == (last.sequence_number + 1) & 0xFFFF
    # the pause in the timestamps is the time that really passed: 1/15 s + 0.5 s + the
    # frames of room 2 skipped while waiting for its keyframe (5 frame intervals)
    # (a fake clock: exact RTP ticks, not a time measured on this machine; ±1 for rounding)
    elapsed = 1 / FPS + 0.5 + 5 / FPS
    pause = (after[0].timestamp - last.timestamp) & 0xFFFFFFFF
    assert abs(pause - elapsed * 90000) <= 1
    everything = before + after
    assert {p.ssrc for p in everything} == {leg.transceiver.sender._ssrc}
    assert consecutive([p.sequence_number for p in everything])
    # the room's decoder sees one stream: room 1's pictures, then room 2's from its keyframe
    assert decoded(everything) == [(1, n) for n in range(20)] + [(2, n) for n in range(15, 45)]
    # a packet of room 1 that arrives after the switch is not forwarded
    await one.on_rtp(a[20][0], int(clock.now * 1000))
    assert len(room.wire) == len(everything)


async def test_a_room_that_publishes_again_is_followed_by_the_same_leg_in_one_numbering(
    clock: FakeClock,
) -> None:
    """RoomConnection.set_sources: the same track id behind an existing leg is a re-attach."""
    sent: list[object] = []

    async def signal(message: object) -> None:
        sent.append(message)

    viewer = RoomConnection(classroom_id=None, role="watcher", send=signal,
                            on_publication=lambda p: None)
    viewer._rtcp_task.cancel()  # RTCP ticks are driven by hand below
    wire: list[bytes] = []
    try:
        first, _ = video_publication(3)
        assert viewer.set_sources([first]) == "offer"  # a new leg: new SDP is due
        (leg,) = viewer.legs
        assert leg.codec_mime == codec_key(first)

        async def capture(data: bytes) -> None:
            wire.append(data)

        leg.transceiver.sender.transport._send_rtp = capture
        await leg.transceiver.sender.send(RTCRtpSendParameters(codecs=[H264], muxId="0"))
        stream = packetise(h264_frames(3), ssrc=0x3333, seq0=40_000, ts0=5)
        await publish(first, stream[:10], clock)
        sent_before = len(wire)
        assert sent_before == sum(len(f) for f in stream[:10])

        first.end()  # the room's connection dropped
        assert leg.source is None
        clock.advance(2.0)
        again, _ = video_publication(3)  # it reconnected: a new SSRC and numbering
        viewer.set_sources([again])
        assert viewer.legs == [leg] and leg.source is again  # same transceiver
        restart = packetise(h264_frames(3), ssrc=0x3334, seq0=7, ts0=999_999)
        await publish(again, restart, clock)

        got = [RtpPacket.parse(d) for d in wire]
        assert consecutive([p.sequence_number for p in got])
        gap = (got[sent_before].timestamp - got[sent_before - 1].timestamp) & 0xFFFFFFFF
        # the fake clock's 2.0 s plus one frame, in exact RTP ticks (±1 for rounding)
        assert abs(gap - (1 / FPS + 2.0) * 90000) <= 1
        assert decoded(got) == [(3, n) for n in range(10)] + [(3, n) for n in range(45)]
    finally:
        await viewer.close()


async def test_an_unmuted_camera_resumes_at_a_keyframe_with_no_hole_in_the_numbering(
    clock: FakeClock, room: Room
) -> None:
    publication, rtcp = video_publication(4)
    stream = packetise(h264_frames(4), ssrc=0x4444, seq0=100, ts0=0)
    leg = room.leg()
    leg.attach(publication)
    await publish(publication, stream[:8], clock)
    count = len(room.wire)
    publication.set_muted(True)
    await publish(publication, stream[8:12], clock)
    assert len(room.wire) == count  # the muted camera is not forwarded
    plis_before = len(plis(rtcp))
    clock.advance(0.01)  # within the rate limit: unmuting asks anyway
    publication.set_muted(False)
    assert len(plis(rtcp)) == plis_before + 1
    assert leg.waiting_for_keyframe
    await publish(publication, stream[12:], clock)
    got = room.received()
    assert got[count].payload == stream[15][0].payload
    assert consecutive([p.sequence_number for p in got])
    assert decoded(got) == [(4, n) for n in range(8)] + [(4, n) for n in range(15, 45)]


async def test_a_leg_keeps_forwarding_past_half_the_sequence_space(
    clock: FakeClock, room: Room
) -> None:
    """32768 packets is 11 minutes of a room's audio (50 packets/s), or about two minutes
    of 720p video: a 40-minute lesson goes far past it, and must not fall silent."""
    rtcp: list[bytes] = []
    audio = Publication(track_id="5-audio", classroom_id=5, kind="audio", rtcp_ssrc=5,
                        send_rtcp=rtcp.append)
    audio.start(RTCRtpReceiveParameters(codecs=[OPUS]))
    leg = room.leg("audio", OPUS)
    leg.attach(audio)
    total = 40_000
    for i in range(total):
        packet = RtpPacket(payload_type=111, sequence_number=(1000 + i) & 0xFFFF,
                           timestamp=(960 * i) & 0xFFFFFFFF, ssrc=0x5555,
                           payload=b"\xfc\xff\xfe")
        await audio.on_rtp(packet, i * 20)
    assert leg.counters.packets == total
    got = [RtpPacket.parse(d) for d in room.wire[32_760:32_780]]
    assert consecutive([p.sequence_number for p in got])
    # and a NACK that far in is still answered from the publication's cache
    last = RtpPacket.parse(room.wire[-1]).sequence_number
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=leg.transceiver.sender._ssrc)
    nack.lost = [(last - 3) & 0xFFFF]
    await leg.on_rtcp(nack)
    assert leg.counters.retransmissions == 1


# --------------------------------------------------------------------------- NACK


async def test_a_gap_from_the_publisher_is_nacked_and_its_retransmission_fills_the_rooms_hole(
    clock: FakeClock, room: Room
) -> None:
    publication, rtcp = video_publication(6)
    stream = packetise(h264_frames(6, 20), ssrc=0x6666, seq0=65_530, ts0=0)
    flat = [p for frame in stream for p in frame]
    lost = flat[12:14]  # two packets of one frame never arrive at first
    leg = room.leg()
    leg.attach(publication)
    for packet in flat[:12] + flat[14:20]:
        await publication.on_rtp(packet, 0)
    nacks = [p for p in rtcp_of(rtcp) if isinstance(p, RtcpRtpfbPacket)]
    assert len(nacks) == 1 and publication.counters.nacks_sent == 1
    assert nacks[0].fmt == RTCP_RTPFB_NACK
    assert nacks[0].media_ssrc == 0x6666 and nacks[0].ssrc == publication._rtcp_ssrc
    assert nacks[0].lost == [p.sequence_number for p in lost]

    out = room.received()
    # the room sees the same hole, at the same place, and can NACK it itself
    assert (out[12].sequence_number - out[11].sequence_number) & 0xFFFF == 3
    for packet in lost:  # the retransmissions (no RTX: same SSRC and numbers)
        await publication.on_rtp(packet, 0)
    for packet in flat[20:]:
        await publication.on_rtp(packet, 0)
    out = room.received()
    by_seq = sorted(out, key=lambda p: (p.sequence_number - out[0].sequence_number) & 0xFFFF)
    assert consecutive([p.sequence_number for p in by_seq])
    assert [p.payload for p in by_seq] == [p.payload for p in flat]
    assert decoded(by_seq) == [(6, n) for n in range(20)]


async def test_a_rooms_nack_is_answered_from_the_cache_byte_for_byte_while_it_is_held(
    clock: FakeClock, room: Room
) -> None:
    publication, _ = video_publication(7)
    leg = room.leg()
    stream = packetise(h264_frames(7, 20), ssrc=0x7777, seq0=1, ts0=0)
    leg.attach(publication)
    await publish(publication, stream, clock)
    originals = list(room.wire)
    asked = [RtpPacket.parse(originals[i]).sequence_number for i in (3, 4, 10)]
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=leg.transceiver.sender._ssrc)
    nack.lost = asked
    await leg.on_rtcp(nack)
    assert room.wire[len(originals):] == [originals[3], originals[4], originals[10]]
    assert leg.counters.nacks_received == 1 and leg.counters.retransmissions == 3

    # CACHE_SIZE packets later the slot holds another packet: nothing to resend
    seq = stream[-1][-1].sequence_number
    for i in range(1, CACHE_SIZE + 1):
        await publication.on_rtp(
            RtpPacket(payload_type=102, sequence_number=(seq + i) & 0xFFFF, timestamp=9,
                      ssrc=0x7777, payload=b"\x41\x9a"), 0)
    held = len(room.wire)
    nack.lost = [asked[0], RtpPacket.parse(room.wire[-1]).sequence_number]
    await leg.on_rtcp(nack)
    assert len(room.wire) == held + 1  # only the recent one
    assert publication.cached(seq) is None  # its slot now holds seq + CACHE_SIZE
    assert publication.cached(seq + 1) is not None


async def test_a_nack_for_numbers_from_before_a_switch_is_not_answered_with_the_new_source(
    clock: FakeClock, room: Room
) -> None:
    one, _ = video_publication(1)
    two, _ = video_publication(2)
    leg = room.leg()
    leg.attach(one)
    await publish(one, packetise(h264_frames(1, 15), ssrc=1, seq0=300, ts0=0), clock)
    old = [RtpPacket.parse(d).sequence_number for d in room.wire]
    leg.attach(two)
    await publish(two, packetise(h264_frames(2, 15), ssrc=2, seq0=300, ts0=0), clock)
    sent = len(room.wire)
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=leg.transceiver.sender._ssrc)
    nack.lost = old[-5:]  # on room 2's numbering, these fall before its epoch began
    await leg.on_rtcp(nack)
    assert len(room.wire) == sent and leg.counters.retransmissions == 0


# --------------------------------------------------------------------------- PLI limiting


async def test_keyframe_requests_from_many_rooms_reach_the_publisher_once_per_interval(
    clock: FakeClock,
) -> None:
    publication, rtcp = video_publication(8)
    rooms = [Room() for _ in range(3)]
    try:
        legs = [r.leg() for r in rooms]
        stream = packetise(h264_frames(8, 16), ssrc=0x8888, seq0=0, ts0=0)
        for leg in legs:
            leg.attach(publication)
        await publish(publication, stream, clock)  # every leg started at frame 15
        assert not any(leg.waiting_for_keyframe for leg in legs)
        baseline = len(plis(rtcp))
        clock.advance(KEYFRAME_MIN_INTERVAL)

        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=0)
        for leg in legs:  # three rooms lose the picture at the same moment
            await leg.on_rtcp(pli)
        assert len(plis(rtcp)) == baseline + 1
        assert [leg.counters.plis_received for leg in legs] == [1, 1, 1]
        clock.advance(KEYFRAME_MIN_INTERVAL * 0.9)
        await legs[0].on_rtcp(pli)
        assert len(plis(rtcp)) == baseline + 1  # coalesced
        clock.advance(KEYFRAME_MIN_INTERVAL * 0.2)
        await legs[1].on_rtcp(pli)
        assert len(plis(rtcp)) == baseline + 2  # a new interval: asked again
        assert publication.counters.keyframe_requests == baseline + 2
        # every request names the publisher's stream, from the server's receiving SSRC
        assert {(p.ssrc, p.media_ssrc) for p in plis(rtcp)} == {(publication._rtcp_ssrc, 0x8888)}
    finally:
        for r in rooms:
            await r.close()


async def test_a_lost_keyframe_request_is_retried_while_a_room_still_waits(
    clock: FakeClock, room: Room
) -> None:
    publication, rtcp = video_publication(9)
    leg = room.leg()
    leg.attach(publication)  # before the publisher sent anything: no SSRC to ask yet
    assert plis(rtcp) == [] and leg.waiting_for_keyframe
    stream = packetise(h264_frames(9, 20), ssrc=0x9999, seq0=0, ts0=0)
    await publish(publication, stream[1:2], clock)  # a delta frame: still waiting
    publication.retry_keyframe_if_waiting()
    assert len(plis(rtcp)) == 1  # the first ask, as soon as there is an SSRC
    clock.advance(KEYFRAME_RETRY - 0.01)
    publication.retry_keyframe_if_waiting()
    assert len(plis(rtcp)) == 1
    clock.advance(0.02)
    publication.retry_keyframe_if_waiting()
    assert len(plis(rtcp)) == 2
    await publish(publication, stream[15:16], clock)  # the keyframe came
    clock.advance(10)
    publication.retry_keyframe_if_waiting()
    assert len(plis(rtcp)) == 2  # nobody waits: nothing asked
    audio = Publication(track_id="9-audio", classroom_id=9, kind="audio", rtcp_ssrc=1,
                        send_rtcp=rtcp.append)
    assert audio.request_keyframe(force=True) is False


# --------------------------------------------------------------------------- REMB


def remb(leg: SubscriberLeg, bitrate: int, *, ssrcs: list[int] | None = None) -> RtcpPsfbPacket:
    ssrcs = [leg.transceiver.sender._ssrc] if ssrcs is None else ssrcs
    return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                          fci=pack_remb_fci(bitrate, ssrcs))


async def test_the_publisher_is_asked_for_what_its_weakest_subscriber_can_take_capped(
    clock: FakeClock,
) -> None:
    publication, _ = video_publication(10, max_bitrate=1_000_000)
    rooms = [Room() for _ in range(3)]
    try:
        legs = [r.leg() for r in rooms]
        for leg in legs:
            leg.attach(publication)
        await publish(publication, packetise(h264_frames(10, 1), ssrc=0xAAAA, seq0=0, ts0=0),
                      clock)
        # no estimate yet: the role's cap
        assert publication.target_bitrate() == 1_000_000
        await legs[0].on_rtcp(remb(legs[0], 3_000_000))  # a fast school: the cap still holds
        await legs[1].on_rtcp(remb(legs[1], 600_000))  # a rural link
        await legs[2].on_rtcp(remb(legs[2], 250_000, ssrcs=[12345]))  # about another stream
        assert legs[2].remb_bps is None
        assert publication.target_bitrate() == 600_000
        packet = publication.remb_packet()
        assert packet is not None and packet.fmt == RTCP_PSFB_APP
        assert packet.ssrc == publication._rtcp_ssrc
        assert unpack_remb_fci(bytes(packet)[12:]) == (600_000, [0xAAAA])
        # garbage instead of a REMB is ignored, not an error
        await legs[0].on_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                             fci=b"junk"))
        assert legs[0].remb_bps == 3_000_000
        # the rural room moves to another source: its link no longer limits this one
        legs[1].detach()
        assert publication.target_bitrate() == 1_000_000
        await legs[2].on_rtcp(remb(legs[2], 400_000))
        assert publication.target_bitrate() == 400_000
    finally:
        for r in rooms:
            await r.close()


async def test_the_rtcp_tick_sends_the_publisher_receiver_reports_and_the_remb(
    clock: FakeClock,
) -> None:
    sent: list[bytes] = []
    main = RoomConnection(classroom_id=11, role="main", send=lambda m: asyncio.sleep(0),
                          on_publication=lambda p: None, max_bitrate=2_500_000)
    main._rtcp_task.cancel()
    try:
        async def capture(data: bytes) -> None:
            sent.append(data)

        main.pc.getTransceivers()[0].sender.transport._send_rtp = capture
        video = main.publications["11-video"]
        video_receiver = main._publish_transceivers[1].receiver
        await video_receiver.receive(RTCRtpReceiveParameters(codecs=[H264]))
        assert video.codec is not None and video.codec.mimeType == "video/H264"
        stream = packetise(h264_frames(11, 5), ssrc=0xBBBB, seq0=200, ts0=0)
        flat = [p for f in stream for p in f]
        for packet in flat[:3] + flat[4:]:  # through aiortc's receiver entry point
            await video_receiver._handle_rtp_packet(packet, 0)
        await asyncio.sleep(0)  # the NACK goes out as a task
        main.rtcp_tick()
        await asyncio.sleep(0)
        packets = rtcp_of(sent)
        nacks = [p for p in packets if isinstance(p, RtcpRtpfbPacket)]
        assert [n.lost for n in nacks] == [[flat[3].sequence_number]]
        (rr,) = [p for p in packets if isinstance(p, RtcpRrPacket)]
        (block,) = rr.reports
        assert block.ssrc == 0xBBBB
        assert block.highest_sequence == flat[-1].sequence_number
        assert block.packets_lost == 1
        (estimate,) = [p for p in packets if isinstance(p, RtcpPsfbPacket)
                       and p.fmt == RTCP_PSFB_APP]
        assert unpack_remb_fci(estimate.fci) == (2_500_000, [0xBBBB])
    finally:
        await main.close()


# --------------------------------------------------------------------------- RTCP to rooms


async def test_a_rooms_sender_report_maps_the_publishers_clock_and_its_answer_gives_the_rtt(
    clock: FakeClock, room: Room
) -> None:
    publication, _ = video_publication(12)
    leg = room.leg()
    assert leg.sender_report() is None  # nothing sent yet: nothing to report
    leg.attach(publication)
    stream = packetise(h264_frames(12, 16), ssrc=0xCCCC, seq0=0, ts0=50_000)
    await publish(publication, stream, clock)
    ntp = 0xE000_1234_8000_0000
    await publication.on_rtcp(RtcpSrPacket(ssrc=0xCCCC, sender_info=RtcpSenderInfo(
        ntp_timestamp=ntp, rtp_timestamp=50_000 + 15 * TICKS, packet_count=1, octet_count=1)))
    report = leg.sender_report()
    assert report is not None and report.ssrc == leg.transceiver.sender._ssrc
    out = RtpPacket.parse(room.wire[len(room.wire) - len(stream[15])])  # frame 15's first
    assert report.sender_info.ntp_timestamp == ntp
    assert report.sender_info.rtp_timestamp == out.timestamp  # the same instant
    assert report.sender_info.packet_count == len(room.wire)

    clock.advance(0.25)  # the room answers 250 ms later, having held the SR 50 ms
    lsr = (ntp >> 16) & 0xFFFFFFFF
    await leg.on_rtcp(RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(
        ssrc=leg.transceiver.sender._ssrc, fraction_lost=64, packets_lost=3, highest_sequence=0,
        jitter=900, lsr=lsr, dlsr=int(0.05 * 65536))]))
    assert leg.counters.rtt_ms == pytest.approx(200, abs=0.1)
    assert leg.counters.fraction_lost == 0.25 and leg.counters.packets_lost == 3
    assert leg.counters.jitter_ms == 10.0

    # the session sums a room's legs into its downstream link quality
    session = SignalingSession(None, registry=None, db=None, tokens=None, ice_servers=(),
                               remote=None)
    session.connection = RoomConnection(classroom_id=None, role="watcher",
                                        send=lambda m: asyncio.sleep(0),
                                        on_publication=lambda p: None)
    session.connection._rtcp_task.cancel()
    try:
        session.connection.legs.append(leg)
        upstream, downstream = session.link_quality()
        assert downstream.packets == leg.counters.packets
        assert downstream.packets_lost == 3 and downstream.fraction_lost == 0.25
        assert downstream.rtt_ms == pytest.approx(200, abs=0.1)
        assert upstream.rtt_ms == downstream.rtt_ms  # one path, one round trip
        assert session.subscribed_track_ids() == ["12-video"]
    finally:
        session.connection.legs.clear()
        await session.connection.close()
