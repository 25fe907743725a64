"""Request and response bodies of the REST API, defined once as msgspec structs.

The same structs validate requests, encode responses and generate the OpenAPI document
(signaling/openapi.py), so the three cannot drift apart. Request structs refuse unknown
fields: a typo in a field name is an error, not a silently ignored option.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

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
    code: ErrorCode
    message: str
    field: str | None = None


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


class LoginResponse(Response):
    token: str
    expires_at: datetime
    user: UserOut


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


class LessonPage(Response):
    items: list[LessonOut]
    total: int
    limit: int
    offset: int


class LessonQuery(Request):
    state: LessonStateName | None = None
    pairing_id: Id | None = None
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


class ApiError(Exception):
    """Raised anywhere below a REST handler; becomes an ErrorBody with this HTTP status."""

    def __init__(
        self, status: int, code: ErrorCode, message: str, *, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> ErrorBody:
        return ErrorBody(error=ErrorDetail(code=self.code, message=self.message, field=self.field))
