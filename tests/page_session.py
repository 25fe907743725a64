"""Helpers for browser tests that sign in through the pages (not a test module).

- `add_user(api, ...)`: an account made through the REST API, as an admin would;
- `new_page(browser)`: a page in a context of its own (its own cookies: another person
  or another classroom), in a Chinese browser, with a log of what went wrong in it;
- `sign_in(page, base_url, username)`: the login page, filled in and sent as a person
  would, waiting until the page has left /login;
- `eventually(probe, accept, within, what)`: poll an async probe;
- `screenshot(page, name)`: test-artifacts/screenshots/<name>.png.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from tests.browser import ARTIFACTS
from tests.live_harness import Api

PASSWORD = "pages-password-1"
LAPTOP = {"width": 1366, "height": 768}


async def add_user(
    api: Api,
    username: str,
    role: str,
    school_id: int | None = None,
    display_name: str = "",
    *,
    classroom_id: int | None = None,
) -> dict[str, Any]:
    """A device account is bound to its classroom (`classroom_id`); others to a school."""
    body: dict[str, Any] = {"username": username, "password": PASSWORD, "role": role}
    if school_id is not None:
        body["school_id"] = school_id
    if classroom_id is not None:
        body["classroom_id"] = classroom_id
    if display_name:
        body["display_name"] = display_name
    return await api.call("POST", "/users", body)


async def new_school(api: Api, name: str = "城关一中", kind: str = "city") -> int:
    """A school for accounts that must belong to one (teachers, school admins, devices)."""
    return (await api.call("POST", "/schools", {"name": name, "kind": kind}))["id"]


async def school_of(api: Api, classroom_id: int) -> int:
    """The school a classroom belongs to (the admin sees every classroom)."""
    rooms = await api.call("GET", "/classrooms")
    return next(c["school_id"] for c in rooms["items"] if c["id"] == classroom_id)


async def new_page(
    browser: Any, *, viewport: dict[str, int] | None = None, locale: str = "zh-CN"
) -> tuple[Any, list[str]]:
    """A page in a fresh context; the list collects page errors and console errors.

    Chromium logs every refused request (a 401 from GET /auth/session when signed out, a
    403 the test provokes) as "Failed to load resource"; those are the server answering,
    not faults of the page, so they are left out.
    """
    context = await browser.new_context(viewport=viewport or LAPTOP, locale=locale)
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.type}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    return page, problems


def login_url(base_url: str, next_path: str | None = None) -> str:
    return f"{base_url}/login" + (f"?next={quote(next_path, safe='')}" if next_path else "")


async def sign_in(
    page: Any,
    base_url: str,
    username: str,
    password: str = PASSWORD,
    *,
    next_path: str | None = None,
    open_form: bool = True,
) -> None:
    """Fill in the login form and send it; returns once the browser has left /login."""
    if open_form:
        await page.goto(login_url(base_url, next_path))
    await page.wait_for_selector("#login-form:not([hidden])")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await page.wait_for_url(lambda url: "/login" not in url, timeout=15_000)


async def eventually(
    probe: Callable[[], Awaitable[Any]],
    accept: Callable[[Any], object],
    within: float,
    what: str,
    interval: float = 0.3,
) -> Any:
    """Poll an async probe (usually page.evaluate) until `accept` holds; say what never did."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}: {value}")
        await asyncio.sleep(interval)


async def until(probe: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    """Poll `probe` until it returns something truthy, and return that."""
    return await eventually(probe, bool, within, what)


async def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)
