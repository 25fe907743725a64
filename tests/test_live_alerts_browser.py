"""The live overview's alerts in a real Chromium, from a lesson that really runs.

A real server (tests/live_harness.py) and two `tongbu agent` processes: the main room and
one receiving room. Beside it, a lesson planned six minutes ago that nobody opened. The
admin's overview (/admin#live) shows the not-started alert at the top; the receiving box
is killed (SIGKILL: no goodbye, the socket just closes) and a "dropped" alert naming the
lesson, the school, the classroom and the time appears without a reload; a new box for
the same classroom rejoins and the alert goes. Screenshot: admin-live-alerts.png (zh-CN).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser import chromium_available, launch_chromium
from tests.live_harness import (
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.test_admin_browser import open_admin, shot, until

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
    pytest.mark.timeout(300),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


def connected(server: Any, lesson_id: int, classroom_id: int) -> bool:
    state = server.live(lesson_id)
    room = next((r for r in state.rooms if r.classroom_id == classroom_id), None) if state else None
    return bool(room and room.connected)


async def overdue_lesson(api: Any) -> dict[str, Any]:
    """A lesson of another pairing planned six minutes ago, never opened."""
    city = await api.call("POST", "/schools", {"name": "城关三中", "kind": "city"})
    main = await api.call("POST", "/classrooms", {"school_id": city["id"], "name": "录播教室"})
    rural = await api.call("POST", "/schools", {"name": "石门小学", "kind": "rural"})
    room = await api.call("POST", "/classrooms", {"school_id": rural["id"], "name": "四年级一班"})
    pairing = await api.call(
        "POST",
        "/pairings",
        {
            "name": "结对丙",
            "main_classroom_id": main["id"],
            "receiving_classroom_ids": [room["id"]],
        },
    )
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=6)
    return await api.call(
        "POST",
        "/lessons",
        {
            "pairing_id": pairing["id"],
            "kind": "dedicated",
            "subject": "语文",
            "grade": "四年级",
            "teacher_name": "赵老师",
            "title": "古诗两首",
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(minutes=40)).isoformat(),
        },
    )


async def test_a_dropped_room_and_a_late_lesson_are_alerts_until_they_are_not(
    tmp_path: Any, browser: Any
) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        overdue = await overdue_lesson(api)
        lesson = await create_lesson(api, receiving=1, tag="甲")
        lid, main_id = lesson.lesson_id, lesson.main_classroom_id
        rural_id = lesson.receiving_classroom_ids[0]
        agents = [
            start_agent(
                "main", server.base_url, await join_token(api, lid, "main", main_id), tmp_path
            ),
            start_agent(
                "rural",
                server.base_url,
                await join_token(api, lid, "receiving", rural_id),
                tmp_path,
            ),
        ]
        try:
            await wait_for(lambda: connected(server, lid, rural_id), 60, "the rural room in")
            await wait_for(lambda: connected(server, lid, main_id), 60, "the main room in")
            page, problems = await open_admin(browser, server.base_url, "live")
            box = "#live-alerts"
            late = f'{box} li[data-kind="not_started"][data-lesson="{overdue["id"]}"]'
            await page.wait_for_selector(late, timeout=15_000)
            text = await page.text_content(late)
            assert "未按时开始" in text and "古诗两首" in text
            assert "城关三中 · 录播教室（主讲）未连接" in text
            assert re.search(r"自 \d{2}:\d{2} 起 · 已 [6-9] 分钟", text), text
            assert await page.text_content("#live-alerts-summary") == "1 条告警"
            assert await page.query_selector(f'{box} li[data-kind="dropped"]') is None

            # The receiving box dies: no goodbye, the socket just closes.
            agents[1].process.kill()
            dropped = f'{box} li[data-kind="dropped"][data-lesson="{lid}"]'
            await page.wait_for_selector(dropped, timeout=30_000)
            text = await page.text_content(dropped)
            assert "教室掉线" in text and "一次函数" in text
            assert "乡村小学甲1 · 听课1（听课）断开后尚未重新连接" in text
            assert await page.get_attribute(dropped, "data-classroom-id") == str(rural_id)
            assert await page.text_content("#live-alerts-summary") == "2 条告警"
            # The same page's card says the room is offline.
            card_room = f'.live-card[data-lesson="{lid}"] li[data-classroom-id="{rural_id}"]'
            assert await page.get_attribute(card_room, "data-connected") == "false"
            # The alerts lead the overview: above the cards, in view without scrolling.
            alerts_box = await page.locator(box).bounding_box()
            cards = await page.locator("#live-cards").bounding_box()
            assert alerts_box and cards and alerts_box["y"] < cards["y"]
            assert alerts_box["y"] + alerts_box["height"] < 768
            await shot(page, "live-alerts")

            # A new box for the same classroom rejoins: the alert goes by itself.
            agents.append(
                start_agent(
                    "rural-again",
                    server.base_url,
                    await join_token(api, lid, "receiving", rural_id),
                    tmp_path,
                )
            )
            await page.wait_for_selector(dropped, state="detached", timeout=60_000)
            assert await page.get_attribute(card_room, "data-connected") == "true"
            await until(page, "document.querySelector('#live-alerts').dataset.count === '1'")
            alerts = await page.evaluate("window.tongbuAdmin.alerts")
            assert [(a["kind"], a["lesson_id"]) for a in alerts] == [("not_started", overdue["id"])]
            assert problems == [], problems
            await page.close()
        finally:
            await stop_all(agents)
