"""Why the domain says no: one catalogue of refusal reasons.

Every refusal the domain raises names its rule here: a stable snake_case `name` (the API
answers it as `reason`; pages translate it as the i18n key `error.<name>`), its English
message template and so its params, exactly the template's fields. A raise site names the
rule and gives the values, and the message is made from them, so the English sentence, the
reason and the params cannot drift apart:

    raise InvalidInput.because("term_too_long", field="end_date", days=MAX_TERM_DAYS)

The English messages are those the API has always answered (clients and tests read them);
docs/api.md lists every reason with its params, and tests/test_error_reasons.py checks that
both page catalogues have a sentence for each with exactly the placeholders it names.

`sentence` is what a page's sentence shows, when that is not every param: ids the user
already sees are left out, and a double booking's sentence is composed by the page from
its params (who, what, when, and what holds it). `shown=False` marks the reasons that never
reach a client (why a sign-in failed is for the audit log; the API answers one 401 for
all of them).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

Param = str | int | float | bool | None
Template = str | Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Refusal:
    name: str
    template: Template
    meaning: str
    status: int  # the HTTP status the API answers it with
    params: tuple[str, ...] = ()  # a str template's are read from it
    sentence: tuple[str, ...] | None = None  # the page sentence's placeholders (None: params)
    shown: bool = True

    @property
    def says(self) -> tuple[str, ...]:
        return self.params if self.sentence is None else self.sentence

    def message(self, params: Mapping[str, Any]) -> str:
        if isinstance(self.template, str):
            return self.template.format(**params)
        return self.template(params)


def _fields(template: str) -> tuple[str, ...]:
    names: list[str] = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)


REFUSALS: dict[str, Refusal] = {}


def _add(
    name: str,
    status: int,
    template: Template,
    meaning: str,
    *,
    params: tuple[str, ...] = (),
    sentence: tuple[str, ...] | None = None,
    shown: bool = True,
) -> None:
    assert name not in REFUSALS, name
    if isinstance(template, str):
        assert not params, "a str template's params are its fields"
        params = _fields(template)
    if sentence is not None:
        assert set(sentence) <= set(params) or name in _COMPOSED, (name, sentence)
    REFUSALS[name] = Refusal(name, template, meaning, status, params, sentence, shown)


def _scalar(value: Any) -> Param:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    return str(value)


def render(reason: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Param]]:
    """The English message of `reason` with these params, and the params as the API sends
    them (dates as ISO text). Refuses params the reason does not name, or lacks."""
    refusal = REFUSALS[reason]
    if set(params) != set(refusal.params):
        raise TypeError(
            f"refusal {reason!r} takes params {sorted(refusal.params)}, not {sorted(params)}"
        )
    return refusal.message(params), {k: _scalar(params[k]) for k in refusal.params}


def refused(reason: str, **params: Any) -> dict[str, Any]:
    """An ApiError's message, reason and params for `reason` (a REST layer's refusal):
    `raise ApiError(403, ErrorCode.FORBIDDEN, **refused("not_your_pairing", id=3))`."""
    message, sent = render(reason, params)
    return {"message": message, "reason": reason, "params": sent}


# ------------------------------------------------------------ double bookings
# Composed: the page builds "who is already taken then by what holds it, so this cannot be
# scheduled" from the params (classroom or teacher; a series, a lesson or a CSV line).

_COMPOSED = {"double_booked", "row_double_booked"}
BOOKING_PARAMS = (
    "what_kind",  # "series" | "lesson" | "csv_line": what was refused
    "what_id",  # its id (a CSV line's number)
    "what_title",
    "what_series",  # the series of a refused lesson, when named
    "span",  # "2026-09-07 08:00–08:45 +08:00"
    "resource",  # "classroom" | "teacher"
    "classroom_id",
    "classroom",  # "城关一中 主讲教室" (or "")
    "teacher",  # the teacher's name
    "teacher_user_id",  # their account, when the lesson names one
    "other_kind",  # what holds the room or teacher: "lesson", or another proposal
    "other_id",
    "other_title",
    "other_series",
    "other_span",
)
CLASH_SENTENCE = ("who", "what", "span", "other", "other_span")


def _named(p: Mapping[str, Any], side: str) -> str:
    kind, ident = p[f"{side}_kind"], p[f"{side}_id"]
    if kind == "csv_line":
        return f"CSV line {ident}"
    text = f"{kind} {ident} {p[f'{side}_title']!r}"
    if p[f"{side}_series"] is not None:
        text += f" (series {p[f'{side}_series']})"
    return text


def clash_text(p: Mapping[str, Any]) -> str:
    if p["resource"] == "classroom":
        label = p["classroom"]
        who = f"classroom {p['classroom_id']}" + (f" ({label})" if label else "")
    else:
        who = f"teacher {p['teacher']}"
        if p["teacher_user_id"] is not None:
            who += f" (user {p['teacher_user_id']})"
    return (
        f"{_named(p, 'what')} {p['span']}: {who} is already booked by "
        f"{_named(p, 'other')} {p['other_span']}"
    )


def _double_booked(p: Mapping[str, Any]) -> str:
    more = f" (and {p['more']} more clashes)" if p["more"] else ""
    return clash_text(p) + more


def _row_double_booked(p: Mapping[str, Any]) -> str:
    more = f" ({p['row_clashes']} lessons of this row clash)" if p["row_clashes"] > 1 else ""
    return f"conflict: {clash_text(p)}{more}"


def _teacher_booked(p: Mapping[str, Any]) -> str:
    who = f"teacher {p['teacher']}"
    if p["teacher_user_id"] is not None:
        who += f" (user {p['teacher_user_id']})"
    series = f" (series {p['series_id']})" if p["series_id"] is not None else ""
    return (
        f"{who} is booked by lesson {p['lesson_id']} {p['title']!r}{series} from "
        f"{p['start']} to {p['end']}"
    )


def _missing_columns(p: Mapping[str, Any]) -> str:
    missing = [c for c in p["columns"].split(", ") if c]
    if p["missing_period"]:
        missing.append("节次 (or 开始时间 and 结束时间)")
    detail = f"; unknown columns: {p['unknown']}" if p["unknown"] else ""
    return f"line 1: missing columns {', '.join(missing)}{detail}"


# ------------------------------------------------------------------ the catalogue
# Grouped by what refuses; the HTTP status is the one the API answers (400 invalid_body,
# 404 not_found, 409 conflict or illegal_transition).

# Rows that are not there (404 not_found).
for _what, _noun in (
    ("term", "term"),
    ("pairing", "pairing"),
    ("school", "school"),
    ("classroom", "classroom"),
    ("series", "series"),
    ("lesson", "lesson"),
    ("feed", "calendar feed"),
    ("teacher_account", "teacher account"),
    ("user", "user"),
):
    _add(f"{_what}_not_found", 404, f"no {_noun} {{id}}", f"No {_noun} with this id.",
         sentence=())
_add("classrooms_not_found", 404, "no classroom {ids}", "No classroom with these ids.",
     sentence=())

# Terms and their calendars (classroom/terms.py).
_add("unknown_timezone", 400, "unknown timezone {zone!r}", "Not an IANA time zone name.")
_add("term_end_before_start", 400, "the term must end on or after its first day",
     "A term's last day is before its first.")
_add("term_too_long", 400, "a term lasts at most {days} days", "The term is too long.")
_add("holiday_ends_before_start", 400, "holiday {name!r} ends before it starts",
     "A holiday's last day is before its first.")
_add("holiday_outside_term", 400, "holiday {name!r} ({start}..{end}) is outside the term",
     "A holiday lies wholly outside the term.")
_add("makeup_weekday_range", 400, "follows_weekday is 1 (Monday) to 7 (Sunday)",
     "A make-up day follows a weekday from 1 to 7.", sentence=())
_add("makeup_outside_term", 400, "make-up day {date} is outside the term",
     "A make-up day lies outside the term.")
_add("makeup_in_holiday", 400, "make-up day {date} falls in a holiday",
     "A make-up day falls in a holiday.")
_add("makeup_listed_twice", 400, "make-up day {date} is listed twice",
     "The same make-up day is given twice.")
_add("period_number_from_one", 400, "period numbers start at 1", "A period number below 1.")
_add("period_listed_twice", 400, "period {number} is listed twice",
     "Two periods have the same number.")
_add("period_end_before_start", 400, "period {number} must end after it starts",
     "A period ends before it starts.")
_add("periods_overlap", 400, "periods {a} and {b} overlap", "Two periods overlap in time.")
_add("no_such_period", 400, "term {term!r} has no period {number} (periods: {known})",
     "The term's timetable has no period with this number.")
_add("no_such_local_time", 400, "{when} does not exist in {zone} (clocks change)",
     "The local time is skipped by a clock change in the term's time zone.")
_add("term_name_taken", 409, "region {region!r} already has a term named {name!r}",
     "The region already has a term of this name.", sentence=("name",))

# Calendar feeds (classroom/ical.py).
_add("feed_classroom_only", 400, "a classroom feed names classroom_id only",
     "A classroom feed names its classroom and no teacher.")
_add("feed_teacher_only", 400, "a teacher feed names teacher_user_id only",
     "A teacher feed names its teacher account and no classroom.")

# Statistics (classroom/lesson_stats.py).
_add("stats_grouping", 400, "group by one of {groupings}",
     "Statistics are grouped by one of the groupings named.")
_add("time_without_zone", 400, "give a timezone (e.g. +08:00 or Z)",
     "A date-time was given without a UTC offset.")
_add("stats_unknown_timezone", 400, "unknown time zone {zone!r}",
     "Not an IANA time zone name.")

# Lessons (classroom/lessons.py).
_add("unknown_lesson_kind", 400, "unknown lesson kind {kind!r}", "Not a kind of lesson.",
     sentence=())
_add("lesson_end_before_start", 400, "the lesson must end after it starts",
     "A lesson's end is not after its start.")
_add("pairing_archived", 409, "pairing {id} is archived",
     "The pairing is archived: nothing new is scheduled on it.", sentence=())
_add("classroom_booked", 409,
     "classroom {classroom_id} ({classroom}) is booked by lesson {lesson_id} {title!r} "
     "from {start} to {end}",
     "A classroom of the lesson is taken by another lesson then (start and end in ISO 8601).",
     sentence=("classroom", "lesson_id", "title", "start", "end"))
_add("teacher_booked", 409, _teacher_booked,
     "The lesson's teacher teaches another lesson then (start and end in ISO 8601).",
     params=("teacher", "teacher_user_id", "lesson_id", "title", "series_id", "start", "end"),
     sentence=("teacher", "lesson_id", "title", "start", "end"))
_add("lesson_not_editable", 409,
     "lesson {lesson_id} is {state}; only a scheduled or open lesson can be changed",
     "The lesson has started, ended or was cancelled.", sentence=("state",))
_add("illegal_transition", 409, "lesson {lesson_id} cannot go from {current} to {to}",
     "The lesson cannot move from its state to that one.", sentence=())
_add("double_booked", 409, _double_booked,
     "A classroom or teacher would be in two lessons at once: the first clash, and how "
     "many more there are.",
     params=(*BOOKING_PARAMS, "more"), sentence=CLASH_SENTENCE)

# Schools, classrooms and pairings (classroom/schools.py).
_add("unknown_school_kind", 400, "unknown school kind {kind!r}", "Not a kind of school.",
     sentence=())
_add("classroom_name_taken", 409, "school {school_id} already has a classroom named {name!r}",
     "The school already has a classroom of this name.", sentence=())
_add("receiving_count", 400, "a pairing has 1 to {max} receiving classrooms, not {count}",
     "Too few or too many receiving classrooms.", sentence=("max",))
_add("classroom_listed_twice", 400, "a classroom is listed twice",
     "A receiving classroom is given twice.")
_add("main_also_receiving", 400, "the main classroom cannot also receive",
     "The main classroom is also among the receiving ones.")
_add("classroom_archived", 409, "classroom {id} is archived", "The classroom is archived.",
     sentence=())
_add("classrooms_archived", 409, "classroom {ids} is archived",
     "These classrooms are archived.", sentence=())
_add("school_archived", 409, "school {id} is archived", "The school is archived.",
     sentence=())
_add("changed_meanwhile", 409, "{what} changed meanwhile; reload and try again",
     "A concurrent change won the race; reload and retry.", sentence=())
_add("in_use", 409, "{what} {id} is in use: {uses}; archive it instead",
     "Other rows refer to it (uses: \"2 lessons, 1 pairings\"), so it cannot be deleted; "
     "archive it instead.", sentence=("uses",))
_add("school_has_classrooms", 409,
     "school {school_id} has {count} active classrooms; archive them first",
     "A school with classrooms in use cannot be archived.", sentence=("count",))
_add("classroom_in_use_move", 409,
     "classroom {classroom_id} is in use: {uses}; it cannot move to another school",
     "A classroom in use stays in its school.", sentence=("uses",))
_add("classroom_in_pairing", 409,
     "classroom {classroom_id} is in active pairing {pairing_id} {pairing!r}; "
     "archive or change the pairing first",
     "A classroom of an active pairing cannot be archived.", sentence=("pairing",))
_add("classroom_lesson_to_come", 409,
     "classroom {classroom_id} has lesson {lesson_id} {title!r} to come; "
     "cancel or change it first",
     "A classroom with a lesson to come cannot be archived.", sentence=("lesson_id", "title"))
_add("pairing_lesson_to_come", 409,
     "pairing {pairing_id} has lesson {lesson_id} {title!r} to come; cancel it first",
     "A pairing with a lesson to come cannot be archived.", sentence=("lesson_id", "title"))

# Accounts (classroom/users.py).
_add("unknown_role", 400, "unknown role {role!r}", "Not a role.", sentence=())
_add("username_taken", 409, "username {username!r} is taken",
     "Another account has this username.")
_add("not_a_device", 400, "only a device account is bound to a classroom",
     "Only a device account names a classroom.")
_add("device_needs_classroom", 400,
     "a device account is its classroom's own: name the classroom",
     "A device account must name its classroom.")
_add("device_school_mismatch", 400,
     "classroom {classroom_id} is in school {classroom_school_id}, not {school_id}; "
     "a device's school is its classroom's",
     "A device account's school is its classroom's.", sentence=())
_add("password_too_short", 400, "a password has at least {min} characters",
     "The password is too short.")
_add("password_is_username", 400, "a password must not be the username",
     "The password is the username.")
_add("password_unchanged", 400, "the new password is the current one",
     "The new password is the current one.")
for _why, _meaning in (
    ("unknown_user", "No account has this username."),
    ("bad_password", "The password is wrong."),
    ("locked_now", "The password is wrong, and the account is now locked."),
    ("locked", "The account is locked."),
    ("disabled", "The account is disabled."),
):
    _add(_why, 401, "invalid username or password", _meaning + " For the audit log only: "
         "the API answers unauthorized (or account_locked) whatever the reason.", shown=False)

# Weekly lessons and their occurrences (classroom/timetable.py).
_add("week_parity_choice", 400, "week_parity is all, odd or even, not {value!r}",
     "Not a week parity.", sentence=())
_add("weekday_range", 400, "weekday is 1 (Monday) to 7 (Sunday)",
     "A weekday from 1 to 7.")
_add("must_not_be_empty", 400, "{name} must not be empty",
     "The field (`name`) is blank.", sentence=())
_add("period_and_times", 400, "give a period or start and end times, not both",
     "Both a period and times were given.", sentence=())
_add("period_or_times", 400, "give a period, or both start_time and end_time",
     "Neither a period nor both times were given.")
_add("date_outside_term", 400, "{name} {date} is outside the term",
     "The first or last date lies outside the term.", sentence=("date",))
_add("last_before_first", 400, "last_date is before first_date",
     "The last date is before the first.")
_add("not_a_school_teacher", 400,
     "user {user_id} is not an active teacher of the main classroom's school",
     "The teacher account is not an enabled teacher of the main classroom's school.",
     sentence=())
_add("series_keeps_pairing", 400,
     "a series keeps its pairing; end it (last_date) and create a new one",
     "A weekly lesson cannot move to another pairing.")
_add("not_an_occurrence", 404, "lesson {lesson_id} is not an occurrence of a series",
     "The lesson is not one of a weekly lesson's.", sentence=())
_add("lesson_not_scheduled", 409,
     "lesson {lesson_id} is {state}; only a scheduled one can be {action}",
     "Only a lesson not yet started can be moved or given another teacher.",
     sentence=("state",))
_add("move_outside_term", 400, "{date} is outside term {term!r}",
     "The new date lies outside the term.", sentence=("date",))
_add("move_to_holiday", 400, "{date} is a holiday of term {term!r}",
     "The new date is a holiday.", sentence=("date",))
_add("move_to_past", 400, "a lesson can only be moved to a time still to come",
     "The new time has passed.")

# The timetable's CSV import (classroom/timetable_csv.py): the file, then each row.
_add("csv_too_large", 400, "the file exceeds {mib} MiB", "The file is too large.",
     sentence=())
_add("csv_bad_utf16", 400, "the file starts like UTF-16 but is not",
     "The file is not text in a known encoding.", sentence=())
_add("csv_encoding", 400, "the file is neither UTF-8 nor GB18030/GBK text",
     "The file is not text in a known encoding.")
_add("csv_empty_file", 400, "the file is empty", "The file is empty.")
_add("csv_column_twice", 400, "line 1: column {column} appears twice",
     "A column appears twice in the header.")
_add("csv_missing_columns", 400, _missing_columns,
     "The header lacks required columns (`columns`, comma-separated; `missing_period`: "
     "neither 节次 nor both times); `unknown` lists the columns it did not recognise.",
     params=("columns", "missing_period", "unknown"), sentence=("columns", "unknown"))
_add("csv_many_rows", 400, "more than {max} rows; split the file", "Too many rows.")
_add("csv_syntax", 400, "line {line}: not valid CSV ({detail})", "The file is not valid CSV.",
     sentence=("line",))
_add("csv_no_rows", 400, "the file has a header but no rows", "The file has no lessons.")
_add("csv_rows_refused", 400,
     "{count} row(s) of the timetable are refused (lines {lines}); nothing was imported",
     "Rows of the file are refused (listed in `rows`, each with its reason); nothing was "
     "imported.", sentence=("count",))
_add("csv_not_weekday", 400, "{value!r} is not a weekday (星期一..星期日, 周一, 1..7)",
     "A row's weekday is not one.")
_add("csv_not_period", 400, "{value!r} is not a period (3, 第3节, 第三节)",
     "A row's period is not one.")
_add("csv_not_time", 400, "{value!r} is not a time (09:55)", "A row's time is not one.")
_add("csv_not_parity", 400, "{value!r} is not 每周, 单周 or 双周",
     "A row's week parity is not one.")
_add("csv_empty_cell", 400, "{column} is empty", "A row leaves a required column empty.")
_add("csv_unknown_classroom", 400, "unknown classroom {value!r}",
     "A row names a classroom that does not exist.")
_add("csv_no_classroom_id", 400, "no classroom #{id}",
     "A row names a classroom id that does not exist.")
_add("csv_classroom_archived", 400, "classroom {classroom} is archived",
     "A row names an archived classroom (学校/教室).")
_add("csv_ambiguous_classroom", 400, "classroom {value!r} is ambiguous ({rooms}); write 学校/教室",
     "A row's classroom name is in several schools.")
_add("csv_not_your_school", 400, "main classroom {classroom} is not in your school",
     "A row's main classroom is not in the importing school admin's school.")
_add("csv_no_pairing", 400, "no pairing of main classroom {main} with {receiving}; pair them first",
     "A row's classrooms are not an active pairing.")
_add("csv_unknown_kind", 400, "unknown lesson type {value!r} (专递课堂/名师课堂/名校网络课堂)",
     "A row's lesson type is not one.")
_add("csv_no_teacher_account", 400, "no active teacher account {account!r} in {school}",
     "A row's teacher account is not an enabled teacher of the main classroom's school.")
_add("csv_teacher_ambiguous", 400,
     "{school} has {count} teacher accounts named {name!r}; add a 教师账号 column",
     "Several teacher accounts of the school have the row's teacher name.")
_add("csv_no_period", 400, "term {term!r} has no period {number} ({known})",
     "A row's period is not in the term's timetable.")
_add("row_double_booked", 400, _row_double_booked,
     "A row's lessons would double-book a classroom or teacher: the first clash, and how "
     "many of the row's lessons clash.",
     params=(*BOOKING_PARAMS, "row_clashes"), sentence=CLASH_SENTENCE)


# Refusals of the REST layer itself (signaling/rest): who may do what, and the request.
_add("not_your_pairing", 403, "pairing {id} is not taught from your school",
     "A school admin or teacher schedules only pairings whose main classroom is in their "
     "school.", sentence=())
_add("own_teacher_feed_only", 403, "a teacher manages their own teacher feed only",
     "A teacher may create or revoke only their own teacher feed.")
_add("rooms_connected", 409, "lesson {lesson_id} has rooms connected; its rooms cannot change now",
     "Classrooms are in the live lesson: its receiving classrooms cannot change now.",
     sentence=())
_add("csv_body_missing", 400, "send the CSV file as the request body",
     "The import was sent without a file.")
_add("current_password_wrong", 400, "the current password is wrong",
     "The current password given to change it is wrong.")

# Request validation (msgspec): the message is msgspec's own (e.g. "Expected `str` of
# length <= 200 - at `$.title`"), `field` the path; the reason and params classify it
# (validation_refusal below). Their templates here say the same for the documentation.
VALIDATION = {
    "value_required": "a value is required",
    "too_long": "at most {max} characters",
    "bad_pattern": "the text does not have the expected form",
    "bad_datetime": "not a valid date or date-time (RFC 3339, with a UTC offset)",
    "number_too_small": "a number of at least {min}",
    "number_too_large": "a number of at most {max}",
    "too_many": "at most {max} items",
    "too_few": "at least {min} items",
    "bad_value": "not one of the values allowed, or of the wrong type",
    "unknown_field": "the body names a field the endpoint does not know",
}
for _name, _template in VALIDATION.items():
    _add(_name, 400, _template, "Request validation: " + _template + ".")

_VALIDATION_FORMS = (
    (re.compile(r"^Expected `str` of length >= 1\b|^Object missing required field"),
     "value_required", None),
    (re.compile(r"^Expected `str` of length <= (\d+)"), "too_long", "max"),
    (re.compile(r"^Expected `str` matching regex"), "bad_pattern", None),
    (re.compile(r"^Invalid RFC3339 encoded|^Expected `(?:datetime|date|time)` with"),
     "bad_datetime", None),
    (re.compile(r"^Expected `int` >= (-?\d+)"), "number_too_small", "min"),
    (re.compile(r"^Expected `int` <= (-?\d+)"), "number_too_large", "max"),
    (re.compile(r"^Expected `array` of length <= (\d+)"), "too_many", "max"),
    (re.compile(r"^Expected `array` of length >= (\d+)"), "too_few", "min"),
    (re.compile(r"^Object contains unknown field"), "unknown_field", None),
    (re.compile(r"^Expected `|^Invalid enum value"), "bad_value", None),
)


def validation_refusal(message: str) -> tuple[str, dict[str, Param]]:
    """The reason and params of a request validation message (msgspec's wording, the one
    place that reads it); ("invalid_body", {}) when it is none of the known forms."""
    for pattern, reason, param in _VALIDATION_FORMS:
        if match := pattern.search(message):
            return reason, ({param: int(match[1])} if param else {})
    return "invalid_body", {}


def shown() -> list[Refusal]:
    """The reasons a client may be answered, in catalogue order."""
    return [r for r in REFUSALS.values() if r.shown]


__all__ = ["REFUSALS", "VALIDATION", "Refusal", "clash_text", "refused", "render", "shown",
           "validation_refusal"]
