"""The resource library over the REST API, on SQLite and PostgreSQL (local folder storage).

A finished lesson becomes an entry with real files (a 2 s H.264 MP4, a poster, chapters),
found by Chinese substrings, filtered, sorted and paged; each role sees what it should;
reviewers comment at moments and rate on the rubric; every playback is audited.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from classroom import audit
from classroom.models import Recording, RecordingFile, UserRole
from recorder.library import catalogue as library
from recorder.storage.local import LocalStorage
from signaling.appkeys import DB, STORAGE

API = "/api/v1"


@pytest.fixture(scope="session")
def lesson_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-second H.264/AAC MP4, made once."""
    path = tmp_path_factory.mktemp("media") / "lesson.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac",
         "-movflags", "+faststart", "-y", str(path)],
        check=True,
    )  # fmt: skip
    return path


def make_final_dir(root: Path, mp4: Path, rooms: list[int]) -> tuple[Path, dict[str, Any]]:
    """What a finaliser leaves: per-room files, a composite, a poster, chapters."""
    final = root / "final"
    (final / "rooms").mkdir(parents=True)
    files = []
    for classroom_id in rooms:
        shutil.copy(mp4, final / "rooms" / f"{classroom_id}.mp4")
        files.append(
            {
                "path": f"rooms/{classroom_id}.mp4",
                "role": "room_video",
                "classroom_id": classroom_id,
                "duration_s": 2.0,
            }
        )
    shutil.copy(mp4, final / "composite.mp4")
    (final / "poster.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    (final / "chapters.json").write_text(json.dumps([{"t_s": 0, "title": "导入"}]))
    files += [
        {"path": "composite.mp4", "role": "composite", "mime": "video/mp4", "duration_s": 2.0},
        {"path": "poster.jpg", "role": "poster"},
        {"path": "chapters.json", "role": "chapters"},
    ]
    return final, {"files": files, "duration_s": 2.0}


class Library:
    """Builds schools once and lessons with chosen metadata through the API."""

    def __init__(self, client: TestClient, admin: dict[str, str], tmp: Path, mp4: Path):
        self.client, self.admin, self.tmp, self.mp4 = client, admin, tmp, mp4
        self.slot = 0
        self.schools: dict[str, int] = {}
        self.pairing: dict[str, Any] = {}

    async def post(self, path: str, body: dict) -> dict:
        response = await self.client.post(API + path, json=body, headers=self.admin)
        assert response.status == 201, await response.text()
        return await response.json()

    async def setup(self) -> None:
        city = await self.post("/schools", {"name": "城关一中", "kind": "city"})
        rural = [
            await self.post("/schools", {"name": n, "kind": "rural"})
            for n in ("东山小学", "西河小学")
        ]
        other = await self.post("/schools", {"name": "南湖中学", "kind": "city"})
        self.schools = {
            "city": city["id"],
            "east": rural[0]["id"],
            "west": rural[1]["id"],
            "other": other["id"],
        }
        main = await self.post("/classrooms", {"school_id": city["id"], "name": "主讲教室"})
        rooms = [
            await self.post("/classrooms", {"school_id": r["id"], "name": "听课"}) for r in rural
        ]
        self.pairing = await self.post(
            "/pairings",
            {
                "name": "结对",
                "main_classroom_id": main["id"],
                "receiving_classroom_ids": [r["id"] for r in rooms],
            },
        )

    async def lesson(
        self,
        *,
        kind: str = "dedicated",
        subject: str = "数学",
        grade: str = "初二",
        title: str = "一次函数的图像",
        teacher: str = "王老师",
    ) -> dict:
        self.slot += 1
        start = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(hours=self.slot)
        return await self.post(
            "/lessons",
            {
                "pairing_id": self.pairing["id"],
                "kind": kind,
                "subject": subject,
                "grade": grade,
                "teacher_name": teacher,
                "title": title,
                "planned_start": start.isoformat(),
                "planned_end": (start + timedelta(minutes=40)).isoformat(),
            },
        )

    async def recording(
        self,
        *,
        started_at: str = "2026-10-12T08:00:00+08:00",
        duration_s: float = 2.0,
        **lesson_kw: Any,
    ) -> Recording:
        lesson = await self.lesson(**lesson_kw)
        final, manifest = make_final_dir(
            self.tmp / f"lesson{lesson['id']}",
            self.mp4,
            [r["classroom_id"] for r in lesson["rooms"]],
        )
        manifest.update(started_at=started_at, duration_s=duration_s)
        async with self.client.app[DB]() as db:
            return await library.register_recording(
                db,
                self.client.app[STORAGE],
                lesson_id=lesson["id"],
                final_dir=final,
                manifest=manifest,
            )


@pytest.fixture
async def lib(app_client: TestClient, admin_headers: dict, tmp_path: Path, lesson_mp4: Path):
    built = Library(app_client, admin_headers, tmp_path, lesson_mp4)
    await built.setup()
    return built


async def get(client: TestClient, path: str, headers: dict | None = None, **params: Any):
    response = await client.get(API + path, headers=headers or {}, params=params)
    return response.status, await response.json()


async def titles(client: TestClient, headers: dict | None = None, **params: Any) -> list[str]:
    status, page = await get(client, "/library", headers, **params)
    assert status == 200, page
    return [item["title"] for item in page["items"]]


async def events(client: TestClient, action: str) -> list:
    async with client.app[DB]() as db:
        return await audit.list_events(db, action=action)


# ------------------------------------------------------------------ catalogue


async def test_a_finished_lesson_becomes_a_ready_entry_with_checked_files(
    lib: Library, app_client: TestClient, admin_headers: dict
) -> None:
    lesson = await lib.lesson(title="一次函数的图像")
    async with app_client.app[DB]() as db:
        pending = await library.create_pending_recording(db, lesson["id"])
    assert pending.state == "processing"
    status, page = await get(app_client, "/library", admin_headers)
    assert page["total"] == 1 and page["items"][0]["state"] == "processing"

    rooms = [r["classroom_id"] for r in lesson["rooms"]]
    final, manifest = make_final_dir(lib.tmp / "f", lib.mp4, rooms)
    manifest["started_at"] = "2027-01-10T08:00:00+08:00"
    storage = app_client.app[STORAGE]
    for _ in range(2):  # idempotent: a resumed finaliser registers again
        async with app_client.app[DB]() as db:
            rec = await library.register_recording(
                db, storage, lesson_id=lesson["id"], final_dir=final, manifest=manifest
            )
    assert rec.id == pending.id and rec.state == "ready"
    async with app_client.app[DB]() as db:
        assert await db.scalar(sa.select(sa.func.count()).select_from(Recording)) == 1
        assert await db.scalar(sa.select(sa.func.count()).select_from(RecordingFile)) == 6

    status, entry = await get(app_client, f"/library/{rec.id}", admin_headers)
    assert status == 200
    assert entry["title"] == "一次函数的图像" and entry["subject"] == "数学"
    assert entry["grade"] == "初二" and entry["teacher_name"] == "王老师"
    assert entry["main_school"] == "城关一中"
    assert [s["name"] for s in entry["receiving_schools"]] == ["东山小学", "西河小学"]
    assert entry["term"] == "2026秋"  # January belongs to the autumn term
    assert entry["duration_s"] == 2.0 and entry["state"] == "ready"
    assert entry["published"] is False  # dedicated lessons wait for an admin
    roles = sorted(f["role"] for f in entry["files"])
    assert roles == ["chapters", "composite", "poster", *["room_video"] * 3]
    assert entry["poster_file_id"] is not None
    assert isinstance(storage, LocalStorage)
    for f in entry["files"]:
        async with app_client.app[DB]() as db:
            row = await db.get(RecordingFile, f["id"])
        stored = storage.path_of(row.key)
        assert stored.is_relative_to(storage.root)
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == f["sha256"]
    composite = next(f for f in entry["files"] if f["role"] == "composite")
    assert composite["mime"] == "video/mp4" and composite["size"] == lib.mp4.stat().st_size

    # A file dropped from a later manifest leaves the entry and the storage.
    manifest["files"] = [f for f in manifest["files"] if f["role"] != "chapters"]
    async with app_client.app[DB]() as db:
        rec = await library.register_recording(
            db, storage, lesson_id=lesson["id"], final_dir=final, manifest=manifest
        )
    assert sorted(f.role for f in rec.files) == ["composite", "poster", *["room_video"] * 3]
    assert not await storage.exists(f"lessons/{lesson['id']}/chapters.json")


@pytest.mark.parametrize(
    ("when", "term"),
    [("2026-09-01T08:00:00+08:00", "2026秋"), ("2026-12-31T23:30:00+08:00", "2026秋"),
     ("2027-01-31T08:00:00+08:00", "2026秋"), ("2027-02-01T08:00:00+08:00", "2027春"),
     ("2027-08-31T08:00:00+08:00", "2027春"), ("2026-08-31T17:00:00Z", "2026秋")],
)  # fmt: skip
def test_the_term_follows_the_school_year(when: str, term: str) -> None:
    assert library.term_of(datetime.fromisoformat(when)) == term


# --------------------------------------------------------------------- search


async def test_free_text_finds_chinese_substrings(
    lib: Library, app_client: TestClient, admin_headers: dict
) -> None:
    await lib.recording(title="一次函数的图像", subject="数学", grade="初二")
    await lib.recording(title="古诗两首", subject="语文", grade="三年级", teacher="李老师")
    await lib.recording(
        title="Unit 3 My Friends", subject="英语", grade="五年级", teacher="Ｍｓ Ｚｈａｏ"
    )

    async def q(text: str) -> list[str]:
        return await titles(app_client, admin_headers, q=text)

    assert await q("数学") == ["一次函数的图像"]
    assert await q("函数") == ["一次函数的图像"]
    assert await q("初二数学") == ["一次函数的图像"]  # grade and subject as people type them
    assert await q("古诗") == ["古诗两首"]
    assert await q("李老师 三年级") == ["古诗两首"]  # every term must match
    assert await q("李老师 初二") == []
    assert await q("unit 3") == ["Unit 3 My Friends"]  # case-insensitive
    assert await q("ms zhao") == ["Unit 3 My Friends"]  # full-width letters normalised
    assert len(await q("东山小学")) == 3  # receiving schools are text too
    assert len(await q("东山")) == 3
    assert await q("专递课堂") != []  # the kind's Chinese label
    assert await q("%") == [] and await q("_") == []  # LIKE wildcards are literal
    assert len(await q("")) == 3


async def test_filters_sort_and_pagination(
    lib: Library, app_client: TestClient, admin_headers: dict
) -> None:
    await lib.recording(
        title="B 函数",
        subject="数学",
        grade="初二",
        duration_s=1.5,
        started_at="2026-10-12T08:00:00+08:00",
    )
    await lib.recording(
        title="A 古诗",
        subject="语文",
        grade="三年级",
        teacher="李老师",
        kind="famous_teacher",
        duration_s=1.0,
        started_at="2027-03-05T08:00:00+08:00",
    )
    await lib.recording(
        title="C 几何",
        subject="数学",
        grade="初三",
        kind="famous_school",
        duration_s=2.0,
        started_at="2026-11-20T08:00:00+08:00",
    )
    h = admin_headers

    assert await titles(app_client, h) == ["A 古诗", "C 几何", "B 函数"]  # newest first
    assert await titles(app_client, h, sort="date") == ["B 函数", "C 几何", "A 古诗"]
    assert await titles(app_client, h, sort="title") == ["A 古诗", "B 函数", "C 几何"]
    assert await titles(app_client, h, sort="-duration") == ["C 几何", "B 函数", "A 古诗"]
    assert await titles(app_client, h, subject="数学", sort="title") == ["B 函数", "C 几何"]
    assert await titles(app_client, h, grade="初三") == ["C 几何"]
    assert await titles(app_client, h, kind="famous_teacher") == ["A 古诗"]
    assert await titles(app_client, h, teacher="李老师") == ["A 古诗"]
    assert await titles(app_client, h, term="2027春") == ["A 古诗"]
    assert await titles(app_client, h, term="2026秋", sort="title") == ["B 函数", "C 几何"]
    assert await titles(app_client, h, published="true") == ["C 几何"]  # famous_school
    assert len(await titles(app_client, h, school_id=lib.schools["west"])) == 3
    assert await titles(app_client, h, school_id=lib.schools["other"]) == []
    window = {"from": "2026-11-01T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"}
    assert await titles(app_client, h, **window) == ["C 几何"]

    status, page = await get(app_client, "/library", h, sort="title", limit=2, offset=1)
    assert [i["title"] for i in page["items"]] == ["B 函数", "C 几何"]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    status, page = await get(app_client, "/library", h, limit=1, offset=5)
    assert page["items"] == [] and page["total"] == 3

    for bad in ({"sort": "rating"}, {"limit": "0"}, {"kind": "lecture"}, {"nope": "1"}):
        status, body = await get(app_client, "/library", h, **bad)
        assert status == 400 and body["error"]["code"] == "invalid_body", bad


# ---------------------------------------------------------------- permissions


async def test_who_sees_what(
    lib: Library, app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    public = await lib.recording(title="名校公开课", kind="famous_school")
    hidden_school = await lib.recording(title="名校未发布", kind="famous_school")
    own = await lib.recording(title="专递课")
    published = await lib.recording(title="名师已发布", kind="famous_teacher")
    for rec_id, path in ((hidden_school.id, "unpublish"), (published.id, "publish")):
        response = await app_client.post(f"{API}/library/{rec_id}/{path}", headers=admin_headers)
        assert response.status == 200
    everything = ["名校公开课", "名校未发布", "专递课", "名师已发布"]
    every_published = ["名校公开课", "名师已发布"]

    east_teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["east"])
    east_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=lib.schools["east"])
    other_teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["other"])
    reviewer = await headers_for(UserRole.REVIEWER)
    device = await headers_for(
        UserRole.DEVICE, classroom_id=lib.pairing["receiving_classroom_ids"][0]
    )

    async def seen(headers: dict | None) -> list[str]:
        return sorted(await titles(app_client, headers, sort="title"))

    assert await seen(None) == ["名校公开课"]
    assert await seen(device) == ["名校公开课"]
    assert await seen(other_teacher) == sorted(every_published)
    assert await seen(east_teacher) == sorted(everything)  # their school took part
    assert await seen(east_admin) == sorted(everything)
    assert await seen(reviewer) == sorted(everything)
    assert await seen(admin_headers) == sorted(everything)

    assert (await get(app_client, f"/library/{public.id}"))[0] == 200
    status, body = await get(app_client, f"/library/{own.id}")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert (await get(app_client, f"/library/{own.id}", other_teacher))[0] == 403
    assert (await get(app_client, f"/library/{own.id}", east_teacher))[0] == 200
    assert (await get(app_client, "/library/999", reviewer))[0] == 404
    denied = await events(app_client, "recording.denied")
    assert {(e.actor_name, e.target) for e in denied} >= {("anonymous", f"recording:{own.id}")}

    # A token that is sent must be valid, even where none is needed.
    status, body = await get(app_client, "/library", {"Authorization": "Bearer tb_nope"})
    assert status == 401
    # Anonymous callers never see reviews of a public entry.
    status, entry = await get(app_client, f"/library/{public.id}")
    assert entry["reviews_visible"] is False and entry["comments"] == []


