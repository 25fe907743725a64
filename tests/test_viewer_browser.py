"""The lesson viewer in a real Chromium.

Two levels:
- against a scripted signaling server (only web.pages and a fake /ws/v1): protocol.js
  joins, answers, pings, follows `lesson_state` and rejoins with the rejoin token;
- against the whole system as a user starts it (`tongbu demo`: server, five classroom
  agents publishing test patterns): every room plays, frames advance, each tile shows its
  own room.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from aiortc import RTCPeerConnection

from tests.browser import (
    DemoRun,
    artifact_path,
    chromium_available,
    launch_chromium,
    tongbu_command,
)
from tests.page_session import eventually, new_page, screenshot, sign_in
from web.pages import setup_pages

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]

ROOMS = [
    {"classroom_id": 1, "name": "主讲教室", "school_name": "城关第一中学", "role": "main"},
    {"classroom_id": 2, "name": "听课教室", "school_name": "青山村小学", "role": "receiving"},
    {"classroom_id": 3, "name": "听课教室", "school_name": "河口镇中心小学", "role": "receiving"},
    {"classroom_id": 4, "name": "听课教室", "school_name": "石桥村小学", "role": "receiving"},
    {"classroom_id": 5, "name": "听课教室", "school_name": "云岭乡中学", "role": "receiving"},
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await launch_chromium(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = await browser.new_page(viewport={"width": 1280, "height": 720})
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    await page.goto(url)
    return page, console


# --------------------------------------------------------------- scripted signaling server


class ScriptedSignaling:
    """Just enough of /ws/v1 to watch protocol.js behave: it records what the page sends.

    Each connection gets `joined`, then an offer with no m-lines (what the real server
    first sends a watcher, before any legs exist), then `lesson_state`. The first
    connection is dropped once the page has answered and pinged, to see it rejoin.
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.connections = 0
        self.second_join = asyncio.Event()
        self.sockets: set[web.WebSocketResponse] = set()

    async def empty_offer(self) -> str:
        pc = RTCPeerConnection()
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.add(ws)
        self.connections += 1
        connection = self.connections
        answered = pinged = False
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            message["_connection"] = connection
            self.received.append(message)
            kind = message["type"]
            if kind == "join":
                await ws.send_json(self.joined(connection, message.get("id")))
                await ws.send_json(
                    {
                        "type": "offer",
                        "v": 1,
                        "revision": 1,
                        "sdp": await self.empty_offer(),
                        "slots": [],
                    }
                )
                await ws.send_json(
                    {
                        "type": "lesson_state",
                        "v": 1,
                        "state": "live",
                        "stage_classroom_id": 3,
                        "rooms": [
                            {
                                **r,
                                "connected": True,
                                "hand_raised": r["classroom_id"] == 4,
                                "audio_muted": False,
                                "video_muted": False,
                            }
                            for r in ROOMS
                        ],
                    }
                )
                if connection == 2:
                    self.second_join.set()
            elif kind == "answer":
                answered = True
            elif kind == "ping":
                pinged = True
                await ws.send_json(
                    {"type": "pong", "v": 1, "t": message.get("t"), "server_time": 0.0}
                )
            if connection == 1 and answered and pinged:
                await ws.close(code=1001, message=b"going away")
        return ws

    def joined(self, connection: int, ref: str | None) -> dict[str, Any]:
        return {
            "type": "joined",
            "v": 1,
            "id": ref,
            "session_id": f"s{connection}",
            "lesson": {
                "lesson_id": 7,
                "kind": "dedicated",
                "subject": "数学",
                "grade": "初二",
                "teacher_name": "王老师",
                "title": "一次函数的图像",
                "state": "live",
                "planned_start": "2026-03-02T08:00:00+00:00",
                "planned_end": "2026-03-02T08:45:00+00:00",
            },
            "you": {"classroom_id": None, "role": "watch", "name": "watcher"},
            "rejoin_token": f"rejoin-{connection}",
            "rejoin_expires_at": "2026-03-02T09:15:00+00:00",
            "keepalive_interval_s": 1.0,
            "ice_servers": [],
        }


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedSignaling, str]]:
    signaling = ScriptedSignaling()

    @web.middleware
    async def log_paths(request: web.Request, handler: Any) -> web.StreamResponse:
        signaling.paths.append(str(request.rel_url))
        return await handler(request)

    async def signed_out(request: web.Request) -> web.Response:
        # What the real server answers an anonymous GET /api/v1/auth/session.
        body = {"error": {"code": "unauthorized", "message": "not signed in"}}
        return web.json_response(body, status=401)

    app = web.Application(middlewares=[log_paths])
    setup_pages(app)
    app.router.add_get("/ws/v1", signaling.handle)
    app.router.add_get("/api/v1/auth/session", signed_out)
    server = TestServer(app)
    await server.start_server()
    try:
        yield signaling, f"http://{server.host}:{server.port}"
    finally:
        # An open socket would hold the server's shutdown for its full timeout.
        for ws in list(signaling.sockets):
            await ws.close()
        await server.close()


