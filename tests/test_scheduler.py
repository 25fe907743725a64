"""The lesson scheduler on a real database (SQLite and PostgreSQL).

Time is passed to `tick(now)`, so a "restart in the middle of the day" is a fresh
scheduler (its own engine, as a new process has) looking at lessons that were left in
whatever state the last process reached.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import lessons, schools
from classroom.config import Settings
from classroom.db import close_database, open_database
from classroom.models import AuditEvent, Lesson, LessonState
from signaling.app import create_app
from signaling.live.lesson import LiveLesson
from signaling.live.registry import LiveLessonRegistry
from signaling.services.scheduler import ACTOR, LessonScheduler

LEAD, GRACE = timedelta(minutes=10), timedelta(minutes=5)
NOW = datetime.now(UTC).replace(microsecond=0)
M = timedelta(minutes=1)

Db = async_sessionmaker[AsyncSession]


async def pairing(db: Db, tag: str) -> int:
    async with db() as s:
        city = await schools.create_school(s, name=f"城关一中{tag}", kind="city")
        main = await schools.create_classroom(s, school_id=city.id, name="主讲教室")
        rural = await schools.create_school(s, name=f"乡村小学{tag}", kind="rural")
        room = await schools.create_classroom(s, school_id=rural.id, name="听课教室")
        made = await schools.create_pairing(
            s, name=f"结对{tag}", main_classroom_id=main.id, receiving_classroom_ids=[room.id]
        )
        return made.id


async def lesson(
    db: Db, pairing_id: int, start: datetime, end: datetime, *, to: list[LessonState] = ()
) -> int:
    """A lesson planned [start, end), moved by hand through `to` (as people or an earlier
    server would have)."""
    async with db() as s:
        made = await lessons.create_lesson(
            s,
            pairing_id=pairing_id,
            kind="dedicated",
            subject="数学",
            grade="初二",
            teacher_name="王老师",
            title=f"课 {start:%H:%M}",
            planned_start=start,
            planned_end=end,
        )
        for state in to:
            await lessons.transition(s, made.id, state)
        return made.id


async def states(db: Db) -> dict[int, tuple[str, str | None, datetime | None]]:
    async with db() as s:
        rows = await s.execute(
            sa.select(Lesson.id, Lesson.state, Lesson.end_reason, Lesson.opened_at)
        )
        return {r.id: (r.state, r.end_reason, r.opened_at) for r in rows}


async def scheduler_events(db: Db) -> list[tuple[str, str, dict[str, Any]]]:
    async with db() as s:
        rows = await s.scalars(
            sa.select(AuditEvent).where(AuditEvent.actor_name == ACTOR).order_by(AuditEvent.id)
        )
        return [(e.target, e.action, e.detail) for e in rows]


async def test_a_restart_catches_up_on_what_is_due_and_does_nothing_twice(
    db: Db, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    p = await pairing(db, "A")
    OPEN, LIVE, CANCELLED = LessonState.OPEN, LessonState.LIVE, LessonState.CANCELLED
    # What a server stopped at 08:00 left behind, seen at NOW (say 09:00).
    missed = await lesson(db, p, NOW - 180 * M, NOW - 135 * M)  # never opened
    untaught = await lesson(db, p, NOW - 120 * M, NOW - 75 * M, to=[OPEN])  # main never came
    overran = await lesson(db, p, NOW - 70 * M, NOW - 25 * M, to=[OPEN, LIVE])
    in_grace = await lesson(db, p, NOW - 22 * M, NOW - 2 * M, to=[OPEN, LIVE])
    due = await lesson(db, p, NOW + 5 * M, NOW + 45 * M)  # opens at NOW - 5 min
    later = await lesson(db, p, NOW + 50 * M, NOW + 95 * M)  # opens at NOW + 40 min
    called_off = await lesson(db, p, NOW - 300 * M, NOW - 255 * M, to=[CANCELLED])

    first = LessonScheduler(db, open_lead=LEAD, end_grace=GRACE)
    with caplog.at_level(logging.INFO, logger="signaling.services.scheduler"):
        taken = await first.tick(NOW)
    assert {(t.lesson_id, t.action) for t in taken} == {
        (missed, "missed"),
        (untaught, "end"),
        (overran, "end"),
        (due, "open"),
    }
    now_states = await states(db)
    assert now_states[missed][:2] == ("ended", "not_held")
    assert now_states[missed][2] is None, "a missed lesson is not opened late"
    assert now_states[untaught][:2] == ("ended", "not_held")
    assert now_states[overran][:2] == ("ended", "scheduled_end")
    assert now_states[in_grace][0] == "live"
    assert now_states[due][0] == "open" and now_states[due][2] == NOW
    assert now_states[later][0] == "scheduled"
    assert now_states[called_off][0] == "cancelled"
    assert f"lesson {overran} live -> ended (scheduled_end)" in caplog.text
    events = await scheduler_events(db)
    assert sorted((target, action) for target, action, _ in events) == sorted(
        [
            (f"lesson:{missed}", "lesson_ended"),
            (f"lesson:{untaught}", "lesson_ended"),
            (f"lesson:{overran}", "lesson_ended"),
            (f"lesson:{due}", "lesson_open"),
        ]
    )
    assert {"from": "scheduled", "auto": True, "reason": "not_held"} in [d for *_, d in events]

    # The server restarts at the same moment: a new process, its own engine.
    again = await open_database(database_url)
    try:
        restarted = LessonScheduler(again, open_lead=LEAD, end_grace=GRACE)
        assert await restarted.tick(NOW) == []
        assert await states(db) == now_states
        assert len(await scheduler_events(db)) == len(events)

        ahead = await restarted.due_actions(NOW)
        assert [(a.lesson_id, a.action) for a in ahead] == [
            (in_grace, "end"),
            (later, "open"),
            (due, "end"),
        ]
        assert ahead[0].due_at == NOW + 3 * M

        # Time passes: the rest happens once each.
        assert [(t.lesson_id, t.action) for t in await restarted.tick(NOW + 3 * M)] == [
            (in_grace, "end")
        ]
        assert [(t.lesson_id, t.action) for t in await restarted.tick(NOW + 40 * M)] == [
            (later, "open")
        ]
        assert await restarted.tick(NOW + 40 * M) == []
        per_lesson = Counter((target, action) for target, action, _ in await scheduler_events(db))
        assert set(per_lesson.values()) == {1}
    finally:
        await close_database(again)


async def test_a_lesson_whose_time_passed_unopened_is_ended_as_not_held(db: Db) -> None:
    """Down from before its opening until after its end (still within the grace): the
    lesson is not opened late for the few minutes left, it is recorded as not held."""
    p = await pairing(db, "M")
    missed = await lesson(db, p, NOW - 45 * M, NOW - 2 * M)
    scheduler = LessonScheduler(db, open_lead=LEAD, end_grace=GRACE)
    assert [(t.lesson_id, t.action, t.reason) for t in await scheduler.tick(NOW)] == [
        (missed, "missed", "not_held")
    ]
    async with db() as s:
        row = await s.get(Lesson, missed)
        assert row is not None
        assert (row.state, row.end_reason, row.opened_at, row.started_at) == (
            "ended",
            "not_held",
            None,
            None,
        )
        assert row.ended_at == NOW
    assert await scheduler_events(db) == [
        (
            f"lesson:{missed}",
            "lesson_ended",
            {"from": "scheduled", "auto": True, "reason": "not_held"},
        )
    ]


async def test_two_schedulers_on_one_database_take_each_step_exactly_once(
    db: Db, database_url: str
) -> None:
    """Two server processes on one database: both see the same lessons due at the same
    moment; the conditional UPDATEs let exactly one of them take each step."""
    expected: dict[int, str] = {}
    for i in range(8):
        p = await pairing(db, f"P{i}")
        expected[await lesson(db, p, NOW - 200 * M, NOW - 155 * M)] = "missed"
        live = await lesson(
            db, p, NOW - 60 * M, NOW - 15 * M, to=[LessonState.OPEN, LessonState.LIVE]
        )
        expected[live] = "end"
        expected[await lesson(db, p, NOW + 2 * M, NOW + 40 * M)] = "open"
    other = await open_database(database_url)
    try:
        a = LessonScheduler(db, open_lead=LEAD, end_grace=GRACE)
        b = LessonScheduler(other, open_lead=LEAD, end_grace=GRACE)
        first, second = await asyncio.gather(a.tick(NOW), b.tick(NOW))
        print(f"scheduler a took {len(first)} steps, b took {len(second)}")
        taken = [(t.lesson_id, t.action) for t in [*first, *second]]
        assert sorted(taken) == sorted(expected.items()), "each step once, none missed"
        # And again, racing: nothing is left to do for either.
        assert await asyncio.gather(a.tick(NOW), b.tick(NOW)) == [[], []]
    finally:
        await close_database(other)
    per_lesson = Counter(target for target, _, _ in await scheduler_events(db))
    assert per_lesson == Counter(f"lesson:{lid}" for lid in expected)


async def test_ending_closes_the_live_lesson_this_process_hosts(db: Db) -> None:
    """The rooms are told and the recording finalised (on_lesson_ended) as by POST /end;
    a lesson ended by another node is closed here on the next pass."""
    registry = LiveLessonRegistry()
    closed: list[tuple[int, str]] = []

    async def lesson_ended(live: LiveLesson, reason: str) -> None:
        closed.append((live.lesson_id, reason))

    registry.on_lesson_ended.append(lesson_ended)
    live_states = [LessonState.OPEN, LessonState.LIVE]
    first = await lesson(db, await pairing(db, "L1"), NOW - 50 * M, NOW - 6 * M, to=live_states)
    second = await lesson(db, await pairing(db, "L2"), NOW - 30 * M, NOW + 15 * M, to=live_states)
    async with db() as s:
        for lesson_id in (first, second):
            roster = await lessons.load_roster(s, lesson_id)
            assert roster is not None
            registry.lessons[lesson_id] = LiveLesson(roster)
    here = LessonScheduler(
        db,
        open_lead=LEAD,
        end_grace=GRACE,
        local_lessons=lambda: list(registry.lessons),
        end_local=registry.end_lesson,
    )
    assert [t.lesson_id for t in await here.tick(NOW)] == [first]
    assert closed == [(first, "scheduled_end")] and list(registry.lessons) == [second]

    # Another node's scheduler (no media here) ends the second lesson ...
    elsewhere = LessonScheduler(db, open_lead=LEAD, end_grace=GRACE)
    assert [t.lesson_id for t in await elsewhere.tick(NOW + 21 * M)] == [second]
    assert list(registry.lessons) == [second]
    # ... and this node, which hosts it, closes it on its next pass without a step of its own.
    assert await here.tick(NOW + 21 * M) == []
    assert closed[-1] == (second, "scheduled_end") and registry.lessons == {}


# ------------------------------------------------------------------- API


@pytest.fixture
async def client(tmp_path: Path, database_url: str) -> Any:
    """The real app with its scheduler off, so the test decides what is due."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=b"test-secret-key-that-is-32-bytes!",
        scheduler=False,
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_a_device_reads_its_own_timetable_and_an_admin_the_schedulers_plan(
    client: TestClient,
) -> None:
    from classroom.users import create_user, issue_token
    from signaling.appkeys import DB

    db = client.app[DB]
    p = await pairing(db, "API")
    upcoming = await lesson(db, p, NOW + 30 * M, NOW + 75 * M)
    running = await lesson(db, p, NOW - 10 * M, NOW + 20 * M, to=[LessonState.OPEN])
    async with db() as s:
        pairing_row = await schools.get_pairing(s, p)
        assert pairing_row is not None
        main_id = pairing_row.main_classroom_id
        rural_id = pairing_row.members[0].classroom_id
        rural_school = (await schools.get_classroom(s, rural_id)).school_id
        other_school = await schools.create_school(s, name="别校", kind="rural")
        other_room = await schools.create_classroom(s, school_id=other_school.id, name="教室")
        device = await create_user(
            s,
            username="box-rural",
            password="correct horse battery",
            role="device",
            school_id=rural_school,
            classroom_id=rural_id,
        )
        admin = await create_user(
            s, username="root", password="correct horse battery", role="admin"
        )
        device_auth = {"Authorization": f"Bearer {await issue_token(s, device)}"}
        admin_auth = {"Authorization": f"Bearer {await issue_token(s, admin)}"}

    async def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        response = await client.get(f"/api/v1{path}", headers=headers)
        return response.status, await response.json()

    status, mine = await get(f"/devices/me/lessons?classroom_id={rural_id}", device_auth)
    assert status == 200, mine
    assert [(i["lesson_id"], i["role"], i["state"]) for i in mine["items"]] == [
        (running, "receiving", "open"),
        (upcoming, "receiving", "scheduled"),
    ]
    assert {i["classroom_id"] for i in mine["items"]} == {rural_id}
    first = mine["items"][1]
    assert datetime.fromisoformat(first["opens_at"]) == NOW + 20 * M
    assert datetime.fromisoformat(first["ends_at"]) == NOW + 80 * M
    assert mine["scheduler"] is False and mine["open_lead_s"] == 600

    # Scoped to the device's classroom: not the main classroom, nor another school's.
    for room in (main_id, other_room.id):
        status, refused = await get(f"/devices/me/lessons?classroom_id={room}", device_auth)
        assert (status, refused["error"]["code"]) == (403, "forbidden")
    status, bad = await get(
        "/devices/me/lessons?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", device_auth
    )
    assert (status, bad["error"]["field"]) == (400, "to")
    status, _ = await get(f"/devices/me/lessons?classroom_id={main_id}", admin_auth)
    assert status == 200
    status, _ = await get("/devices/me/lessons", admin_auth)
    assert status == 400

    status, plan = await get("/scheduler", admin_auth)
    assert status == 200, plan
    assert (plan["enabled"], plan["running"]) == (False, False)
    assert [(a["lesson_id"], a["action"]) for a in plan["next"]] == [
        (upcoming, "open"),
        (running, "end"),
    ]
    status, _ = await get("/scheduler", device_auth)
    assert status == 403


def test_scheduler_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBU_SCHEDULER", "off")
    monkeypatch.setenv("TONGBU_OPEN_LEAD_S", "120")
    monkeypatch.setenv("TONGBU_END_GRACE_S", "30")
    monkeypatch.setenv("TONGBU_SCHEDULER_INTERVAL_S", "1.5")
    settings = Settings.from_env()
    assert (settings.scheduler, settings.open_lead_s, settings.end_grace_s) == (False, 120, 30)
    assert settings.scheduler_interval_s == 1.5
    monkeypatch.setenv("TONGBU_OPEN_LEAD_S", "ten minutes")
    with pytest.raises(ValueError, match="TONGBU_OPEN_LEAD_S"):
        Settings.from_env()
    monkeypatch.setenv("TONGBU_OPEN_LEAD_S", "-5")
    with pytest.raises(ValueError, match="negative"):
        Settings.from_env()
