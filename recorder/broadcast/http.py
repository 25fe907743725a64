"""Serves live broadcasts over plain HTTP: GET /live/{lesson_id}/index.m3u8 and segments,
and GET /live/{lesson_id}/lesson.json, what the viewer page (/broadcast/{id}) shows.

Plain files, so any number of viewers costs the media router nothing; a cache or CDN in
front works as for any HLS origin (the playlist says no-cache, segments never change).

Who may watch: a public broadcast (a `famous_school` lesson marked broadcast) anyone,
without signing in; any other broadcast lesson whoever may read the lesson (the lesson read
rule of signaling/rest/auth.py: admins, reviewers, staff of a school taking part, a device of a
classroom in it), signed in by the pages' session cookie (same-origin requests carry it,
hls.js included) or an API bearer token (scripts; hls.js can send it with `xhrSetup`).
Anyone else signed in gets 403. A lesson that is not broadcast has no playlist: 404,
whatever files might exist.

The pictures and voices of a private broadcast are those of minors, so each signed-in
viewer's first access to a lesson is audited (`broadcast.watch`; a refusal as
`permission.denied`), once per viewer and lesson in this process, not per segment. The
verdict is remembered per viewer and lesson for VIEWER_TTL, so a segment costs the
credential's lookup and a dictionary hit, nothing more.

lesson.json exists because the REST API's GET /lessons/{id} is for school staff: an
anonymous viewer of a public broadcast may not read it, yet needs the title, the teacher,
the school, the planned start and whether the broadcast is live, over or replayable. It
tells exactly that and nothing more (no rooms, no accounts), under the same rule as the
playlist, so it never reveals a lesson the caller could not watch.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime

import msgspec
import sqlalchemy as sa
from aiohttp import web

from classroom import audit
from classroom.lessons import get_lesson
from classroom.models import Lesson, LessonState, Recording, RecordingState, RoomRole, User
from recorder.broadcast.hls_live import PLAYLIST_NAME, SEGMENT_PATTERN
from recorder.broadcast.live import BROADCASTS, Access, Broadcasts, is_public, live_path
from recorder.library.catalogue import can_view
from signaling.appkeys import DB
from signaling.errors import ErrorCode
from signaling.rest.auth import Credential, can_read_lesson, current_credential, optional_user
from signaling.rest.schemas import ApiError

logger = logging.getLogger(__name__)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
LESSON_NAME = "lesson.json"
_LESSON_ID = re.compile(r"^[1-9]\d{0,17}$")
# A public broadcast may have thousands of viewers, each page asking every few seconds
# whether the lesson started or ended: the database answers once per lesson this often.
LESSON_FACTS_TTL = 2.0  # s
# How long a private broadcast viewer's verdict is reused before the lesson's rooms are
# asked again (a pairing or a role changed); a disabled account ends at once regardless.
VIEWER_TTL = 30.0  # s
MAX_VIEWERS = 100_000  # remembered (viewer, lesson) verdicts; beyond, forgotten at once


class BroadcastLessonOut(msgspec.Struct, kw_only=True):
    """GET /live/{lesson_id}/lesson.json: what a broadcast viewer is shown."""

    lesson_id: int
    title: str
    kind: str
    subject: str
    grade: str
    teacher_name: str
    school: str  # the main classroom's school
    planned_start: datetime
    planned_end: datetime
    started_at: datetime | None
    ended_at: datetime | None
    lesson_state: str  # scheduled | open | live | ended | cancelled
    public: bool
    # waiting | live | stalled | unsupported_codec | ended, as recorder/broadcast/live.py
    # says; None while this server has no broadcaster for the lesson (no room joined yet,
    # or it ended before this process started).
    broadcast_state: str | None
    playlist_url: str
    segment_target_s: float | None
    replay_url: str | None  # /replay/{id} once the recording is published and ready


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


@dataclass
class _Verdict:
    """Whether a signed-in viewer may watch a private broadcast, and what was audited."""

    allowed: bool
    checked_at: float  # monotonic
    watch_audited: bool = False
    refusal_audited: bool = False


VIEWERS = web.AppKey("broadcast_viewers", dict[tuple[int, int], _Verdict])


async def _check_watcher(
    access: Access | None, lesson_id: int, request: web.Request, lesson: Lesson | None = None
) -> User | None:
    """Raise 404 for a lesson that is not broadcast, 401 for an anonymous caller of a
    private one, 403 for a signed-in one who may not read the lesson; the one rule for
    the playlist, its segments and lesson.json. Returns the private broadcast's viewer (a
    public one's is not looked up: None)."""
    if access is None or not access.broadcast:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"lesson {lesson_id} is not broadcast")
    if access.public:
        return None
    credential = await current_credential(request)  # the cookie or a bearer token; else 401
    return await _check_private_viewer(request, credential, lesson_id, lesson)


