"""Library storage: a local folder and S3-compatible object storage behave alike.

S3 runs against a real S3 API server (moto in server mode) on a free 127.0.0.1 port, as a
subprocess, so requests, signatures, multipart uploads and presigned URLs go over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from classroom import audit
from classroom.config import Settings
from recorder.library import catalogue as library
from recorder.storage import (
    ObjectNotFound,
    Storage,
    StorageIntegrityError,
    file_sha256,
)
from recorder.storage.configured import storage_from_settings
from recorder.storage.local import LocalStorage
from recorder.storage.s3 import S3Storage, s3_origin
from signaling.app import create_app
from signaling.appkeys import DB, STORAGE

BUCKET = "tongbu-library"
ACCESS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, for the module's tests."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def s3_settings(tmp_path: Path, endpoint: str, **kw: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        storage_url=f"s3://{BUCKET}?endpoint={endpoint}&prefix=t{os.urandom(3).hex()}/",
        **ACCESS,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        yield storage_from_settings(Settings(data_dir=tmp_path / "data"))
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    backend = storage_from_settings(s3_settings(tmp_path, endpoint))
    assert isinstance(backend, S3Storage)
    await backend.ensure_bucket()
    try:
        yield backend
    finally:
        await backend.close()


def write(path: Path, data: bytes) -> tuple[Path, str]:
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def read(storage: Storage, key: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(key, start, end)])


async def test_put_stat_range_and_delete_by_prefix(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    path, sha = write(tmp_path / "a.mp4", data)
    stored = await storage.put_file("lessons/1/rooms/a.mp4", path, sha)
    assert (stored.key, stored.size, stored.sha256) == ("lessons/1/rooms/a.mp4", len(data), sha)
    await storage.put_file("lessons/1/poster.jpg", *write(tmp_path / "p.jpg", b"jpeg"))
    await storage.put_file("lessons/10/other.mp4", *write(tmp_path / "o.mp4", b"other"))

    assert (await storage.stat("lessons/1/rooms/a.mp4")).size == len(data)
    assert await storage.exists("lessons/1/poster.jpg")
    assert not await storage.exists("lessons/1/missing.mp4")
    with pytest.raises(ObjectNotFound):
        await storage.stat("lessons/1/missing.mp4")
    assert await read(storage, "lessons/1/rooms/a.mp4", 0, len(data)) == data
    assert await read(storage, "lessons/1/rooms/a.mp4", 1000, 250_000) == data[1000:250_000]
    assert await read(storage, "lessons/1/rooms/a.mp4", len(data) - 1, len(data)) == data[-1:]

    # "lessons/1/" never reaches lessons/10.
    assert await storage.delete_prefix("lessons/1/") == 2
    assert not await storage.exists("lessons/1/rooms/a.mp4")
    assert await storage.exists("lessons/10/other.mp4")
    assert await storage.delete_prefix("lessons/1/") == 0
    assert await storage.delete("lessons/10/other.mp4") is True
    assert await storage.delete("lessons/10/other.mp4") is False


async def test_a_sha256_mismatch_is_refused_and_leaves_nothing(
    storage: Storage, tmp_path: Path
) -> None:
    path, _ = write(tmp_path / "a.mp4", b"the real bytes")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(StorageIntegrityError):
        await storage.put_file("lessons/2/a.mp4", path, wrong)
    assert not await storage.exists("lessons/2/a.mp4")
    assert await storage.delete_prefix("lessons/2/") == 0  # not even a temporary file
    if isinstance(storage, LocalStorage):
        assert not any(p.is_file() for p in storage.root.rglob("*"))


async def test_keys_cannot_escape_the_library(storage: Storage, tmp_path: Path) -> None:
    path, sha = write(tmp_path / "a", b"x")
    for key in ("../etc/passwd", "/abs", "lessons//a", "lessons/./a", "a\\b", ""):
        with pytest.raises(ValueError):
            await storage.put_file(key, path, sha)
    with pytest.raises(ValueError):
        await storage.delete_prefix("lessons")  # a prefix ends with "/"


async def test_local_writes_are_atomic_files_under_the_data_dir(tmp_path: Path) -> None:
    storage = storage_from_settings(Settings(data_dir=tmp_path / "data"))
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "data" / "library").resolve()
    assert await storage.presigned_url("lessons/1/a.mp4") is None  # served by the API
    other = storage_from_settings(Settings(storage_url=f"file://{tmp_path / 'elsewhere'}"))
    assert isinstance(other, LocalStorage) and other.root == (tmp_path / "elsewhere").resolve()


def test_storage_urls_choose_the_backend(tmp_path: Path) -> None:
    s3 = storage_from_settings(
        Settings(
            storage_url="s3://lib?endpoint=http://10.0.0.5:9000&region=cn-north-1&prefix=a/",
            **ACCESS,  # type: ignore[arg-type]
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.endpoint_url, s3.region, s3.prefix) == (
        "lib",
        "http://10.0.0.5:9000",
        "cn-north-1",
        "a/",
    )
    with pytest.raises(ValueError):
        storage_from_settings(Settings(storage_url="ftp://x"))
    assert "testing" not in repr(Settings(**ACCESS))  # type: ignore[arg-type]


async def test_s3_multipart_upload_checks_every_part(s3_endpoint: str, tmp_path: Path) -> None:
    storage = S3Storage(
        bucket=BUCKET,
        endpoint_url=s3_endpoint,
        prefix="multipart/",
        access_key_id="testing",
        secret_access_key="testing",
        multipart_threshold=5 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
    )
    try:
        await storage.ensure_bucket()
        data = os.urandom(11 * 1024 * 1024 + 123)  # three parts
        path, sha = write(tmp_path / "big.mp4", data)
        stored = await storage.put_file("lessons/3/big.mp4", path, sha)
        assert stored.size == len(data)
        assert (await storage.stat("lessons/3/big.mp4")).sha256 == sha
        assert (
            await read(storage, "lessons/3/big.mp4", 5_000_000, 6_000_000)
            == data[5_000_000:6_000_000]
        )
        with pytest.raises(StorageIntegrityError):
            await storage.put_file("lessons/3/bad.mp4", path, hashlib.sha256(b"x").hexdigest())
        assert not await storage.exists("lessons/3/bad.mp4")
        s3 = await storage._s3()
        pending = await s3.list_multipart_uploads(Bucket=BUCKET, Prefix="multipart/")
        assert pending.get("Uploads", []) == []  # the refused upload was aborted
    finally:
        await storage.close()


async def test_a_presigned_url_serves_the_bytes(s3_endpoint: str, tmp_path: Path) -> None:
    storage = storage_from_settings(s3_settings(tmp_path, s3_endpoint))
    assert isinstance(storage, S3Storage)
    try:
        await storage.ensure_bucket()
        data = os.urandom(50_000)
        await storage.put_file("lessons/4/composite.mp4", *write(tmp_path / "c.mp4", data))
        url = await storage.presigned_url("lessons/4/composite.mp4", 60, mime="video/mp4")
        assert url is not None and "X-Amz-Signature=" in url
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "video/mp4"
                assert await response.read() == data
            async with http.get(url, headers={"Range": "bytes=10-19"}) as response:
                assert response.status == 206 and await response.read() == data[10:20]
    finally:
        await storage.close()


# ------------------------------------------------------------- through the API


def _final_dir(tmp_path: Path) -> tuple[Path, dict, bytes]:
    final = tmp_path / "final"
    final.mkdir()
    data = os.urandom(200_000)
    (final / "composite.mp4").write_bytes(data)
    manifest = {"files": [{"path": "composite.mp4", "role": "composite", "duration_s": 2.0}]}
    return final, {**manifest, "duration_s": 2.0}, data


async def _public_recording(client: TestClient, admin_headers: dict, lesson_factory, tmp_path):
    lesson = await lesson_factory(kind="famous_school")
    final, manifest, data = _final_dir(tmp_path)
    async with client.app[DB]() as db:
        rec = await library.register_recording(
            db, client.app[STORAGE], lesson_id=lesson["id"], final_dir=final, manifest=manifest
        )
    response = await client.get(f"/api/v1/library/{rec.id}")
    (f,) = (await response.json())["files"]
    return rec, f, data


async def test_range_serving_through_the_api_returns_exact_bytes(
    app_client: TestClient, admin_headers: dict, lesson_factory, tmp_path: Path
) -> None:
    _, f, data = await _public_recording(app_client, admin_headers, lesson_factory, tmp_path)
    assert f["sha256"] == file_sha256(tmp_path / "final" / "composite.mp4")
    for start, end in ((0, 0), (0, 65535), (65536, 199_999), (123_456, 123_456)):
        response = await app_client.get(f["url"], headers={"Range": f"bytes={start}-{end}"})
        assert response.status == 206
        assert response.headers["Content-Length"] == str(end - start + 1)
        assert await response.read() == data[start : end + 1]


@pytest.fixture
async def s3_app_client(
    settings: Settings, s3_endpoint: str, tmp_path: Path
) -> AsyncIterator[TestClient]:
    s3 = s3_settings(tmp_path, s3_endpoint, database_url=settings.database_url)
    storage = storage_from_settings(s3)
    assert isinstance(storage, S3Storage)
    await storage.ensure_bucket()
    await storage.close()
    client = TestClient(TestServer(create_app(s3)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _s3_admin_and_factory(client: TestClient):
    """An admin's headers and a lesson factory on the S3-backed app (conftest's factory is
    bound to the local app)."""
    from classroom.models import UserRole
    from classroom.users import create_user, issue_token

    async with client.app[DB]() as db:
        admin = await create_user(db, username="admin", password="x" * 12, role=UserRole.ADMIN)
        headers = {"Authorization": f"Bearer {await issue_token(db, admin)}"}

    async def post(path: str, body: dict) -> dict:
        response = await client.post(f"/api/v1{path}", json=body, headers=headers)
        assert response.status == 201, await response.text()
        return await response.json()

    async def factory(kind: str) -> dict:
        city = await post("/schools", {"name": "城关一中", "kind": "city"})
        rural = await post("/schools", {"name": "乡村小学", "kind": "rural"})
        main = await post("/classrooms", {"school_id": city["id"], "name": "主讲"})
        room = await post("/classrooms", {"school_id": rural["id"], "name": "听课"})
        pairing = await post(
            "/pairings",
            {"name": "p", "main_classroom_id": main["id"], "receiving_classroom_ids": [room["id"]]},
        )
        return await post(
            "/lessons",
            {
                "pairing_id": pairing["id"],
                "kind": kind,
                "subject": "数学",
                "grade": "初二",
                "teacher_name": "王老师",
                "title": "一次函数",
                "planned_start": "2030-01-01T08:00:00+08:00",
                "planned_end": "2030-01-01T08:40:00+08:00",
            },
        )

    return headers, factory


async def test_s3_playback_redirects_to_a_presigned_url_and_is_audited(
    s3_app_client: TestClient, tmp_path: Path
) -> None:
    client = s3_app_client
    headers, factory = await _s3_admin_and_factory(client)
    rec, f, data = await _public_recording(client, headers, factory, tmp_path)
    assert isinstance(client.app[STORAGE], S3Storage)
    response = await client.get(f["url"], allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    assert "X-Amz-Signature=" in location
    async with aiohttp.ClientSession() as http, http.get(location) as answer:
        assert answer.status == 200 and await answer.read() == data
        assert answer.headers["Content-Type"] == "video/mp4"
    async with client.app[DB]() as db:
        (event,) = await audit.list_events(db, action="recording.play")
    assert event.actor_name == "anonymous" and event.detail["backend"] == "s3"

    response = await client.delete(f"/api/v1/library/{rec.id}", headers=headers)
    assert (await response.json())["objects_removed"] == 1
    assert not await client.app[STORAGE].exists(f"lessons/{rec.lesson_id}/composite.mp4")
    async with aiohttp.ClientSession() as http, http.get(location) as gone:
        assert gone.status in (403, 404)  # S3 answers 403 for a missing key unless listable


async def test_pages_allow_media_from_the_presigned_urls_origin(
    s3_app_client: TestClient, s3_endpoint: str
) -> None:
    """The replay page plays a 302 to the store: the page's policy must name that origin
    for media and images, and no other origin."""
    storage = s3_app_client.app[STORAGE]
    url = await storage.presigned_url("lessons/1/composite.mp4", 60, mime="video/mp4")
    assert url is not None
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    assert storage.media_origin == origin == s3_endpoint.rstrip("/")
    response = await s3_app_client.get("/replay/1")
    policy = dict(
        (d.split()[0], d.split()[1:])
        for d in response.headers["Content-Security-Policy"].split("; ")
    )
    assert origin in policy["media-src"] and origin in policy["img-src"]
    assert origin not in policy["script-src"] and origin not in policy["connect-src"]


def test_virtual_hosted_and_aws_origins() -> None:
    assert s3_origin("rec", "http://minio.lan:9000", "us-east-1", "virtual") == (
        "http://rec.minio.lan:9000"
    )
    assert s3_origin("rec", None, "cn-north-1", "path") == "https://s3.cn-north-1.amazonaws.com"


async def test_s3_json_files_are_served_by_our_origin(
    s3_app_client: TestClient, tmp_path: Path
) -> None:
    """Chapters are fetched by the page's script: a redirect to the store would need CORS
    on the bucket, so JSON files stream through the API while video redirects."""
    client = s3_app_client
    _, factory = await _s3_admin_and_factory(client)
    lesson = await factory("famous_school")
    final, manifest, _ = _final_dir(tmp_path)
    chapters = [{"t_s": 0.0, "title": "开始"}, {"t_s": 1.5, "title": "听课教室1 上台"}]
    (final / "chapters.json").write_text(json.dumps(chapters, ensure_ascii=False))
    manifest["files"].append({"path": "chapters.json", "role": "chapters"})
    async with client.app[DB]() as db:
        rec = await library.register_recording(
            db, client.app[STORAGE], lesson_id=lesson["id"], final_dir=final, manifest=manifest
        )
    files = {
        f["role"]: f
        for f in (await (await client.get(f"/api/v1/library/{rec.id}")).json())["files"]
    }
    video = await client.get(files["composite"]["url"], allow_redirects=False)
    assert video.status == 302
    answer = await client.get(files["chapters"]["url"], allow_redirects=False)
    assert answer.status == 200, await answer.text()
    assert json.loads(await answer.read()) == chapters
