"""The server side of one classroom's single RTCPeerConnection.

It holds the room's publications (what the room sends us) and its legs (what we forward
to the room), and renegotiates when the set of legs changes. The server always offers, so
each leg's m-line offers exactly its publication's codec, and a switch of source behind an
existing leg (a new room on stage) needs no renegotiation at all, only a `slots` message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Literal, cast

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtp import RtcpRrPacket
from aiortc.sdp import candidate_from_sdp

from signaling import protocol
from signaling.errors import ErrorCode
from signaling.media.publication import Publication, schedule_send
from signaling.media.rtp_glue import claim_receiver, claim_sender
from signaling.media.subscription import SubscriberLeg
from signaling.protocol import ProtocolError, Slot

logger = logging.getLogger(__name__)

RTCP_INTERVAL = 1.0  # s, randomised +-50% as RFC 3550 asks


def _capabilities(kind: str) -> list[RTCRtpCodecCapability]:
    return [
        c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() != f"{kind}/rtx"
    ]


def publish_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    """From a publisher: H.264 first, then VP8; Opus (docs/ARCHITECTURE.md, decision 3)."""
    caps = _capabilities(kind)
    if kind == "audio":
        return [c for c in caps if c.mimeType.lower() == "audio/opus"]
    h264 = [c for c in caps if c.mimeType.lower() == "video/h264"]
    # constrained baseline (42e01f) is what browsers and our agent send; list it first
    h264.sort(key=lambda c: c.parameters.get("profile-level-id") != "42e01f")
    return h264 + [c for c in caps if c.mimeType.lower() == "video/vp8"]


def leg_preferences(publication: Publication) -> list[RTCRtpCodecCapability]:
    """A leg offers exactly the publisher's codec: forwarding never transcodes."""
    codec = publication.codec
    assert codec is not None
    return [
        c
        for c in _capabilities(publication.kind)
        if c.mimeType.lower() == codec.mimeType.lower() and c.parameters == codec.parameters
    ]


def codec_key(publication: Publication) -> str:
    codec = publication.codec
    assert codec is not None
    params = ";".join(f"{k}={v}" for k, v in sorted(codec.parameters.items()))
    return f"{codec.mimeType.lower()}|{params}"


