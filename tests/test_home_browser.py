"""The home page (/) for each role, in a real Chromium against the real server.

One small world: city school A teaches rural schools B and C (pairing P1); city school D
teaches rural E (P2). Lessons: L1 today on P1 taught by teacher t1, L2 tomorrow on P1
with no teacher account, L3 on P2 live now, L4 on P1 in ten days (beyond the page's
window), L5 on P1 ended. Each role signs in through the login page and must see exactly
its lessons, with exactly the links the server will honour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.browser import chromium_available, launch_chromium
from tests.live_harness import Api, LiveServer, running_server
from tests.page_session import PASSWORD, add_user, new_page, screenshot, sign_in

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.timeout(240)
PHONE = {"width": 390, "height": 844}


@dataclass
class World:
    server: LiveServer
    lessons: dict[str, int]
    rooms: dict[str, int]


async def build_world(server: LiveServer) -> World:
    api = server.api

    async def school(name: str, kind: str) -> int:
        return (await api.call("POST", "/schools", {"name": name, "kind": kind}))["id"]

    async def room(school_id: int, name: str) -> int:
        body = {"school_id": school_id, "name": name}
        return (await api.call("POST", "/classrooms", body))["id"]

    schools = {k: await school(f"{k}校", "city" if k in "AD" else "rural") for k in "ABCDE"}
    rooms = {k: await room(schools[k], f"{k}教室") for k in "ABCDE"}
    p1 = await api.call(
        "POST",
        "/pairings",
        {
            "name": "P1",
            "main_classroom_id": rooms["A"],
            "receiving_classroom_ids": [rooms["B"], rooms["C"]],
        },
    )
    p2 = await api.call(
        "POST",
        "/pairings",
        {"name": "P2", "main_classroom_id": rooms["D"], "receiving_classroom_ids": [rooms["E"]]},
    )
    t1 = await add_user(api, "t1", "teacher", schools["A"], "王老师")
    await add_user(api, "t2", "teacher", schools["A"], "刘老师")
    await add_user(api, "reviewer", "reviewer", display_name="赵教研员")
    await add_user(api, "sa_b", "school_admin", schools["B"], "B校管理员")
    await add_user(api, "dev_b", "device", display_name="B校听课教室", classroom_id=rooms["B"])

    now = datetime.now(UTC).replace(microsecond=0)

    async def lesson(pairing: dict, start: datetime, title: str, **extra: Any) -> int:
        body = {
            "pairing_id": pairing["id"],
            "kind": "dedicated",
            "subject": "数学",
            "grade": "初二",
            "teacher_name": "王老师",
            "title": title,
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(minutes=45)).isoformat(),
            **extra,
        }
        return (await api.call("POST", "/lessons", body))["id"]

    lessons = {
        "L1": await lesson(p1, now + timedelta(minutes=60), "L1 今天", teacher_user_id=t1["id"]),
        "L2": await lesson(p1, now + timedelta(days=1, hours=2), "L2 明天"),
        "L3": await lesson(p2, now - timedelta(minutes=5), "L3 直播"),
        "L4": await lesson(p1, now + timedelta(days=10), "L4 十天后"),
        "L5": await lesson(p1, now - timedelta(hours=3), "L5 已结束"),
    }
    for step in ("open", "start"):
        await api.call("POST", f"/lessons/{lessons['L3']}/{step}")
    await api.call("POST", f"/lessons/{lessons['L5']}/open")
    await api.call("POST", f"/lessons/{lessons['L5']}/end", {"reason": "test"})
    return World(server, lessons, rooms)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def home_of(
    browser: Any,
    world: World,
    username: str,
    password: str = PASSWORD,
    viewport: dict[str, int] | None = None,
):
    page, problems = await new_page(browser, viewport=viewport)
    await sign_in(page, world.server.base_url, username, password)
    assert page.url == f"{world.server.base_url}/"
    await page.locator("#status[data-status='ready']").wait_for(state="attached", timeout=15_000)
    home = await page.evaluate("window.tongbuHome")
    return page, problems, home


def shown(world: World, home: dict) -> dict[str, list[str]]:
    """{lesson name: [action kinds]} of what the page offers."""
    names = {v: k for k, v in world.lessons.items()}
    return {names[x["id"]]: [a["kind"] for a in x["actions"]] for x in home["lessons"]}


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium")
async def test_each_role_sees_its_lessons_and_only_the_links_it_may_use(
    browser: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        world = await build_world(server)
        L, R = world.lessons, world.rooms

        # The admin: every live and coming lesson, every way in, and the admin pages.
        page, problems, home = await home_of(browser, world, "e2e-admin", "e2e-password-1")
        assert home["role"] == "admin"
        assert shown(world, home) == {
            "L3": ["teach", "room", "watch"],
            "L1": ["teach", "room", "room", "watch"],
            "L2": ["teach", "room", "room", "watch"],
        }
        l1 = next(x for x in home["lessons"] if x["id"] == L["L1"])
        assert [a["href"] for a in l1["actions"]] == [
            f"/teach/{L['L1']}",
            f"/room/{L['L1']}?classroom={R['B']}",
            f"/room/{L['L1']}?classroom={R['C']}",
            f"/watch/{L['L1']}",
        ]
        assert await page.locator("#home-live .lesson-card").count() == 1
        assert (
            await page.locator(f"#home-later .lesson-card[data-lesson-id='{L['L2']}']").count() == 1
        )
        assert await page.locator("#home-links a").evaluate_all(
            "as => as.map(a => a.dataset.link)"
        ) == [
            "admin",
            "library",
        ]
        nav = await page.locator(".nav-links a").evaluate_all("as => as.map(a => a.dataset.nav)")
        # Other admin pages may sit between; these three are the admin's, in this order.
        assert [k for k in nav if k in {"home", "admin", "library"}] == ["home", "admin", "library"]
        live_card = page.locator(f".lesson-card[data-lesson-id='{L['L3']}']")
        assert "直播中" in await live_card.inner_text()
        await screenshot(page, "home", full_page=True)
        assert problems == [], problems

        # Teacher t1: the lessons they teach, each with the console, nothing else.
        page, problems, home = await home_of(browser, world, "t1")
        assert shown(world, home) == {"L1": ["teach"], "L2": ["teach"]}
        assert await page.inner_text("#nav-user") == "王老师（教师）"
        assert await page.inner_text("#home-greeting") == "您好，王老师"
        # The console button opens the console of that lesson.
        await page.click(f".lesson-card[data-lesson-id='{L['L1']}'] a[data-action='teach']")
        await page.wait_for_url(f"**/teach/{L['L1']}")
        await page.locator("#start-lesson:not([hidden])").wait_for(timeout=15_000)
        assert problems == [], problems

        # Teacher t2 of the same school: L1 names t1 as its teacher, L2 names nobody.
        _, problems, home = await home_of(browser, world, "t2")
        assert shown(world, home) == {"L2": ["teach"]}

        # The reviewer: what is live, to watch, and the library.
        page, problems, home = await home_of(browser, world, "reviewer")
        assert shown(world, home) == {"L3": ["watch"]}
        assert await page.locator("#home-links a").evaluate_all(
            "as => as.map(a => a.dataset.link)"
        ) == ["library"]

        # School B's admin and its classroom device: B's receiving room in P1's lessons.
        page, problems, home = await home_of(browser, world, "sa_b")
        assert shown(world, home) == {"L1": ["room", "watch"], "L2": ["room", "watch"]}
        link = page.locator(f".lesson-card[data-lesson-id='{L['L1']}'] a[data-action='room']")
        assert await link.get_attribute("href") == f"/room/{L['L1']}?classroom={R['B']}"
        assert "进入听课教室 · B校 · B教室" == await link.inner_text()
        page, problems, home = await home_of(browser, world, "dev_b", viewport=PHONE)
        assert shown(world, home) == {"L1": ["room"], "L2": ["room"]}
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the home page scrolls sideways on a phone by {overflow}px"
        assert await page.locator("#home-links").is_hidden()
        assert await page.locator(".nav-links a").evaluate_all(
            "as => as.map(a => a.dataset.nav)"
        ) == ["home"]
        assert problems == [], problems


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium")
async def test_home_sends_strangers_to_log_in_and_keeps_english(
    browser: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        world = await build_world(server)
        page, problems = await new_page(browser)
        await page.goto(f"{server.base_url}/?lang=en")
        await page.wait_for_url("**/login?next=%2F%3Flang%3Den&lang=en")
        assert await page.inner_text("#login-submit") == "Sign in"
        await sign_in(page, server.base_url, "t1", open_form=False)
        assert page.url == f"{server.base_url}/?lang=en"
        await page.locator("#status[data-status='ready']").wait_for(state="attached")
        assert await page.inner_text("#home-greeting") == "Hello, 王老师"
        teach = page.locator(
            f".lesson-card[data-lesson-id='{world.lessons['L1']}'] a[data-action='teach']"
        )
        assert await teach.get_attribute("href") == f"/teach/{world.lessons['L1']}?lang=en"
        assert await teach.inner_text() == "Enter the main room"
        # The language switch keeps the rest of the query.
        assert await page.get_attribute("#nav-lang", "href") == "/"
        assert problems == [], problems


async def test_a_reviewer_lists_every_lesson_and_a_device_only_its_schools(tmp_path: Path) -> None:
    """GET /lessons: reviewers may watch any lesson, so they may list them all."""
    async with running_server(tmp_path / "data") as server:
        world = await build_world(server)
        async with aiohttp.ClientSession() as http:

            async def as_user(username: str) -> Api:
                async with http.post(
                    f"{server.base_url}/api/v1/auth/login",
                    json={"username": username, "password": PASSWORD},
                ) as response:
                    assert response.status == 200
                    return Api(server.base_url, (await response.json())["token"], http)

            reviewer = await as_user("reviewer")
            everything = await reviewer.call("GET", "/lessons?limit=200")
            assert {x["id"] for x in everything["items"]} == set(world.lessons.values())
            live = await reviewer.call("GET", "/lessons?state=live")
            assert [x["id"] for x in live["items"]] == [world.lessons["L3"]]
            device = await as_user("dev_b")
            mine = await device.call("GET", "/lessons?limit=200")
            assert {x["id"] for x in mine["items"]} == {
                world.lessons[k] for k in ("L1", "L2", "L4", "L5")
            }