async def test_publishing_is_for_admins_and_audited(
    lib: Library, app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    rec = await lib.recording(title="名校课", kind="famous_school")
    teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["city"])
    reviewer = await headers_for(UserRole.REVIEWER)
    for headers in (teacher, reviewer):
        response = await app_client.post(f"{API}/library/{rec.id}/unpublish", headers=headers)
        assert response.status == 403
    assert await titles(app_client) == ["名校课"]
    response = await app_client.post(f"{API}/library/{rec.id}/unpublish", headers=admin_headers)
    assert response.status == 200 and (await response.json())["published"] is False
    assert await titles(app_client) == []
    response = await app_client.post(f"{API}/library/{rec.id}/publish", headers=admin_headers)
    assert (await response.json())["published"] is True
    assert await titles(app_client) == ["名校课"]
    assert [e.action for e in await events(app_client, "recording.unpublish")] == [
        "recording.unpublish"
    ]
    assert len(await events(app_client, "recording.publish")) == 1


# -------------------------------------------------------------------- reviews


async def test_timed_comments_stay_within_the_lesson(
    lib: Library, app_client: TestClient, headers_for
) -> None:
    rec = await lib.recording(title="一次函数", duration_s=2400.0)
    reviewer = await headers_for(UserRole.REVIEWER, username="jiaoyan")
    own_teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["west"])
    other_teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["other"])
    school_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=lib.schools["city"])
    url = f"{API}/library/{rec.id}/comments"

    async def post(headers: dict, body: dict) -> tuple[int, dict]:
        response = await app_client.post(url, json=body, headers=headers)
        return response.status, await response.json()

    assert (await post(reviewer, {"t_s": 600, "text": "导入自然，问题设计好"}))[0] == 201
    assert (await post(own_teacher, {"t_s": 125.5, "text": "学生回答积极"}))[0] == 201
    status, body = await post(reviewer, {"t_s": 2400.5, "text": "超出"})
    assert status == 400 and body["error"]["field"] == "t_s"
    status, body = await post(reviewer, {"t_s": -1, "text": "负数"})
    assert status == 400 and body["error"]["code"] == "invalid_body"
    assert (await post(reviewer, {"t_s": 1, "text": ""}))[0] == 400
    assert (await post(other_teacher, {"t_s": 1, "text": "不是我的课"}))[0] == 403
    assert (await post(school_admin, {"t_s": 1, "text": "管理员"}))[0] == 403

    status, listed = await get(app_client, f"/library/{rec.id}/comments", school_admin)
    assert status == 200
    assert [(c["t_s"], c["text"]) for c in listed["items"]] == [
        (125.5, "学生回答积极"),
        (600.0, "导入自然，问题设计好"),
    ]
    assert listed["items"][1]["author_name"] == "jiaoyan"
    status, entry = await get(app_client, f"/library/{rec.id}", reviewer)
    assert entry["reviews_visible"] and len(entry["comments"]) == 2


