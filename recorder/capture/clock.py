"""One clock for a whole lesson: every room's RTP timestamps mapped to lesson time.

Lesson time 0 is `clock_origin_unix` (server wall clock, when recording started). A track's
RTP timestamp becomes lesson time in three steps:

1. unwrap the 32-bit timestamp into a 64-bit count (`TimestampUnwrapper`);
2. observe when timestamps were sent or arrived, on the server's clock: each frame's
   arrival, and each RTCP sender report (NTP ↔ RTP) moved onto the server's clock by the
   room's offset (`RoomClock`: server arrival − publisher NTP of the connection's first
   SR; a classroom box's clock may be minutes off in a closed school network). A room's
   audio and video share that offset, which keeps them in sync with each other;
3. map with the *smallest* offset observed (`TrackClock`): a frame can arrive late
   (a start-up burst, a big keyframe, queueing), never before it was captured.

The capture layer holds a track's first frames for about a second before the first stamp
so that the anchor is not taken from a late start-up burst. Afterwards the mapping never
steps back: an earlier offset is slewed in (at most `SLEW` of the media time that passes),
so pts stay monotonic and evenly spaced for the finalisers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
SLEW = 0.05  # correction per unit of media time: 50 ms per second at most
MAX_SR_DISAGREEMENT = 5.0  # s: an SR that far from arrival time is ignored (garbage)
WINDOW = 3.0  # s of media over which the minimum observed offset is taken
STEP = 0.1  # s: a later offset by more than this is stepped (a gap), not slewed


def ntp_to_unix(ntp: int) -> float:
    """A 64-bit NTP timestamp (RTCP SR) as Unix seconds."""
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


class TimestampUnwrapper:
    """32-bit RTP timestamps → a monotonic-ish 64-bit count (signed steps across wrap)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._ext = 0

    def unwrap(self, ts: int) -> int:
        if self._last is None:
            self._last = ts
            self._ext = ts
            return ts
        delta = (ts - self._last) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        self._last = ts
        self._ext += delta
        return self._ext

    def relative(self, ts: int) -> int:
        """Unwrap `ts` against the last value without advancing (e.g. an SR's timestamp)."""
        if self._last is None:
            return ts
        delta = (ts - self._last) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        return self._ext + delta


@dataclass
class RoomClock:
    """A publisher connection's clock offset: server Unix time − publisher NTP time."""

    offset: float | None = None

    def observe_sr(self, ntp: int, received_unix: float) -> float:
        if self.offset is None:
            self.offset = received_unix - ntp_to_unix(ntp)
        return self.offset


class TrackClock:
    """Maps one track's RTP timestamps to lesson time (µs), monotonic per track.

    Every arrival and every SR is an upper bound on when a timestamp was captured (on the
    server's clock): `observed − ts / rate` can only be too late (queueing, a start-up
    burst, a keyframe's size), never too early. So the mapping's offset is the minimum
    of those observations, over a sliding window of `WINDOW` s of media so that it
    follows a publisher whose RTP clock drifts or stalls. After the first stamp, an
    earlier offset is slewed in (never a step back); a later one is slewed when small and
    stepped when over `STEP` (a sender that stalled: the gap is real).
    """

    def __init__(self, clock_rate: int, origin_unix: float, room: RoomClock | None = None) -> None:
        self.clock_rate = clock_rate
        self.origin_unix = origin_unix
        self.room = room if room is not None else RoomClock()
        self._unwrap = TimestampUnwrapper()
        # unix(ts_ext) = ts_ext / rate + correction
        self._target: float | None = None  # offset the observations call for
        self._correction = 0.0  # offset in use (slewed toward the target)
        self._window_min: float | None = None
        self._window_start: int | None = None
        self._last_ts: int | None = None
        self._last_us: int | None = None
        self._sr_seen: tuple[int, int] | None = None
        self._step = False
        self.synced = False  # an SR has been used
        self.slews = 0

    @property
    def anchored(self) -> bool:
        """Has a frame been stamped yet?"""
        return self._last_us is not None

    def observe_arrival(self, rtp_timestamp: int, arrival_unix: float) -> None:
        ts = self._unwrap.unwrap(rtp_timestamp)
        self._note(arrival_unix - ts / self.clock_rate, ts)

    def observe_sender_report(self, ntp: int, rtp: int, received_unix: float) -> None:
        if (ntp, rtp) == self._sr_seen:
            return
        self._sr_seen = (ntp, rtp)
        offset = self.room.observe_sr(ntp, received_unix)
        ts = self._unwrap.relative(rtp)
        observed = ntp_to_unix(ntp) + offset - ts / self.clock_rate
        if self._target is not None and abs(observed - self._target) > MAX_SR_DISAGREEMENT:
            return  # a garbage SR
        self.synced = True
        self._note(observed, None)

    def to_lesson_us(
        self,
        rtp_timestamp: int,
        arrival_unix: float | None = None,
        sender_report: tuple[int, int, float] | None = None,
    ) -> int:
        """Lesson time of a frame. `sender_report` is (ntp, rtp, received_unix) of the
        publisher's latest SR, if any; `arrival_unix` is when the frame arrived."""
        if arrival_unix is not None or self._target is None:
            self.observe_arrival(
                rtp_timestamp, time.time() if arrival_unix is None else arrival_unix
            )
        if sender_report is not None:
            self.observe_sender_report(*sender_report)
        ts = self._unwrap.unwrap(rtp_timestamp)
        assert self._target is not None
        if self._last_ts is None or (self._step and self._target > self._correction):
            self._correction = self._target
            self._step = False
        elif self._correction != self._target:
            # slew in proportion to media time elapsed, so pts stay evenly spaced
            step = SLEW * max(0, ts - self._last_ts) / self.clock_rate
            gap = self._target - self._correction
            self._correction += max(-step, min(step, gap))
        self._last_ts = ts
        us = round((ts / self.clock_rate + self._correction - self.origin_unix) * 1_000_000)
        if self._last_us is not None and us <= self._last_us:
            us = self._last_us + 1
        self._last_us = us
        return us

    def _note(self, observed: float, ts: int | None) -> None:
        if self._window_min is None or observed < self._window_min:
            self._window_min = observed
        if self._target is None or observed < self._target:
            if self._target is not None and self._last_us is not None:
                self.slews += 1
            self._target = observed
        if ts is None:
            return
        if self._window_start is None:
            self._window_start = ts
        elif ts - self._window_start > WINDOW * self.clock_rate:
            # a new window: the target may now move later too (drift, a stalled sender)
            if self._window_min > self._target:
                self.slews += 1
                # a sender that stalled without skipping timestamps: the media really
                # paused, so a clean gap (a forward step) says it best; small drift slews
                self._step = self._window_min - self._correction > STEP
            self._target = self._window_min
            self._window_min = None
            self._window_start = ts
