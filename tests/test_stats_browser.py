"""The statistics page (/admin/stats) in a real Chromium.

A real server (tests/live_harness.py). This week: a short lesson whose receiving room
dropped and came back, and a lesson nobody joined, which the server summarises itself.
Last week: a lesson of the same pairing the receiving room left early. Their attendance
rows and link samples are written by the server's own functions (classroom/attendance.py,
classroom/link_samples.py) and summarised by `summarise_lesson`; that real agents make
such rows is tests/test_link_quality.py's to show (it ran the same lesson here too, for
50 s of the suite, before).

An admin opens the page with no query (a first visit: the last eight weeks), sees in the
table the very numbers GET /api/v1/statistics answers, and the charts with their data
tables; switches the grouping with the keyboard; downloads the CSV (a Playwright
download) and decodes it with its BOM and Chinese headers. A school admin of the
receiving school sees only their school's lessons, and the page says so.
Screenshot: test-artifacts/screenshots/stats.png (zh-CN, 1366x768, full page).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from classroom import attendance
from classroom.lesson_stats import GROUP_COLUMNS, stored_summary, summarise_lesson
from classroom.link_samples import Sample, insert_samples
from signaling.appkeys import DB
from signaling.services.quality_sampler import STATISTICS
from tests.browser import chromium_available, launch_chromium
from tests.live_harness import running_server
from tests.page_session import LAPTOP, add_user, screenshot
from tests.test_admin_browser import signed_in_page, until
from tests.test_link_quality import short_lesson

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
    pytest.mark.timeout(420),
]

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
ZH = json.loads((STATIC / "i18n/zh-CN.json").read_text(encoding="utf-8"))
CJK = re.compile(r"[\u4e00-\u9fff]")
SAMPLE_S = 1.0
INTEGER_COLUMNS = ("scheduled", "held", "partial", "late", "missed", "cancelled", "pending")


def test_every_string_the_statistics_page_uses_is_in_both_catalogues() -> None:
    en = json.loads((STATIC / "i18n/en.json").read_text(encoding="utf-8"))
    html = (STATIC / "stats.html").read_text()
    script = (STATIC / "js/stats.js").read_text()
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([\w.]+)"', html))
    used |= set(re.findall(r"\bt\('([\w.]+)'", script))
    # Keys the page builds at run time.
    groupings = ("week", "term", "school", "pairing", "teacher", "classroom")
    used |= {f"stats.by.{b}" for b in groupings} | {f"stats.col.{b}" for b in groupings}
    used |= {f"stats.verdict.{v}" for v in ("held", "partial", "missed", "cancelled", "pending")}
    used |= {f"stats.scope.{r}" for r in ("school_admin", "teacher")}
    columns = re.search(r"export const COLUMNS = \[(.*?)\];", script, re.S)
    assert columns
    used |= {f"stats_csv.{c}" for c in re.findall(r"'(\w+)'", columns[1])}
    assert len(used) > 60
    assert used <= ZH.keys(), used - ZH.keys()
    assert used <= en.keys(), used - en.keys()
    for key in used:  # the Chinese catalogue is Chinese, the English one is not
        words = re.sub(r"\{\w+\}|kbps|kbit|CSV", "", ZH[key])
        assert not re.search("[A-Za-z]{3}", words), (key, ZH[key])
        assert not CJK.search(en[key]), (key, en[key])


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def lesson_as_the_server_records_it(
    server: Any,
    lesson: dict[str, Any],
    start: datetime,
    seconds: float,
    rural_gap: tuple[float, float],
) -> None:
    """Start and end `lesson` (open already), and write its rooms' attendance rows and link samples
    through the functions the server itself writes them with: the main room throughout,
    the receiving room dropping for `rural_gap` (seconds after the start) and coming back.
    A real lesson writing these through real agents is tests/test_link_quality.py's."""
    api = server.api
    for step in ("start", "end"):
        await api.call("POST", f"/lessons/{lesson['id']}/{step}")
    end = start + timedelta(seconds=seconds)
    main_id, rural_id = lesson["main"], lesson["rural"][0]
    gone, back = (start + timedelta(seconds=t) for t in rural_gap)
    visits = [
        (main_id, "main", start - timedelta(seconds=2), end, "lesson_ended"),
        (rural_id, "receiving", start - timedelta(seconds=1), gone, "closed"),
        (rural_id, "receiving", back, end, "lesson_ended"),
    ]
    samples = []
    async with server.app[DB]() as db:
        for room, role, joined, left, cause in visits:
            await attendance.open_room_session(db, lesson["id"], room, role, joined)
            await attendance.close_room_session(db, lesson["id"], room, left, cause)
            at = joined + timedelta(seconds=SAMPLE_S)
            while at <= left:
                samples += [
                    Sample(lesson["id"], room, at, direction, SAMPLE_S, bitrate_kbps=420.0,
                           packets=60, packets_lost=1, jitter_ms=4.0, rtt_ms=12.0, freezes=0,
                           freeze_ms=0, keyframe_requests=0)
                    for direction in ("up", "down")
                ]  # fmt: skip
                at += timedelta(seconds=SAMPLE_S)
        await insert_samples(db, samples)
        await summarise_lesson(db, lesson["id"])


