"""A track a room publishes to the server, and the sinks it is forwarded to.

Every sink is a client (after Galène): a room's subscriber leg, the recorder and the live
broadcaster all implement `TrackSink`, so the forwarding loop never asks who it feeds.

The server is the RTP receiver towards the publisher: it keeps loss statistics, NACKs
gaps, answers with receiver reports, asks for keyframes (rate limited) and tells the
publisher the bitrate its subscribers can take (REMB) so a rural uplink is not flooded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiortc.clock import current_ms
from aiortc.codecs import is_rtx
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
)

from signaling.media.freezes import FreezeMeter
from signaling.media.keyframes import KeyframeDetector, keyframe_detector

logger = logging.getLogger(__name__)

CACHE_SIZE = 1024  # packets kept for retransmission: ~4 s of 720p at 2 Mbit/s
KEYFRAME_MIN_INTERVAL = 0.3  # s between keyframe requests to one publisher
KEYFRAME_RETRY = 0.6  # s before asking again while a sink still waits


class TrackSink(Protocol):
    """Receives one published track's RTP packets as they arrive."""

    @property
    def waiting_for_keyframe(self) -> bool:
        """True while the sink cannot start without a keyframe (an attribute will do)."""
        ...

    async def write_rtp(self, packet: RtpPacket, keyframe: bool) -> None: ...

    def resync(self) -> None:
        """The stream resumes after a pause (unmute): start again at a keyframe."""

    def source_ended(self, publication: Publication) -> None: ...


@dataclass
class SenderReport:
    """The publisher's last RTCP SR: its wall clock against its RTP clock."""

    ntp: int
    rtp: int
    received_at: float  # time.monotonic()


@dataclass
class PublicationCounters:
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    nacks_sent: int = 0
    wrong_payload_type: int = 0
    bitrate_kbps: float = 0.0
    _window_start: float = field(default_factory=time.monotonic)
    _window_bytes: int = 0