async def test_a_reviewer_rates_on_the_rubric_and_may_change_it(
    lib: Library, app_client: TestClient, headers_for
) -> None:
    rec = await lib.recording(title="一次函数")
    reviewer = await headers_for(UserRole.REVIEWER)
    second = await headers_for(UserRole.REVIEWER)
    teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["city"])
    status, rubric = await get(app_client, f"/library/{rec.id}/rubric", reviewer)
    assert status == 200
    names = [c["name"] for c in rubric["criteria"]]
    assert names == ["教学目标", "教学过程", "师生互动", "技术运用", "教学效果"]
    assert sum(c["weight"] for c in rubric["criteria"]) == 100
    keys = [c["key"] for c in rubric["criteria"]]
    url = f"{API}/library/{rec.id}/ratings/mine"

    full = dict.fromkeys(keys, 10)
    response = await app_client.put(url, json={"scores": full, "comment": "好"}, headers=reviewer)
    assert response.status == 200 and (await response.json())["total"] == 100
    half = dict.fromkeys(keys, 5)
    response = await app_client.put(url, json={"scores": half}, headers=reviewer)
    first = await response.json()
    assert response.status == 200 and first["total"] == 50 and first["comment"] == ""
    response = await app_client.put(url, json={"scores": full}, headers=second)
    assert response.status == 200

    for bad in ({**half, "extra": 3}, {k: 5 for k in keys[1:]}, {**half, keys[0]: 11}):
        response = await app_client.put(url, json={"scores": bad}, headers=reviewer)
        assert response.status == 400, bad
        assert (await response.json())["error"]["field"].startswith("scores.")
    assert (await app_client.put(url, json={"scores": full}, headers=teacher)).status == 403

    status, entry = await get(app_client, f"/library/{rec.id}", reviewer)
    assert entry["ratings"]["count"] == 2 and entry["ratings"]["average_total"] == 75
    assert entry["ratings"]["criteria"][0]["average"] == 7.5
    assert entry["my_rating"]["id"] == first["id"] and entry["my_rating"]["total"] == 50


