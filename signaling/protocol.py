"""Signaling protocol v1: every message that crosses the WebSocket, defined once.

Messages are JSON objects with a `type` tag and a protocol version `v`. The structs below
are the schema: the server validates every inbound frame against them (size first, then
JSON, then the tagged union), and docs/protocol.md is written from them. Client-to-server
and server-to-client types are separate unions, so a client cannot send a server message.

The server is always the SDP offerer (docs/ARCHITECTURE.md, decision 1: it sets the codec of every
forwarded leg); clients only answer. That also rules out offer glare.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

from signaling.errors import ErrorCode

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024

Id = Annotated[int, Meta(ge=1, le=2**53)]
ShortText = Annotated[str, Meta(max_length=200)]
RequestId = Annotated[str, Meta(max_length=64)]
Sdp = Annotated[str, Meta(min_length=10, max_length=60_000)]
Kind = Literal["audio", "video"]
Role = Literal["main", "receiving", "watch"]
Recording = Literal["waiting", "on", "off"]


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    v: Annotated[int, Meta(ge=1, le=1)] = PROTOCOL_VERSION
    # Chosen by the sender; echoed as `ref` in an error about this message.
    id: RequestId | None = None


# --------------------------------------------------------------------------- shared shapes


class ClientInfo(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: ShortText = ""
    version: ShortText = ""
    kind: Literal["agent", "browser", "other"] = "other"


class Slot(msgspec.Struct, kw_only=True):
    """What one m-line of the current offer carries, by its mid."""

    mid: str
    kind: Kind
    # "publish": the client sends its own camera/microphone here.
    # "subscribe": the server sends `track_id` (from `classroom_id`) here; None when idle.
    direction: Literal["publish", "subscribe"]
    track_id: str | None = None
    classroom_id: int | None = None


class TrackInfo(msgspec.Struct, kw_only=True):
    track_id: str
    classroom_id: int
    kind: Kind
    codec: str
    muted: bool = False


class RoomPresence(msgspec.Struct, kw_only=True):
    classroom_id: int
    name: str
    school_name: str
    role: Literal["main", "receiving"]
    connected: bool
    hand_raised: bool = False
    audio_muted: bool = False
    video_muted: bool = False


class LessonInfo(msgspec.Struct, kw_only=True):
    lesson_id: int
    kind: str
    subject: str
    grade: str
    teacher_name: str
    title: str | None
    state: str
    planned_start: str
    planned_end: str


class YouInfo(msgspec.Struct, kw_only=True):
    classroom_id: int | None
    role: Role
    name: str


# ----------------------------------------------------------------------- client to server


class Join(_Message, tag="join"):
    token: Annotated[str, Meta(min_length=1, max_length=4096)]
    # When given, must be the token's lesson (a page knows its lesson from its URL).
    lesson_id: Id | None = None
    # When given, must be the token's role.
    role: Role | None = None
    client: ClientInfo | None = None


class Answer(_Message, tag="answer"):
    revision: Annotated[int, Meta(ge=1)]
    sdp: Sdp


class Ice(_Message, tag="ice"):
    """A trickled ICE candidate from the client (`candidate` null: end of candidates)."""

    candidate: Annotated[str, Meta(max_length=1024)] | None
    sdp_mid: Annotated[str, Meta(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, Meta(ge=0, le=255)] | None = None


class Subscribe(_Message, tag="subscribe"):
    """Choose which allowed tracks to receive; null returns to the role's default."""

    track_ids: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=64)] | None


class Stage(_Message, tag="stage"):
    """Main room only: put a receiving room on stage, or null to take it off."""

    classroom_id: Id | None


class RaiseHand(_Message, tag="raise_hand"):
    pass


class LowerHand(_Message, tag="lower_hand"):
    """A receiving room lowers its own hand; the main room names the room to answer."""

    classroom_id: Id | None = None


