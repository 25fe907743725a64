"""The admin pages in a real Chromium, against the real server (tests/live_harness.py).

- An admin registers a city school, its classroom, a rural school and its classroom,
  pairs them and schedules a lesson, all through the pages; bad input gets a visible
  Chinese message next to its field and nothing is saved (checked through the API).
- The live overview shows a lesson taught by two `tongbu agent` processes (main and one
  receiving room) with both rooms connected, and updates itself when one agent stops.

Screenshots of each section (zh-CN) go to test-artifacts/admin-*.png.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.browser import artifact_path, chromium_available, launch_chromium
from tests.live_harness import (
    Api,
    ApiError,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
)

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]

BEIJING = ZoneInfo("Asia/Shanghai")
STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
CJK = re.compile(r"[\u4e00-\u9fff]")
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def until(page: Any, expression: str, within: float = 15.0) -> Any:
    """Poll a JS expression until truthy. (page.wait_for_function evals its predicate in
    the page, which the pages' Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {expression}")
        await asyncio.sleep(0.1)


async def open_admin(
    browser: Any, base_url: str, token: str, section: str, **kw: Any
) -> tuple[Any, list[str]]:
    # A Chinese browser, so date inputs and screenshots look as a teacher's would.
    page = await browser.new_page(viewport=kw.pop("viewport", LAPTOP), locale="zh-CN", **kw)
    problems: list[str] = []
    # Refusals the test provokes (400/409) are logged by Chromium as failed loads; those
    # are expected. Anything else logged as an error is a fault of the page.
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.type}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    response = await page.goto(f"{base_url}/admin#{section}&api={token}")
    assert response.ok and "script-src 'self'" in response.headers["content-security-policy"]
    await until(page, "window.tongbuAdmin && window.tongbuAdmin.section !== null")
    # The token left the address bar; the section stayed.
    assert "api=" not in page.url and page.url.endswith(f"#{section}")
    return page, problems


async def go(page: Any, section: str) -> None:
    """Follow the navigation link, as a user would, and wait for the section to load."""
    await page.click(f'#admin-nav a[data-section="{section}"]')
    loaded = "document.getElementById('status').textContent === ''"
    await until(page, f"window.tongbuAdmin.section === '{section}' && {loaded}")


async def wait_status(page: Any, kind: str) -> str:
    await page.wait_for_selector(f'#status[data-status="{kind}"]')
    return await page.text_content("#status")


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(artifact_path(f"admin-{name}.png")), full_page=True)


async def count(api: Api, path: str) -> int:
    return len((await api.call("GET", path))["items"])


def test_every_string_the_admin_pages_use_is_in_both_catalogues() -> None:
    zh = json.loads((STATIC / "i18n/zh-CN.json").read_text())
    en = json.loads((STATIC / "i18n/en.json").read_text())
    html = (STATIC / "admin.html").read_text()
    script = (STATIC / "js/admin.js").read_text()
    used = set(re.findall(r'data-i18n(?:-aria-label)?="([\w.]+)"', html))
    used |= set(re.findall(r"\bt\('([\w.]+)'", script))
    # Keys the page builds at run time.
    used |= {f"school.kind.{k}" for k in ("city", "rural")}
    used |= {f"lesson.state.{s}" for s in ("scheduled", "open", "live", "ended", "cancelled")}
    used |= {f"kind.{k}" for k in ("dedicated", "famous_teacher", "famous_school")}
    used |= {f"admin.action.{a}" for a in ("open", "cancel", "end")}
    used |= {f"admin.role.{r}" for r in ("admin", "school_admin", "teacher", "reviewer", "device")}
    used |= {f"admin.nav.{n}" for n in ("schools", "classrooms", "pairings", "lessons", "live")}
    used |= {f"admin.live.{d}{x}" for d in ("up", "down") for x in ("", "_title")}
    used |= {
        f"admin.live.broadcast.{b}"
        for b in ("waiting", "live", "stalled", "unsupported_codec", "ended")
    }
    used |= {f"role.{r}" for r in ("main", "receiving")}
    assert len(used) > 100
    assert used <= zh.keys(), used - zh.keys()
    assert used <= en.keys(), used - en.keys()
    for key in used:  # the Chinese catalogue is Chinese, the English one is not
        words = re.sub(r"\{\w+\}|kbps|API", "", zh[key])
        assert not re.search("[A-Za-z]{3}", words), (key, zh[key])
        assert not CJK.search(en[key]), (key, en[key])