async def _check_private_viewer(
    request: web.Request, credential: Credential, lesson_id: int, lesson: Lesson | None
) -> User:
    """The lesson read rule, remembered per viewer and lesson for VIEWER_TTL, and the
    viewer's first access (or first refusal) audited. On the segment path: keep it cheap."""
    user = credential.user
    viewers = request.app[VIEWERS]
    key = (lesson_id, user.id)
    now = time.monotonic()
    verdict = viewers.get(key)
    if verdict is None or now - verdict.checked_at >= VIEWER_TTL:
        if lesson is None:
            lesson = (await _lesson_facts(request, lesson_id)).lesson
        allowed = lesson is not None and can_read_lesson(user, lesson)
        if verdict is None:
            if len(viewers) >= MAX_VIEWERS:
                viewers.clear()  # some viewers are audited twice; memory stays bounded
            verdict = viewers[key] = _Verdict(allowed, now)
        else:
            verdict.allowed, verdict.checked_at = allowed, now
    if verdict.allowed and not verdict.watch_audited:
        verdict.watch_audited = True  # before the write: a concurrent request skips it
        await _audit(request, credential, "broadcast.watch", lesson_id, {})
    if verdict.allowed:
        return user
    reason = f"lesson {lesson_id} is not one you may watch"
    if not verdict.refusal_audited:
        verdict.refusal_audited = True
        await _audit(request, credential, "permission.denied", lesson_id, {"reason": reason})
    raise ApiError(403, ErrorCode.FORBIDDEN, reason)


async def _audit(
    request: web.Request,
    credential: Credential,
    action: str,
    lesson_id: int,
    detail: dict[str, str],
) -> None:
    detail = {
        "route": f"GET /live/{lesson_id}/{request.match_info.get('name', LESSON_NAME)}",
        "via": credential.kind,
        **detail,
    }
    try:
        async with request.app[DB]() as db:
            await audit.record(
                db, credential.user, action, f"lesson:{lesson_id}", detail, request.remote
            )
    except Exception:  # the answer stands even if its trace cannot be written
        logger.exception("could not audit %s of lesson %s", action, lesson_id)


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
    try:
        await _check_watcher(access, lesson_id, request)
    except ApiError as exc:
        return _error(exc)
    assert access is not None
    path = broadcasts.directory(lesson_id) / name
    visibility = "public" if access.public else "private"
    headers = {"Access-Control-Allow-Origin": "*"} if access.public else {}
    if is_playlist:
        try:
            body = path.read_bytes()  # small, and replaced atomically: read it whole
        except FileNotFoundError:
            return _error(
                ApiError(
                    404, ErrorCode.NOT_FOUND, f"lesson {lesson_id}'s broadcast has not started"
                )
            )
        headers["Cache-Control"] = "no-cache"
        return web.Response(body=body, content_type=PLAYLIST_TYPE, headers=headers)
    if not path.is_file():
        return _error(ApiError(404, ErrorCode.NOT_FOUND, f"no segment {name}"))
    headers["Cache-Control"] = f"{visibility}, max-age=300"  # a segment never changes
    headers["Content-Type"] = SEGMENT_TYPE
    return web.FileResponse(path, headers=headers)


