"""Light WebRTC peers for the server benchmarks: real ICE/DTLS/SRTP, no decoding.

A bench must measure the server, not the machines around it, and here everything shares
one two-core box. So the subscribers below keep aiortc's negotiation, ICE, DTLS and SRTP
but take each receiver over with `signaling.media.rtp_glue.claim_receiver` and only count what
arrives: packets, bytes, frames (distinct RTP timestamps of video). They still behave as a
real peer towards the server: a receiver report (and a REMB) every second per stream.

Light publishers replay a clip encoded once beforehand (x264 via the agent's
`VideoEncoder`, test pattern) as `av.Packet`s, which aiortc only packetises, and a
constant Opus silence frame every 20 ms: publishing costs no encoding at all.

- `ProtocolPeer`: a room (or watcher) speaking signaling protocol v1 over the WebSocket.
- `OfferingSubscriber`: an offerer for the plain aiortc baseline server (bench/_relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import random
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import websockets
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtpPacket,
    pack_remb_fci,
)

from signaling import protocol
from signaling.media.rtp_glue import claim_receiver

VIDEO_TB = Fraction(1, 90000)
AUDIO_TB = Fraction(1, 48000)
OPUS_SILENCE = b"\xf8\xff\xfe"  # one 20 ms Opus frame of silence (CELT, FB)
REMB_BPS = 2_000_000  # what every light subscriber says it can take


# ------------------------------------------------------------------ receiving


class CountingReceiver:
    """An `InboundHandler` that counts a stream and reports on it; no jitter buffer."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.packets = 0
        self.bytes = 0
        self.frames = 0
        self.ssrc: int | None = None
        self._last_ts: int | None = None
        self._stats: StreamStatistics | None = None

    def start(self, parameters: RTCRtpReceiveParameters) -> None:
        self._stats = StreamStatistics(90000 if self.kind == "video" else 48000)

    async def on_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        # Hot path of the subscriber: keep it to counting.
        self.packets += 1
        self.bytes += len(packet.payload)
        if packet.timestamp != self._last_ts:
            self._last_ts = packet.timestamp
            self.frames += 1
        self.ssrc = packet.ssrc
        if self._stats is not None:
            self._stats.add(packet)

    async def on_rtcp(self, packet: AnyRtcpPacket) -> None:
        pass

    def stop(self) -> None:
        pass

    def report_block(self) -> RtcpReceiverInfo | None:
        stats = self._stats
        if stats is None or self.ssrc is None or stats.max_seq is None:
            return None
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=stats.fraction_lost,
            packets_lost=max(0, stats.packets_lost),
            highest_sequence=(stats.cycles + stats.max_seq) & 0xFFFFFFFF,
            jitter=stats.jitter,
            lsr=0,
            dlsr=0,
        )


@dataclass
class Totals:
    packets: int = 0
    bytes: int = 0
    frames: int = 0


class LightPeer:
    """An RTCPeerConnection whose every incoming stream is a `CountingReceiver`."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.receivers: list[CountingReceiver] = []
        self._claimed: set[int] = set()
        self._rtcp_ssrc = random.getrandbits(32)
        self._rtcp_task = asyncio.ensure_future(self._rtcp_loop())

    def claim_receivers(self) -> None:
        """Call after setRemoteDescription(offer) or addTransceiver: before receive()."""
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if id(receiver) in self._claimed:
                continue
            self._claimed.add(id(receiver))
            counter = CountingReceiver(transceiver.kind)
            claim_receiver(receiver, counter)
            self.receivers.append(counter)

    def totals(self, kind: str) -> Totals:
        total = Totals()
        for r in self.receivers:
            if r.kind == kind:
                total.packets += r.packets
                total.bytes += r.bytes
                total.frames += r.frames
        return total

    async def _rtcp_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            blocks = [b for r in self.receivers if (b := r.report_block()) is not None]
            if not blocks:
                continue
            data = bytes(RtcpRrPacket(ssrc=self._rtcp_ssrc, reports=blocks))
            video = [r.ssrc for r in self.receivers if r.kind == "video" and r.ssrc]
            if video:
                data += bytes(
                    RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP,
                        ssrc=self._rtcp_ssrc,
                        media_ssrc=0,
                        fci=pack_remb_fci(REMB_BPS, video),
                    )
                )
            transceivers = self.pc.getTransceivers()
            if not transceivers:
                continue
            with contextlib.suppress(ConnectionError, AttributeError):
                await transceivers[0].receiver.transport._send_rtp(data)

    async def close(self) -> None:
        self._rtcp_task.cancel()
        await self.pc.close()


# ------------------------------------------------------------------ publishing


@dataclass
class Clip:
    """A pre-encoded video clip: Annex-B access units, looped by `ReplayVideoTrack`."""

    width: int
    height: int
    fps: int
    frames: list[bytes] = field(default_factory=list)

    @property
    def kbps(self) -> float:
        seconds = len(self.frames) / self.fps
        return sum(len(f) for f in self.frames) * 8 / seconds / 1000


def encode_clip(width: int, height: int, fps: int, bitrate: int, seconds: float,
                cache_dir: Path) -> Clip:
    """Encode a busy test pattern once (cached) with the agent's x264 settings.

    The agent's test pattern alone compresses to ~150 kbit/s at 720p30, far below what a
    camera sends; fresh noise on the luma plane makes x264 spend its whole budget, so the
    clip runs at `bitrate` like a real classroom camera. Keyframe every second.
    """
    path = cache_dir / f"clip-{width}x{height}-{fps}-{bitrate}-{seconds:g}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    import numpy as np

    from classroom.agent.encoder import VideoEncoder
    from classroom.agent.testpattern import PatternRenderer

    encoder = VideoEncoder("h264", width, height, fps, bitrate, keyframe_interval_s=1.0)
    renderer = PatternRenderer(width, height, "Bench", 7)
    rng = np.random.default_rng(7)
    clip = Clip(width, height, fps)
    step = 90000 // fps
    for i in range(int(seconds * fps)):
        i420 = renderer.render(i, i * 1000 // fps)
        i420[:height] += rng.integers(0, 24, size=(height, width), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts, frame.time_base = i * step, VIDEO_TB
        data = b"".join(bytes(p) for p in encoder.encode(frame))
        if data:
            clip.frames.append(data)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(clip))
    return clip


class ReplayVideoTrack(MediaStreamTrack):
    """Loops a `Clip` in real time as `av.Packet`s (aiortc packetises, never encodes)."""

    kind = "video"

    def __init__(self, clip: Clip) -> None:
        super().__init__()
        self.clip = clip
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index / self.clip.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.clip.frames[self._index % len(self.clip.frames)])
        packet.pts = self._index * (90000 // self.clip.fps)
        packet.time_base = VIDEO_TB
        self._index += 1
        return packet


class SilenceAudioTrack(MediaStreamTrack):
    """Opus silence every 20 ms as ready-made packets: an audio stream for no CPU."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._index * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(OPUS_SILENCE)
        packet.pts = self._index * 960
        packet.time_base = AUDIO_TB
        self._index += 1
        return packet


