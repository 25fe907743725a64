"""A rural room's link drops and comes back: the agent rejoins by itself and media flows.

The receiving agent runs in its own network namespace, joined to the host by a veth pair,
so the test can cut its link for real (the interface goes down: packets vanish, no socket
is told) rather than kill a process.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live_harness import (
    create_lesson,
    free_port,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.test_live_lesson import assert_video_advancing

pytestmark = [pytest.mark.timeout(240), pytest.mark.netns]


@dataclass
class Namespace:
    name: str
    host_side: str
    host_ip: str

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.name)

    def cut(self) -> None:
        _ip("link", "set", self.host_side, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_side, "up")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    suffix = secrets.token_hex(3)
    name, host_side, ns_side = f"tb{suffix}", f"tbh{suffix}", f"tbn{suffix}"
    subnet = f"10.{200 + int(suffix[:2], 16) % 50}.{int(suffix[2:4], 16)}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", host_side, "type", "veth", "peer", "name", ns_side)
        _ip("link", "set", ns_side, "netns", name)
        _ip("addr", "add", f"{subnet}.1/24", "dev", host_side)
        _ip("link", "set", host_side, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{subnet}.2/24", "dev", ns_side)
        _ip("netns", "exec", name, "ip", "link", "set", ns_side, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield Namespace(name, host_side, f"{subnet}.1")
    finally:
        subprocess.run(["ip", "link", "del", host_side], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


async def test_receiving_room_rejoins_after_its_link_is_cut(
    tmp_path: Path, namespace: Namespace
) -> None:
    port = free_port()
    async with running_server(tmp_path / "data", host="0.0.0.0", port=port) as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1)
        lid, room = lesson.lesson_id, lesson.receiving_classroom_ids[0]
        main = start_agent("main", server.base_url,
                           await join_token(api, lid, "main", lesson.main_classroom_id), tmp_path)
        rural = start_agent("rural", f"http://{namespace.host_ip}:{port}",
                            await join_token(api, lid, "receiving", room), tmp_path,
                            prefix=namespace.exec_prefix)
        try:
            await assert_video_advancing(rural, lesson.main_classroom_id, within=30)
            await assert_video_advancing(main, room)

            namespace.cut()
            await wait_for(lambda: rural.of("link_lost"), 30, "the agent to notice the cut")
            await asyncio.sleep(3)
            namespace.restore()

            await wait_for(lambda: len(rural.of("joined")) >= 2, 40, "the agent to rejoin")
            rejoined_at = rural.of("joined")[-1]["t"]
            await wait_for(
                lambda: (t := rural.track_from(lesson.main_classroom_id, "video", rejoined_at))
                and t["frames"] > 0 and t["tag"] == lesson.main_classroom_id & 0xFF,
                20, "video again after the rejoin")
            await assert_video_advancing(rural, lesson.main_classroom_id)
            await assert_video_advancing(main, room)  # and the teacher sees the room again
            state = server.live(lid)
            rural_state = next(r for r in state.rooms if r.classroom_id == room)
            assert rural_state.connected and rural_state.reconnects >= 1
            assert len(main.of("joined")) == 1  # the main room never noticed
        finally:
            await stop_all([main, rural])
