"""常态化 statistics at city scale: how long the statistics queries take on a full term.

    .venv/bin/python bench/statistics.py [--engine sqlite|postgresql|both] [--pairings 400]
                                         [--weeks 20] [--per-week 4]

Builds one term of a city (issue 6's benchmark: 200 schools, 400 pairings, 4 lessons a
week each, 20 teaching weeks = 32,000 lessons with 1-4 receiving rooms each), with the
rows the live side writes (attendance) and the summaries classroom/lesson_stats.py
stores, inserted in bulk (not through the API: this measures reading). Then times:
- `statistics(by=...)` over the whole term for each grouping (best of 3);
- the same filtered to one school, and to one term through its timetable;
- `lessons_due_for_summary` (the server's sweep, every minute);
- `summarise_lesson` of a 45-minute 1拖4 lesson sampled every 10 s (2,700 samples);
- `insert_samples` of one flush of a busy server (100 lessons x 5 rooms x 2 directions).
PostgreSQL: a throwaway database on $TONGBU_TEST_POSTGRES_URL (default the test server).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from classroom.db import close_database, open_database
from classroom.lesson_stats import (
    GROUPINGS,
    lessons_due_for_summary,
    statistics,
    summarise_lesson,
)
from classroom.link_samples import Sample, insert_samples
from classroom.models import (
    Classroom,
    Lesson,
    LessonRoom,
    Pairing,
    PairingMember,
    Recording,
    RoomSession,
    School,
)
from classroom.statistics_models import LessonRoomStats, LessonStats
from classroom.timetable_models import LessonSeries, SeriesOccurrence, Term

POSTGRES_URL = os.environ.get(
    "TONGBU_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BEIJING = timezone(timedelta(hours=8))
TERM_START = date(2026, 9, 7)  # a Monday


async def build_term(db, pairings: int, weeks: int, per_week: int) -> dict[str, int]:
    """Insert one term of a city in bulk; returns what was made."""
    rng = random.Random(6)
    now = datetime.now(UTC)
    city_schools, rural_schools = pairings // 10, pairings * 2 // 5
    rows: dict[str, list[dict]] = {}
    rows["schools"] = [
        {
            "id": i + 1,
            "name": f"城区学校{i + 1}",
            "kind": "city",
            "region": "",
            "timezone": "Asia/Shanghai",
            "created_at": now,
        }
        for i in range(city_schools)
    ] + [
        {
            "id": city_schools + i + 1,
            "name": f"乡村学校{i + 1}",
            "kind": "rural",
            "region": "",
            "timezone": "Asia/Shanghai",
            "created_at": now,
        }
        for i in range(rural_schools)
    ]
    classrooms = []
    for p in range(pairings):  # one main classroom per pairing, ten per city school
        classrooms.append(
            {"id": p + 1, "school_id": p // 10 + 1, "name": f"主讲{p % 10}", "created_at": now}
        )
    rural_rooms = []
    for r in range(rural_schools * 4):
        cid = pairings + r + 1
        rural_rooms.append(cid)
        classrooms.append(
            {
                "id": cid,
                "school_id": city_schools + r // 4 + 1,
                "name": f"听课{r % 4}",
                "created_at": now,
            }
        )
    rows["classrooms"] = classrooms
    rows["pairings"], members = [], []
    receiving_of: dict[int, list[int]] = {}
    for p in range(pairings):
        pid = p + 1
        rows["pairings"].append(
            {"id": pid, "name": f"结对{pid}", "main_classroom_id": pid, "created_at": now}
        )
        receiving_of[pid] = [rural_rooms[(p * 3 + k) % len(rural_rooms)] for k in range(p % 4 + 1)]
        members += [
            {"pairing_id": pid, "classroom_id": c, "position": k + 1}
            for k, c in enumerate(receiving_of[pid])
        ]
    rows["pairing_members"] = members

    term_id = 1
    rows["terms"] = [
        {
            "id": term_id,
            "school_year": "2026-2027",
            "name": "2026秋",
            "region": "",
            "start_date": TERM_START,
            "end_date": TERM_START + timedelta(weeks=weeks) - timedelta(days=1),
            "timezone": "Asia/Shanghai",
            "created_at": now,
        }
    ]
    rows["lesson_series"], rows["lessons"], rows["lesson_rooms"] = [], [], []
    rows["series_occurrences"], rows["room_sessions"], rows["recordings"] = [], [], []
    rows["lesson_stats"], rows["lesson_room_stats"] = [], []
    lesson_id = series_id = 0
    for p in range(pairings):
        pid = p + 1
        for weekday in range(1, per_week + 1):
            series_id += 1
            hour = 8 + (p % 8)
            rows["lesson_series"].append(
                {
                    "id": series_id,
                    "term_id": term_id,
                    "pairing_id": pid,
                    "kind": "dedicated",
                    "subject": "数学",
                    "grade": "初二",
                    "title": "一次函数",
                    "teacher_name": f"老师{pid}",
                    "teacher_user_id": None,
                    "broadcast": False,
                    "weekday": weekday,
                    "period": hour - 7,
                    "start_time": None,
                    "end_time": None,
                    "week_parity": "all",
                    "first_date": None,
                    "last_date": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for week in range(weeks):
                lesson_id += 1
                day = TERM_START + timedelta(weeks=week, days=weekday - 1)
                start = datetime(day.year, day.month, day.day, hour, 0, tzinfo=BEIJING)
                end = start + timedelta(minutes=45)
                roll = rng.random()
                state = "ended" if roll < 0.9 else "cancelled" if roll < 0.95 else "scheduled"
                rows["lessons"].append(
                    {
                        "id": lesson_id,
                        "pairing_id": pid,
                        "kind": "dedicated",
                        "subject": "数学",
                        "grade": "初二",
                        "teacher_name": f"老师{pid}",
                        "title": "一次函数",
                        "planned_start": start,
                        "planned_end": end,
                        "broadcast": False,
                        "state": state,
                        "opened_at": None,
                        "started_at": None,
                        "ended_at": end if state != "scheduled" else None,
                        "end_reason": None,
                        "created_at": now,
                        "teacher_user_id": None,
                    }
                )
                rows["series_occurrences"].append(
                    {
                        "lesson_id": lesson_id,
                        "series_id": series_id,
                        "occurrence_date": day,
                        "changed": False,
                        "fingerprint": "",
                    }
                )
                rooms = [(pid, "main"), *((c, "receiving") for c in receiving_of[pid])]
                for position, (cid, role) in enumerate(rooms):
                    rows["lesson_rooms"].append(
                        {
                            "lesson_id": lesson_id,
                            "classroom_id": cid,
                            "role": role,
                            "position": position,
                        }
                    )
                verdict = {"ended": "held", "cancelled": "cancelled"}.get(state, "missed")
                late = state == "ended" and rng.random() < 0.08
                if state == "ended" and rng.random() < 0.1:
                    verdict = "partial"
                if verdict == "held":
                    rows["recordings"].append(
                        {
                            "lesson_id": lesson_id,
                            "title": "一次函数",
                            "kind": "dedicated",
                            "subject": "数学",
                            "grade": "初二",
                            "teacher_name": f"老师{pid}",
                            "main_school_id": None,
                            "main_school": "",
                            "receiving_schools": [],
                            "started_at": start,
                            "duration_s": 2700.0,
                            "term": "2026秋",
                            "state": "ready",
                            "published": False,
                            "search_text": "",
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                rows["lesson_stats"].append(
                    {
                        "lesson_id": lesson_id,
                        "computed_at": now,
                        "verdict": verdict,
                        "late": late,
                        "planned_s": 2700.0,
                        "together_s": 2600.0 if verdict == "held" else 600.0,
                        "main_first_join_at": start if state == "ended" else None,
                        "main_lateness_s": 400.0 if late else -60.0,
                        "rooms_planned": len(rooms),
                        "rooms_joined": len(rooms) if state == "ended" else 0,
                        "reconnects": 1,
                        "drops": 1,
                    }
                )
                for cid, role in rooms:
                    joined = state == "ended"
                    if joined:
                        rows["room_sessions"].append(
                            {
                                "lesson_id": lesson_id,
                                "classroom_id": cid,
                                "role": role,
                                "joined_at": start - timedelta(minutes=1),
                                "left_at": end,
                                "end_reason": "ended",
                                "reconnects": 0,
                                "cause": "lesson_ended",
                            }
                        )
                    rows["lesson_room_stats"].append(
                        {
                            "lesson_id": lesson_id,
                            "classroom_id": cid,
                            "role": role,
                            "attendance_s": 2650.0 if joined else 0.0,
                            "connected_s": 2710.0 if joined else 0.0,
                            "first_join_at": start if joined else None,
                            "lateness_s": -60.0 if joined else None,
                            "reconnects": rng.choice((0, 0, 0, 1)),
                            "drops": rng.choice((0, 0, 1)),
                            "samples": 270 if joined else 0,
                            "up_bitrate_mean_kbps": rng.uniform(600, 1500) if joined else None,
                            "up_bitrate_p95_kbps": 1800.0 if joined else None,
                            "down_bitrate_mean_kbps": rng.uniform(600, 2000) if joined else None,
                            "down_bitrate_p95_kbps": 2200.0 if joined else None,
                            "up_loss": rng.uniform(0, 0.03) if joined else None,
                            "down_loss": rng.uniform(0, 0.03) if joined else None,
                            "up_jitter_ms": 5.0 if joined else None,
                            "down_jitter_ms": 6.0 if joined else None,
                            "rtt_mean_ms": rng.uniform(10, 80) if joined else None,
                            "rtt_p95_ms": 120.0 if joined else None,
                            "up_freezes": rng.choice((0, 0, 1, 3)),
                            "up_freeze_s": 1.5,
                            "down_freezes": rng.choice((0, 0, 1, 3)),
                            "down_freeze_s": 1.5,
                        }
                    )
    tables = [
        School,
        Classroom,
        Pairing,
        PairingMember,
        Term,
        LessonSeries,
        Lesson,
        LessonRoom,
        SeriesOccurrence,
        RoomSession,
        Recording,
        LessonStats,
        LessonRoomStats,
    ]
    async with db() as s:
        for model in tables:
            batch = rows[model.__tablename__]
            for i in range(0, len(batch), 5000):
                await s.execute(sa.insert(model), batch[i : i + 5000])
        if s.bind.dialect.name == "postgresql":
            for model in tables:
                if "id" in model.__table__.c:
                    table = model.__tablename__
                    await s.execute(
                        sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )
            await s.execute(sa.text("ANALYZE"))
        await s.commit()
    return {name: len(batch) for name, batch in rows.items()}


async def best_of(n: int, make) -> float:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        await make()
        times.append(time.perf_counter() - began)
    return min(times)


async def run(url: str, args: argparse.Namespace) -> None:
    db = await open_database(url)
    try:
        began = time.perf_counter()
        made = await build_term(db, args.pairings, args.weeks, args.per_week)
        print(
            f"  built in {time.perf_counter() - began:.1f} s: {made['lessons']} lessons, "
            f"{made['lesson_rooms']} lesson rooms, {made['room_sessions']} attendance rows"
        )
        start = datetime(2026, 9, 1, tzinfo=BEIJING)
        end = datetime(2027, 2, 1, tzinfo=BEIJING)
        later = end + timedelta(days=1)
        async with db() as s:
            for by in GROUPINGS:
                result: list = []

                async def query(by: str = by, result: list = result) -> None:
                    result[:] = await statistics(s, by, start=start, end=end, now=later)

                seconds = await best_of(3, query)
                print(f"  statistics by {by:9} {seconds * 1000:8.1f} ms  ({len(result)} rows)")
            seconds = await best_of(3, lambda: statistics(s, "week", school_id=1, now=later))
            print(f"  one school by week     {seconds * 1000:8.1f} ms")
            seconds = await best_of(3, lambda: statistics(s, "pairing", term_id=1, now=later))
            print(f"  one term by pairing    {seconds * 1000:8.1f} ms")
            seconds = await best_of(3, lambda: lessons_due_for_summary(s, now=later))
            print(f"  summaries due (sweep)  {seconds * 1000:8.1f} ms")

            lesson_id = 1
            joined = datetime(2026, 9, 7, 8, 0, tzinfo=BEIJING)
            samples = [
                Sample(
                    lesson_id,
                    cid,
                    joined + timedelta(seconds=10 * k),
                    d,
                    10.0,
                    900.0,
                    800,
                    2,
                    4.0,
                    30.0,
                    0,
                    0,
                    0,
                )
                for k in range(270)
                for cid in range(1, 6)
                for d in ("up", "down")
            ]
            await insert_samples(s, samples)
            seconds = await best_of(3, lambda: summarise_lesson(s, lesson_id, now=later))
            print(f"  summarise one lesson   {seconds * 1000:8.1f} ms  ({len(samples)} samples)")
            flush = [
                Sample(
                    2 + k // 10,
                    1 + k % 5,
                    later,
                    ("up", "down")[k % 2],
                    10.0,
                    900.0,
                    800,
                    2,
                    4.0,
                    30.0,
                    0,
                    0,
                    0,
                )
                for k in range(1000)
            ]
            seconds = await best_of(3, lambda: insert_samples(s, flush))
            print(f"  insert 1,000 samples   {seconds * 1000:8.1f} ms")
    finally:
        await close_database(db)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pairings", type=int, default=400)
    parser.add_argument("--weeks", type=int, default=20)
    parser.add_argument("--per-week", type=int, default=4)
    args = parser.parse_args()
    if args.engine in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            print("SQLite")
            await run(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", args)
    if args.engine in ("postgresql", "both"):
        name = f"tongbu_bench_{secrets.token_hex(4)}"
        admin_dsn = (
            make_url(POSTGRES_URL)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        try:
            print("PostgreSQL")
            await run(
                make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False),
                args,
            )
        finally:
            conn = await asyncpg.connect(admin_dsn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
