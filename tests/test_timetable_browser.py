"""The timetable page (/admin/timetable) in a real Chromium, against the real server.

Signed in with the session cookie (POST /api/v1/auth/session from the browser context), as
the login page would. What a person does on the page is checked where it lands: rows in
the database, text on the page, a calendar fetched from the feed URL the page shows.

- An admin creates a term with a holiday, a 调休 day and periods (a holiday outside the
  term is refused in Chinese next to its row); adds a weekly lesson and generates; a
  double booking is refused with the clash named beside the form and nothing written;
  the week view has the lesson in its cell, none on 国庆节, one on the Saturday that
  follows Wednesday; one occurrence is cancelled, one moved, one given a substitute —
  each a single row changed, the series untouched.
- A CSV with bad rows lists every bad line and imports nothing; the page's own template
  then imports; the week view shows its lessons; a classroom feed URL is created, copied,
  fetched and parsed with `icalendar`, then revoked (404).
- A teacher is told the page is not theirs; a school admin reads terms without editing
  them; the page reads in English with ?lang=en.

Screenshots (zh-CN, 1366x768): test-artifacts/screenshots/timetable-*.png.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import sqlalchemy as sa

from classroom import refusals
from classroom import terms as term_store
from classroom.models import Lesson, LessonRoom
from classroom.timetable_models import CalendarFeed, LessonSeries, SeriesOccurrence, Term
from signaling.appkeys import DB
from tests.browser import chromium_available, launch_chromium
from tests.live_harness import Api, LiveServer, running_server
from tests.page_session import LAPTOP, PASSWORD, add_user, screenshot

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
SHANGHAI = ZoneInfo("Asia/Shanghai")
ADMIN = ("e2e-admin", "e2e-password-1")  # made by running_server
# A term far enough ahead that all its lessons are still to come (generation makes no past
# ones); 2037's calendar is 2026's: 09-01 a Tuesday, 10-10 a Saturday.
YEAR = 2037
TERM = {
    "school_year": f"{YEAR}-{YEAR + 1}",
    "name": f"{YEAR}秋",
    "start_date": f"{YEAR}-09-01",
    "end_date": f"{YEAR + 1}-01-15",
    "holidays": [{"start_date": f"{YEAR}-10-01", "end_date": f"{YEAR}-10-07", "name": "国庆节"}],
    "makeup_days": [{"date": f"{YEAR}-10-10", "follows_weekday": 3, "name": "调休"}],
    "periods": [
        {"number": 1, "starts_at": "08:00", "ends_at": "08:45"},
        {"number": 3, "starts_at": "09:55", "ends_at": "10:40"},
    ],
}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def until(
    page: Any, expression: str, arg: Any = None, *, expect: Any = None, within: float = 15.0
) -> Any:
    """Poll a JS expression (or function of `arg`) until truthy (page.wait_for_function
    evaluates a string in the page, which the pages' Content-Security-Policy forbids)."""
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(expression, arg)
        if (value == expect) if expect is not None else value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {expression}")
        await asyncio.sleep(0.1)


async def open_page(
    browser: Any,
    base_url: str,
    user: tuple[str, str] = ADMIN,
    path: str = "/admin/timetable#terms",
    **context_options: Any,
) -> tuple[Any, list[str]]:
    """A context signed in as `user` by POST /auth/session (the cookie), on the page."""
    context_options.setdefault("locale", "zh-CN")
    context = await browser.new_context(viewport=LAPTOP, **context_options)
    page = await context.new_page()
    problems: list[str] = []
    # Refusals the test provokes (400/409) are logged by Chromium as failed loads.
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.type}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    response = await page.request.post(
        f"{base_url}/api/v1/auth/session", data={"username": user[0], "password": user[1]}
    )
    assert response.ok, await response.text()
    response = await page.goto(base_url + path)
    assert response.ok and "script-src 'self'" in response.headers["content-security-policy"]
    await until(page, "window.tongbuTimetable && window.tongbuTimetable.tab !== null")
    assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
    return page, problems


async def settled(page: Any) -> None:
    """No form of the page is waiting for the server."""
    await until(page, "!window.tongbuTimetable.busy")


async def tab(page: Any, name: str) -> None:
    """Follow the section link, as a person would, and wait until it has loaded."""
    before = await page.evaluate("window.tongbuTimetable.loads")
    await page.click(f'#tt-tabs a[data-tab="{name}"]')
    await until(
        page,
        f"window.tongbuTimetable.tab === '{name}' && window.tongbuTimetable.loads > {before}",
    )


async def registers(api: Api) -> dict[str, int]:
    """城关一中 301 paired with 乡村小学 听课一, and a teacher account of 城关一中."""
    city = await api.call("POST", "/schools", {"name": "城关一中", "kind": "city"})
    rural = await api.call("POST", "/schools", {"name": "乡村小学", "kind": "rural"})
    main = await api.call("POST", "/classrooms", {"school_id": city["id"], "name": "301"})
    room = await api.call("POST", "/classrooms", {"school_id": rural["id"], "name": "听课一"})
    pairing = await api.call(
        "POST",
        "/pairings",
        {
            "name": "城乡结对",
            "main_classroom_id": main["id"],
            "receiving_classroom_ids": [room["id"]],
        },
    )
    zhao = await add_user(api, "zhao", "teacher", city["id"], "赵老师")
    return {
        "city": city["id"],
        "rural": rural["id"],
        "main": main["id"],
        "room": room["id"],
        "pairing": pairing["id"],
        "zhao": zhao["id"],
    }