async def test_viewer_joins_answers_pings_and_rejoins_with_the_rejoin_token(
    browser: Any, scripted: tuple[ScriptedSignaling, str]
) -> None:
    signaling, base = scripted
    page, console = await open_page(browser, f"{base}/watch/7#token=watch-token")
    await asyncio.wait_for(signaling.second_join.wait(), timeout=20)

    joins = [m for m in signaling.received if m["type"] == "join"]
    assert [j["token"] for j in joins] == ["watch-token", "rejoin-1"]
    assert all(j["lesson_id"] == 7 and j["role"] == "watch" and j["v"] == 1 for j in joins)
    assert joins[0]["client"]["kind"] == "browser"
    answers = [m for m in signaling.received if m["type"] == "answer"]
    assert answers and answers[0]["revision"] == 1 and answers[0]["sdp"].startswith("v=0")
    assert any(m["type"] == "ping" for m in signaling.received)
    # The token stayed in the fragment: no request the server saw carried it.
    assert not any("token" in p for p in signaling.paths), signaling.paths
    assert "#token" not in page.url  # and it left the address bar

    await page.wait_for_selector("figure.tile[data-classroom-id='5']")
    tiles = page.locator("figure.tile")
    assert await tiles.count() == 5
    assert await page.locator("figure.tile.main").get_attribute("data-classroom-id") == "1"
    assert await page.locator("figure.tile.on-stage").get_attribute("data-classroom-id") == "3"
    assert await page.locator("figure.tile.hand-raised").get_attribute("data-classroom-id") == "4"
    assert "石桥村小学" in await page.locator("figure.tile[data-classroom-id='4']").inner_text()
    assert await page.locator("video[data-classroom-id][data-kind='video']").count() == 5
    assert await page.locator("#lesson-title").inner_text() == "一次函数的图像"
    assert await page.locator("#status").get_attribute("data-status") == "joined"
    assert "已进入课堂" in await page.locator("#status").inner_text()
    assert await page.evaluate("window.tongbuViewer.entry") == "link"
    # Nobody is signed in (the page asked, the 401 is the server's answer): it offers to.
    assert await page.locator("#nav-sign-in").is_visible()
    assert not [
        line
        for line in console
        if line.startswith(("error", "pageerror")) and "Failed to load resource" not in line
    ], (console, signaling.paths)


async def test_viewer_speaks_english_on_request(
    browser: Any, scripted: tuple[ScriptedSignaling, str]
) -> None:
    _, base = scripted
    page, _ = await open_page(browser, f"{base}/watch/7?lang=en#token=watch-token")
    await page.wait_for_selector("figure.tile.on-stage")
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert "On stage" in await page.locator("figure.tile.on-stage").inner_text()
    assert await page.locator("#sound").inner_text() == "Turn sound on"


async def test_viewer_without_a_token_or_a_session_asks_to_log_in(
    browser: Any, scripted: tuple[ScriptedSignaling, str]
) -> None:
    signaling, base = scripted
    page, _ = await open_page(browser, f"{base}/watch/7?lang=en")
    await page.wait_for_url("**/login?next=%2Fwatch%2F7%3Flang%3Den&lang=en")
    await page.locator("#login-form:not([hidden])").wait_for()
    assert signaling.connections == 0


# --------------------------------------------------------------- the whole system


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    if tongbu_command() is None:
        pytest.skip("no `tongbu` command in this checkout yet")
    run = DemoRun.start(tmp_path_factory.mktemp("demo"))
    try:
        yield run
    finally:
        run.stop()
        (artifact_path("demo.out")).write_text(run.output())


def _closest_room(sample: dict[str, int], colours: dict[int, tuple[int, int, int]]) -> int:
    def distance(rgb: tuple[int, int, int]) -> int:
        return sum(
            (a - b) ** 2 for a, b in zip((sample["r"], sample["g"], sample["b"]), rgb, strict=True)
        )

    return min(colours, key=lambda cid: distance(colours[cid]))


