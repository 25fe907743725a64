"""The login page in a real Chromium against the real server: wrong passwords and a
locked account are told apart in Chinese, `next` brings the user back (to this site
only), and signing out ends the session on the server, not just in the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from classroom.sessions import COOKIE_NAME
from classroom.users import MAX_FAILED_LOGINS
from tests.browser import chromium_available, launch_chromium
from tests.live_harness import create_lesson, running_server
from tests.page_session import (
    PASSWORD,
    add_user,
    eventually,
    login_url,
    new_page,
    new_school,
    screenshot,
    sign_in,
)

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
    pytest.mark.timeout(180),
]

SESSION_PROBE = "fetch('/api/v1/auth/session', {credentials: 'same-origin'}).then(r => r.status)"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def error_text(page: Any) -> str:
    await page.wait_for_selector("#login-error:not([hidden])")
    return await page.inner_text("#login-error")


async def test_wrong_password_is_refused_in_chinese_and_the_right_one_goes_home(
    browser: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        await add_user(server.api, "zhang", "teacher", await new_school(server.api), "张老师")
        page, problems = await new_page(browser)
        await page.goto(login_url(server.base_url))
        await page.wait_for_selector("#login-form:not([hidden])")
        assert await page.title() == "登录 · 同步课堂"
        await screenshot(page, "login")

        await page.click("#login-submit")  # nothing typed: said before asking the server
        assert await error_text(page) == "请输入用户名。"
        await page.fill("#login-username", "zhang")
        await page.fill("#login-password", "not the password")
        await page.click("#login-submit")
        await eventually(
            lambda: page.evaluate("window.tongbuLogin.lastError"),
            lambda code: code == "unauthorized",
            10,
            "the server's refusal",
        )
        assert (await error_text(page)).startswith("用户名或密码错误")
        assert await page.get_attribute("#login-password", "aria-invalid") == "true"
        assert "/login" in page.url
        assert await page.evaluate(SESSION_PROBE) == 401  # no session was made

        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_url(f"{server.base_url}/")
        await page.wait_for_selector("#nav-user")
        assert await page.inner_text("#nav-user") == "张老师（教师）"
        assert await page.evaluate(SESSION_PROBE) == 200
        assert problems == [], problems


async def test_a_locked_account_is_told_it_is_locked_even_with_the_right_password(
    browser: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        await add_user(server.api, "wu", "teacher", await new_school(server.api))
        page, problems = await new_page(browser)
        await page.goto(login_url(server.base_url))
        await page.wait_for_selector("#login-form:not([hidden])")
        # Five wrong passwords through the form lock the account.
        for _ in range(MAX_FAILED_LOGINS):
            await page.fill("#login-username", "wu")
            await page.fill("#login-password", "wrong password")
            await page.click("#login-submit")
            await page.wait_for_selector("#login-submit:not([disabled])")
            assert (await error_text(page)).startswith("用户名或密码错误")
        await page.fill("#login-password", PASSWORD)  # the right one, too late
        await page.click("#login-submit")
        await eventually(
            lambda: page.evaluate("window.tongbuLogin.lastError"),
            lambda code: code == "account_locked",
            10,
            "the server to say the account is locked",
        )
        text = await error_text(page)
        assert "已被锁定" in text and "管理员解锁" in text, text
        assert "/login" in page.url
        assert await page.evaluate(SESSION_PROBE) == 401
        user = next(
            u for u in (await server.api.call("GET", "/users"))["items"] if u["username"] == "wu"
        )
        assert user["locked_until"] is not None
        assert problems == [], problems


async def test_next_brings_the_user_back_but_never_to_another_site(
    browser: Any, tmp_path: Path
) -> None:
    async with running_server(tmp_path / "data") as server:
        lesson = await create_lesson(server.api, receiving=1)
        await add_user(server.api, "jiaoyan", "reviewer")
        page, problems = await new_page(browser)

        # A page that needs a session sends an anonymous visitor to log in, then back.
        await page.goto(f"{server.base_url}/watch/{lesson.lesson_id}")
        await page.wait_for_url(f"**/login?next=%2Fwatch%2F{lesson.lesson_id}")
        await sign_in(page, server.base_url, "jiaoyan", open_form=False)
        assert page.url == f"{server.base_url}/watch/{lesson.lesson_id}"
        await eventually(
            lambda: page.evaluate("window.tongbuViewer && window.tongbuViewer.entry"),
            lambda entry: entry == "session",
            10,
            "the viewer to join with the session",
        )

        # Already signed in: the login page goes straight on.
        await page.goto(login_url(server.base_url, "/library"))
        await page.wait_for_url(f"{server.base_url}/library")

        # Somewhere else is never a destination, however it is spelled.
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            other, _ = await new_page(browser)
            await sign_in(other, server.base_url, "jiaoyan", next_path=evil)
            assert other.url == f"{server.base_url}/", (evil, other.url)
            await other.context.close()
        assert problems == [], problems


async def test_sign_out_ends_the_session_on_the_server(browser: Any, tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        await add_user(server.api, "chen", "teacher", await new_school(server.api))
        page, problems = await new_page(browser)
        await sign_in(page, server.base_url, "chen")
        await page.wait_for_selector("#nav-sign-out")
        (cookie,) = [c for c in await page.context.cookies() if c["name"] == COOKIE_NAME]
        me = f"{server.base_url}/api/v1/me"
        headers = {"Cookie": f"{COOKIE_NAME}={cookie['value']}"}
        async with aiohttp.ClientSession() as http, http.get(me, headers=headers) as before:
            assert before.status == 200

        await page.click("#nav-sign-out")
        await page.wait_for_url(f"{server.base_url}/login")
        assert await page.evaluate(SESSION_PROBE) == 401
        # The cookie the browser held is dead on the server too, whoever replays it.
        async with aiohttp.ClientSession() as http, http.get(me, headers=headers) as after:
            assert after.status == 401
        await page.goto(server.base_url + "/")
        await page.wait_for_url("**/login?next=%2F")
        assert problems == [], problems
