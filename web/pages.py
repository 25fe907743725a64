"""Pages served by the server: static assets under /static/ and the live lesson viewer.

School networks are closed (docs/ARCHITECTURE.md, decision 4: no CDN), so every script, style and
message catalogue the pages need is served from web/static/ by this module. There is no
build step and file names carry no content hash, so assets are sent with
`Cache-Control: no-cache` and a validator (ETag): a browser revalidates on each load and
gets a cheap 304, and a deploy is never hidden behind a stale cache.

The viewer's watch token travels in the URL fragment (`/watch/7#token=...`), which a
browser never sends, so it stays out of server and proxy logs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

STATIC_ROOT = (Path(__file__).parent / "static").resolve()
STATIC_PREFIX = "/static/"

# Explicit, so a served type never depends on the host's /etc/mime.types (Debian maps
# .js to application/javascript on some versions; module scripts need a JS type).
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}

# Pages talk only to their own origin: scripts, styles, JSON and the signaling socket.
# Media arrives over WebRTC and is attached with srcObject, which CSP does not govern.
# With object storage, recordings and thumbnails come from the store's own origin through
# presigned URLs (the API answers 302), so that origin joins img-src and media-src.
# The broadcast page's hls.js feeds MSE through a blob: URL (media-src blob:) and runs its
# transmux worker from /static/vendor/hls.js/ (worker-src falls back to script-src 'self'),
# so no blob: worker is allowed.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{media}; "
    "media-src 'self' blob: mediastream:{media}; connect-src 'self' ws: wss:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'; form-action 'none'"
)
CSP: web.AppKey[str] = web.AppKey("page_csp")


def page_csp(media_origin: str | None = None) -> str:
    """The pages' policy, allowing `media_origin` (object storage) for media and images."""
    return PAGE_CSP.format(media=f" {media_origin}" if media_origin else "")


def _security_headers(response: web.StreamResponse) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"


def _resolve(relative: str) -> Path | None:
    """The file under STATIC_ROOT that `relative` names, or None (never outside the root)."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    candidate = (STATIC_ROOT / relative).resolve()
    if not candidate.is_relative_to(STATIC_ROOT) or not candidate.is_file():
        return None
    if any(part.startswith(".") for part in candidate.relative_to(STATIC_ROOT).parts):
        return None  # editor swap files, .DS_Store and the like
    return candidate


def _file_response(request: web.Request, path: Path, *, page: bool = False) -> web.StreamResponse:
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise web.HTTPNotFound()  # only types we know how to label are served
    stat = path.stat()
    tag = hashlib.blake2s(
        f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode(), digest_size=8
    ).hexdigest()
    etag = f'"{tag}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Content-Type": content_type}
    if page:
        headers["Content-Security-Policy"] = request.app.get(CSP) or page_csp()
    if etag in _if_none_match(request):
        response: web.StreamResponse = web.Response(status=304, headers=headers)
    else:
        # aiohttp sends only the headers (with the body's length) for HEAD.
        response = web.Response(body=path.read_bytes(), headers=headers)
    _security_headers(response)
    return response


def _if_none_match(request: web.Request) -> set[str]:
    raw = request.headers.get("If-None-Match", "")
    return {part.strip().removeprefix("W/") for part in raw.split(",") if part.strip()}


async def static_file(request: web.Request) -> web.StreamResponse:
    # match_info is already percent-decoded, so "%2e%2e/" arrives here as "../".
    path = _resolve(request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound()
    return _file_response(request, path)


async def watch_page(request: web.Request) -> web.StreamResponse:
    """The live lesson viewer; the page reads the lesson id from its own path."""
    path = _resolve("watch.html")
    if path is None:  # pragma: no cover - a broken install
        raise web.HTTPNotFound()
    return _file_response(request, path, page=True)


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler serving one HTML page; the page reads anything it needs from its own URL."""

    async def handler(request: web.Request) -> web.StreamResponse:
        path = _resolve(name)
        if path is None:  # pragma: no cover - a broken install
            raise web.HTTPNotFound()
        return _file_response(request, path, page=True)

    return handler


# The resource library: search (/library) and replay of one entry (/replay/{recording_id}).
# Both talk to the REST API from the browser; the recordings' files come from the same
# origin (/api/v1/library/{id}/files/{file_id}), which media-src 'self' allows.
library_page = _page("library.html")
replay_page = _page("replay.html")

# The admin pages (/admin): registers, scheduling and the live overview, one page with
# hash routes (#schools, #classrooms, #pairings, #lessons, #live). It talks to /api/v1 only.
admin_page = _page("admin.html")

# 常态化 statistics (/admin/stats): a page of its own rather than an admin section, because
# teachers may read it too (their own lessons) and its filters live in its query string.
stats_page = _page("stats.html")

# Term timetables (/admin/timetable): terms, weekly series, the week view with one-lesson
# changes, CSV import and calendar feeds; sections are hash routes (#terms, #series, #week,
# #import, #feeds), the term is in the query (?term=3).
timetable_page = _page("timetable.html")

# The live classroom pages: the teacher console of the main room (/teach/{lesson_id}) and
# the page of a receiving room (/room/{lesson_id}). Both publish the browser's camera and
# microphone through the signaling protocol. A signed-in user's page mints its join token
# through the API; an agent-style link carries one in the URL fragment like the viewer's
# (getUserMedia needs a secure context: https, or localhost).
teach_page = _page("teach.html")
room_page = _page("room.html")

# Signing in (/login?next=/teach/7, back to a path on this site only) and the home page (/),
# which lists what the signed-in user can do now and sends anyone else to /login.
login_page = _page("login.html")
home_page = _page("home.html")

# The live broadcast of a lesson (/broadcast/{lesson_id}): HLS from /live/{lesson_id}/ with
# the vendored hls.js, for anyone when the lesson is a public broadcast (名校网络课堂).
broadcast_page = _page("broadcast.html")


def setup_pages(app: web.Application, *, media_origin: str | None = None) -> None:
    app[CSP] = page_csp(media_origin)
    app.router.add_get(STATIC_PREFIX + "{path:.+}", static_file)
    app.router.add_get(r"/watch/{lesson_id:\d{1,15}}", watch_page)
    app.router.add_get("/library", library_page)
    app.router.add_get(r"/replay/{recording_id:\d{1,15}}", replay_page)
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/admin/stats", stats_page)
    app.router.add_get("/admin/timetable", timetable_page)
    app.router.add_get(r"/teach/{lesson_id:\d{1,15}}", teach_page)
    app.router.add_get(r"/room/{lesson_id:\d{1,15}}", room_page)
    app.router.add_get("/login", login_page)
    app.router.add_get("/", home_page)
    app.router.add_get(r"/broadcast/{lesson_id:\d{1,15}}", broadcast_page)