async def test_watch_url_shows_all_five_rooms_live(browser: Any, demo: DemoRun) -> None:
    page, console = await open_page(browser, demo.watch_url)
    try:
        await page.wait_for_function(
            """() => {
                const v = window.tongbuViewer;
                const playing = v && v.rooms().filter((r) => r.hasVideo && r.framesPresented > 0);
                return playing && playing.length >= 5;
            }""",
            timeout=45_000,
        )
    except Exception:
        await page.screenshot(path=str(artifact_path("viewer-not-playing.png")))
        state = await page.evaluate("window.tongbuViewer && window.tongbuViewer.stats()")
        raise AssertionError(f"rooms not all playing: {state}\n{console}") from None

    first = await page.evaluate("window.tongbuViewer.stats()")
    presented = {r["classroomId"]: r["framesPresented"] for r in first["rooms"]}
    decoded = {t["mid"]: t.get("framesDecoded", 0) for t in first["tracks"]}

    def all_advanced(stats: dict) -> bool:
        """Every room presented and every video m-line decoded new frames since `first`
        (on a loaded box a tile may pause for a second: flow, not pace, is checked here)."""
        return all(r["framesPresented"] > presented.get(r["classroomId"], 0)
                   for r in stats["rooms"]) and all(
            t["framesDecoded"] > decoded.get(t["mid"], 0)
            for t in stats["tracks"] if t["kind"] == "video" and t["classroomId"])

    second = await eventually(lambda: page.evaluate("window.tongbuViewer.stats()"),
                              all_advanced, 15, "every room's frames to advance")

    rooms = {r["classroomId"]: r for r in second["rooms"]}
    assert len(rooms) == 5
    assert [r["role"] for r in rooms.values()].count("main") == 1
    assert set(rooms) == set(presented)
    assert all(r["name"] and r["schoolName"] for r in rooms.values()), rooms
    # The decoder agrees with the compositor: every video m-line decoded new frames.
    videos = [t for t in second["tracks"] if t["kind"] == "video" and t["classroomId"]]
    assert len(videos) == 5, second["tracks"]
    codecs = {t.get("codec") for t in videos}
    assert codecs <= {"video/H264", "video/VP8"}, codecs

    # The main room is the big tile.
    main_id = next(cid for cid, r in rooms.items() if r["role"] == "main")
    boxes = {}
    for cid in rooms:
        boxes[cid] = await page.locator(f"figure.tile[data-classroom-id='{cid}']").bounding_box()
    main_area = boxes[main_id]["width"] * boxes[main_id]["height"]
    assert all(main_area > 2 * b["width"] * b["height"] for c, b in boxes.items() if c != main_id)

    # Each tile shows its own room: the test pattern paints the room's colour at a probe.
    testpattern = pytest.importorskip("classroom.agent.testpattern")
    probe_x, probe_y = getattr(testpattern, "COLOUR_PROBE", (0.92, 0.35))
    colours = {}
    for cid in rooms:
        b, g, r = testpattern.room_colour(cid & 0xFF)
        colours[cid] = (r, g, b)
    region = {"x": probe_x - 0.01, "y": probe_y - 0.01, "w": 0.02, "h": 0.02}
    for cid in rooms:
        sample = await page.evaluate(
            "([cid, region]) => window.tongbuViewer.sampleColour(cid, region)", [cid, region]
        )
        assert sample is not None, cid
        assert _closest_room(sample, colours) == cid, (cid, sample, colours)

    await page.screenshot(path=str(artifact_path("viewer-five-rooms.png")))
    artifact_path("viewer-stats.json").write_text(json.dumps(second, indent=1, ensure_ascii=False))
    assert not [line for line in console if line.startswith("pageerror")], console


async def test_a_reviewer_signs_in_and_watches_the_demo_lesson_from_the_home_page(
    browser: Any, demo: DemoRun
) -> None:
    """No link needed: the reviewer the demo printed signs in, finds the live lesson on
    the home page, and the viewer mints its own watch token with the session."""
    found = re.search(r"^\s+教研员 reviewer:\s+(\S+) / (\S+)", demo.output(), re.MULTILINE)
    assert found, demo.output()
    username, password = found.groups()
    base = f"http://127.0.0.1:{demo.port}"
    page, problems = await new_page(browser)
    await sign_in(page, base, username, password)
    card = page.locator(".lesson-card[data-lesson-id='1'][data-state='live']")
    await card.locator("a[data-action='watch']").click()
    await page.wait_for_url(f"{base}/watch/1")
    playing = await eventually(
        lambda: page.evaluate("window.tongbuViewer.rooms()"),
        lambda rooms: len(rooms) == 5 and all(r["framesPresented"] > 0 for r in rooms),
        45,
        "the signed-in viewer to play all five rooms",
    )
    assert await page.evaluate("window.tongbuViewer.entry") == "session"
    assert {r["role"] for r in playing} == {"main", "receiving"}
    assert await page.inner_text("#nav-user") == "赵教研员（教研员）"
    await page.wait_for_timeout(1000)
    await screenshot(page, "watch")
    assert problems == [], problems
