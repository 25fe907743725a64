"""Terms (学期): the school calendar a timetable runs on, and its arithmetic.

A term has a first and last day, holidays (ranges of days off), make-up workdays (调休: a
day, usually a Saturday or Sunday, that follows another weekday's timetable), and its
periods (节次: period 3 = 09:55–10:40). TermCalendar answers the questions generation
asks — which weekday's timetable runs on a date, which teaching week it is, what instant a
local date and time is — using zoneinfo in the term's zone (Asia/Shanghai by default), so
stored instants are UTC and unambiguous while the timetable stays in wall-clock time.

Terms are district-wide (see classroom/timetable_models.Term): the education bureau's
admins create and edit them; schools read them and schedule series on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.models import Conflict, InvalidInput, NotFound
from classroom.timetable_models import Term, TermHoliday, TermMakeupDay, TermPeriod

MAX_TERM_DAYS = 366
WEEKDAY_NAMES_ZH = ("", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")


@dataclass(frozen=True)
class Holiday:
    start: date
    end: date  # inclusive
    name: str = ""


@dataclass(frozen=True)
class MakeupDay:
    date: date
    follows_weekday: int  # ISO 1..7: this day runs that weekday's timetable
    name: str = ""


@dataclass(frozen=True)
class Period:
    number: int
    starts_at: time
    ends_at: time


@dataclass(frozen=True)
class TermSpec:
    """Everything a term is, as given by an admin: validated by check() before any write."""

    school_year: str
    name: str
    start_date: date
    end_date: date
    timezone: str = "Asia/Shanghai"
    region: str = ""
    holidays: Sequence[Holiday] = ()
    makeup_days: Sequence[MakeupDay] = ()
    periods: Sequence[Period] = ()

    def check(self) -> None:
        """InvalidInput naming the field for anything a calendar cannot be built from."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput.because(
                "unknown_timezone", field="timezone", zone=self.timezone
            ) from None
        if self.end_date < self.start_date:
            raise InvalidInput.because("term_end_before_start", field="end_date")
        if (self.end_date - self.start_date).days >= MAX_TERM_DAYS:
            raise InvalidInput.because("term_too_long", field="end_date", days=MAX_TERM_DAYS)
        for i, h in enumerate(self.holidays):
            where = f"holidays[{i}]"
            if h.end < h.start:
                raise InvalidInput.because("holiday_ends_before_start", field=where, name=h.name)
            if h.end < self.start_date or h.start > self.end_date:
                raise InvalidInput.because(
                    "holiday_outside_term", field=where, name=h.name, start=h.start, end=h.end
                )
        off = _holiday_dates(self.holidays)
        seen: set[date] = set()
        for i, m in enumerate(self.makeup_days):
            where = f"makeup_days[{i}]"
            if not 1 <= m.follows_weekday <= 7:
                raise InvalidInput.because("makeup_weekday_range", field=where)
            if not self.start_date <= m.date <= self.end_date:
                raise InvalidInput.because("makeup_outside_term", field=where, date=m.date)
            if m.date in off:
                raise InvalidInput.because("makeup_in_holiday", field=where, date=m.date)
            if m.date in seen:
                raise InvalidInput.because("makeup_listed_twice", field=where, date=m.date)
            seen.add(m.date)
        numbers: set[int] = set()
        for i, p in enumerate(self.periods):
            where = f"periods[{i}]"
            if p.number < 1:
                raise InvalidInput.because("period_number_from_one", field=where)
            if p.number in numbers:
                raise InvalidInput.because("period_listed_twice", field=where, number=p.number)
            if p.ends_at <= p.starts_at:
                raise InvalidInput.because("period_end_before_start", field=where, number=p.number)
            numbers.add(p.number)
        ordered = sorted(self.periods, key=lambda p: p.starts_at)
        for a, b in pairwise(ordered):
            if b.starts_at < a.ends_at:
                raise InvalidInput.because(
                    "periods_overlap", field="periods", a=a.number, b=b.number
                )


