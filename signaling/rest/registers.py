"""The registers: schools, classrooms and pairings (结对).

A school admin and a teacher see their own school; a pairing is theirs to read when one
of its classrooms is in their school, to change when its main one is. PATCH changes only
the fields sent; DELETE removes a row nothing refers to, and answers 409 naming what does
otherwise (archive it with PATCH {"active": false} instead). Every change is audited.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import sqlalchemy as sa
from msgspec import UNSET, Meta, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from classroom import audit, schools
from classroom.models import (
    Classroom,
    NotFound,
    Pairing,
    School,
    UserRole,
)
from signaling.rest.auth import (
    can_schedule,
    forbidden,
    is_admin,
    require_school,
)
from signaling.rest.kit import SCHOOL_ACCOUNTS, STAFF, Call, audit_change, not_found, sent_fields
from signaling.rest.openapi import Route
from signaling.rest.schemas import Deleted, Id, Name, Request, Response, SchoolKindName, from_row

# -------------------------------------------------------------- schemas


class SchoolIn(Request):
    name: Name
    kind: SchoolKindName
    region: Annotated[str, Meta(max_length=200)] = ""
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "Asia/Shanghai"


class SchoolOut(Response):
    id: int
    name: str
    kind: SchoolKindName
    region: str
    timezone: str
    active: bool = True  # false: archived (kept for history, offered for nothing new)


class SchoolPatch(Request):
    """Only the fields sent change; `active: false` archives, `true` restores."""

    name: Name | UnsetType = UNSET
    kind: SchoolKindName | UnsetType = UNSET
    region: Annotated[str, Meta(max_length=200)] | UnsetType = UNSET
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class SchoolList(Response):
    items: list[SchoolOut]


class ClassroomIn(Request):
    school_id: Id
    name: Name


class ClassroomOut(Response):
    id: int
    school_id: int
    school_name: str
    name: str
    active: bool = True


class ClassroomPatch(Request):
    """Only the fields sent change. Moving to another school: admins, and only a classroom
    no lesson or pairing uses."""

    name: Name | UnsetType = UNSET
    school_id: Id | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class ClassroomList(Response):
    items: list[ClassroomOut]


class ClassroomQuery(Request):
    school_id: Id | None = None


class PairingIn(Request):
    name: Name
    main_classroom_id: Id
    # In screen order; 1拖4 means at most four.
    receiving_classroom_ids: Annotated[list[Id], Meta(min_length=1, max_length=4)]


class PairingOut(Response):
    id: int
    name: str
    main_classroom_id: int
    receiving_classroom_ids: list[int]
    active: bool = True


class PairingPatched(PairingOut):
    """An edited pairing, and the lessons to come that followed it to its new rooms."""

    lessons_rerouted: list[int] = msgspec.field(default_factory=list)


# In screen order; 1拖4 means at most four.
ReceivingIds = Annotated[list[Id], Meta(min_length=1, max_length=4)]


class PairingPatch(Request):
    """Only the fields sent change; new rooms also go to its scheduled lessons to come
    whose rooms were not changed by hand (refused whole if one would be double-booked)."""

    name: Name | UnsetType = UNSET
    main_classroom_id: Id | UnsetType = UNSET
    receiving_classroom_ids: ReceivingIds | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class PairingList(Response):
    items: list[PairingOut]

def _school_out(school: School) -> SchoolOut:
    return from_row(SchoolOut, school)


def _classroom_out(classroom: Classroom) -> ClassroomOut:
    return from_row(ClassroomOut, classroom, school_name=classroom.school.name)


def _pairing_out(pairing: Pairing) -> PairingOut:
    return from_row(
        PairingOut, pairing, receiving_classroom_ids=[m.classroom_id for m in pairing.members]
    )


# ------------------------------------------------------------- handlers
# A school admin and a teacher see their own school; a pairing or a lesson is theirs to
# read when one of its classrooms is in their school, to change when its main one is.


async def school_of_classrooms(db: AsyncSession, ids: list[int]) -> dict[int, int]:
    rows = await db.execute(
        sa.select(Classroom.id, Classroom.school_id).where(Classroom.id.in_(ids))
    )
    return {cid: sid for cid, sid in rows.all()}


def pairing_classrooms(pairing: Pairing) -> list[int]:
    return [pairing.main_classroom_id, *(m.classroom_id for m in pairing.members)]


async def list_schools(call: Call) -> SchoolList:
    """Admins see every school; school staff their own."""
    async with call.db() as db:
        rows = await schools.list_schools(db)
    if not is_admin(call.me):
        rows = [x for x in rows if x.id == call.me.school_id]
    return SchoolList(items=[_school_out(x) for x in rows])


async def create_school(call: Call) -> SchoolOut:
    body: SchoolIn = call.body
    async with call.db() as db:
        school = await schools.create_school(
            db, name=body.name, kind=body.kind, region=body.region, timezone=body.timezone
        )
        await audit.record(
            db, call.me, "school_created", f"school:{school.id}", {"name": school.name}, call.remote
        )
    return _school_out(school)


async def get_school(call: Call) -> SchoolOut:
    async with call.db() as db:
        school = await schools.get_school(db, call.id())
    if school is None:
        raise not_found("school", call.id())
    require_school(call.me, school.id)
    return _school_out(school)


async def list_classrooms(call: Call) -> ClassroomList:
    """Admins see every classroom; school staff and devices their school's."""
    query: ClassroomQuery = call.query
    school_id = query.school_id
    if not is_admin(call.me):
        if school_id is not None:
            require_school(call.me, school_id)
        school_id = call.me.school_id or 0
    async with call.db() as db:
        rows = await schools.list_classrooms(db, school_id=school_id)
    return ClassroomList(items=[_classroom_out(c) for c in rows])


