"""The statistics page's requests at city scale, through the real API (run by hand).

    .venv/bin/python bench/statistics_page.py [--engine sqlite|postgresql|both]

Builds the city term of bench/statistics.py (200 schools, 400 pairings, 32,000 lessons),
starts the real application on it, and times what /admin/stats asks for one view: GET
/api/v1/statistics by the chosen grouping, by week and by classroom (the page sends the
three at once; the wall time of the three together is what an admin waits), plus the CSV
export and GET /api/v1/alerts, as an admin and as a school admin (whose answers are scoped
to the lessons of their school). Best of 3, over the whole term.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url

from bench.statistics import POSTGRES_URL, build_term
from classroom.config import Settings
from classroom.db import close_database, open_database
from classroom.users import create_user, issue_token
from signaling.app import create_app
from signaling.appkeys import DB

TERM = {"from": "2026-09-01T00:00:00+08:00", "to": "2027-02-01T00:00:00+08:00"}


async def best_of(n: int, make) -> float:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        await make()
        times.append(time.perf_counter() - began)
    return min(times)


async def run(url: str, data_dir: Path) -> None:
    db = await open_database(url)
    try:
        made = await build_term(db, 400, 20, 4)
        print(f"  built: {made['lessons']} lessons, {made['lesson_rooms']} lesson rooms")
    finally:
        await close_database(db)
    settings = Settings(data_dir=data_dir, database_url=url, secret_key=b"b" * 32, scheduler=False)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        headers = {}
        async with client.app[DB]() as s:
            for name, role, school in (("admin", "admin", None), ("school", "school_admin", 1)):
                user = await create_user(
                    s,
                    username=f"bench-{name}",
                    password="bench-password-1",
                    role=role,
                    school_id=school,
                )
                headers[name] = {"Authorization": f"Bearer {await issue_token(s, user, name='b')}"}

        async def get(who: str, path: str, params: dict[str, str]) -> int:
            response = await client.get(f"/api/v1{path}", params=params, headers=headers[who])
            body = await response.read()
            assert response.status == 200, body[:300]
            return len(body)

        for who in ("admin", "school"):
            for by in ("week", "school", "classroom"):
                seconds = await best_of(
                    3, lambda by=by, who=who: get(who, "/statistics", {**TERM, "by": by})
                )
                print(f"  {who:6} one request by {by:9} {seconds * 1000:8.1f} ms")
            for by in ("week", "school", "pairing", "classroom"):
                # As the page asks: the grouping, and by week and by classroom unless the
                # grouping is one of them.
                wanted = dict.fromkeys((by, "week", "classroom"))

                async def view(wanted: dict = wanted, who: str = who) -> None:
                    await asyncio.gather(
                        *(get(who, "/statistics", {**TERM, "by": b}) for b in wanted)
                    )

                seconds = await best_of(3, view)
                print(
                    f"  {who:6} page view by {by:9} {seconds * 1000:8.1f} ms "
                    f"({len(wanted)} requests at once)"
                )
            size = 0

            async def export(who: str = who) -> None:
                nonlocal size
                size = await get(who, "/statistics.csv", {**TERM, "by": "classroom"})

            seconds = await best_of(3, export)
            print(f"  {who:6} CSV by classroom    {seconds * 1000:8.1f} ms ({size:,} bytes)")
            seconds = await best_of(3, lambda who=who: get(who, "/alerts", {}))
            print(f"  {who:6} alerts              {seconds * 1000:8.1f} ms")
    finally:
        await client.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    if args.engine in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            print("SQLite")
            await run(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3", Path(tmp) / "data")
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
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            with tempfile.TemporaryDirectory() as tmp:
                await run(url, Path(tmp) / "data")
        finally:
            conn = await asyncpg.connect(admin_dsn)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
