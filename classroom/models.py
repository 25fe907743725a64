"""The tables of the domain, and the small vocabulary (enums, errors) shared by its services.

The schema itself is owned by the Alembic revisions in classroom/migrations; these mappings
must describe the same tables (tests/test_db_schema.py compares them).
Times are stored in UTC and always come back timezone-aware, on SQLite as on PostgreSQL,
so no caller ever compares a naive datetime with an aware one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from classroom import refusals


class SchoolKind(StrEnum):
    CITY = "city"
    RURAL = "rural"


class RoomRole(StrEnum):
    MAIN = "main"
    RECEIVING = "receiving"


class LessonKind(StrEnum):
    DEDICATED = "dedicated"  # 专递课堂
    FAMOUS_TEACHER = "famous_teacher"  # 名师课堂
    FAMOUS_SCHOOL = "famous_school"  # 名校网络课堂


class LessonState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class UserRole(StrEnum):
    ADMIN = "admin"
    SCHOOL_ADMIN = "school_admin"
    TEACHER = "teacher"
    REVIEWER = "reviewer"
    DEVICE = "device"  # a classroom box (agent): its classroom's own account


# ---------------------------------------------------------------- domain errors
# Services raise these; the REST layer maps them to HTTP statuses and error codes, so the
# domain never needs to know about HTTP.


class DomainError(Exception):
    """`reason` is the refusal's stable name (docs/api.md lists them; pages translate it) and
    `params` the values its sentence names; `message` says the same in English for logs."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        reason: str | None = None,
        params: Mapping[str, str | int | float | bool | None] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason
        self.params = dict(params or {})

    @classmethod
    def because(cls, reason: str, *, field: str | None = None, **params: Any) -> Self:
        """The refusal `reason` of classroom/refusals.py, its message made from `params`:
        `raise InvalidInput.because("term_too_long", field="end_date", days=366)`."""
        message, sent = refusals.render(reason, params)
        return cls(message, field=field, reason=reason, params=sent)


class NotFound(DomainError):
    """A referenced row does not exist."""


class Conflict(DomainError):
    """The change would break a uniqueness or scheduling rule (e.g. a double booking)."""


