"""Request and response bodies of the timetable API (signaling/rest/timetable.py).

Same rules as signaling/rest/schemas.py: msgspec structs validate, encode, and describe the
endpoints in the OpenAPI document. Local times of day are "HH:MM" strings in the term's
zone; dates are ISO "YYYY-MM-DD"; instants are RFC 3339 with their offset.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from signaling.rest.schemas import Id, LessonKindName, LessonStateName, Request, Response, Short

LocalTime = Annotated[str, Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["09:55"])]
Weekday = Annotated[int, Meta(ge=1, le=7, description="ISO weekday: 1 = Monday .. 7 = Sunday")]
PeriodNumber = Annotated[int, Meta(ge=1, le=20)]
Label = Annotated[str, Meta(max_length=100)]
ParityName = Literal["all", "odd", "even"]
FeedKindName = Literal["classroom", "teacher"]


# ------------------------------------------------------------------ terms


class HolidayIn(Request, kw_only=True):
    start_date: date
    end_date: date  # inclusive
    name: Label = ""


class MakeupDayIn(Request, kw_only=True):
    """调休: `date` runs the timetable of `follows_weekday`."""

    date: date
    follows_weekday: Weekday
    name: Label = ""


class PeriodIn(Request, kw_only=True):
    """节次: period `number` from `starts_at` to `ends_at`, local time."""

    number: PeriodNumber
    starts_at: LocalTime
    ends_at: LocalTime


class TermIn(Request, kw_only=True):
    school_year: Annotated[str, Meta(min_length=1, max_length=20, examples=["2026-2027"])]
    name: Annotated[str, Meta(min_length=1, max_length=100, examples=["2026秋"])]
    start_date: date
    end_date: date
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "Asia/Shanghai"
    region: Annotated[str, Meta(max_length=200)] = ""
    holidays: Annotated[list[HolidayIn], Meta(max_length=100)] = msgspec.field(default_factory=list)
    makeup_days: Annotated[list[MakeupDayIn], Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    periods: Annotated[list[PeriodIn], Meta(max_length=20)] = msgspec.field(default_factory=list)


class HolidayOut(Response, kw_only=True):
    start_date: date
    end_date: date
    name: str


class MakeupDayOut(Response, kw_only=True):
    date: date
    follows_weekday: int
    name: str


class PeriodOut(Response, kw_only=True):
    number: int
    starts_at: str
    ends_at: str


class TermOut(Response, kw_only=True):
    id: int
    school_year: str
    name: str
    region: str
    start_date: date
    end_date: date
    timezone: str
    weeks: int  # teaching weeks, the first holding start_date
    holidays: list[HolidayOut]
    makeup_days: list[MakeupDayOut]
    periods: list[PeriodOut]


class TermList(Response, kw_only=True):
    items: list[TermOut]


class GenerationOut(Response, kw_only=True):
    """What a generation did: lessons created, moved or edited, removed; occurrences left
    as they were (`unchanged`) or left alone because changed by hand, past or no longer
    scheduled (`kept`)."""

    created: int
    updated: int
    removed: int
    unchanged: int
    kept: int
    dry_run: bool = False


class TermChanged(Response, kw_only=True):
    term: TermOut
    generation: GenerationOut


class GenerateQuery(Request, kw_only=True):
    dry_run: bool = False


class ClashOut(Response, kw_only=True):
    lesson_id: int | None
    other_lesson_id: int | None
    resource: Literal["classroom", "teacher"]
    classroom_id: int | None
    message: str


class ClashList(Response, kw_only=True):
    items: list[ClashOut]


# ----------------------------------------------------------------- series


class SeriesIn(Request, kw_only=True):
    """A weekly lesson: `weekday` + `period`, or `weekday` + `start_time`/`end_time`."""

    pairing_id: Id
    kind: LessonKindName = "dedicated"
    subject: Short
    grade: Annotated[str, Meta(min_length=1, max_length=50)]
    title: Annotated[str, Meta(min_length=1, max_length=300)]
    teacher_name: Short
    teacher_user_id: Id | None = None
    broadcast: bool | None = None
    weekday: Weekday
    period: PeriodNumber | None = None
    start_time: LocalTime | None = None
    end_time: LocalTime | None = None
    week_parity: ParityName = "all"
    first_date: date | None = None
    last_date: date | None = None


class SeriesOut(Response, kw_only=True):
    id: int
    term_id: int
    pairing_id: int
    kind: LessonKindName
    subject: str
    grade: str
    title: str
    teacher_name: str
    teacher_user_id: int | None
    broadcast: bool
    weekday: int
    period: int | None
    start_time: str | None
    end_time: str | None
    week_parity: ParityName
    first_date: date | None
    last_date: date | None


class SeriesList(Response, kw_only=True):
    items: list[SeriesOut]


class SeriesChanged(Response, kw_only=True):
    series: SeriesOut
    generation: GenerationOut


class OccurrenceOut(Response, kw_only=True):
    lesson_id: int
    series_id: int
    occurrence_date: date  # the date the series gave it (a moved one keeps it)
    changed: bool  # moved, teacher substituted or cancelled by hand
    state: LessonStateName
    planned_start: datetime
    planned_end: datetime
    teacher_name: str
    teacher_user_id: int | None


class OccurrenceList(Response, kw_only=True):
    items: list[OccurrenceOut]


class MoveIn(Request, kw_only=True):
    """Move one occurrence: a school day of the term, at a period or at times."""

    date: date
    period: PeriodNumber | None = None
    start_time: LocalTime | None = None
    end_time: LocalTime | None = None


class SubstituteIn(Request, kw_only=True):
    """代课: another teacher for this one occurrence."""

    teacher_name: Short
    teacher_user_id: Id | None = None


# ----------------------------------------------------------------- import


class ImportQuery(Request, kw_only=True):
    dry_run: bool = False


class ImportRowError(Response, kw_only=True):
    """A refused row: `reason` and `params` as in an error body (docs/api.md)."""

    line: int
    column: str | None
    message: str
    reason: str = ""
    params: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


class ImportOut(Response, kw_only=True):
    rows: int
    series_created: int
    lessons_created: int
    dry_run: bool


class ImportRejectedDetail(Response, kw_only=True):
    code: str
    message: str
    field: str | None = None
    reason: str = ""
    params: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


class ImportRejectedOut(Response, kw_only=True):
    """400 answer of an import: the usual `error`, plus every bad row."""

    error: ImportRejectedDetail
    rows: list[ImportRowError]


# ------------------------------------------------------------------ feeds


class FeedIn(Request, kw_only=True):
    kind: FeedKindName
    classroom_id: Id | None = None
    teacher_user_id: Id | None = None
    name: Label = ""


class FeedOut(Response, kw_only=True):
    id: int
    kind: FeedKindName
    classroom_id: int | None
    teacher_user_id: int | None
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


class FeedIssued(Response, kw_only=True):
    """The feed, its token and subscribable URL: shown this once, never again."""

    feed: FeedOut
    token: str
    url: str


class FeedList(Response, kw_only=True):
    items: list[FeedOut]


class FeedQuery(msgspec.Struct, kw_only=True):
    """Unknown parameters are ignored here: calendar programs add their own."""

    token: Annotated[str, Meta(min_length=1, max_length=200)]
