"""A rural room's link drops and comes back: the agent rejoins by itself and media flows.

The receiving agent runs behind an emulated line (bench/line.py: its own network
namespace, joined to the host by a veth pair), so the test can cut its link for real
(every packet either way vanishes, no socket is told) rather than kill a process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.line import PROFILES, EmulatedLine, available
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


@pytest.fixture
def line() -> Iterator[EmulatedLine]:
    if (why := available()) is not None:
        pytest.skip(f"cannot emulate a line here: {why}")
    with EmulatedLine.up(PROFILES["clean"]) as emulated:
        yield emulated


async def test_receiving_room_rejoins_after_its_link_is_cut(
    tmp_path: Path, line: EmulatedLine
) -> None:
    port = free_port()
    async with running_server(tmp_path / "data", host="0.0.0.0", port=port) as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1)
        lid, room = lesson.lesson_id, lesson.receiving_classroom_ids[0]
        main = start_agent("main", server.base_url,
                           await join_token(api, lid, "main", lesson.main_classroom_id), tmp_path)
        rural = start_agent("rural", f"http://{line.host_ip}:{port}",
                            await join_token(api, lid, "receiving", room), tmp_path,
                            prefix=line.exec_prefix)
        try:
            await assert_video_advancing(rural, lesson.main_classroom_id, within=30)
            await assert_video_advancing(main, room)

            line.outage(3600)  # until restored: every packet either way vanishes
            await wait_for(lambda: rural.of("link_lost"), 30, "the agent to notice the cut")
            await asyncio.sleep(3)
            line.outage(0)

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
