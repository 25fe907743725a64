"""The broadcast page (/broadcast/{id}) in a real Chromium, on real broadcast lessons.

A 名校网络课堂 lesson is taught by `tongbu agent` processes (the teacher's test pattern
carries its room tag, a frame counter and its capture time). An anonymous viewer opens the
page before the teacher starts: it says the broadcast has not started, then plays by itself
through the vendored hls.js, muted; the picture read back from the <video> is the teacher's
pattern, its counter moving on; sound and full screen work from the keyboard; the page fits
a 360 px phone and a 1366x768 laptop; a dropped playlist shows the trouble and recovers; the
end of the lesson turns the page to 已结束 and then links the published replay. No request
leaves the server's origin. A private broadcast (a 专递课堂 lesson with broadcast on) tells
an anonymous viewer to sign in, refuses its HLS, and plays for a signed-in user.

Screenshot (zh-CN): test-artifacts/screenshots/broadcast.png.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from playwright.async_api import expect

from classroom.agent.testpattern import PatternCode, read_pattern
from tests.browser import artifact_path, chromium_available, launch_chromium
from tests.live_harness import join_token, running_server, start_agent, stop_all
from tests.page_session import until
from tests.test_broadcast import create_lesson
from tests.test_recording_e2e import wait_for_entry

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(480),
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]

LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 360, "height": 740}
WORKER = "/static/vendor/hls.js/hls.worker.js"
# A browser without Media Source Extensions, as iPhone Safari before 17.1 is.
NO_MSE = (
    "delete window.MediaSource; delete window.ManagedMediaSource; delete window.WebKitMediaSource;"
)




async def page_state(page: Any) -> dict[str, Any]:
    return await page.evaluate("window.tongbuBroadcast ? window.tongbuBroadcast.state : {}")


async def reach_phase(page: Any, phase: str, within: float, what: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        state = await page_state(page)
        return state if state.get("phase") == phase else None

    return await until(probe, within, what)


async def playing(page: Any, within: float, what: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        state = await page_state(page)
        return state if state.get("playing") and not state.get("trouble") else None

    return await until(probe, within, what)


async def in_trouble(page: Any) -> dict[str, Any] | None:
    state = await page_state(page)
    return state if state.get("trouble") and not state.get("playing") else None


async def frames_shown(page: Any, count: int = 15) -> dict[str, float]:
    """Wait for `count` presented frames (requestVideoFrameCallback): how far currentTime
    moved meanwhile and how many frames the decoder counted."""
    return await asyncio.wait_for(
        page.evaluate(
            """(count) => new Promise((resolve) => {
                const v = document.getElementById('video');
                const t0 = v.currentTime;
                const q0 = v.getVideoPlaybackQuality().totalVideoFrames;
                let n = 0;
                const step = () => {
                    n += 1;
                    if (n < count) { v.requestVideoFrameCallback(step); return; }
                    resolve({frames: n, advanced: v.currentTime - t0,
                             decoded: v.getVideoPlaybackQuality().totalVideoFrames - q0});
                };
                v.requestVideoFrameCallback(step);
            })""",
            count,
        ),
        30,
    )


async def picture(page: Any) -> tuple[np.ndarray, float]:
    """The <video>'s current picture as a grey image, and when it was taken (Unix s)."""
    grabbed = await page.evaluate("""() => {
        const v = document.getElementById('video');
        if (!v.videoWidth) return null;
        const canvas = document.createElement('canvas');
        canvas.width = v.videoWidth;
        canvas.height = v.videoHeight;
        const g = canvas.getContext('2d', {willReadFrequently: true});
        g.drawImage(v, 0, 0);
        const rgba = g.getImageData(0, 0, canvas.width, canvas.height).data;
        const luma = new Uint8Array(canvas.width * canvas.height);
        for (let i = 0; i < luma.length; i++) {
            luma[i] = (299 * rgba[4 * i] + 587 * rgba[4 * i + 1] + 114 * rgba[4 * i + 2]) / 1000;
        }
        let text = '';
        for (let i = 0; i < luma.length; i += 8192) {
            text += String.fromCharCode(...luma.subarray(i, i + 8192));
        }
        return {width: canvas.width, height: canvas.height, luma: btoa(text), at: Date.now()};
    }""")
    assert grabbed is not None, "the video has no picture size"
    luma = np.frombuffer(base64.b64decode(grabbed["luma"]), dtype=np.uint8)
    return luma.reshape(grabbed["height"], grabbed["width"]), grabbed["at"] / 1000