async def create_classroom(call: Call) -> ClassroomOut:
    """Admins register classrooms anywhere; a school admin only in their own school."""
    body: ClassroomIn = call.body
    require_school(call.me, body.school_id)
    async with call.db() as db:
        classroom = await schools.create_classroom(db, school_id=body.school_id, name=body.name)
        await audit.record(
            db,
            call.me,
            "classroom_created",
            f"classroom:{classroom.id}",
            {"school_id": body.school_id, "name": body.name},
            call.remote,
        )
    return _classroom_out(classroom)


async def list_pairings(call: Call) -> PairingList:
    """Admins see every pairing; school staff those with a classroom of their school."""
    async with call.db() as db:
        rows = await schools.list_pairings(db)
        if not is_admin(call.me):
            ids = sorted({c for p in rows for c in pairing_classrooms(p)})
            school_of = await school_of_classrooms(db, ids)
            rows = [
                p
                for p in rows
                if call.me.school_id in {school_of.get(c) for c in pairing_classrooms(p)}
            ]
    return PairingList(items=[_pairing_out(p) for p in rows])


ACROSS_SCHOOLS = "pairings across schools are made by the district admin (教育局)"


async def require_rooms_of_school(
    call: Call, db: AsyncSession, ids: list[int], why: str = ACROSS_SCHOOLS
) -> None:
    """403 unless every classroom of `ids` that exists is in the school admin's school.

    A pairing books its classrooms' time, lesson after lesson: pairing a classroom of
    another school takes that school's rooms without asking it. Pairings across schools
    (专递课堂 between a city and a rural school, the usual case) are the district admin's
    (教育局) to make and change; a school admin pairs the classrooms of their school only.
    Unknown ids are left to the register's own 404, after this check.
    """
    if is_admin(call.me):
        return
    school_of = await school_of_classrooms(db, ids)
    foreign = sorted({c for c in ids if c in school_of and school_of[c] != call.me.school_id})
    if foreign:
        listed = ", ".join(map(str, foreign))
        raise forbidden(f"classroom {listed} is not your school's; {why}")


async def create_pairing(call: Call) -> PairingOut:
    """Admins pair any classrooms; a school admin pairs classrooms of their school only
    (see require_rooms_of_school)."""
    body: PairingIn = call.body
    async with call.db() as db:
        if not is_admin(call.me):
            main = await schools.get_classroom(db, body.main_classroom_id)
            if main is None:
                raise NotFound.because(
                    "classroom_not_found", field="main_classroom_id", id=body.main_classroom_id
                )
            require_school(call.me, main.school_id)
            await require_rooms_of_school(call, db, body.receiving_classroom_ids)
        pairing = await schools.create_pairing(
            db,
            name=body.name,
            main_classroom_id=body.main_classroom_id,
            receiving_classroom_ids=body.receiving_classroom_ids,
        )
        await audit.record(db, call.me, "pairing_created", f"pairing:{pairing.id}", {}, call.remote)
    return _pairing_out(pairing)