class InvalidInput(DomainError):
    """Well-formed input that the domain refuses (end before start, too many rooms...)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware datetime, stored as UTC.

    SQLite has no timezone type: we store naive UTC text there and attach UTC on the way
    out. Naive input is refused rather than guessed, because a wrong guess shifts a lesson
    by eight hours in Asia/Shanghai.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum_check(column: str, enum: type[StrEnum]) -> sa.CheckConstraint:
    values = ", ".join(f"'{m.value}'" for m in enum)
    return sa.CheckConstraint(f"{column} IN ({values})", name=f"{column}_values")


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
    }
    # For the type checker only (DeclarativeBase says FromClause): every model here is
    # mapped to one Table, which Core inserts and the schema's foreign keys work on.
    __table__: ClassVar[sa.Table]


class School(Base):
    __tablename__ = "schools"
    __table_args__ = (_enum_check("kind", SchoolKind),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(16))
    region: Mapped[str] = mapped_column(sa.String(200), default="")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Archived (revision 0007): kept for the history that names it, offered for nothing new.
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())


class Classroom(Base):
    __tablename__ = "classrooms"
    __table_args__ = (sa.UniqueConstraint("school_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    school: Mapped[School] = relationship(lazy="joined", innerjoin=True)


class Pairing(Base):
    """结对: one main (city) classroom and the 1–4 receiving classrooms it teaches."""

    __tablename__ = "pairings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    main_classroom_id: Mapped[int] = mapped_column(sa.ForeignKey("classrooms.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    active: Mapped[bool] = mapped_column(default=True, server_default=sa.true())

    members: Mapped[list[PairingMember]] = relationship(
        lazy="selectin", order_by="PairingMember.position", cascade="all, delete-orphan"
    )


class PairingMember(Base):
    __tablename__ = "pairing_members"
    __table_args__ = (sa.UniqueConstraint("pairing_id", "position"),)

    pairing_id: Mapped[int] = mapped_column(
        sa.ForeignKey("pairings.id", ondelete="CASCADE"), primary_key=True
    )
    classroom_id: Mapped[int] = mapped_column(sa.ForeignKey("classrooms.id"), primary_key=True)
    position: Mapped[int]


class Lesson(Base):
    __tablename__ = "lessons"
    __table_args__ = (
        _enum_check("kind", LessonKind),
        _enum_check("state", LessonState),
        sa.CheckConstraint("planned_end > planned_start", name="planned_order"),
        sa.Index(None, "planned_start"),
        sa.Index(None, "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pairing_id: Mapped[int] = mapped_column(sa.ForeignKey("pairings.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    subject: Mapped[str] = mapped_column(sa.String(100))
    grade: Mapped[str] = mapped_column(sa.String(50))
    teacher_name: Mapped[str] = mapped_column(sa.String(100))
    title: Mapped[str] = mapped_column(sa.String(300))
    planned_start: Mapped[datetime]
    planned_end: Mapped[datetime]
    broadcast: Mapped[bool]
    state: Mapped[str] = mapped_column(sa.String(16), default=LessonState.SCHEDULED.value)
    opened_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The teacher's account, when known (revision 0003): then only that teacher (besides
    # school admins) may run the lesson. No foreign key: a lesson's history outlives the
    # account, as the audit trail does.
    teacher_user_id: Mapped[int | None] = mapped_column(index=True)

    rooms: Mapped[list[LessonRoom]] = relationship(
        lazy="selectin",
        order_by="LessonRoom.position",
        cascade="all, delete-orphan",
    )


class LessonRoom(Base):
    """The lesson's rooms, copied from its pairing when it was created.

    A snapshot, so that editing a pairing later never rewrites the history of lessons held;
    only its scheduled lessons to come follow it (classroom/pairing_rooms.py).
    """

    __tablename__ = "lesson_rooms"
    __table_args__ = (_enum_check("role", RoomRole),)

    lesson_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True
    )
    classroom_id: Mapped[int] = mapped_column(
        sa.ForeignKey("classrooms.id"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(16))
    position: Mapped[int]  # 0 for the main room, then 1..4 as in the pairing

    classroom: Mapped[Classroom] = relationship(lazy="joined", innerjoin=True)


class RoomSession(Base):
    """One connection of one classroom to one lesson: attendance and its end reason.

    Written as it happens by classroom/attendance.py: the row exists from the join, and
    `left_at` is filled when the room leaves (revision 0006 adds `reconnects`, `cause`).
    """

    __tablename__ = "room_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    lesson_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lessons.id", ondelete="CASCADE"), index=True
    )
    classroom_id: Mapped[int] = mapped_column(sa.ForeignKey("classrooms.id"))
    role: Mapped[str] = mapped_column(sa.String(16))
    joined_at: Mapped[datetime]
    left_at: Mapped[datetime | None]
    # left | dropped | ended | kicked | replaced | server_restart (classroom/attendance.py)
    end_reason: Mapped[str | None] = mapped_column(sa.String(100))
    # Earlier connections of this room to this lesson: 0 for the first, 1 after one rejoin.
    reconnects: Mapped[int] = mapped_column(default=0, server_default="0")
    # The connection's own close reason (timeout, socket_error, flood...), for diagnosis.
    cause: Mapped[str | None] = mapped_column(sa.String(100))


class User(Base):
    __tablename__ = "users"
    __table_args__ = (_enum_check("role", UserRole),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(100), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[str] = mapped_column(sa.String(16))
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"))
    # A device account is one classroom's own credentials (revision 0008): it reads, lists
    # and joins that classroom's lessons only, and its school is the classroom's. Devices
    # made before 0008 have none and are refused until an admin binds them.
    classroom_id: Mapped[int | None] = mapped_column(sa.ForeignKey("classrooms.id"))
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    disabled: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token for the REST API; only its SHA-256 is kept, so a leaked DB leaks none."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    # None: valid until revoked (CLI-issued tokens for scripts and devices).
    expires_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(default=False)

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class WebSession(Base):
    """A browser's signed-in session (cookie `tongbu_session`), owned by classroom/sessions.py.

    Only the SHA-256 of the cookie's value is kept, as for API tokens. `csrf_token` is the
    synchronizer token a page must echo in X-CSRF-Token on every state-changing request.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]  # absolute end, whatever the activity
    remote: Mapped[str | None] = mapped_column(sa.String(100))
    user_agent: Mapped[str] = mapped_column(sa.String(300), default="")

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (sa.Index(None, "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # No foreign key: the trail must outlive the users it names.
    actor_id: Mapped[int | None]
    actor_name: Mapped[str] = mapped_column(sa.String(100), default="")
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    target: Mapped[str] = mapped_column(sa.String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remote: Mapped[str | None] = mapped_column(sa.String(100))


# ------------------------------------------------------- the resource library (云录播资源库)
# Owned by recorder/library/catalogue.py; declared here so that Alembic and the schema test see one
# metadata. Revision 0002 creates these tables.


class RecordingState(StrEnum):
    PROCESSING = "processing"  # the lesson ended; finalisation has not registered files yet
    READY = "ready"
    FAILED = "failed"


class RecordingFileRole(StrEnum):
    ROOM_VIDEO = "room_video"
    ROOM_AUDIO = "room_audio"
    COMPOSITE = "composite"
    HLS_PLAYLIST = "hls_playlist"
    HLS_SEGMENT = "hls_segment"
    POSTER = "poster"
    THUMBNAIL_STRIP = "thumbnail_strip"
    CHAPTERS = "chapters"


class Recording(Base):
    """One finished lesson in the library: its catalogue entry and what the search reads."""

    __tablename__ = "recordings"
    __table_args__ = (
        _enum_check("kind", LessonKind),
        _enum_check("state", RecordingState),
        sa.Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lesson_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lessons.id", ondelete="CASCADE"), unique=True
    )
    title: Mapped[str] = mapped_column(sa.String(300))
    kind: Mapped[str] = mapped_column(sa.String(32))
    subject: Mapped[str] = mapped_column(sa.String(100), index=True)
    grade: Mapped[str] = mapped_column(sa.String(50), index=True)
    teacher_name: Mapped[str] = mapped_column(sa.String(100))
    main_school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"))
    main_school: Mapped[str] = mapped_column(sa.String(200), default="")
    # [{"id": school id, "name": ...}] in screen order: a snapshot, like lesson_rooms.
    receiving_schools: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    started_at: Mapped[datetime]
    duration_s: Mapped[float] = mapped_column(sa.Float, default=0.0)
    term: Mapped[str] = mapped_column(sa.String(16), index=True)  # "2026秋", "2027春"
    state: Mapped[str] = mapped_column(sa.String(16), default=RecordingState.PROCESSING.value)
    published: Mapped[bool] = mapped_column(default=False)
    # Normalised (NFKC, lower case) text of every searchable field; substring-matched.
    search_text: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    files: Mapped[list[RecordingFile]] = relationship(
        lazy="selectin",
        order_by="RecordingFile.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class RecordingFile(Base):
    __tablename__ = "recording_files"
    __table_args__ = (_enum_check("role", RecordingFileRole),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        sa.ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(sa.String(32))
    # The room a per-room file shows; None for the composite and lesson-wide files.
    classroom_id: Mapped[int | None]
    key: Mapped[str] = mapped_column(sa.String(500), unique=True)  # the storage key
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    mime: Mapped[str] = mapped_column(sa.String(200))  # may carry codecs="..."
    duration_s: Mapped[float | None] = mapped_column(sa.Float)
    # Where the file's t=0 sits on the lesson clock (a room that joined late starts later),
    # so a player switching between the composite and a room keeps the same moment.
    offset_s: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecordingComment(Base):
    """A reviewer's note at a moment of the lesson (t_s seconds from its start)."""

    __tablename__ = "recording_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        sa.ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    # No foreign key, as in the audit trail: a review outlives its author's account.
    user_id: Mapped[int | None]
    author_name: Mapped[str] = mapped_column(sa.String(200))
    t_s: Mapped[float] = mapped_column(sa.Float)
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rubric(Base):
    """评课量表: criteria [{"key", "name", "weight", "max_score"}]; weights sum to 100."""

    __tablename__ = "rubrics"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    criteria: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecordingRating(Base):
    """One reviewer's scores on a rubric for one recording; a second rating replaces it."""

    __tablename__ = "recording_ratings"
    __table_args__ = (sa.UniqueConstraint("recording_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recording_id: Mapped[int] = mapped_column(
        sa.ForeignKey("recordings.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int]
    author_name: Mapped[str] = mapped_column(sa.String(200))
    rubric_id: Mapped[int] = mapped_column(sa.ForeignKey("rubrics.id"))
    scores: Mapped[dict[str, Any]]  # criterion key -> score (0..max_score)
    total: Mapped[float] = mapped_column(sa.Float)  # weighted, 0..100
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