# ------------------------------------------------------------------ lesson.json


@dataclass(frozen=True)
class _LessonFacts:
    """What the database says about a broadcast lesson, shared by all its viewers."""

    fetched_at: float
    lesson: Lesson | None
    school: str
    recording: Recording | None  # detached; only its loaded columns are read


LESSON_FACTS = web.AppKey("broadcast_lesson_facts", dict[int, _LessonFacts])


async def _lesson_facts(request: web.Request, lesson_id: int) -> _LessonFacts:
    cache = request.app[LESSON_FACTS]
    known = cache.get(lesson_id)
    if known is not None and time.monotonic() - known.fetched_at < LESSON_FACTS_TTL:
        return known
    async with request.app[DB]() as db:
        lesson = await get_lesson(db, lesson_id)
        school = ""
        recording = None
        if lesson is not None:
            main = next((r for r in lesson.rooms if r.role == RoomRole.MAIN), None)
            school = main.classroom.school.name if main is not None else ""
            if lesson.state == LessonState.ENDED:
                recording = await db.scalar(
                    sa.select(Recording).where(Recording.lesson_id == lesson_id)
                )
    if len(cache) > 10_000:  # lessons come and go; never let the cache grow without end
        cache.clear()
    facts = _LessonFacts(time.monotonic(), lesson, school, recording)
    cache[lesson_id] = facts
    return facts


def _replay_url(recording: Recording | None, user: User | None) -> str | None:
    if recording is None or not recording.published:
        return None
    if recording.state != RecordingState.READY or not can_view(user, recording):
        return None
    return f"/replay/{recording.id}"


async def lesson_info(request: web.Request) -> web.Response:
    """What the broadcast page shows of a lesson, if the caller may watch it."""
    raw_id = request.match_info["lesson_id"]
    if not _LESSON_ID.match(raw_id):
        return _error(ApiError(404, ErrorCode.NOT_FOUND, "no such broadcast"))
    lesson_id = int(raw_id)
    broadcasts = request.app[BROADCASTS]
    try:
        facts = await _lesson_facts(request, lesson_id)
        lesson = facts.lesson
        access = None
        if lesson is not None:
            access = broadcasts.remember_access(lesson_id, bool(lesson.broadcast), lesson.kind)
        user = await _check_watcher(access, lesson_id, request, lesson)
        if user is None:  # a public broadcast: a signed-in viewer may see more replays
            user = await optional_user(request)
    except ApiError as exc:
        return _error(exc)
    assert lesson is not None and access is not None
    state = broadcasts.state(lesson_id)
    body = BroadcastLessonOut(
        lesson_id=lesson.id,
        title=lesson.title,
        kind=lesson.kind,
        subject=lesson.subject,
        grade=lesson.grade,
        teacher_name=lesson.teacher_name,
        school=facts.school,
        planned_start=lesson.planned_start,
        planned_end=lesson.planned_end,
        started_at=lesson.started_at,
        ended_at=lesson.ended_at,
        lesson_state=lesson.state,
        public=is_public(lesson.kind, bool(lesson.broadcast)),
        broadcast_state=state.state if state is not None else None,
        playlist_url=live_path(lesson_id),
        segment_target_s=state.segment_target_s if state is not None else None,
        replay_url=_replay_url(facts.recording, user),
    )
    headers = {"Cache-Control": "no-cache" if access.public else "private, no-cache"}
    if access.public:
        headers["Access-Control-Allow-Origin"] = "*"
    return web.Response(
        body=msgspec.json.encode(body), content_type="application/json", headers=headers
    )


def add_live_routes(app: web.Application) -> None:
    app[LESSON_FACTS] = {}
    app[VIEWERS] = {}
    # lesson.json first: the generic route below would take it for a file name.
    app.router.add_get("/live/{lesson_id}/" + LESSON_NAME, lesson_info)
    app.router.add_get("/live/{lesson_id}/{name}", live_file)
