"""Schools, their classrooms, and pairings (结对) of one main classroom with 1–4 receiving ones.

These are the admin's registers. Every function commits its own change, so the API, the
CLI and demo scripts can call them directly with a fresh session.
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.models import (
    Classroom,
    Conflict,
    InvalidInput,
    NotFound,
    Pairing,
    PairingMember,
    School,
    SchoolKind,
)

MAX_RECEIVING = 4  # 1拖4: one main classroom teaches at most four receiving rooms


async def create_school(
    db: AsyncSession,
    *,
    name: str,
    kind: SchoolKind | str,
    region: str = "",
    timezone: str = "Asia/Shanghai",
) -> School:
    try:
        kind = SchoolKind(kind)
    except ValueError:
        raise InvalidInput(f"unknown school kind {kind!r}", field="kind") from None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown timezone {timezone!r}", field="timezone") from None
    school = School(name=name, kind=kind.value, region=region, timezone=timezone)
    db.add(school)
    await db.commit()
    return school


async def get_school(db: AsyncSession, school_id: int) -> School | None:
    return await db.get(School, school_id)


async def list_schools(db: AsyncSession) -> list[School]:
    return list((await db.scalars(sa.select(School).order_by(School.id))).all())


async def create_classroom(db: AsyncSession, *, school_id: int, name: str) -> Classroom:
    if await db.get(School, school_id) is None:
        raise NotFound(f"no school {school_id}", field="school_id")
    clash = await db.scalar(
        sa.select(Classroom.id).where(Classroom.school_id == school_id, Classroom.name == name)
    )
    if clash is not None:
        raise Conflict(f"school {school_id} already has a classroom named {name!r}", field="name")
    classroom = Classroom(school_id=school_id, name=name)
    db.add(classroom)
    try:
        await db.commit()
    except IntegrityError:  # a concurrent insert won the race past the check above
        await db.rollback()
        raise Conflict(
            f"school {school_id} already has a classroom named {name!r}", field="name"
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
    if not 1 <= len(receiving) <= MAX_RECEIVING:
        raise InvalidInput(
            f"a pairing has 1 to {MAX_RECEIVING} receiving classrooms, not {len(receiving)}",
            field="receiving_classroom_ids",
        )
    if len(set(receiving)) != len(receiving):
        raise InvalidInput("a classroom is listed twice", field="receiving_classroom_ids")
    if main_classroom_id in receiving:
        raise InvalidInput(
            "the main classroom cannot also receive", field="receiving_classroom_ids"
        )
    found = set(
        (
            await db.scalars(
                sa.select(Classroom.id).where(Classroom.id.in_([main_classroom_id, *receiving]))
            )
        ).all()
    )
    if main_classroom_id not in found:
        raise NotFound(f"no classroom {main_classroom_id}", field="main_classroom_id")
    if missing := [c for c in receiving if c not in found]:
        raise NotFound(
            f"no classroom {', '.join(map(str, missing))}", field="receiving_classroom_ids"
        )
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
