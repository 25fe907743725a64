"""The admin pages in a real Chromium, against the real server (tests/live_harness.py).

Every page is signed in with the session cookie (POST /api/v1/auth/session from the
browser context, or the /login page), as a person would be; no credential is in the URL
or in storage.

- An admin registers a city school, its classroom, a rural school and its classroom,
  pairs them and schedules a lesson, all through the pages; bad input gets a visible
  Chinese message next to its field and nothing is saved (checked through the API).
- The same admin edits each of them in a pre-filled dialog, by keyboard; a refused edit
  shows its Chinese message and leaves the row as it was in the database.
- Deleting what a lesson refers to is refused with a message, and archiving is offered.
- A school admin sees only their school; a teacher is told the page is not for them.
- The live overview shows a lesson taught by two `tongbu agent` processes (main and one
  receiving room) with both rooms connected, and updates itself when one agent stops.

Screenshots of each section (zh-CN) go to test-artifacts/screenshots/admin-*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from classroom.models import Classroom, Lesson, Pairing, School
from signaling.appkeys import DB
from tests.browser import artifact_path, chromium_available, launch_chromium
from tests.live_harness import (
    Api,
    ApiError,
    LiveServer,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
)
from tests.page_session import PASSWORD, add_user
from tests.page_session import until as poll_until

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
    return await poll_until(lambda: page.evaluate(expression), within, expression)


ADMIN = ("e2e-admin", "e2e-password-1")  # created by running_server


async def signed_in_page(
    browser: Any,
    base_url: str,
    user: tuple[str, str] = ADMIN,
    *,
    viewport: dict[str, int] = LAPTOP,
    **kw: Any,
) -> Any:
    """A fresh browser context signed in as `user` with the session cookie, as the login
    page would sign it in: POST /auth/session from the context, which keeps the cookie."""
    # A Chinese browser, so date inputs and screenshots look as a teacher's would.
    kw.setdefault("locale", "zh-CN")
    context = await browser.new_context(viewport=viewport, **kw)
    page = await context.new_page()
    response = await page.request.post(
        f"{base_url}/api/v1/auth/session", data={"username": user[0], "password": user[1]}
    )
    assert response.ok, await response.text()
    cookies = {c["name"] for c in await context.cookies()}
    assert "tongbu_session" in cookies
    return page


async def open_admin(
    browser: Any,
    base_url: str,
    section: str,
    user: tuple[str, str] = ADMIN,
    **kw: Any,
) -> tuple[Any, list[str]]:
    page = await signed_in_page(browser, base_url, user, **kw)
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
    response = await page.goto(f"{base_url}/admin#{section}")
    assert response.ok and "script-src 'self'" in response.headers["content-security-policy"]
    await until(page, "window.tongbuAdmin && window.tongbuAdmin.section !== null")
    assert page.url.endswith(f"#{section}")
    # Signed in by the HttpOnly cookie alone: nothing of it is readable by script.
    assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
    assert "tongbu_session" not in await page.evaluate("document.cookie")
    return page, problems


async def stored(server: LiveServer, model: type, ident: int) -> Any:
    """A row as the database holds it (the server runs in this process)."""
    async with server.app[DB]() as s:
        return await s.get(model, ident)


async def go(page: Any, section: str) -> None:
    """Follow the navigation link, as a user would, and wait for the section to load."""
    await page.click(f'#admin-nav a[data-section="{section}"]')
    loaded = "document.getElementById('status').textContent === ''"
    await until(page, f"window.tongbuAdmin.section === '{section}' && {loaded}")


async def wait_status(page: Any, kind: str) -> str:
    await page.wait_for_selector(f'#status[data-status="{kind}"]')
    return await page.text_content("#status")


async def shot(page: Any, name: str) -> None:
    path = artifact_path("screenshots") / f"admin-{name}.png"
    path.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)


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
    register_actions = ("edit", "delete", "archive", "restore")
    used |= {f"admin.action.{a}{x}" for a in register_actions for x in ("", "_named")}
    used |= {f"admin.confirm.{a}_{x}" for a in ("delete", "archive") for x in ("title", "text")}
    used |= {f"admin.what.{w}" for w in ("school", "classroom", "pairing", "lesson")}
    uses = ("lessons", "pairings", "classrooms", "users", "recordings", "lesson_series")
    used |= {f"admin.use.{u}" for u in uses}
    used |= {"admin.live.recording_state.recording"}
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
        page, problems = await open_admin(browser, server.base_url, "schools")
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
        page, problems = await open_admin(browser, server.base_url, "schools")
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
        page = await signed_in_page(
            browser, server.base_url, viewport=PHONE, is_mobile=True, has_touch=True, locale="en-US"
        )
        await page.goto(f"{server.base_url}/admin?lang=en#lessons")
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
            page, problems = await open_admin(browser, server.base_url, "live")
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
            # The recording follows the lesson: its state, tracks and bytes so far (a track is
            # counted from its first keyframe, which may come a few seconds after the bitrate).
            await page.wait_for_selector(f'{card} .live-recording[data-recording="recording"]')
            await until(
                page,
                f"/^录制：正在录制 · [1-9]\\d* 路 · \\d+\\.\\d MB$/"
                f".test(document.querySelector('{card} .live-recording')?.textContent)",
                within=30,
            )
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


async def test_signing_in_on_the_login_page_brings_the_admin_back(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        context = await browser.new_context(viewport=LAPTOP, locale="zh-CN")
        page = await context.new_page()
        # Not signed in: off to the login page, which is told where to come back to.
        await page.goto(f"{server.base_url}/admin#pairings")
        await page.wait_for_url(re.compile(r"/login\?"))
        assert parse_qs(urlsplit(page.url).query)["next"] == ["/admin#pairings"]
        await page.fill("#login-username", ADMIN[0])
        await page.fill("#login-password", ADMIN[1])
        await page.press("#login-password", "Enter")
        await page.wait_for_url(re.compile(r"/admin#pairings$"))
        await until(page, "window.tongbuAdmin && window.tongbuAdmin.section === 'pairings'")
        assert await page.text_content("#nav-user") == "e2e-admin（管理员）"
        assert await page.evaluate("sessionStorage.length + localStorage.length") == 0
        await page.click("#nav-sign-out")
        await page.wait_for_url(re.compile(r"/login$"))
        assert "tongbu_session" not in {c["name"] for c in await context.cookies()}
        await page.goto(f"{server.base_url}/admin#lessons")  # the session is over
        await page.wait_for_url(re.compile(r"/login\?"))
        await context.close()


async def registers(api: Api) -> dict[str, Any]:
    """A city school (main room), a rural school (three rooms), a pairing of the main room
    with the first two, and a lesson on it tomorrow at 09:00 Beijing time."""
    city = await api.call("POST", "/schools", {"name": "城关一中", "kind": "city"})
    rural = await api.call("POST", "/schools", {"name": "青山村小", "kind": "rural"})
    main = await api.call("POST", "/classrooms", {"school_id": city["id"], "name": "主讲教室"})
    rooms = [
        (await api.call("POST", "/classrooms", {"school_id": rural["id"], "name": name}))["id"]
        for name in ("听课一", "听课二", "听课三")
    ]
    pairing = await api.call(
        "POST",
        "/pairings",
        {"name": "城乡结对", "main_classroom_id": main["id"], "receiving_classroom_ids": rooms[:2]},
    )
    start = (datetime.now(BEIJING) + timedelta(days=1)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    lesson = await api.call("POST", "/lessons", lesson_body(pairing["id"], start, "一次函数"))
    return {
        "city": city["id"],
        "rural": rural["id"],
        "main": main["id"],
        "rooms": rooms,
        "pairing": pairing["id"],
        "lesson": lesson["id"],
        "start": start,
    }


def lesson_body(
    pairing_id: int, start: datetime, title: str, teacher: str = "王老师"
) -> dict[str, Any]:
    return {
        "pairing_id": pairing_id,
        "kind": "dedicated",
        "subject": "数学",
        "grade": "初二",
        "teacher_name": teacher,
        "title": title,
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(minutes=45)).isoformat(),
    }


async def dialog_closed(page: Any, dialog: str) -> None:
    await until(page, f"!document.getElementById('{dialog}').open")


async def focused(page: Any) -> dict[str, Any]:
    return await page.evaluate(
        "({id: document.activeElement.id, action: document.activeElement.dataset.action,"
        " row: document.activeElement.dataset.id})"
    )


async def test_admin_edits_each_register_and_a_lesson_in_a_dialog(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        r = await registers(api)
        page, problems = await open_admin(browser, server.base_url, "schools")

        # ---- a school, by keyboard: Enter opens the dialog pre-filled, Esc closes it
        edit = f'#school-table button[data-action="edit"][data-id="{r["rural"]}"]'
        assert await page.get_attribute(edit, "aria-label") == "修改「青山村小」"
        await page.focus(edit)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#school-dialog[open]")
        assert await page.input_value("#school-edit-name") == "青山村小"
        assert await page.input_value("#school-edit-kind") == "rural"
        assert (await focused(page))["id"] == "school-edit-name"
        await page.keyboard.press("Escape")
        await dialog_closed(page, "school-dialog")
        assert await focused(page) == {"id": "", "action": "edit", "row": str(r["rural"])}
        # An empty name is refused next to the field; the database keeps the old one.
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#school-dialog[open]")
        await page.fill("#school-edit-name", "")
        await page.fill("#school-edit-region", "北山乡")
        await page.keyboard.press("Enter")
        assert await page.text_content("#school-edit-name-error") == "此项必填。"
        assert await page.is_visible("#school-edit-name-error")
        school = await stored(server, School, r["rural"])
        assert (school.name, school.region) == ("青山村小", "")
        await page.fill("#school-edit-name", "青山村完全小学")
        await page.keyboard.press("Enter")
        await dialog_closed(page, "school-dialog")
        assert "青山村完全小学" in await wait_status(page, "ok")
        school = await stored(server, School, r["rural"])
        assert (school.name, school.region, school.kind) == ("青山村完全小学", "北山乡", "rural")
        assert "青山村完全小学" in await page.text_content("#school-table")
        assert (await focused(page))["row"] == str(r["rural"])  # back on the redrawn row
        await shot(page, "schools")

        # ---- a classroom: a name its school already has is refused by the server
        await go(page, "classrooms")
        await page.click(f'#classroom-table button[data-action="edit"][data-id="{r["rooms"][1]}"]')
        await page.wait_for_selector("#classroom-dialog[open]")
        assert await page.input_value("#classroom-edit-name") == "听课二"
        assert await page.input_value("#classroom-edit-school") == str(r["rural"])
        await page.fill("#classroom-edit-name", "听课一")
        await page.press("#classroom-edit-name", "Enter")
        await page.wait_for_selector("#classroom-edit-name-error:not(:empty)")
        assert await page.text_content("#classroom-edit-name-error") == "该学校已有同名教室。"
        assert await page.get_attribute("#classroom-edit-name", "aria-invalid") == "true"
        assert await wait_status(page, "error") == "未保存：请查看标出的错误。"
        assert (await stored(server, Classroom, r["rooms"][1])).name == "听课二"
        await page.fill("#classroom-edit-name", "听课二班")
        await page.press("#classroom-edit-name", "Enter")
        await dialog_closed(page, "classroom-dialog")
        assert (await stored(server, Classroom, r["rooms"][1])).name == "听课二班"
        assert "听课二班" in await page.text_content("#classroom-table")
        await shot(page, "classrooms")

        # ---- a pairing: untick every room (refused here), then a new order and a new name
        await go(page, "pairings")
        await page.click(f'#pairing-table button[data-action="edit"][data-id="{r["pairing"]}"]')
        await page.wait_for_selector("#pairing-dialog[open]")
        first, second, third = (f"#pairing-edit-rcv-{room}" for room in r["rooms"])
        assert [await page.is_checked(x) for x in (first, second, third)] == [True, True, False]
        assert await page.text_content(f"label[for='{second[1:]}'] .order") == " 2"
        await page.uncheck(first)
        await page.uncheck(second)
        await page.press("#pairing-edit-name", "Enter")
        assert (
            await page.text_content("#pairing-edit-receiving-error") == "请选择 1 到 4 间听课教室。"
        )
        await page.check(third)
        await page.check(first)
        await page.fill("#pairing-edit-name", "城关—青山")
        await page.press("#pairing-edit-name", "Enter")
        await dialog_closed(page, "pairing-dialog")
        assert "城关—青山" in await wait_status(page, "ok")
        assert "1 节待上课程随之改到新教室" in await page.text_content("#status")
        pairing = await api.call("GET", f"/pairings/{r['pairing']}")
        assert (pairing["name"], pairing["receiving_classroom_ids"]) == (
            "城关—青山",
            [r["rooms"][2], r["rooms"][0]],
        )
        await shot(page, "pairings")

        # The pairing's lesson to come went with it to the new rooms.
        lesson = await stored(server, Lesson, r["lesson"])
        assert sorted(room.classroom_id for room in lesson.rooms) == sorted(
            [r["main"], r["rooms"][2], r["rooms"][0]]
        )

        # ---- a lesson: a room another lesson holds at that time is refused, nothing saved
        other_main = await api.call(
            "POST", "/classrooms", {"school_id": r["city"], "name": "主讲教室二"}
        )
        other_pairing = await api.call(
            "POST",
            "/pairings",
            {
                "name": "另一结对",
                "main_classroom_id": other_main["id"],
                "receiving_classroom_ids": [r["rooms"][1]],
            },
        )
        other = await api.call(
            "POST", "/lessons", lesson_body(other_pairing["id"], r["start"], "背影", "李老师")
        )
        # The pairing cannot take that room now: its lesson to come would be double-booked.
        await page.click(f'#pairing-table button[data-action="edit"][data-id="{r["pairing"]}"]')
        await page.wait_for_selector("#pairing-dialog[open]")
        await page.check(second)
        await page.press("#pairing-edit-name", "Enter")
        await page.wait_for_selector("#pairing-edit-receiving-error:not(:empty)")
        clash = await page.text_content("#pairing-edit-receiving-error")
        assert (
            clash.startswith("时间冲突：教室 青山村完全小学 听课二班")
            and f"已有课程 #{other['id']}「背影」" in clash
            and f"不能再安排课程 #{r['lesson']}「一次函数」" in clash
        ), clash
        await page.keyboard.press("Escape")
        await dialog_closed(page, "pairing-dialog")
        pairing = await api.call("GET", f"/pairings/{r['pairing']}")
        assert pairing["receiving_classroom_ids"] == [r["rooms"][2], r["rooms"][0]]
        await go(page, "lessons")
        row = f'#lesson-table tr[data-id="{r["lesson"]}"]'
        await page.click(f'{row} button[data-action="edit"]')
        await page.wait_for_selector("#lesson-dialog[open]")
        assert await page.input_value("#lesson-edit-title") == "一次函数"
        assert await page.input_value("#lesson-edit-start") == beijing_input(r["start"])
        assert "主讲教室：城关一中 · 主讲教室" in await page.text_content("#lesson-edit-hint")
        await page.fill("#lesson-edit-title", "一次函数的图像")
        await page.fill("#lesson-edit-end", beijing_input(r["start"] - timedelta(minutes=5)))
        await page.press("#lesson-edit-title", "Enter")
        assert await page.text_content("#lesson-edit-end-error") == "结束时间必须晚于开始时间。"
        await page.fill("#lesson-edit-end", beijing_input(r["start"] + timedelta(minutes=50)))
        await page.check(f"#lesson-edit-rcv-{r['rooms'][1]}")
        await page.press("#lesson-edit-title", "Enter")
        await page.wait_for_selector("#lesson-edit-receiving-error:not(:empty)")
        clash = await page.text_content("#lesson-edit-receiving-error")
        assert (
            clash.startswith("时间冲突：青山村完全小学 听课二")
            and f"第 {other['id']} 号课程「背影」" in clash
        ), clash
        await shot(page, "lessons-edit-refused")
        lesson = await stored(server, Lesson, r["lesson"])
        assert (lesson.title, lesson.planned_end) == (
            "一次函数",
            r["start"] + timedelta(minutes=45),
        )
        assert sorted(room.classroom_id for room in lesson.rooms) == sorted(
            [r["main"], r["rooms"][2], r["rooms"][0]]
        )
        # Without that room, and an hour later: saved.
        later = r["start"] + timedelta(hours=1)
        await page.uncheck(f"#lesson-edit-rcv-{r['rooms'][1]}")
        await page.uncheck(f"#lesson-edit-rcv-{r['rooms'][0]}")
        await page.fill("#lesson-edit-start", beijing_input(later))
        await page.fill("#lesson-edit-end", beijing_input(later + timedelta(minutes=45)))
        await page.press("#lesson-edit-title", "Enter")
        await dialog_closed(page, "lesson-dialog")
        assert "一次函数的图像" in await wait_status(page, "ok")
        lesson = await stored(server, Lesson, r["lesson"])
        assert (lesson.title, lesson.planned_start) == ("一次函数的图像", later)
        assert sorted((room.role, room.classroom_id) for room in lesson.rooms) == [
            ("main", r["main"]),
            ("receiving", r["rooms"][2]),
        ]
        assert "一次函数的图像" in await page.text_content(row)
        await shot(page, "lessons")

        # A live lesson offers no edit, and the server would refuse one anyway.
        await api.call("POST", f"/lessons/{other['id']}/open")
        await api.call("POST", f"/lessons/{other['id']}/start")
        await page.select_option("#lesson-filter", "live")
        await page.wait_for_selector(
            f'#lesson-table tr[data-id="{other["id"]}"][data-state="live"]'
        )
        assert (
            await page.query_selector(
                f'#lesson-table tr[data-id="{other["id"]}"] [data-action="edit"]'
            )
            is None
        )
        with pytest.raises(ApiError) as refused:
            await api.call("PATCH", f"/lessons/{other['id']}", {"title": "x"})
        described = await page.evaluate(
            "e => window.tongbuAdmin.describeError(e)",
            {"status": 409, **refused.value.body["error"]},
        )
        assert described == {"field": None, "text": "这节课直播中，只能修改未开始或待开课的课程。"}
        assert problems == [], problems
        await page.close()


async def test_removing_what_a_lesson_uses_is_refused_and_archiving_offered(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        r = await registers(api)
        await api.call("POST", f"/lessons/{r['lesson']}/cancel")
        spare = r["rooms"][2]  # in no pairing, no lesson
        page, problems = await open_admin(browser, server.base_url, "classrooms")

        # Something nothing uses is deleted, after a confirmation.
        await page.focus(f'#classroom-table button[data-action="delete"][data-id="{spare}"]')
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#confirm-dialog[open]")
        assert await page.text_content("#confirm-title") == "删除教室「青山村小 · 听课三」？"
        assert (await focused(page))["id"] == "confirm-yes"
        await page.keyboard.press("Enter")
        await dialog_closed(page, "confirm-dialog")
        assert "已删除教室「青山村小 · 听课三」" in await wait_status(page, "ok")
        assert await stored(server, Classroom, spare) is None
        assert await page.query_selector(f'#classroom-table tr[data-id="{spare}"]') is None

        # A room a lesson used is not: the dialog says why and offers to archive instead,
        # which waits, in turn, until the room's pairing is archived.
        room = r["rooms"][0]
        await page.click(f'#classroom-table button[data-action="delete"][data-id="{room}"]')
        await page.wait_for_selector("#confirm-dialog[open]")
        await page.click("#confirm-yes")
        refusal = '#confirm-form [data-error-for=""]'
        await page.wait_for_selector(f"{refusal}:not(:empty)")
        assert await page.text_content(refusal) == (
            "仍在使用中（1 节课程、1 个结对），不能删除。"
            "可以改为归档：历史记录保留，但不再用于新的安排。"
        )
        assert await page.is_visible("#confirm-archive") and await page.is_hidden("#confirm-yes")
        assert (await focused(page))["id"] == "confirm-archive"
        await shot(page, "classrooms-delete-refused")
        await page.keyboard.press("Enter")  # archive instead
        await page.wait_for_selector(f"{refusal}:has-text('这间教室')")
        assert (
            await page.text_content(refusal)
            == "这间教室还在结对「城乡结对」中，请先归档或修改该结对。"
        )
        classroom = await stored(server, Classroom, room)
        assert classroom is not None and classroom.active is True
        await page.keyboard.press("Escape")
        await dialog_closed(page, "confirm-dialog")

        # The pairing: refused too (its lesson), archived instead; it stays, marked archived.
        await go(page, "pairings")
        await page.click(f'#pairing-table button[data-action="delete"][data-id="{r["pairing"]}"]')
        await page.click("#confirm-yes")
        await page.wait_for_selector(f"{refusal}:not(:empty)")
        assert (await page.text_content(refusal)).startswith("仍在使用中（1 节课程），不能删除。")
        await page.click("#confirm-archive")
        await dialog_closed(page, "confirm-dialog")
        assert "已归档结对「城乡结对」" in await wait_status(page, "ok")
        assert (await stored(server, Pairing, r["pairing"])).active is False
        row = f'#pairing-table tr[data-id="{r["pairing"]}"]'
        assert await page.get_attribute(row, "data-active") == "false"
        assert await page.text_content(f"{row} .pill") == "已归档"
        assert (await focused(page)) == {"id": "", "action": "restore", "row": str(r["pairing"])}
        await shot(page, "pairings-archived")
        # An archived pairing is offered for no new lesson.
        await go(page, "lessons")
        offered = await page.eval_on_selector_all(
            "#lesson-pairing option", "os => os.map(o => o.value)"
        )
        assert offered == [""]
        # Restored, it is offered again.
        await go(page, "pairings")
        await page.click(f'{row} button[data-action="restore"]')
        assert "已恢复结对「城乡结对」" in await wait_status(page, "ok")
        assert (await stored(server, Pairing, r["pairing"])).active is True
        assert problems == [], problems
        await page.close()


async def test_a_school_admin_sees_and_edits_only_their_school(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        mine = await create_lesson(api, receiving=1, tag="甲")
        theirs = await create_lesson(api, receiving=1, tag="乙")
        city = (await api.call("GET", f"/lessons/{mine.lesson_id}"))["rooms"][0]
        schools = {s["name"]: s["id"] for s in (await api.call("GET", "/schools"))["items"]}
        school_id = schools["城关一中甲"]
        await add_user(server.api, "zhang", "school_admin", school_id)
        page, problems = await open_admin(browser, server.base_url, "schools", ("zhang", PASSWORD))
        assert await page.text_content("#nav-user") == "zhang（学校管理员）"
        ids = await page.eval_on_selector_all(
            "#school-table tbody tr", "rs => rs.map(r => r.dataset.id)"
        )
        assert ids == [str(school_id)]
        assert await page.is_hidden("#school-form")  # registering schools is the district's
        actions = await page.eval_on_selector_all(
            "#school-table tbody button", "bs => bs.map(b => b.dataset.action)"
        )
        assert actions == ["edit"]
        await page.click(f'#school-table button[data-action="edit"][data-id="{school_id}"]')
        await page.fill("#school-edit-region", "城关区")
        await page.press("#school-edit-name", "Enter")
        await dialog_closed(page, "school-dialog")
        assert (await stored(server, School, school_id)).region == "城关区"
        await shot(page, "school-admin-schools")

        await go(page, "classrooms")
        rooms = await page.eval_on_selector_all(
            "#classroom-table tbody tr", "rs => rs.map(r => r.dataset.id)"
        )
        assert rooms == [str(city["classroom_id"])]
        await page.click(
            f'#classroom-table button[data-action="edit"][data-id="{city["classroom_id"]}"]'
        )
        assert await page.is_disabled("#classroom-edit-school")  # no moving to another school
        await page.keyboard.press("Escape")

        await go(page, "lessons")
        shown = await page.eval_on_selector_all(
            "#lesson-table tbody tr", "rs => rs.map(r => r.dataset.id)"
        )
        assert shown == [str(mine.lesson_id)] and str(theirs.lesson_id) not in shown
        row = f'#lesson-table tr[data-id="{mine.lesson_id}"]'
        actions = await page.eval_on_selector_all(
            f"{row} button", "bs => bs.map(b => b.dataset.action)"
        )
        assert actions == ["edit", "watch", "end", "cancel"]  # the lesson is open
        assert problems == [], problems
        await page.close()

        # The receiving school's admin sees the lesson and its pairing, changes neither.
        await add_user(server.api, "li", "school_admin", schools["乡村小学甲1"])
        page, problems = await open_admin(browser, server.base_url, "lessons", ("li", PASSWORD))
        await page.wait_for_selector(row)  # the section is shown before its rows arrive
        actions = await page.eval_on_selector_all(
            f"{row} button", "bs => bs.map(b => b.dataset.action)"
        )
        assert actions == ["watch"]
        await go(page, "pairings")
        assert await page.eval_on_selector_all("#pairing-table tbody tr", "rs => rs.length") == 1
        assert await page.query_selector("#pairing-table tbody button") is None
        assert problems == [], problems
        await page.close()


async def test_a_teacher_is_told_the_admin_pages_are_not_for_them(
    tmp_path: Path, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        lesson = await create_lesson(server.api, receiving=1, tag="t")
        school_id = (await server.api.call("GET", "/schools"))["items"][0]["id"]
        await add_user(server.api, "wang", "teacher", school_id)
        page = await signed_in_page(browser, server.base_url, ("wang", PASSWORD))
        asked: list[str] = []
        page.on("request", lambda request: asked.append(urlsplit(request.url).path))
        await page.goto(f"{server.base_url}/admin#lessons")
        await until(page, "window.tongbuAdmin && window.tongbuAdmin.section === 'denied'")
        assert await page.is_visible("#section-denied")
        assert await page.text_content("#section-denied h2") == "无权限访问管理页面"
        assert await page.text_content("#nav-user") == "wang（教师）"
        assert await page.is_hidden("#admin-nav")
        for section in ("schools", "classrooms", "pairings", "lessons", "live"):
            assert await page.is_hidden(f"#section-{section}")
        # No data was even asked for: only who is signed in.
        assert [p for p in asked if p.startswith("/api/")] == ["/api/v1/auth/session"]
        assert str(lesson.lesson_id) not in await page.evaluate("document.body.innerText")
        await shot(page, "denied")
        await page.close()