class RoomConnection:
    """One room's peer connection, publications and legs."""

    def __init__(
        self,
        *,
        classroom_id: int | None,
        role: str,
        send: Callable[[protocol._Message], Awaitable[None]],
        on_publication: Callable[[Publication], None],
        ice_servers: tuple[str, ...] = (),
        max_bitrate: int | None = None,
    ) -> None:
        self.classroom_id = classroom_id
        self.role = role
        self.publications: dict[str, Publication] = {}
        self.legs: list[SubscriberLeg] = []
        self._assigned: dict[int, str | None] = {}  # id(leg) -> track_id
        self._offered_active: dict[int, bool] = {}
        self._send = send
        self._on_publication = on_publication
        self._max_bitrate = max_bitrate
        self._revision = 0
        self._awaiting: int | None = None
        self._offered_at = 0.0
        self._again = False
        self._lock = asyncio.Lock()
        self._closed = False
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[RTCIceServer(urls=u) for u in ice_servers],
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self._fire_rtcp = schedule_send(self._send_rtcp)
        self._publish_transceivers: list[RTCRtpTransceiver] = []
        if role in ("main", "receiving"):
            for kind in ("audio", "video"):
                self._add_publish_slot(kind)
        self._rtcp_task = asyncio.ensure_future(self._rtcp_loop())

    # ------------------------------------------------------------ publishing

    def _add_publish_slot(self, kind: str) -> None:
        transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        transceiver.setCodecPreferences(publish_preferences(kind))
        publication = Publication(
            track_id=f"{self.classroom_id}-{kind}",
            classroom_id=self.classroom_id or 0,
            kind=kind,
            rtcp_ssrc=transceiver.sender._ssrc,
            send_rtcp=self._fire_rtcp,
            max_bitrate=self._max_bitrate if kind == "video" else None,
            on_started=self._on_publication,
        )
        self.publications[publication.track_id] = publication
        claim_receiver(transceiver.receiver, publication)
        self._publish_transceivers.append(transceiver)

    # ------------------------------------------------------------------ legs

    def set_sources(self, desired: list[Publication]) -> Literal["offer", "slots"] | None:
        """Make the legs carry exactly `desired`; say whether the room must hear of it.

        "offer": legs were added or changed direction, so new SDP is due; "slots": only
        the source behind existing legs changed.
        """
        want = {p.track_id: p for p in desired if p.codec is not None and not p.ended}
        free: list[SubscriberLeg] = []
        slots_changed = False
        for leg in self.legs:
            track_id = self._assigned.get(id(leg))
            publication = want.pop(track_id, None) if track_id else None
            if publication is not None and leg.codec_mime == codec_key(publication):
                if leg.source is not publication:
                    leg.attach(publication)  # the same room published again
                continue
            if publication is not None:
                want[publication.track_id] = publication  # codec changed: needs another leg
            if track_id is not None:
                leg.detach()
                self._assigned[id(leg)] = None
                slots_changed = True
            free.append(leg)
        needs_offer = False
        for track_id, publication in want.items():
            key = codec_key(publication)
            found = next(
                (f for f in free if f.kind == publication.kind and f.codec_mime == key), None
            )
            if found is not None:
                free.remove(found)
                leg = found
            else:
                leg = self._add_leg(publication)
                needs_offer = True
            leg.attach(publication)
            self._assigned[id(leg)] = track_id
            slots_changed = True
        for leg in self.legs:
            active = self._assigned.get(id(leg)) is not None
            if self._offered_active.get(id(leg)) != active:
                needs_offer = True
        if needs_offer:
            return "offer"
        return "slots" if slots_changed and self._revision else None

    def _add_leg(self, publication: Publication) -> SubscriberLeg:
        transceiver = self.pc.addTransceiver(publication.kind, direction="sendonly")
        transceiver.setCodecPreferences(leg_preferences(publication))
        # msid: the room's id as stream, so a browser groups a room's audio and video
        transceiver.sender._stream_id = f"room-{publication.classroom_id}"
        leg = SubscriberLeg(transceiver, kind=publication.kind, codec_mime=codec_key(publication))
        claim_sender(transceiver.sender, leg)
        self.legs.append(leg)
        self._assigned[id(leg)] = None
        return leg

    def slots(self) -> list[Slot]:
        slots = []
        for transceiver in self.pc.getTransceivers():
            if transceiver.mid is None:
                continue
            kind = cast(protocol.Kind, transceiver.kind)  # "audio" | "video"; aiortc says str
            leg = self._leg_of(transceiver)
            if leg is None:
                slots.append(Slot(mid=transceiver.mid, kind=kind, direction="publish"))
                continue
            track_id = self._assigned.get(id(leg))
            source = leg.source
            slots.append(
                Slot(
                    mid=transceiver.mid,
                    kind=kind,
                    direction="subscribe",
                    track_id=track_id,
                    classroom_id=source.classroom_id if source is not None else None,
                )
            )
        return slots

    def _leg_of(self, transceiver: RTCRtpTransceiver) -> SubscriberLeg | None:
        return next((leg for leg in self.legs if leg.transceiver is transceiver), None)

    # ----------------------------------------------------------- negotiation

    async def negotiate(self) -> None:
        """Send a new offer, or note that one is due once the current answer arrives."""
        if self._closed:
            return
        if self._awaiting is not None:
            self._again = True
            return
        if not self.pc.getTransceivers():
            # A watcher before any room publishes: an offer without m-lines carries an
            # empty BUNDLE group, which browsers reject. The first leg brings the offer.
            return
        async with self._lock:
            # Checked again under the lock: two reconciles can both pass the check above
            # while an offer is being made, and a second offer would strand the first answer.
            if self._awaiting is not None:
                self._again = True
                return
            for leg in self.legs:
                active = self._assigned.get(id(leg)) is not None
                leg.transceiver.direction = "sendonly" if active else "inactive"
                self._offered_active[id(leg)] = active
            await self.pc.setLocalDescription(await self.pc.createOffer())
            self._revision += 1
            self._awaiting = self._revision
            self._offered_at = time.monotonic()
            await self._send(
                protocol.Offer(
                    revision=self._revision, sdp=self.pc.localDescription.sdp, slots=self.slots()
                )
            )

    async def apply_answer(self, answer: protocol.Answer) -> None:
        if self._awaiting is None or answer.revision != self._awaiting:
            raise ProtocolError(
                ErrorCode.STALE_ANSWER,
                f"no offer with revision {answer.revision} is waiting for an answer",
                answer.id,
            )
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        except Exception as exc:  # aiortc raises several types for a bad description
            code = ErrorCode.SDP_INVALID
            if "send parameters" in str(exc) or "receive parameters" in str(exc):
                code = ErrorCode.CODEC_UNSUPPORTED
            raise ProtocolError(code, f"answer refused: {exc}", answer.id) from None
        self._awaiting = None
        if self._again:
            self._again = False
            await self.negotiate()

    async def add_ice_candidate(self, message: protocol.Ice) -> None:
        if message.candidate is None or not message.candidate.strip():
            return  # end of candidates: aiortc needs no marker
        text = message.candidate.removeprefix("candidate:")
        try:
            candidate = candidate_from_sdp(text)
        except (ValueError, IndexError) as exc:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE, f"bad ICE candidate: {exc}", message.id
            ) from None
        candidate.sdpMid = message.sdp_mid
        candidate.sdpMLineIndex = message.sdp_mline_index
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        if self.pc.remoteDescription is None:
            raise ProtocolError(ErrorCode.NOT_JOINED, "ICE candidate before any answer", message.id)
        await self.pc.addIceCandidate(candidate)

    def answer_overdue(self, timeout: float) -> bool:
        return self._awaiting is not None and time.monotonic() - self._offered_at > timeout

    async def send_slots(self) -> None:
        await self._send(protocol.Slots(revision=self._revision, slots=self.slots()))

    # ------------------------------------------------------------------ RTCP

    async def _send_rtcp(self, data: bytes) -> None:
        transceivers = self.pc.getTransceivers()
        if transceivers and not self._closed:
            try:
                await transceivers[0].sender.transport._send_rtp(data)
            except ConnectionError:
                pass

    async def _rtcp_loop(self) -> None:
        """SRs for our legs, RR and REMB for the room's publications, PLI retries."""
        try:
            while not self._closed:
                await asyncio.sleep(RTCP_INTERVAL * (0.5 + random.random()))
                self.rtcp_tick()
        except asyncio.CancelledError:
            pass

    def rtcp_tick(self) -> None:
        packets: list[bytes] = []
        for leg in self.legs:
            if (sr := leg.sender_report()) is not None:
                packets.append(bytes(sr))
        blocks = []
        rembs = []
        for publication in self.publications.values():
            publication.update_bitrate()
            publication.retry_keyframe_if_waiting()
            blocks.extend(publication.receiver_report_blocks())
            if (remb := publication.remb_packet()) is not None:
                rembs.append(bytes(remb))
        if blocks and self._publish_ssrc is not None:
            packets.append(bytes(RtcpRrPacket(ssrc=self._publish_ssrc, reports=blocks)))
        packets.extend(rembs)
        if packets:
            self._fire_rtcp(b"".join(packets))

    @property
    def _publish_ssrc(self) -> int | None:
        transceivers = self._publish_transceivers
        return transceivers[0].sender._ssrc if transceivers else None

    # ----------------------------------------------------------------- close

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._rtcp_task.cancel()
        for leg in self.legs:
            leg.detach()
        for publication in self.publications.values():
            publication.end()
        await self.pc.close()