class Publication:
    """One published audio or video track of one room, from the server's side."""

    def __init__(
        self,
        *,
        track_id: str,
        classroom_id: int,
        kind: str,
        rtcp_ssrc: int,
        send_rtcp: Callable[[bytes], object],
        max_bitrate: int | None = None,
        on_started: Callable[[Publication], None] | None = None,
    ) -> None:
        self.track_id = track_id
        self.classroom_id = classroom_id
        self.kind = kind
        self.codec: RTCRtpCodecParameters | None = None
        self.ssrc: int | None = None
        self.muted = False
        self.ended = False
        self.counters = PublicationCounters()
        # Gaps between the room's video frames, for the lesson's link statistics.
        self.freezes = FreezeMeter()
        self.sender_report: SenderReport | None = None
        self.max_bitrate = max_bitrate
        self._rtcp_ssrc = rtcp_ssrc
        self._send_rtcp = send_rtcp
        self._on_started = on_started
        self._payload_types: frozenset[int] = frozenset()
        self._detect_keyframe: KeyframeDetector | None = None
        self._sinks: tuple[TrackSink, ...] = ()
        self._stats: StreamStatistics | None = None
        self._nack = NackGenerator() if kind == "video" else None
        self._estimator = RemoteBitrateEstimator() if kind == "video" else None
        self._estimate: int | None = None
        self._cache: list[RtpPacket | None] = [None] * CACHE_SIZE
        self._last_keyframe_request = 0.0
        self._lsr = 0
        self._lsr_time = 0.0

    # ------------------------------------------------------------------ sinks

    @property
    def sinks(self) -> tuple[TrackSink, ...]:
        return self._sinks

    def subscribe(self, sink: TrackSink) -> None:
        if sink not in self._sinks:
            self._sinks = (*self._sinks, sink)
        # A leg whose transport is not up yet would drop the keyframe; it asks on start.
        if self.kind == "video" and getattr(sink, "started", True):
            self.request_keyframe()

    def unsubscribe(self, sink: TrackSink) -> None:
        self._sinks = tuple(s for s in self._sinks if s is not sink)

    def set_muted(self, muted: bool) -> None:
        if self.muted == muted:
            return
        self.muted = muted
        self.freezes.reset(current_ms() / 1000)  # a muted camera's pause is no freeze
        if not muted:
            for sink in self._sinks:
                sink.resync()
            self.request_keyframe(force=True)

    def cached(self, sequence_number: int) -> RtpPacket | None:
        """The packet with this sequence number, if still held for retransmission."""
        packet = self._cache[sequence_number % CACHE_SIZE]
        if packet is not None and packet.sequence_number == sequence_number:
            return packet
        return None

    # ------------------------------------------------------------ aiortc side

    def start(self, parameters: RTCRtpReceiveParameters) -> None:
        media = [c for c in parameters.codecs if not is_rtx(c)]
        if not media:
            return
        # The answerer sends with the first codec of its answer, but may pick any profile
        # variant of it (aiortc reorders by its own preferences: 42001f before 42e01f), so
        # every payload type of that codec is the same stream to us.
        self.codec = media[0]
        mime = self.codec.mimeType.lower()
        self._payload_types = frozenset(
            c.payloadType
            for c in media
            if c.mimeType.lower() == mime and c.payloadType is not None
        )
        self._detect_keyframe = keyframe_detector(self.codec.mimeType)
        self._stats = StreamStatistics(self.codec.clockRate)
        if self._on_started is not None:
            self._on_started(self)

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        # Hot path: every packet the room publishes.
        if packet.payload_type not in self._payload_types:
            self.counters.wrong_payload_type += 1
            return
        self.ssrc = packet.ssrc
        # _stats is set by start() together with _payload_types, which let the packet in
        self._stats.add(packet)  # type: ignore[union-attr]
        counters = self.counters
        counters.packets += 1
        size = len(packet.payload)
        counters.bytes += size
        counters._window_bytes += size
        if self._estimator is not None and packet.extensions.abs_send_time is not None:
            remb = self._estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=size + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if remb is not None:
                self._estimate = remb[0]
        if self._nack is not None and self._nack.add(packet):
            self._send_nack(packet.ssrc, sorted(self._nack.missing))
        self._cache[packet.sequence_number % CACHE_SIZE] = packet

        keyframe = False
        detect = self._detect_keyframe
        if detect is not None:  # video
            if detect(packet.payload):
                keyframe = True
                counters.keyframes += 1
            if packet.marker:
                self.freezes.frame(arrival_time_ms / 1000)
        if self.muted:
            return
        for sink in self._sinks:
            await sink.write_rtp(packet, keyframe)

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self.sender_report = SenderReport(
                info.ntp_timestamp, info.rtp_timestamp, time.monotonic()
            )
            self._lsr = (info.ntp_timestamp >> 16) & 0xFFFFFFFF
            self._lsr_time = time.monotonic()
        elif isinstance(packet, RtcpByePacket):
            self.end()

    def stop(self) -> None:
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        for sink in self._sinks:
            sink.source_ended(self)
        self._sinks = ()

    # ------------------------------------------------------------- feedback

    def request_keyframe(self, *, force: bool = False) -> bool:
        """Ask the publisher for a keyframe now, unless one was asked for moments ago."""
        if self.kind != "video" or self.ssrc is None:
            return False
        now = time.monotonic()
        if not force and now - self._last_keyframe_request < KEYFRAME_MIN_INTERVAL:
            return False
        self._last_keyframe_request = now
        self.counters.keyframe_requests += 1
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc, media_ssrc=self.ssrc)
        self._send_rtcp(bytes(pli))
        return True

    def retry_keyframe_if_waiting(self) -> None:
        """Called by the periodic RTCP tick: a lost PLI must not leave a sink frozen."""
        if any(s.waiting_for_keyframe for s in self._sinks):
            if time.monotonic() - self._last_keyframe_request >= KEYFRAME_RETRY:
                self.request_keyframe()

    def target_bitrate(self) -> int | None:
        """What the publisher should send: the least any subscriber can take, capped."""
        candidates = [b for s in self._sinks if (b := getattr(s, "remb_bps", None))]
        if self._estimate:
            candidates.append(self._estimate)
        if self.max_bitrate:
            candidates.append(self.max_bitrate)
        return min(candidates) if candidates else None

    def receiver_report_blocks(self) -> list[RtcpReceiverInfo]:
        stats = self._stats
        if stats is None or self.ssrc is None or stats.max_seq is None:
            return []
        dlsr = 0
        if self._lsr_time:
            delay = time.monotonic() - self._lsr_time
            if 0 < delay < 65536:
                dlsr = int(delay * 65536)
        return [
            RtcpReceiverInfo(
                ssrc=self.ssrc,
                fraction_lost=stats.fraction_lost,
                packets_lost=stats.packets_lost,
                highest_sequence=(stats.cycles + stats.max_seq) & 0xFFFFFFFF,
                jitter=stats.jitter,
                lsr=self._lsr,
                dlsr=dlsr,
            )
        ]

    def remb_packet(self) -> RtcpPsfbPacket | None:
        bitrate = self.target_bitrate()
        if self.kind != "video" or self.ssrc is None or not bitrate:
            return None
        return RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=self._rtcp_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(int(bitrate), [self.ssrc]),
        )

    def loss(self) -> tuple[int, float, float]:
        """(packets lost, fraction lost in the last interval, jitter in ms)."""
        if self._stats is None or self._stats.max_seq is None or self.codec is None:
            return 0, 0.0, 0.0
        expected = self._stats.packets_expected
        lost = max(0, self._stats.packets_lost)
        fraction = lost / expected if expected else 0.0
        return lost, fraction, self._stats.jitter * 1000 / self.codec.clockRate

    def reception(self) -> tuple[int, int]:
        """(packets expected, packets lost) since the track started; samplers take deltas."""
        stats = self._stats
        if stats is None or stats.max_seq is None:
            return 0, 0
        return stats.packets_expected, max(0, stats.packets_lost)

    def update_bitrate(self) -> float:
        """Fold the bytes seen since the last call into a kbit/s figure."""
        counters = self.counters
        now = time.monotonic()
        elapsed = now - counters._window_start
        if elapsed >= 0.5:
            counters.bitrate_kbps = counters._window_bytes * 8 / elapsed / 1000
            counters._window_bytes = 0
            counters._window_start = now
        return counters.bitrate_kbps

    def _send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc, media_ssrc=media_ssrc)
        packet.lost = lost
        self.counters.nacks_sent += 1
        self._send_rtcp(bytes(packet))


def schedule_send(send: Callable[[bytes], object]) -> Callable[[bytes], None]:
    """Turn an async RTCP send into a fire-and-forget call usable from sync code."""
    loop = asyncio.get_event_loop()

    def fire(data: bytes) -> None:
        result = send(data)
        if asyncio.iscoroutine(result):
            task = loop.create_task(result)
            task.add_done_callback(_log_failure)

    return fire


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        if not isinstance(exc, ConnectionError):
            logger.warning("RTCP send failed: %r", exc)
