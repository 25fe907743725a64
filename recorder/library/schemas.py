"""Request and response bodies of the library's REST routes (recorder/library/api.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from signaling.rest.schemas import AwareDatetime, Id, LessonKindName, Request, Response

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
