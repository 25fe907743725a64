"""Schools, their classrooms, and pairings (结对) of one main classroom with 1–4 receiving ones.

These are the admin's registers. Every function commits its own change, so the API, the
CLI and demo scripts can call them directly with a fresh session; an edit is checked whole
before anything is written, so a refused edit leaves the row as it was.

Removal: a row nothing refers to (a typo, a test entry) is deleted; one that lessons,
recordings, accounts or pairings refer to is refused with what refers to it, and can be
archived (`active` false) instead, which keeps history intact and offers it for nothing
new: no classroom in an archived school, no pairing with an archived classroom, no lesson
on an archived pairing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import pairing_rooms
from classroom.models import (
    Classroom,
    Conflict,
    InvalidInput,
    Lesson,
    LessonRoom,
    LessonState,
    NotFound,
    Pairing,
    PairingMember,
    School,
    SchoolKind,
)
from classroom.schema import METADATA

MAX_RECEIVING = 4  # 1拖4: one main classroom teaches at most four receiving rooms
# Lessons that still hold their rooms and their pairing: archiving either would strand them.
UPCOMING_STATES = (LessonState.SCHEDULED.value, LessonState.OPEN.value, LessonState.LIVE.value)

# {field: [old, new]} for every field an edit changed: what the audit trail records.
Changes = dict[str, list[Any]]


async def create_school(
    db: AsyncSession,
    *,
    name: str,
    kind: SchoolKind | str,
    region: str = "",
    timezone: str = "Asia/Shanghai",
) -> School:
    school = School(
        name=name, kind=_school_kind(kind).value, region=region, timezone=_timezone(timezone)
    )
    db.add(school)
    await db.commit()
    return school


def _school_kind(kind: SchoolKind | str) -> SchoolKind:
    try:
        return SchoolKind(kind)
    except ValueError:
        raise InvalidInput.because("unknown_school_kind", field="kind", kind=kind) from None


def _timezone(timezone: str) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput.because("unknown_timezone", field="timezone", zone=timezone) from None
    return timezone


async def get_school(db: AsyncSession, school_id: int) -> School | None:
    return await db.get(School, school_id)


async def list_schools(db: AsyncSession) -> list[School]:
    return list((await db.scalars(sa.select(School).order_by(School.id))).all())


async def create_classroom(db: AsyncSession, *, school_id: int, name: str) -> Classroom:
    await _open_school(db, school_id)
    await _check_name_free(db, school_id, name)
    classroom = Classroom(school_id=school_id, name=name)
    db.add(classroom)
    try:
        await db.commit()
    except IntegrityError:  # a concurrent insert won the race past the check above
        await db.rollback()
        raise Conflict.because(
            "classroom_name_taken", field="name", school_id=school_id, name=name
        ) from None
    await db.refresh(classroom, ["school"])
    return classroom


async def get_classroom(db: AsyncSession, classroom_id: int) -> Classroom | None:
    return await db.get(Classroom, classroom_id)


async def list_classrooms(db: AsyncSession, *, school_id: int | None = None) -> list[Classroom]:
    query = sa.select(Classroom).order_by(Classroom.id)
    if school_id is not None:
        query = query.where(Classroom.school_id == school_id)
    return list((await db.scalars(query)).all())


async def create_pairing(
    db: AsyncSession,
    *,
    name: str,
    main_classroom_id: int,
    receiving_classroom_ids: Sequence[int],
) -> Pairing:
    """Pair a main classroom with 1–4 receiving classrooms, in the order given.

    The order is the rooms' position: it decides their place on the teacher's screen.
    """
    receiving = list(receiving_classroom_ids)
    await check_rooms(db, main_classroom_id, receiving)
    pairing = Pairing(
        name=name,
        main_classroom_id=main_classroom_id,
        members=[
            PairingMember(classroom_id=c, position=i) for i, c in enumerate(receiving, start=1)
        ],
    )
    db.add(pairing)
    await db.commit()
    return pairing


async def get_pairing(db: AsyncSession, pairing_id: int) -> Pairing | None:
    return await db.get(Pairing, pairing_id)


async def list_pairings(db: AsyncSession) -> list[Pairing]:
    return list((await db.scalars(sa.select(Pairing).order_by(Pairing.id))).all())


# ------------------------------------------------------------------ checks


async def check_rooms(
    db: AsyncSession,
    main_classroom_id: int,
    receiving: Sequence[int],
    *,
    allow_archived: bool = False,
) -> dict[int, Classroom]:
    """The rooms of a pairing or a lesson, checked: 1–4 distinct receiving rooms besides
    the main one, each existing and (unless `allow_archived`) not archived. Raises with
    the field at fault."""
    if not 1 <= len(receiving) <= MAX_RECEIVING:
        raise InvalidInput.because(
            "receiving_count",
            field="receiving_classroom_ids",
            max=MAX_RECEIVING,
            count=len(receiving),
        )
    if len(set(receiving)) != len(receiving):
        raise InvalidInput.because("classroom_listed_twice", field="receiving_classroom_ids")
    if main_classroom_id in receiving:
        raise InvalidInput.because("main_also_receiving", field="receiving_classroom_ids")
    rows = await db.scalars(
        sa.select(Classroom).where(Classroom.id.in_([main_classroom_id, *receiving]))
    )
    found = {c.id: c for c in rows.all()}
    if main_classroom_id not in found:
        raise NotFound.because(
            "classroom_not_found", field="main_classroom_id", id=main_classroom_id
        )
    if missing := [c for c in receiving if c not in found]:
        raise NotFound.because(
            "classrooms_not_found",
            field="receiving_classroom_ids",
            ids=", ".join(map(str, missing)),
        )
    if allow_archived:
        return found
    if not found[main_classroom_id].active:
        raise Conflict.because(
            "classroom_archived", field="main_classroom_id", id=main_classroom_id
        )
    if archived := [c for c in receiving if not found[c].active]:
        raise Conflict.because(
            "classrooms_archived",
            field="receiving_classroom_ids",
            ids=", ".join(map(str, archived)),
        )
    return found


async def _open_school(db: AsyncSession, school_id: int) -> School:
    """The school a classroom goes into: it must exist and not be archived."""
    school = await db.get(School, school_id)
    if school is None:
        raise NotFound.because("school_not_found", field="school_id", id=school_id)
    if not school.active:
        raise Conflict.because("school_archived", field="school_id", id=school_id)
    return school


async def _check_name_free(
    db: AsyncSession, school_id: int, name: str, *, other_than: int | None = None
) -> None:
    query = sa.select(Classroom.id).where(Classroom.school_id == school_id, Classroom.name == name)
    if other_than is not None:
        query = query.where(Classroom.id != other_than)
    if await db.scalar(query) is not None:
        raise Conflict.because(
            "classroom_name_taken", field="name", school_id=school_id, name=name
        )


async def _locked(db: AsyncSession, model: type[Any], ident: int, what: str) -> Any:
    """The row, locked for the rest of the transaction (PostgreSQL; SQLite serialises
    writers anyway), so a concurrent edit or booking cannot slip past our checks."""
    row = await db.scalar(
        sa.select(model)
        .where(model.id == ident)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound.because(f"{what}_not_found", id=ident)
    return row


def _apply(row: Any, values: dict[str, Any]) -> Changes:
    """Set the attributes that differ; None means "leave as is"."""
    changes: Changes = {}
    for name, value in values.items():
        if value is not None and getattr(row, name) != value:
            changes[name] = [getattr(row, name), value]
            setattr(row, name, value)
    return changes


async def _commit(db: AsyncSession, what: str) -> None:
    try:
        await db.commit()
    except IntegrityError:  # a concurrent change won the race past our checks
        await db.rollback()
        raise Conflict.because("changed_meanwhile", what=what) from None


# ------------------------------------------------------------------ what refers to a row

# Rows that belong to another (a pairing's member, a lesson's room) count as their owner.
_OWNER = {
    "pairing_members": ("pairings", "pairing_id"),
    "lesson_rooms": ("lessons", "lesson_id"),
    "room_sessions": ("lessons", "lesson_id"),
    "series_occurrences": ("lessons", "lesson_id"),
}


async def usage(db: AsyncSession, table: sa.Table, ident: int) -> dict[str, int]:
    """What refers to row `ident` of `table` and would stop its deletion: {"lessons": 3}.

    Read from the foreign keys of the whole schema (cascading ones excepted: those rows go
    with it), so a table added later is counted without anyone remembering to list it.
    """
    found: dict[str, set[Any]] = {}
    for other in METADATA.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is not table or (fk.ondelete or "").upper() in (
                "CASCADE",
                "SET NULL",
            ):
                continue
            label, owner_column = _OWNER.get(other.name, (other.name, None))
            if owner_column is not None:
                column = other.c[owner_column]
            else:
                column = next(iter(other.primary_key.columns))
            ids = await db.scalars(sa.select(column).where(fk.parent == ident).distinct())
            found.setdefault(label, set()).update(ids.all())
    return {label: len(ids) for label, ids in sorted(found.items()) if ids}


def _in_use(what: str, ident: int, uses: dict[str, int]) -> Conflict:
    listed = ", ".join(f"{count} {label}" for label, count in uses.items())
    return Conflict.because("in_use", what=what, id=ident, uses=listed)


async def _delete(db: AsyncSession, row: Any, what: str) -> None:
    table, ident = row.__table__, row.id
    uses = await usage(db, table, ident)
    if uses:
        raise _in_use(what, ident, uses)
    await db.delete(row)
    try:
        await db.commit()
    except IntegrityError:  # referred to meanwhile
        await db.rollback()
        raise _in_use(what, ident, await usage(db, table, ident) or {"rows": 1}) from None


# ------------------------------------------------------------------ schools


async def update_school(
    db: AsyncSession,
    school_id: int,
    *,
    name: str | None = None,
    kind: SchoolKind | str | None = None,
    region: str | None = None,
    timezone: str | None = None,
    active: bool | None = None,
) -> tuple[School, Changes]:
    """Change what is given (None: unchanged). Archiving waits until its classrooms are."""
    school = await _locked(db, School, school_id, "school")
    values = {
        "name": name,
        "kind": _school_kind(kind).value if kind is not None else None,
        "region": region,
        "timezone": _timezone(timezone) if timezone is not None else None,
        "active": active,
    }
    if active is False and school.active:
        count = await db.scalar(
            sa.select(sa.func.count())
            .select_from(Classroom)
            .where(Classroom.school_id == school_id, Classroom.active)
        )
        if count:
            raise Conflict.because(
                "school_has_classrooms", field="active", school_id=school_id, count=count
            )
    changes = _apply(school, values)
    await _commit(db, f"school {school_id}")
    return school, changes


async def delete_school(db: AsyncSession, school_id: int) -> None:
    """Delete a school nothing refers to (no classrooms, accounts or recordings)."""
    await _delete(db, await _locked(db, School, school_id, "school"), "school")


# ------------------------------------------------------------------ classrooms


async def update_classroom(
    db: AsyncSession,
    classroom_id: int,
    *,
    name: str | None = None,
    school_id: int | None = None,
    active: bool | None = None,
) -> tuple[Classroom, Changes]:
    """Rename, move or archive a classroom (None: unchanged).

    A classroom with lessons or pairings does not move to another school: its history
    would change school with it. Archiving waits until no active pairing and no lesson to
    come uses it; restoring needs its school active.
    """
    classroom = await _locked(db, Classroom, classroom_id, "classroom")
    target_school = school_id if school_id is not None else classroom.school_id
    if school_id is not None and school_id != classroom.school_id:
        await _open_school(db, school_id)
        uses = await usage(db, Classroom.__table__, classroom_id)
        if uses:
            listed = ", ".join(f"{count} {label}" for label, count in uses.items())
            raise Conflict.because(
                "classroom_in_use_move", field="school_id", classroom_id=classroom_id, uses=listed
            )
    if (name is not None and name != classroom.name) or target_school != classroom.school_id:
        await _check_name_free(db, target_school, name or classroom.name, other_than=classroom_id)
    if active is False and classroom.active:
        await _check_classroom_idle(db, classroom_id)
    if active is True and not classroom.active and school_id is None:
        await _open_school(db, classroom.school_id)
    changes = _apply(classroom, {"name": name, "school_id": school_id, "active": active})
    await _commit(db, f"classroom {classroom_id}")
    await db.refresh(classroom, ["school"])
    return classroom, changes


async def _check_classroom_idle(db: AsyncSession, classroom_id: int) -> None:
    member = sa.select(PairingMember.pairing_id).where(PairingMember.classroom_id == classroom_id)
    pairing = await db.scalar(
        sa.select(Pairing)
        .where(
            Pairing.active,
            sa.or_(Pairing.main_classroom_id == classroom_id, Pairing.id.in_(member)),
        )
        .order_by(Pairing.id)
        .limit(1)
    )
    if pairing is not None:
        raise Conflict.because(
            "classroom_in_pairing",
            field="active",
            classroom_id=classroom_id,
            pairing_id=pairing.id,
            pairing=pairing.name,
        )
    lesson = await db.scalar(
        sa.select(Lesson)
        .join(LessonRoom, LessonRoom.lesson_id == Lesson.id)
        .where(LessonRoom.classroom_id == classroom_id, Lesson.state.in_(UPCOMING_STATES))
        .order_by(Lesson.planned_start)
        .limit(1)
    )
    if lesson is not None:
        raise Conflict.because(
            "classroom_lesson_to_come",
            field="active",
            classroom_id=classroom_id,
            lesson_id=lesson.id,
            title=lesson.title,
        )


async def delete_classroom(db: AsyncSession, classroom_id: int) -> None:
    """Delete a classroom no pairing, lesson or recording refers to."""
    await _delete(db, await _locked(db, Classroom, classroom_id, "classroom"), "classroom")


# ------------------------------------------------------------------ pairings


async def update_pairing(
    db: AsyncSession,
    pairing_id: int,
    *,
    name: str | None = None,
    main_classroom_id: int | None = None,
    receiving_classroom_ids: Sequence[int] | None = None,
    active: bool | None = None,
    now: datetime | None = None,
) -> tuple[Pairing, Changes, list[int]]:
    """Rename, re-room or archive a pairing (None: unchanged).

    New rooms go to the pairing's scheduled lessons to come as well, unless a lesson's rooms
    were changed by hand (classroom/pairing_rooms.py); if a new room is taken at one of
    their times, the edit is refused whole. Lessons open, under way or over keep the rooms
    they had. Archiving waits until no lesson to come is scheduled on it.
    Returns the pairing, what changed, and the ids of the lessons that followed.
    """
    pairing = await _locked(db, Pairing, pairing_id, "pairing")
    main = main_classroom_id if main_classroom_id is not None else pairing.main_classroom_id
    old_receiving = [m.classroom_id for m in pairing.members]
    receiving = (
        list(receiving_classroom_ids) if receiving_classroom_ids is not None else old_receiving
    )
    will_be_active = pairing.active if active is None else active
    rooms_change = main != pairing.main_classroom_id or receiving != old_receiving
    if rooms_change or (will_be_active and not pairing.active):
        # An archived pairing may keep archived rooms, but not invalid ones.
        await check_rooms(db, main, receiving, allow_archived=not will_be_active)
    if active is False and pairing.active:
        lesson = await db.scalar(
            sa.select(Lesson)
            .where(Lesson.pairing_id == pairing_id, Lesson.state.in_(UPCOMING_STATES))
            .order_by(Lesson.planned_start)
            .limit(1)
        )
        if lesson is not None:
            raise Conflict.because(
                "pairing_lesson_to_come",
                field="active",
                pairing_id=pairing_id,
                lesson_id=lesson.id,
                title=lesson.title,
            )
    rerouted: list[int] = []
    if rooms_change:
        rerouted = await pairing_rooms.follow_new_rooms(
            db,
            pairing_id,
            [pairing.main_classroom_id, *old_receiving],
            [main, *receiving],
            field="main_classroom_id"
            if main != pairing.main_classroom_id
            else "receiving_classroom_ids",
            now=now,
        )
    changes = _apply(
        pairing, {"name": name, "main_classroom_id": main_classroom_id, "active": active}
    )
    if receiving != old_receiving:
        changes["receiving_classroom_ids"] = [old_receiving, receiving]
        # Two steps in one transaction: the old members go before the new ones arrive,
        # since a room kept at another position has the same primary key.
        pairing.members.clear()
        await db.flush()
        pairing.members.extend(
            PairingMember(classroom_id=c, position=i) for i, c in enumerate(receiving, start=1)
        )
    await _commit(db, f"pairing {pairing_id}")
    return pairing, changes, rerouted


async def delete_pairing(db: AsyncSession, pairing_id: int) -> None:
    """Delete a pairing no lesson (or lesson series) was scheduled on."""
    await _delete(db, await _locked(db, Pairing, pairing_id, "pairing"), "pairing")
