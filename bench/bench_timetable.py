"""A city's term timetable: generation and double-booking checks on SQLite and PostgreSQL.

The city (issue 6's benchmark): 200 schools (50 city, 150 rural), 400 pairings, each
teaching 4 lessons a week for a term of 20 teaching weeks (2026 autumn: 国庆 and 元旦 off,
two 调休 days). Each pairing is a city room and two rural rooms; every rural room takes
lessons from two city rooms (periods 1-4 from one, 5-7 from the other), so rooms are
shared and the sweep has real neighbours to compare. 1600 series, about 30,000 lessons
and 90,000 lesson rooms.

Timed, each on a fresh database:
- generation: every series' lessons created from nothing (plan, check for double
  bookings against the database and between themselves, bulk insert), committed;
- regeneration: the same again, nothing to do (load what is there, compare, write none);
- conflict check (term): the term-wide sweep over every booking on the calendar
  (conflicts.audit_window: the `GET /terms/{id}/clashes` check);
- conflict check (change): every period moved 5 minutes, so every lesson to come would
  move: all ~30,000 proposals checked against the calendar, nothing written (dry run);
- one ad-hoc lesson's check in the full calendar (the POST /lessons path).

    .venv/bin/python bench/bench_timetable.py                 # both engines
    .venv/bin/python bench/bench_timetable.py --engines sqlite --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench._harness import cpu_seconds, loadavg, machine
from classroom import conflicts, lessons, terms, timetable
from classroom.db import close_database, open_database
from classroom.models import Classroom, Lesson, LessonRoom, Pairing, PairingMember, School
from classroom.terms import Period, TermCalendar
from classroom.timetable_models import LessonSeries, Term
from tests.timetable_helpers import AUTUMN_2026, BEFORE_TERM

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
CITY_SCHOOLS, RURAL_SCHOOLS, PAIRINGS, PER_WEEK = 50, 150, 400, 4


async def build_city(db: AsyncSession) -> int:
    """Schools, rooms, pairings and 1600 series, inserted in bulk (not timed)."""
    term_id = (await terms.create_term(db, AUTUMN_2026)).id
    now = datetime.now(UTC)
    schools = [
        {
            "name": f"城区{i + 1}中",
            "kind": "city",
            "region": "城关区",
            "timezone": "Asia/Shanghai",
            "created_at": now,
        }
        for i in range(CITY_SCHOOLS)
    ] + [
        {
            "name": f"乡村{i + 1}小",
            "kind": "rural",
            "region": "城关区",
            "timezone": "Asia/Shanghai",
            "created_at": now,
        }
        for i in range(RURAL_SCHOOLS)
    ]
    school_ids = list(
        (
            await db.scalars(
                sa.insert(School).returning(School.id, sort_by_parameter_order=True), schools
            )
        ).all()
    )
    city, rural = school_ids[:CITY_SCHOOLS], school_ids[CITY_SCHOOLS:]
    rural_rooms_needed = PAIRINGS  # each receives from two pairings, each pairing has two
    rooms = [
        {"school_id": city[i % CITY_SCHOOLS], "name": f"主讲{i}", "created_at": now}
        for i in range(PAIRINGS)
    ]
    rooms += [
        {"school_id": rural[i % RURAL_SCHOOLS], "name": f"听课{i}", "created_at": now}
        for i in range(rural_rooms_needed)
    ]
    room_ids = list(
        (
            await db.scalars(
                sa.insert(Classroom).returning(Classroom.id, sort_by_parameter_order=True), rooms
            )
        ).all()
    )
    mains, receiving = room_ids[:PAIRINGS], room_ids[PAIRINGS:]
    pairing_ids = list(
        (
            await db.scalars(
                sa.insert(Pairing).returning(Pairing.id, sort_by_parameter_order=True),
                [
                    {"name": f"结对{p}", "main_classroom_id": mains[p], "created_at": now}
                    for p in range(PAIRINGS)
                ],
            )
        ).all()
    )
    half = PAIRINGS // 2
    members = []
    for p, pid in enumerate(pairing_ids):
        # pairing p and p+200 share both rural rooms; p < 200 teaches periods 1-4, the
        # others 5-7, so the shared rooms are busy all day and never twice at once.
        a, b = receiving[p % half * 2], receiving[p % half * 2 + 1]
        members += [
            {"pairing_id": pid, "classroom_id": a, "position": 1},
            {"pairing_id": pid, "classroom_id": b, "position": 2},
        ]
    await db.execute(sa.insert(PairingMember), members)
    series = []
    for p, pid in enumerate(pairing_ids):
        for k in range(PER_WEEK):
            period = 1 + (p + k) % 4 if p < half else 5 + (p + k) % 3
            series.append(
                {
                    "term_id": term_id,
                    "pairing_id": pid,
                    "kind": "dedicated",
                    "subject": "数学",
                    "grade": "初二",
                    "title": f"第{k + 1}课",
                    "teacher_name": f"教师{p}",
                    "teacher_user_id": None,
                    "broadcast": False,
                    "weekday": 1 + (k + p) % 5 if p < half else 1 + (k + p + 1) % 5,
                    "period": period,
                    "week_parity": "all",
                    "created_at": now,
                    "updated_at": now,
                }
            )
    # Rooms shared by p and p+200: p+200 is on other periods, so any weekday is fine.
    await db.execute(sa.insert(LessonSeries), series)
    await db.commit()
    return term_id


async def timed(
    label: str, work: Callable[[], Awaitable[object]], db: AsyncSession
) -> tuple[float, object]:
    """Wall-clock seconds. Also printed: this process's CPU (all its threads, aiosqlite's
    included) and, on PostgreSQL, the CPU of the server backend serving `db` (read from
    /proc: the server runs on this box): together what the work costs whatever else the
    shared box is doing."""
    backend = None
    if db.bind.dialect.name == "postgresql":
        backend = await db.scalar(sa.text("SELECT pg_backend_pid()"))
    server = cpu_seconds(backend) if backend else 0.0
    start, cpu = time.perf_counter(), time.process_time()
    result = await work()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    server = cpu_seconds(backend) - server if backend else 0.0
    extra = f" + server {server * 1000:5.0f} ms" if backend else ""
    print(f"  {label:<36} {elapsed * 1000:6.0f} ms  (cpu {cpu * 1000:5.0f} ms{extra})  {result}")
    return elapsed, result


async def run_once(url: str) -> dict[str, float]:
    sessionmaker: async_sessionmaker[AsyncSession] = await open_database(url)
    figures: dict[str, float] = {}
    try:
        async with sessionmaker() as db:
            term_id = await build_city(db)
        async with sessionmaker() as db:
            figures["generation"], _ = await timed(
                "generation (empty -> term)",
                lambda: timetable.regenerate_term(db, term_id, now=BEFORE_TERM),
                db,
            )
        async with sessionmaker() as db:
            lessons_n = await db.scalar(sa.select(sa.func.count()).select_from(Lesson))
            rooms_n = await db.scalar(sa.select(sa.func.count()).select_from(LessonRoom))
            print(f"  {'':36} {lessons_n} lessons, {rooms_n} lesson rooms")
        async with sessionmaker() as db:
            figures["regeneration"], _ = await timed(
                "regeneration (nothing to do)",
                lambda: timetable.regenerate_term(db, term_id, now=BEFORE_TERM),
                db,
            )
        async with sessionmaker() as db:
            calendar = await terms.calendar_of(db, term_id)

            async def audit() -> str:
                found = await conflicts.audit_window(
                    db, calendar.first_instant, calendar.last_instant
                )
                return f"{len(found)} double bookings"

            figures["check_term"], _ = await timed("conflict check (term sweep)", audit, db)
        async with sessionmaker() as db:
            term = await db.get(Term, term_id)
            assert term is not None
            shifted = replace(
                terms.spec_of(term),
                periods=tuple(
                    Period(
                        p.number,
                        (datetime.combine(BEFORE_TERM, p.starts_at) + timedelta(minutes=5)).time(),
                        (datetime.combine(BEFORE_TERM, p.ends_at) + timedelta(minutes=5)).time(),
                    )
                    for p in term.periods
                ),
            )
            terms.replace_calendar(term, shifted)
            await db.flush()
            moved_calendar = TermCalendar.of(term)
            series = list(
                (
                    await db.scalars(sa.select(LessonSeries).where(LessonSeries.term_id == term_id))
                ).all()
            )
            figures["check_change"], _ = await timed(
                "conflict check (every lesson moves)",
                lambda: timetable.sync_series(
                    db, moved_calendar, series, now=BEFORE_TERM, write=False
                ),
                db,
            )
            await db.rollback()
        async with sessionmaker() as db:
            pairing_id = await db.scalar(sa.select(Pairing.id).order_by(Pairing.id).limit(1))
            free = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai: nobody teaches

            async def one() -> str:
                lesson = await lessons.create_lesson(
                    db,
                    pairing_id=pairing_id,
                    kind="dedicated",
                    subject="数学",
                    grade="初二",
                    teacher_name="教师0",
                    title="答疑",
                    planned_start=free,
                    planned_end=free + timedelta(minutes=40),
                )
                return f"lesson {lesson.id}"

            figures["one_lesson"], _ = await timed("one ad-hoc lesson (check + insert)", one, db)
    finally:
        await close_database(sessionmaker)
    return figures


async def fresh_url(engine: str, tmp: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
    if engine == "sqlite":
        path = tmp / f"bench-{secrets.token_hex(4)}.sqlite3"
        return f"sqlite+aiosqlite:///{path}", _nothing
    name = f"tongbu_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(POSTGRES)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(POSTGRES)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", drop


def median(values: list[float]) -> float:
    # (not `statistics.median`: bench/statistics.py shadows the module for scripts here)
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def _nothing() -> None:
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=1, help="fresh databases per engine")
    args = parser.parse_args()
    print(f"machine: {machine()}; load {loadavg()} at start")
    summary: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            for i in range(args.repeat):
                print(f"{engine} run {i + 1}:")
                url, drop = await fresh_url(engine, Path(tmp))
                try:
                    summary.setdefault(engine, []).append(await run_once(url))
                finally:
                    await drop()
    print(f"\nmedian seconds (wall clock; load {loadavg()} at the end):")
    keys = ["generation", "regeneration", "check_term", "check_change", "one_lesson"]
    print(f"  {'engine':<12}" + "".join(f"{k:>14}" for k in keys))
    for engine, runs in summary.items():
        print(f"  {engine:<12}" + "".join(f"{median([r[k] for r in runs]):14.3f}" for k in keys))


if __name__ == "__main__":
    asyncio.run(main())
