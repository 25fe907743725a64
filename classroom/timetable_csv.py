"""Importing a term's timetable from the CSV a school exports: one row per weekly lesson.

Columns (Chinese headers, any order; aliases in HEADERS): 星期, 节次 (or 开始时间 and
结束时间), 学科, 年级, 主讲教室, 听课教室, 教师, 课题; optional 类型 (专递课堂/名师课堂/
名校网络课堂), 单双周 (每周/单周/双周), 教师账号 (a teacher's username).

A classroom is written "学校/教室" (城关一中/301), or by its name alone when no other
school has a room of that name, or "#12" by id. Several receiving rooms are separated by
、 ; ； | or a line break. A row's rooms must be an existing pairing (结对) — the import
schedules pairings, it does not invent them.

The file may be UTF-8 (with or without the BOM Excel writes), GB18030/GBK (what Chinese
Excel's "CSV" export produces), or UTF-16 with BOM ("Unicode text", tab-separated).

All or nothing: every row is checked — its cells, its rooms, its teacher, and every
lesson it would generate against the calendar and against every other row — and if any
row is bad, nothing is imported and each bad row is reported by line and reason.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import refusals, terms
from classroom.conflicts import DoubleBooking, Named, normalise_name
from classroom.models import (
    Classroom,
    DomainError,
    InvalidInput,
    LessonKind,
    Pairing,
    School,
    User,
    UserRole,
)
from classroom.terms import TermCalendar
from classroom.timetable import SeriesSpec, SyncReport, apply_spec, sync_series
from classroom.timetable_models import LessonSeries, WeekParity

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5000

# canonical column -> accepted headers (compared after NFKC and without spaces)
HEADERS: dict[str, tuple[str, ...]] = {
    "weekday": ("星期", "周几", "星期几"),
    "period": ("节次", "节", "第几节"),
    "start_time": ("开始时间", "上课时间"),
    "end_time": ("结束时间", "下课时间"),
    "subject": ("学科", "科目"),
    "grade": ("年级",),
    "main": ("主讲教室", "主讲课堂"),
    "receiving": ("听课教室", "接收教室", "听课课堂"),
    "teacher": ("教师", "主讲教师", "授课教师"),
    "title": ("课题", "课程名称", "标题"),
    "kind": ("类型", "课堂类型"),
    "parity": ("单双周", "周次"),
    "teacher_account": ("教师账号", "账号"),
}
REQUIRED = ("weekday", "subject", "grade", "main", "receiving", "teacher", "title")
_LABEL = {key: names[0] for key, names in HEADERS.items()}

_WEEKDAYS = {
    **{c: i for i, c in enumerate("一二三四五六", start=1)},
    "日": 7,
    "天": 7,
    "七": 7,
    **{str(i): i for i in range(1, 8)},
    **{
        n: i
        for i, names in enumerate(
            [
                (),
                ("monday", "mon"),
                ("tuesday", "tue"),
                ("wednesday", "wed"),
                ("thursday", "thu"),
                ("friday", "fri"),
                ("saturday", "sat"),
                ("sunday", "sun"),
            ]
        )
        for n in names
    },
}
_NUMERALS = {c: i for i, c in enumerate("一二三四五六七八九十", start=1)}
_KINDS = {
    "专递课堂": LessonKind.DEDICATED,
    "专递": LessonKind.DEDICATED,
    "名师课堂": LessonKind.FAMOUS_TEACHER,
    "名师": LessonKind.FAMOUS_TEACHER,
    "名校网络课堂": LessonKind.FAMOUS_SCHOOL,
    "名校": LessonKind.FAMOUS_SCHOOL,
    **{k.value: k for k in LessonKind},
}
_PARITY = {
    "": WeekParity.ALL,
    "每周": WeekParity.ALL,
    "全部": WeekParity.ALL,
    "单周": WeekParity.ODD,
    "单": WeekParity.ODD,
    "双周": WeekParity.EVEN,
    "双": WeekParity.EVEN,
    **{p.value: p for p in WeekParity},
}
_ROOM_LIST = re.compile(r"[、;；|\n]+")


@dataclass(frozen=True)
class RowError:
    line: int  # in the file, the header being line 1
    column: str | None  # the header as the admin knows it ("主讲教室"), None for the row
    message: str
    # the refusal of classroom/refusals.py the message says, and its params
    reason: str = ""
    params: dict[str, refusals.Param] = field(default_factory=dict)


class CellRefused(ValueError):
    """A cell (or a classroom in it) the import cannot use: a refusal of the catalogue."""

    def __init__(self, reason: str, **params: object) -> None:
        message, self.params = refusals.render(reason, params)
        super().__init__(message)
        self.reason = reason


@dataclass
class ImportReport:
    rows: int = 0
    series_created: int = 0
    lessons_created: int = 0
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False


class ImportRejected(InvalidInput):
    """Nothing was imported; `errors` names every bad row."""

    def __init__(self, errors: list[RowError]) -> None:
        lines = sorted({e.line for e in errors})
        message, params = refusals.render(
            "csv_rows_refused",
            {
                "count": len(lines),
                "lines": ", ".join(map(str, lines[:20])) + ("..." if len(lines) > 20 else ""),
            },
        )
        super().__init__(message, reason="csv_rows_refused", params=params)
        self.errors = sorted(errors, key=lambda e: (e.line, e.column or ""))


# ------------------------------------------------------------------ reading


def decode(data: bytes) -> str:
    """The file's text: UTF-16 (BOM), UTF-8 (BOM or not), else GB18030 (GBK's superset)."""
    if len(data) > MAX_BYTES:
        raise InvalidInput.because("csv_too_large", mib=MAX_BYTES // (1024 * 1024))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidInput.because("csv_bad_utf16") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise InvalidInput.because("csv_encoding") from None


def _clean(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def read_rows(text: str) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """Column positions by canonical name, and (line, cells) for each non-empty row."""
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput.because("csv_empty_file") from None
    columns: dict[str, int] = {}
    unknown = []
    for i, cell in enumerate(header):
        name = "".join(_clean(cell).split())
        if not name:
            continue
        key = next((k for k, names in HEADERS.items() if name in names), None)
        if key is None:
            unknown.append(cell.strip())
        elif key in columns:
            raise InvalidInput.because("csv_column_twice", column=_LABEL[key])
        else:
            columns[key] = i
    missing = [_LABEL[k] for k in REQUIRED if k not in columns]
    no_period = "period" not in columns and not {"start_time", "end_time"} <= columns.keys()
    if missing or no_period:
        raise InvalidInput.because(
            "csv_missing_columns",
            columns=", ".join(missing),
            missing_period=no_period,
            unknown=", ".join(unknown),
        )
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
            if len(rows) > MAX_ROWS:
                raise InvalidInput.because("csv_many_rows", max=MAX_ROWS)
    except csv.Error as exc:
        raise InvalidInput.because("csv_syntax", line=reader.line_num, detail=str(exc)) from None
    return columns, rows


def parse_weekday(text: str) -> int:
    value = _clean(text).lower()
    for prefix in ("星期", "礼拜", "周"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    if value in _WEEKDAYS:
        return _WEEKDAYS[value]
    raise CellRefused("csv_not_weekday", value=text.strip())


def parse_period(text: str) -> int:
    value = _clean(text)
    match = re.fullmatch(r"第?\s*(\d{1,2}|[一二三四五六七八九十]{1,3})\s*节?", value)
    if match:
        n = match[1]
        if n.isdigit():
            return int(n)
        number = _chinese_number(n)
        if number is not None:
            return number
    raise CellRefused("csv_not_period", value=text.strip())


def _chinese_number(text: str) -> int | None:
    """一..九十九 as written in 第十二节."""
    if text == "十":
        return 10
    if len(text) == 1:
        return _NUMERALS.get(text) if text != "十" else 10
    if text.startswith("十") and len(text) == 2:
        unit = _NUMERALS.get(text[1])
        return 10 + unit if unit and unit < 10 else None
    if len(text) in (2, 3) and text[1] == "十":
        tens = _NUMERALS.get(text[0])
        unit = _NUMERALS.get(text[2]) if len(text) == 3 else 0
        if tens and tens < 10 and unit is not None and unit < 10:
            return tens * 10 + unit
    return None


def parse_time(text: str) -> time:
    value = _clean(text)
    match = re.fullmatch(r"(\d{1,2})[:.](\d{2})(?::\d{2})?", value)
    if match:
        hour, minute = int(match[1]), int(match[2])
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise CellRefused("csv_not_time", value=text.strip())


# --------------------------------------------------------------- resolving


@dataclass
class _Directory:
    """Classrooms, pairings and teachers, loaded once for the whole file."""

    by_id: dict[int, Classroom]
    by_school_room: dict[tuple[str, str], Classroom]
    by_room: dict[str, list[Classroom]]
    pairings: dict[tuple[int, frozenset[int]], int]  # (main, receiving set) -> pairing id
    teachers_by_username: dict[str, User]
    teachers_by_name: dict[tuple[int, str], list[User]]  # (school, normalised name)

    def classroom(self, text: str) -> Classroom:
        room = self._classroom(text)
        if not room.active or not room.school.active:
            raise CellRefused("csv_classroom_archived", classroom=f"{room.school.name}/{room.name}")
        return room

    def _classroom(self, text: str) -> Classroom:
        value = _clean(text)
        if match := re.fullmatch(r"#(\d+)", value):
            room = self.by_id.get(int(match[1]))
            if room is None:
                raise CellRefused("csv_no_classroom_id", id=int(match[1]))
            return room
        if "/" in value:
            school, _, name = value.rpartition("/")
            room = self.by_school_room.get((_key(school), _key(name)))
            if room is None:
                raise CellRefused("csv_unknown_classroom", value=value)
            return room
        matches = self.by_room.get(_key(value), [])
        # An archived room of the same name elsewhere does not make the name ambiguous.
        matches = [r for r in matches if r.active and r.school.active] or matches
        if len(matches) == 1:
            return matches[0]
        if matches:
            schools = "、".join(sorted(f"{r.school.name}/{r.name}" for r in matches))
            raise CellRefused("csv_ambiguous_classroom", value=value, rooms=schools)
        raise CellRefused("csv_unknown_classroom", value=value)


def _key(text: str) -> str:
    return "".join(_clean(text).lower().split())


async def _directory(db: AsyncSession) -> _Directory:
    rooms = list((await db.scalars(sa.select(Classroom).join(School))).all())
    by_room: dict[str, list[Classroom]] = defaultdict(list)
    for r in rooms:
        by_room[_key(r.name)].append(r)
    pairings: dict[tuple[int, frozenset[int]], int] = {}
    active = sa.select(Pairing).where(Pairing.active.is_(True)).order_by(Pairing.id)
    for p in (await db.scalars(active)).all():
        key = (p.main_classroom_id, frozenset(m.classroom_id for m in p.members))
        pairings.setdefault(key, p.id)
    teachers = list(
        (
            await db.scalars(
                sa.select(User).where(User.role == UserRole.TEACHER.value, User.disabled.is_(False))
            )
        ).all()
    )
    by_name: dict[tuple[int, str], list[User]] = defaultdict(list)
    for t in teachers:
        if t.school_id is not None and t.display_name:
            by_name[(t.school_id, normalise_name(t.display_name))].append(t)
    return _Directory(
        by_id={r.id: r for r in rooms},
        by_school_room={(_key(r.school.name), _key(r.name)): r for r in rooms},
        by_room=by_room,
        pairings=pairings,
        teachers_by_username={t.username.lower(): t for t in teachers},
        teachers_by_name=by_name,
    )


# ------------------------------------------------------------------ import


async def import_timetable(
    db: AsyncSession,
    term_id: int,
    data: bytes,
    *,
    school_id: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    """Create one series per row of the CSV and generate their lessons; commits.

    `school_id` (a school admin's import): every row's main classroom must be in that
    school. Raises ImportRejected listing every bad row; nothing is written then, nor
    with `dry_run` (which checks everything and reports what would be created).
    """
    calendar = await terms.calendar_of(db, term_id)
    columns, rows = read_rows(decode(data))
    directory = await _directory(db)
    errors: list[RowError] = []
    series_by_line: dict[int, LessonSeries] = {}
    for line, cells in rows:
        try:
            spec = _row_spec(cells, columns, directory, calendar, school_id)
        except _RowProblem as problem:
            errors.append(
                RowError(line, problem.column, problem.message, problem.reason, problem.params)
            )
            continue
        series = LessonSeries(term_id=term_id)
        apply_spec(series, spec)
        series_by_line[line] = series
    report = ImportReport(rows=len(rows), dry_run=dry_run)
    if not rows:
        raise InvalidInput.because("csv_no_rows")
    try:
        db.add_all(series_by_line.values())
        await db.flush()
        line_of = {s.id: line for line, s in series_by_line.items()}
        sync: SyncReport | None = None
        try:
            sync = await sync_series(
                db,
                calendar,
                list(series_by_line.values()),
                now=now,
                write=not errors and not dry_run,
                sources={sid: Named("csv_line", line) for sid, line in line_of.items()},
            )
        except DoubleBooking as exc:
            errors += _clash_errors(exc, line_of)
        if errors:
            raise ImportRejected(errors)
        assert sync is not None
        report.series_created = len(series_by_line)
        report.lessons_created = sync.created
    except BaseException:
        await db.rollback()
        raise
    if dry_run:
        await db.rollback()
    else:
        await db.commit()
    return report


def _clash_errors(exc: DoubleBooking, line_of: dict[int, int]) -> list[RowError]:
    """One error per bad line: its first clash, and how many of its lessons clash."""
    per_line: dict[int, list[dict[str, object]]] = defaultdict(list)
    for clash, clash_params in zip(exc.clashes, exc.clash_params, strict=True):
        # a booking's ref is what the import gave it: the line number (Booking says object)
        line = line_of.get(clash.booking.ref)  # type: ignore[call-overload]
        if line is not None:
            per_line[line].append(clash_params)
    out = []
    for line, clashes in per_line.items():
        reason = "row_double_booked"
        message, params = refusals.render(reason, {**clashes[0], "row_clashes": len(clashes)})
        out.append(RowError(line, None, message, reason, params))
    return out


class _RowProblem(Exception):
    def __init__(self, where: str | None, reason: str, /, **params: object) -> None:
        message, self.params = refusals.render(reason, params)
        super().__init__(message)
        self.column = where
        self.message = message
        self.reason = reason

    @classmethod
    def of(cls, column: str | None, exc: CellRefused | DomainError) -> _RowProblem:
        """The row refused for the reason `exc` gives (a cell's, or the row's rules')."""
        problem = cls.__new__(cls)
        Exception.__init__(problem, str(exc))
        problem.column, problem.message = column, str(exc)
        problem.reason, problem.params = exc.reason or "", dict(exc.params)
        return problem


_T = TypeVar("_T")


def _row_spec(
    cells: list[str],
    columns: dict[str, int],
    directory: _Directory,
    calendar: TermCalendar,
    school_id: int | None,
) -> SeriesSpec:
    def cell(key: str) -> str:
        i = columns.get(key)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    def need(key: str) -> str:
        value = cell(key)
        if not value:
            raise _RowProblem(_LABEL[key], "csv_empty_cell", column=_LABEL[key])
        return value

    def parsed(key: str, parse: Callable[[str], _T]) -> _T:
        try:
            return parse(need(key))
        except CellRefused as exc:
            raise _RowProblem.of(_LABEL[key], exc) from None

    weekday = parsed("weekday", parse_weekday)
    period = start_time = end_time = None
    if cell("period"):
        period = parsed("period", parse_period)
        if period not in calendar.periods:
            known = ", ".join(str(n) for n in sorted(calendar.periods)) or "none"
            raise _RowProblem(
                _LABEL["period"], "csv_no_period", term=calendar.name, number=period, known=known
            )
    else:
        start_time = parsed("start_time", parse_time)
        end_time = parsed("end_time", parse_time)
    main = parsed("main", directory.classroom)
    if school_id is not None and main.school_id != school_id:
        raise _RowProblem(
            _LABEL["main"], "csv_not_your_school", classroom=f"{main.school.name}/{main.name}"
        )
    receiving = []
    for part in _ROOM_LIST.split(need("receiving")):
        if part.strip():
            try:
                receiving.append(directory.classroom(part))
            except CellRefused as exc:
                raise _RowProblem.of(_LABEL["receiving"], exc) from None
    wanted = frozenset(r.id for r in receiving)
    pairing_id = directory.pairings.get((main.id, wanted))
    if pairing_id is None:
        names = "、".join(f"{r.school.name}/{r.name}" for r in receiving)
        raise _RowProblem(
            _LABEL["receiving"],
            "csv_no_pairing",
            main=f"{main.school.name}/{main.name}",
            receiving=names,
        )
    kind = LessonKind.DEDICATED
    if value := cell("kind"):
        named = _KINDS.get(_clean(value).lower())
        if named is None:
            raise _RowProblem(_LABEL["kind"], "csv_unknown_kind", value=value)
        kind = named
    parity = _PARITY.get(_clean(cell("parity")).lower())
    if parity is None:
        raise _RowProblem(_LABEL["parity"], "csv_not_parity", value=cell("parity"))
    teacher_name = need("teacher")
    teacher_user_id = None
    if account := cell("teacher_account"):
        user = directory.teachers_by_username.get(account.lower())
        if user is None or user.school_id != main.school_id:
            raise _RowProblem(
                _LABEL["teacher_account"],
                "csv_no_teacher_account",
                account=account,
                school=main.school.name,
            )
        teacher_user_id = user.id
    else:
        same_name = directory.teachers_by_name.get(
            (main.school_id, normalise_name(teacher_name)), []
        )
        if len(same_name) > 1:
            raise _RowProblem(
                _LABEL["teacher"],
                "csv_teacher_ambiguous",
                school=main.school.name,
                count=len(same_name),
                name=teacher_name,
            )
        if same_name:
            teacher_user_id = same_name[0].id
    spec = SeriesSpec(
        pairing_id=pairing_id,
        subject=need("subject"),
        grade=need("grade"),
        title=need("title"),
        teacher_name=teacher_name,
        teacher_user_id=teacher_user_id,
        weekday=weekday,
        period=period,
        start_time=start_time,
        end_time=end_time,
        kind=kind.value,
        week_parity=parity.value,
    )
    try:
        spec.check(calendar)
    except DomainError as exc:
        raise _RowProblem.of(None, exc) from None
    return spec
