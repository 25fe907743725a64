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
from dataclasses import dataclass, field
from datetime import datetime, time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import terms
from classroom.conflicts import DoubleBooking, normalise_name
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
        super().__init__(
            f"{len(lines)} row(s) of the timetable are refused (lines "
            f"{', '.join(map(str, lines[:20]))}{'...' if len(lines) > 20 else ''}); "
            "nothing was imported"
        )
        self.errors = sorted(errors, key=lambda e: (e.line, e.column or ""))


# ------------------------------------------------------------------ reading


def decode(data: bytes) -> str:
    """The file's text: UTF-16 (BOM), UTF-8 (BOM or not), else GB18030 (GBK's superset)."""
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"the file exceeds {MAX_BYTES // (1024 * 1024)} MiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InvalidInput("the file starts like UTF-16 but is not") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise InvalidInput("the file is neither UTF-8 nor GB18030/GBK text") from None


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
        raise InvalidInput("the file is empty") from None
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
            raise InvalidInput(f"line 1: column {_LABEL[key]} appears twice")
        else:
            columns[key] = i
    missing = [_LABEL[k] for k in REQUIRED if k not in columns]
    if "period" not in columns and not {"start_time", "end_time"} <= columns.keys():
        missing.append(f"{_LABEL['period']} (or {_LABEL['start_time']} and {_LABEL['end_time']})")
    if missing:
        detail = f"; unknown columns: {', '.join(unknown)}" if unknown else ""
        raise InvalidInput(f"line 1: missing columns {', '.join(missing)}{detail}")
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, cells))
            if len(rows) > MAX_ROWS:
                raise InvalidInput(f"more than {MAX_ROWS} rows; split the file")
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return columns, rows


def parse_weekday(text: str) -> int:
    value = _clean(text).lower()
    for prefix in ("星期", "礼拜", "周"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
            break
    if value in _WEEKDAYS:
        return _WEEKDAYS[value]
    raise ValueError(f"{text.strip()!r} is not a weekday (星期一..星期日, 周一, 1..7)")


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
    raise ValueError(f"{text.strip()!r} is not a period (3, 第3节, 第三节)")


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
    raise ValueError(f"{text.strip()!r} is not a time (09:55)")


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
            raise ValueError(f"classroom {room.school.name}/{room.name} is archived")
        return room

    def _classroom(self, text: str) -> Classroom:
        value = _clean(text)
        if match := re.fullmatch(r"#(\d+)", value):
            room = self.by_id.get(int(match[1]))
            if room is None:
                raise ValueError(f"no classroom #{match[1]}")
            return room
        if "/" in value:
            school, _, name = value.rpartition("/")
            room = self.by_school_room.get((_key(school), _key(name)))
            if room is None:
                raise ValueError(f"unknown classroom {value!r}")
            return room
        matches = self.by_room.get(_key(value), [])
        # An archived room of the same name elsewhere does not make the name ambiguous.
        matches = [r for r in matches if r.active and r.school.active] or matches
        if len(matches) == 1:
            return matches[0]
        if matches:
            schools = "、".join(sorted(f"{r.school.name}/{r.name}" for r in matches))
            raise ValueError(f"classroom {value!r} is ambiguous ({schools}); write 学校/教室")
        raise ValueError(f"unknown classroom {value!r}")


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
            errors.append(RowError(line, problem.column, problem.message))
            continue
        series = LessonSeries(term_id=term_id)
        apply_spec(series, spec)
        series_by_line[line] = series
    report = ImportReport(rows=len(rows), dry_run=dry_run)
    if not rows:
        raise InvalidInput("the file has a header but no rows")
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
                sources={sid: f"CSV line {line}" for sid, line in line_of.items()},
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
    per_line: dict[int, list[str]] = defaultdict(list)
    for clash, message in zip(exc.clashes, exc.messages, strict=True):
        line = line_of.get(clash.booking.ref)  # type: ignore[arg-type]
        if line is not None:
            per_line[line].append(message)
    out = []
    for line, messages in per_line.items():
        more = f" ({len(messages)} lessons of this row clash)" if len(messages) > 1 else ""
        out.append(RowError(line, None, f"conflict: {messages[0]}{more}"))
    return out


class _RowProblem(Exception):
    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


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
            raise _RowProblem(_LABEL[key], f"{_LABEL[key]} is empty")
        return value

    def parsed(key: str, parse):  # type: ignore[no-untyped-def]
        try:
            return parse(need(key))
        except ValueError as exc:
            raise _RowProblem(_LABEL[key], str(exc)) from None

    weekday = parsed("weekday", parse_weekday)
    period = start_time = end_time = None
    if cell("period"):
        period = parsed("period", parse_period)
        if period not in calendar.periods:
            known = ", ".join(str(n) for n in sorted(calendar.periods)) or "none"
            raise _RowProblem(
                _LABEL["period"], f"term {calendar.name!r} has no period {period} ({known})"
            )
    else:
        start_time = parsed("start_time", parse_time)
        end_time = parsed("end_time", parse_time)
    main = parsed("main", directory.classroom)
    if school_id is not None and main.school_id != school_id:
        raise _RowProblem(
            _LABEL["main"], f"main classroom {main.school.name}/{main.name} is not in your school"
        )
    receiving = []
    for part in _ROOM_LIST.split(need("receiving")):
        if part.strip():
            try:
                receiving.append(directory.classroom(part))
            except ValueError as exc:
                raise _RowProblem(_LABEL["receiving"], str(exc)) from None
    wanted = frozenset(r.id for r in receiving)
    pairing_id = directory.pairings.get((main.id, wanted))
    if pairing_id is None:
        names = "、".join(f"{r.school.name}/{r.name}" for r in receiving)
        raise _RowProblem(
            _LABEL["receiving"],
            f"no pairing of main classroom {main.school.name}/{main.name} with {names}; "
            "pair them first",
        )
    kind = LessonKind.DEDICATED
    if value := cell("kind"):
        kind = _KINDS.get(_clean(value).lower())  # type: ignore[assignment]
        if kind is None:
            raise _RowProblem(
                _LABEL["kind"], f"unknown lesson type {value!r} (专递课堂/名师课堂/名校网络课堂)"
            )
    parity = _PARITY.get(_clean(cell("parity")).lower())
    if parity is None:
        raise _RowProblem(_LABEL["parity"], f"{cell('parity')!r} is not 每周, 单周 or 双周")
    teacher_name = need("teacher")
    teacher_user_id = None
    if account := cell("teacher_account"):
        user = directory.teachers_by_username.get(account.lower())
        if user is None or user.school_id != main.school_id:
            raise _RowProblem(
                _LABEL["teacher_account"],
                f"no active teacher account {account!r} in {main.school.name}",
            )
        teacher_user_id = user.id
    else:
        same_name = directory.teachers_by_name.get(
            (main.school_id, normalise_name(teacher_name)), []
        )
        if len(same_name) > 1:
            raise _RowProblem(
                _LABEL["teacher"],
                f"{main.school.name} has {len(same_name)} teacher accounts named "
                f"{teacher_name!r}; add a 教师账号 column",
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
        raise _RowProblem(None, exc.message) from None
    return spec
