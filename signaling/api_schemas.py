"""Request and response bodies of the REST API, defined once as msgspec structs.

The same structs validate requests, encode responses and generate the OpenAPI document
(signaling/rest/openapi.py), so the three cannot drift apart. Request structs refuse unknown
fields: a typo in a field name is an error, not a silently ignored option.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from signaling.errors import ErrorCode

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Short = Annotated[str, Meta(min_length=1, max_length=100)]
Id = Annotated[int, Meta(ge=1)]
# Aware datetimes only: a lesson time without a zone is ambiguous by eight hours.
AwareDatetime = Annotated[datetime, Meta(tz=True)]

SchoolKindName = Literal["city", "rural"]
LessonKindName = Literal["dedicated", "famous_teacher", "famous_school"]
LessonStateName = Literal["scheduled", "open", "live", "ended", "cancelled"]
UserRoleName = Literal["admin", "school_admin", "teacher", "reviewer", "device"]
JoinRoleName = Literal["main", "receiving", "watch"]


class Request(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies."""


class Response(msgspec.Struct, kw_only=True):
    """Base of response bodies."""


# ------------------------------------------------------------------ errors


class ErrorDetail(Response):
    """`code` says what kind of refusal (a client may branch on it); `reason` names the rule
    that refused, stable across releases (pages translate it, with `params` filling in the
    names, dates and numbers of the sentence); `message` is the same in English for logs."""

    code: ErrorCode
    message: str
    field: str | None = None
    reason: str = ""
    params: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


class ErrorBody(Response):
    """Every error response has this shape."""

    error: ErrorDetail


# -------------------------------------------------------------------- auth


class LoginRequest(Request):
    username: Short
    password: Annotated[str, Meta(min_length=1, max_length=1000)]


class UserOut(Response):
    id: int
    username: str
    display_name: str
    role: UserRoleName
    school_id: int | None
    # A device account's classroom; null for other roles (and unbound older devices).
    classroom_id: int | None = None
    disabled: bool = False
    # Set while the account is locked after repeated wrong passwords.
    locked_until: datetime | None = None


class LoginResponse(Response):
    token: str
    expires_at: datetime
    user: UserOut


class SessionOut(Response):
    """A browser session: the page keeps `csrf_token` (in memory) for X-CSRF-Token."""

    user: UserOut
    # None when the caller signed in with a bearer token (which needs no CSRF token).
    csrf_token: str | None
    # When the session ends if idle (12 h after the last request, at most 7 days).
    expires_at: datetime | None


class LoggedOut(Response):
    ended: bool  # false: there was no live session to end (the cookie is cleared anyway)


Password = Annotated[str, Meta(min_length=1, max_length=1000)]


class PasswordChangeIn(Request):
    current: Password
    new: Password  # at least 10 characters, not the username


class PasswordChanged(Response):
    sessions_ended: int  # the caller's other browser sessions
    tokens_revoked: int  # API tokens but the one this request used


Username = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[\w.@-]+$")]


class UserIn(Request):
    username: Username
    password: Password
    role: UserRoleName
    display_name: Annotated[str, Meta(max_length=200)] = ""
    # Required for school_admin and teacher accounts; a device's is its classroom's.
    school_id: Id | None = None
    # Required for device accounts, and only for them: the classroom the box is.
    classroom_id: Id | None = None


class UserPatch(Request):
    """Only the fields sent change. `password` sets a new one and ends the user's sessions
    and tokens, as `disabled: true` does."""

    display_name: Annotated[str, Meta(max_length=200)] | None = None
    role: UserRoleName | None = None
    school_id: Id | None = None
    # Binds a device account to its classroom (and moves it to the classroom's school).
    classroom_id: Id | None = None
    disabled: bool | None = None
    password: Password | None = None


class UserList(Response):
    items: list[UserOut]


class UserQuery(Request):
    school_id: Id | None = None
    role: UserRoleName | None = None


# ------------------------------------------------------------- registers


class SchoolIn(Request):
    name: Name
    kind: SchoolKindName
    region: Annotated[str, Meta(max_length=200)] = ""
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "Asia/Shanghai"


class SchoolOut(Response):
    id: int
    name: str
    kind: SchoolKindName
    region: str
    timezone: str
    active: bool = True  # false: archived (kept for history, offered for nothing new)


class SchoolPatch(Request):
    """Only the fields sent change; `active: false` archives, `true` restores."""

    name: Name | UnsetType = UNSET
    kind: SchoolKindName | UnsetType = UNSET
    region: Annotated[str, Meta(max_length=200)] | UnsetType = UNSET
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class Deleted(Response):
    """A register row that nothing referred to, deleted."""

    id: int


class SchoolList(Response):
    items: list[SchoolOut]


class ClassroomIn(Request):
    school_id: Id
    name: Name


class ClassroomOut(Response):
    id: int
    school_id: int
    school_name: str
    name: str
    active: bool = True