async def db_rows(server: LiveServer, query: Any) -> list[Any]:
    async with server.app[DB]() as db:
        return list((await db.execute(query)).all())


async def count(server: LiveServer, model: type) -> int:
    async with server.app[DB]() as db:
        return int(await db.scalar(sa.select(sa.func.count()).select_from(model)))


async def occurrence_on(server: LiveServer, day: str) -> tuple[Any, Any]:
    """The occurrence a series gave `day`, and its lesson, as the database holds them."""
    rows = await db_rows(
        server,
        sa.select(SeriesOccurrence, Lesson)
        .join(Lesson, Lesson.id == SeriesOccurrence.lesson_id)
        .where(SeriesOccurrence.occurrence_date == datetime.fromisoformat(day).date()),
    )
    assert len(rows) == 1, rows
    return rows[0]


def local(instant: datetime) -> str:
    return instant.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


CAPTION_HAS = "s => document.getElementById('week-caption').textContent.includes(s)"
# The state of the (first) lesson shown in a cell of the week view, null if none.
LESSON_STATE = "s => document.querySelector(s + ' .tt-lesson')?.dataset.state ?? null"


def cell(row: str, day: str) -> str:
    return f'#week-table tr[data-row="{row}"] td[data-date="{day}"]'


async def show_week(page: Any, n: int) -> None:
    before = await page.evaluate("document.getElementById('week-caption').textContent")
    await page.select_option("#week-number", str(n))
    await until(
        page,
        f"document.getElementById('week-caption').textContent.includes('第 {n} 周') && "
        f"document.getElementById('week-caption').textContent !== {json.dumps(before)}",
    )


async def choose_pairing(page: Any, pairing_id: int) -> None:
    await page.select_option("#week-target", str(pairing_id))
    await until(page, "document.getElementById('week-caption').textContent.includes('第 1 周')")


async def open_lesson(page: Any, row: str, day: str) -> None:
    await page.click(f"{cell(row, day)} .tt-lesson")
    await until(page, "document.getElementById('occ-dialog').open")


# ------------------------------------------------------------------ the catalogue


def test_every_string_the_timetable_page_uses_is_in_both_catalogues() -> None:
    zh = json.loads((STATIC / "i18n/zh-CN.json").read_text())
    en = json.loads((STATIC / "i18n/en.json").read_text())
    html = (STATIC / "timetable.html").read_text()
    scripts = {p.name: p.read_text() for p in (STATIC / "js").glob("timetable*.js")}
    code = "\n".join(scripts.values())
    used = set(re.findall(r'data-i18n(?:-aria-label|-placeholder)?="([\w.]+)"', html))
    used |= set(re.findall(r"\bt\('([\w.]+)'", code))
    used |= set(re.findall(r"'(timetable\.[\w.]+)'", code))
    # Keys built at run time.
    used |= {f"timetable.weekday.{n}" for n in range(1, 8)}
    used |= {f"timetable.tab.{n}" for n in ("terms", "series", "week", "import", "feeds")}
    used |= {f"timetable.parity.{p}" for p in ("all", "odd", "even")}
    used |= {f"timetable.term.remove_{x}" for x in ("holidays", "makeup_days", "periods")}
    used |= {
        f"timetable.week.{w}_{b}"
        for w in ("choose", "target")
        for b in ("pairing", "classroom", "teacher")
    }
    used |= {f"lesson.state.{s}" for s in ("scheduled", "open", "live", "ended", "cancelled")}
    used |= {f"kind.{k}" for k in ("dedicated", "famous_teacher", "famous_school")}
    # The sentences of the server's refusal reasons (classroom/refusals.py).
    used |= {f"error.{r.name}" for r in refusals.shown()}
    missing_zh = sorted(k for k in used if k not in zh)
    missing_en = sorted(k for k in used if k not in en)
    assert missing_zh == [] and missing_en == [], (missing_zh, missing_en)
    # Every sentence is Chinese in zh-CN (format-only entries like "{name}（{from}）" aside).
    words = [k for k in used if re.search(r"[A-Za-z]{2}", re.sub(r"\{\w+\}", "", en[k]))]
    assert [k for k in words if not re.search(r"[\u4e00-\u9fff]", zh[k])] == []


async def refusal(api: Api, method: str, path: str, body: Any = None, raw: bytes = b"") -> Any:
    """The server's answer to a request it refuses (JSON body, or `raw` CSV bytes)."""
    kw: dict[str, Any] = {"data": raw, "headers": {"Content-Type": "text/csv"}} if raw else {}
    if not raw:
        kw["json"] = body
    kw.setdefault("headers", {})["Authorization"] = f"Bearer {api.token}"
    async with api.session.request(method, f"{api.base_url}/api/v1{path}", **kw) as response:
        assert response.status >= 400, await response.text()
        return await response.json()


