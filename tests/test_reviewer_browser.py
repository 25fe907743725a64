"""A reviewer (教研员) at work in a real Chromium, on a private lesson really recorded.

A short 专递课堂 lesson is recorded by the real server and finalised; it stays unpublished.
Then, signed in with the session cookie only (no token anywhere in the page):

- the reviewer finds it in /library by a Chinese search and a subject filter, plays it
  (the <video> fetches the private files with the cookie), jumps to a chapter, comments
  at the current moment from the keyboard, reloads and finds the comment listed and
  marked on the timeline at its moment (Enter on the marker seeks there), rates it on the
  rubric and finds the rating after a reload;
- a teacher of a school that took no part, and an anonymous visitor, neither see nor
  comment on it: the pages say why (with a login link) and the API refuses.

The library's filters (subject, grade, teacher, school, date range, kind) are driven from
the page's own controls over three entries registered from real MP4 files.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from recorder.library import catalogue as library
from signaling.appkeys import DB, STORAGE
from tests.browser import artifact_path, chromium_available, launch_chromium
from tests.live_harness import Api, running_server
from tests.test_replay_browser import (
    assert_playing,
    record_short_lesson,
    settled,
    until,
    watch_console,
)

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(500),
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]

PASSWORD = "reviewer-pass-2026"
COMMENT = "学生上台展示，师生互动自然"


async def sign_in(page: Any, username: str) -> dict[str, Any]:
    """Sign the page's browser context in as the pages do: POST /api/v1/auth/session
    through session.js, which leaves the HttpOnly cookie in the browser."""
    return await page.evaluate(
        """async ([username, password]) => {
            const session = await import('/static/js/session.js');
            const answer = await session.signIn(username, password);
            return {user: answer.user, cookieVisible: document.cookie.includes('tongbu_session')};
        }""",
        [username, PASSWORD],
    )


async def fetch(page: Any, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API call from inside the page, with the cookie and (for POST) the CSRF token."""
    return await page.evaluate(
        """async ([method, path, body]) => {
            const session = await import('/static/js/session.js');
            const known = await session.currentSession().catch(() => null);
            const headers = {'Content-Type': 'application/json'};
            if (known && method !== 'GET') headers['X-CSRF-Token'] = known.csrf_token;
            const init = {method, headers, credentials: 'same-origin'};
            if (body !== null) init.body = JSON.stringify(body);
            const response = await fetch(path, init);
            return {status: response.status, body: await response.json().catch(() => null)};
        }""",
        [method, path, body],
    )


async def wait_replay(page: Any) -> dict[str, Any]:
    """The replay page has loaded the entry (or shown why it cannot)."""
    return await until(
        lambda: page.evaluate(
            "window.tongbuReplay && window.tongbuReplay.state.status !== 'loading'"
            " && window.tongbuReplay.state"
        ),
        20,
        "the replay page",
    )


async def library_search(page: Any, base: str, text: str) -> dict[str, Any]:
    """Type a search into /library's box and submit it with Enter."""
    await page.goto(f"{base}/library")
    await until(
        lambda: page.evaluate(
            "window.tongbuLibrary && window.tongbuLibrary.state.status === 'ready'"
        ),
        15,
        "the library's first page",
    )
    await page.fill("#q", text)
    await page.press("#q", "Enter")
    return await until(
        lambda: page.evaluate(
            "location.search.includes('q=') && window.tongbuLibrary.state.status === 'ready'"
            " && window.tongbuLibrary.state"
        ),
        15,
        f"the search for {text}",
    )


async def frames_decoded(page: Any) -> int:
    return await page.evaluate(
        "document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"
    )


