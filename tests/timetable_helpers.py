"""A real-looking term and registers for the timetable tests.

2026 autumn term (2026秋): Tuesday 2026-09-01 to Friday 2027-01-15, twenty teaching weeks;
国庆节 10-01..10-07 off with two 调休 days — Sunday 09-20 runs Tuesday's timetable and
Saturday 10-10 runs Wednesday's; 元旦 2027-01-01..01-03 off; seven periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy.ext.asyncio import AsyncSession

from classroom import schools, terms
from classroom.models import Classroom, Pairing
from classroom.terms import Holiday, MakeupDay, Period, TermSpec
from classroom.timetable import SeriesSpec

PERIODS = (
    Period(1, time(8, 0), time(8, 45)),
    Period(2, time(8, 55), time(9, 40)),
    Period(3, time(9, 55), time(10, 40)),
    Period(4, time(10, 50), time(11, 35)),
    Period(5, time(14, 0), time(14, 45)),
    Period(6, time(14, 55), time(15, 40)),
    Period(7, time(15, 50), time(16, 35)),
)
AUTUMN_2026 = TermSpec(
    school_year="2026-2027",
    name="2026秋",
    region="城关区",
    start_date=date(2026, 9, 1),
    end_date=date(2027, 1, 15),
    timezone="Asia/Shanghai",
    holidays=(
        Holiday(date(2026, 10, 1), date(2026, 10, 7), "国庆节"),
        Holiday(date(2027, 1, 1), date(2027, 1, 3), "元旦"),
    ),
    makeup_days=(
        MakeupDay(date(2026, 9, 20), 2, "国庆调休（补周二）"),
        MakeupDay(date(2026, 10, 10), 3, "国庆调休（补周三）"),
    ),
    periods=PERIODS,
)
BEFORE_TERM = datetime(2026, 8, 20, tzinfo=UTC)


@dataclass
class Pair:
    pairing: Pairing
    main: Classroom
    receiving: list[Classroom]


async def make_pair(
    db: AsyncSession,
    city: str = "城关一中",
    room: str = "301",
    rural: tuple[str, ...] = ("乡村小学一",),
) -> Pair:
    """A city school's room paired with a room in each rural school (schools made as needed)."""
    existing = {s.name: s for s in await schools.list_schools(db)}

    async def school(name: str, kind: str):  # type: ignore[no-untyped-def]
        if name not in existing:
            existing[name] = await schools.create_school(db, name=name, kind=kind)
        return existing[name]

    main = await schools.create_classroom(db, school_id=(await school(city, "city")).id, name=room)
    receiving = []
    for name in rural:
        s = await school(name, "rural")
        receiving.append(
            await schools.create_classroom(
                db, school_id=s.id, name=f"听课{len(receiving) + 1}-{room}"
            )
        )
    pairing = await schools.create_pairing(
        db,
        name=f"{city}{room}",
        main_classroom_id=main.id,
        receiving_classroom_ids=[r.id for r in receiving],
    )
    return Pair(pairing, main, receiving)


async def make_term(db: AsyncSession, spec: TermSpec = AUTUMN_2026) -> int:
    return (await terms.create_term(db, spec)).id


def weekly(pair: Pair | int, weekday: int, period: int | None = 3, **kw: object) -> SeriesSpec:
    """数学 一次函数 by 王老师 on `pair` (a Pair or a pairing id) every `weekday`, `period`."""
    fields: dict = {
        "pairing_id": pair if isinstance(pair, int) else pair.pairing.id,
        "subject": "数学",
        "grade": "初二",
        "title": "一次函数",
        "teacher_name": "王老师",
        "weekday": weekday,
        "period": period,
    }
    fields.update(kw)
    return SeriesSpec(**fields)