class MuteRequest(_Message, tag="mute_request"):
    """Main room only: ask a receiving room to mute (or unmute) a kind of media.

    The server stops forwarding that track at once, whatever the room does.
    """

    classroom_id: Id
    kind: Kind
    muted: bool


class Leave(_Message, tag="leave"):
    pass


class Ping(_Message, tag="ping"):
    t: float | None = None


ClientMessage = (
    Join | Answer | Ice | Subscribe | Stage | RaiseHand | LowerHand | MuteRequest | Leave | Ping
)

# ----------------------------------------------------------------------- server to client


class Joined(_Message, tag="joined"):
    session_id: str
    lesson: LessonInfo
    you: YouInfo
    # Use this token to join again after a drop; it lasts until after the planned end.
    rejoin_token: str
    rejoin_expires_at: str
    keepalive_interval_s: float
    ice_servers: list[str]


class Offer(_Message, tag="offer"):
    revision: int
    sdp: str
    slots: list[Slot]


class Slots(_Message, tag="slots"):
    """The slot map changed without new SDP (a subscribe slot switched source)."""

    revision: int
    slots: list[Slot]


class Tracks(_Message, tag="tracks"):
    """Every track published in the lesson that this room may receive."""

    tracks: list[TrackInfo]


class LessonState(_Message, tag="lesson_state"):
    state: str
    stage_classroom_id: int | None
    rooms: list[RoomPresence]
    # What every room's pictures and sound are now, so that pages can say so: "waiting"
    # for the bell (rooms connect in the lead-in), "on", or "off" (not recorded).
    recording: Recording = "off"
    planned_start: str | None = None


class MuteNotice(_Message, tag="mute_request"):
    """To a receiving room: the main room asks it to mute or unmute."""

    kind: Kind
    muted: bool
    by_classroom_id: int


class Pong(_Message, tag="pong"):
    t: float | None
    server_time: float


class LessonEnded(_Message, tag="lesson_ended"):
    reason: str


class Error(_Message, tag="error"):
    code: ErrorCode
    message: str
    # The `id` of the message this error is about, when it had one.
    ref: str | None = None
    # True when the server closes the socket after this error.
    fatal: bool = False


ServerMessage = (
    Joined | Offer | Slots | Tracks | LessonState | MuteNotice | Pong | LessonEnded | Error
)

CLIENT_TYPES = frozenset(t.__struct_config__.tag for t in get_args(ClientMessage))

_client_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


class ProtocolError(Exception):
    """A frame that cannot be accepted; carries the code the client will see."""

    def __init__(
        self, code: ErrorCode, message: str, ref: str | None = None, *, fatal: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.fatal = fatal


def decode_client_message(frame: str | bytes) -> ClientMessage:
    """Validate one inbound frame, refusing it with the most specific code that applies."""
    raw = frame.encode() if isinstance(frame, str) else frame
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}"
        )
    try:
        return _client_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _classify(raw, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None


def _classify(raw: bytes, detail: str) -> ProtocolError:
    """Tell 'unknown type' and 'wrong version' apart from other schema errors."""
    try:
        loose = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return ProtocolError(ErrorCode.BAD_JSON, "not valid JSON")
    if not isinstance(loose, dict):
        return ProtocolError(ErrorCode.BAD_MESSAGE, "a message must be a JSON object")
    ref = loose.get("id") if isinstance(loose.get("id"), str) else None
    version = loose.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        return ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported; use {PROTOCOL_VERSION}",
            ref,
        )
    kind = loose.get("type")
    if kind not in CLIENT_TYPES:
        return ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", ref)
    return ProtocolError(ErrorCode.BAD_MESSAGE, detail, ref)


def encode(message: _Message) -> bytes:
    return _encoder.encode(message)


def decode_server_message(frame: str | bytes) -> ServerMessage:
    """For clients written in Python (the classroom agent and the tests)."""
    return msgspec.json.decode(frame, type=ServerMessage)