async def run_lessons(server: Any) -> dict[str, Any]:
    """This week: a lesson whose receiving room dropped and came back, and one nobody
    joined (ended by hand, summarised by the server itself); last week: a lesson of the
    same pairing the receiving room left early. Returns their ids and rooms once every
    summary is stored."""
    api = server.api
    server.app[STATISTICS].set_intervals(sample=SAMPLE_S, sweep=1.0)
    now = datetime.now(UTC).replace(microsecond=0)
    empty = await short_lesson(
        api, tag="空", receiving=1, start=now - timedelta(seconds=40), seconds=35
    )
    await api.call("POST", f"/lessons/{empty['id']}/end", {"reason": "nobody came"})
    start = now - timedelta(seconds=40)
    lesson = await short_lesson(api, tag="课", receiving=1, start=start, seconds=36)
    await lesson_as_the_server_records_it(server, lesson, start, 36, rural_gap=(10, 14))
    lid = lesson["id"]

    # Last week, same pairing and rooms: the receiving room left after 15 of 40 minutes.
    week_ago = start - timedelta(days=7)
    earlier = await api.call(
        "POST",
        "/lessons",
        {
            "pairing_id": lesson["pairing"],
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": "王老师课",
            "title": "勾股定理",
            "planned_start": week_ago.isoformat(),
            "planned_end": (week_ago + timedelta(minutes=40)).isoformat(),
        },
    )
    for step in ("open", "start", "end"):
        await api.call("POST", f"/lessons/{earlier['id']}/{step}")
    async with server.app[DB]() as db:
        rows = ((lesson["main"], "main", 0, 40, "lesson_ended"),
                (lesson["rural"][0], "receiving", 2, 15, "closed"))  # fmt: skip
        for room, role, joined, left, cause in rows:
            at = week_ago + timedelta(minutes=joined)
            await attendance.open_room_session(db, earlier["id"], room, role, at)
            gone = week_ago + timedelta(minutes=left)
            await attendance.close_room_session(db, earlier["id"], room, gone, cause)
        await summarise_lesson(db, earlier["id"])

    ids = (lid, empty["id"], earlier["id"])
    deadline = time.monotonic() + 30
    while True:
        async with server.app[DB]() as db:
            summaries = [await stored_summary(db, i) for i in ids]
        if all(s is not None for s in summaries):
            break
        assert time.monotonic() < deadline, "the server never summarised the lessons"
        await asyncio.sleep(0.5)
    verdicts = {i: s.verdict for i, s in zip(ids, summaries, strict=True)}  # type: ignore[union-attr]
    assert verdicts == {lid: "held", empty["id"]: "missed", earlier["id"]: "partial"}
    return {**lesson, "empty": empty["id"], "earlier": earlier["id"]}


