"""Link samples: what the server measured on each room's link, every few seconds.

signaling/services/quality_sampler.py takes them from the RTP/RTCP the media router already
handles and hands them here in batches; the lesson summary (classroom/lesson_stats.py)
reads one lesson's back. One row per room, direction and interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from classroom.statistics_models import LinkDirection, LinkSample


@dataclass(frozen=True)
class Sample:
    """One room's link in one direction over `seconds` ending at `at`."""

    lesson_id: int
    classroom_id: int
    at: datetime
    direction: str  # LinkDirection
    seconds: float
    bitrate_kbps: float
    packets: int  # sent (down) or expected (up) in the interval
    packets_lost: int
    jitter_ms: float
    rtt_ms: float | None
    freezes: int
    freeze_ms: int
    keyframe_requests: int

    @property
    def loss(self) -> float:
        return self.packets_lost / self.packets if self.packets > 0 else 0.0


async def insert_samples(db: AsyncSession, samples: Sequence[Sample]) -> None:
    """Write a batch in one statement (executemany); commits."""
    if not samples:
        return
    for sample in samples:
        LinkDirection(sample.direction)  # a wrong direction is a bug: fail before the DB does
    await db.execute(sa.insert(LinkSample), [asdict(s) for s in samples])
    await db.commit()


async def samples_of(db: AsyncSession, lesson_id: int) -> list[Sample]:
    """One lesson's samples in time order (a 45-minute 1拖4 lesson at 10 s: 2,700 rows)."""
    columns = [getattr(LinkSample, name) for name in Sample.__dataclass_fields__]
    rows = await db.execute(
        sa.select(*columns)
        .where(LinkSample.lesson_id == lesson_id)
        .order_by(LinkSample.at, LinkSample.id)
    )
    return [Sample(*row) for row in rows.all()]
