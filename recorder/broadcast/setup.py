"""Wires the live broadcast into the server: one `Broadcasts` per app, told of every lesson
the live registry creates and ends, and the /live/ routes that serve it to viewers."""

from __future__ import annotations

from aiohttp import web

from recorder.broadcast.hls_live import DEFAULT_SEGMENT_TARGET, DEFAULT_WINDOW
from recorder.broadcast.http import add_live_routes
from recorder.broadcast.live import BROADCASTS, Broadcasts
from signaling.appkeys import SETTINGS
from signaling.live.ws import REGISTRY


def setup_broadcast(
    app: web.Application,
    *,
    segment_target: float = DEFAULT_SEGMENT_TARGET,
    window: int = DEFAULT_WINDOW,
) -> Broadcasts:
    """Broadcast every lesson marked `broadcast`; serve /live/. Call after setup_signaling."""
    broadcasts = Broadcasts(
        app[SETTINGS].data_dir / "broadcast", segment_target=segment_target, window=window
    )
    app[BROADCASTS] = broadcasts
    registry = app[REGISTRY]
    registry.snapshot_hooks.append(
        lambda state: setattr(state, "broadcast", broadcasts.state(state.lesson_id))
    )
    registry.on_lesson_created.append(broadcasts.lesson_created)
    registry.on_lesson_ended.append(broadcasts.lesson_ended)

    async def shutdown(app: web.Application) -> None:
        await broadcasts.shutdown()

    app.on_shutdown.append(shutdown)
    add_live_routes(app)
    return broadcasts