async def test_every_refusal_of_the_timetable_api_reads_as_a_catalogue_sentence(
    tmp_path: Path, browser: Any
) -> None:
    """The server's own messages, provoked for real, each become a Chinese sentence of the
    catalogue in the page (timetable_errors.js), with every value filled in: none falls
    back to the raw English."""
    async with running_server(tmp_path / "data") as server:
        api = server.api
        ids = await registers(api)
        term = await api.call("POST", "/terms", TERM)
        tid = term["id"]
        series = await api.call(
            "POST",
            f"/terms/{tid}/series",
            {
                "pairing_id": ids["pairing"],
                "subject": "数学",
                "grade": "初二",
                "title": "一次函数",
                "teacher_name": "王老师",
                "weekday": 3,
                "period": 3,
            },
        )
        lesson_id = (await api.call("GET", f"/series/{series['series']['id']}/occurrences"))[
            "items"
        ][0]["lesson_id"]
        admin_user = await add_user(api, "city-admin", "school_admin", ids["city"], "管理员")
        # Another pairing of the same city school: 王老师 there at his lesson's time clashes
        # as a teacher, not as a classroom.
        room_302 = await api.call("POST", "/classrooms", {"school_id": ids["city"], "name": "302"})
        room_2 = await api.call(
            "POST", "/classrooms", {"school_id": ids["rural"], "name": "听课二"}
        )
        other = await api.call(
            "POST",
            "/pairings",
            {
                "name": "二号结对",
                "main_classroom_id": room_302["id"],
                "receiving_classroom_ids": [room_2["id"]],
            },
        )

        def term_with(**changes: Any) -> dict[str, Any]:
            return {**TERM, "name": "另一个学期", **changes}

        def series_with(**changes: Any) -> dict[str, Any]:
            body = {
                "pairing_id": ids["pairing"],
                "subject": "语文",
                "grade": "初二",
                "title": "春",
                "teacher_name": "李老师",
                "weekday": 4,
                "period": 1,
            }
            return {k: v for k, v in {**body, **changes}.items() if v is not None}

        day = f"{YEAR}-09-"
        requests: list[tuple[str, str, Any]] = [
            ("POST", "/terms", term_with(end_date=f"{YEAR}-08-01")),
            ("POST", "/terms", term_with(end_date=f"{YEAR + 2}-01-15")),
            ("POST", "/terms", term_with(timezone="Mars/Olympus")),
            ("POST", "/terms", term_with(name=TERM["name"])),
            ("POST", "/terms", term_with(school_year="")),
            ("POST", "/terms", term_with(start_date="2037-13-01")),
            (
                "POST",
                "/terms",
                term_with(
                    holidays=[{"start_date": f"{day}10", "end_date": f"{day}09", "name": "x"}]
                ),
            ),
            (
                "POST",
                "/terms",
                term_with(
                    holidays=[
                        {"start_date": "2040-01-01", "end_date": "2040-01-02", "name": "元旦"}
                    ]
                ),
            ),
            (
                "POST",
                "/terms",
                term_with(makeup_days=[{"date": "2040-01-01", "follows_weekday": 1}]),
            ),
            (
                "POST",
                "/terms",
                term_with(makeup_days=[{"date": f"{YEAR}-10-02", "follows_weekday": 1}]),
            ),
            (
                "POST",
                "/terms",
                term_with(makeup_days=[{"date": f"{day}12", "follows_weekday": 1}] * 2),
            ),
            ("POST", "/terms", term_with(makeup_days=[{"date": f"{day}12", "follows_weekday": 8}])),
            (
                "POST",
                "/terms",
                term_with(periods=[{"number": 1, "starts_at": "08:00", "ends_at": "08:45"}] * 2),
            ),
            (
                "POST",
                "/terms",
                term_with(periods=[{"number": 1, "starts_at": "09:00", "ends_at": "08:45"}]),
            ),
            (
                "POST",
                "/terms",
                term_with(
                    periods=[
                        {"number": 1, "starts_at": "08:00", "ends_at": "08:45"},
                        {"number": 2, "starts_at": "08:30", "ends_at": "09:15"},
                    ]
                ),
            ),
            (
                "POST",
                "/terms",
                term_with(periods=[{"number": 1, "starts_at": "8:00", "ends_at": "08:45"}]),
            ),
            (
                "POST",
                "/terms",
                term_with(periods=[{"number": 0, "starts_at": "08:00", "ends_at": "08:45"}]),
            ),
            ("POST", f"/terms/{tid}/series", series_with(period=9)),
            ("POST", f"/terms/{tid}/series", series_with(period=None)),
            (
                "POST",
                f"/terms/{tid}/series",
                series_with(period=None, start_time="10:00", end_time="09:00"),
            ),
            ("POST", f"/terms/{tid}/series", series_with(first_date="2040-01-01")),
            (
                "POST",
                f"/terms/{tid}/series",
                series_with(first_date=f"{day}20", last_date=f"{day}10"),
            ),
            ("POST", f"/terms/{tid}/series", series_with(teacher_user_id=admin_user["id"])),
            ("POST", f"/terms/{tid}/series", series_with(subject="")),
            ("POST", f"/terms/{tid}/series", series_with(weekday=3, period=3)),
            (
                "POST",
                f"/terms/{tid}/series",
                series_with(teacher_name="王老师", weekday=3, period=3, pairing_id=other["id"]),
            ),
            ("PUT", f"/series/{series['series']['id']}", {**series_with(), "pairing_id": 999}),
            ("POST", f"/lessons/{lesson_id}/move", {"date": f"{YEAR}-10-03", "period": 1}),
            ("POST", f"/lessons/{lesson_id}/move", {"date": "2040-01-01", "period": 1}),
            ("POST", f"/lessons/{lesson_id}/move", {"date": f"{day}09"}),
            ("POST", "/calendar-feeds", {"kind": "classroom"}),
            ("POST", "/calendar-feeds", {"kind": "classroom", "classroom_id": 999}),
            ("POST", "/calendar-feeds", {"kind": "teacher", "teacher_user_id": 999}),
        ]
        # Each refusal as the page gets it: {code, message, reason, params} (a row: its own).
        answers = [(await refusal(api, m, p, b))["error"] for m, p, b in requests]

        head = (
            "星期,节次,开始时间,结束时间,学科,年级,主讲教室,听课教室,"
            "教师,课题,类型,单双周,教师账号\n"
        )
        rows = [
            "星期八,1,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,,",
            "星期四,第十一节课,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,,",
            "星期四,,9点,10:00,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,,",
            "星期四,1,,,,初二,城关一中/301,乡村小学/听课一,李老师,春,,,",
            "星期四,9,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,,",
            "星期四,1,,,语文,初二,城关一中/999,乡村小学/听课一,李老师,春,,,",
            "星期四,1,,,语文,初二,#999,乡村小学/听课一,李老师,春,,,",
            "星期四,1,,,语文,初二,城关一中/301,城关一中/301,李老师,春,,,",
            "星期四,1,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,讲座,,",
            "星期四,1,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,三周,",
            "星期四,1,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,,nobody",
            "星期三,3,,,语文,初二,城关一中/301,乡村小学/听课一,李老师,春,,,",
        ]
        rejected = await refusal(
            api, "POST", f"/terms/{tid}/import", raw=(head + "\n".join(rows)).encode()
        )
        assert len(rejected["rows"]) == len(rows), rejected
        answers += rejected["rows"]
        for raw in (
            b"\xef\xbb\xbf",
            head.encode(),
            "星期,学科\n星期一,数学\n".encode(),
            b"\xff\xfe\x00",
        ):
            answers.append((await refusal(api, "POST", f"/terms/{tid}/import", raw=raw))["error"])
        messages = [a["message"] for a in answers]

        page, problems = await open_page(browser, server.base_url)
        texts = await page.evaluate(
            """async (answers) => {
                const errors = await import('/static/js/timetable_errors.js');
                const { loadCatalogue } = await import('/static/js/api.js');
                const t = await loadCatalogue('zh-CN');
                return answers.map((a) => errors.knownText(t, a));
            }""",
            answers,
        )
        unread = [m for m, text in zip(messages, texts, strict=True) if text is None]
        assert unread == [], unread
        for message, text in zip(messages, texts, strict=True):
            assert re.search(r"[\u4e00-\u9fff]", text) and "{" not in text, (message, text)
        said = dict(zip(messages, texts, strict=True))
        assert said["periods 1 and 2 overlap"] == "第 1 节和第 2 节的时间重叠。"
        teacher = next(m for m in messages if ": teacher 王老师 is already booked by" in m)
        assert said[teacher].startswith(
            f"时间冲突：教师 王老师 在 {YEAR}-09-02 09:55–10:40 +08:00 "
        )
        missing = next(m for m in messages if m.startswith("line 1: missing columns"))
        assert said[missing] == (
            "表头（第 1 行）缺少列：年级、主讲教室、听课教室、教师、课题、"
            "节次（或开始时间和结束时间）。"
        )
        assert (
            said[f"make-up day {YEAR}-10-02 falls in a holiday"]
            == f"调休日 {YEAR}-10-02 落在假期里。"
        )
        assert (
            said[f"{YEAR}-10-03 is a holiday of term '{TERM['name']}'"]
            == f"{YEAR}-10-03 是假期，不能调到这一天。"
        )
        assert problems == [], problems


