"""The resource library's REST routes (/api/v1/library): handlers, and their ROUTES.

Every playback or download of a file is checked against the caller's rights and written to
the audit log (who or "anonymous", what, when, from where) before a byte is sent, as are
refusals, publishing, exports and deletions (docs/ARCHITECTURE.md, decision 6).

Serving: on a local folder the server streams the file itself with HTTP Range (206 with
Content-Range, 416 for ranges that are malformed or lie beyond the file), which is what a
<video> element needs to seek. On object storage the answer is a 302 to a presigned URL
valid PRESIGNED_TTL_S, so the store serves the bytes (and the Range requests) itself.
"""

from __future__ import annotations

import re
from typing import Any
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
    UserRole,
)
from recorder.library import catalogue as library
from recorder.library.schemas import (
    CommentIn,
    CommentList,
    CommentOut,
    ExportQuery,
    FileQuery,
    LibraryFacets,
    LibraryPage,
    LibraryQuery,
    RatingIn,
    RatingOut,
    RatingSummary,
    RecordingDeleted,
    RecordingDetail,
    RecordingFileOut,
    RecordingOut,
    RecordingRoom,
    RubricOut,
    SchoolRef,
)
from recorder.storage import ObjectNotFound, Storage
from signaling.appkeys import STORAGE
from signaling.errors import ErrorCode
from signaling.rest.kit import Call
from signaling.rest.openapi import ANY_USER, Route
from signaling.rest.schemas import ApiError, from_row

PRESIGNED_TTL_S = 300


def _storage(call: Call) -> Storage:
    return call.request.app[STORAGE]


# ------------------------------------------------------------------ conversions


def file_url(rec_id: int, file_id: int) -> str:
    return f"/api/v1/library/{rec_id}/files/{file_id}"


def _poster_id(rec: Recording) -> int | None:
    return next((f.id for f in rec.files if f.role == RecordingFileRole.POSTER), None)


def _recording_out(rec: Recording) -> RecordingOut:
    return from_row(RecordingOut, rec, poster_file_id=_poster_id(rec))


def _file_out(rec: Recording, f: RecordingFile) -> RecordingFileOut:
    return from_row(RecordingFileOut, f, url=file_url(rec.id, f.id))


def _comment_out(c: RecordingComment) -> CommentOut:
    return from_row(CommentOut, c)


def _rating_out(r: RecordingRating) -> RatingOut:
    return from_row(RatingOut, r)


def _rubric_out(rubric: Rubric) -> RubricOut:
    return from_row(RubricOut, rubric)


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
        call.user or audit.ANONYMOUS,
        "recording.denied",
        f"recording:{rec.id}",
        {"action": action},
        call.remote,
    )
    if call.user is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "sign in to see this recording")
    raise ApiError(403, ErrorCode.FORBIDDEN, "this recording is not yours to see")


# ------------------------------------------------------------------- handlers


async def search_library(call: Call) -> LibraryPage:
    """Search the library. Anonymous callers see published 名校网络课堂 entries only;
    signed-in users also published ones; teachers and school admins their schools' lessons;
    reviewers and admins everything."""
    q: LibraryQuery = call.query
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
        return LibraryPage(
            items=[_recording_out(r) for r in rows], total=total, limit=q.limit, offset=q.offset
        )


async def library_facets(call: Call) -> LibraryFacets:
    """The filter choices (subjects, grades, teachers, terms, schools) among the entries
    the caller may see: the same scope as search, so nothing private leaks into a list."""
    async with call.db() as db:
        facets = await library.library_facets(db, call.user)
    return LibraryFacets(
        subjects=facets.subjects,
        grades=facets.grades,
        teachers=facets.teachers,
        terms=facets.terms,
        schools=[SchoolRef(id=i, name=name) for i, name in facets.schools],
    )


async def get_recording(call: Call) -> RecordingDetail:
    """An entry with its files; comments and the rating summary for those who may read them."""
    async with call.db() as db:
        rec = await _visible(call, db, "view")
        reviews = library.can_read_reviews(call.user, rec)
        comments, summary, mine = [], None, None
        if reviews:
            comments = [_comment_out(c) for c in await library.list_comments(db, rec.id)]
            rubric = await library.rubric_for(db, rec)
            ratings = await library.list_ratings(db, rec.id)
            summary = msgspec.convert(library.rating_summary(rubric, ratings), RatingSummary)
            own = [r for r in ratings if call.user is not None and r.user_id == call.user.id]
            mine = _rating_out(own[0]) if own else None
        roster = await load_roster(db, rec.lesson_id)
        rooms = [
            RecordingRoom(
                classroom_id=r.classroom_id,
                name=r.name,
                school_name=r.school_name,
                role=r.role,  # type: ignore[arg-type]  # str column CHECKed to RoomRole
                position=r.position,
            )
            for r in (roster.rooms if roster is not None else ())
        ]
        return from_row(
            RecordingDetail,
            rec,
            poster_file_id=_poster_id(rec),
            files=[_file_out(rec, f) for f in rec.files],
            rooms=rooms,
            reviews_visible=reviews,
            comments=comments,
            ratings=summary,
            my_rating=mine,
            can_comment=library.can_comment(call.user, rec),
            can_rate=library.can_rate(call.user, rec),
        )


