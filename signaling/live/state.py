"""What the router reports about a live lesson: the shapes of GET /lessons/{id}/live.

Defined once as msgspec structs so the API response, the OpenAPI document and the admin
pages agree.
"""

from __future__ import annotations

import msgspec


class LinkQuality(msgspec.Struct, kw_only=True):
    """One direction of one room's link, from RTCP receiver reports and our own counters."""

    bitrate_kbps: float = 0.0
    packets: int = 0
    packets_lost: int = 0
    fraction_lost: float = 0.0  # 0..1, last report interval
    jitter_ms: float = 0.0
    rtt_ms: float | None = None


class TrackState(msgspec.Struct, kw_only=True):
    track_id: str
    classroom_id: int
    kind: str  # "audio" | "video"
    codec: str  # e.g. "video/H264"
    bitrate_kbps: float = 0.0
    packets: int = 0
    packets_lost: int = 0
    keyframes: int = 0
    keyframe_requests: int = 0
    subscribers: int = 0
    muted: bool = False


class RoomState(msgspec.Struct, kw_only=True):
    classroom_id: int
    name: str
    role: str  # "main" | "receiving" | "watch"
    connected: bool
    connected_since: str | None = None  # ISO 8601 UTC
    reconnects: int = 0
    hand_raised: bool = False
    on_stage: bool = False
    upstream: LinkQuality = msgspec.field(default_factory=LinkQuality)  # room -> server
    downstream: LinkQuality = msgspec.field(default_factory=LinkQuality)  # server -> room
    subscriptions: list[str] = msgspec.field(default_factory=list)


class ForwardingCounters(msgspec.Struct, kw_only=True):
    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    nacks_received: int = 0
    retransmissions: int = 0
    plis_received: int = 0
    keyframe_requests_sent: int = 0
    # Must stay 0: the live path forwards encoded media (docs/ARCHITECTURE.md, decision 1).
    transcodes: int = 0


class BroadcastState(msgspec.Struct, kw_only=True):
    """A lesson's live broadcast, for the live-state API and the broadcast page."""

    lesson_id: int
    # waiting: no segment yet; live; stalled: no new segment for 3 targets (teacher's
    # camera muted or link down); unsupported_codec: the teacher publishes VP8; ended.
    state: str
    playlist_url: str
    public: bool  # anonymous viewers may watch (famous_school); else any signed-in user
    source_classroom_id: int
    video_codec: str | None = None
    audio_transcoded: bool = False  # the teacher's Opus → AAC (the one transcode)
    segment_target_s: float = 2.0
    segments: int = 0  # written since the broadcast started
    media_sequence: int = 0  # first segment in the live playlist
    last_segment_age_s: float | None = None
    # server clock: last frame of the newest segment → playlist listing it
    listing_delay_s: float | None = None
    keyframe_requests: int = 0
    discontinuities: int = 0
    reason: str | None = None


class RecordingState(msgspec.Struct, kw_only=True):
    """The lesson's recording while it runs (recorder/capture/recorder.py fills it in)."""

    state: str  # "recording", or "waiting" for the bell (starts_at)
    starts_at: str | None = None
    tracks: int = 0  # packet logs opened (a room's track, per connection)
    frames: int = 0
    bytes: int = 0
    errors: int = 0
    dropped_frames: int = 0
    last_sync_ms_max: float = 0.0  # slowest fsync so far: the disk's health


class LiveLessonState(msgspec.Struct, kw_only=True):
    lesson_id: int
    state: str
    stage_classroom_id: int | None = None
    rooms: list[RoomState] = msgspec.field(default_factory=list)
    watchers: int = 0
    tracks: list[TrackState] = msgspec.field(default_factory=list)
    forwarding: ForwardingCounters = msgspec.field(default_factory=ForwardingCounters)
    # Set when the lesson is broadcast as live HLS (recorder/broadcast/live.py fills it in).
    broadcast: BroadcastState | None = None
    # Set while the lesson is being recorded, or waits for the bell to be.
    recording: RecordingState | None = None
    # When the class began (the bell, or a teacher by hand); None during the lead-in.
    class_started_at: str | None = None
    planned_start: str | None = None
