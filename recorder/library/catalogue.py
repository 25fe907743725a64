"""The resource library (云录播资源库): catalogue entries, search, reviews and who sees what.

A lesson that ends is listed at once (`create_pending_recording`, state processing); the
finaliser then calls `register_recording`, which uploads every file through a Storage with
its sha256 checked and marks the entry ready. Both are idempotent, so a finaliser resumed
after a crash simply calls them again.

Search: every entry keeps `search_text`, its searchable fields normalised (NFKC, lower
case) and joined, with grade+subject also written together ("初二数学"). Free text is split
on white space and every term must occur as a substring (LIKE with % and _ escaped).
Substrings need no word segmentation, so 数学 finds 初二数学 and 函数 finds 一次函数的图像, and
SQLite and PostgreSQL give the same answers (no FTS engine whose tokeniser differs).

Who sees what (the REST layer asks `can_view` and friends; search uses `visible_to`):
- anyone, without signing in: published, ready famous_school entries (名校网络课堂);
- every signed-in user but a device: also every published, ready entry;
- teacher, school_admin: also every entry of a lesson their school took part in (main or
  receiving), in any state. Lessons name their teacher only as text (`teacher_name`), so
  school membership is the only reliable link between a teacher account and a lesson;
- reviewer, admin: everything.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import mimetypes
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.lessons import get_lesson
from classroom.models import (
    Classroom,
    InvalidInput,
    Lesson,
    LessonKind,
    LessonRoom,
    NotFound,
    Recording,
    RecordingComment,
    RecordingFile,
    RecordingFileRole,
    RecordingRating,
    RecordingState,
    RoomRole,
    Rubric,
    User,
    UserRole,
    utcnow,
)
from recorder.storage import Storage, file_sha256

__all__ = [
    "KIND_LABELS",
    "LibraryFacets",
    "LibrarySearch",
    "add_comment",
    "can_comment",
    "can_rate",
    "can_read_reviews",
    "can_view",
    "create_pending_recording",
    "delete_recording",
    "export_csv",
    "export_json",
    "get_recording",
    "key_prefix",
    "library_facets",
    "list_comments",
    "list_ratings",
    "mark_recording_failed",
    "rate",
    "rating_summary",
    "register_recording",
    "rubric_for",
    "search_recordings",
    "set_published",
    "term_of",
    "visible_to",
]

KIND_LABELS = {
    LessonKind.DEDICATED: "专递课堂",
    LessonKind.FAMOUS_TEACHER: "名师课堂",
    LessonKind.FAMOUS_SCHOOL: "名校网络课堂",
}
_MIME_BY_SUFFIX = {
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".ogg": "audio/ogg",
    ".opus": "audio/ogg",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".vtt": "text/vtt",
    ".json": "application/json",
}


# ------------------------------------------------------------------ catalogue


def term_of(when: datetime, timezone: str = "Asia/Shanghai") -> str:
    """The school term of a moment: September–January is autumn (秋) of the year it began,
    February–August spring (春). January 2027 belongs to "2026秋"."""
    local = when.astimezone(ZoneInfo(timezone))
    if local.month >= 9:
        return f"{local.year}秋"
    if local.month == 1:
        return f"{local.year - 1}秋"
    return f"{local.year}春"


def normalize(text: str) -> str:
    """What both the stored search text and a query go through: NFKC (full-width letters
    and digits become ASCII), lower case, runs of white space made one space."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def _search_text(rec: Recording) -> str:
    schools = [rec.main_school, *(s["name"] for s in rec.receiving_schools)]
    parts = [
        rec.title,
        rec.subject,
        rec.grade,
        f"{rec.grade}{rec.subject}",  # so that 初二数学 matches as typed
        rec.teacher_name,
        *schools,
        KIND_LABELS.get(LessonKind(rec.kind), rec.kind),
        rec.kind,
        rec.term,
    ]
    return normalize(" ".join(p for p in parts if p))


def key_prefix(lesson_id: int) -> str:
    """Every object of a lesson's recording lives under this prefix."""
    return f"lessons/{lesson_id}/"


