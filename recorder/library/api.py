"""REST handlers of the resource library (/api/v1/library); the routes are in signaling/api.py.

Every playback or download of a file is checked against the caller's rights and written to
the audit log (who or "anonymous", what, when, from where) before a byte is sent, as are
refusals, publishing, exports and deletions (DESIGN decision 6).

Serving: on a local folder the server streams the file itself with HTTP Range (206 with
Content-Range, 416 for ranges that are malformed or lie beyond the file), which is what a
<video> element needs to seek. On object storage the answer is a 302 to a presigned URL
valid PRESIGNED_TTL_S, so the store serves the bytes (and the Range requests) itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from classroom import audit
from classroom.lessons import load_roster
from classroom.models import (
    Recording,
    RecordingComment,
    RecordingFile,
    RecordingFileRole,
    RecordingRating,
    Rubric,
)
from recorder.library import catalogue as library
from recorder.storage import ObjectNotFound, Storage, storage_from_settings
from signaling import api_schemas as s
from signaling.api_schemas import ApiError
from signaling.appkeys import SETTINGS
from signaling.errors import ErrorCode

if TYPE_CHECKING:
    from signaling.api import Call

STORAGE: web.AppKey[Storage] = web.AppKey("library_storage")
PRESIGNED_TTL_S = 300
ANONYMOUS = "anonymous"


def setup_library(app: web.Application) -> None:
    """The library's storage backend, from the app's settings, closed with the app."""
    if STORAGE not in app and SETTINGS in app:
        app[STORAGE] = storage_from_settings(app[SETTINGS])

    async def close_storage(app: web.Application) -> None:
        if STORAGE in app:
            await app[STORAGE].close()

    app.on_cleanup.append(close_storage)


def _storage(call: Call) -> Storage:
    return call.request.app[STORAGE]


# ------------------------------------------------------------------ conversions


def file_url(rec_id: int, file_id: int) -> str:
    return f"/api/v1/library/{rec_id}/files/{file_id}"


def _recording_fields(rec: Recording) -> dict[str, Any]:
    poster = next((f.id for f in rec.files if f.role == RecordingFileRole.POSTER), None)
    return {
        "id": rec.id,
        "lesson_id": rec.lesson_id,
        "title": rec.title,
        "kind": rec.kind,
        "subject": rec.subject,
        "grade": rec.grade,
        "teacher_name": rec.teacher_name,
        "main_school_id": rec.main_school_id,
        "main_school": rec.main_school,
        "receiving_schools": [
            s.SchoolRef(id=x["id"], name=x["name"]) for x in rec.receiving_schools
        ],
        "started_at": rec.started_at,
        "duration_s": rec.duration_s,
        "term": rec.term,
        "state": rec.state,
        "published": rec.published,
        "poster_file_id": poster,
    }


def _recording_out(rec: Recording) -> s.RecordingOut:
    return s.RecordingOut(**_recording_fields(rec))


def _file_out(rec: Recording, f: RecordingFile) -> s.RecordingFileOut:
    return s.RecordingFileOut(
        id=f.id,
        role=f.role,  # type: ignore[arg-type]
        classroom_id=f.classroom_id,
        mime=f.mime,
        size=f.size,
        sha256=f.sha256,
        duration_s=f.duration_s,
        url=file_url(rec.id, f.id),
        offset_s=f.offset_s,
    )


def _comment_out(c: RecordingComment) -> s.CommentOut:
    return s.CommentOut(
        id=c.id,
        user_id=c.user_id,
        author_name=c.author_name,
        t_s=c.t_s,
        text=c.text,
        created_at=c.created_at,
    )


def _rating_out(r: RecordingRating) -> s.RatingOut:
    return s.RatingOut(
        id=r.id,
        user_id=r.user_id,
        author_name=r.author_name,
        rubric_id=r.rubric_id,
        scores=r.scores,
        total=r.total,
        comment=r.comment,
        updated_at=r.updated_at,
    )


def _rubric_out(rubric: Rubric) -> s.RubricOut:
    return s.RubricOut(
        id=rubric.id,
        name=rubric.name,
        criteria=[s.CriterionOut(**c) for c in rubric.criteria],
    )


# --------------------------------------------------------------------- checks


async def _visible(call: Call, db: Any, action: str) -> Recording:
    """The entry named in the path, if the caller may see it; a refusal is audited."""
    rec = await library.get_recording(db, call.id())
    if rec is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"no recording {call.id()}")
    if not library.can_view(call.user, rec):
        await _deny(call, db, rec, action)
    return rec


async def _deny(call: Call, db: Any, rec: Recording, action: str) -> None:
    await audit.record(
        db,
        call.user or ANONYMOUS,
        "recording.denied",
        f"recording:{rec.id}",
        {"action": action},
        call.remote,
    )
    if call.user is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "sign in to see this recording")
    raise ApiError(403, ErrorCode.FORBIDDEN, "this recording is not yours to see")


# ------------------------------------------------------------------- handlers


async def search_library(call: Call) -> s.LibraryPage:
    """Search the library. Anonymous callers see published 名校网络课堂 entries only;
    signed-in users also published ones; teachers and school admins their schools' lessons;
    reviewers and admins everything."""
    q: s.LibraryQuery = call.query
    search = library.LibrarySearch(
        q=q.q,
        subject=q.subject,
        grade=q.grade,
        kind=q.kind,
        teacher=q.teacher,
        school_id=q.school_id,
        start=q.start,
        end=q.end,
        term=q.term,
        published=q.published,
        state=q.state,
        sort=q.sort,
        limit=q.limit,
        offset=q.offset,
    )
    async with call.db() as db:
        rows, total = await library.search_recordings(db, search, call.user)
        return s.LibraryPage(
            items=[_recording_out(r) for r in rows], total=total, limit=q.limit, offset=q.offset
        )


async def library_facets(call: Call) -> s.LibraryFacets:
    """The filter choices (subjects, grades, teachers, terms, schools) among the entries
    the caller may see: the same scope as search, so nothing private leaks into a list."""
    async with call.db() as db:
        facets = await library.library_facets(db, call.user)
    return s.LibraryFacets(
        subjects=facets.subjects,
        grades=facets.grades,
        teachers=facets.teachers,
        terms=facets.terms,
        schools=[s.SchoolRef(id=i, name=name) for i, name in facets.schools],
    )


async def get_recording(call: Call) -> s.RecordingDetail:
    """An entry with its files; comments and the rating summary for those who may read them."""
    async with call.db() as db:
        rec = await _visible(call, db, "view")
        reviews = library.can_read_reviews(call.user, rec)
        comments, summary, mine = [], None, None
        if reviews:
            comments = [_comment_out(c) for c in await library.list_comments(db, rec.id)]
            rubric = await library.rubric_for(db, rec)
            ratings = await library.list_ratings(db, rec.id)
            summary = msgspec.convert(library.rating_summary(rubric, ratings), s.RatingSummary)
            own = [r for r in ratings if call.user is not None and r.user_id == call.user.id]
            mine = _rating_out(own[0]) if own else None
        roster = await load_roster(db, rec.lesson_id)
        rooms = [
            s.RecordingRoom(
                classroom_id=r.classroom_id,
                name=r.name,
                school_name=r.school_name,
                role=r.role,
                position=r.position,
            )  # type: ignore[arg-type]
            for r in (roster.rooms if roster is not None else ())
        ]
        return s.RecordingDetail(
            **_recording_fields(rec),
            files=[_file_out(rec, f) for f in rec.files],
            rooms=rooms,
            reviews_visible=reviews,
            comments=comments,
            ratings=summary,
            my_rating=mine,
            can_comment=library.can_comment(call.user, rec),
            can_rate=library.can_rate(call.user, rec),
        )


async def _set_published(call: Call, published: bool) -> s.RecordingOut:
    async with call.db() as db:
        rec = await library.set_published(db, call.id(), published)
        await audit.record(
            db,
            call.me,
            "recording.publish" if published else "recording.unpublish",
            f"recording:{rec.id}",
            {"lesson_id": rec.lesson_id},
            call.remote,
        )
        return _recording_out(rec)


async def publish_recording(call: Call) -> s.RecordingOut:
    """Publish: visible to every signed-in user, and to anyone if it is a 名校网络课堂."""
    return await _set_published(call, True)


async def unpublish_recording(call: Call) -> s.RecordingOut:
    return await _set_published(call, False)


async def delete_recording(call: Call) -> s.RecordingDeleted:
    """Delete an entry: every stored object, its files, comments and ratings. Audited."""
    async with call.db() as db:
        rec = await library.get_recording(db, call.id())
        if rec is None:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"no recording {call.id()}")
        detail = {"lesson_id": rec.lesson_id, "title": rec.title, "files": len(rec.files)}
        removed = await library.delete_recording(db, _storage(call), rec.id)
        await audit.record(
            db,
            call.me,
            "recording.delete",
            f"recording:{call.id()}",
            {**detail, "objects_removed": removed},
            call.remote,
        )
    return s.RecordingDeleted(id=call.id(), objects_removed=removed)


async def list_comments(call: Call) -> s.CommentList:
    """Timed comments in lesson order."""
    async with call.db() as db:
        rec = await _visible(call, db, "comments")
        if not library.can_read_reviews(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "comments are for reviewers and staff")
        return s.CommentList(
            items=[_comment_out(c) for c in await library.list_comments(db, rec.id)]
        )


async def add_comment(call: Call) -> s.CommentOut:
    """Comment at a moment (t_s seconds, within the recording). Reviewers, admins, and
    teachers of the schools that held the lesson."""
    body: s.CommentIn = call.body
    async with call.db() as db:
        rec = await _visible(call, db, "comment")
        if not library.can_comment(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "only reviewers and the lesson's teachers")
        comment = await library.add_comment(db, rec, call.me, t_s=body.t_s, text=body.text)
        return _comment_out(comment)


async def get_rubric(call: Call) -> s.RubricOut:
    """The rubric (评课量表) this entry is rated on."""
    async with call.db() as db:
        rec = await _visible(call, db, "rubric")
        return _rubric_out(await library.rubric_for(db, rec))


async def rate_recording(call: Call) -> s.RatingOut:
    """Create or replace the caller's rating: a score for every criterion."""
    body: s.RatingIn = call.body
    async with call.db() as db:
        rec = await _visible(call, db, "rate")
        if not library.can_rate(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "only reviewers rate lessons")
        rating = await library.rate(db, rec, call.me, scores=body.scores, comment=body.comment)
        return _rating_out(rating)


