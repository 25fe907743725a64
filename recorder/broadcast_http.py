"""Serves live broadcasts over plain HTTP: GET /live/{lesson_id}/index.m3u8 and segments.

Plain files, so any number of viewers costs the media router nothing; a cache or CDN in
front works as for any HLS origin (the playlist says no-cache, segments never change).

Who may watch: a public broadcast (a `famous_school` lesson marked broadcast) anyone,
without signing in; any other broadcast lesson a signed-in user (API bearer token, as
for the REST API: hls.js sends it with `xhrSetup`). A lesson that is not broadcast has no
playlist: 404, whatever files might exist.
"""

from __future__ import annotations

import re

import msgspec
from aiohttp import web

from classroom.lessons import get_lesson
from recorder.broadcast import BROADCASTS, Access, Broadcasts
from recorder.hls_live import PLAYLIST_NAME, SEGMENT_PATTERN
from signaling.api_schemas import ApiError
from signaling.appkeys import DB
from signaling.auth import current_user
from signaling.errors import ErrorCode

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
_LESSON_ID = re.compile(r"^[1-9]\d{0,17}$")


def _error(exc: ApiError) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(exc.body()), status=exc.status, content_type="application/json"
    )


async def _access(request: web.Request, broadcasts: Broadcasts, lesson_id: int) -> Access | None:
    access = broadcasts.known_access(lesson_id)
    if access is not None:
        return access
    async with request.app[DB]() as db:
        lesson = await get_lesson(db, lesson_id)
        if lesson is None:
            return None
        return broadcasts.remember_access(lesson_id, bool(lesson.broadcast), str(lesson.kind))


async def live_file(request: web.Request) -> web.StreamResponse:
    """The live playlist or one of its segments, if the caller may watch the lesson."""
    raw_id = request.match_info["lesson_id"]
    name = request.match_info["name"]
    is_playlist = name == PLAYLIST_NAME
    if not _LESSON_ID.match(raw_id) or not (is_playlist or SEGMENT_PATTERN.match(name)):
        return _error(ApiError(404, ErrorCode.NOT_FOUND, "no such broadcast file"))
    lesson_id = int(raw_id)
    broadcasts = request.app[BROADCASTS]
    access = await _access(request, broadcasts, lesson_id)
    if access is None or not access.broadcast:
        return _error(ApiError(404, ErrorCode.NOT_FOUND, f"lesson {lesson_id} is not broadcast"))
    if not access.public:
        try:
            await current_user(request)
        except ApiError as exc:
            return _error(exc)
    path = broadcasts.directory(lesson_id) / name
    visibility = "public" if access.public else "private"
    headers = {"Access-Control-Allow-Origin": "*"} if access.public else {}
    if is_playlist:
        try:
            body = path.read_bytes()  # small, and replaced atomically: read it whole
        except FileNotFoundError:
            return _error(ApiError(404, ErrorCode.NOT_FOUND,
                                   f"lesson {lesson_id}'s broadcast has not started"))
        headers["Cache-Control"] = "no-cache"
        return web.Response(body=body, content_type=PLAYLIST_TYPE, headers=headers)
    if not path.is_file():
        return _error(ApiError(404, ErrorCode.NOT_FOUND, f"no segment {name}"))
    headers["Cache-Control"] = f"{visibility}, max-age=300"  # a segment never changes
    headers["Content-Type"] = SEGMENT_TYPE
    return web.FileResponse(path, headers=headers)


def add_live_routes(app: web.Application) -> None:
    app.router.add_get("/live/{lesson_id}/{name}", live_file)