async def get_pairing(call: Call) -> PairingOut:
    async with call.db() as db:
        pairing = await schools.get_pairing(db, call.id())
        if pairing is None:
            raise not_found("pairing", call.id())
        if not is_admin(call.me):
            school_of = await school_of_classrooms(db, pairing_classrooms(pairing))
            if call.me.school_id not in set(school_of.values()):
                raise forbidden(f"pairing {pairing.id} has no classroom of your school")
    return _pairing_out(pairing)


async def update_school(call: Call) -> SchoolOut:
    """Rename or correct a school; a school admin their own. Archiving (`active`) is the
    district admin's: it waits until the school's classrooms are archived."""
    sent = sent_fields(call.body)
    school_id = call.id()
    async with call.db() as db:
        if await schools.get_school(db, school_id) is None:
            raise not_found("school", school_id)
        require_school(call.me, school_id)
        if "active" in sent and not is_admin(call.me):
            raise forbidden("only an admin archives or restores a school")
        school, changes = await schools.update_school(db, school_id, **sent)
        await audit_change(call, db, "school_updated", f"school:{school_id}", changes)
    return _school_out(school)


async def delete_school(call: Call) -> Deleted:
    """Delete a school nothing refers to; 409 names its classrooms, accounts, recordings."""
    school_id = call.id()
    async with call.db() as db:
        school = await schools.get_school(db, school_id)
        if school is None:
            raise not_found("school", school_id)
        name = school.name
        await schools.delete_school(db, school_id)
        await audit.record(
            db, call.me, "school_deleted", f"school:{school_id}", {"name": name}, call.remote
        )
    return Deleted(id=school_id)


async def _own_classroom(call: Call, db: AsyncSession) -> Classroom:
    classroom = await schools.get_classroom(db, call.id())
    if classroom is None:
        raise not_found("classroom", call.id())
    require_school(call.me, classroom.school_id)
    return classroom


async def update_classroom(call: Call) -> ClassroomOut:
    """Rename, archive or restore a classroom of one's school; admins may also move one
    that no lesson or pairing uses to another school."""
    sent = sent_fields(call.body)
    async with call.db() as db:
        classroom = await _own_classroom(call, db)
        if sent.get("school_id", classroom.school_id) != classroom.school_id:
            if not is_admin(call.me):
                raise forbidden("a school admin cannot move a classroom to another school")
        classroom, changes = await schools.update_classroom(db, classroom.id, **sent)
        await audit_change(call, db, "classroom_updated", f"classroom:{classroom.id}", changes)
    return _classroom_out(classroom)


async def delete_classroom(call: Call) -> Deleted:
    """Delete a classroom no pairing, lesson or recording refers to."""
    async with call.db() as db:
        classroom = await _own_classroom(call, db)
        ident, detail = classroom.id, {"school_id": classroom.school_id, "name": classroom.name}
        await schools.delete_classroom(db, ident)
        await audit.record(
            db, call.me, "classroom_deleted", f"classroom:{ident}", detail, call.remote
        )
    return Deleted(id=ident)


async def _own_pairing(call: Call, db: AsyncSession) -> Pairing:
    """The pairing, if the caller may change it: an admin any; a school admin one whose
    classrooms are all of their school (one across schools is the district admin's)."""
    pairing = await schools.get_pairing(db, call.id())
    if pairing is None:
        raise not_found("pairing", call.id())
    if not is_admin(call.me):
        school_of = await school_of_classrooms(db, [pairing.main_classroom_id])
        if not can_schedule(call.me, school_of.get(pairing.main_classroom_id)):
            raise forbidden(f"pairing {pairing.id} is not taught from your school")
        await require_rooms_of_school(call, db, pairing_classrooms(pairing))
    return pairing


