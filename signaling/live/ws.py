"""Mounts the signaling WebSocket (`/ws/v1`) and the live-lesson registry on the app."""

from __future__ import annotations

import asyncio

from aiohttp import web

from signaling.appkeys import DB, LIVE, SETTINGS, TOKENS
from signaling.live.join_refusals import JoinRefusalLog
from signaling.live.registry import LiveLessonRegistry
from signaling.live.session import MAX_FRAME_BYTES, SignalingSession

REGISTRY = web.AppKey("live_registry", LiveLessonRegistry)
JOIN_REFUSALS = web.AppKey("join_refusals", JoinRefusalLog)
WS_PATH = "/ws/v1"


async def websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True)
    try:
        await ws.prepare(request)
    except ConnectionResetError:
        # The client gave up during the handshake (a box rebooting, a link dropping).
        return ws
    session = SignalingSession(
        ws,
        registry=app[REGISTRY],
        db=app[DB],
        tokens=app[TOKENS],
        ice_servers=app[SETTINGS].ice_servers,
        remote=request.remote,
        refusals=app[JOIN_REFUSALS],
    )
    await session.run()
    return ws


async def _close_sessions(app: web.Application) -> None:
    """On shutdown, close sockets with 1001 so classroom agents reconnect to the next server."""
    registry = app[REGISTRY]
    sessions = [s for lesson in registry.lessons.values() for s in lesson.sessions()]
    await asyncio.gather(
        *(s.close(reason="server_shutdown", code=1001) for s in sessions), return_exceptions=True
    )


def setup_signaling(app: web.Application) -> None:
    registry = LiveLessonRegistry()
    app[REGISTRY] = registry
    app[LIVE] = registry
    app[JOIN_REFUSALS] = JoinRefusalLog()
    app.router.add_get(WS_PATH, websocket)
    app.on_shutdown.append(_close_sessions)