async def test_reviews_export_as_csv_with_bom_and_as_json(
    lib: Library, app_client: TestClient, headers_for
) -> None:
    rec = await lib.recording(title="一次函数", duration_s=2400.0)
    reviewer = await headers_for(UserRole.REVIEWER, username="zhang")
    await app_client.post(
        f"{API}/library/{rec.id}/comments",
        json={"t_s": 65, "text": "板书清楚, 有条理"},
        headers=reviewer,
    )
    _status, rubric = await get(app_client, f"/library/{rec.id}/rubric", reviewer)
    scores = {c["key"]: 8 for c in rubric["criteria"]}
    await app_client.put(
        f"{API}/library/{rec.id}/ratings/mine",
        json={"scores": scores, "comment": "良好"},
        headers=reviewer,
    )

    response = await app_client.get(f"{API}/library/{rec.id}/export?format=csv", headers=reviewer)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    lines = text.splitlines()
    assert lines[0].startswith("类型,作者,时间点(秒),时间点,内容,总分,教学目标")
    assert '评论,zhang,65.0,0:01:05,"板书清楚, 有条理"' in text
    assert "评分,zhang,,,良好,80.0,8.0" in text

    response = await app_client.get(f"{API}/library/{rec.id}/export?format=json", headers=reviewer)
    data = json.loads(await response.read())
    assert data["comments"][0]["text"] == "板书清楚, 有条理"
    assert data["ratings"][0]["total"] == 80 and data["summary"]["count"] == 1
    assert len(await events(app_client, "recording.export")) == 2

    outsider = await headers_for(UserRole.TEACHER, school_id=lib.schools["other"])
    response = await app_client.get(f"{API}/library/{rec.id}/export", headers=outsider)
    assert response.status == 403
    response = await app_client.get(f"{API}/library/{rec.id}/export?format=xml", headers=reviewer)
    assert response.status == 400


