"""The audit trail of refused WebSocket joins, rate-limited so a flood cannot fill it.

A refused join (a forged, expired or misdirected token, a lesson that is not open) is
security-relevant: it is how someone probing for a lesson's pictures and voices shows up.
But a refused socket costs the caller nothing to repeat, so writing a row for each would
let one script fill `audit_events` (and keep the database busy) at will. At most one row
is written per remote address and error code per WINDOW; the refusals held back meanwhile
are counted, and the next row written for that address and code says how many
(`detail.suppressed`). The table of recent keys is bounded too: past MAX_KEYS (a flood
from many addresses), new addresses share one key per code.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from classroom import audit

logger = logging.getLogger(__name__)

ACTION = "signaling.join_refused"
WINDOW = 10.0  # s: at most one row per remote address and error code this often
MAX_KEYS = 10_000
OVERFLOW = "*"  # the remote of the shared key once MAX_KEYS is reached


@dataclass
class _Slot:
    written_at: float  # monotonic
    suppressed: int = 0


@dataclass(frozen=True)
class JoinRefusal:
    """What the session knows about a refused join (the token's claims when it verified,
    else what the `join` message said)."""

    code: str
    message: str
    lesson_id: int | None
    classroom_id: int | None
    role: str | None
    subject: str | None  # the username the token was minted for, when it verified
    remote: str | None


class JoinRefusalLog:
    """One per server process (the app holds it): decides which refusals are written."""

    def __init__(self, window: float = WINDOW, max_keys: int = MAX_KEYS) -> None:
        self.window = window
        self.max_keys = max_keys
        self._slots: dict[tuple[str, str], _Slot] = {}

    def admit(self, remote: str | None, code: str, now: float | None = None) -> int | None:
        """None: hold this refusal back (counted). Otherwise write it, with the number of
        refusals held back for this remote and code since the last row written."""
        now = time.monotonic() if now is None else now
        key = (remote or "", code)
        slot = self._slots.get(key)
        if slot is None and len(self._slots) >= self.max_keys:
            self._forget_before(now - self.window)
            if len(self._slots) >= self.max_keys:
                key = (OVERFLOW, code)
                slot = self._slots.get(key)
        if slot is None:
            self._slots[key] = _Slot(written_at=now)
            return 0
        if now - slot.written_at < self.window:
            slot.suppressed += 1
            return None
        suppressed, slot.suppressed, slot.written_at = slot.suppressed, 0, now
        return suppressed

    def _forget_before(self, cutoff: float) -> None:
        # A slot with held-back refusals is kept: its count goes into its next row.
        for key in [k for k, s in self._slots.items() if s.written_at < cutoff]:
            if not self._slots[key].suppressed:
                del self._slots[key]

    async def record(self, db: async_sessionmaker[AsyncSession], refusal: JoinRefusal) -> bool:
        """Write the refusal's row unless it is held back; True if written. A failure to
        write is logged, never raised: the refusal stands either way."""
        suppressed = self.admit(refusal.remote, refusal.code)
        if suppressed is None:
            return False
        detail: dict[str, Any] = {
            "code": refusal.code,
            "reason": refusal.message[:300],
            "lesson_id": refusal.lesson_id,
            "classroom_id": refusal.classroom_id,
            "role": refusal.role,
            "suppressed": suppressed,
        }
        target = f"lesson:{refusal.lesson_id}" if refusal.lesson_id is not None else ""
        try:
            async with db() as session:
                await audit.record(
                    session, refusal.subject or "", ACTION, target, detail, refusal.remote
                )
        except Exception:
            logger.exception("could not audit a refused join from %s", refusal.remote)
            return False
        return True