# ------------------------------------------------------------------ terms, series, the week


async def test_an_admin_plans_a_term_schedules_and_changes_single_lessons(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        ids = await registers(server.api)
        page, problems = await open_page(browser, server.base_url)
        assert await page.inner_text("#terms-title") == "学期（校历）"
        assert (
            await page.get_attribute('.nav-links a[data-nav="timetable"]', "aria-current") == "page"
        )

        # --- a term, typed in as the bureau's admin would; Enter submits.
        await page.click("#term-new")
        await until(page, "document.getElementById('term-dialog').open")
        await page.fill("#term-name", TERM["name"])
        await page.fill("#term-year", TERM["school_year"])
        await page.fill("#term-start", TERM["start_date"])
        await page.fill("#term-end", TERM["end_date"])
        for name, first, last in (
            ("国庆节", f"{YEAR}-10-01", f"{YEAR}-10-07"),
            ("寒假", f"{YEAR + 1}-02-01", f"{YEAR + 1}-02-10"),  # after the term: refused
        ):
            await page.click('#term-form [data-add="holidays"]')
            i = await page.locator("#term-form [data-rows='holidays'] .tt-row").count() - 1
            await page.fill(f'[name="holidays[{i}].name"]', name)
            await page.fill(f'[name="holidays[{i}].start_date"]', first)
            await page.fill(f'[name="holidays[{i}].end_date"]', last)
        await page.click('#term-form [data-add="makeup_days"]')
        await page.fill('[name="makeup_days[0].date"]', f"{YEAR}-10-10")
        await page.select_option('[name="makeup_days[0].follows_weekday"]', "3")
        await page.click('#term-form [data-add="periods"]')  # 1: 08:00–08:45 offered
        await page.click('#term-form [data-add="periods"]')
        await page.fill('[name="periods[1].number"]', "3")
        await page.fill('[name="periods[1].starts_at"]', "09:55")
        await page.fill('[name="periods[1].ends_at"]', "10:40")
        assert await page.input_value('[name="periods[0].starts_at"]') == "08:00"
        await page.press("#term-name", "Enter")
        await settled(page)
        refusal = await page.inner_text('[data-error-for="holidays[1]"]')
        assert refusal == f"假期「寒假」（{YEAR + 1}-02-01 至 {YEAR + 1}-02-10）不在学期内。"
        assert await page.get_attribute('[name="holidays[1].name"]', "aria-invalid") == "true"
        assert await count(server, Term) == 0  # nothing saved
        assert await page.inner_text("#tt-status") == "没有保存：请按表单中的提示修改。"
        await screenshot(page, "timetable-term-refused")
        await page.click('[data-rows="holidays"] .tt-row[data-index="1"] .tt-remove')
        assert await page.locator('[data-rows="holidays"] .tt-row').count() == 1
        await page.press("#term-year", "Enter")
        await until(page, "!document.getElementById('term-dialog').open")
        await until(page, "document.getElementById('tt-status').dataset.status === 'ok'")
        status = await page.inner_text("#tt-status")
        assert status == f"已创建学期「{TERM['name']}」，共 20 个教学周。", status
        [(term,)] = await db_rows(server, sa.select(Term))
        async with server.app[DB]() as db:
            term = await term_store.load_term(db, term.id)
            stored = term_store.spec_of(term)
        assert [(h.name, str(h.start), str(h.end)) for h in stored.holidays] == [
            ("国庆节", f"{YEAR}-10-01", f"{YEAR}-10-07")
        ]
        assert [(str(m.date), m.follows_weekday) for m in stored.makeup_days] == [
            (f"{YEAR}-10-10", 3)
        ]
        assert [
            (p.number, f"{p.starts_at:%H:%M}", f"{p.ends_at:%H:%M}") for p in stored.periods
        ] == [
            (1, "08:00", "08:45"),
            (3, "09:55", "10:40"),
        ]
        row = page.locator(f'#term-table tr[data-id="{term.id}"]')
        assert "国庆节 10-01–10-07" in await row.inner_text()
        assert "10-10 按星期三上课" in await row.inner_text()
        await screenshot(page, "timetable-terms")

        # --- a weekly lesson on the pairing: Wednesday, period 3.
        await tab(page, "series")
        await page.select_option("#series-pairing", str(ids["pairing"]))
        await page.select_option("#series-weekday", "3")
        await page.select_option("#series-period", "3")
        await page.fill("#series-subject", "数学")
        await page.fill("#series-grade", "初二")
        await page.fill("#series-teacher", "王老师")
        await page.fill("#series-title-input", "一次函数")
        await page.press("#series-title-input", "Enter")
        await until(page, "document.getElementById('series-result').dataset.status === 'ok'")
        result = await page.inner_text("#series-result")
        # Wednesdays but 10-07 (国庆节), and Saturday 10-10, which follows Wednesday.
        assert "新建 20 节" in result and "「一次函数」（星期三 第3节 09:55–10:40）" in result, (
            result
        )
        [(series,)] = await db_rows(server, sa.select(LessonSeries))
        assert (series.weekday, series.period, series.teacher_name) == (3, 3, "王老师")
        assert await count(server, SeriesOccurrence) == 20

        await page.click("#series-generate")
        await until(page, "document.getElementById('series-result').textContent.includes('已生成')")
        assert "新建 0 节" in await page.inner_text("#series-result")
        assert "未变 20 节" in await page.inner_text("#series-result")

        # --- a clash: another lesson in the same rooms at the same time.
        await page.select_option("#series-weekday", "3")
        await page.select_option("#series-period", "3")
        await page.fill("#series-subject", "语文")
        await page.fill("#series-grade", "初二")
        await page.fill("#series-teacher", "李老师")
        await page.fill("#series-title-input", "春")
        await page.click("#series-submit")
        await settled(page)
        clash = await page.inner_text('#series-form .form-error[data-error-for=""]')
        assert clash.startswith("时间冲突：教室 "), clash
        assert "已有课程 #" in clash and "「一次函数」（每周课程 #" in clash, clash
        assert "不能再安排每周课程 #" in clash and "「春」" in clash, clash
        assert f"{YEAR}-09-02 09:55–10:40 +08:00" in clash, clash
        assert await count(server, LessonSeries) == 1
        assert await count(server, Lesson) == 20
        await screenshot(page, "timetable-series")

        # --- the week view: in the right cells, none on the holiday.
        await tab(page, "week")
        await choose_pairing(page, ids["pairing"])
        await show_week(page, 2)  # 09-07 .. 09-13
        assert "一次函数" in await page.inner_text(cell("p3", f"{YEAR}-09-09"))
        assert await page.locator("#week-table .tt-lesson").count() == 1
        heads = await page.locator("#week-table thead th.tt-day .tt-day-name").all_inner_texts()
        assert heads == ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]
        await show_week(page, 6)  # 10-05 .. 10-11: 国庆节 to 10-07, 10-10 follows Wednesday
        assert await page.locator(f"{cell('p3', f'{YEAR}-10-07')} .tt-lesson").count() == 0
        assert "国庆节（放假）" in await page.inner_text(
            f'#week-table th[data-date="{YEAR}-10-07"]'
        )
        assert "调休：按星期三上课" in await page.inner_text(
            f'#week-table th[data-date="{YEAR}-10-10"]'
        )
        assert "一次函数" in await page.inner_text(cell("p3", f"{YEAR}-10-10"))
        assert await page.locator("#week-table .tt-lesson").count() == 1
        await screenshot(page, "timetable-week")

        # --- one occurrence cancelled (09-09); Esc first closes the dialog, focus returns.
        await show_week(page, 2)
        await open_lesson(page, "p3", f"{YEAR}-09-09")
        await page.keyboard.press("Escape")
        await until(page, "!document.getElementById('occ-dialog').open")
        await until(page, "document.activeElement.classList.contains('tt-lesson')")  # back
        await page.keyboard.press("Enter")  # the focused lesson opens again
        await until(page, "document.getElementById('occ-dialog').open")
        await page.click("#occ-cancel-submit")
        await until(page, "document.getElementById('tt-confirm').open")
        await page.click("#tt-confirm-yes")
        await until(page, "!document.getElementById('occ-dialog').open")
        assert await page.inner_text("#tt-status") == "已取消「一次函数」。"
        await until(page, LESSON_STATE, cell("p3", f"{YEAR}-09-09"), expect="cancelled")
        _, cancelled = await occurrence_on(server, f"{YEAR}-09-09")
        assert cancelled.state == "cancelled"

        # --- one moved (09-16 → Thursday 09-17, period 1).
        await show_week(page, 3)
        await open_lesson(page, "p3", f"{YEAR}-09-16")
        assert await page.input_value("#occ-move-date") == f"{YEAR}-09-16"
        await screenshot(page, "timetable-lesson")
        await page.fill("#occ-move-date", f"{YEAR}-09-17")
        await page.select_option("#occ-move-period", "1")
        await page.press("#occ-move-date", "Enter")
        await until(page, "!document.getElementById('occ-dialog').open")
        status = await page.inner_text("#tt-status")
        assert status == f"已调课：「一次函数」改到 {YEAR}-09-17 星期四 08:00–08:45。", status
        await until(page, LESSON_STATE, cell("p1", f"{YEAR}-09-17"), expect="scheduled")
        assert await page.locator(f"{cell('p3', f'{YEAR}-09-16')} .tt-lesson").count() == 0
        occurrence, moved = await occurrence_on(server, f"{YEAR}-09-16")
        assert local(moved.planned_start) == f"{YEAR}-09-17 08:00" and occurrence.changed

        # --- one given a substitute (09-23), linked to 赵老师's account.
        await show_week(page, 4)
        await open_lesson(page, "p3", f"{YEAR}-09-23")
        await page.select_option("#occ-sub-account", str(ids["zhao"]))
        assert await page.input_value("#occ-sub-name") == "赵老师"
        await page.click('#occ-substitute button[type="submit"]')
        await until(page, "!document.getElementById('occ-dialog').open")
        assert await page.inner_text("#tt-status") == "已安排代课：「一次函数」由 赵老师 代课。"
        occurrence, substituted = await occurrence_on(server, f"{YEAR}-09-23")
        assert (substituted.teacher_name, substituted.teacher_user_id) == ("赵老师", ids["zhao"])
        shows = "s => document.querySelector(s).textContent.includes('赵老师')"
        await until(page, shows, cell("p3", f"{YEAR}-09-23"))  # the week redrawn

        # The series is as it was; the other occurrences too.
        [(after,)] = await db_rows(server, sa.select(LessonSeries))
        assert (after.weekday, after.period, after.teacher_name, after.updated_at) == (
            3,
            3,
            "王老师",
            series.updated_at,
        )
        _, untouched = await occurrence_on(server, f"{YEAR}-09-30")
        assert local(untouched.planned_start) == f"{YEAR}-09-30 09:55"
        assert (untouched.state, untouched.teacher_name) == ("scheduled", "王老师")
        assert problems == [], problems


