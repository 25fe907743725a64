"""A lesson while it is live: who is connected, who is on stage, who receives what.

The forwarding policy of a 1拖4 lesson lives here and only here:
- the main room receives every receiving room;
- a receiving room receives the main room, and the room on stage (if not itself);
- a watcher (view-only) receives every room;
- a muted track is forwarded to nobody.
A client may narrow what it receives with `subscribe`, never widen it: rural pupils'
faces and voices reach another school only while their room is on stage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from classroom.lessons import LessonRoster
from signaling import protocol
from signaling.errors import ErrorCode
from signaling.live.state import (
    ForwardingCounters,
    LinkQuality,
    LiveLessonState,
    RoomState,
    TrackState,
)
from signaling.live.tokens import JoinClaims
from signaling.media.publication import Publication
from signaling.media.subscription import SubscriberLeg

if TYPE_CHECKING:
    from signaling.media.room_connection import RoomConnection

logger = logging.getLogger(__name__)


@dataclass
class RoomPresenceState:
    """What the lesson remembers of a room between its connections."""

    connected_since: datetime | None = None
    reconnects: int = 0
    joins: int = 0
    hand_raised: bool = False
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})


class Participant(Protocol):
    """What a lesson asks of one connected room or watcher (signaling/live/session.py's
    SignalingSession is the one implementation); the lesson and the registry see only this,
    so the session may build on them without them knowing it."""

    id: str
    classroom_id: int | None
    role: str | None
    claims: JoinClaims | None
    selection: set[str] | None
    end_reason: str
    connection: RoomConnection | None  # set once the join is accepted

    async def apply_sources(self, desired: list[Publication]) -> None: ...

    def legs(self) -> list[SubscriberLeg]: ...

    def subscribed_track_ids(self) -> list[str]: ...

    def link_quality(self) -> tuple[LinkQuality, LinkQuality]: ...

    async def send(self, message: protocol._Message) -> None: ...

    async def send_error(
        self, code: ErrorCode, message: str, ref: str | None = None, *, fatal: bool = False
    ) -> None: ...

    async def close(self, *, reason: str, code: int = 1000) -> None: ...


PublicationObserver = Callable[[Publication], None]
ClassStartCallback = Callable[["LiveLesson"], None]


@dataclass(frozen=True)
class LessonEvent:
    """Something that happened in the room, for the recording's timeline and chapters.

    kinds: join, leave (detail: reason), stage / unstage, hand_raised, hand_lowered,
    mute (detail: kind, muted), class_started (detail: how), ended (detail: reason).
    """

    at: datetime
    kind: str
    classroom_id: int | None = None
    detail: dict[str, object] = field(default_factory=dict)


EventObserver = Callable[[LessonEvent], None]


class LiveLesson:
    def __init__(self, roster: LessonRoster) -> None:
        self.roster = roster
        self.lesson_id = roster.lesson_id
        self.state = str(roster.state)
        self.main_id = next(r.classroom_id for r in roster.rooms if r.role == "main")
        self.rooms: dict[int, Participant] = {}
        self.watchers: set[Participant] = set()
        self.presence: dict[int, RoomPresenceState] = {
            r.classroom_id: RoomPresenceState() for r in roster.rooms
        }
        self.stage: int | None = None
        self.publications: dict[str, Publication] = {}
        # Sinks other than rooms (the recorder, the broadcaster) hear of each new track here.
        self.publication_observers: list[PublicationObserver] = []
        # The recorder's timeline: joins, leaves, stage changes, hands, mutes, the end.
        self.event_observers: list[EventObserver] = []
        self.transcodes = 0
        self._reconcile_lock = asyncio.Lock()
        # Rooms may connect during the lead-in before the bell (the scheduler opens lessons
        # early so links can be checked); the recording and the public broadcast wait for
        # the class itself: the bell, or a teacher starting it by hand.
        self.class_started_at: datetime | None = None
        self.recording = False  # set by the recorder while it records this lesson
        self._tasks: set[asyncio.Task[None]] = set()
        self._class_start_callbacks: list[ClassStartCallback] = []
        self._bell: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------- policy

    def emit(self, kind: str, classroom_id: int | None = None, /, **detail: object) -> None:
        event = LessonEvent(now_utc(), kind, classroom_id, detail)
        for observer in self.event_observers:
            try:
                observer(event)
            except Exception:
                logger.exception("event observer failed on %s", kind)

    def role_of(self, classroom_id: int) -> str | None:
        return next((r.role for r in self.roster.rooms if r.classroom_id == classroom_id), None)

    def allowed_for(self, session: Participant) -> list[Publication]:
        """Every publication this session may receive under the lesson's policy."""
        result = []
        for publication in self.publications.values():
            if publication.ended or publication.codec is None:
                continue
            source = publication.classroom_id
            if source == session.classroom_id:
                continue
            if session.role == "receiving" and source not in (self.main_id, self.stage):
                continue
            result.append(publication)
        return result

    def desired_for(self, session: Participant) -> list[Publication]:
        selection = session.selection
        allowed = self.allowed_for(session)
        return [p for p in allowed if selection is None or p.track_id in selection]

    def set_muted(self, classroom_id: int, kind: str, muted: bool) -> None:
        """Muting is enforced here, at the source: nothing of it is forwarded or recorded."""
        self.presence[classroom_id].muted[kind] = muted
        publication = self.publications.get(f"{classroom_id}-{kind}")
        if publication is not None:
            publication.set_muted(muted)

    def sessions(self) -> list[Participant]:
        return [*self.rooms.values(), *self.watchers]

    # ------------------------------------------------------------- the bell

    def when_class_starts(self, callback: ClassStartCallback) -> None:
        """Run `callback(lesson)` when the class starts: now if it has already."""
        if self.class_started_at is not None:
            callback(self)
        else:
            self._class_start_callbacks.append(callback)

    def start_class_at_bell(self, *, started_by_hand: bool = False) -> None:
        """Start the class now if its planned start has come (or a person started it),
        else at the planned start. Call once, when the lesson goes live here."""
        delay = (self.roster.planned_start - now_utc()).total_seconds()
        if started_by_hand or delay <= 0:
            self.start_class("by_hand" if started_by_hand and delay > 0 else "bell")
        elif self._bell is None:
            self._bell = asyncio.get_running_loop().call_later(delay, self.start_class, "bell")

    def start_class(self, how: str) -> None:
        """The class begins (idempotent): whoever waited for it starts now."""
        if self.class_started_at is not None:
            return
        if self._bell is not None:
            self._bell.cancel()
            self._bell = None
        self.class_started_at = now_utc()
        logger.info("lesson %s: class started (%s)", self.lesson_id, how)
        callbacks, self._class_start_callbacks = self._class_start_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("class start callback failed for lesson %s", self.lesson_id)
        self.emit("class_started", how=how)  # after: the recording's timeline has it
        # Everyone's page says the lesson is being recorded now.
        task = asyncio.ensure_future(self.broadcast_state())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_bell(self) -> None:
        """The lesson ended before its bell: nobody waits for a class that never began."""
        if self._bell is not None:
            self._bell.cancel()
            self._bell = None
        self._class_start_callbacks.clear()

    # ------------------------------------------------------------- events

    def add_publication(self, publication: Publication) -> None:
        old = self.publications.get(publication.track_id)
        if old is not None and old is not publication:
            old.end()
        self.publications[publication.track_id] = publication
        presence = self.presence.get(publication.classroom_id)
        if presence is not None and presence.muted.get(publication.kind):
            publication.set_muted(True)
        for observer in self.publication_observers:
            observer(publication)

    def drop_publications_of(self, classroom_id: int) -> None:
        for track_id, publication in list(self.publications.items()):
            if publication.classroom_id == classroom_id:
                publication.end()
                del self.publications[track_id]

    async def reconcile(self) -> None:
        """Bring every room's legs in line with the policy, then tell everyone."""
        async with self._reconcile_lock:
            for session in self.sessions():
                await session.apply_sources(self.desired_for(session))
            await self.broadcast_tracks()
            await self.broadcast_state()

    async def broadcast_state(self) -> None:
        message = self.state_message()
        for session in self.sessions():
            await session.send(message)

    async def broadcast_tracks(self) -> None:
        for session in self.sessions():
            await session.send(self.tracks_message(session))

    def state_message(self) -> protocol.LessonState:
        rooms = []
        for room in self.roster.rooms:
            presence = self.presence[room.classroom_id]
            rooms.append(
                protocol.RoomPresence(
                    classroom_id=room.classroom_id,
                    name=room.name,
                    school_name=room.school_name,
                    role=room.role,  # type: ignore[arg-type]  # from a column CHECKed to RoomRole
                    connected=room.classroom_id in self.rooms,
                    hand_raised=presence.hand_raised,
                    audio_muted=presence.muted["audio"],
                    video_muted=presence.muted["video"],
                )
            )
        recording: protocol.Recording = (
            "on" if self.recording else "waiting" if self.class_started_at is None else "off"
        )
        return protocol.LessonState(
            state=self.state,
            stage_classroom_id=self.stage,
            rooms=rooms,
            recording=recording,
            planned_start=self.roster.planned_start.isoformat(),
        )

    def tracks_message(self, session: Participant) -> protocol.Tracks:
        tracks = []
        for publication in self.allowed_for(session):
            codec = publication.codec
            presence = self.presence.get(publication.classroom_id, RoomPresenceState())
            tracks.append(
                protocol.TrackInfo(
                    track_id=publication.track_id,
                    classroom_id=publication.classroom_id,
                    kind=publication.kind,  # type: ignore[arg-type]  # aiortc's str, "audio" | "video"
                    codec=codec.mimeType if codec else "",
                    muted=presence.muted.get(publication.kind, False),
                )
            )
        return protocol.Tracks(tracks=tracks)

    # ------------------------------------------------------------- report

    def snapshot(self) -> LiveLessonState:
        forwarding = ForwardingCounters(transcodes=self.transcodes)
        tracks = []
        for publication in self.publications.values():
            counters = publication.counters
            forwarding.packets_in += counters.packets
            forwarding.keyframe_requests_sent += counters.keyframe_requests
            lost, _, _ = publication.loss()
            tracks.append(
                TrackState(
                    track_id=publication.track_id,
                    classroom_id=publication.classroom_id,
                    kind=publication.kind,
                    codec=publication.codec.mimeType if publication.codec else "",
                    bitrate_kbps=round(publication.update_bitrate(), 1),
                    packets=counters.packets,
                    packets_lost=lost,
                    keyframes=counters.keyframes,
                    keyframe_requests=counters.keyframe_requests,
                    # Rooms and watchers; the recorder and the broadcaster are sinks too,
                    # but not people receiving the track.
                    subscribers=sum(isinstance(s, SubscriberLeg) for s in publication.sinks),
                    muted=publication.muted,
                )
            )
        rooms = []
        for room in self.roster.rooms:
            presence = self.presence[room.classroom_id]
            session = self.rooms.get(room.classroom_id)
            state = RoomState(
                classroom_id=room.classroom_id,
                name=room.name,
                role=room.role,
                connected=session is not None,
                connected_since=presence.connected_since.isoformat()
                if presence.connected_since and session is not None
                else None,
                reconnects=presence.reconnects,
                hand_raised=presence.hand_raised,
                on_stage=self.stage == room.classroom_id,
            )
            if session is not None:
                state.upstream, state.downstream = session.link_quality()
                state.subscriptions = session.subscribed_track_ids()
            rooms.append(state)
        for session in self.sessions():
            for leg in session.legs():
                c = leg.counters
                forwarding.packets_out += c.packets
                forwarding.bytes_out += c.bytes
                forwarding.nacks_received += c.nacks_received
                forwarding.retransmissions += c.retransmissions
                forwarding.plis_received += c.plis_received
        return LiveLessonState(
            lesson_id=self.lesson_id,
            state=self.state,
            stage_classroom_id=self.stage,
            rooms=rooms,
            watchers=len(self.watchers),
            tracks=tracks,
            forwarding=forwarding,
            class_started_at=self.class_started_at.isoformat() if self.class_started_at
            else None,
            planned_start=self.roster.planned_start.isoformat(),
        )


def link_quality(publications: list[Publication]) -> LinkQuality:
    """Upstream quality of a room: what we measure on the tracks it publishes."""
    quality = LinkQuality()
    for publication in publications:
        lost, fraction, jitter = publication.loss()
        quality.bitrate_kbps += publication.counters.bitrate_kbps
        quality.packets += publication.counters.packets
        quality.packets_lost += lost
        quality.fraction_lost = max(quality.fraction_lost, fraction)
        quality.jitter_ms = max(quality.jitter_ms, jitter)
    quality.bitrate_kbps = round(quality.bitrate_kbps, 1)
    return quality


def now_utc() -> datetime:
    return datetime.now(UTC)
