"""A leg: one published track forwarded to one room over that room's peer connection.

The leg owns one server-side sendonly transceiver whose codec is the publisher's (the
server offers exactly that codec, so no transcoding is ever needed for a capable client).
It rewrites SSRC, sequence number and timestamp so that a room sees one continuous
stream even when the source behind it switches (a new room on stage, a publisher that
reconnected), keeps the publisher's sequence gaps so the room can NACK them, starts at a
keyframe, and answers the room's RTCP: NACKs from the publication's packet cache,
PLI/FIR as keyframe requests to the publisher, REMB as the room's bandwidth.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from dataclasses import dataclass

from aiortc import RTCRtpTransceiver
from aiortc.clock import current_ntp_time
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from signaling.media.freezes import FreezeMeter
from signaling.media.publication import Publication

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def _uint16_newer(a: int, b: int) -> bool:
    """a comes after b in RTP sequence order (with wrap-around)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


@dataclass
class LegCounters:
    packets: int = 0
    bytes: int = 0
    retransmissions: int = 0
    nacks_received: int = 0
    plis_received: int = 0
    switches: int = 0
    # from the room's receiver reports about this leg
    packets_lost: int = 0
    fraction_lost: float = 0.0
    jitter_ms: float = 0.0
    rtt_ms: float | None = None