async def test_a_reviewer_finds_plays_comments_and_rates_a_private_lesson(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        _lesson, entry = await record_short_lesson(tmp_path, server, kind="dedicated")
        assert entry["published"] is False  # a 专递课堂 stays private until published
        rec_id, base, api = entry["id"], server.base_url, server.api
        await api.call(
            "POST",
            "/users",
            {"username": "jiaoyan", "password": PASSWORD, "role": "reviewer",
             "display_name": "李教研"},
        )  # fmt: skip
        outsider_school = await api.call("POST", "/schools", {"name": "南湖中学", "kind": "city"})
        await api.call(
            "POST",
            "/users",
            {"username": "nanhu", "password": PASSWORD, "role": "teacher",
             "display_name": "南湖周老师", "school_id": outsider_school["id"]},
        )  # fmt: skip
        composite = next(f for f in entry["files"] if f["role"] == "composite")

        async with playwright_api.async_playwright() as playwright:
            browser = await launch_chromium(
                playwright, args=["--autoplay-policy=no-user-gesture-required"]
            )
            try:
                await reviewer_at_work(browser, base, rec_id, entry, composite)
                await outsiders_are_refused(browser, base, rec_id, composite)
            finally:
                await browser.close()


async def reviewer_at_work(
    browser: Any, base: str, rec_id: int, entry: dict[str, Any], composite: dict[str, Any]
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    console = watch_console(page)
    await page.goto(f"{base}/library")
    signed = await sign_in(page, "jiaoyan")
    assert signed["user"]["role"] == "reviewer" and not signed["cookieVisible"]

    # ------------------------------------------------------------ the library finds it
    found = await library_search(page, base, "函数")
    assert [item["id"] for item in found["items"]] == [rec_id], found
    await page.select_option("#subject", "数学")  # a filter choice searches at once
    await until(
        lambda: page.evaluate(
            "location.search.includes('subject=') && window.tongbuLibrary.state.status"
            " === 'ready' && window.tongbuLibrary.state"
        ),
        15,
        "the subject filter",
    )
    assert [i["id"] for i in await page.evaluate("window.tongbuLibrary.state.items")] == [rec_id]
    card = page.locator(f'.card[data-recording-id="{rec_id}"]')
    assert "未发布" in await card.inner_text()  # it is private, and the page says so
    assert await page.locator("#scope").is_hidden()  # no "not signed in" notice
    await until(
        lambda: card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0"),
        15,
        "the poster of a private entry, fetched with the cookie",
    )
    shots = artifact_path("screenshots")
    shots.mkdir(exist_ok=True)
    await page.screenshot(path=str(shots / "library.png"))

    # ------------------------------------------------------------ it plays, with the cookie
    await card.locator("a").click()
    await page.wait_for_url(f"{base}/replay/{rec_id}")
    state = await wait_replay(page)
    assert state["source"] == "composite", state
    await page.evaluate("document.getElementById('video').play()")
    playing = await assert_playing(page, "the private composite")
    assert playing["src"].endswith(composite["url"])
    assert await frames_decoded(page) > 0

    # ------------------------------------------------------------ a chapter jump
    chapters = await page.evaluate("window.tongbuReplay.chapters")
    stage = next(c for c in chapters if "上台" in c["title"])
    await page.evaluate("document.getElementById('video').pause()")
    await page.click(f'#chapters li[data-index="{chapters.index(stage)}"] button')
    landed = await until(settled(page), 10, "the chapter's seek")
    assert abs(landed["currentTime"] - stage["t_s"]) <= 0.5, (landed, stage)

    # ------------------------------------------------------------ a comment at this moment
    moment = landed["lessonTime"]
    shown = await page.locator("#comment-moment").inner_text()
    assert shown == clock(moment), (shown, moment)
    await page.focus("#comment-text")
    await page.keyboard.type(COMMENT)
    await page.keyboard.press("Control+Enter")
    item = page.locator("#comments li", has_text=COMMENT)
    await item.wait_for(timeout=10_000)
    assert await page.locator("#comment-status").inner_text() == f"批注已保存（{clock(moment)}）。"
    posted = await page.evaluate("window.tongbuReplay.comments")
    (comment,) = [c for c in posted if c["text"] == COMMENT]
    assert abs(comment["t_s"] - moment) <= 0.1, (comment, moment)
    assert comment["author_name"] == "李教研"
    marker = page.locator(f'#timeline-markers [data-comment-id="{comment["id"]}"]')
    assert await marker.count() == 1  # on the timeline without a reload
    assert await page.locator("#comment-text").input_value() == ""

    # ------------------------------------------------------------ after a reload
    await page.reload()
    await wait_replay(page)
    item = page.locator(f'#comments li[data-comment-id="{comment["id"]}"]')
    assert COMMENT in await item.inner_text()
    assert clock(comment["t_s"]) in await item.inner_text()
    marker = page.locator(f'#timeline-markers [data-comment-id="{comment["id"]}"]')
    assert float(await marker.get_attribute("data-t")) == comment["t_s"]
    # Drawn at its moment: the marker's centre sits at t / duration of the bar's width.
    track = await page.locator("#timeline-track").bounding_box()
    box = await marker.bounding_box()
    assert track and box
    fraction = (box["x"] + box["width"] / 2 - track["x"]) / track["width"]
    assert abs(fraction - comment["t_s"] / entry["duration_s"]) <= 0.01, (fraction, entry)
    assert COMMENT in (await marker.get_attribute("aria-label") or "")
    # From the keyboard: focus the marker, Enter, and the player is at the comment.
    await page.evaluate("document.getElementById('video').pause()")
    await page.evaluate("window.tongbuReplay.player.seekLesson(0)")
    await until(settled(page), 10, "the seek to the start")
    await marker.focus()
    await page.keyboard.press("Enter")

    async def at_comment() -> dict[str, Any] | None:
        now = await (settled(page))()
        ok = now and abs(now["lessonTime"] - comment["t_s"]) <= 0.5
        return now if ok else None

    await until(at_comment, 10, "Enter on the marker to seek to the comment")
    await page.click(f'#comments li[data-comment-id="{comment["id"]}"] button')
    await until(at_comment, 10, "a click on the listed comment to seek to it")

    # ------------------------------------------------------------ the rubric
    assert await page.locator("#rating-count").inner_text() == "还没有评分。"
    rubric = (await fetch(page, "GET", f"/api/v1/library/{rec_id}/rubric"))["body"]
    scores = dict(zip([c["key"] for c in rubric["criteria"]], [9, 8, 7.5, 6, 10], strict=True))
    for key, score in scores.items():
        label = await page.locator(f'label[for="score-{key}"]').inner_text()
        name = next(c["name"] for c in rubric["criteria"] if c["key"] == key)
        assert name in label
        await page.fill(f"#score-{key}", str(score))
    await page.fill("#rating-comment", "目标清楚，互动充分")
    await page.focus(f"#score-{rubric['criteria'][-1]['key']}")
    await page.keyboard.press("Enter")  # Enter in a field submits the form
    total = round(
        sum(scores[c["key"]] / c["max_score"] * c["weight"] for c in rubric["criteria"])
        / sum(c["weight"] for c in rubric["criteria"])
        * 100,
        2,
    )
    await until(
        lambda: page.evaluate(
            "document.getElementById('rating-status').dataset.status === 'ready'"
        ),
        10,
        "the rating to be saved",
    )
    assert f"{total:g}" in await page.locator("#rating-status").inner_text()

    await page.reload()
    await wait_replay(page)
    await page.locator("#rating-form").wait_for(state="visible", timeout=10_000)
    mine = await page.locator("#rating-mine").inner_text()
    assert mine.startswith(f"我的评分：总分 {total:g}"), mine
    assert f"共 1 份评分，平均总分 {total:g}" in await page.locator("#rating-count").inner_text()
    for key, score in scores.items():
        assert float(await page.locator(f"#score-{key}").input_value()) == score
    assert await page.locator("#rating-comment").input_value() == "目标清楚，互动充分"
    third = rubric["criteria"][2]["key"]
    row = page.locator(f'.rating-table tr[data-key="{third}"]')
    assert "7.5 / 10" in await row.inner_text()

    await page.evaluate(f"window.tongbuReplay.player.seekLesson({comment['t_s']})")
    await until(settled(page), 10, "the seek for the screenshot")
    await page.screenshot(path=str(shots / "replay.png"), full_page=True)
    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert not errors, errors
    await context.close()


async def outsiders_are_refused(
    browser: Any, base: str, rec_id: int, composite: dict[str, Any]
) -> None:
    # ------------------------------------------------------------ an anonymous visitor
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    found = await library_search(page, base, "函数")
    assert found["items"] == [] and found["total"] == 0
    scope = page.locator("#scope")
    assert "未登录" in await scope.inner_text()
    # The login link brings the visitor back to this very search.
    href = await page.locator("#scope-login").get_attribute("href") or ""
    assert urlsplit(href).path == "/login"
    here = await page.evaluate("location.pathname + location.search")
    assert parse_qs(urlsplit(href).query)["next"] == [here] and "q=" in here

    await page.goto(f"{base}/replay/{rec_id}")
    state = await wait_replay(page)
    assert state["status"] == "sign_in", state
    assert await page.locator("#replay").is_hidden()  # no broken player
    assert "登录后才能观看" in await page.locator("#access-text").inner_text()
    login = page.locator("#access-login")
    assert await login.inner_text() == "登录后观看"
    assert await login.get_attribute("href") == f"/login?next=%2Freplay%2F{rec_id}"
    assert (await fetch(page, "GET", f"/api/v1/library/{rec_id}"))["status"] == 401
    assert (await fetch(page, "GET", composite["url"]))["status"] == 401
    refused = await fetch(
        page, "POST", f"/api/v1/library/{rec_id}/comments", {"t_s": 1, "text": "x"}
    )
    assert refused["status"] == 401
    await context.close()

    # ------------------------------------------------------------ a teacher of another school
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{base}/library")
    assert (await sign_in(page, "nanhu"))["user"]["role"] == "teacher"
    found = await library_search(page, base, "函数")
    assert found["items"] == [], found
    await page.goto(f"{base}/replay/{rec_id}")
    state = await wait_replay(page)
    assert state["status"] == "forbidden", state
    assert await page.locator("#replay").is_hidden()
    assert "没有观看这节课录像的权限" in await page.locator("#access-text").inner_text()
    assert (await fetch(page, "GET", f"/api/v1/library/{rec_id}"))["status"] == 403
    assert (await fetch(page, "GET", composite["url"]))["status"] == 403
    refused = await fetch(
        page, "POST", f"/api/v1/library/{rec_id}/comments", {"t_s": 1, "text": "不是我的课"}
    )
    assert refused["status"] == 403, refused
    comments = await fetch(page, "GET", f"/api/v1/library/{rec_id}/comments")
    assert comments["status"] == 403
    await context.close()


def clock(seconds: float) -> str:
    """The pages' m:ss (formatClock) for moments under an hour."""
    total = int(max(0.0, seconds))
    return f"{total // 60}:{total % 60:02d}"


# ---------------------------------------------------------------- the library's filters


async def register_entry(
    server: Any, mp4: Path, pairing: dict[str, Any], started_at: str, **lesson: str
) -> int:
    """A lesson through the API, then its library entry from a real MP4, as the finaliser
    registers one (the live path is tested above; here only the catalogue matters)."""
    api: Api = server.api
    created = await api.call(
        "POST",
        "/lessons",
        {
            "pairing_id": pairing["id"],
            "planned_start": started_at,
            "planned_end": started_at.replace("T08:", "T09:"),
            **lesson,
        },
    )
    final = mp4.parent / f"final-{created['id']}"
    final.mkdir()
    shutil.copy(mp4, final / "composite.mp4")
    manifest = {
        "files": [{"path": "composite.mp4", "role": "composite", "duration_s": 2.0}],
        "duration_s": 2.0,
        "started_at": started_at,
    }
    async with server.app[DB]() as db:
        rec = await library.register_recording(
            db, server.app[STORAGE], lesson_id=created["id"], final_dir=final, manifest=manifest
        )
    return rec.id


async def make_pairing(api: Api, city: str, rural: str) -> dict[str, Any]:
    main_school = await api.call("POST", "/schools", {"name": city, "kind": "city"})
    main = await api.call("POST", "/classrooms", {"school_id": main_school["id"], "name": "主讲"})
    school = await api.call("POST", "/schools", {"name": rural, "kind": "rural"})
    room = await api.call("POST", "/classrooms", {"school_id": school["id"], "name": "听课"})
    return await api.call(
        "POST",
        "/pairings",
        {"name": f"{city}-{rural}", "main_classroom_id": main["id"],
         "receiving_classroom_ids": [room["id"]]},
    )  # fmt: skip


@pytest.fixture
def mp4(tmp_path: Path) -> Path:
    """A real 2-second H.264 MP4."""
    path = tmp_path / "lesson.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc=size=160x120:rate=10", "-t", "2", "-pix_fmt", "yuv420p",
         "-c:v", "libx264", "-movflags", "+faststart", "-y", str(path)],
        check=True,
    )  # fmt: skip
    return path


