"""`tongbu term ...` run as a real process against a real database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from classroom.db import close_database, open_database
from tests.test_timetable_csv import GOOD, HEADER, registers


def tongbu(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signaling", *args, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_an_admin_plans_a_term_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    # 2037's calendar is 2026's; a term that far ahead is all still to come.
    created = tongbu(
        database_url,
        "term",
        "create",
        "--school-year",
        "2037-2038",
        "--name",
        "2037秋",
        "--start",
        "2037-09-01",
        "--end",
        "2038-01-15",
        "--holiday",
        "2037-10-01..2037-10-07:国庆节",
        "--makeup",
        "2037-10-10=3:调休",
        *[
            arg
            for p in ("1=08:00-08:45", "3=09:55-10:40", "4=10:50-11:35")
            for arg in ("--period", p)
        ],
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created term 1 2037秋")

    async def setup() -> dict[str, int]:
        sessionmaker = await open_database(database_url)
        try:
            async with sessionmaker() as s:
                return await registers(s)
        finally:
            await close_database(sessionmaker)

    ids = asyncio.run(setup())
    bad = tmp_path / "课表-有错.csv"
    bad.write_bytes(
        (HEADER + GOOD + "星期八,3,数学,初二,城关一中/301,听课一、听课二,王芳,复习,\n").encode(
            "gb18030"
        )
    )
    refused = tongbu(database_url, "term", "import", str(bad), "--term", "1")
    assert refused.returncode == 1
    assert "1 row(s) of the timetable are refused (lines 4); nothing was imported" in refused.stderr
    assert "line 4 [星期]: '星期八' is not a weekday" in refused.stderr

    good = tmp_path / "课表.csv"
    good.write_bytes((HEADER + GOOD).encode("gb18030"))
    dry = tongbu(database_url, "term", "import", str(good), "--term", "1", "--dry-run")
    assert dry.stdout.strip() == "2 rows: would create 2 series and 28 lessons", dry.stderr
    done = tongbu(database_url, "term", "import", str(good), "--term", "1")
    assert done.stdout.strip() == "2 rows: created 2 series and 28 lessons", done.stderr
    again = tongbu(database_url, "term", "generate", "--term", "1")
    assert again.stdout.strip() == "created 0, updated 0, removed 0, unchanged 28, kept 0"
    clashes = tongbu(database_url, "term", "clashes", "--term", "1")
    assert clashes.returncode == 0 and "0 double booking(s) in term 2037秋" in clashes.stdout
    feed = tongbu(
        database_url,
        "term",
        "feed",
        "--classroom",
        str(ids["301"]),
        "--base-url",
        "https://tongbu.example.cn",
    )
    assert feed.stdout.startswith(
        "https://tongbu.example.cn/api/v1/feeds/calendar.ics?token=tbcal_"
    )
