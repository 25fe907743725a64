"""The README's main command: `tongbu demo` runs a whole lesson and leaves a recording.

Runs the real command as a newcomer would (with a short --duration instead of Ctrl-C):
five agents join, every receiving room decodes the teacher, the lesson ends, and the
recording is finalised into the library before the command exits.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.live_harness import TONGBU, free_port

pytestmark = pytest.mark.timeout(300)


async def test_demo_runs_a_lesson_and_finalises_its_recording(tmp_path: Path) -> None:
    data = tmp_path / "data"
    command = [TONGBU, "demo", "--port", str(free_port()), "--data-dir", str(data),
               "--duration", "15", "--width", "320", "--height", "180"]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=280)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split("=", 1) for line in out.splitlines()
                 if line.split("=", 1)[0] in {"WATCH_URL", "BROADCAST_URL", "REPLAY_URL"})
    assert "/watch/1#token=" in lines["WATCH_URL"]
    assert lines["BROADCAST_URL"].endswith("/live/1/index.m3u8")
    assert lines["REPLAY_URL"].endswith("/replay/1")
    assert "admin / " in out and "(changed)" not in out

    # Every receiving room saw the teacher (classroom 1) during the lesson.
    for room in (2, 3, 4, 5):
        events = [json.loads(line) for line in
                  (data / "demo-agents" / f"room-{room}.jsonl").read_text().splitlines()]
        teacher = [t for e in events if e["event"] == "stats" for t in e["tracks"]
                   if t["kind"] == "video" and t["classroom_id"] == 1 and t["tag"] == 1]
        assert teacher and teacher[-1]["frames"] > 30, f"room {room} did not see the teacher"

    manifest = json.loads((data / "recordings" / "1" / "final" / "manifest.json").read_text())
    assert manifest["state"] == "done"
    room_videos = {f["classroom_id"] for f in manifest["files"] if f["role"] == "room_video"}
    assert room_videos == {1, 2, 3, 4, 5}
    assert any(f["role"] == "composite" for f in manifest["files"])
