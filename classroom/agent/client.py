"""The classroom agent's signaling client: join, answer, publish, receive, reconnect.

A classroom box has nobody at it. So the agent keeps trying: when the server restarts or
the school's link drops it reconnects with exponential backoff (and jitter, so forty boxes
do not all knock at once), using the rejoin token the server gave it at its last join.
It stops only when the lesson ends or its token is refused for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlsplit, urlunsplit

import websockets
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from classroom.agent.reception import (
    FrameSaver,
    TrackReception,
    consume,
    count_received_bytes,
)
from signaling import protocol
from signaling.errors import ErrorCode

logger = logging.getLogger(__name__)

PING_INTERVAL = 2.0  # s; the server asks for at least one message per keepalive interval
LINK_TIMEOUT = 8.0  # s without a pong: the link is gone, start again
BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0  # s connected before the backoff resets

# Refusals that no retry can fix.
FINAL_ERRORS = {
    ErrorCode.TOKEN_INVALID,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.TOKEN_WRONG_LESSON,
    ErrorCode.TOKEN_WRONG_ROLE,
    ErrorCode.TOKEN_REVOKED,
    ErrorCode.LESSON_NOT_FOUND,
    ErrorCode.LESSON_ENDED,
}


class Publisher(Protocol):
    """The room's own camera and microphone, made fresh for each connection."""

    def tracks(self) -> tuple[MediaStreamTrack, MediaStreamTrack]: ...

    def attach_sender(self, kind: str, sender: RTCRtpSender) -> None: ...

    def set_muted(self, kind: str, muted: bool) -> None: ...

    def preferred_video_codec(self) -> str: ...


PublisherFactory = Callable[[int, str], Publisher]


class LinkLost(Exception):
    pass


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class LessonOver(Exception):
    pass


class Reporter:
    """JSON lines on a stream: what the agent did and what it receives."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: object) -> None:
        line = json.dumps({"event": event, "t": round(time.time(), 3), **fields},
                          ensure_ascii=False, default=str)
        self.stream.write(line + "\n")
        self.stream.flush()


def websocket_url(server: str) -> str:
    """Accept http(s)://host:port, ws(s)://host:port or a full /ws/v1 URL."""
    parts = urlsplit(server)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"server must be an http(s):// or ws(s):// URL, not {server!r}")
    path = parts.path if parts.path.rstrip("/").endswith("/ws/v1") else "/ws/v1"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


@dataclass
class AgentState:
    joined: protocol.Joined | None = None
    lesson_state: protocol.LessonState | None = None
    tracks: list[protocol.TrackInfo] = field(default_factory=list)
    slots: dict[str, protocol.Slot] = field(default_factory=dict)
    receptions: dict[str, TrackReception] = field(default_factory=dict)
    connections: int = 0
    errors: list[protocol.Error] = field(default_factory=list)