def _fill_from_lesson(rec: Recording, lesson: Lesson, started_at: datetime, duration_s: float):
    main = next((r for r in lesson.rooms if r.role == RoomRole.MAIN), None)
    receiving: list[dict[str, Any]] = []
    for room in sorted(lesson.rooms, key=lambda r: r.position):
        school = room.classroom.school
        if room.role == RoomRole.RECEIVING and all(s["id"] != school.id for s in receiving):
            receiving.append({"id": school.id, "name": school.name})
    timezone = main.classroom.school.timezone if main else "Asia/Shanghai"
    rec.title = lesson.title
    rec.kind = lesson.kind
    rec.subject = lesson.subject
    rec.grade = lesson.grade
    rec.teacher_name = lesson.teacher_name
    rec.main_school_id = main.classroom.school_id if main else None
    rec.main_school = main.classroom.school.name if main else ""
    rec.receiving_schools = receiving
    rec.started_at = started_at
    rec.duration_s = max(0.0, float(duration_s))
    try:
        rec.term = term_of(started_at, timezone)
    except (KeyError, ValueError):  # an unknown zone name: the national default
        rec.term = term_of(started_at)
    rec.search_text = _search_text(rec)
    rec.updated_at = utcnow()


def _lesson_times(lesson: Lesson) -> tuple[datetime, float]:
    start = lesson.started_at or lesson.opened_at or lesson.planned_start
    end = lesson.ended_at or lesson.planned_end
    return start, max(0.0, (end - start).total_seconds())


async def _load_lesson(db: AsyncSession, lesson_id: int) -> Lesson:
    lesson = await get_lesson(db, lesson_id)
    if lesson is None:
        raise NotFound(f"no lesson {lesson_id}", field="lesson_id")
    return lesson


async def _by_lesson(db: AsyncSession, lesson_id: int) -> Recording | None:
    return await db.scalar(sa.select(Recording).where(Recording.lesson_id == lesson_id))


def _new_recording(lesson: Lesson) -> Recording:
    # The kind changes defaults (docs/ARCHITECTURE.md): a 名校网络课堂 is broadcast widely, so its
    # recording starts published; the others wait for an admin.
    return Recording(
        lesson_id=lesson.id,
        state=RecordingState.PROCESSING.value,
        published=lesson.kind == LessonKind.FAMOUS_SCHOOL,
        receiving_schools=[],
        files=[],
    )


async def create_pending_recording(db: AsyncSession, lesson_id: int) -> Recording:
    """List an ended lesson at once (state processing); a ready entry is left alone."""
    lesson = await _load_lesson(db, lesson_id)
    rec = await _by_lesson(db, lesson_id)
    if rec is None:
        rec = _new_recording(lesson)
        _fill_from_lesson(rec, lesson, *_lesson_times(lesson))
        db.add(rec)
        await db.commit()
    return rec


async def mark_recording_failed(db: AsyncSession, lesson_id: int, reason: str = "") -> Recording:
    """Finalisation gave up: the entry stays listed (for admins) as failed."""
    rec = await create_pending_recording(db, lesson_id)
    rec.state = RecordingState.FAILED.value
    rec.updated_at = utcnow()
    await db.commit()
    return rec


def _manifest_path(final_dir: Path, relative: str) -> Path:
    if not relative or relative.startswith("/") or "\\" in relative:
        raise InvalidInput(f"manifest path {relative!r} is not relative", field="files.path")
    path = (final_dir / relative).resolve()
    if not path.is_relative_to(final_dir.resolve()) or not path.is_file():
        raise InvalidInput(f"manifest path {relative!r} is not a file in {final_dir}")
    return path


def _mime_of(path: Path) -> str:
    return _MIME_BY_SUFFIX.get(path.suffix.lower()) or (
        mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )


async def register_recording(
    db: AsyncSession, storage: Storage, *, lesson_id: int, final_dir: Path, manifest: dict
) -> Recording:
    """Store every file of a finalised lesson and make its catalogue entry ready.

    manifest = {"files": [{"path": relative to final_dir, "role", "classroom_id"?, "mime"?,
    "duration_s"?, "sha256"?}], "duration_s"?, "started_at"?: ISO 8601}. A file's sha256
    is computed when the manifest lacks it; the storage checks the stored copy against it.
    Idempotent: files already stored with the same digest are not sent again, files no
    longer in the manifest are removed, and the entry is updated, never duplicated.
    """
    lesson = await _load_lesson(db, lesson_id)
    entries: list[dict[str, Any]] = list(manifest.get("files", []))
    prefix = key_prefix(lesson_id)
    planned: list[tuple[dict[str, Any], Path, str]] = []
    for entry in entries:
        role = entry.get("role")
        if role not in RecordingFileRole.__members__.values():
            raise InvalidInput(f"unknown file role {role!r}", field="files.role")
        path = _manifest_path(final_dir, str(entry.get("path", "")))
        planned.append((entry, path, prefix + Path(entry["path"]).as_posix()))
    if len({key for _, _, key in planned}) != len(planned):
        raise InvalidInput("a path appears twice in the manifest", field="files.path")

    rec = await _by_lesson(db, lesson_id)
    if rec is None:
        rec = _new_recording(lesson)
        db.add(rec)
    started_at, duration_s = _lesson_times(lesson)
    if raw := manifest.get("started_at"):
        started_at = datetime.fromisoformat(raw)
        if started_at.tzinfo is None:  # the finaliser writes UTC; say so if it forgot
            started_at = started_at.replace(tzinfo=ZoneInfo("UTC"))
    if manifest.get("duration_s") is not None:
        duration_s = float(manifest["duration_s"])
    _fill_from_lesson(rec, lesson, started_at, duration_s)

    # Per-room files start where the room's first frame sits on the lesson clock.
    room_offsets = {
        room["classroom_id"]: float(room["offset_s"])
        for room in manifest.get("rooms", [])
        if room.get("offset_s") is not None and room.get("classroom_id") is not None
    }
    existing = {f.key: f for f in rec.files}
    wanted: set[str] = set()
    for entry, path, key in planned:
        wanted.add(key)
        sha256 = str(entry.get("sha256") or await asyncio.to_thread(file_sha256, path)).lower()
        size = (await asyncio.to_thread(path.stat)).st_size
        row = existing.get(key)
        if row is None or row.sha256 != sha256 or row.size != size or not await storage.exists(key):
            stored = await storage.put_file(key, path, sha256)
            size = stored.size
        if row is None:
            row = RecordingFile(key=key)
            rec.files.append(row)
        row.role = entry["role"]
        row.classroom_id = entry.get("classroom_id")
        row.size = size
        row.sha256 = sha256
        row.mime = entry.get("mime") or _mime_of(path)
        row.duration_s = entry.get("duration_s")
        offset = entry.get("offset_s", room_offsets.get(entry.get("classroom_id")))
        if offset is None and entry["role"] == "composite":
            offset = 0.0  # the composite is rendered on the lesson clock from its start
        row.offset_s = float(offset) if offset is not None else None
    for key, row in existing.items():
        if key not in wanted:
            await storage.delete(key)
            rec.files.remove(row)
    rec.state = RecordingState.READY.value
    await db.commit()
    return rec


async def get_recording(db: AsyncSession, recording_id: int) -> Recording | None:
    return await db.get(Recording, recording_id)


async def set_published(db: AsyncSession, recording_id: int, published: bool) -> Recording:
    rec = await get_recording(db, recording_id)
    if rec is None:
        raise NotFound(f"no recording {recording_id}")
    rec.published = published
    rec.updated_at = utcnow()
    await db.commit()
    return rec


async def delete_recording(db: AsyncSession, storage: Storage, recording_id: int) -> int:
    """Remove every stored object, then the entry with its files, comments and ratings.

    Objects go first: if the store fails half way, the entry remains and a second delete
    finishes the job, rather than rows gone and objects orphaned. Returns objects removed.
    """
    rec = await get_recording(db, recording_id)
    if rec is None:
        raise NotFound(f"no recording {recording_id}")
    removed = await storage.delete_prefix(key_prefix(rec.lesson_id))
    for row in rec.files:  # keys outside the prefix, should a future layout make any
        if not row.key.startswith(key_prefix(rec.lesson_id)) and await storage.delete(row.key):
            removed += 1
    await db.delete(rec)
    await db.commit()
    return removed


# ------------------------------------------------------------------ visibility


def _school_ids(rec: Recording) -> set[int]:
    ids = {s["id"] for s in rec.receiving_schools}
    if rec.main_school_id is not None:
        ids.add(rec.main_school_id)
    return ids


def _is_public(rec: Recording) -> bool:
    return (
        rec.published and rec.kind == LessonKind.FAMOUS_SCHOOL and rec.state == RecordingState.READY
    )


def _sees_all(user: User | None) -> bool:
    return user is not None and user.role in (UserRole.ADMIN, UserRole.REVIEWER)