# ------------------------------------------------------------------ CSV and feeds


CSV_HEADER = "星期,节次,学科,年级,主讲教室,听课教室,教师,课题\n"


async def test_csv_import_is_all_or_nothing_and_a_feed_is_a_calendar(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        ids = await registers(server.api)
        term = await server.api.call("POST", "/terms", TERM)
        page, problems = await open_page(
            browser, server.base_url, path=f"/admin/timetable?term={term['id']}#import"
        )
        assert await page.evaluate("window.tongbuTimetable.termId") == term["id"]

        # Every bad line is listed, and nothing is imported.
        good = "星期一,3,数学,初二,城关一中/301,乡村小学/听课一,王老师,一次函数\n"
        bad = (
            CSV_HEADER
            + good
            + "星期八,1,语文,初二,城关一中/301,乡村小学/听课一,李老师,春\n"
            + "星期二,1,语文,初二,城关一中/999,乡村小学/听课一,李老师,春\n"
            + "周一,第三节,英语,初二,城关一中/301,乡村小学/听课一,张老师,字母\n"
        )
        await page.set_input_files(
            "#import-file",
            files=[{"name": "课表.csv", "mimeType": "text/csv", "buffer": bad.encode("gb18030")}],
        )
        await page.click("#import-run")
        await settled(page)
        await page.locator("#import-errors-wrap").wait_for()
        rows = await page.locator("#import-errors tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert [r[:2] for r in rows] == [["3", "星期"], ["4", "主讲教室"], ["5", "整行"]], rows
        assert rows[0][2] == "「星期八」不是星期（可写 星期一…星期日、周一、1…7）。"
        assert rows[1][2] == "找不到教室「城关一中/999」（请写成 学校/教室）。"
        assert rows[2][2].startswith("时间冲突：教室 ") and "CSV 第 2 行的课程" in rows[2][2]
        assert rows[2][2].endswith("这一行共有 18 节课冲突。"), rows[2][2]
        result = await page.inner_text("#import-result")
        assert result.startswith("课表没有导入：3 行有错误（第 3、4、5 行）"), result
        assert (await count(server, LessonSeries), await count(server, Lesson)) == (0, 0)
        await screenshot(page, "timetable-import-refused")

        # The template the page offers: the importer's headers, rooms of a real pairing.
        async with page.expect_download() as download_info:
            await page.click("#import-template")
        download = await download_info.value
        assert download.suggested_filename == "课表模板.csv"
        template = (await asyncio.to_thread(Path(await download.path()).read_bytes)).decode()
        assert template.splitlines()[0] == (
            "\ufeff星期,节次,开始时间,结束时间,学科,年级,主讲教室,听课教室,教师,课题,类型,单双周,教师账号"
        )
        assert "城关一中/301,乡村小学/听课一" in template

        # Checking it writes nothing; importing it creates both rows' series.
        await page.set_input_files(
            "#import-file",
            files=[{"name": "模板.csv", "mimeType": "text/csv", "buffer": template.encode()}],
        )
        await page.click("#import-check")
        await settled(page)
        checked = await page.inner_text("#import-result")
        assert checked.startswith("检查通过：共 2 行，导入后将新建 2 个每周课程"), checked
        assert await page.locator("#import-errors-wrap").is_hidden()
        assert await count(server, LessonSeries) == 0
        await page.click("#import-run")
        await settled(page)
        imported = await page.inner_text("#import-result")
        lessons = await count(server, Lesson)
        assert imported == f"已导入 2 行：新建 2 个每周课程、{lessons} 节课。", imported
        # Mondays but 10-05 (18), and Wednesdays of odd weeks but the holiday (10).
        assert lessons == 18 + 10
        await screenshot(page, "timetable-import")

        # The week view shows them: period 3 on Monday, the explicit 14:00 on Wednesday.
        await tab(page, "week")
        await choose_pairing(page, ids["pairing"])
        await show_week(page, 3)  # 09-14 .. 09-20, an odd week
        assert "一次函数" in await page.inner_text(cell("p3", f"{YEAR}-09-14"))
        wednesday = await page.inner_text(cell("other", f"{YEAR}-09-16"))
        assert "春" in wednesday and "14:00–14:45" in wednesday
        await show_week(page, 2)  # even: no 单周 lesson
        assert await page.locator(f"{cell('p3', f'{YEAR}-09-07')} .tt-lesson").count() == 1
        assert await page.locator('#week-table tr[data-row="other"]').count() == 0

        # By teacher, by classroom: the same lessons found another way (week 2 still shown).
        await page.select_option("#week-by", "teacher")
        await page.select_option("#week-target", "王芳")
        await until(page, CAPTION_HAS, "王芳 · 第 2 周")
        assert await page.locator("#week-table .tt-lesson").count() == 1
        assert "王芳" in await page.inner_text(cell("p3", f"{YEAR}-09-07"))
        await page.select_option("#week-by", "classroom")
        await page.select_option("#week-target", str(ids["room"]))
        await until(page, CAPTION_HAS, "乡村小学/听课一 · 第 2 周")
        assert await page.locator("#week-table .tt-lesson").count() == 1

        # --- a feed for the main classroom: shown, copied, fetched, parsed, revoked.
        await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await tab(page, "feeds")
        await page.select_option("#feed-classroom", str(ids["main"]))
        await page.fill("#feed-name", "301 的课表")
        await page.press("#feed-name", "Enter")
        await page.locator("#feed-issued").wait_for()
        url = await page.input_value("#feed-url")
        assert url.startswith(f"{server.base_url}/api/v1/feeds/calendar.ics?token=tbcal_"), url
        await page.click("#feed-copy")
        await until(page, "document.getElementById('feed-copy-status').textContent !== ''")
        assert await page.inner_text("#feed-copy-status") == "已复制到剪贴板。"
        assert await page.evaluate("navigator.clipboard.readText()") == url
        assert "教室 城关一中/301" in await page.inner_text("#feed-table tbody")
        await screenshot(page, "timetable-feeds")

        async with server.api.session.get(url) as response:  # as a calendar program would
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/calendar")
            calendar = icalendar.Calendar.from_ical(await response.read())
        events = list(calendar.walk("VEVENT"))
        in_room = await db_rows(
            server, sa.select(LessonRoom.lesson_id).where(LessonRoom.classroom_id == ids["main"])
        )
        assert len(events) == len(in_room) == lessons
        first = min(events, key=lambda e: e.decoded("DTSTART"))
        assert (
            first.decoded("DTSTART").astimezone(SHANGHAI).strftime("%m-%d %H:%M") == "09-02 14:00"
        )
        assert "春" in str(first["SUMMARY"])

        [(feed,)] = await db_rows(server, sa.select(CalendarFeed))
        await page.click(f'#feed-table button[data-action="revoke-feed"][data-id="{feed.id}"]')
        await until(page, "document.getElementById('tt-confirm').open")
        await page.click("#tt-confirm-yes")
        await until(page, "!document.getElementById('tt-confirm').open")
        row = f'#feed-table tr[data-id="{feed.id}"]'
        await until(page, "s => document.querySelector(s).dataset.revoked === 'true'", row)
        async with server.api.session.get(url) as response:
            assert response.status == 404
        [(feed,)] = await db_rows(server, sa.select(CalendarFeed))
        assert feed.revoked

        # --- the imported series edited (its lessons follow) and ended (later ones go).
        await tab(page, "series")
        series = {s.title: s for (s,) in await db_rows(server, sa.select(LessonSeries))}
        spring, linear = series["春"], series["一次函数"]
        await page.click(f'#series-table button[data-action="edit-series"][data-id="{spring.id}"]')
        assert await page.input_value("#series-title-input") == "春"
        assert await page.is_disabled("#series-pairing")  # a series keeps its pairing
        await page.fill("#series-title-input", "春（朗读）")
        await page.press("#series-title-input", "Enter")
        await until(
            page, "document.getElementById('series-result').textContent.startsWith('已保存')"
        )
        assert "调整 10 节" in await page.inner_text("#series-result")
        titles = await db_rows(
            server,
            sa.select(Lesson.title)
            .join(SeriesOccurrence, SeriesOccurrence.lesson_id == Lesson.id)
            .where(SeriesOccurrence.series_id == spring.id),
        )
        assert [t for (t,) in titles] == ["春（朗读）"] * 10

        await page.click(f'#series-table button[data-action="end-series"][data-id="{linear.id}"]')
        await until(page, "document.getElementById('series-end-dialog').open")
        await page.fill("#series-end-date", f"{YEAR}-10-31")
        await page.press("#series-end-date", "Enter")
        await until(page, "!document.getElementById('series-end-dialog').open")
        await until(page, "document.getElementById('series-result').textContent.includes('结束')")
        ended = await page.inner_text("#series-result")
        # Mondays 09-07 .. 10-26 but 10-05 stay (7); the 11 after 10-31 go.
        assert f"将在 {YEAR}-10-31 之后结束" in ended and "删除 11 节" in ended, ended
        [(last,)] = await db_rows(
            server, sa.select(LessonSeries.last_date).where(LessonSeries.id == linear.id)
        )
        assert str(last) == f"{YEAR}-10-31"
        assert await count(server, Lesson) == 7 + 10
        assert problems == [], problems


# ------------------------------------------------------------------ who may, and English


async def test_roles_and_languages(tmp_path: Path, browser: Any) -> None:
    async with running_server(tmp_path / "data") as server:
        ids = await registers(server.api)
        await server.api.call("POST", "/terms", TERM)
        await add_user(server.api, "teacher1", "teacher", ids["city"], "王老师")
        await add_user(server.api, "city-admin", "school_admin", ids["city"], "城关一中管理员")

        # A teacher: told so, shown nothing of the timetable.
        page, problems = await open_page(browser, server.base_url, ("teacher1", PASSWORD))
        assert await page.evaluate("window.tongbuTimetable.tab") == "denied"
        assert await page.is_visible("#tt-denied")
        assert await page.inner_text("#tt-denied h2") == "无权限访问课表管理"
        assert await page.is_hidden("#tt-tabs") and await page.is_hidden("#tab-terms")
        assert await page.locator('.nav-links a[data-nav="timetable"]').count() == 0
        assert problems == [], problems

        # A school admin reads the district's terms and schedules; does not edit terms.
        page, problems = await open_page(browser, server.base_url, ("city-admin", PASSWORD))
        assert await page.is_hidden("#term-new")
        assert await page.is_visible("#terms-readonly")
        assert await page.locator('#term-table button[data-action="edit-term"]').count() == 0
        assert TERM["name"] in await page.inner_text("#term-table tbody")
        await tab(page, "series")
        assert await page.is_hidden("#series-generate")
        options = await page.locator("#series-pairing option").evaluate_all(
            "os => os.map(o => o.value).filter(Boolean)"
        )
        assert options == [str(ids["pairing"])]
        assert problems == [], problems

        # English, chosen in the query; the section and term survive the switch.
        page, problems = await open_page(
            browser, server.base_url, path="/admin/timetable?lang=en#week"
        )
        assert await page.inner_text("#week-title") == "Week view"
        assert await page.inner_text('#tt-tabs a[data-tab="import"]') == "Import"
        assert await page.evaluate("document.documentElement.lang") == "en"
        term_id = await page.evaluate("window.tongbuTimetable.termId")
        assert term_id is not None
        await page.click("#nav-lang")  # back to Chinese: same section, same term
        await page.wait_for_url(re.compile(r"/admin/timetable\?term=\d+#week$"))
        await until(page, "window.tongbuTimetable.tab === 'week'")
        assert await page.inner_text("#week-title") == "周课表"
        assert await page.evaluate("window.tongbuTimetable.termId") == term_id
        assert problems == [], problems
