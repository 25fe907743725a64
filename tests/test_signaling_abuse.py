"""Bad clients get an error with a code, never a crash, and the lesson goes on.

A live lesson with a main and two receiving agents runs while raw sockets send what a
broken or hostile client would: the test then checks each answer and that the agents'
counters still advance without a single reconnect.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from signaling.appkeys import TOKENS
from signaling.live.tokens import JoinRole
from signaling.protocol import MAX_MESSAGE_BYTES
from tests.live_harness import (
    AgentProcess,
    create_lesson,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)
from tests.test_live_lesson import assert_video_advancing

pytestmark = pytest.mark.timeout(180)


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def next_error(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        reply = await next_json(ws)
        if reply["type"] == "error":
            return reply


async def test_bad_messages_are_answered_and_other_rooms_keep_going(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=2)
        lid = lesson.lesson_id
        agents: list[AgentProcess] = [
            start_agent("main", server.base_url,
                        await join_token(api, lid, "main", lesson.main_classroom_id), tmp_path)
        ]
        for cid in lesson.receiving_classroom_ids:
            agents.append(start_agent(f"room{cid}", server.base_url,
                                      await join_token(api, lid, "receiving", cid), tmp_path))
        ws_url = server.base_url.replace("http", "ws") + "/ws/v1"
        try:
            for agent in agents[1:]:
                await assert_video_advancing(agent, lesson.main_classroom_id)
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(ws_url) as ws:
                    await ws.send_str("{not json")
                    assert (await next_error(ws))["code"] == "bad_json"
                    await ws.send_str('{"type":"teleport","v":1,"id":"x1"}')
                    error = await next_error(ws)
                    assert (error["code"], error["ref"]) == ("unknown_type", "x1")
                    await ws.send_str(json.dumps({"type": "ping", "v": 1, "t": 1,
                                                  "pad": "x" * MAX_MESSAGE_BYTES}))
                    assert (await next_error(ws))["code"] == "too_large"
                    # Out of order: an answer and a stage request before joining.
                    await ws.send_str('{"type":"answer","v":1,"revision":1,"sdp":"v=0 xxxxxxxx"}')
                    assert (await next_error(ws))["code"] == "not_joined"
                    await ws.send_str('{"type":"stage","v":1,"classroom_id":3}')
                    assert (await next_error(ws))["code"] == "not_joined"
                    # The socket survived all of that: it can still join and watch.
                    watch = await join_token(api, lid, "watch")
                    await ws.send_str(json.dumps({"type": "join", "v": 1, "token": watch}))
                    joined = await next_json(ws)
                    assert joined["type"] == "joined", joined
                    await ws.send_str(json.dumps({"type": "join", "v": 1, "token": watch}))
                    assert (await next_error(ws))["code"] == "already_joined"
                    await ws.send_str('{"type":"answer","v":1,"revision":99,"sdp":"v=0 xxxxxx"}')
                    assert (await next_error(ws))["code"] == "stale_answer"
                    # A watcher may not stage a room.
                    target = lesson.receiving_classroom_ids[0]
                    await ws.send_str(json.dumps({"type": "stage", "v": 1,
                                                  "classroom_id": target}))
                    assert (await next_error(ws))["code"] == "forbidden"

                # A flood from one socket closes that socket with 1008, and only it.
                async with http.ws_connect(ws_url) as flood:
                    for i in range(400):
                        await flood.send_str(json.dumps({"type": "ping", "v": 1, "t": i}))
                    codes = set()
                    while True:
                        message = await flood.receive(timeout=10)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        reply = json.loads(message.data)
                        if reply["type"] == "error":
                            codes.add(reply["code"])
                    assert "rate_limited" in codes
                    assert flood.close_code == 1008

            for agent in agents[1:]:
                await assert_video_advancing(agent, lesson.main_classroom_id)
            for agent in agents:
                assert len(agent.of("joined")) == 1, f"{agent.name} had to reconnect"
            live = server.live(lid)
            assert all(room.connected for room in live.rooms)
        finally:
            await stop_all(agents)


async def test_refused_tokens_get_their_codes_and_publish_nothing(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1, tag="A")
        other = await create_lesson(api, receiving=1, tag="B")
        room = lesson.receiving_classroom_ids[0]
        tokens = server.app[TOKENS]
        good = await join_token(api, lesson.lesson_id, "receiving", room)
        expired, _ = tokens.mint(lesson_id=lesson.lesson_id, classroom_id=room,
                                 role=JoinRole.RECEIVING, ttl=timedelta(seconds=-120))
        head, body, signature = good.split(".")
        tampered_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
        cases = {
            "token_expired": {"token": expired},
            "token_invalid": {"token": f"{head}.{tampered_body}.{signature}"},
            "token_wrong_lesson": {"token": good, "lesson_id": other.lesson_id},
            "token_wrong_role": {"token": good, "role": "main"},
        }
        ws_url = server.base_url.replace("http", "ws") + "/ws/v1"
        async with aiohttp.ClientSession() as http:
            for code, fields in cases.items():
                async with http.ws_connect(ws_url) as ws:
                    await ws.send_str(json.dumps({"type": "join", "v": 1, **fields}))
                    error = await next_error(ws)
                    assert (error["code"], error["fatal"]) == (code, True), error
                    closing = await ws.receive(timeout=5)
                    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # A main token for a receiving classroom is refused too.
            main_for_room, _ = tokens.mint(lesson_id=lesson.lesson_id, classroom_id=room,
                                           role=JoinRole.MAIN, ttl=timedelta(minutes=5))
            async with http.ws_connect(ws_url) as ws:
                await ws.send_str(json.dumps({"type": "join", "v": 1, "token": main_for_room}))
                assert (await next_error(ws))["code"] == "token_wrong_role"
        assert server.live(lesson.lesson_id) is None or not server.live(lesson.lesson_id).tracks
        # And the good token still works, so the refusals were about the tokens.
        agent = start_agent("good", server.base_url, good, tmp_path)
        try:
            await wait_for(lambda: agent.of("joined"), 20, "the good token to join")
        finally:
            await stop_all([agent])