class SubscriberLeg:
    """Forwards one publication into one transceiver; the room's side of a `TrackSink`."""

    def __init__(self, transceiver: RTCRtpTransceiver, *, kind: str, codec_mime: str) -> None:
        self.transceiver = transceiver
        self.kind = kind
        self.codec_mime = codec_mime
        self.source: Publication | None = None
        self.waiting_for_keyframe = kind == "video"
        self.remb_bps: int | None = None
        self.counters = LegCounters()
        # What the room sees freeze: gaps in forwarded frames, and its keyframe requests.
        self.freezes = FreezeMeter()
        self.started = False
        self._sender = transceiver.sender
        self._ssrc = transceiver.sender._ssrc
        self._payload_type = 0
        self._clock_rate = 90000 if kind == "video" else 48000
        self._mid_element = b""
        self._ast_id = 0
        self._level_id = 0
        # sequence/timestamp mapping of the current source ("epoch")
        self._seq_offset = 0
        self._ts_offset = 0
        self._start_seq: int | None = None
        self._last_seq = random.randint(0, 0x7FFF)  # low half: see aiortc's sender
        self._last_ts = random.getrandbits(32)
        self._last_sent = 0.0
        self._rebase_pending = True
        self._sr_sent: dict[int, float] = {}
        self._rate_stamp = time.monotonic()
        self._rate_bytes = 0
        self._rate_kbps = 0.0

    # --------------------------------------------------------------- source

    def attach(self, publication: Publication) -> None:
        """Switch this leg to `publication`; the room keeps one continuous stream."""
        if self.source is publication:
            return
        self.detach()
        self.source = publication
        self._rebase_pending = True
        self.waiting_for_keyframe = self.kind == "video"
        self.counters.switches += 1
        self.freezes.reset(time.monotonic())  # a switch of source is no freeze
        publication.subscribe(self)

    def detach(self) -> None:
        if self.source is not None:
            self.source.unsubscribe(self)
            self.source = None

    def resync(self) -> None:
        self._rebase_pending = True
        self.waiting_for_keyframe = self.kind == "video"
        self.freezes.reset(time.monotonic())

    def source_ended(self, publication: Publication) -> None:
        if self.source is publication:
            self.source = None
            # The publishing room left: attendance tells that story, not this room's link.
            self.freezes.reset(time.monotonic())

    # ---------------------------------------------------------- aiortc side

    def start(self, parameters: RTCRtpSendParameters) -> None:
        codec = next(c for c in parameters.codecs if not is_rtx(c))
        assert codec.payloadType is not None  # a negotiated codec always has its number
        self._payload_type = codec.payloadType
        self._clock_rate = codec.clockRate
        for ext in parameters.headerExtensions:
            if ext.uri == _MID_URI and parameters.muxId:
                mid = parameters.muxId.encode()
                self._mid_element = bytes([(ext.id << 4) | (len(mid) - 1)]) + mid
            elif ext.uri == _ABS_SEND_TIME_URI:
                self._ast_id = ext.id
            elif ext.uri == _AUDIO_LEVEL_URI:
                self._level_id = ext.id
        self.started = True
        if self.source is not None and self.kind == "video":
            # The room has just connected and sees nothing until a keyframe: skip the
            # rate limit, which protects the publisher from repeated asks, not first ones.
            self.source.request_keyframe(force=True)

    def stop(self) -> None:
        self.started = False
        self.detach()

    async def write_rtp(self, packet: RtpPacket, keyframe: bool) -> None:
        # Hot path: every packet of the source, for every room that receives it.
        if not self.started:
            return
        if self._rebase_pending:
            if self.waiting_for_keyframe and not keyframe:
                return
            self._rebase(packet)
        elif self._start_seq is not None:
            if _uint16_newer(self._start_seq, packet.sequence_number):
                return  # older than where this epoch began
            if (packet.sequence_number - self._start_seq) & 0xFFFF > 0x4000:
                # The epoch's start trails the stream: 32768 packets past a fixed start,
                # every new packet would look older than it (16-bit wrap) and be dropped.
                self._start_seq = (packet.sequence_number - 0x4000) & 0xFFFF
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if _uint16_newer(seq, self._last_seq):
            self._last_seq = seq
            self._last_ts = ts
            self._last_sent = time.monotonic()
        if self.kind == "video":
            if keyframe:
                self.freezes.keyframe(self._last_sent)
            if packet.marker:
                self.freezes.frame(self._last_sent)
        await self._send(packet, seq, ts)

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRrPacket):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self._take_report(
                        report.fraction_lost,
                        report.packets_lost,
                        report.jitter,
                        report.lsr,
                        report.dlsr,
                    )
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.counters.nacks_received += 1
            for seq in packet.lost:
                await self._retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.counters.plis_received += 1
            if self.started and self.source is not None and not self.waiting_for_keyframe:
                self.freezes.picture_lost(time.monotonic())
            if self.source is not None:
                self.source.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.remb_bps = bitrate

    def bitrate_kbps(self) -> float:
        """Forwarded bitrate since the previous call (called about once a second)."""
        now = time.monotonic()
        elapsed = now - self._rate_stamp
        if elapsed >= 0.5:
            self._rate_kbps = (self.counters.bytes - self._rate_bytes) * 8 / elapsed / 1000
            self._rate_bytes = self.counters.bytes
            self._rate_stamp = now
        return self._rate_kbps

    # --------------------------------------------------------------- RTCP out

    def sender_report(self) -> RtcpSrPacket | None:
        """An SR on the publisher's clock, so the room can line audio up with video."""
        if self.source is None or self._rebase_pending or self.counters.packets == 0:
            return None
        report = self.source.sender_report
        if report is not None:
            ntp = report.ntp
            rtp_ts = (report.rtp + self._ts_offset) & 0xFFFFFFFF
        else:
            ntp = current_ntp_time()
            elapsed = time.monotonic() - self._last_sent
            rtp_ts = (self._last_ts + int(elapsed * self._clock_rate)) & 0xFFFFFFFF
        lsr = (ntp >> 16) & 0xFFFFFFFF
        self._sr_sent[lsr] = time.monotonic()
        if len(self._sr_sent) > 8:
            self._sr_sent.pop(next(iter(self._sr_sent)))
        return RtcpSrPacket(
            ssrc=self._ssrc,
            sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=rtp_ts,
                packet_count=self.counters.packets & 0xFFFFFFFF,
                octet_count=self.counters.bytes & 0xFFFFFFFF,
            ),
        )

    # -------------------------------------------------------------- internals

    def _rebase(self, packet: RtpPacket) -> None:
        """Map a new source (or the first packet) onto the leg's continuing numbering."""
        next_seq = (self._last_seq + 1) & 0xFFFF
        self._seq_offset = (next_seq - packet.sequence_number) & 0xFFFF
        gap = 1
        if self._last_sent:
            gap = max(1, int((time.monotonic() - self._last_sent) * self._clock_rate))
        self._ts_offset = (self._last_ts + gap - packet.timestamp) & 0xFFFFFFFF
        self._start_seq = packet.sequence_number
        self._rebase_pending = False
        self.waiting_for_keyframe = False

    async def _send(self, packet: RtpPacket, seq: int, ts: int) -> None:
        elements = self._mid_element
        if self._ast_id:
            # abs-send-time: 6.18 fixed-point seconds of NTP time. Computed inline: aiortc's
            # current_ntp_time() builds a datetime per call, 5x slower on this hot path.
            ast = int((time.time() + _NTP_EPOCH_OFFSET) * 262_144) & 0xFFFFFF
            elements += bytes((self._ast_id << 4 | 2, ast >> 16, (ast >> 8) & 0xFF, ast & 0xFF))
        if self._level_id and packet.extensions.audio_level is not None:
            vad, level = packet.extensions.audio_level
            elements += bytes((self._level_id << 4, (0x80 if vad else 0) | (level & 0x7F)))
        if elements:
            elements += b"\x00" * (-len(elements) % 4)
            header = _HEADER.pack(
                0x90, (packet.marker << 7) | self._payload_type, seq, ts, self._ssrc
            )
            data = b"".join(
                (
                    header,
                    b"\xbe\xde",
                    (len(elements) // 4).to_bytes(2, "big"),
                    elements,
                    packet.payload,
                )
            )
        else:
            header = _HEADER.pack(
                0x80, (packet.marker << 7) | self._payload_type, seq, ts, self._ssrc
            )
            data = header + packet.payload
        try:
            await self._sender.transport._send_rtp(data)
        except ConnectionError:
            return
        self.counters.packets += 1
        self.counters.bytes += len(packet.payload)

    async def _retransmit(self, out_seq: int) -> None:
        if self.source is None or self._rebase_pending or self._start_seq is None:
            return
        in_seq = (out_seq - self._seq_offset) & 0xFFFF
        if _uint16_newer(self._start_seq, in_seq):
            return
        packet = self.source.cached(in_seq)
        if packet is None:
            return
        self.counters.retransmissions += 1
        await self._send(packet, out_seq, (packet.timestamp + self._ts_offset) & 0xFFFFFFFF)

    def _take_report(
        self, fraction_lost: int, packets_lost: int, jitter: int, lsr: int, dlsr: int
    ) -> None:
        counters = self.counters
        counters.fraction_lost = fraction_lost / 256
        counters.packets_lost = max(0, packets_lost)
        counters.jitter_ms = jitter * 1000 / self._clock_rate
        sent = self._sr_sent.get(lsr)
        if lsr and sent is not None:
            rtt = time.monotonic() - sent - dlsr / 65536
            if rtt >= 0:
                previous = counters.rtt_ms
                sample = rtt * 1000
                counters.rtt_ms = sample if previous is None else 0.8 * previous + 0.2 * sample