def _holiday_dates(holidays: Sequence[Holiday] | Sequence[TermHoliday]) -> set[date]:
    days: set[date] = set()
    for h in holidays:
        start = h.start if isinstance(h, Holiday) else h.start_date
        end = h.end if isinstance(h, Holiday) else h.end_date
        days.update(start + timedelta(days=n) for n in range((end - start).days + 1))
    return days


# ---------------------------------------------------------------- calendar


@dataclass(frozen=True)
class TermCalendar:
    """A term's days, weeks, periods and zone, detached from the database session."""

    term_id: int
    name: str
    start: date
    end: date
    zone: ZoneInfo
    holidays: tuple[Holiday, ...] = ()
    makeup: Mapping[date, MakeupDay] = field(default_factory=dict)
    periods: Mapping[int, Period] = field(default_factory=dict)
    _off: frozenset[date] = frozenset()
    # weekday (1..7) -> the term's dates that run that weekday's timetable, in order
    _days_by_weekday: Mapping[int, tuple[date, ...]] = field(default_factory=dict)
    # (date, time) -> instant: a city's term asks for the same few hundred tens of
    # thousands of times
    _instants: dict[tuple[date, time], datetime] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, term: Term) -> TermCalendar:
        holidays = tuple(Holiday(h.start_date, h.end_date, h.name) for h in term.holidays)
        makeup = {m.date: MakeupDay(m.date, m.follows_weekday, m.name) for m in term.makeup_days}
        periods = {p.number: Period(p.number, p.starts_at, p.ends_at) for p in term.periods}
        off = frozenset(_holiday_dates(holidays))
        by_weekday: dict[int, list[date]] = {w: [] for w in range(1, 8)}
        day = term.start_date
        while day <= term.end_date:
            if day not in off:
                follows = makeup[day].follows_weekday if day in makeup else day.isoweekday()
                by_weekday[follows].append(day)
            day += timedelta(days=1)
        return cls(
            term_id=term.id,
            name=term.name,
            start=term.start_date,
            end=term.end_date,
            zone=ZoneInfo(term.timezone),
            holidays=holidays,
            makeup=makeup,
            periods=periods,
            _off=off,
            _days_by_weekday={w: tuple(days) for w, days in by_weekday.items()},
        )

    def is_holiday(self, day: date) -> bool:
        return day in self._off

    def timetable_weekday(self, day: date) -> int | None:
        """Which weekday's timetable runs on `day` (1..7); None outside the term or on a
        holiday. A make-up day runs the weekday it follows, not its own."""
        if not self.start <= day <= self.end or day in self._off:
            return None
        made_up = self.makeup.get(day)
        return made_up.follows_weekday if made_up else day.isoweekday()

    def days_running(self, weekday: int) -> tuple[date, ...]:
        """The term's dates that run `weekday`'s timetable: holidays skipped, make-up
        days included."""
        return self._days_by_weekday.get(weekday, ())

    def week_of(self, day: date) -> int:
        """Teaching week, 1 for the (Monday-based) week holding the term's first day."""
        first_monday = self.start - timedelta(days=self.start.weekday())
        return (day - first_monday).days // 7 + 1

    def period(self, number: int) -> Period:
        try:
            return self.periods[number]
        except KeyError:
            known = ", ".join(str(n) for n in sorted(self.periods)) or "none"
            raise InvalidInput.because(
                "no_such_period", field="period", term=self.name, number=number, known=known
            ) from None

    def instant(self, day: date, at: time) -> datetime:
        """The UTC instant of local `day` `at` in the term's zone.

        A wall-clock time that does not exist that day (skipped by a DST change; never in
        Asia/Shanghai, which has had no DST since 1991) is refused rather than shifted.
        An ambiguous one (repeated by a DST change) is its first occurrence.
        """
        cached = self._instants.get((day, at))
        if cached is not None:
            return cached
        local = datetime.combine(day, at, tzinfo=self.zone)
        instant = local.astimezone(UTC)
        if instant.astimezone(self.zone).replace(tzinfo=None) != local.replace(tzinfo=None):
            raise InvalidInput.because(
                "no_such_local_time",
                field="start_time",
                when=f"{day} {at:%H:%M}",
                zone=self.zone.key,
            )
        self._instants[(day, at)] = instant
        return instant

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)

    @property
    def first_instant(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=self.zone).astimezone(UTC)

    @property
    def last_instant(self) -> datetime:
        after = self.end + timedelta(days=1)
        return datetime.combine(after, time(0), tzinfo=self.zone).astimezone(UTC)