async def _set_published(call: Call, published: bool) -> RecordingOut:
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


async def publish_recording(call: Call) -> RecordingOut:
    """Publish: visible to every signed-in user, and to anyone if it is a 名校网络课堂."""
    return await _set_published(call, True)


async def unpublish_recording(call: Call) -> RecordingOut:
    return await _set_published(call, False)


async def delete_recording(call: Call) -> RecordingDeleted:
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
    return RecordingDeleted(id=call.id(), objects_removed=removed)


async def list_comments(call: Call) -> CommentList:
    """Timed comments in lesson order."""
    async with call.db() as db:
        rec = await _visible(call, db, "comments")
        if not library.can_read_reviews(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "comments are for reviewers and staff")
        return CommentList(
            items=[_comment_out(c) for c in await library.list_comments(db, rec.id)]
        )


async def add_comment(call: Call) -> CommentOut:
    """Comment at a moment (t_s seconds, within the recording). Reviewers, admins, and
    teachers of the schools that held the lesson."""
    body: CommentIn = call.body
    async with call.db() as db:
        rec = await _visible(call, db, "comment")
        if not library.can_comment(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "only reviewers and the lesson's teachers")
        comment = await library.add_comment(db, rec, call.me, t_s=body.t_s, text=body.text)
        return _comment_out(comment)


async def get_rubric(call: Call) -> RubricOut:
    """The rubric (评课量表) this entry is rated on."""
    async with call.db() as db:
        rec = await _visible(call, db, "rubric")
        return _rubric_out(await library.rubric_for(db, rec))


async def rate_recording(call: Call) -> RatingOut:
    """Create or replace the caller's rating: a score for every criterion."""
    body: RatingIn = call.body
    async with call.db() as db:
        rec = await _visible(call, db, "rate")
        if not library.can_rate(call.user, rec):
            raise ApiError(403, ErrorCode.FORBIDDEN, "only reviewers rate lessons")
        rating = await library.rate(db, rec, call.me, scores=body.scores, comment=body.comment)
        return _rating_out(rating)


async def export_reviews(call: Call) -> web.Response:
    """Comments and ratings as CSV (UTF-8 with BOM, opens in Excel) or JSON."""
    q: ExportQuery = call.query
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
    q: FileQuery = call.query
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
                db, call.user or audit.ANONYMOUS, action, f"recording:{rec.id}", detail, call.remote
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
                db, call.user or audit.ANONYMOUS, action, f"recording:{rec.id}", detail, call.remote
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
            db, call.user or audit.ANONYMOUS, action, f"recording:{rec.id}", detail, call.remote
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


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/library",
        search_library,
        "Search the library",
        "library",
        public=True,
        optional_auth=True,
        query=LibraryQuery,
        response=LibraryPage,
    ),
    Route(
        "GET",
        "/library/facets",
        library_facets,
        "Filter choices of the library",
        "library",
        public=True,
        optional_auth=True,
        response=LibraryFacets,
    ),
    Route(
        "GET",
        "/library/{id}",
        get_recording,
        "Get a library entry",
        "library",
        public=True,
        optional_auth=True,
        response=RecordingDetail,
    ),
    Route(
        "POST",
        "/library/{id}/publish",
        publish_recording,
        "Publish a library entry",
        "library",
        response=RecordingOut,
    ),
    Route(
        "POST",
        "/library/{id}/unpublish",
        unpublish_recording,
        "Unpublish a library entry",
        "library",
        response=RecordingOut,
    ),
    Route(
        "DELETE",
        "/library/{id}",
        delete_recording,
        "Delete a recording and every stored object",
        "library",
        response=RecordingDeleted,
    ),
    Route(
        "GET",
        "/library/{id}/comments",
        list_comments,
        "List timed comments",
        "library",
        roles=ANY_USER,
        response=CommentList,
    ),
    Route(
        "POST",
        "/library/{id}/comments",
        add_comment,
        "Comment at a moment of the lesson",
        "library",
        roles=(UserRole.REVIEWER, UserRole.TEACHER),
        body=CommentIn,
        response=CommentOut,
        status=201,
    ),
    Route(
        "GET",
        "/library/{id}/rubric",
        get_rubric,
        "The rubric (评课量表) of an entry",
        "library",
        roles=ANY_USER,
        response=RubricOut,
    ),
    Route(
        "PUT",
        "/library/{id}/ratings/mine",
        rate_recording,
        "Rate an entry on its rubric",
        "library",
        roles=(UserRole.REVIEWER,),
        body=RatingIn,
        response=RatingOut,
    ),
    Route(
        "GET",
        "/library/{id}/export",
        export_reviews,
        "Export comments and ratings",
        "library",
        roles=ANY_USER,
        query=ExportQuery,
        media="text/csv",
    ),
    Route(
        "GET",
        "/library/{id}/files/{file_id}",
        play_file,
        "Play or download a recording file",
        "library",
        public=True,
        optional_auth=True,
        query=FileQuery,
        media="application/octet-stream",
        errors=(206, 302, 416),
    ),
)