def _is_member(user: User | None, rec: Recording) -> bool:
    return (
        user is not None
        and user.role in (UserRole.TEACHER, UserRole.SCHOOL_ADMIN)
        and user.school_id is not None
        and user.school_id in _school_ids(rec)
    )


def can_view(user: User | None, rec: Recording) -> bool:
    """May `user` (None: anonymous) see this entry and play its files?"""
    if _sees_all(user) or _is_public(rec) or _is_member(user, rec):
        return True
    return (
        user is not None
        and user.role != UserRole.DEVICE
        and rec.published
        and rec.state == RecordingState.READY
    )


def can_read_reviews(user: User | None, rec: Recording) -> bool:
    """Comments and ratings are teaching research, not public: reviewers, admins, and
    the staff of the schools that held the lesson."""
    return _sees_all(user) or _is_member(user, rec)


def can_comment(user: User | None, rec: Recording) -> bool:
    return _sees_all(user) or (
        user is not None and user.role == UserRole.TEACHER and _is_member(user, rec)
    )


def can_rate(user: User | None, rec: Recording) -> bool:
    return _sees_all(user)


def _school_took_part(school_id: int) -> sa.ColumnElement[bool]:
    return sa.exists(
        sa.select(1)
        .select_from(LessonRoom)
        .join(Classroom, Classroom.id == LessonRoom.classroom_id)
        .where(LessonRoom.lesson_id == Recording.lesson_id, Classroom.school_id == school_id)
    )


def visible_to(user: User | None) -> sa.ColumnElement[bool]:
    """The SQL form of can_view, for search."""
    ready = Recording.state == RecordingState.READY.value
    public = sa.and_(
        Recording.published.is_(True), Recording.kind == LessonKind.FAMOUS_SCHOOL.value, ready
    )
    if user is None or user.role == UserRole.DEVICE:
        return public
    if _sees_all(user):
        return sa.true()
    clause = sa.or_(public, sa.and_(Recording.published.is_(True), ready))
    if user.role in (UserRole.TEACHER, UserRole.SCHOOL_ADMIN) and user.school_id is not None:
        clause = sa.or_(clause, _school_took_part(user.school_id))
    return clause


# ---------------------------------------------------------------------- search


_SORTS = {"date": Recording.started_at, "duration": Recording.duration_s, "title": None}


@dataclass(frozen=True)
class LibrarySearch:
    q: str | None = None
    subject: str | None = None
    grade: str | None = None
    kind: str | None = None
    teacher: str | None = None
    school_id: int | None = None  # main or receiving
    start: datetime | None = None  # started_at >= start
    end: datetime | None = None  # started_at < end
    term: str | None = None
    published: bool | None = None
    state: str | None = None
    sort: str = "-date"  # date | duration | title, "-" for descending
    limit: int = 50
    offset: int = 0


