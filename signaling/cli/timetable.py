"""`tongbu term ...`: terms, CSV import, generation, double-booking checks and feeds from
the command line (registered in signaling/cli/main.py's SUBCOMMANDS).

Same domain calls as the REST API, run on the database directly, for an admin at the
server: `tongbu term import 课表.csv --term 3` is the whole of "plan the term".
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import date, time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from signaling.cli.settings import add_settings_arguments, settings_from_args

if TYPE_CHECKING:
    from classroom.terms import Holiday, MakeupDay, Period


def add_term_parser(subparsers: argparse._SubParsersAction) -> None:
    term = subparsers.add_parser("term", help="term timetables: create, import CSV, generate")
    commands = term.add_subparsers(dest="term_command", required=True)

    listing = commands.add_parser("list", help="list terms")
    add_settings_arguments(listing)
    listing.set_defaults(handler=_list)

    create = commands.add_parser("create", help="create a term with its calendar and periods")
    create.add_argument("--school-year", required=True, help="e.g. 2026-2027")
    create.add_argument("--name", required=True, help="e.g. 2026秋")
    create.add_argument("--start", required=True, type=date.fromisoformat, help="first day")
    create.add_argument("--end", required=True, type=date.fromisoformat, help="last day")
    create.add_argument("--timezone", default="Asia/Shanghai")
    create.add_argument("--region", default="")
    create.add_argument(
        "--holiday",
        action="append",
        default=[],
        metavar="FROM..TO[:NAME]",
        help="days off, e.g. 2026-10-01..2026-10-07:国庆节 (repeatable)",
    )
    create.add_argument(
        "--makeup",
        action="append",
        default=[],
        metavar="DATE=WEEKDAY[:NAME]",
        help="调休: DATE runs WEEKDAY's timetable (1=Monday), e.g. 2026-10-10=3 (repeatable)",
    )
    create.add_argument(
        "--period",
        action="append",
        default=[],
        metavar="N=HH:MM-HH:MM",
        help="节次, e.g. 3=09:55-10:40 (repeatable)",
    )
    add_settings_arguments(create)
    create.set_defaults(handler=_create)

    imp = commands.add_parser("import", help="import a term's timetable from CSV (all or nothing)")
    imp.add_argument("file", type=Path, help="CSV: UTF-8 (BOM or not), GB18030/GBK or UTF-16")
    imp.add_argument("--term", type=int, required=True, help="term id")
    imp.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    add_settings_arguments(imp)
    imp.set_defaults(handler=_import)

    gen = commands.add_parser("generate", help="bring every series' lessons up to date")
    gen.add_argument("--term", type=int, required=True)
    gen.add_argument("--dry-run", action="store_true")
    add_settings_arguments(gen)
    gen.set_defaults(handler=_generate)

    clashes = commands.add_parser("clashes", help="list double bookings during a term")
    clashes.add_argument("--term", type=int, required=True)
    add_settings_arguments(clashes)
    clashes.set_defaults(handler=_clashes)

    feed = commands.add_parser("feed", help="issue an iCalendar feed URL")
    who = feed.add_mutually_exclusive_group(required=True)
    who.add_argument("--classroom", type=int, help="classroom id")
    who.add_argument("--teacher", help="teacher's username")
    feed.add_argument("--name", default="")
    feed.add_argument(
        "--base-url",
        default="http://127.0.0.1:8080",
        help="the server's address as subscribers see it",
    )
    add_settings_arguments(feed)
    feed.set_defaults(handler=_feed)


def _run(args: argparse.Namespace, work: Callable[[AsyncSession], Awaitable[int]]) -> int:
    """Open the database, run `work`, print domain refusals as `tongbu: ...`, exit 1."""
    from classroom.db import close_database, open_database
    from classroom.models import DomainError

    async def run() -> int:
        sessionmaker = await open_database(settings_from_args(args).resolved_database_url)
        try:
            async with sessionmaker() as db:
                return await work(db)
        except DomainError as exc:
            print(f"tongbu: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await close_database(sessionmaker)

    return asyncio.run(run())


def _list(args: argparse.Namespace) -> int:
    from classroom import terms

    async def work(db: AsyncSession) -> int:
        for term in await terms.list_terms(db):
            print(
                f"{term.id}\t{term.school_year}\t{term.name}\t{term.start_date}..{term.end_date}"
                f"\t{term.timezone}\t{term.region}"
            )
        return 0

    return _run(args, work)


def _parse_holiday(text: str) -> Holiday:
    from classroom.terms import Holiday

    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)(?:\.\.(\d{4}-\d\d-\d\d))?(?::(.*))?", text)
    if not match:
        raise SystemExit(f"tongbu: --holiday {text!r}: use FROM..TO[:NAME]")
    start = date.fromisoformat(match[1])
    return Holiday(start, date.fromisoformat(match[2]) if match[2] else start, match[3] or "")


def _parse_makeup(text: str) -> MakeupDay:
    from classroom.terms import MakeupDay

    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)=([1-7])(?::(.*))?", text)
    if not match:
        raise SystemExit(f"tongbu: --makeup {text!r}: use DATE=WEEKDAY[:NAME]")
    return MakeupDay(date.fromisoformat(match[1]), int(match[2]), match[3] or "")


def _parse_period(text: str) -> Period:
    from classroom.terms import Period

    match = re.fullmatch(r"(\d{1,2})=(\d\d:\d\d)-(\d\d:\d\d)", text)
    if not match:
        raise SystemExit(f"tongbu: --period {text!r}: use N=HH:MM-HH:MM")
    return Period(int(match[1]), time.fromisoformat(match[2]), time.fromisoformat(match[3]))


def _create(args: argparse.Namespace) -> int:
    from classroom import audit, terms
    from classroom.terms import TermSpec

    spec = TermSpec(
        school_year=args.school_year,
        name=args.name,
        start_date=args.start,
        end_date=args.end,
        timezone=args.timezone,
        region=args.region,
        holidays=tuple(_parse_holiday(h) for h in args.holiday),
        makeup_days=tuple(_parse_makeup(m) for m in args.makeup),
        periods=tuple(_parse_period(p) for p in args.period),
    )

    async def work(db: AsyncSession) -> int:
        term = await terms.create_term(db, spec)
        await audit.record(db, "cli", "term.created", f"term:{term.id}", {"name": term.name})
        print(f"created term {term.id} {term.name} ({term.start_date}..{term.end_date})")
        return 0

    return _run(args, work)


def _import(args: argparse.Namespace) -> int:
    from classroom import audit, timetable_csv

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"tongbu: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1

    async def work(db: AsyncSession) -> int:
        try:
            report = await timetable_csv.import_timetable(db, args.term, data, dry_run=args.dry_run)
        except timetable_csv.ImportRejected as exc:
            print(f"tongbu: {exc.message}", file=sys.stderr)
            for e in exc.errors:
                column = f" [{e.column}]" if e.column else ""
                print(f"  line {e.line}{column}: {e.message}", file=sys.stderr)
            return 1
        if not args.dry_run:
            await audit.record(
                db,
                "cli",
                "term.imported",
                f"term:{args.term}",
                {"series": report.series_created, "lessons": report.lessons_created},
            )
        verb = "would create" if args.dry_run else "created"
        print(
            f"{report.rows} rows: {verb} {report.series_created} series and "
            f"{report.lessons_created} lessons"
        )
        return 0

    return _run(args, work)


def _generate(args: argparse.Namespace) -> int:
    from classroom import timetable

    async def work(db: AsyncSession) -> int:
        r = await timetable.regenerate_term(db, args.term, write=not args.dry_run)
        print(
            f"created {r.created}, updated {r.updated}, removed {r.removed}, "
            f"unchanged {r.unchanged}, kept {r.kept}" + (" (dry run)" if args.dry_run else "")
        )
        return 0

    return _run(args, work)


def _clashes(args: argparse.Namespace) -> int:
    from classroom import conflicts, terms

    async def work(db: AsyncSession) -> int:
        calendar = await terms.calendar_of(db, args.term)
        found = await conflicts.audit_window(db, calendar.first_instant, calendar.last_instant)
        for message in await conflicts.clash_messages(db, found, calendar.zone):
            print(message)
        print(f"{len(found)} double booking(s) in term {calendar.name}")
        return 1 if found else 0

    return _run(args, work)


def _feed(args: argparse.Namespace) -> int:
    from classroom import audit, ical
    from classroom.users import get_user_by_name

    async def work(db: AsyncSession) -> int:
        if args.teacher:
            user = await get_user_by_name(db, args.teacher)
            if user is None:
                print(f"tongbu: no user {args.teacher!r}", file=sys.stderr)
                return 1
            issued = await ical.create_feed(
                db, kind="teacher", teacher_user_id=user.id, name=args.name
            )
        else:
            issued = await ical.create_feed(
                db, kind="classroom", classroom_id=args.classroom, name=args.name
            )
        await audit.record(db, "cli", "feed.created", f"feed:{issued.feed.id}", {})
        base = args.base_url.rstrip("/")
        print(f"{base}/api/v1/feeds/calendar.ics?token={issued.token}")
        return 0

    return _run(args, work)