class ClassroomAgent:
    def __init__(
        self,
        server: str,
        token: str,
        *,
        publisher_factory: PublisherFactory | None,
        reporter: Reporter | None = None,
        report_interval: float = 1.0,
        save_dir: Path | None = None,
        name: str = "tongbu-agent",
    ) -> None:
        self.url = websocket_url(server)
        self.token = token
        self.publisher_factory = publisher_factory
        self.reporter = reporter or Reporter()
        self.report_interval = report_interval
        self.save_dir = save_dir
        self.name = name
        self.state = AgentState()
        self._stopping = False
        self._ws: websockets.ClientConnection | None = None
        self._publisher: Publisher | None = None

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        """Stay in the lesson until it ends; 0 when it ended, 2 when refused for good."""
        backoff = BACKOFF_START
        attempt = 0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._connect_once()
            except LessonOver:
                return 0
            except Refused as exc:
                if exc.code in FINAL_ERRORS:
                    self.reporter.emit("refused", code=exc.code, message=str(exc))
                    return 0 if exc.code == ErrorCode.LESSON_ENDED else 2
                self.reporter.emit("waiting", code=exc.code)
            except (TimeoutError, LinkLost, OSError, websockets.WebSocketException) as exc:
                self.reporter.emit("link_lost", reason=repr(exc))
            except Exception as exc:
                # A box must never stop teaching over one bad visit (an SDP aiortc could
                # not apply, a message we could not read): report it and join afresh.
                if self._stopping:
                    break
                logger.exception("connection failed unexpectedly")
                self.reporter.emit("link_lost", reason=repr(exc), unexpected=True)
            if self._stopping:
                break
            if time.monotonic() - started > STABLE_AFTER:
                backoff = BACKOFF_START
            attempt += 1
            delay = backoff * random.uniform(0.8, 1.2)
            self.reporter.emit("reconnecting", attempt=attempt, delay_s=round(delay, 2))
            await asyncio.sleep(delay)
            backoff = min(BACKOFF_MAX, backoff * 2)
        return 0

    def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            task = asyncio.ensure_future(_leave(self._ws))
            task.add_done_callback(lambda _t: None)

    # ------------------------------------------------------------ one visit

    async def _connect_once(self) -> None:
        pc: RTCPeerConnection | None = None
        consumers: list[asyncio.Task[None]] = []
        tasks: list[asyncio.Task[object]] = []
        self.state.slots = {}
        self.state.receptions = {}
        savers: list[FrameSaver] = []
        try:
            async with websockets.connect(
                self.url, max_size=1024 * 1024, open_timeout=10, ping_interval=None
            ) as ws:
                self._ws = ws
                await ws.send(protocol.encode(protocol.Join(
                    token=self.token,
                    client=protocol.ClientInfo(name=self.name, kind="agent"),
                )))
                joined = await self._await_joined(ws)
                self.state.joined = joined
                self.state.connections += 1
                self.token = joined.rejoin_token
                self.reporter.emit(
                    "joined", classroom_id=joined.you.classroom_id, role=joined.you.role,
                    lesson_id=joined.lesson.lesson_id, session_id=joined.session_id,
                )
                pc = RTCPeerConnection(RTCConfiguration(
                    iceServers=[RTCIceServer(urls=u) for u in joined.ice_servers],
                    bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
                ))
                link_failed = asyncio.Event()

                @pc.on("connectionstatechange")
                def _state() -> None:
                    if pc.connectionState == "failed":
                        link_failed.set()

                @pc.on("track")
                def _track(track: MediaStreamTrack) -> None:
                    transceiver = next(
                        t for t in pc.getTransceivers() if t.receiver.track is track
                    )
                    mid = transceiver.mid or "?"
                    reception = TrackReception(mid=mid, kind=track.kind)
                    # The codec this m-line was negotiated with: what the router forwards.
                    negotiated = [c for c in transceiver._codecs
                                  if not c.mimeType.lower().endswith("/rtx")]
                    reception.codec = negotiated[0].mimeType if negotiated else None
                    slot = self.state.slots.get(mid)
                    reception.classroom_id = slot.classroom_id if slot else None
                    self.state.receptions[mid] = reception
                    count_received_bytes(transceiver.receiver, reception)
                    saver = None
                    if self.save_dir is not None and track.kind == "video":
                        saver = FrameSaver(self.save_dir / f"received-mid{mid}.mp4")
                        savers.append(saver)
                    consumers.append(asyncio.ensure_future(consume(track, reception, saver)))

                if joined.you.role != "watch" and self.publisher_factory is not None:
                    assert joined.you.classroom_id is not None
                    self._publisher = self.publisher_factory(joined.you.classroom_id,
                                                             joined.you.role)
                tasks.append(asyncio.ensure_future(self._keepalive(ws)))
                tasks.append(asyncio.ensure_future(self._report_loop()))
                failed = asyncio.ensure_future(link_failed.wait())
                tasks.append(failed)
                reader = asyncio.ensure_future(self._read(ws, pc))
                done, _ = await asyncio.wait([reader, failed, tasks[0]],
                                             return_when=asyncio.FIRST_COMPLETED)
                if failed in done:
                    reader.cancel()
                    raise LinkLost("peer connection failed")
                for task in done:
                    task.result()  # raises the reason we left
        finally:
            self._ws = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pc is not None:
                await pc.close()
            for consumer in consumers:
                consumer.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)
            for saver in savers:  # the last fragment and the encoder's tail reach the file
                try:
                    saver.close()
                except Exception:  # a debugging aid must not mask why the session ended
                    logger.exception("could not finish %s", saver.path)

    async def _await_joined(self, ws: websockets.ClientConnection) -> protocol.Joined:
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout=15)
            message = protocol.decode_server_message(raw)
            if isinstance(message, protocol.Joined):
                return message
            if isinstance(message, protocol.Error):
                self.state.errors.append(message)
                raise Refused(message.code, message.message)

    async def _read(self, ws: websockets.ClientConnection, pc: RTCPeerConnection) -> None:
        async for raw in ws:
            if self._stopping:
                break  # leaving: what the server says now no longer matters
            message = protocol.decode_server_message(raw)
            if isinstance(message, protocol.Offer):
                await self._answer(ws, pc, message)
            elif isinstance(message, protocol.Slots):
                self._take_slots(message.slots)
                self.reporter.emit("slots", slots=[_slot_dict(s) for s in message.slots])
            elif isinstance(message, protocol.LessonState):
                self.state.lesson_state = message
                self.reporter.emit(
                    "lesson_state", state=message.state, stage=message.stage_classroom_id,
                    hands=[r.classroom_id for r in message.rooms if r.hand_raised],
                    connected=[r.classroom_id for r in message.rooms if r.connected],
                )
            elif isinstance(message, protocol.Tracks):
                self.state.tracks = message.tracks
            elif isinstance(message, protocol.MuteNotice):
                if self._publisher is not None:
                    self._publisher.set_muted(message.kind, message.muted)
                self.reporter.emit("mute", kind=message.kind, muted=message.muted)
            elif isinstance(message, protocol.LessonEnded):
                self.reporter.emit("lesson_ended", reason=message.reason)
                raise LessonOver(message.reason)
            elif isinstance(message, protocol.Error):
                self.state.errors.append(message)
                self.reporter.emit("error", code=message.code, message=message.message)
                if message.fatal:
                    raise Refused(message.code, message.message)
            elif isinstance(message, protocol.Pong):
                self._last_pong = time.monotonic()
        raise LinkLost(f"server closed the socket ({ws.close_code})")

    async def _answer(self, ws: websockets.ClientConnection, pc: RTCPeerConnection,
                      offer: protocol.Offer) -> None:
        publisher = self._publisher
        if publisher is not None and not pc.getTransceivers():
            audio, video = publisher.tracks()
            pc.addTrack(audio)
            pc.addTrack(video)
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    preferred = publisher.preferred_video_codec().lower().removeprefix("video/")
                    codecs = RTCRtpSender.getCapabilities("video").codecs
                    # Constrained baseline first: it is what our x264 settings produce
                    # and what every browser decodes.
                    chosen = sorted(
                        (c for c in codecs if c.mimeType.lower() == f"video/{preferred}"),
                        key=lambda c: c.parameters.get("profile-level-id") != "42e01f",
                    )
                    transceiver.setCodecPreferences(chosen)
                publisher.attach_sender(transceiver.kind, transceiver.sender)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        self._take_slots(offer.slots)
        await ws.send(protocol.encode(protocol.Answer(revision=offer.revision,
                                                      sdp=pc.localDescription.sdp)))

    def _take_slots(self, slots: list[protocol.Slot]) -> None:
        self.state.slots = {s.mid: s for s in slots}
        for mid, reception in self.state.receptions.items():
            slot = self.state.slots.get(mid)
            reception.classroom_id = slot.classroom_id if slot else None

    async def _keepalive(self, ws: websockets.ClientConnection) -> None:
        self._last_pong = time.monotonic()
        while True:
            await ws.send(protocol.encode(protocol.Ping(t=time.time())))
            await asyncio.sleep(PING_INTERVAL)
            if time.monotonic() - self._last_pong > LINK_TIMEOUT:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), timeout=1)
                raise LinkLost("no pong from the server")

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval)
            for reception in self.state.receptions.values():
                reception.take_rates()
            self.reporter.emit(
                "stats", tracks=[r.report() for r in self.state.receptions.values()]
            )

    # ----------------------------------------------------------- requests

    async def send(self, message: protocol._Message) -> None:
        """Send a request (stage, raise_hand, ...) on the current connection."""
        if self._ws is None:
            raise LinkLost("not connected")
        await self._ws.send(protocol.encode(message))


async def _leave(ws: websockets.ClientConnection) -> None:
    """Say goodbye so the server ends the room's attendance now, not at a timeout."""
    with contextlib.suppress(Exception):
        await ws.send(protocol.encode(protocol.Leave()))
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), timeout=2)


def _slot_dict(slot: protocol.Slot) -> dict[str, object]:
    return {"mid": slot.mid, "kind": slot.kind, "direction": slot.direction,
            "track_id": slot.track_id, "classroom_id": slot.classroom_id}
