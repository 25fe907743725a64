"""One WebSocket: a classroom (or a watcher) in a live lesson.

Trust nothing from the wire (docs/ARCHITECTURE.md, decision 6): frames are size-checked, parsed and
validated against signaling.protocol before anything acts on it; a bad frame is answered
with an error and the session goes on; only a flood, a fatal join error or silence closes
the socket. Whatever one socket does, the other rooms of the lesson keep their media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from sqlalchemy.ext.asyncio import async_sessionmaker

from classroom.lessons import (
    IllegalTransition,
    LessonState,
    load_roster,
    transition,
)
from classroom.users import join_token_revoked
from signaling import protocol
from signaling.errors import ErrorCode
from signaling.live.join_refusals import JoinRefusal, JoinRefusalLog
from signaling.live.lesson import link_quality, now_utc
from signaling.live.state import LinkQuality
from signaling.live.tokens import JoinClaims, JoinRole, JoinTokens, TokenError
from signaling.media.publication import Publication
from signaling.media.room_connection import RoomConnection
from signaling.media.subscription import SubscriberLeg
from signaling.protocol import ProtocolError

if TYPE_CHECKING:
    from signaling.live.lesson import LiveLesson
    from signaling.live.registry import LiveLessonRegistry

logger = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 5.0  # s: clients ping this often
KEEPALIVE_TIMEOUT = 15.0  # s of silence before the server drops a session
ANSWER_TIMEOUT = 15.0  # s a client may take to answer an offer
RATE = 20.0  # messages per second, sustained
BURST = 60.0  # messages at once (ICE trickle comes in bursts)
FLOOD_LIMIT = 200  # dropped messages within FLOOD_WINDOW close the socket
FLOOD_WINDOW = 10.0
MAX_FRAME_BYTES = 1024 * 1024  # aiohttp closes (1009) above this; we answer above 64 KiB
REJOIN_GRACE = timedelta(minutes=30)
REJOIN_MAX = timedelta(hours=6)
MAX_BITRATE = {"main": 2_500_000, "receiving": 1_000_000}


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SignalingSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        registry: LiveLessonRegistry,
        db: async_sessionmaker,
        tokens: JoinTokens,
        ice_servers: tuple[str, ...],
        remote: str | None,
        refusals: JoinRefusalLog | None = None,
    ) -> None:
        self.ws = ws
        self.id = secrets.token_urlsafe(9)
        self.registry = registry
        self.db = db
        self.tokens = tokens
        self.ice_servers = ice_servers
        self.remote = remote
        self.refusals = refusals  # None: refused joins are not audited (unit tests)
        self.lesson: LiveLesson | None = None
        self.claims: JoinClaims | None = None
        self._knocking: JoinClaims | None = None  # a join's verified claims, before admission
        self.classroom_id: int | None = None
        self.role: str | None = None
        self.selection: set[str] | None = None
        self.connection: RoomConnection | None = None
        self.joined_at = now_utc()
        self.end_reason = "closed"
        self._bucket = TokenBucket(RATE, BURST)
        self._dropped: list[float] = []
        self._last_rate_error = 0.0
        self._last_seen = time.monotonic()
        self._closed = False
        self._send_lock = asyncio.Lock()

    # ---------------------------------------------------------------- loop

    async def run(self) -> None:
        watchdog = asyncio.ensure_future(self._watchdog())
        try:
            async for frame in self.ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._last_seen = time.monotonic()
                    verdict = self._admit()
                    if verdict == "flood":
                        self.end_reason = "flood"
                        await self._close_for_flood()
                        break
                    if verdict == "drop":
                        await self.send_error(
                            ErrorCode.RATE_LIMITED, "too many messages; this one was dropped"
                        )
                    if verdict != "ok":
                        continue
                    await self._handle_frame(frame.data)
                    if self._closed:
                        break
                elif frame.type == WSMsgType.ERROR:
                    self.end_reason = "socket_error"
                    break
        finally:
            watchdog.cancel()
            await self.close(reason=self.end_reason)

    async def _handle_frame(self, data: str | bytes) -> None:
        ref = None
        try:
            message = protocol.decode_client_message(data)
            ref = message.id
            await self._dispatch(message)
        except TokenError as exc:
            await self.send_error(exc.code, str(exc), ref, fatal=True)
            await self.close(reason="refused")
        except ProtocolError as exc:
            await self.send_error(exc.code, exc.message, exc.ref or ref, fatal=exc.fatal)
            if exc.fatal:
                await self.close(reason="refused")
        except Exception:
            logger.exception("session %s: unexpected error", self.id)
            await self.send_error(ErrorCode.INTERNAL, "internal error; it was logged", ref)

    def _admit(self) -> str:
        """Rate limit per socket: "ok", "drop" (answer once a second), "quiet" or "flood"."""
        if self._bucket.take():
            return "ok"
        now = time.monotonic()
        self._dropped = [t for t in self._dropped if now - t < FLOOD_WINDOW]
        self._dropped.append(now)
        if len(self._dropped) > FLOOD_LIMIT:
            return "flood"
        if now - self._last_rate_error > 1.0:
            self._last_rate_error = now
            return "drop"
        return "quiet"

    async def _close_for_flood(self) -> None:
        await self.send_error(ErrorCode.RATE_LIMITED, "message flood; closing", fatal=True)
        await self.ws.close(code=1008, message=b"flood")

    async def _watchdog(self) -> None:
        """Drop a silent client, and one that never answers an offer."""
        try:
            while not self._closed:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                if now - self._last_seen > KEEPALIVE_TIMEOUT:
                    self.end_reason = "timeout"
                    await self.ws.close(code=1001, message=b"keepalive timeout")
                    return
                if self.connection is not None and self.connection.answer_overdue(ANSWER_TIMEOUT):
                    self.end_reason = "no_answer"
                    await self.send_error(
                        ErrorCode.STALE_ANSWER, "no answer to the offer in time", fatal=True
                    )
                    await self.ws.close(code=1002, message=b"no answer")
                    return
        except asyncio.CancelledError:
            pass

    # ------------------------------------------------------------ dispatch

    async def _dispatch(self, message: protocol.ClientMessage) -> None:
        if isinstance(message, protocol.Ping):
            await self.send(protocol.Pong(t=message.t, server_time=time.time()))
            return
        if isinstance(message, protocol.Join):
            if self.lesson is not None:
                raise ProtocolError(ErrorCode.ALREADY_JOINED, "this socket has joined", message.id)
            try:
                await self._join(message)
            except TokenError as exc:
                await self._audit_refusal(message, exc.code, exc.message)
                raise
            except ProtocolError as exc:
                if exc.fatal:
                    await self._audit_refusal(message, exc.code, exc.message)
                raise
            return
        if self.lesson is None or self.connection is None:
            raise ProtocolError(
                ErrorCode.NOT_JOINED, f"`{_type_of(message)}` before `join`", message.id
            )
        handler = self._handlers().get(type(message))
        if handler is None:  # pragma: no cover - every client type has a handler
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unhandled", message.id)
        await handler(message)

    def _handlers(self) -> dict[type, Callable]:
        return {
            protocol.Answer: self._on_answer,
            protocol.Ice: self._on_ice,
            protocol.Subscribe: self._on_subscribe,
            protocol.Stage: self._on_stage,
            protocol.RaiseHand: self._on_raise_hand,
            protocol.LowerHand: self._on_lower_hand,
            protocol.MuteRequest: self._on_mute_request,
            protocol.Leave: self._on_leave,
        }

    # ---------------------------------------------------------------- join

    async def _join(self, message: protocol.Join) -> None:
        role = JoinRole(message.role) if message.role else None
        claims = self.tokens.verify(message.token, lesson_id=message.lesson_id, role=role)
        self._knocking = claims
        async with self.db() as db:
            revoked = await join_token_revoked(db, claims.subject, claims.classroom_id)
            roster = None if revoked else await load_roster(db, claims.lesson_id)
        if revoked:
            # Before anything about the lesson: a revoked holder learns nothing of it.
            raise _fatal(ErrorCode.TOKEN_REVOKED, revoked, message.id)
        if roster is None:
            raise _fatal(ErrorCode.LESSON_NOT_FOUND, "no such lesson", message.id)
        if roster.state == LessonState.SCHEDULED:
            raise _fatal(ErrorCode.LESSON_NOT_OPEN, "the lesson is not open yet", message.id)
        if roster.state in (LessonState.ENDED, LessonState.CANCELLED):
            raise _fatal(ErrorCode.LESSON_ENDED, f"the lesson is {roster.state}", message.id)
        if claims.role != JoinRole.WATCH:
            place = next((r for r in roster.rooms if r.classroom_id == claims.classroom_id), None)
            if place is None or place.role != claims.role.value:
                raise _fatal(
                    ErrorCode.TOKEN_WRONG_ROLE,
                    f"classroom {claims.classroom_id} is not the lesson's {claims.role} room",
                    message.id,
                )
        if claims.role == JoinRole.MAIN and roster.state == LessonState.OPEN:
            # Two main-room sockets racing (a box and the teacher's browser): the second
            # finds the lesson already live, which is what it wanted.
            with contextlib.suppress(IllegalTransition):
                async with self.db() as db:
                    await transition(db, roster.lesson_id, LessonState.LIVE)

        self.claims = claims
        self.role = claims.role.value
        self.classroom_id = claims.classroom_id if claims.role != JoinRole.WATCH else None
        lesson = await self.registry.attach(roster, self)
        self.lesson = lesson
        self.connection = RoomConnection(
            classroom_id=self.classroom_id,
            role=self.role,
            send=self.send,
            on_publication=self._on_publication,
            ice_servers=self.ice_servers,
            max_bitrate=MAX_BITRATE.get(self.role),
        )
        rejoin_ttl = min(
            REJOIN_MAX, max(timedelta(minutes=10), roster.planned_end + REJOIN_GRACE - now_utc())
        )
        rejoin_token, rejoin_expires = self.tokens.mint(
            lesson_id=roster.lesson_id,
            classroom_id=claims.classroom_id,
            role=claims.role,
            ttl=rejoin_ttl,
            subject=claims.subject,
        )
        name = "watcher"
        if self.classroom_id is not None:
            name = next(r.name for r in roster.rooms if r.classroom_id == self.classroom_id)
        await self.send(
            protocol.Joined(
                id=message.id,
                session_id=self.id,
                lesson=protocol.LessonInfo(
                    lesson_id=roster.lesson_id,
                    kind=str(roster.kind),
                    subject=roster.subject,
                    grade=roster.grade,
                    teacher_name=roster.teacher_name,
                    title=roster.title,
                    state=lesson.state,
                    planned_start=roster.planned_start.isoformat(),
                    planned_end=roster.planned_end.isoformat(),
                ),
                # self.role is str | None on the session; this join just set it to a JoinRole
                you=protocol.YouInfo(classroom_id=self.classroom_id, role=self.role, name=name),  # type: ignore[arg-type]
                rejoin_token=rejoin_token,
                rejoin_expires_at=rejoin_expires.isoformat(),
                keepalive_interval_s=KEEPALIVE_INTERVAL,
                ice_servers=list(self.ice_servers),
            )
        )
        await self.connection.negotiate()
        await lesson.reconcile()

    async def _audit_refusal(self, message: protocol.Join, code: ErrorCode, reason: str) -> None:
        """A `signaling.join_refused` row (rate-limited by the log): the token's claims
        when it verified, else what the message claimed (the token's own are not trusted)."""
        if self.refusals is None:
            return
        claims = self._knocking
        refusal = JoinRefusal(
            code=str(code),
            message=reason,
            lesson_id=claims.lesson_id if claims else message.lesson_id,
            classroom_id=claims.classroom_id if claims else None,
            role=claims.role.value if claims else message.role,
            subject=claims.subject if claims else None,
            remote=self.remote,
        )
        await self.refusals.record(self.db, refusal)

    def _on_publication(self, publication: Publication) -> None:
        lesson = self.lesson
        if lesson is None or self._closed:
            return
        lesson.add_publication(publication)
        task = asyncio.ensure_future(lesson.reconcile())
        task.add_done_callback(_log_task_failure)

    # ------------------------------------------------------------- messages

    async def _on_answer(self, message: protocol.Answer) -> None:
        assert self.connection is not None
        await self.connection.apply_answer(message)

    async def _on_ice(self, message: protocol.Ice) -> None:
        assert self.connection is not None
        await self.connection.add_ice_candidate(message)

    async def _on_subscribe(self, message: protocol.Subscribe) -> None:
        assert self.lesson is not None
        if message.track_ids is None:
            self.selection = None
        else:
            allowed = {p.track_id for p in self.lesson.allowed_for(self)}
            unknown = [t for t in message.track_ids if t not in allowed]
            if unknown:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_TRACK,
                    f"not tracks this room may receive: {', '.join(unknown)}",
                    message.id,
                )
            self.selection = set(message.track_ids)
        await self.apply_sources(self.lesson.desired_for(self))

    async def _on_stage(self, message: protocol.Stage) -> None:
        lesson = self._require_main(message)
        target = message.classroom_id
        if target is not None and lesson.role_of(target) != "receiving":
            raise ProtocolError(
                ErrorCode.UNKNOWN_ROOM,
                f"classroom {target} is not a receiving room here",
                message.id,
            )
        if lesson.stage != target:
            if lesson.stage is not None:
                lesson.emit("unstage", lesson.stage)
            if target is not None:
                lesson.emit("stage", target)
        lesson.stage = target
        if target is not None:
            lesson.presence[target].hand_raised = False
        await lesson.reconcile()

    async def _on_raise_hand(self, message: protocol.RaiseHand) -> None:
        lesson = self.lesson
        assert lesson is not None
        if self.role != "receiving" or self.classroom_id is None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "only a receiving room raises a hand", message.id
            )
        if not lesson.presence[self.classroom_id].hand_raised:
            lesson.emit("hand_raised", self.classroom_id)
        lesson.presence[self.classroom_id].hand_raised = True
        await lesson.broadcast_state()

    async def _on_lower_hand(self, message: protocol.LowerHand) -> None:
        lesson = self.lesson
        assert lesson is not None
        if self.role == "receiving" and self.classroom_id is not None:
            target = self.classroom_id
        elif self.role == "main":
            if message.classroom_id is None or lesson.role_of(message.classroom_id) != "receiving":
                raise ProtocolError(ErrorCode.UNKNOWN_ROOM, "name the receiving room", message.id)
            target = message.classroom_id
        else:
            raise ProtocolError(ErrorCode.FORBIDDEN, "watchers have no hands", message.id)
        if lesson.presence[target].hand_raised:
            lesson.emit("hand_lowered", target, by=self.role)
        lesson.presence[target].hand_raised = False
        await lesson.broadcast_state()

    async def _on_mute_request(self, message: protocol.MuteRequest) -> None:
        lesson = self._require_main(message)
        if lesson.role_of(message.classroom_id) != "receiving":
            raise ProtocolError(
                ErrorCode.UNKNOWN_ROOM,
                f"classroom {message.classroom_id} is not a receiving room",
                message.id,
            )
        lesson.set_muted(message.classroom_id, message.kind, message.muted)
        lesson.emit("mute", message.classroom_id, kind=message.kind, muted=message.muted)
        target = lesson.rooms.get(message.classroom_id)
        if target is not None and self.classroom_id is not None:
            await target.send(
                protocol.MuteNotice(
                    kind=message.kind, muted=message.muted, by_classroom_id=self.classroom_id
                )
            )
        await lesson.broadcast_tracks()
        await lesson.broadcast_state()

    async def _on_leave(self, message: protocol.Leave) -> None:
        self.end_reason = "left"
        await self.close(reason="left")

    def _require_main(self, message: protocol.ClientMessage) -> LiveLesson:
        if self.role != "main" or self.lesson is None:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"only the main room may send `{_type_of(message)}`",
                message.id,
            )
        return self.lesson

    # ---------------------------------------------------------- media side

    async def apply_sources(self, desired: list[Publication]) -> None:
        if self.connection is None or self._closed:
            return
        change = self.connection.set_sources(desired)
        if change == "offer":
            await self.connection.negotiate()
        elif change == "slots":
            await self.connection.send_slots()

    def legs(self) -> list[SubscriberLeg]:
        return self.connection.legs if self.connection is not None else []

    def subscribed_track_ids(self) -> list[str]:
        return sorted(leg.source.track_id for leg in self.legs() if leg.source is not None)

    def link_quality(self) -> tuple[LinkQuality, LinkQuality]:
        """(room to server, server to room), from our counters and the room's RTCP."""
        if self.connection is None:
            return LinkQuality(), LinkQuality()
        upstream = link_quality(list(self.connection.publications.values()))
        downstream = LinkQuality()
        rtts = []
        for leg in self.legs():
            c = leg.counters
            downstream.packets += c.packets
            downstream.packets_lost += c.packets_lost
            downstream.fraction_lost = max(downstream.fraction_lost, c.fraction_lost)
            downstream.jitter_ms = max(downstream.jitter_ms, round(c.jitter_ms, 2))
            if c.rtt_ms is not None:
                rtts.append(c.rtt_ms)
        downstream.bitrate_kbps = round(sum(leg.bitrate_kbps() for leg in self.legs()), 1)
        if rtts:
            downstream.rtt_ms = round(sum(rtts) / len(rtts), 2)
            upstream.rtt_ms = downstream.rtt_ms  # one path, one round trip
        return upstream, downstream

    # ------------------------------------------------------------- output

    async def send(self, message: protocol._Message) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            try:
                await self.ws.send_str(protocol.encode(message).decode())
            except (ConnectionError, RuntimeError):
                pass

    async def send_error(
        self, code: ErrorCode, message: str, ref: str | None = None, *, fatal: bool = False
    ) -> None:
        await self.send(protocol.Error(code=code, message=message, ref=ref, fatal=fatal))

    async def close(self, *, reason: str, code: int = 1000) -> None:
        if self._closed and self.connection is None:
            return
        self._closed = True
        if self.end_reason == "closed":
            self.end_reason = reason
        connection, self.connection = self.connection, None
        lesson = self.lesson
        if lesson is not None:
            await self.registry.detach(lesson, self)
        if connection is not None:
            await connection.close()
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode()[:120])
        # Attendance is written from the lesson's join and leave events, as they happen
        # (signaling/services/quality_sampler.py), not here at the end of the connection.


def _fatal(code: ErrorCode, message: str, ref: str | None) -> ProtocolError:
    """A refused join closes the socket: the client must fix its token or wait."""
    return ProtocolError(code, message, ref, fatal=True)


def _type_of(message: protocol.ClientMessage) -> str:
    return str(type(message).__struct_config__.tag)  # every message type has a str tag


def _log_task_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("background task failed: %r", exc, exc_info=exc)
