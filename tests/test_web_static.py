"""The pages and their assets are served with the right types, and nothing else is."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from web import pages

STATIC = Path(pages.__file__).parent / "static"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application()
    pages.setup_pages(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def raw_get(client: TestClient, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as written: an HTTP client library would normalise
    `..` away before it ever reached the server, which is not what an attacker does."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_watch_page_is_html_with_a_strict_policy(client: TestClient) -> None:
    response = await client.get("/watch/42")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    body = await response.text()
    assert '<script type="module" src="/static/js/watch.js">' in body


@pytest.mark.parametrize(
    "path",
    ["/watch/abc", "/watch/", "/watch/1/x", "/watch/-1", "/teach/abc", "/teach/", "/room/1/x",
     "/room/-1"],
)
async def test_watch_page_needs_a_numeric_lesson(client: TestClient, path: str) -> None:
    assert (await client.get(path)).status == 404


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/protocol.js", "text/javascript; charset=utf-8"),
        ("/static/js/watch.js", "text/javascript; charset=utf-8"),
        ("/static/css/app.css", "text/css; charset=utf-8"),
        ("/static/i18n/zh-CN.json", "application/json; charset=utf-8"),
        ("/static/i18n/en.json", "application/json; charset=utf-8"),
        ("/static/watch.html", "text/html; charset=utf-8"),
        ("/static/js/admin.js", "text/javascript; charset=utf-8"),
        ("/static/js/admin_api.js", "text/javascript; charset=utf-8"),
        ("/static/admin.html", "text/html; charset=utf-8"),
        ("/static/js/teach.js", "text/javascript; charset=utf-8"),
        ("/static/js/room.js", "text/javascript; charset=utf-8"),
        ("/static/js/quality.js", "text/javascript; charset=utf-8"),
        ("/static/teach.html", "text/html; charset=utf-8"),
        ("/static/room.html", "text/html; charset=utf-8"),
        ("/static/library.html", "text/html; charset=utf-8"),
        ("/static/replay.html", "text/html; charset=utf-8"),
        ("/static/js/api.js", "text/javascript; charset=utf-8"),
        ("/static/js/library.js", "text/javascript; charset=utf-8"),
        ("/static/js/replay.js", "text/javascript; charset=utf-8"),
        ("/static/js/live_page.js", "text/javascript; charset=utf-8"),
        ("/static/js/live_media.js", "text/javascript; charset=utf-8"),
        ("/static/js/live_local.js", "text/javascript; charset=utf-8"),
        ("/static/js/admin_ui.js", "text/javascript; charset=utf-8"),
        ("/static/js/dom.js", "text/javascript; charset=utf-8"),
        ("/static/js/admin_core.js", "text/javascript; charset=utf-8"),
        ("/static/js/admin_rows.js", "text/javascript; charset=utf-8"),
        ("/static/js/admin_lessons.js", "text/javascript; charset=utf-8"),
        ("/static/js/admin_live.js", "text/javascript; charset=utf-8"),
    ],
)
async def test_assets_carry_their_content_type(
    client: TestClient, path: str, content_type: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (await response.read()) == (STATIC / path.removeprefix("/static/")).read_bytes()


async def test_assets_are_revalidated_with_an_etag(client: TestClient) -> None:
    first = await client.get("/static/js/protocol.js")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "no-cache"
    again = await client.get("/static/js/protocol.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    other = await client.get("/static/js/protocol.js", headers={"If-None-Match": '"nope"'})
    assert other.status == 200


async def test_head_gives_the_length_without_a_body(client: TestClient) -> None:
    response = await client.head("/static/css/app.css")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == (STATIC / "css/app.css").stat().st_size


@pytest.mark.parametrize(
    "target",
    [
        "/static/../pyproject.toml",
        "/static/../../pyproject.toml",
        "/static/%2e%2e/pages.py",
        "/static/%2e%2e%2fpages.py",
        "/static/..%2f..%2fpyproject.toml",
        "/static/js/../../pages.py",
        "/static/js/..%5c..%5cpages.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/js/protocol.js%00.png",
    ],
)
async def test_traversal_finds_nothing(client: TestClient, target: str) -> None:
    status, body = await raw_get(client, target)
    assert status == 404, target
    assert b"[project]" not in body and b"setup_pages" not in body and b"root:" not in body


@pytest.fixture
def odd_static_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "notes.py").write_text("secret = 1\n")
    (tmp_path / ".hidden.js").write_text("secret\n")
    (tmp_path / "ok.js").write_text("export {};\n")
    monkeypatch.setattr(pages, "STATIC_ROOT", tmp_path.resolve())
    return tmp_path


@pytest.mark.usefixtures("odd_static_root")
async def test_only_known_types_and_no_hidden_files(client: TestClient) -> None:
    assert (await client.get("/static/ok.js")).status == 200
    assert (await client.get("/static/notes.py")).status == 404
    assert (await client.get("/static/.hidden.js")).status == 404
    assert (await client.get("/static/missing.js")).status == 404
    assert (await client.get("/static/")).status == 404


def test_catalogues_agree_and_cover_every_key_the_viewer_uses() -> None:
    zh = json.loads((STATIC / "i18n/zh-CN.json").read_text())
    en = json.loads((STATIC / "i18n/en.json").read_text())
    assert zh.keys() == en.keys()
    html = (STATIC / "watch.html").read_text()
    used = set(re.findall(r'data-i18n="([\w.]+)"', html))
    # watch.js and the live pages' shared modules it draws with
    for script in ("js/watch.js", "js/live_page.js", "js/live_media.js"):
        used |= set(re.findall(r"\bt\('([\w.]+)'", (STATIC / script).read_text()))
    assert used, "the viewer uses no catalogue keys?"
    assert used <= zh.keys(), used - zh.keys()
    # Keys built at run time: lesson states, roles and error codes shown to users.
    for state in ("scheduled", "open", "live", "ended"):
        assert f"lesson.state.{state}" in zh
    for role in ("main", "receiving"):
        assert f"role.{role}" in zh


IMPORT = re.compile(r"import\s*\{([^}]*)\}\s*from\s*'\./([\w.]+)'")
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function\*?|const|let|class)\s+([\w$]+)", re.M)
REEXPORT = re.compile(r"^export\s*\{([^}]*)\}", re.M)


def test_every_module_import_names_an_export_of_a_module_that_exists() -> None:
    """The pages are plain ES modules, split by section: a name imported from a sibling
    module that does not export it stops the whole page before it draws anything."""
    folder = STATIC / "js"
    for module in sorted(folder.glob("*.js")):
        for names, target in IMPORT.findall(module.read_text()):
            assert (folder / target).is_file(), f"{module.name} imports missing {target}"
            text = (folder / target).read_text()
            exported = set(EXPORT.findall(text))
            for group in REEXPORT.findall(text):
                parts = (part for part in group.split(",") if part.strip())
                exported |= {part.split(" as ")[-1].strip() for part in parts}
            for name in names.split(","):
                name = name.split(" as ")[0].strip()
                if name:
                    assert name in exported, (
                        f"{module.name} imports {name}, which {target} does not export"
                    )


# URIs that name something without being fetched: hls.js compares an emsg box's scheme
# with this one (ID3 timed metadata), it never requests it.
NOT_FETCHED = ("https://aomedia.org/emsg/ID3",)


def test_pages_fetch_nothing_from_other_origins() -> None:
    """School networks are closed: no CDN, no web fonts, no analytics."""
    for path in STATIC.rglob("*"):
        # (web/static/vendor/hls.js/ is a folder whose name ends in .js)
        if path.is_file() and path.suffix in {".html", ".js", ".mjs", ".css"}:
            text = path.read_text()
            for uri in NOT_FETCHED:
                text = text.replace(uri, "")
            assert not re.search(r"https?://(?!localhost)", text), path
            assert "@import url(" not in text, path


@pytest.mark.parametrize(
    ("path", "script"),
    [("/library", "library.js"), ("/replay/7", "replay.js"), ("/replay/123456789", "replay.js")],
)
async def test_library_pages_are_html_with_the_same_strict_policy(
    client: TestClient, path: str, script: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == pages.page_csp()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.text()
    assert f'<script type="module" src="/static/js/{script}">' in body


@pytest.mark.parametrize("path", ["/replay/abc", "/replay/", "/replay/1/x", "/library/1"])
async def test_replay_page_needs_a_numeric_recording(client: TestClient, path: str) -> None:
    assert (await client.get(path)).status == 404


@pytest.mark.parametrize(
    ("html", "scripts"),
    [
        ("library.html", ("js/library.js", "js/api.js")),
        ("replay.html", ("js/replay.js", "js/api.js")),
    ],
)
def test_library_pages_use_only_catalogue_keys(html: str, scripts: tuple[str, ...]) -> None:
    zh = json.loads((STATIC / "i18n/zh-CN.json").read_text())
    text = (STATIC / html).read_text()
    used = set(re.findall(r'data-i18n(?:-placeholder|-title)?="([\w.]+)"', text))
    for script in scripts:
        used |= set(re.findall(r"\bt\('([\w.]+)'", (STATIC / script).read_text()))
    assert used, f"{html} uses no catalogue keys?"
    assert used <= zh.keys(), used - zh.keys()
    for kind in ("dedicated", "famous_teacher", "famous_school"):
        assert f"kind.{kind}" in zh
    for state in ("processing", "ready", "failed"):
        assert f"library.state.{state}" in zh
