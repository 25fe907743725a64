"""The library and replay pages in a real Chromium, on a lesson really recorded.

A short 名校网络课堂 lesson (a main room and one receiving room, the receiving room put on
stage for a moment) is recorded by the real server and finalised; then, anonymously, as
the public would: /library finds it by searching 数学, its card leads to /replay/{id}, the
composite plays, switching to the receiving room's own recording keeps the moment, and a
chapter or a thumbnail seeks to its time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from signaling import protocol
from tests.browser import artifact_path, chromium_available, launch_chromium
from tests.live_harness import create_lesson, join_token, running_server, start_agent, stop_all
from tests.page_session import until
from tests.test_live_lesson import assert_video_advancing, in_process_main
from tests.test_recording_e2e import wait_for_entry

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(400),
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]




async def record_short_lesson(
    tmp_path: Path, server: Any, kind: str = "famous_school"
) -> tuple[Any, dict[str, Any]]:
    """About six seconds of a lesson (famous_school: published at once; dedicated: private
    until an admin publishes it), the receiving room on stage for two."""
    api = server.api
    lesson = await create_lesson(api, receiving=1, kind=kind)
    lid, rural = lesson.lesson_id, lesson.receiving_classroom_ids[0]
    main, main_task = await in_process_main(
        server.base_url, await join_token(api, lid, "main", lesson.main_classroom_id), tmp_path
    )
    agents = [
        start_agent(
            "rural", server.base_url, await join_token(api, lid, "receiving", rural), tmp_path
        )
    ]
    try:
        await assert_video_advancing(agents[0], lesson.main_classroom_id, within=30)
        await asyncio.sleep(2)
        await main.send(protocol.Stage(classroom_id=rural))
        await asyncio.sleep(2)
        await main.send(protocol.Stage(classroom_id=None))
        await asyncio.sleep(2)
        await api.call("POST", f"/lessons/{lid}/end")
    finally:
        main.stop()
        await stop_all(agents)
        await asyncio.wait_for(main_task, 15)
    entry = await wait_for_entry(
        api, lid, {"composite", "room_video", "poster", "thumbnail_strip", "chapters"}, within=180
    )
    return lesson, entry


def true_room_offsets(data_dir: Path, lesson_id: int) -> dict[int, float]:
    """Where each room's file starts on the lesson clock, from the finaliser's own manifest."""
    manifest = json.loads(
        (data_dir / "recordings" / str(lesson_id) / "final" / "manifest.json").read_text()
    )
    return {int(r["classroom_id"]): float(r["offset_s"]) for r in manifest["rooms"]}


async def video_state(page: Any) -> dict[str, Any]:
    return await page.evaluate("""() => {
        const v = document.getElementById('video');
        return {currentTime: v.currentTime, videoWidth: v.videoWidth, paused: v.paused,
                readyState: v.readyState, src: v.currentSrc, error: v.error && v.error.code,
                seeking: v.seeking, ...window.tongbuReplay.state};
    }""")


async def assert_playing(page: Any, what: str) -> dict[str, Any]:
    """currentTime advances by at least half a second and the picture has a size."""
    first = await video_state(page)
    assert first["error"] is None, f"{what}: media error {first}"

    async def advanced() -> dict[str, Any] | None:
        now = await video_state(page)
        assert now["error"] is None, f"{what}: media error {now}"
        ok = now["currentTime"] > first["currentTime"] + 0.5 and now["videoWidth"] > 0
        return now if ok else None

    return await until(advanced, 20, f"{what} playing")


async def test_library_finds_a_recorded_lesson_and_replay_plays_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with running_server(data_dir) as server:
        lesson, entry = await record_short_lesson(tmp_path, server)
        rural = lesson.receiving_classroom_ids[0]
        offsets = true_room_offsets(data_dir, lesson.lesson_id)
        base = server.base_url

        async with playwright_api.async_playwright() as playwright:
            browser = await launch_chromium(
                playwright, args=["--autoplay-policy=no-user-gesture-required"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                console = watch_console(page)

                # ---------------------------------------------------- the library, anonymously
                await page.goto(f"{base}/library")
                await until(
                    lambda: page.evaluate(
                        "window.tongbuLibrary && window.tongbuLibrary.state.status === 'ready'"
                    ),
                    15,
                    "the library's first page",
                )
                await page.fill("#q", "数学")
                await page.click("#search button[type=submit]")
                await until(
                    lambda: page.evaluate(
                        "location.search.includes('q=')"
                        " && window.tongbuLibrary.state.status === 'ready'"
                    ),
                    15,
                    "the search for 数学",
                )
                found = await page.evaluate("window.tongbuLibrary.state")
                assert [item["id"] for item in found["items"]] == [entry["id"]], found
                card = page.locator(f'.card[data-recording-id="{entry["id"]}"]')
                assert await card.locator(".card-title").inner_text() == "一次函数"
                assert "王老师" in await card.inner_text()
                # The poster is shown (loaded from the library file URL).
                await until(
                    lambda: card.locator("img").evaluate(
                        "img => img.complete && img.naturalWidth > 0"
                    ),
                    15,
                    "the poster",
                )
                await page.screenshot(path=str(artifact_path("library-zh-CN.png")))
                href = await card.locator("a").get_attribute("href")
                assert href == f"/replay/{entry['id']}"

                # ---------------------------------------------------- replay: the composite
                await card.locator("a").click()
                await page.wait_for_url(f"{base}/replay/{entry['id']}")
                await until(
                    lambda: page.evaluate(
                        "window.tongbuReplay && window.tongbuReplay.state.source === 'composite'"
                    ),
                    15,
                    "the composite as first source",
                )
                await page.evaluate("document.getElementById('video').play()")
                playing = await assert_playing(page, "the composite")
                assert playing["src"].endswith(
                    next(f["url"] for f in entry["files"] if f["role"] == "composite")
                )

                sources = await page.evaluate("window.tongbuReplay.sources")
                names = {s["classroomId"]: s["name"] for s in sources if s["kind"] == "room"}
                assert set(names) == {lesson.main_classroom_id, rural}
                # Named from the entry: the receiving room (placed by its 上台 chapter) and
                # then, by elimination, the teacher's room.
                assert "听课教室1" in names[rural] and "乡村小学1" in names[rural], names
                assert "主讲教室" in names[lesson.main_classroom_id], names

                # ---------------------------------------------------- switch to the rural room
                # Play on into the part of the lesson the receiving room's file covers (it
                # joined a few seconds after the teacher).
                await until(
                    lambda: page.evaluate(
                        f"window.tongbuReplay.state.lessonTime > {offsets[rural] + 1.0}"
                    ),
                    20,
                    "the composite to reach the receiving room's part",
                )
                await page.evaluate("document.getElementById('video').pause()")
                before = (await video_state(page))["lessonTime"]
                await page.click(f'#sources button[data-classroom-id="{rural}"]')

                async def switched() -> dict[str, Any] | None:
                    now = await video_state(page)
                    # readyState rises a moment before `loadedmetadata` is dispatched, and
                    # the player seeks in that event: wait for the seek to have happened.
                    ok = (
                        now["source"] == f"room-{rural}"
                        and now["readyState"] >= 1
                        and not now["seeking"]
                        and now["currentTime"] > 0
                    )
                    return now if ok else None

                room = await until(switched, 15, "the receiving room's file")
                assert room["src"].endswith(
                    next(
                        f["url"]
                        for f in entry["files"]
                        if f["role"] == "room_video" and f["classroom_id"] == rural
                    )
                )
                # The same moment of the lesson, checked against the finaliser's own offsets.
                assert abs(room["currentTime"] + offsets[rural] - before) <= 1.0, (
                    room,
                    before,
                    offsets,
                    sources,
                )
                await page.evaluate("document.getElementById('video').play()")
                await assert_playing(page, "the receiving room's file")

                # ---------------------------------------------------- chapters seek
                await page.click('#sources button[data-source="composite"]')
                await until(switched_to(page, "composite"), 15, "back to the composite")
                chapters = await page.evaluate("window.tongbuReplay.chapters")
                stage = next(c for c in chapters if "上台" in c["title"])
                await page.evaluate("document.getElementById('video').pause()")
                index = chapters.index(stage)
                await page.click(f'#chapters li[data-index="{index}"] button')
                sought = await until(settled(page), 10, "the chapter's seek")
                assert abs(sought["currentTime"] - stage["t_s"]) <= 0.5, (sought, stage)
                await page.screenshot(path=str(artifact_path("replay-zh-CN.png")))

                # ---------------------------------------------------- thumbnail strip seeks
                thumbs = page.locator("#strip-row .thumb")
                assert await thumbs.count() >= 1
                last = thumbs.nth(await thumbs.count() - 1)
                target = float(await last.get_attribute("data-t"))
                await last.click()
                sought = await until(settled(page), 10, "the thumbnail's seek")
                assert abs(sought["lessonTime"] - min(target, entry["duration_s"])) <= 0.5

                await page.evaluate("document.getElementById('video').play()")
                await assert_playing(page, "the composite after seeking")
                errors = [line for line in console if line.startswith(("error", "pageerror"))]
                assert not errors, errors
            finally:
                await browser.close()


# An anonymous page asks who is signed in (GET /auth/session) and is answered 401: the
# expected answer, which Chromium still logs as a failed resource.
_SESSION_PROBE = "/api/v1/auth/session"


def watch_console(page: Any) -> list[str]:
    """The page's console errors and uncaught exceptions, as they come, but the anonymous
    session probe's 401."""
    lines: list[str] = []

    def on_console(message: Any) -> None:
        url = (message.location or {}).get("url", "")
        if message.type == "error" and url.endswith(_SESSION_PROBE) and "401" in message.text:
            return
        lines.append(f"{message.type}: {message.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda e: lines.append(f"pageerror: {e}"))
    return lines


def switched_to(page: Any, source: str) -> Callable[[], Awaitable[Any]]:
    async def probe() -> dict[str, Any] | None:
        now = await video_state(page)
        return now if now["source"] == source and now["readyState"] >= 1 else None

    return probe


def settled(page: Any) -> Callable[[], Awaitable[Any]]:
    """The video is not seeking and has data at its position."""

    async def probe() -> dict[str, Any] | None:
        await asyncio.sleep(0.3)  # let the click's seek start
        now = await video_state(page)
        return now if not now["seeking"] and now["readyState"] >= 2 else None

    return probe