async def table(page: Any) -> dict[str, dict[str, str]]:
    """The table as the page shows it: row key -> {column: text}."""
    return await page.evaluate(
        """() => Object.fromEntries(
          [...document.querySelectorAll('#stats-table tbody tr[data-key]')]
          .map((tr) => [tr.dataset.key, Object.fromEntries(
            [['label', tr.querySelector('th').textContent],
             ...[...tr.querySelectorAll('td')].map((td) => [td.dataset.col, td.textContent])])]))"""
    )


async def api_answer(page: Any, base_url: str, query: dict[str, str]) -> dict[str, Any]:
    """GET /statistics as the signed-in page's own cookie gets it, for the page's query."""
    params = {"by": query["by"]}
    if query.get("from"):
        params["from"] = f"{query['from']}T00:00:00+08:00"
    response = await page.request.get(f"{base_url}/api/v1/statistics", params=params)
    assert response.ok, await response.text()
    return await response.json()


def half_up(value: float, places: int) -> str:
    """As Intl.NumberFormat rounds (the exact value, halves away from zero), with grouping;
    Python's format would round halves to even."""
    exact = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{exact:,}"


def assert_table_is_the_api(shown: dict[str, dict[str, str]], answer: dict[str, Any]) -> None:
    assert set(shown) == {g["key"] for g in answer["groups"]}
    for group in answer["groups"]:
        row = shown[group["key"]]
        assert row["label"] == (group["label"] or group["key"])
        for column in INTEGER_COLUMNS:
            assert row[column] == str(group[column]), (group["key"], column)
        rate = group["attendance_rate"]
        assert row["attendance_rate"] == ("—" if rate is None else f"{half_up(rate * 100, 1)}%")
        minutes = group["attendance_minutes"]
        assert row["attendance_minutes"] == half_up(minutes, 1)
        rtt = group["rtt_ms"]
        assert row["rtt_ms"] == ("—" if rtt is None else half_up(rtt, 0))