class ClassroomPatch(Request):
    """Only the fields sent change. Moving to another school: admins, and only a classroom
    no lesson or pairing uses."""

    name: Name | UnsetType = UNSET
    school_id: Id | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class ClassroomList(Response):
    items: list[ClassroomOut]


class ClassroomQuery(Request):
    school_id: Id | None = None


class PairingIn(Request):
    name: Name
    main_classroom_id: Id
    # In screen order; 1拖4 means at most four.
    receiving_classroom_ids: Annotated[list[Id], Meta(min_length=1, max_length=4)]


class PairingOut(Response):
    id: int
    name: str
    main_classroom_id: int
    receiving_classroom_ids: list[int]
    active: bool = True


class PairingPatched(PairingOut):
    """An edited pairing, and the lessons to come that followed it to its new rooms."""

    lessons_rerouted: list[int] = []


# In screen order; 1拖4 means at most four.
ReceivingIds = Annotated[list[Id], Meta(min_length=1, max_length=4)]


class PairingPatch(Request):
    """Only the fields sent change; new rooms also go to its scheduled lessons to come
    whose rooms were not changed by hand (refused whole if one would be double-booked)."""

    name: Name | UnsetType = UNSET
    main_classroom_id: Id | UnsetType = UNSET
    receiving_classroom_ids: ReceivingIds | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class PairingList(Response):
    items: list[PairingOut]


# ----------------------------------------------------------------- lessons


class LessonIn(Request):
    pairing_id: Id
    kind: LessonKindName
    subject: Short
    grade: Annotated[str, Meta(min_length=1, max_length=50)]
    teacher_name: Short
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    planned_start: AwareDatetime
    planned_end: AwareDatetime
    # Omitted: on for famous_school lessons, off for the others.
    broadcast: bool | None = None
    # The teacher's account (a teacher of the main classroom's school): then only they,
    # besides admins, may run the lesson.
    teacher_user_id: Id | None = None


class LessonPatch(Request):
    """Only the fields sent change, while the lesson is scheduled or open. The main room
    stays the pairing's; `receiving_classroom_ids` replaces the receiving rooms (screen
    order); `teacher_user_id: null` unbinds the teacher account."""

    kind: LessonKindName | UnsetType = UNSET
    subject: Short | UnsetType = UNSET
    grade: Annotated[str, Meta(min_length=1, max_length=50)] | UnsetType = UNSET
    teacher_name: Short | UnsetType = UNSET
    title: Annotated[str, Meta(min_length=1, max_length=300)] | UnsetType = UNSET
    planned_start: AwareDatetime | UnsetType = UNSET
    planned_end: AwareDatetime | UnsetType = UNSET
    broadcast: bool | UnsetType = UNSET
    teacher_user_id: Id | UnsetType | None = UNSET
    receiving_classroom_ids: ReceivingIds | UnsetType = UNSET


class LessonRoomOut(Response):
    classroom_id: int
    name: str
    school_name: str
    role: Literal["main", "receiving"]
    position: int


class LessonOut(Response):
    id: int
    pairing_id: int
    kind: LessonKindName
    subject: str
    grade: str
    teacher_name: str
    title: str
    planned_start: datetime
    planned_end: datetime
    broadcast: bool
    state: LessonStateName
    opened_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    rooms: list[LessonRoomOut]
    teacher_user_id: int | None = None


class LessonPage(Response):
    items: list[LessonOut]
    total: int
    limit: int
    offset: int


class LessonQuery(Request):
    state: LessonStateName | None = None
    pairing_id: Id | None = None
    # Lessons with this classroom in them (main or receiving): one room's week.
    classroom_id: Id | None = None
    # Lessons whose planned time overlaps [from, to).
    start: AwareDatetime | None = msgspec.field(default=None, name="from")
    end: AwareDatetime | None = msgspec.field(default=None, name="to")
    limit: Annotated[int, Meta(ge=1, le=200)] = 50
    offset: Annotated[int, Meta(ge=0)] = 0


class TransitionIn(Request):
    """Optional body of /end and /cancel."""

    reason: Annotated[str, Meta(min_length=1, max_length=100)] | None = None


class JoinTokenIn(Request):
    role: JoinRoleName
    # Required for main and receiving; absent for watch.
    classroom_id: Id | None = None
    # Seconds; long enough for a box to get its token before the lesson.
    ttl_s: Annotated[int, Meta(ge=30, le=12 * 3600)] = 900


class JoinTokenOut(Response):
    token: str
    expires_at: datetime
    role: JoinRoleName
    classroom_id: int | None
    ws_url: str


# ----------------------------------------------------------------- library

RecordingStateName = Literal["processing", "ready", "failed"]
FileRoleName = Literal[
    "room_video",
    "room_audio",
    "composite",
    "hls_playlist",
    "hls_segment",
    "poster",
    "thumbnail_strip",
    "chapters",
]
LibrarySort = Literal["date", "-date", "duration", "-duration", "title", "-title"]