async def update_pairing(call: Call) -> PairingPatched:
    """Rename, re-room, archive or restore a pairing. New rooms go to its scheduled
    lessons to come too (not to one whose rooms were changed by hand), or the edit is
    refused whole if a new room is taken then; archiving waits until none is to come."""
    sent = sent_fields(call.body)
    async with call.db() as db:
        pairing = await _own_pairing(call, db)
        new_main = sent.get("main_classroom_id", pairing.main_classroom_id)
        if new_main != pairing.main_classroom_id and not is_admin(call.me):
            main = await schools.get_classroom(db, new_main)
            if main is None:
                raise NotFound.because(
                    "classroom_not_found", field="main_classroom_id", id=new_main
                )
            require_school(call.me, main.school_id)
        await require_rooms_of_school(call, db, sent.get("receiving_classroom_ids") or [])
        pairing, changes, rerouted = await schools.update_pairing(db, pairing.id, **sent)
        await audit_change(call, db, "pairing_updated", f"pairing:{pairing.id}", changes,
                            lessons_rerouted=rerouted)
    out = _pairing_out(pairing)
    return PairingPatched(**msgspec.structs.asdict(out), lessons_rerouted=rerouted)


async def delete_pairing(call: Call) -> Deleted:
    """Delete a pairing no lesson or lesson series was scheduled on."""
    async with call.db() as db:
        pairing = await _own_pairing(call, db)
        ident, detail = pairing.id, {"name": pairing.name}
        await schools.delete_pairing(db, ident)
        await audit.record(db, call.me, "pairing_deleted", f"pairing:{ident}", detail, call.remote)
    return Deleted(id=ident)


# --------------------------------------------------------------- routes

ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/schools",
        list_schools,
        "List schools",
        "registers",
        roles=STAFF,
        response=SchoolList,
    ),
    Route(
        "POST",
        "/schools",
        create_school,
        "Register a school",
        "registers",
        body=SchoolIn,
        response=SchoolOut,
        status=201,
        errors=(400,),
    ),
    Route(
        "GET",
        "/schools/{id}",
        get_school,
        "Get a school",
        "registers",
        roles=STAFF,
        response=SchoolOut,
    ),
    Route(
        "PATCH",
        "/schools/{id}",
        update_school,
        "Change, archive or restore a school",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=SchoolPatch,
        response=SchoolOut,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/schools/{id}",
        delete_school,
        "Delete a school nothing refers to",
        "registers",
        response=Deleted,
        errors=(409,),
    ),
    Route(
        "GET",
        "/classrooms",
        list_classrooms,
        "List classrooms",
        "registers",
        roles=SCHOOL_ACCOUNTS,
        query=ClassroomQuery,
        response=ClassroomList,
    ),
    Route(
        "POST",
        "/classrooms",
        create_classroom,
        "Register a classroom",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=ClassroomIn,
        response=ClassroomOut,
        status=201,
        errors=(404, 409),
    ),
    Route(
        "PATCH",
        "/classrooms/{id}",
        update_classroom,
        "Change, archive or restore a classroom",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=ClassroomPatch,
        response=ClassroomOut,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/classrooms/{id}",
        delete_classroom,
        "Delete a classroom nothing refers to",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=Deleted,
        errors=(409,),
    ),
    Route(
        "GET",
        "/pairings",
        list_pairings,
        "List pairings",
        "registers",
        roles=STAFF,
        response=PairingList,
    ),
    Route(
        "POST",
        "/pairings",
        create_pairing,
        "Pair a main classroom with 1–4 receiving ones",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=PairingIn,
        response=PairingOut,
        status=201,
        errors=(404,),
    ),
    Route(
        "GET",
        "/pairings/{id}",
        get_pairing,
        "Get a pairing",
        "registers",
        roles=STAFF,
        response=PairingOut,
    ),
    Route(
        "PATCH",
        "/pairings/{id}",
        update_pairing,
        "Change, archive or restore a pairing",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        body=PairingPatch,
        response=PairingPatched,
        errors=(409,),
    ),
    Route(
        "DELETE",
        "/pairings/{id}",
        delete_pairing,
        "Delete a pairing no lesson was scheduled on",
        "registers",
        roles=(UserRole.SCHOOL_ADMIN,),
        response=Deleted,
        errors=(409,),
    ),
)