async def test_every_library_filter_works_from_the_page(tmp_path: Path, mp4: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        first = await make_pairing(api, "城关一中", "东山小学")
        second = await make_pairing(api, "北岭中学", "远山小学")
        ids = {
            "函数": await register_entry(
                server, mp4, first, "2026-10-12T08:00:00+08:00", kind="dedicated",
                subject="数学", grade="初二", teacher_name="王老师", title="一次函数",
            ),
            "古诗": await register_entry(
                server, mp4, first, "2027-03-05T08:00:00+08:00", kind="famous_teacher",
                subject="语文", grade="三年级", teacher_name="李老师", title="古诗两首",
            ),
            "几何": await register_entry(
                server, mp4, second, "2026-11-20T08:00:00+08:00", kind="famous_school",
                subject="数学", grade="初三", teacher_name="王老师", title="几何证明",
            ),
        }  # fmt: skip
        await api.call(
            "POST", "/users", {"username": "jiaoyan", "password": PASSWORD, "role": "reviewer"}
        )
        async with playwright_api.async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                # The school's time zone: a date range means days as schools read them.
                context = await browser.new_context(
                    locale="zh-CN",
                    timezone_id="Asia/Shanghai",
                    viewport={"width": 1280, "height": 900},
                )
                page = await context.new_page()
                console = watch_console(page)
                await page.goto(f"{server.base_url}/library")
                await sign_in(page, "jiaoyan")
                await check_filters(page, server.base_url, ids)
                errors = [line for line in console if line.startswith(("error", "pageerror"))]
                assert not errors, errors
            finally:
                await browser.close()


async def shown(page: Any, what: str) -> list[int]:
    """The ids of the cards once the search the address bar names has been answered."""
    state = await until(
        lambda: page.evaluate(
            "window.tongbuLibrary && window.tongbuLibrary.state.status !== 'loading'"
            " && window.tongbuLibrary.state.query"
            " && new URLSearchParams(location.search).toString()"
            " === new URLSearchParams(Object.entries(window.tongbuLibrary.state.query)"
            ".filter(([k, v]) => v && !(k === 'page' && v === 1))).toString()"
            " && window.tongbuLibrary.state"
        ),
        15,
        what,
    )
    cards = await page.locator("#results .card").evaluate_all(
        "cards => cards.map(c => Number(c.dataset.recordingId))"
    )
    assert cards == [item["id"] for item in state["items"]], (cards, state)
    return cards


async def check_filters(page: Any, base: str, ids: dict[str, int]) -> None:
    await page.goto(f"{base}/library")
    everything = await shown(page, "the whole library")
    assert everything == [ids["古诗"], ids["几何"], ids["函数"]]  # newest first
    # The choices are the entries' own values.
    teachers = await page.locator("#teacher option").all_inner_texts()
    assert teachers == ["全部教师", "李老师", "王老师"]
    schools = await page.locator("#school option").all_inner_texts()
    assert schools[0] == "全部学校"
    assert sorted(schools[1:]) == sorted(["城关一中", "东山小学", "北岭中学", "远山小学"])

    await page.select_option("#subject", "数学")
    assert await shown(page, "subject 数学") == [ids["几何"], ids["函数"]]
    await page.select_option("#grade", "初三")
    assert await shown(page, "数学 and 初三") == [ids["几何"]]
    await page.click("#reset")
    assert await shown(page, "after 清除条件") == everything
    assert await page.locator("#subject").input_value() == ""

    await page.select_option("#teacher", "李老师")
    assert await shown(page, "teacher 李老师") == [ids["古诗"]]
    await page.select_option("#teacher", "")
    await page.select_option("#school", label="远山小学")
    assert await shown(page, "school 远山小学") == [ids["几何"]]
    await page.select_option("#school", "")
    await page.select_option("#kind", "famous_teacher")
    assert await shown(page, "kind 名师课堂") == [ids["古诗"]]
    await page.select_option("#kind", "")
    assert await shown(page, "no filter again") == everything

    # Two choices in quick succession, the first one's answer arriving last: the page
    # must end on the second (数学 and 李老师: nothing), not on the late 数学 cards.
    async def late(route: Any) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    def subject_alone(url: str) -> bool:
        return "/api/v1/library?" in url and "subject=" in url and "teacher=" not in url

    await page.route(subject_alone, late)
    await page.select_option("#subject", "数学")
    await page.select_option("#teacher", "李老师")
    assert await shown(page, "数学 then 李老师") == []
    await asyncio.sleep(2)  # the late answer has arrived by now
    assert await shown(page, "数学 then 李老师, after the late answer") == []
    await page.unroute(subject_alone, late)
    await page.click("#reset")
    assert await shown(page, "after 清除条件 again") == everything

    # A date range of days, both ends included, submitted with Enter.
    await page.fill("#from", "2026-11-20")
    await page.fill("#to", "2026-11-20")
    await page.press("#to", "Enter")
    assert await shown(page, "the day 2026-11-20") == [ids["几何"]]
    await page.fill("#from", "2026-10-01")
    await page.fill("#to", "2026-10-31")
    await page.select_option("#subject", "数学")  # a choice submits the dates with it
    assert await shown(page, "数学 in October 2026") == [ids["函数"]]
    # The address bar holds the search: a reload shows the same.
    await page.reload()
    assert await shown(page, "the reloaded search") == [ids["函数"]]
    assert await page.locator("#from").input_value() == "2026-10-01"
    assert await page.locator("#subject").input_value() == "数学"

    # A range that ends before it starts is refused on the page, not sent.
    await page.fill("#from", "2026-12-01")
    await page.fill("#to", "2026-11-01")
    await page.click("#search button[type=submit]")
    await until(
        lambda: page.evaluate("window.tongbuLibrary.state.status === 'error'"),
        10,
        "the date range refusal",
    )
    assert await page.locator("#summary").inner_text() == "开始日期不能晚于结束日期。"
    assert await page.locator("#results .card").count() == 0