def beijing_input(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M")


async def test_admin_registers_and_schedules_through_the_pages(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        page, problems = await open_admin(browser, server.base_url, api.token, "schools")
        assert await page.get_attribute("html", "lang") == "zh-CN"
        assert await page.text_content("h1") == "同步课堂 · 管理"

        # ---- a school, by keyboard only; an empty name is refused next to the field
        await page.focus("#school-name")
        await page.keyboard.press("Enter")
        assert await page.text_content("#school-name-error") == "此项必填。"
        assert await page.is_visible("#school-name-error")
        assert await page.get_attribute("#school-name", "aria-invalid") == "true"
        assert await page.evaluate("document.activeElement.id") == "school-name"
        assert await count(api, "/schools") == 0
        await page.keyboard.type("城关第一中学")
        await page.keyboard.press("Tab")  # the kind: city is the first choice
        await page.keyboard.press("Tab")
        await page.keyboard.type("城关区")
        await page.keyboard.press("Enter")
        assert "城关第一中学" in await wait_status(page, "ok")
        assert await page.text_content("#school-name-error") == ""
        await page.fill("#school-name", "青山村小学")
        await page.select_option("#school-kind", "rural")
        await page.click("#school-form button[type=submit]")
        await page.wait_for_selector("#school-table tbody tr:nth-child(2)")
        schools = {s["name"]: s for s in (await api.call("GET", "/schools"))["items"]}
        assert (
            schools["城关第一中学"]["kind"] == "city"
            and schools["城关第一中学"]["region"] == "城关区"
        )
        assert schools["青山村小学"]["kind"] == "rural"
        assert "乡村学校（听课）" in await page.text_content("#school-table")
        await shot(page, "schools")

        # ---- classrooms; a duplicate name is refused by the server, shown next to the name
        await go(page, "classrooms")
        await page.click("#classroom-form button[type=submit]")
        assert await page.text_content("#classroom-school-error") == "请选择学校。"
        assert await page.text_content("#classroom-name-error") == "此项必填。"
        city_id, rural_id = schools["城关第一中学"]["id"], schools["青山村小学"]["id"]
        for school_id, name in ((city_id, "主讲教室"), (rural_id, "听课教室")):
            await page.select_option("#classroom-school", str(school_id))
            await page.fill("#classroom-name", name)
            await page.click("#classroom-form button[type=submit]")
            assert name in await wait_status(page, "ok")
            await page.evaluate("document.getElementById('status').dataset.status = ''")
        assert await count(api, "/classrooms") == 2
        await page.select_option("#classroom-school", str(rural_id))
        await page.fill("#classroom-name", "听课教室")
        await page.click("#classroom-form button[type=submit]")
        await page.wait_for_selector("#classroom-name-error:not(:empty)")
        assert await page.text_content("#classroom-name-error") == "该学校已有同名教室。"
        assert await wait_status(page, "error") == "未保存：请查看标出的错误。"
        assert await count(api, "/classrooms") == 2
        await shot(page, "classrooms")
        rooms = {c["name"]: c["id"] for c in (await api.call("GET", "/classrooms"))["items"]}

        # ---- a pairing: the main room from city schools, receiving rooms from rural ones
        await go(page, "pairings")
        main_options = await page.eval_on_selector_all(
            "#pairing-main option", "os => os.map(o => o.value)"
        )
        assert main_options == ["", str(rooms["主讲教室"])]
        await page.fill("#pairing-name", "城关一中—青山村小学")
        await page.select_option("#pairing-main", str(rooms["主讲教室"]))
        await page.click("#pairing-form button[type=submit]")  # no receiving room ticked
        assert await page.text_content("#pairing-receiving-error") == "请选择 1 到 4 间听课教室。"
        assert await page.is_visible("#pairing-receiving-error")
        assert await count(api, "/pairings") == 0
        await page.focus(f"#pairing-rcv-{rooms['听课教室']}")
        await page.keyboard.press("Space")
        await page.click("#pairing-form button[type=submit]")
        assert "城关一中—青山村小学" in await wait_status(page, "ok")
        pairings = (await api.call("GET", "/pairings"))["items"]
        assert [(p["main_classroom_id"], p["receiving_classroom_ids"]) for p in pairings] == [
            (rooms["主讲教室"], [rooms["听课教室"]])
        ]
        await shot(page, "pairings")

        # ---- a lesson; ending before it starts is refused, nothing saved
        await go(page, "lessons")
        start = (datetime.now(UTC) + timedelta(days=1)).replace(
            hour=1, minute=0, second=0, microsecond=0
        )
        await page.select_option("#lesson-pairing", str(pairings[0]["id"]))
        await page.select_option("#lesson-kind", "famous_teacher")
        await page.fill("#lesson-subject", "数学")
        await page.fill("#lesson-grade", "初二")
        await page.fill("#lesson-teacher", "王老师")
        await page.fill("#lesson-title", "一次函数的图像")
        await page.fill("#lesson-start", beijing_input(start))
        await page.fill("#lesson-end", beijing_input(start - timedelta(minutes=5)))
        await page.click("#lesson-form button[type=submit]")
        assert await page.text_content("#lesson-end-error") == "结束时间必须晚于开始时间。"
        assert await page.is_visible("#lesson-end-error")
        assert (await api.call("GET", "/lessons"))["total"] == 0
        await page.fill("#lesson-end", beijing_input(start + timedelta(minutes=45)))
        await page.click("#lesson-form button[type=submit]")
        assert "一次函数的图像" in await wait_status(page, "ok")
        lessons = (await api.call("GET", "/lessons"))["items"]
        assert len(lessons) == 1
        lesson = lessons[0]
        # Entered in Beijing time, stored as the same instant.
        assert datetime.fromisoformat(lesson["planned_start"]) == start
        assert datetime.fromisoformat(lesson["planned_end"]) == start + timedelta(minutes=45)
        assert (lesson["kind"], lesson["subject"], lesson["grade"], lesson["teacher_name"]) == (
            "famous_teacher",
            "数学",
            "初二",
            "王老师",
        )
        assert [r["classroom_id"] for r in lesson["rooms"]] == [
            rooms["主讲教室"],
            rooms["听课教室"],
        ]

        # ---- a double booking: the server's conflict, in Chinese, next to the start time
        await page.select_option("#lesson-pairing", str(pairings[0]["id"]))
        for selector, value in (
            ("#lesson-subject", "语文"),
            ("#lesson-grade", "初二"),
            ("#lesson-teacher", "李老师"),
            ("#lesson-title", "背影"),
        ):
            await page.fill(selector, value)
        await page.fill("#lesson-start", beijing_input(start + timedelta(minutes=30)))
        await page.fill("#lesson-end", beijing_input(start + timedelta(minutes=75)))
        await page.click("#lesson-form button[type=submit]")
        await page.wait_for_selector("#lesson-start-error:not(:empty)")
        clash = await page.text_content("#lesson-start-error")
        assert clash.startswith("时间冲突：") and "一次函数的图像" in clash, clash
        assert f"第 {lesson['id']} 号课程" in clash
        assert await page.is_visible("#lesson-start-error")
        assert (await api.call("GET", "/lessons"))["total"] == 1
        row = f'#lesson-table tr[data-id="{lesson["id"]}"]'
        assert await page.text_content(f"{row} .pill") == "未开始"
        await shot(page, "lessons")

        # ---- open, then cancel (a second press confirms), from the list
        await page.click(f'{row} button[data-action="open"]')
        await page.wait_for_selector(f'{row}[data-state="open"]')
        await page.click(f'{row} button[data-action="cancel"]')
        assert (await api.call("GET", f"/lessons/{lesson['id']}"))["state"] == "open"
        assert (await page.text_content(f'{row} button[data-action="cancel"]')) == "确认取消课程？"
        await page.click(f'{row} button[data-action="cancel"]')
        await page.wait_for_selector(f'{row}[data-state="cancelled"]')
        assert (await api.call("GET", f"/lessons/{lesson['id']}"))["state"] == "cancelled"
        assert await page.text_content(f"{row} .pill") == "已取消"

        assert problems == [], problems
        await page.close()


async def test_every_server_refusal_reads_as_a_catalogue_sentence(
    tmp_path: Path, browser: Any
) -> None:
    """The real API's validation errors, fed to the page's mapping: Chinese, never raw."""
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, tag="x")
        detail = await api.call("GET", f"/lessons/{lesson.lesson_id}")
        bad: list[tuple[str, str, dict[str, Any], str]] = [
            ("/schools", "name", {"name": "", "kind": "city"}, "此项必填。"),
            ("/schools", "kind", {"name": "x", "kind": "town"}, "所选的值无效。"),
            ("/schools", "name", {"kind": "city"}, "此项必填。"),
            ("/schools", "name", {"name": "长" * 201, "kind": "city"}, "太长了：最多 200 个字。"),
            (
                "/schools",
                "timezone",
                {"name": "x", "kind": "city", "timezone": "Mars/Base"},
                "无法识别的时区。",
            ),
            (
                "/pairings",
                "receiving_classroom_ids",
                {
                    "name": "p",
                    "main_classroom_id": lesson.main_classroom_id,
                    "receiving_classroom_ids": [],
                },
                "请选择 1 到 4 间听课教室。",
            ),
            (
                "/pairings",
                "receiving_classroom_ids",
                {
                    "name": "p",
                    "main_classroom_id": lesson.main_classroom_id,
                    "receiving_classroom_ids": [1, 2, 3, 4, 5],
                },
                "请选择 1 到 4 间听课教室。",
            ),
            (
                "/pairings",
                "receiving_classroom_ids",
                {
                    "name": "p",
                    "main_classroom_id": lesson.main_classroom_id,
                    "receiving_classroom_ids": [lesson.main_classroom_id],
                },
                "主讲教室不能同时作为听课教室。",
            ),
            (
                "/pairings",
                "receiving_classroom_ids",
                {
                    "name": "p",
                    "main_classroom_id": lesson.main_classroom_id,
                    "receiving_classroom_ids": [lesson.receiving_classroom_ids[0]] * 2,
                },
                "同一间听课教室选了两次。",
            ),
            (
                "/pairings",
                "main_classroom_id",
                {"name": "p", "main_classroom_id": 999, "receiving_classroom_ids": [1]},
                "所选项目已不存在，请刷新后重选。",
            ),
            (
                "/lessons",
                "planned_end",
                {
                    "pairing_id": detail["pairing_id"],
                    "kind": "dedicated",
                    "subject": "数学",
                    "grade": "初二",
                    "teacher_name": "王",
                    "title": "t",
                    "planned_start": "2030-01-01T08:00:00+08:00",
                    "planned_end": "2030-01-01T07:00:00+08:00",
                },
                "结束时间必须晚于开始时间。",
            ),
            (
                "/lessons",
                "planned_start",
                {
                    "pairing_id": detail["pairing_id"],
                    "kind": "dedicated",
                    "subject": "数学",
                    "grade": "初二",
                    "teacher_name": "王",
                    "title": "t",
                    "planned_start": "2030-01-01T08:00:00",
                    "planned_end": "2030-01-01T09:00:00+08:00",
                },
                "请填写完整的日期和时间。",
            ),
        ]
        page, problems = await open_admin(browser, server.base_url, api.token, "schools")
        for path, field, body, expected in bad:
            with pytest.raises(ApiError) as refused:
                await api.call("POST", path, body)
            error = refused.value.body["error"]
            described = await page.evaluate(
                "e => window.tongbuAdmin.describeError(e)",
                {"status": refused.value.status, **error},
            )
            assert described == {"field": field, "text": expected}, (path, body, error)
        # The double booking names the other lesson and its time in Beijing time.
        with pytest.raises(ApiError) as refused:
            await api.call(
                "POST",
                "/lessons",
                {
                    "pairing_id": detail["pairing_id"],
                    "kind": "dedicated",
                    "subject": "语文",
                    "grade": "初二",
                    "teacher_name": "李",
                    "title": "背影",
                    "planned_start": detail["planned_start"],
                    "planned_end": detail["planned_end"],
                },
            )
        described = await page.evaluate(
            "e => window.tongbuAdmin.describeError(e)",
            {"status": 409, **refused.value.body["error"]},
        )
        start = datetime.fromisoformat(detail["planned_start"]).astimezone(BEIJING)
        assert described["field"] == "planned_start"
        assert described["text"].startswith("时间冲突：乡村小学x1 听课1") or described[
            "text"
        ].startswith("时间冲突：城关一中x 主讲教室"), described
        assert start.strftime("%H:%M") in described["text"] and "一次函数" in described["text"]
        # Something the catalogue does not know: a generic sentence carrying the server's text.
        described = await page.evaluate(
            "e => window.tongbuAdmin.describeError(e)",
            {"status": 418, "code": "teapot", "message": "short and stout", "field": None},
        )
        assert described["text"] == "服务器拒绝了请求（418）：short and stout"
        assert problems == [], problems


async def test_english_and_phone_layouts(tmp_path: Path, browser: Any) -> None:
    async with running_server(tmp_path / "data") as server:
        await create_lesson(server.api, receiving=2, tag="p")
        page = await browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
        await page.goto(f"{server.base_url}/admin?lang=en#lessons&api={server.api.token}")
        await until(page, "window.tongbuAdmin && window.tongbuAdmin.section === 'lessons'")
        await page.wait_for_selector("#lesson-table tbody tr[data-id]")
        assert await page.get_attribute("html", "lang") == "en"
        assert await page.text_content("h1") == "Tongbu · Admin"
        body = await page.text_content("body")
        visible = await page.evaluate("document.body.innerText")
        # Everything on screen comes from the English catalogue (the data is Chinese).
        assert "Schedule a lesson" in visible and "Open" in visible
        assert not CJK.search(
            re.sub(
                r"中文|城关一中p|乡村小学p\d|主讲教室|听课\d|数学|初二|王老师|一次函数|结对p",
                "",
                visible,
            )
        ), visible
        assert body
        # Nothing wider than the phone but the scrolling table.
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, overflow
        await page.screenshot(path=str(artifact_path("admin-lessons-phone-en.png")), full_page=True)
        await page.close()


async def test_live_overview_follows_agents(tmp_path: Path, browser: Any) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, tag="live")
        receiving_id = lesson.receiving_classroom_ids[0]
        agents = [
            start_agent(
                "main",
                server.base_url,
                await join_token(api, lesson.lesson_id, "main", lesson.main_classroom_id),
                tmp_path,
            ),
            start_agent(
                "rcv",
                server.base_url,
                await join_token(api, lesson.lesson_id, "receiving", receiving_id),
                tmp_path,
            ),
        ]
        try:
            page, problems = await open_admin(browser, server.base_url, api.token, "live")
            card = f'.live-card[data-lesson="{lesson.lesson_id}"]'
            await page.wait_for_selector(
                f'{card}[data-state="live"][data-connected="2"]', timeout=60_000
            )
            for classroom_id in (lesson.main_classroom_id, receiving_id):
                room = f'{card} li[data-classroom-id="{classroom_id}"]'
                assert await page.get_attribute(room, "data-connected") == "true"
                assert await page.text_content(f"{room} .live-room-state") == "已连接"
            # Link quality arrives once media flows: a bitrate on the main room's uplink.
            uplink = (
                f'{card} li[data-classroom-id="{lesson.main_classroom_id}"] '
                '.link-badge[data-direction="up"]'
            )
            await until(
                page,
                f"/^上行 [1-9]\\d* kbps/.test(document.querySelector('{uplink}')?.textContent)",
                within=30,
            )
            assert "在线教室 2/2" in await page.text_content(f"{card} .live-summary")
            await shot(page, "live")

            # The receiving room's box goes away: the card follows without a reload.
            updates = await page.evaluate("window.tongbuAdmin.liveUpdates")
            await agents[1].stop()
            room = f'{card} li[data-classroom-id="{receiving_id}"]'
            await page.wait_for_selector(f'{room}[data-connected="false"]', timeout=30_000)
            assert await page.text_content(f"{room} .live-room-state") == "未连接"
            assert "在线教室 1/2" in await page.text_content(f"{card} .live-summary")
            assert await page.evaluate("window.tongbuAdmin.liveUpdates") > updates
            assert (
                await page.get_attribute(
                    f'{card} li[data-classroom-id="{lesson.main_classroom_id}"]', "data-connected"
                )
                == "true"
            )
            await shot(page, "live-one-room-left")

            # A watch link is minted on demand and opens the viewer with its token.
            await page.click(f'{card} button[data-action="watch"]')
            link = await page.wait_for_selector(f"{card} a.watch-link")
            href = await link.get_attribute("href")
            assert re.fullmatch(rf"/watch/{lesson.lesson_id}#token=\S+", href), href
            assert await page.evaluate("document.activeElement.classList.contains('watch-link')")
            assert problems == [], problems
            await page.close()
        finally:
            await stop_all(agents)


async def test_sign_in_with_a_password_and_out_again(tmp_path: Path, browser: Any) -> None:
    async with running_server(tmp_path / "data") as server:
        page = await browser.new_page(viewport=LAPTOP, locale="zh-CN")
        await page.goto(f"{server.base_url}/admin")
        await page.wait_for_selector("#section-signin:not([hidden])")
        assert await page.is_hidden("#admin-nav")
        await page.fill("#signin-username", "e2e-admin")
        await page.fill("#signin-password", "wrong-password")
        await page.press("#signin-password", "Enter")
        await page.wait_for_selector('#signin-form [data-error-for=""]:not(:empty)')
        assert "重新登录" in await page.text_content('#signin-form [data-error-for=""]')
        await page.fill("#signin-password", "e2e-password-1")
        await page.press("#signin-password", "Enter")
        await until(page, "window.tongbuAdmin.section === 'lessons'")
        assert await page.text_content("#whoami") == "e2e-admin（管理员）"
        assert page.url.endswith("#lessons")
        await page.click("#sign-out")
        await page.wait_for_selector("#section-signin:not([hidden])")
        await page.reload()
        await page.wait_for_selector("#section-signin:not([hidden])")  # the token is gone
        await page.close()