class SchoolRef(Response):
    id: int
    name: str


class RecordingOut(Response):
    """A library entry (云录播资源): the lesson's catalogue metadata."""

    id: int
    lesson_id: int
    title: str
    kind: LessonKindName
    subject: str
    grade: str
    teacher_name: str
    main_school_id: int | None
    main_school: str
    receiving_schools: list[SchoolRef]
    started_at: datetime
    duration_s: float
    term: str
    state: RecordingStateName
    published: bool
    # The poster image, playable through /library/{id}/files/{file_id}.
    poster_file_id: int | None


class LibraryPage(Response):
    items: list[RecordingOut]
    total: int
    limit: int
    offset: int


class LibraryQuery(Request):
    # Free text; every space-separated term must occur (substring, so 数学 finds 初二数学).
    q: Annotated[str, Meta(max_length=200)] | None = None
    subject: Annotated[str, Meta(max_length=100)] | None = None
    grade: Annotated[str, Meta(max_length=50)] | None = None
    kind: LessonKindName | None = None
    teacher: Annotated[str, Meta(max_length=100)] | None = None
    # A school that held the lesson, as main or receiving school.
    school_id: Id | None = None
    # Entries whose lesson started in [from, to).
    start: AwareDatetime | None = msgspec.field(default=None, name="from")
    end: AwareDatetime | None = msgspec.field(default=None, name="to")
    term: Annotated[str, Meta(max_length=16)] | None = None
    published: bool | None = None
    state: RecordingStateName | None = None
    sort: LibrarySort = "-date"
    limit: Annotated[int, Meta(ge=1, le=200)] = 50
    offset: Annotated[int, Meta(ge=0)] = 0


class LibraryFacets(Response):
    """Filter choices: the values found among the entries the caller may see."""

    subjects: list[str]
    grades: list[str]
    teachers: list[str]
    terms: list[str]  # newest first
    schools: list[SchoolRef]  # main and receiving schools, by name


class RecordingFileOut(Response):
    id: int
    role: FileRoleName
    classroom_id: int | None
    mime: str
    size: int
    sha256: str
    duration_s: float | None
    url: str  # GET it to play (Range supported) or, on object storage, to be redirected
    # Where the file's t=0 sits on the lesson clock; None when unknown (e.g. images).
    offset_s: float | None = None


class CommentIn(Request):
    t_s: Annotated[float, Meta(ge=0)]  # seconds from the start of the recording
    text: Annotated[str, Meta(min_length=1, max_length=2000)]


class CommentOut(Response):
    id: int
    user_id: int | None
    author_name: str
    t_s: float
    text: str
    created_at: datetime


class CommentList(Response):
    items: list[CommentOut]


class CriterionOut(Response):
    key: str
    name: str
    weight: float
    max_score: float


class RubricOut(Response):
    """评课量表: weights sum to 100; each criterion is scored 0..max_score."""

    id: int
    name: str
    criteria: list[CriterionOut]


class CriterionSummary(Response):
    key: str
    name: str
    weight: float
    max_score: float
    average: float | None


class RatingSummary(Response):
    count: int
    average_total: float | None  # weighted, 0..100
    criteria: list[CriterionSummary]


class RatingIn(Request):
    # A score for every criterion key of the rubric, 0..its max_score.
    scores: Annotated[dict[str, Annotated[float, Meta(ge=0)]], Meta(max_length=50)]
    comment: Annotated[str, Meta(max_length=2000)] = ""


class RatingOut(Response):
    id: int
    user_id: int
    author_name: str
    rubric_id: int
    scores: dict[str, float]
    total: float
    comment: str
    updated_at: datetime


class RecordingRoom(Response):
    """A room of the recorded lesson, to label its per-room files."""

    classroom_id: int
    name: str
    school_name: str
    role: Literal["main", "receiving"]
    position: int


class RecordingDetail(RecordingOut):
    files: list[RecordingFileOut]
    rooms: list[RecordingRoom]
    # Comments and ratings are shown to reviewers, admins and the lesson's schools' staff.
    reviews_visible: bool
    comments: list[CommentOut]
    ratings: RatingSummary | None
    my_rating: RatingOut | None
    # What the caller may do here, so a page offers only what the server would accept.
    can_comment: bool = False
    can_rate: bool = False


class ExportQuery(Request):
    format: Literal["csv", "json"] = "csv"


class FileQuery(Request):
    # Ask for Content-Disposition: attachment (a download rather than playback).
    download: bool = False


class RecordingDeleted(Response):
    id: int
    objects_removed: int


class ApiError(Exception):
    """Raised anywhere below a REST handler; becomes an ErrorBody with this HTTP status."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        params: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.reason = reason or code.value
        self.params = dict(params or {})

    def body(self) -> ErrorBody:
        return ErrorBody(
            error=ErrorDetail(
                code=self.code,
                message=self.message,
                field=self.field,
                reason=self.reason,
                params=self.params,
            )
        )