async def export_reviews(call: Call) -> web.Response:
    """Comments and ratings as CSV (UTF-8 with BOM, opens in Excel) or JSON."""
    q: s.ExportQuery = call.query
    async with call.db() as db:
        rec = await _visible(call, db, "export")
        if not library.can_read_reviews(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "reviews are for reviewers and staff")
        if q.format == "csv":
            data, mime = await library.export_csv(db, rec), "text/csv"
        else:
            data, mime = await library.export_json(db, rec), "application/json"
        await audit.record(
            db,
            call.me,
            "recording.export",
            f"recording:{rec.id}",
            {"format": q.format},
            call.remote,
        )
    name = f"recording-{rec.id}-reviews.{q.format}"
    return web.Response(
        body=data,
        charset="utf-8",
        content_type=mime,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# ------------------------------------------------------------------- playback


_URI_ATTR = re.compile(r'URI="([^"]+)"')


def rewrite_playlist(text: str, playlist_key: str, url_of_key: dict[str, str]) -> str:
    """Point an HLS playlist's relative segment URIs at their library file URLs.

    Segments are library files with ids of their own, so "seg-001.m4s" next to the
    playlist would not resolve; each one becomes /api/v1/library/{id}/files/{file_id},
    which checks rights and audits like any other file. Unknown URIs are left alone.
    """
    folder = playlist_key.rsplit("/", 1)[0]

    def resolve(uri: str) -> str:
        if "://" in uri or uri.startswith("/"):
            return uri
        parts: list[str] = folder.split("/")
        for piece in uri.split("?")[0].split("/"):
            if piece == "..":
                parts = parts[:-1]
            elif piece not in ("", "."):
                parts.append(piece)
        return url_of_key.get("/".join(parts), uri)

    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            line = resolve(stripped)
        elif stripped.startswith("#") and 'URI="' in stripped:
            line = _URI_ATTR.sub(lambda m: f'URI="{resolve(m[1])}"', line)
        lines.append(line)
    return "\n".join(lines) + "\n"


async def _playlist(storage: Storage, rec: Recording, f: RecordingFile) -> bytes:
    size = (await storage.stat(f.key)).size
    text = b"".join([c async for c in storage.open_range(f.key, 0, size)]).decode()
    urls = {x.key: file_url(rec.id, x.id) for x in rec.files}
    return rewrite_playlist(text, f.key, urls).encode()


class RangeNotSatisfiable(Exception):
    pass


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) asked for by a single-range header; None to send the whole file.

    Several ranges at once are answered with the whole file (allowed by RFC 9110, and no
    player asks for them); a malformed range or one beyond the end raises.
    """
    if header is None:
        return None
    header = header.strip().replace(" ", "")
    if "," in header and header.startswith("bytes="):
        return None
    match = _RANGE.match(header)
    if match is None or (not match[1] and not match[2]):
        raise RangeNotSatisfiable(header)
    first, last = match[1], match[2]
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size
    start = int(first)
    end = size if not last else int(last) + 1
    if start >= size or end <= start:
        raise RangeNotSatisfiable(header)
    return start, min(end, size)


async def play_file(call: Call) -> web.StreamResponse:
    """Play or download one file of an entry: checked, audited, then streamed with Range
    support (local storage) or redirected to a presigned URL (object storage)."""
    q: s.FileQuery = call.query
    action = "recording.download" if q.download else "recording.play"
    storage = _storage(call)
    file_id = call.id("file_id")
    async with call.db() as db:
        rec = await _visible(call, db, action)
        f = next((x for x in rec.files if x.id == file_id), None)
        if f is None:
            raise ApiError(404, ErrorCode.NOT_FOUND, f"recording {rec.id} has no file {file_id}")
        detail: dict[str, Any] = {
            "file_id": f.id,
            "role": f.role,
            "lesson_id": rec.lesson_id,
            "backend": storage.name,
        }
        if f.role == RecordingFileRole.HLS_PLAYLIST:
            try:
                body = await _playlist(storage, rec, f)
            except ObjectNotFound:
                raise ApiError(
                    404, ErrorCode.STORAGE_MISSING, f"file {f.id} is missing from storage"
                ) from None
            await audit.record(
                db, call.user or ANONYMOUS, action, f"recording:{rec.id}", detail, call.remote
            )
            return web.Response(
                body=body, content_type=f.mime.split(";")[0], headers={"Cache-Control": "no-cache"}
            )
        # Small JSON files (chapters, thumbnail index) are read by the page's script, and a
        # cross-origin fetch would need CORS on the bucket: serve those ourselves.
        url = None
        if not f.mime.startswith("application/json"):
            url = await storage.presigned_url(f.key, PRESIGNED_TTL_S, mime=f.mime)
        if url is not None:
            await audit.record(
                db, call.user or ANONYMOUS, action, f"recording:{rec.id}", detail, call.remote
            )
            return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
        try:
            size = (await storage.stat(f.key)).size
        except ObjectNotFound:
            raise ApiError(
                404, ErrorCode.STORAGE_MISSING, f"file {f.id} is missing from storage"
            ) from None
        header = call.request.headers.get("Range")
        try:
            window = parse_range(header, size)
        except RangeNotSatisfiable:
            return web.Response(
                status=416,
                body=msgspec.json.encode(
                    ApiError(416, ErrorCode.RANGE_NOT_SATISFIABLE, f"bad range {header!r}").body()
                ),
                content_type="application/json",
                headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
            )
        detail["range"] = header
        await audit.record(
            db, call.user or ANONYMOUS, action, f"recording:{rec.id}", detail, call.remote
        )
    start, end = window if window is not None else (0, size)
    response = web.StreamResponse(status=206 if window is not None else 200)
    response.content_type = f.mime
    response.content_length = end - start
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = f'"{f.sha256}"'
    response.headers["Cache-Control"] = "private, no-cache"
    if window is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if q.download:
        name = f.key.rsplit("/", 1)[-1]
        response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    await response.prepare(call.request)
    try:
        async for chunk in storage.open_range(f.key, start, end):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the player seeked elsewhere and closed this request: normal, not an error
    return response
