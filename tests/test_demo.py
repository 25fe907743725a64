"""The README's main command: `tongbu demo` runs a whole lesson and leaves a recording.

Runs the real command as a newcomer would (with a short --duration instead of Ctrl-C):
five agents join, every receiving room decodes the teacher, the lesson ends, and the
recording is finalised into the library before the command exits. While it runs, the
accounts it prints sign in as a newcomer's browser would, and find the second lesson
they can teach and join from the pages.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest

from tests.live_harness import TONGBU, free_port

pytestmark = pytest.mark.timeout(300)

ACCOUNT = re.compile(r"^\s+(\S+) (\w[\w ]*?):\s+(\S+) / (\S+)", re.MULTILINE)


async def read_announcement(stdout: asyncio.StreamReader, output: list[str]) -> None:
    """Lines until WATCH_URL, which ends the demo's announcement."""
    while line := (await stdout.readline()).decode():
        output.append(line)
        if line.startswith("WATCH_URL="):
            return
    raise AssertionError("the demo ended before announcing its lesson:\n" + "".join(output))


async def sign_in(http: aiohttp.ClientSession, base: str, username: str, password: str) -> str:
    """A browser's sign-in (POST /auth/session); the CSRF token the page would keep."""
    async with http.post(
        f"{base}/api/v1/auth/session", json={"username": username, "password": password}
    ) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["csrf_token"]


async def test_demo_runs_a_lesson_and_finalises_its_recording(tmp_path: Path) -> None:
    data = tmp_path / "data"
    command = [
        TONGBU, "demo", "--port", str(free_port()), "--data-dir", str(data),
        "--duration", "15", "--width", "320", "--height", "180",
    ]  # fmt: skip
    stderr = (tmp_path / "demo.err").open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=stderr
    )
    stderr.close()
    output: list[str] = []
    try:
        await asyncio.wait_for(read_announcement(process.stdout, output), 120)
        announced = "".join(output)
        accounts = {m.group(3): m.group(4) for m in ACCOUNT.finditer(announced)}
        login_url = re.search(r"^LOGIN_URL=(\S+)$", announced, re.MULTILINE).group(1)
        assert set(accounts) >= {"admin", "teacher", "reviewer", "songlin-admin", "songlin-room"}
        base = login_url.rstrip("/")

        # The printed teacher signs in and finds the second lesson, theirs to teach.
        # unsafe=True: a browser keeps cookies from 127.0.0.1; aiohttp only when told to.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(login_url) as home:
                assert home.status == 200 and "/static/js/home.js" in await home.text()
            csrf = await sign_in(http, base, "teacher", accounts["teacher"])
            async with http.get(f"{base}/api/v1/me") as r:
                me = await r.json()
            async with http.get(f"{base}/api/v1/lessons") as r:
                listed = (await r.json())["items"]
            # Scheduled now; a scheduler may already have opened it for the rooms.
            (lesson,) = [x for x in listed if x["teacher_user_id"] == me["id"]]
            assert lesson["state"] in {"scheduled", "open"} and me["role"] == "teacher"
            main, *receiving = lesson["rooms"]
            assert main["role"] == "main" and len(receiving) == 2
            body = {"role": "main", "classroom_id": main["classroom_id"]}
            async with http.post(
                f"{base}/api/v1/lessons/{lesson['id']}/join-tokens",
                json=body,
                headers={"X-CSRF-Token": csrf},
            ) as r:
                assert r.status == 201, await r.text()

        # The receiving school's device signs in and may join its room of that lesson.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            csrf = await sign_in(http, base, "songlin-room", accounts["songlin-room"])
            body = {"role": "receiving", "classroom_id": receiving[0]["classroom_id"]}
            async with http.post(
                f"{base}/api/v1/lessons/{lesson['id']}/join-tokens",
                json=body,
                headers={"X-CSRF-Token": csrf},
            ) as r:
                assert r.status == 201, await r.text()

        rest, _ = await asyncio.wait_for(process.communicate(), 280)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    out = announced + rest.decode()
    assert process.returncode == 0, (tmp_path / "demo.err").read_text()[-3000:]
    lines = dict(
        line.split("=", 1)
        for line in out.splitlines()
        if line.split("=", 1)[0] in {"WATCH_URL", "BROADCAST_URL", "BROADCAST_PAGE", "REPLAY_URL"}
    )
    assert "/watch/1#token=" in lines["WATCH_URL"]
    assert lines["BROADCAST_URL"].endswith("/live/1/index.m3u8")
    assert lines["BROADCAST_PAGE"].endswith("/broadcast/1")
    assert lines["REPLAY_URL"].endswith("/replay/1")
    assert "admin / " in out and "(changed)" not in out

    # Every receiving room saw the teacher (classroom 1) during the lesson.
    for room in (2, 3, 4, 5):
        events = [
            json.loads(line)
            for line in (data / "demo-agents" / f"room-{room}.jsonl").read_text().splitlines()
        ]
        teacher = [
            t
            for e in events
            if e["event"] == "stats"
            for t in e["tracks"]
            if t["kind"] == "video" and t["classroom_id"] == 1 and t["tag"] == 1
        ]
        assert teacher and teacher[-1]["frames"] > 30, f"room {room} did not see the teacher"

    manifest = json.loads((data / "recordings" / "1" / "final" / "manifest.json").read_text())
    assert manifest["state"] == "done"
    room_videos = {f["classroom_id"] for f in manifest["files"] if f["role"] == "room_video"}
    assert room_videos == {1, 2, 3, 4, 5}
    assert any(f["role"] == "composite" for f in manifest["files"])
