"""The teacher console and the receiving-room page in a real Chromium, in a real lesson.

One lesson, three receiving rooms: two `tongbu agent` boxes publishing test patterns and
one Chromium receiving-room page; the main room is the teacher console in Chromium. Both
browsers publish their fake camera and microphone (Chromium's --use-fake-device-...), so
the lesson also proves browser publishing: a classroom agent decodes the console's
H.264, forwarded by the router unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.browser import artifact_path, chromium_available, launch_chromium
from tests.live_harness import (
    AgentProcess,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from web.pages import STATIC_ROOT, setup_pages

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.timeout(300)


def in_chromium(test: Callable[..., Any]) -> Callable[..., Any]:
    """A browser test (the module also holds two that need no browser)."""
    test = pytest.mark.browser(test)
    return pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium")(test)




@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(
    browser: Any, url: str, *, width: int = 1366, height: int = 768
) -> tuple[Any, list[str]]:
    # A context of its own per page: each is another classroom (own sessionStorage).
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    await page.goto(url)
    return page, console


async def eventually(
    probe: Callable[[], Awaitable[Any]],
    accept: Callable[[Any], object],
    within: float,
    what: str,
) -> Any:
    """Poll an async probe (usually page.evaluate) until `accept` holds; say what never did."""
    deadline = time.monotonic() + within
    value = None
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}: {value}")
        await asyncio.sleep(0.3)


def fragment(**values: str) -> str:
    return "#" + "&".join(f"{k}={quote(v, safe='')}" for k, v in values.items())


def video_frames(agent: AgentProcess, classroom_id: int) -> dict[str, Any] | None:
    track = agent.track_from(classroom_id, "video")
    return track if track and track["frames"] > 0 else None


def errors_in(console: list[str]) -> list[str]:
    return [line for line in console if line.startswith("pageerror")]


@in_chromium
async def test_console_and_room_page_run_a_lesson_with_agents(
    chromium: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=3)
        lid = lesson.lesson_id
        teacher = lesson.main_classroom_id
        box_a, box_b, browser_room = lesson.receiving_classroom_ids
        agents = {
            cid: start_agent(f"room{cid}", server.base_url,
                             await join_token(api, lid, "receiving", cid), tmp_path)
            for cid in (box_a, box_b)
        }
        main_token = await join_token(api, lid, "main", teacher)
        room_token = await join_token(api, lid, "receiving", browser_room)
        try:
            console_page, console_log = await open_page(
                chromium,
                f"{server.base_url}/teach/{lid}" + fragment(token=main_token, api=api.token),
            )
            room_page, room_log = await open_page(
                chromium, f"{server.base_url}/room/{lid}" + fragment(token=room_token)
            )
            rooms = lambda: console_page.evaluate("window.tongbuConsole.rooms()")  # noqa: E731
            room_view = lambda: room_page.evaluate("window.tongbuRoom.stats()")  # noqa: E731

            # The console plays all three receiving rooms, agents and browser alike.
            first = await eventually(
                rooms,
                lambda rs: len(rs) == 3 and all(r["framesPresented"] > 0 for r in rs),
                60, "the console to play three receiving rooms")
            await asyncio.sleep(1.5)
            second = {r["classroomId"]: r for r in await rooms()}
            assert set(second) == {box_a, box_b, browser_room}
            for before in first:
                after = second[before["classroomId"]]
                assert after["framesPresented"] > before["framesPresented"], (before, after)
                assert after["connected"] and after["width"] > 0, after
            stats = await console_page.evaluate("window.tongbuConsole.stats()")
            decoding = {t["classroomId"] for t in stats["tracks"]
                        if t["kind"] == "video" and t.get("framesDecoded", 0) > 0}
            assert decoding == {box_a, box_b, browser_room}, stats["tracks"]
            # Each room carries a link-quality badge once two samples exist.
            await eventually(rooms, lambda rs: all(r["link"] and r["link"]["level"] for r in rs),
                             10, "link-quality badges")
            assert await console_page.locator("figure.room-tile .quality:visible").count() == 3

            # The receiving page plays the teacher: the browser's own camera, forwarded.
            view = await eventually(
                room_view, lambda v: v["teacher"]["framesPresented"] > 5, 30,
                "the receiving page to play the teacher")
            assert view["teacher"]["classroomId"] == teacher
            await asyncio.sleep(1)
            assert (await room_view())["teacher"]["framesPresented"] > view["teacher"][
                "framesPresented"]

            # A classroom box decodes the teacher's browser video: the router forwarded
            # Chromium's H.264 to an agent. (A fake camera carries no pattern tag.)
            box = agents[box_a]
            seen = await wait_for(lambda: video_frames(box, teacher), 30,
                                  "an agent to decode the teacher's browser video")
            assert seen["width"] > 0 and seen["height"] > 0, seen
            await wait_for(lambda: (v := video_frames(box, teacher))
                           and v["frames"] > seen["frames"], 10, "the agent's frames to advance")
            live = await api.call("GET", f"/lessons/{lid}/live")
            codecs = {(t["classroom_id"], t["kind"]): t["codec"] for t in live["tracks"]}
            assert codecs[(teacher, "video")] == "video/H264", codecs
            assert codecs[(browser_room, "video")] == "video/H264", codecs
            assert codecs[(teacher, "audio")] == "audio/opus", codecs
            assert live["forwarding"]["transcodes"] == 0

            # Staging a box from the console shows it on the receiving page.
            await console_page.click(
                f"figure.room-tile[data-classroom-id='{box_a}'] button[data-action='stage']")
            staged = await eventually(
                room_view,
                lambda v: v["stage"]["visible"] and v["stage"]["classroomId"] == box_a
                and v["stage"]["framesPresented"] > 3,
                30, "the receiving page to play the staged room")
            assert staged["stageClassroomId"] == box_a
            assert await console_page.locator(
                f"figure.room-tile.on-stage[data-classroom-id='{box_a}']").count() == 1

            # A hand raised on the receiving page reaches the console; answering lowers it.
            await room_page.click("#hand")
            hand = console_page.locator(
                f"figure.room-tile[data-classroom-id='{browser_room}'] .badge-hand")
            await hand.wait_for(timeout=10_000)
            assert await console_page.locator("#hands").is_visible()
            await console_page.wait_for_timeout(1500)  # quality badges and frames settle
            await console_page.screenshot(path=str(artifact_path("console-zh-CN.png")))
            await room_page.screenshot(path=str(artifact_path("room-zh-CN.png")))
            answer = f"figure.room-tile[data-classroom-id='{browser_room}'] [data-action='answer']"
            await console_page.click(answer)
            await hand.wait_for(state="detached", timeout=10_000)
            await eventually(lambda: room_page.evaluate("window.tongbuRoom.handRaised"),
                             lambda raised: raised is False, 10, "the room's hand to go down")
            assert await room_page.locator("#hand").get_attribute("aria-pressed") == "false"

            # Muting a box from the console reaches the box, and the console shows it.
            await console_page.click(
                f"figure.room-tile[data-classroom-id='{box_b}'] button[data-action='mute-audio']")
            await wait_for(lambda: [e for e in agents[box_b].of("mute")
                                    if e["kind"] == "audio" and e["muted"] is True],
                           10, "the agent to report the mute")
            await console_page.locator(
                f"figure.room-tile[data-classroom-id='{box_b}'] .badge-muted").wait_for(
                timeout=5_000)

            # Ending the lesson (two presses) closes every page's session and every box.
            end = console_page.locator("#end-lesson")
            assert await end.is_visible()
            await end.click()
            await end.click()
            for page in (console_page, room_page):
                status = page.locator("#status[data-status='ended']")
                await status.wait_for(timeout=15_000)
                assert "本节课已结束" in await status.inner_text()
            for cid, agent in agents.items():
                code = await asyncio.to_thread(agent.process.wait, 20)
                assert code == 0, (cid, agent.stderr_tail())
            await room_page.screenshot(path=str(artifact_path("room-zh-CN-ended.png")))
            artifact_path("console-stats.json").write_text(
                json.dumps({"console": stats, "room": await room_view()}, indent=1,
                           ensure_ascii=False))
            assert not errors_in(console_log), console_log
            assert not errors_in(room_log), room_log
        finally:
            await stop_all(list(agents.values()))


# --------------------------------------------------------------- pages without a server


@pytest.fixture
async def pages_only() -> AsyncIterator[str]:
    app = web.Application()
    setup_pages(app)
    server = TestServer(app)
    await server.start_server()
    try:
        yield f"http://{server.host}:{server.port}"
    finally:
        await server.close()


@in_chromium
@pytest.mark.parametrize("page_name", ["teach", "room"])
async def test_pages_without_a_token_say_so_and_fit_a_phone(
    chromium: Any, pages_only: str, page_name: str
) -> None:
    page, log = await open_page(chromium, f"{pages_only}/{page_name}/7", width=390, height=844)
    status = page.locator("#status[data-status='no_token']")
    await status.wait_for()
    assert "入课凭证" in await status.inner_text()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page_name} scrolls sideways on a phone by {overflow}px"
    assert not errors_in(log), log


@in_chromium
async def test_pages_speak_english_on_request(chromium: Any, pages_only: str) -> None:
    room, _ = await open_page(chromium, f"{pages_only}/room/7?lang=en")
    await room.locator("#status[data-status='no_token']").wait_for()
    assert await room.evaluate("document.documentElement.lang") == "en"
    assert await room.locator("#hand").inner_text() == "✋ Raise hand"
    teach, _ = await open_page(chromium, f"{pages_only}/teach/7?lang=en")
    await teach.locator("#status[data-status='no_token']").wait_for()
    assert "join token" in await teach.locator("#status").inner_text()
    assert await teach.locator("#end-lesson").is_hidden()  # no API credentials in the link


# --------------------------------------------------------------- no browser needed


@pytest.mark.parametrize("page_name", ["teach", "room"])
async def test_live_pages_are_served_with_the_page_policy(page_name: str) -> None:
    app = web.Application()
    setup_pages(app)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(f"/{page_name}/42")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        body = await response.text()
    assert f'<script type="module" src="/static/js/{page_name}.js">' in body


def test_catalogues_cover_every_key_the_live_pages_use() -> None:
    zh = json.loads((STATIC_ROOT / "i18n/zh-CN.json").read_text())
    en = json.loads((STATIC_ROOT / "i18n/en.json").read_text())
    for page_name in ("teach", "room"):
        html = (STATIC_ROOT / f"{page_name}.html").read_text()
        script = (STATIC_ROOT / f"js/{page_name}.js").read_text()
        used = set(re.findall(r'data-i18n="([\w.]+)"', html))
        used |= set(re.findall(r"\bt\('([\w.]+)'", script))
        assert len(used) > 20, page_name
        assert used <= zh.keys(), (page_name, used - zh.keys())
        assert used <= en.keys(), (page_name, used - en.keys())
    # Keys built at run time: quality levels and the lesson states in the header.
    for level in ("good", "fair", "poor"):
        assert f"quality.{level}" in zh and f"quality.{level}" in en