async def test_admin_reads_the_statistics_of_lessons_that_ran(tmp_path: Path, browser: Any) -> None:
    async with running_server(tmp_path / "data") as server:
        ran = await run_lessons(server)
        page = await signed_in_page(
            browser, server.base_url, viewport=LAPTOP, accept_downloads=True
        )
        problems: list[str] = []
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        response = await page.goto(f"{server.base_url}/admin/stats")
        assert response.ok and "script-src 'self'" in response.headers["content-security-policy"]
        await until(page, "window.tongbuStats && window.tongbuStats.loads >= 1", within=20)

        # A first visit: by week over the last eight weeks, written into the address bar.
        query = dict(p.split("=", 1) for p in urlsplit(page.url).query.split("&") if "=" in p)
        assert query["by"] == "week" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", query["from"])
        answer = await api_answer(page, server.base_url, query)
        assert len(answer["groups"]) == 2  # last week and this week
        last_week, this_week = answer["groups"]
        assert (this_week["scheduled"], this_week["held"], this_week["missed"]) == (2, 1, 1)
        assert (last_week["scheduled"], last_week["partial"]) == (1, 1)
        assert this_week["drops"] == 1 and this_week["reconnects"] == 1
        assert this_week["down_bitrate_kbps"] and this_week["down_bitrate_kbps"] > 10
        assert_table_is_the_api(await table(page), answer)
        status = await page.text_content("#stats-status")
        assert status == "计划 3 节 · 实际开课 1 节 · 迟到 0 节 · 缺课 1 节 · 取消 0 节"
        assert "50%" in await page.text_content("#stats-rule")

        # Charts: held against scheduled per week, with the same numbers in their tables.
        weekly = 'figure[data-chart="held-by-week"]'
        assert await page.locator(f'{weekly} rect[data-series="held"]').count() == 1
        assert await page.locator(f'{weekly} rect[data-series="missed"]').count() == 1
        assert await page.locator(f'{weekly} rect[data-series="partial"]').count() == 1
        rows = await page.locator(f"{weekly} table.chart-data tbody tr").all_text_contents()
        assert len(rows) == 2 and rows[1].endswith("2")  # this week: 2 scheduled in all
        assert await page.get_attribute(f"{weekly} svg", "aria-hidden") == "true"
        attendance_rows = page.locator('figure[data-chart="attendance"] table.chart-data tbody tr')
        assert await attendance_rows.count() == 2
        # Link quality per room: both rooms of the lesson that ran have a bitrate and RTT.
        link = 'section[data-chart="link-quality"]'
        bitrate = await page.locator(
            f'{link} figure[data-chart="down-bitrate"] table.chart-data tbody tr'
        ).all_text_contents()
        names = {"城关一中课 主讲教室", "村小课0 听课"}
        assert {r for r in bitrate if any(r.startswith(n) for n in names)} and all(
            re.search(r"\d+$", r) for r in bitrate if any(r.startswith(n) for n in names)
        ), bitrate
        rtt_bars = page.locator(f'{link} figure[data-chart="rtt"] rect.chart-bar')
        assert await rtt_bars.count() >= 2
        # Usable at 1366x768: nothing wider than the window.
        assert await page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
        await screenshot(page, "stats", full_page=True)

        # The grouping, by keyboard: from 按周 two steps to 按学校 (arrow keys move radios).
        await page.focus('input[name="by"][value="week"]')
        await page.keyboard.press("ArrowRight")
        await until(page, "window.tongbuStats.last.query.by === 'term'")
        await page.keyboard.press("ArrowRight")
        await until(
            page,
            "window.tongbuStats.last.query.by === 'school' && "
            "window.tongbuStats.last.main.by === 'school'",
        )
        assert "by=school" in page.url
        by_school = await api_answer(page, server.base_url, {**query, "by": "school"})
        assert_table_is_the_api(await table(page), by_school)
        assert {g["label"] for g in by_school["groups"]} >= {"城关一中课", "村小课0"}
        assert await page.text_content("#stats-table thead th") == "学校"
        # Back returns to the weekly view.
        await page.go_back()
        await until(
            page, "window.tongbuStats.last.main && window.tongbuStats.last.main.by === 'term'"
        )

        # The CSV, as the browser downloads it: BOM, Chinese headers, the table's numbers.
        await page.click('input[name="by"][value="pairing"]')
        await until(page, "window.tongbuStats.last.main.by === 'pairing'")
        async with page.expect_download() as info:
            await page.click("#export-csv")
        download = await info.value
        assert download.suggested_filename == f"常态化统计_按结对_{query['from']}~.csv"
        saved = tmp_path / "stats.csv"
        await download.save_as(saved)
        data = saved.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")
        header, *lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert header == [ZH[f"stats_csv.{c}"] for c in GROUP_COLUMNS]
        shown = await table(page)
        assert len(lines) == len(shown)
        for line in lines:
            cells = dict(zip(GROUP_COLUMNS, line, strict=True))
            row = shown[cells["key"]]
            assert row["label"] == cells["label"]
            for column in INTEGER_COLUMNS:
                assert row[column] == cells[column], column
        assert problems == [], problems
        await page.close()

        # A school admin of the receiving school: their school's lessons, and told so.
        rural_school = next(
            c["school_id"]
            for c in (await server.api.call("GET", "/classrooms"))["items"]
            if c["id"] == ran["rural"][0]
        )
        await add_user(server.api, "village-admin", "school_admin", rural_school)
        other = await signed_in_page(
            browser, server.base_url, ("village-admin", "pages-password-1"), viewport=LAPTOP
        )
        await other.goto(f"{server.base_url}/admin/stats?by=week")
        await until(other, "window.tongbuStats && window.tongbuStats.loads >= 1", within=20)
        assert await other.text_content("#stats-scope") == "只统计有本校教室参加的课程。"
        rows = await table(other)
        # Their room was in the real lesson and last week's, not in the empty one.
        assert sum(int(r["scheduled"]) for r in rows.values()) == 2
        await other.close()