async def teacher_code(page: Any, teacher_id: int, within: float = 20) -> tuple[PatternCode, float]:
    """The teacher's pattern code read from the shown picture, and its glass-to-page age."""

    async def probe() -> tuple[PatternCode, float] | None:
        luma, at = await picture(page)
        # Not black: the teacher's room colour, white text and the code's white cells.
        assert luma.mean() > 30 and luma.std() > 20, (luma.mean(), luma.std())
        code = read_pattern(luma)
        if code is None:
            return None
        assert code.tag == teacher_id & 0xFF, code
        return code, ((int(at * 1000) - code.timestamp_ms) % 2**32) / 1000

    return await until(probe, within, "the teacher's pattern in the shown picture")


def off_origin(urls: list[str], base: str) -> list[str]:
    """Requests that went anywhere but the server (blob: URLs of this origin stay home)."""
    return [
        u
        for u in urls
        if not (u.startswith(base + "/") or u.startswith(f"blob:{base}/") or u.startswith("data:"))
    ]


def watch_console(page: Any, into: list[str]) -> None:
    page.on("console", lambda m: into.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: into.append(f"pageerror: {e}"))


def csp_violations(console: list[str]) -> list[str]:
    return [line for line in console if "Content Security Policy" in line]


async def test_public_broadcast_from_waiting_to_replay_for_an_anonymous_viewer(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        api, base = server.api, server.base_url
        lesson = await create_lesson(api, "famous_school", "甲")
        lid, teacher = lesson.lesson_id, lesson.main_id

        async with playwright_api.async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                context = await browser.new_context(viewport=LAPTOP, locale="zh-CN")
                requests: list[str] = []
                context.on("request", lambda r: requests.append(r.url))
                console: list[str] = []
                page = await context.new_page()
                watch_console(page, console)

                # ------------------------------------------------ before the teacher starts
                await page.goto(f"{base}/broadcast/{lid}")
                waiting = await reach_phase(page, "waiting", 15, "the waiting state")
                assert waiting["player"] is None
                notice = await page.locator("#notice").inner_text()
                assert "直播尚未开始" in notice and "计划开始时间" in notice, notice
                assert await page.locator("#badge").inner_text() == "未开始"
                assert await page.locator("#controls").is_hidden()  # nothing to control yet
                assert await page.locator("#title").inner_text() == "浮力"
                meta = await page.locator("#meta").inner_text()
                assert meta == "名校甲 · 李老师 · 物理 · 初二", meta
                assert await page.locator("#kind").inner_text() == "名校网络课堂"
                assert await page.title() == "浮力 · 直播 · 同步课堂"

                agents = [
                    start_agent(
                        "main", base, await join_token(api, lid, "main", teacher), tmp_path
                    ),
                    start_agent(
                        "rural",
                        base,
                        await join_token(api, lid, "receiving", lesson.receiving_ids[0]),
                        tmp_path,
                    ),
                ]
                try:
                    # -------------------------------------------- it plays by itself, muted
                    live = await playing(page, 60, "the page playing once the broadcast is live")
                    assert live["phase"] == "live" and live["player"] == "hls.js", live
                    assert live["muted"] is True
                    assert await page.locator("#badge").inner_text() == "直播中"
                    assert await page.locator("#notice").is_hidden()
                    shown = await frames_shown(page)
                    assert shown["advanced"] > 0.5 and shown["decoded"] > 0, shown
                    first, age = await teacher_code(page, teacher)
                    await asyncio.sleep(1.5)
                    second, _ = await teacher_code(page, teacher)
                    assert second.counter > first.counter, (first, second)
                    print(f"\nglass-to-page (hls.js defaults): {age:.1f} s; frames {shown}")
                    screenshot = artifact_path("screenshots/broadcast.png")
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    await page.screenshot(path=str(screenshot))

                    # The transmux worker came from our origin, no blob: worker.
                    assert any(u == base + WORKER for u in requests), requests
                    assert csp_violations(console) == [], console

                    # -------------------------------------------- the keyboard
                    for _ in range(8):
                        if await page.evaluate("document.activeElement.id") == "sound":
                            break
                        await page.keyboard.press("Tab")
                    assert await page.evaluate("document.activeElement.id") == "sound"
                    await page.keyboard.press("Enter")
                    assert (await page_state(page))["muted"] is False
                    # The button follows the video's volumechange event, a moment later.
                    sound = page.locator("#sound")
                    await expect(sound).to_have_attribute("aria-pressed", "true")
                    await expect(sound).to_have_text("静音")
                    await page.keyboard.press("m")
                    assert (await page_state(page))["muted"] is True

                    # -------------------------------------------- 1366x768 and a phone
                    stage = await page.locator("#stage").bounding_box()
                    controls = await page.locator(".broadcast-controls").bounding_box()
                    assert stage["width"] > 900, stage
                    assert controls["y"] + controls["height"] <= LAPTOP["height"], controls
                    phone = await context.new_page()
                    await phone.set_viewport_size(PHONE)
                    await phone.goto(f"{base}/broadcast/{lid}")
                    await playing(phone, 30, "the phone page playing")
                    width = await phone.evaluate("document.scrollingElement.scrollWidth")
                    assert width <= PHONE["width"], width
                    box = await phone.locator("#stage").bounding_box()
                    assert PHONE["width"] - 20 <= box["width"] <= PHONE["width"], box
                    _, joined_age = await teacher_code(phone, teacher)
                    print(f"glass-to-page, joining a running broadcast: {joined_age:.1f} s")
                    await phone.close()

                    # -------------------------------------------- the playlist drops out
                    async def refuse(route: Any) -> None:
                        await route.abort("connectionfailed")

                    await page.route("**/live/*/index.m3u8", refuse)
                    troubled = await until(
                        lambda: in_trouble(page), 60, "the network trouble to show"
                    )
                    notice = await page.locator("#notice").inner_text()
                    assert "网络不稳定" in notice, notice
                    assert troubled["errors"], troubled
                    await page.unroute("**/live/*/index.m3u8", refuse)
                    await playing(page, 60, "playback to come back after the network")
                    await teacher_code(page, teacher)
                finally:
                    await api.call("POST", f"/lessons/{lid}/end", {"reason": "下课"})
                    ended_at = time.monotonic()
                    await stop_all(agents)

                # ------------------------------------------------ the end, then the replay
                ended = await reach_phase(page, "ended", 60, "the ended state")
                await until(lambda: page.locator("#notice").is_visible(), 45, "the ended notice")
                print(f"已结束 shown {time.monotonic() - ended_at:.1f} s after the lesson ended")
                assert await page.locator("#badge").inner_text() == "已结束"
                assert "直播已结束" in await page.locator("#notice").inner_text()
                assert ended["info"]["lesson_state"] == "ended"
                entry = await wait_for_entry(api, lid, {"composite"}, within=240)
                link = page.locator("#notice-link")

                async def replay_linked() -> bool:
                    return await link.get_attribute("href") == f"/replay/{entry['id']}"

                await until(replay_linked, 40, "the replay link")
                assert await link.inner_text() == "观看回放"
                await link.click()
                await page.wait_for_url(f"{base}/replay/{entry['id']}")

                assert off_origin(requests, base) == [], off_origin(requests, base)
                assert csp_violations(console) == [], console
            finally:
                await browser.close()


async def test_private_broadcast_asks_to_sign_in_and_plays_for_a_signed_in_user(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as server:
        api, base = server.api, server.base_url
        lesson = await create_lesson(api, "dedicated", "丙", broadcast=True)
        lid, teacher = lesson.lesson_id, lesson.main_id
        await api.call(
            "POST",
            "/users",
            {
                "username": "jiaoyan",
                "password": "jiaoyan-pass-1",
                "role": "reviewer",
                "display_name": "教研员",
            },
        )
        playlist = f"{base}/live/{lid}/index.m3u8"
        main = start_agent("main", base, await join_token(api, lid, "main", teacher), tmp_path)

        async with playwright_api.async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                # ------------------------------------------------ anonymous: sign in, please
                anonymous = await browser.new_context(viewport=LAPTOP, locale="zh-CN")
                requests: list[str] = []
                anonymous.on("request", lambda r: requests.append(r.url))
                page = await anonymous.new_page()
                await page.goto(f"{base}/broadcast/{lid}")
                refused = await reach_phase(page, "private", 15, "the private state")
                assert refused["info"] is None  # nothing about the lesson was given away
                notice = await page.locator("#notice").inner_text()
                assert "本直播仅限登录用户观看" in notice, notice
                link = page.locator("#notice-link")
                assert await link.inner_text() == "登录后观看"
                assert await link.get_attribute("href") == (
                    f"/login?next={quote(f'/broadcast/{lid}', safe='')}"
                )
                assert await page.locator("#badge").inner_text() == "需登录"
                assert await page.locator("#controls").is_hidden()
                assert await page.locator("#title").inner_text() == "课堂直播"
                for url in (playlist, f"{base}/live/{lid}/lesson.json"):
                    response = await anonymous.request.get(url)
                    assert response.status == 401, (url, response.status)

                # ------------------------------------------------ a signed-in user watches
                signed = await browser.new_context(viewport=LAPTOP, locale="zh-CN")
                signed.on("request", lambda r: requests.append(r.url))
                answer = await signed.request.post(
                    f"{base}/api/v1/auth/session",
                    data={"username": "jiaoyan", "password": "jiaoyan-pass-1"},
                )
                assert answer.ok, await answer.text()
                page = await signed.new_page()
                await page.goto(f"{base}/broadcast/{lid}")
                watched = await playing(page, 60, "the signed-in user's page playing")
                assert watched["info"]["public"] is False
                assert watched["info"]["title"] == "浮力"
                shown = await frames_shown(page)
                assert shown["advanced"] > 0.5 and shown["decoded"] > 0, shown
                await teacher_code(page, teacher)
                # Without MSE (an iPhone before iOS 17.1) the browser's own HLS player
                # takes the playlist; the cookie goes with its requests too.
                native = await signed.new_page()
                await native.add_init_script(NO_MSE)
                await native.goto(f"{base}/broadcast/{lid}")
                natively = await playing(native, 60, "the browser's own HLS player")
                assert natively["player"] == "native", natively
                await teacher_code(native, teacher)
                await native.close()

                response = await signed.request.get(playlist)  # the cookie is the credential
                assert response.status == 200 and "#EXTM3U" in await response.text()
                assert response.headers["cache-control"] == "no-cache"
                assert "access-control-allow-origin" not in response.headers

                assert off_origin(requests, base) == [], off_origin(requests, base)
            finally:
                await browser.close()
                await stop_all([main])


async def test_lesson_json_tells_a_viewer_no_more_than_the_playlist_would(
    tmp_path: Path,
) -> None:
    """Not broadcast: 404 as for the playlist; a wrong bearer token: 401, never anonymous."""
    async with running_server(tmp_path / "data") as server:
        api, base = server.api, server.base_url
        public = await create_lesson(api, "famous_school", "丁")
        quiet = await create_lesson(api, "dedicated", "戊")  # broadcast off by default
        http = api.session
        async with http.get(f"{base}/live/{public.lesson_id}/lesson.json") as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            info = await response.json()
        assert info["public"] is True and info["lesson_state"] == "open"
        # Open, but no room has joined: the lesson is not live here, nor its broadcaster.
        assert info["broadcast_state"] is None and info["segment_target_s"] is None
        assert info["playlist_url"] == f"/live/{public.lesson_id}/index.m3u8"
        assert info["replay_url"] is None
        assert set(info) == set(
            "lesson_id title kind subject grade teacher_name school planned_start planned_end"
            " started_at ended_at lesson_state public broadcast_state playlist_url"
            " segment_target_s replay_url".split()
        )
        for lesson_id in (quiet.lesson_id, 999999):
            async with http.get(f"{base}/live/{lesson_id}/lesson.json") as response:
                assert response.status == 404, lesson_id
        async with http.get(
            f"{base}/live/{public.lesson_id}/lesson.json", headers={"Authorization": "Bearer wrong"}
        ) as response:
            assert response.status == 401
        async with http.get(f"{base}/broadcast/{public.lesson_id}") as response:
            assert response.status == 200
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        async with http.get(f"{base}/static/vendor/hls.js/hls.light.min.mjs") as response:
            assert response.status == 200
            assert response.content_type == "text/javascript"
