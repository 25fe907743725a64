"""The teacher console and the receiving-room page in a real Chromium, in a real lesson,
entered the way people enter it: through the login page and the home page.

One lesson, three receiving rooms: two `tongbu agent` boxes publishing test patterns and
one Chromium receiving-room page signed in as its classroom's device account; the main
room is the teacher console in Chromium, signed in as the teacher, who starts the lesson
from it. Both browsers publish their fake camera and microphone (Chromium's
--use-fake-device-...), so the lesson also proves browser publishing: a classroom agent
decodes the console's H.264, forwarded by the router unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from classroom import audit
from signaling.appkeys import DB
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
from tests.page_session import (
    add_user,
    eventually,
    new_page,
    school_of,
    screenshot,
    sign_in,
)
from web.pages import STATIC_ROOT, setup_pages

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.timeout(300)

PHONE = {"width": 390, "height": 844}


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


def video_frames(agent: AgentProcess, classroom_id: int) -> dict[str, Any] | None:
    track = agent.track_from(classroom_id, "video")
    return track if track and track["frames"] > 0 else None


async def lesson_state(api: Any, lesson_id: int) -> str:
    return (await api.call("GET", f"/lessons/{lesson_id}"))["state"]


@in_chromium
async def test_a_signed_in_teacher_starts_and_runs_a_lesson_with_agents_and_a_browser_room(
    chromium: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=3)  # open: rooms may join, not yet live
        lid = lesson.lesson_id
        teacher = lesson.main_classroom_id
        box_a, box_b, browser_room = lesson.receiving_classroom_ids
        await add_user(api, "wang", "teacher", await school_of(api, teacher), "王老师")
        await add_user(api, "room3", "device", display_name="听课3 设备", classroom_id=browser_room)
        agents = {
            cid: start_agent(
                f"room{cid}",
                server.base_url,
                await join_token(api, lid, "receiving", cid),
                tmp_path,
            )
            for cid in (box_a, box_b)
        }
        try:
            # The teacher signs in, finds the lesson on the home page and opens its console.
            console_page, console_log = await new_page(chromium)
            await sign_in(console_page, server.base_url, "wang")
            await console_page.click(f".lesson-card[data-lesson-id='{lid}'] a[data-action='teach']")
            await console_page.wait_for_url(f"{server.base_url}/teach/{lid}")
            start = console_page.locator("#start-lesson")
            await start.wait_for(timeout=15_000)
            assert await start.inner_text() == "开始上课"
            assert await console_page.get_attribute("#status", "data-status") == "ready"
            assert await console_page.inner_text("#nav-user") == "王老师（教师）"
            assert await lesson_state(api, lid) == "open"

            # The third receiving room is a browser signed in as that classroom's device.
            room_page, room_log = await new_page(chromium)
            await sign_in(room_page, server.base_url, "room3")
            await room_page.click(f".lesson-card[data-lesson-id='{lid}'] a[data-action='room']")
            await room_page.wait_for_url(f"{server.base_url}/room/{lid}?classroom={browser_room}")
            await eventually(
                lambda: room_page.evaluate("window.tongbuRoom && window.tongbuRoom.entry"),
                lambda entry: entry == "session",
                10,
                "the room page to enter with its session",
            )

            # 开始上课: the lesson goes live through the API, as the teacher's own act.
            await start.click()
            await eventually(
                lambda: lesson_state(api, lid), lambda s: s == "live", 15, "the lesson to go live"
            )
            await start.wait_for(state="hidden")
            async with server.app[DB]() as db:
                started = await audit.list_events(db, action="lesson_live")
            assert [e.actor_name for e in started] == ["wang"], started
            assert await console_page.evaluate("window.tongbuConsole.entry") == "session"

            rooms = lambda: console_page.evaluate("window.tongbuConsole.rooms()")  # noqa: E731
            room_view = lambda: room_page.evaluate("window.tongbuRoom.stats()")  # noqa: E731

            # The console plays all three receiving rooms, agents and browser alike.
            first = await eventually(
                rooms,
                lambda rs: len(rs) == 3 and all(r["framesPresented"] > 0 for r in rs),
                60,
                "the console to play three receiving rooms",
            )
            await asyncio.sleep(1.5)
            second = {r["classroomId"]: r for r in await rooms()}
            assert set(second) == {box_a, box_b, browser_room}
            for before in first:
                after = second[before["classroomId"]]
                assert after["framesPresented"] > before["framesPresented"], (before, after)
                assert after["connected"] and after["width"] > 0, after
            stats = await console_page.evaluate("window.tongbuConsole.stats()")
            decoding = {
                t["classroomId"]
                for t in stats["tracks"]
                if t["kind"] == "video" and t.get("framesDecoded", 0) > 0
            }
            assert decoding == {box_a, box_b, browser_room}, stats["tracks"]
            # Each room carries a link-quality badge once two samples exist.
            await eventually(
                rooms,
                lambda rs: all(r["link"] and r["link"]["level"] for r in rs),
                10,
                "link-quality badges",
            )
            assert await console_page.locator("figure.room-tile .quality:visible").count() == 3

            # The receiving page plays the teacher: the browser's own camera, forwarded.
            view = await eventually(
                room_view,
                lambda v: v["teacher"]["framesPresented"] > 5,
                30,
                "the receiving page to play the teacher",
            )
            assert view["teacher"]["classroomId"] == teacher
            await asyncio.sleep(1)
            assert (await room_view())["teacher"]["framesPresented"] > view["teacher"][
                "framesPresented"
            ]

            # A classroom box decodes the teacher's browser video: the router forwarded
            # Chromium's H.264 to an agent. (A fake camera carries no pattern tag.)
            box = agents[box_a]
            seen = await wait_for(
                lambda: video_frames(box, teacher),
                30,
                "an agent to decode the teacher's browser video",
            )
            assert seen["width"] > 0 and seen["height"] > 0, seen
            await wait_for(
                lambda: (v := video_frames(box, teacher)) and v["frames"] > seen["frames"],
                10,
                "the agent's frames to advance",
            )
            live = await api.call("GET", f"/lessons/{lid}/live")
            codecs = {(t["classroom_id"], t["kind"]): t["codec"] for t in live["tracks"]}
            assert codecs[(teacher, "video")] == "video/H264", codecs
            assert codecs[(browser_room, "video")] == "video/H264", codecs
            assert codecs[(teacher, "audio")] == "audio/opus", codecs
            assert live["forwarding"]["transcodes"] == 0

            # Everyone in front of a camera is shown that the lesson is being recorded.
            for page in (console_page, room_page):
                badge = page.locator("#recording[data-recording='on']")
                await badge.wait_for(timeout=10_000)
                assert await badge.inner_text() == "录制中"

            # Staging a box from the console shows it on the receiving page.
            await console_page.click(
                f"figure.room-tile[data-classroom-id='{box_a}'] button[data-action='stage']"
            )
            staged = await eventually(
                room_view,
                lambda v: (
                    v["stage"]["visible"]
                    and v["stage"]["classroomId"] == box_a
                    and v["stage"]["framesPresented"] > 3
                ),
                30,
                "the receiving page to play the staged room",
            )
            assert staged["stageClassroomId"] == box_a
            assert (
                await console_page.locator(
                    f"figure.room-tile.on-stage[data-classroom-id='{box_a}']"
                ).count()
                == 1
            )

            # A hand raised on the receiving page reaches the console; answering lowers it.
            await room_page.click("#hand")
            hand = console_page.locator(
                f"figure.room-tile[data-classroom-id='{browser_room}'] .badge-hand"
            )
            await hand.wait_for(timeout=10_000)
            assert await console_page.locator("#hands").is_visible()
            await console_page.wait_for_timeout(1500)  # quality badges and frames settle
            await screenshot(console_page, "teach")
            await screenshot(room_page, "room")
            answer = f"figure.room-tile[data-classroom-id='{browser_room}'] [data-action='answer']"
            await console_page.click(answer)
            await hand.wait_for(state="detached", timeout=10_000)
            await eventually(
                lambda: room_page.evaluate("window.tongbuRoom.handRaised"),
                lambda raised: raised is False,
                10,
                "the room's hand to go down",
            )
            assert await room_page.locator("#hand").get_attribute("aria-pressed") == "false"

            # Muting a box from the console reaches the box, and the console shows it.
            await console_page.click(
                f"figure.room-tile[data-classroom-id='{box_b}'] button[data-action='mute-audio']"
            )
            await wait_for(
                lambda: [
                    e
                    for e in agents[box_b].of("mute")
                    if e["kind"] == "audio" and e["muted"] is True
                ],
                10,
                "the agent to report the mute",
            )
            await console_page.locator(
                f"figure.room-tile[data-classroom-id='{box_b}'] .badge-muted"
            ).wait_for(timeout=5_000)

            # Ending the lesson (two presses) closes every page's session and every box.
            end = console_page.locator("#end-lesson")
            assert await end.is_visible()
            await end.click()
            await end.click()
            for page in (console_page, room_page):
                status = page.locator("#status[data-status='ended']")
                await status.wait_for(timeout=15_000)
                assert "本节课已结束" in await status.inner_text()
                assert not await page.locator("#recording").is_visible()
            for cid, agent in agents.items():
                code = await asyncio.to_thread(agent.process.wait, 20)
                assert code == 0, (cid, agent.stderr_tail())
            assert await lesson_state(api, lid) == "ended"
            # Ended means ended: a reload cannot take the room back in.
            await room_page.reload()
            await room_page.locator("#status[data-status='ended']").wait_for(timeout=15_000)
            await screenshot(room_page, "room-ended")
            artifact_path("console-stats.json").write_text(
                json.dumps(
                    {"console": stats, "room": await room_view()}, indent=1, ensure_ascii=False
                )
            )
            assert console_log == [], console_log
            assert room_log == [], room_log
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
async def test_links_with_a_join_token_work_without_a_session_and_shed_the_token(
    chromium: Any, pages_only: str
) -> None:
    """Agent-style links still work (no API needed to read them); the token leaves the
    address bar, and a leftover `api=` bearer token is dropped unread."""
    room, _ = await new_page(chromium)
    await room.goto(f"{pages_only}/room/7?lang=en#token=join-token")
    await room.locator(
        "#status[data-status='connecting'], #status[data-status='reconnecting']"
    ).wait_for()
    assert await room.evaluate("document.documentElement.lang") == "en"
    assert await room.locator("#hand").inner_text() == "✋ Raise hand"
    assert await room.evaluate("window.tongbuRoom.entry") == "link"
    assert room.url == f"{pages_only}/room/7?lang=en"
    teach, _ = await new_page(chromium)
    await teach.goto(f"{pages_only}/teach/7#token=join-token&api=tb_secret")
    await teach.locator(
        "#status[data-status='connecting'], #status[data-status='reconnecting']"
    ).wait_for()
    assert teach.url == f"{pages_only}/teach/7"
    stored = await teach.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    assert "join-token" in stored and "tb_secret" not in stored
    assert await teach.locator("#end-lesson").is_hidden()  # nobody is signed in
    assert await teach.locator("#nav-sign-in").is_visible()


@in_chromium
async def test_live_pages_send_strangers_to_log_in_and_fit_a_phone(
    chromium: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        for page_name in ("teach", "room", "watch"):
            page, log = await new_page(chromium, viewport=PHONE)
            await page.goto(f"{server.base_url}/{page_name}/7?classroom=3")
            await page.wait_for_url(f"**/login?next=%2F{page_name}%2F7%3Fclassroom%3D3")
            await page.locator("#login-form:not([hidden])").wait_for()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the login page scrolls sideways on a phone by {overflow}px"
            assert log == [], log
            await page.context.close()


async def refusal(page: Any, status: str) -> str:
    node = page.locator(f"#status[data-status='{status}']")
    await node.wait_for(timeout=15_000)
    return await node.inner_text()


@in_chromium
async def test_live_pages_refuse_clearly_and_choose_a_room_when_there_are_several(
    chromium: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=2)
        other = await create_lesson(api, receiving=1, tag="乙")
        lid, main = lesson.lesson_id, lesson.main_classroom_id
        first, second = lesson.receiving_classroom_ids
        await add_user(api, "t_other", "teacher", await school_of(api, other.main_classroom_id))
        await add_user(api, "dev1", "device", classroom_id=first)
        await api.call("POST", f"/lessons/{other.lesson_id}/end", {"reason": "test"})

        # A teacher of another school may not teach this lesson, nor open its room.
        page, log = await new_page(chromium)
        await sign_in(page, server.base_url, "t_other", next_path=f"/teach/{lid}")
        assert (await refusal(page, "forbidden")).startswith("无权进入该课堂")
        await page.goto(f"{server.base_url}/room/{lid}")
        assert (await refusal(page, "forbidden")).startswith("无权进入该课堂")
        await page.goto(f"{server.base_url}/teach/999999")
        assert "没有这节课" in await refusal(page, "not_found")
        # Their own school's lesson, once ended, says so instead of starting again.
        await page.goto(f"{server.base_url}/teach/{other.lesson_id}")
        assert "本节课已结束" in await refusal(page, "ended")
        assert await page.locator("#start-lesson").is_hidden()
        assert log == [], log

        # A classroom device: not the main room as a receiving room, nor a room that is
        # not in the lesson; devices do not watch.
        page, log = await new_page(chromium)
        await sign_in(page, server.base_url, "dev1", next_path=f"/room/{lid}?classroom={main}")
        assert await refusal(page, "wrong_role") == "该教室不是本节课的听课教室。"
        await page.goto(f"{server.base_url}/room/{lid}?classroom=424242")
        assert await refusal(page, "unknown_room") == "该教室不在本节课中。"
        await page.goto(f"{server.base_url}/watch/{lid}")
        assert (await refusal(page, "forbidden")).startswith("无权进入该课堂")
        # Its own room needs no `?classroom=`: the page finds it and writes it in the URL.
        await page.goto(f"{server.base_url}/room/{lid}")
        await page.wait_for_url(f"**/room/{lid}?classroom={first}")
        await eventually(
            lambda: page.evaluate("window.tongbuRoom.status"),
            lambda status: status == "joined",
            20,
            "the device's room to join",
        )
        assert log == [], log

        # The admin may be any room: the page asks which (here on a phone).
        page, log = await new_page(chromium, viewport=PHONE)
        await sign_in(
            page, server.base_url, "e2e-admin", "e2e-password-1", next_path=f"/room/{lid}"
        )
        await refusal(page, "choose")
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the chooser scrolls sideways on a phone by {overflow}px"
        choices = page.locator("#room-choices a")
        assert await choices.evaluate_all("as => as.map(a => a.getAttribute('href'))") == [
            f"/room/{lid}?classroom={first}",
            f"/room/{lid}?classroom={second}",
        ]
        await choices.nth(1).click()
        await page.wait_for_url(f"**/room/{lid}?classroom={second}")
        await eventually(
            lambda: page.evaluate("window.tongbuRoom.classroomId"),
            lambda cid: cid == second,
            20,
            "the chosen room",
        )
        await page.locator("#status[data-status='joined']").wait_for(timeout=20_000)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the room page scrolls sideways on a phone by {overflow}px"
        assert log == [], log


# --------------------------------------------------------------- no browser needed


@pytest.mark.parametrize(
    ("path", "page_name"),
    [("/teach/42", "teach"), ("/room/42", "room"), ("/login", "login"), ("/", "home")],
)
async def test_live_pages_are_served_with_the_page_policy(path: str, page_name: str) -> None:
    app = web.Application()
    setup_pages(app)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        body = await response.text()
    assert f'<script type="module" src="/static/js/{page_name}.js">' in body


def test_catalogues_cover_every_key_the_live_pages_use() -> None:
    zh = json.loads((STATIC_ROOT / "i18n/zh-CN.json").read_text())
    en = json.loads((STATIC_ROOT / "i18n/en.json").read_text())
    shared = "".join((STATIC_ROOT / f"js/{m}.js").read_text() for m in ("nav", "live_entry"))
    for page_name in ("teach", "room", "watch", "login", "home"):
        html = (STATIC_ROOT / f"{page_name}.html").read_text()
        script = (STATIC_ROOT / f"js/{page_name}.js").read_text() + shared
        used = set(re.findall(r'data-i18n="([\w.]+)"', html))
        used |= set(re.findall(r"\bt\('([\w.]+)'", script))
        assert len(used) > 20, page_name
        assert used <= zh.keys(), (page_name, used - zh.keys())
        assert used <= en.keys(), (page_name, used - en.keys())
    # Keys built at run time: the roles in the top bar and on the home page.
    for role in ("admin", "school_admin", "teacher", "reviewer", "device"):
        for key in (f"nav.role.{role}", f"home.role.{role}"):
            assert key in zh and key in en, key
    # Keys built at run time: quality levels and the lesson states in the header.
    for level in ("good", "fair", "poor"):
        assert f"quality.{level}" in zh and f"quality.{level}" in en
    # ...and whether the lesson is being recorded (lesson_view.renderRecording).
    for state in ("waiting", "on", "off"):
        assert f"live.recording.{state}" in zh and f"live.recording.{state}" in en
