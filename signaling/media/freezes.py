"""Freezes of a video stream as the server sees it, for the lesson's link statistics.

A freeze is what a pupil notices: the picture stops. The server never decodes, so it counts
the two signs of that it does see:
- a gap between video frames longer than `FREEZE_GAP` (frames stopped arriving from a
  publisher, or stopped being forwarded to a room);
- a keyframe request (PLI/FIR) from a room that was already receiving pictures: its
  decoder lost the picture and waits for a keyframe. That freeze lasts until the next
  keyframe is forwarded; the requests of one such episode count once.

Hot path: `frame` and `keyframe` run once per video frame of every stream; a few float
operations, no allocation.
"""

from __future__ import annotations

FREEZE_GAP = 0.5  # s between frames: at 15-30 fps that is 8-15 frames missing, a visible stop


class FreezeMeter:
    """Cumulative freeze count and duration of one video stream; the sampler takes deltas."""

    __slots__ = ("_last", "_lost_at", "freeze_ms", "freezes")

    def __init__(self) -> None:
        self._last: float | None = None  # when the previous frame ended (seconds)
        self._lost_at: float | None = None  # start of an open keyframe-request episode
        self.freezes = 0
        self.freeze_ms = 0.0

    def frame(self, now: float) -> None:
        """A video frame ended (RTP marker bit) at `now`."""
        last = self._last
        self._last = now
        if last is not None and self._lost_at is None:
            gap = now - last
            if gap > FREEZE_GAP:
                self.freezes += 1
                self.freeze_ms += gap * 1000

    def keyframe(self, now: float) -> None:
        """A keyframe started at `now`: an open keyframe-request episode ends here."""
        if self._lost_at is not None:
            self.freeze_ms += max(0.0, now - self._lost_at) * 1000
            self._lost_at = None
            self._last = now

    def picture_lost(self, now: float) -> None:
        """The receiver asked for a keyframe: counted if it had pictures and no open episode."""
        if self._last is not None and self._lost_at is None:
            self.freezes += 1
            self._lost_at = now

    def reset(self, now: float) -> None:
        """The stream restarts on purpose (new source, unmute): the pause is no freeze.

        An open keyframe-request episode ends here with the time it lasted so far.
        """
        if self._lost_at is not None:
            self.freeze_ms += max(0.0, now - self._lost_at) * 1000
        self._last = None
        self._lost_at = None