# ------------------------------------------------------------------ protocol peer


class ProtocolPeer(LightPeer):
    """A room or a watcher in a Tongbu lesson: joins, answers every offer, pings."""

    def __init__(self, server: str, token: str, clip: Clip | None = None) -> None:
        super().__init__()
        self.url = server.replace("http://", "ws://").rstrip("/") + "/ws/v1"
        self.token = token
        self.clip = clip
        self.joined: protocol.Joined | None = None
        self.offers = 0
        self.errors: list[protocol.Error] = []
        self._ws: websockets.ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._joined = asyncio.Event()

    async def start(self) -> None:
        self._ws = await websockets.connect(self.url, max_size=1024 * 1024,
                                            ping_interval=None)
        await self._ws.send(protocol.encode(protocol.Join(
            token=self.token, client=protocol.ClientInfo(name="bench", kind="other"))))
        self._tasks.append(asyncio.ensure_future(self._read()))
        self._tasks.append(asyncio.ensure_future(self._keepalive()))
        await asyncio.wait_for(self._joined.wait(), 15)

    async def send(self, message: protocol._Message) -> None:
        assert self._ws is not None
        await self._ws.send(protocol.encode(message))

    async def _read(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            message = protocol.decode_server_message(raw)
            if isinstance(message, protocol.Joined):
                self.joined = message
                self._joined.set()
            elif isinstance(message, protocol.Offer):
                await self._answer(message)
            elif isinstance(message, protocol.Error):
                self.errors.append(message)

    async def _answer(self, offer: protocol.Offer) -> None:
        pc = self.pc
        if self.clip is not None and not pc.getTransceivers():
            pc.addTrack(SilenceAudioTrack())
            pc.addTrack(ReplayVideoTrack(self.clip))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    codecs = RTCRtpSender.getCapabilities("video").codecs
                    transceiver.setCodecPreferences(sorted(
                        (c for c in codecs if c.mimeType.lower() == "video/h264"),
                        key=lambda c: c.parameters.get("profile-level-id") != "42e01f",
                    ))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        self.claim_receivers()
        await pc.setLocalDescription(await pc.createAnswer())
        self.offers += 1
        await self.send(protocol.Answer(revision=offer.revision,
                                        sdp=pc.localDescription.sdp))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await self.send(protocol.Ping(t=time.time()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send(protocol.encode(protocol.Leave()))
                await asyncio.wait_for(self._ws.close(), 2)
        for track in [s.track for s in self.pc.getSenders() if s.track is not None]:
            track.stop()
        await super().close()


# ------------------------------------------------------------------ baseline subscriber


class OfferingSubscriber(LightPeer):
    """Subscribes to the plain-aiortc baseline server: offers recvonly H.264 + Opus."""

    async def start(self, url: str, http: aiohttp.ClientSession) -> None:
        pc = self.pc
        audio = pc.addTransceiver("audio", direction="recvonly")
        video = pc.addTransceiver("video", direction="recvonly")
        audio.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                   if c.mimeType.lower() == "audio/opus"])
        video.setCodecPreferences(sorted(
            (c for c in RTCRtpSender.getCapabilities("video").codecs
             if c.mimeType.lower() == "video/h264"),
            key=lambda c: c.parameters.get("profile-level-id") != "42e01f",
        ))
        self.claim_receivers()
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(url, json={"sdp": pc.localDescription.sdp}) as response:
            response.raise_for_status()
            answer = await response.json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