def school_days(calendar: TermCalendar) -> Iterator[tuple[date, int]]:
    """(date, weekday whose timetable runs) for every school day of the term, in order."""
    day = calendar.start
    while day <= calendar.end:
        weekday = calendar.timetable_weekday(day)
        if weekday is not None:
            yield day, weekday
        day += timedelta(days=1)


# --------------------------------------------------------------- storage


async def create_term(db: AsyncSession, spec: TermSpec) -> Term:
    """Create a term with its calendar; commits. Conflict if the region has that name."""
    spec.check()
    term = Term(
        school_year=spec.school_year,
        name=spec.name,
        region=spec.region,
        start_date=spec.start_date,
        end_date=spec.end_date,
        timezone=spec.timezone,
    )
    _apply_calendar(term, spec)
    db.add(term)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise Conflict.because(
            "term_name_taken", field="name", region=spec.region, name=spec.name
        ) from None
    return await load_term(db, term.id)


async def load_term(db: AsyncSession, term_id: int) -> Term:
    """The term with its holidays, make-up days and periods; NotFound if there is none."""
    term = await db.get(Term, term_id, populate_existing=True)
    if term is None:
        raise NotFound.because("term_not_found", field="term_id", id=term_id)
    return term


async def list_terms(db: AsyncSession, *, region: str | None = None) -> list[Term]:
    query = sa.select(Term).order_by(Term.start_date.desc(), Term.id)
    if region is not None:
        query = query.where(Term.region == region)
    return list((await db.scalars(query)).all())


async def calendar_of(db: AsyncSession, term_id: int) -> TermCalendar:
    return TermCalendar.of(await load_term(db, term_id))


def replace_calendar(term: Term, spec: TermSpec) -> None:
    """Give `term` everything in `spec` (dates, zone, holidays, make-up days, periods).

    Does not commit: the caller regenerates the term's series in the same transaction, so
    a calendar change that would double-book is refused as a whole.
    """
    spec.check()
    term.school_year = spec.school_year
    term.name = spec.name
    term.region = spec.region
    term.start_date = spec.start_date
    term.end_date = spec.end_date
    term.timezone = spec.timezone
    _apply_calendar(term, spec)


def _apply_calendar(term: Term, spec: TermSpec) -> None:
    # Periods and make-up days are unique per term (number, date): rows are updated in
    # place by that key, because the unit of work inserts before it deletes.
    term.holidays = [
        TermHoliday(name=h.name, start_date=h.start, end_date=h.end) for h in spec.holidays
    ]
    old_days = {m.date: m for m in term.makeup_days} if term.id else {}
    days = []
    for m in spec.makeup_days:
        row = old_days.get(m.date) or TermMakeupDay(date=m.date)
        row.follows_weekday, row.name = m.follows_weekday, m.name
        days.append(row)
    term.makeup_days = days
    old_periods = {p.number: p for p in term.periods} if term.id else {}
    periods = []
    for p in spec.periods:
        period = old_periods.get(p.number) or TermPeriod(number=p.number)
        period.starts_at, period.ends_at = p.starts_at, p.ends_at
        periods.append(period)
    term.periods = periods


def spec_of(term: Term) -> TermSpec:
    """The term as a TermSpec (to change one part and replace the whole)."""
    return TermSpec(
        school_year=term.school_year,
        name=term.name,
        start_date=term.start_date,
        end_date=term.end_date,
        timezone=term.timezone,
        region=term.region,
        holidays=tuple(Holiday(h.start_date, h.end_date, h.name) for h in term.holidays),
        makeup_days=tuple(MakeupDay(m.date, m.follows_weekday, m.name) for m in term.makeup_days),
        periods=tuple(Period(p.number, p.starts_at, p.ends_at) for p in term.periods),
    )