# ---------------------------------------------------------- delete and playback


async def test_deleting_a_recording_removes_every_object_and_is_audited(
    lib: Library, app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    rec = await lib.recording(title="将删除", kind="famous_school")
    keep = await lib.recording(title="保留")
    reviewer = await headers_for(UserRole.REVIEWER)
    await app_client.post(
        f"{API}/library/{rec.id}/comments", json={"t_s": 1, "text": "x"}, headers=reviewer
    )
    storage: LocalStorage = app_client.app[STORAGE]
    folder = storage.path_of(library.key_prefix(rec.lesson_id).rstrip("/"))
    assert len([p for p in folder.rglob("*") if p.is_file()]) == 6

    response = await app_client.delete(f"{API}/library/{rec.id}", headers=reviewer)
    assert response.status == 403
    response = await app_client.delete(f"{API}/library/{rec.id}", headers=admin_headers)
    assert response.status == 200
    assert await response.json() == {"id": rec.id, "objects_removed": 6}
    assert not folder.exists()
    assert storage.path_of(library.key_prefix(keep.lesson_id).rstrip("/")).is_dir()
    assert (await get(app_client, f"/library/{rec.id}", admin_headers))[0] == 404
    async with app_client.app[DB]() as db:
        assert (
            await db.scalar(
                sa.select(sa.func.count())
                .select_from(RecordingFile)
                .where(RecordingFile.recording_id == rec.id)
            )
            == 0
        )
    (event,) = await events(app_client, "recording.delete")
    assert event.actor_name == "admin" and event.target == f"recording:{rec.id}"
    assert event.detail["objects_removed"] == 6 and event.detail["title"] == "将删除"
    assert event.remote
    response = await app_client.delete(f"{API}/library/{rec.id}", headers=admin_headers)
    assert response.status == 404


async def test_playback_streams_ranges_and_every_access_is_audited(
    lib: Library, app_client: TestClient, headers_for
) -> None:
    public = await lib.recording(title="名校课", kind="famous_school")
    private = await lib.recording(title="专递课")
    data = lib.mp4.read_bytes()
    _status, entry = await get(app_client, f"/library/{public.id}")
    composite = next(f for f in entry["files"] if f["role"] == "composite")
    url = composite["url"]
    assert url == f"{API}/library/{public.id}/files/{composite['id']}"

    response = await app_client.get(url)
    assert response.status == 200 and await response.read() == data
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.headers["Accept-Ranges"] == "bytes"

    response = await app_client.get(url, headers={"Range": "bytes=100-1099"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
    assert await response.read() == data[100:1100]
    response = await app_client.get(url, headers={"Range": "bytes=-500"})
    assert response.status == 206 and await response.read() == data[-500:]
    response = await app_client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert await response.read() == data[-10:]
    response = await app_client.get(url, headers={"Range": f"bytes={len(data) - 10}-99999999"})
    assert (
        response.headers["Content-Range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    )

    for bad in (f"bytes={len(data)}-", "bytes=50-10", "bytes=abc", "bytes=-0"):
        response = await app_client.get(url, headers={"Range": bad})
        assert response.status == 416, bad
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"
        assert (await response.json())["error"]["code"] == "range_not_satisfiable"

    teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["east"], username="li")
    response = await app_client.get(url + "?download=true", headers=teacher)
    assert response.status == 200
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''composite.mp4"

    plays = await events(app_client, "recording.play")
    assert len(plays) == 5 and all(e.actor_name == "anonymous" and e.remote for e in plays)
    assert {e.detail["range"] for e in plays} >= {None, "bytes=100-1099"}
    (download,) = await events(app_client, "recording.download")
    assert download.actor_name == "li" and download.detail["file_id"] == composite["id"]

    # The private entry's file: refused to anonymous callers and outsiders, and audited.
    async with app_client.app[DB]() as db:
        rec = await db.get(Recording, private.id)
        file_id = rec.files[0].id
    private_url = f"{API}/library/{private.id}/files/{file_id}"
    assert (await app_client.get(private_url)).status == 401
    outsider = await headers_for(UserRole.TEACHER, school_id=lib.schools["other"])
    assert (await app_client.get(private_url, headers=outsider)).status == 403
    assert (await app_client.get(private_url, headers=teacher)).status == 200
    denied = await events(app_client, "recording.denied")
    assert [e.detail["action"] for e in denied] == ["recording.play", "recording.play"]
    assert (await app_client.get(f"{API}/library/{public.id}/files/{file_id}")).status == 404


async def test_an_hls_playlist_points_at_its_segments_through_the_library(
    lib: Library, app_client: TestClient
) -> None:
    lesson = await lib.lesson(kind="famous_school")
    final = lib.tmp / "hls-final"
    (final / "hls" / "composite").mkdir(parents=True)
    (final / "hls" / "composite" / "init.mp4").write_bytes(b"init")
    (final / "hls" / "composite" / "seg-0.m4s").write_bytes(b"segment zero")
    (final / "hls" / "composite" / "index.m3u8").write_text(
        '#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.0,\nseg-0.m4s\n'
        "#EXT-X-ENDLIST\n"
    )
    manifest = {
        "files": [
            {"path": "hls/composite/index.m3u8", "role": "hls_playlist"},
            {"path": "hls/composite/init.mp4", "role": "hls_segment"},
            {"path": "hls/composite/seg-0.m4s", "role": "hls_segment"},
        ],
        "duration_s": 2.0,
    }
    async with app_client.app[DB]() as db:
        rec = await library.register_recording(
            db, app_client.app[STORAGE], lesson_id=lesson["id"], final_dir=final, manifest=manifest
        )
    by_name = {f.key.rsplit("/", 1)[-1]: f for f in rec.files}
    playlist_url = f"{API}/library/{rec.id}/files/{by_name['index.m3u8'].id}"
    response = await app_client.get(playlist_url)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    text = await response.text()
    segment_url = f"{API}/library/{rec.id}/files/{by_name['seg-0.m4s'].id}"
    assert f'#EXT-X-MAP:URI="{API}/library/{rec.id}/files/{by_name["init.mp4"].id}"' in text
    assert segment_url in text.splitlines()
    segment = await app_client.get(segment_url)
    assert await segment.read() == b"segment zero"
    assert len(await events(app_client, "recording.play")) == 2


# ------------------------------------------------------- what the pages rely on


async def test_filter_choices_are_those_of_the_entries_the_caller_may_see(
    lib: Library, app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    await lib.recording(
        title="名校公开课", kind="famous_school", subject="物理", grade="初三", teacher="赵老师"
    )
    await lib.recording(
        title="专递课",
        subject="音乐",
        grade="三年级",
        teacher="钱老师",
        started_at="2027-03-01T08:00:00+08:00",
    )
    # A school that only took part in another pairing's private lesson.
    other_city = await lib.post("/schools", {"name": "北岭中学", "kind": "city"})
    room = await lib.post("/classrooms", {"school_id": other_city["id"], "name": "主讲"})
    far = await lib.post("/schools", {"name": "远山小学", "kind": "rural"})
    far_room = await lib.post("/classrooms", {"school_id": far["id"], "name": "听课"})
    lib.pairing = await lib.post(
        "/pairings",
        {
            "name": "结对2",
            "main_classroom_id": room["id"],
            "receiving_classroom_ids": [far_room["id"]],
        },
    )
    await lib.recording(title="远山专递", subject="美术", grade="二年级", teacher="孙老师")

    async def facets(headers: dict | None) -> dict:
        status, body = await get(app_client, "/library/facets", headers)
        assert status == 200, body
        return body

    public = await facets(None)
    assert public["subjects"] == ["物理"] and public["teachers"] == ["赵老师"]
    assert public["grades"] == ["初三"] and public["terms"] == ["2026秋"]
    assert [s["name"] for s in public["schools"]] == ["东山小学", "城关一中", "西河小学"]

    everything = await facets(await headers_for(UserRole.REVIEWER))
    assert everything["subjects"] == sorted(["物理", "音乐", "美术"])
    assert everything["teachers"] == sorted(["赵老师", "钱老师", "孙老师"])
    assert everything["terms"] == ["2027春", "2026秋"]  # newest first
    by_name = {s["name"]: s["id"] for s in everything["schools"]}
    assert by_name == {
        "东山小学": lib.schools["east"],
        "城关一中": lib.schools["city"],
        "西河小学": lib.schools["west"],
        "北岭中学": other_city["id"],
        "远山小学": far["id"],
    }
    # Every choice finds its lessons: the school filter takes the facet's id.
    assert await titles(app_client, admin_headers, school_id=by_name["远山小学"]) == ["远山专递"]
    assert await titles(app_client, admin_headers, teacher="钱老师") == ["专递课"]

    # A teacher of the first pairing's school sees its private lesson, not the other one.
    east = await facets(await headers_for(UserRole.TEACHER, school_id=lib.schools["east"]))
    assert east["subjects"] == sorted(["物理", "音乐"]) and "孙老师" not in east["teachers"]
    assert "远山小学" not in {s["name"] for s in east["schools"]}
    status, _ = await get(app_client, "/library/facets", {"Authorization": "Bearer tb_nope"})
    assert status == 401


async def test_an_entry_says_whether_the_caller_may_comment_and_rate(
    lib: Library, app_client: TestClient, admin_headers: dict, headers_for
) -> None:
    rec = await lib.recording(title="名校课", kind="famous_school")
    outsider = await headers_for(UserRole.TEACHER, school_id=lib.schools["other"])
    school_admin = await headers_for(UserRole.SCHOOL_ADMIN, school_id=lib.schools["city"])
    own_teacher = await headers_for(UserRole.TEACHER, school_id=lib.schools["east"])
    cases = [
        (None, False, False, False),
        (outsider, False, False, False),
        (school_admin, True, False, False),
        (own_teacher, True, True, False),
        (await headers_for(UserRole.REVIEWER), True, True, True),
        (admin_headers, True, True, True),
    ]
    for headers, reviews, comment, rate in cases:
        status, entry = await get(app_client, f"/library/{rec.id}", headers)
        assert status == 200
        said = (entry["reviews_visible"], entry["can_comment"], entry["can_rate"])
        assert said == (reviews, comment, rate), headers
        # What the entry says is what the server then accepts.
        response = await app_client.post(
            f"{API}/library/{rec.id}/comments", json={"t_s": 1, "text": "好"}, headers=headers or {}
        )
        assert (response.status == 201) == comment, (headers, response.status)


async def test_a_signed_in_browser_plays_a_private_recording_with_its_cookie(
    lib: Library, app_client: TestClient, headers_for
) -> None:
    """The replay page's <video> sends only the session cookie: detail, playback and Range
    requests must all accept it, and a signed-out or foreign cookie must not."""
    private = await lib.recording(title="专递课")
    await headers_for(UserRole.TEACHER, school_id=lib.schools["east"], username="dongshan")
    await headers_for(UserRole.TEACHER, school_id=lib.schools["other"], username="nanhu")
    data = lib.mp4.read_bytes()

    async def cookie_of(username: str) -> tuple[dict[str, str], str]:
        response = await app_client.post(
            f"{API}/auth/session",
            json={"username": username, "password": "correct horse battery"},
        )
        assert response.status == 200, await response.text()
        cookie = response.cookies["tongbu_session"].value
        app_client.session.cookie_jar.clear()  # each call below sends its cookie explicitly
        return {"Cookie": f"tongbu_session={cookie}"}, (await response.json())["csrf_token"]

    own, csrf = await cookie_of("dongshan")
    status, entry = await get(app_client, f"/library/{private.id}", own)
    assert status == 200 and entry["published"] is False and entry["can_comment"] is True
    url = next(f["url"] for f in entry["files"] if f["role"] == "composite")
    response = await app_client.get(url, headers=own)
    assert response.status == 200 and await response.read() == data
    response = await app_client.get(url, headers={**own, "Range": "bytes=0-1"})
    assert response.status == 206 and await response.read() == data[:2]
    response = await app_client.get(url, headers={**own, "Range": "bytes=1000-"})
    assert response.status == 206 and await response.read() == data[1000:]
    plays = await events(app_client, "recording.play")
    assert sorted((e.actor_name, e.detail["range"] or "") for e in plays) == [
        ("dongshan", ""),
        ("dongshan", "bytes=0-1"),
        ("dongshan", "bytes=1000-"),
    ]

    foreign, _ = await cookie_of("nanhu")
    assert (await app_client.get(url, headers=foreign)).status == 403
    status, body = await get(app_client, f"/library/{private.id}", foreign)
    assert status == 403 and body["error"]["code"] == "forbidden"

    # Signed out: the browser may still send the old cookie; it is anonymous now.
    response = await app_client.delete(f"{API}/auth/session", headers={**own, "X-CSRF-Token": csrf})
    assert response.status == 200
    assert (await app_client.get(url, headers={**own, "Range": "bytes=0-1"})).status == 401
    status, body = await get(app_client, f"/library/{private.id}", own)
    assert status == 401 and body["error"]["code"] == "unauthorized"