def _like_escape(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_recordings(
    db: AsyncSession, search: LibrarySearch, user: User | None
) -> tuple[list[Recording], int]:
    """Entries `user` may see that match `search`, one page of them, and how many match."""
    where: list[sa.ColumnElement[bool]] = [visible_to(user)]
    for term in normalize(search.q or "").split(" "):
        if term:
            where.append(Recording.search_text.like(f"%{_like_escape(term)}%", escape="\\"))
    for column, value in (
        (Recording.subject, search.subject),
        (Recording.grade, search.grade),
        (Recording.kind, search.kind),
        (Recording.teacher_name, search.teacher),
        (Recording.term, search.term),
        (Recording.state, search.state),
    ):
        if value is not None:
            where.append(column == value)
    if search.published is not None:
        where.append(Recording.published.is_(search.published))
    if search.school_id is not None:
        where.append(_school_took_part(search.school_id))
    if search.start is not None:
        where.append(Recording.started_at >= search.start)
    if search.end is not None:
        where.append(Recording.started_at < search.end)

    descending = search.sort.startswith("-")
    name = search.sort.lstrip("-")
    if name not in _SORTS:
        raise InvalidInput(f"sort by {', '.join(_SORTS)}", field="sort")
    sort_by: Any = _SORTS[name]
    if name == "title":
        # Code-point order on both engines: PostgreSQL's default collation would sort
        # Chinese titles differently from SQLite.
        is_pg = db.get_bind().dialect.name == "postgresql"
        sort_by = Recording.title.collate("C") if is_pg else Recording.title
    order = [sort_by.desc() if descending else sort_by.asc()]
    order.append(Recording.id.desc() if descending else Recording.id.asc())

    total = await db.scalar(sa.select(sa.func.count()).select_from(Recording).where(*where))
    rows = await db.scalars(
        sa.select(Recording)
        .where(*where)
        .order_by(*order)
        .limit(search.limit)
        .offset(search.offset)
    )
    return list(rows.all()), int(total or 0)


@dataclass(frozen=True)
class LibraryFacets:
    """The values the search filters can take among the entries a caller may see."""

    subjects: list[str]
    grades: list[str]
    teachers: list[str]
    terms: list[str]
    schools: list[tuple[int, str]]  # (id, name), main and receiving schools


async def library_facets(db: AsyncSession, user: User | None) -> LibraryFacets:
    """Distinct subjects, grades, teachers, terms and schools of the entries `user` may see.

    The page offers these as filter choices, so a filter never names a value with no
    lesson behind it, and an anonymous visitor learns no school or teacher of a private
    lesson. Schools come from each entry's snapshot (the receiving ones are JSON), so the
    rows are gathered here rather than with engine-specific JSON SQL; a school renamed
    since keeps the name of its latest lesson. Subjects, grades and teachers are sorted
    by code point, terms newest first.
    """
    rows = await db.execute(
        sa.select(
            Recording.subject,
            Recording.grade,
            Recording.teacher_name,
            Recording.term,
            Recording.main_school_id,
            Recording.main_school,
            Recording.receiving_schools,
        )
        .where(visible_to(user))
        .order_by(Recording.started_at, Recording.id)
    )
    subjects: set[str] = set()
    grades: set[str] = set()
    teachers: set[str] = set()
    terms: set[str] = set()
    schools: dict[int, str] = {}
    for subject, grade, teacher, term, main_id, main_name, receiving in rows:
        subjects.add(subject)
        grades.add(grade)
        teachers.add(teacher)
        terms.add(term)
        if main_id is not None:
            schools[main_id] = main_name
        for school in receiving or ():
            schools[int(school["id"])] = str(school["name"])
    return LibraryFacets(
        subjects=sorted(x for x in subjects if x),
        grades=sorted(x for x in grades if x),
        teachers=sorted(x for x in teachers if x),
        terms=sorted((x for x in terms if x), reverse=True),
        schools=sorted(schools.items(), key=lambda item: (item[1], item[0])),
    )


# --------------------------------------------------------------------- reviews


async def add_comment(
    db: AsyncSession, rec: Recording, user: User, *, t_s: float, text: str
) -> RecordingComment:
    """A note at t_s seconds into the lesson; t_s must fall within the recording."""
    if t_s < 0 or (rec.state == RecordingState.READY and t_s > rec.duration_s):
        raise InvalidInput(
            f"t_s must be between 0 and the recording's {rec.duration_s:g} s", field="t_s"
        )
    comment = RecordingComment(
        recording_id=rec.id,
        user_id=user.id,
        author_name=user.display_name or user.username,
        t_s=float(t_s),
        text=text,
    )
    db.add(comment)
    await db.commit()
    return comment


async def list_comments(db: AsyncSession, recording_id: int) -> list[RecordingComment]:
    """In lesson order (by moment), then as written."""
    rows = await db.scalars(
        sa.select(RecordingComment)
        .where(RecordingComment.recording_id == recording_id)
        .order_by(RecordingComment.t_s, RecordingComment.id)
    )
    return list(rows.all())


async def rubric_for(db: AsyncSession, rec: Recording | None = None) -> Rubric:
    """The rubric a recording is rated on: today the default 评课量表 for every entry."""
    rubric = await db.scalar(sa.select(Rubric).where(Rubric.is_default.is_(True)).limit(1))
    if rubric is None:
        raise NotFound("no default rubric; migrations seed one")
    return rubric


def _weighted_total(rubric: Rubric, scores: dict[str, float]) -> float:
    weights = sum(c["weight"] for c in rubric.criteria) or 1
    total = sum(scores[c["key"]] / c["max_score"] * c["weight"] for c in rubric.criteria)
    return round(total / weights * 100, 2)


async def rate(
    db: AsyncSession, rec: Recording, user: User, *, scores: dict[str, float], comment: str = ""
) -> RecordingRating:
    """Create or replace `user`'s rating: a score for every criterion of the rubric."""
    rubric = await rubric_for(db, rec)
    keys = {c["key"]: c for c in rubric.criteria}
    for key in scores:
        if key not in keys:
            raise InvalidInput(f"no criterion {key!r} in the rubric", field=f"scores.{key}")
    for key, criterion in keys.items():
        if key not in scores:
            raise InvalidInput(f"score {criterion['name']} ({key})", field=f"scores.{key}")
        if not 0 <= scores[key] <= criterion["max_score"]:
            raise InvalidInput(
                f"{key} is scored 0 to {criterion['max_score']}", field=f"scores.{key}"
            )
    rating = await db.scalar(
        sa.select(RecordingRating).where(
            RecordingRating.recording_id == rec.id, RecordingRating.user_id == user.id
        )
    )
    if rating is None:
        rating = RecordingRating(recording_id=rec.id, user_id=user.id)
        db.add(rating)
    rating.author_name = user.display_name or user.username
    rating.rubric_id = rubric.id
    rating.scores = {k: float(scores[k]) for k in keys}
    rating.total = _weighted_total(rubric, rating.scores)
    rating.comment = comment
    rating.updated_at = utcnow()
    await db.commit()
    return rating


async def list_ratings(db: AsyncSession, recording_id: int) -> list[RecordingRating]:
    rows = await db.scalars(
        sa.select(RecordingRating)
        .where(RecordingRating.recording_id == recording_id)
        .order_by(RecordingRating.id)
    )
    return list(rows.all())


def rating_summary(rubric: Rubric, ratings: Sequence[RecordingRating]) -> dict[str, Any]:
    """Count, mean weighted total (0–100) and mean score per criterion."""
    n = len(ratings)
    return {
        "count": n,
        "average_total": round(sum(r.total for r in ratings) / n, 2) if n else None,
        "criteria": [
            {
                "key": c["key"],
                "name": c["name"],
                "weight": c["weight"],
                "max_score": c["max_score"],
                "average": round(sum(r.scores.get(c["key"], 0) for r in ratings) / n, 2)
                if n
                else None,
            }
            for c in rubric.criteria
        ],
    }


# ---------------------------------------------------------------------- export


def _clock(t_s: float) -> str:
    return str(timedelta(seconds=round(t_s)))


async def _export_data(db: AsyncSession, rec: Recording) -> dict[str, Any]:
    rubric = await rubric_for(db, rec)
    comments = await list_comments(db, rec.id)
    ratings = await list_ratings(db, rec.id)
    return {
        "recording": {
            "id": rec.id,
            "lesson_id": rec.lesson_id,
            "title": rec.title,
            "subject": rec.subject,
            "grade": rec.grade,
            "teacher_name": rec.teacher_name,
            "started_at": rec.started_at.isoformat(),
            "duration_s": rec.duration_s,
        },
        "rubric": {"name": rubric.name, "criteria": rubric.criteria},
        "comments": [
            {
                "author": c.author_name,
                "t_s": c.t_s,
                "at": _clock(c.t_s),
                "text": c.text,
                "created_at": c.created_at.isoformat(),
            }
            for c in comments
        ],
        "ratings": [
            {
                "author": r.author_name,
                "scores": r.scores,
                "total": r.total,
                "comment": r.comment,
                "updated_at": r.updated_at.isoformat(),
            }
            for r in ratings
        ],
        "summary": rating_summary(rubric, ratings),
    }


async def export_json(db: AsyncSession, rec: Recording) -> bytes:
    data = await _export_data(db, rec)
    return json.dumps(data, ensure_ascii=False, indent=2).encode()


async def export_csv(db: AsyncSession, rec: Recording) -> bytes:
    """One table of comments then ratings, UTF-8 with a BOM so that Excel reads Chinese."""
    data = await _export_data(db, rec)
    criteria = data["rubric"]["criteria"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "类型",
            "作者",
            "时间点(秒)",
            "时间点",
            "内容",
            "总分",
            *(c["name"] for c in criteria),
            "时间",
        ]
    )
    for c in data["comments"]:
        writer.writerow(
            [
                "评论",
                c["author"],
                c["t_s"],
                c["at"],
                c["text"],
                "",
                *([""] * len(criteria)),
                c["created_at"],
            ]
        )
    for r in data["ratings"]:
        writer.writerow(
            [
                "评分",
                r["author"],
                "",
                "",
                r["comment"],
                r["total"],
                *(r["scores"].get(c["key"], "") for c in criteria),
                r["updated_at"],
            ]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")
