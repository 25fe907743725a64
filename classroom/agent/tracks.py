"""The classroom agent's outgoing tracks: video as encoded packets, audio as a tone.

`EncodedVideoTrack.recv()` returns `av.Packet`s, which aiortc's RTCRtpSender packetises
without encoding again (see `classroom.agent.encoder` for why). Encoding runs in a
one-thread executor per track: frames stay in order, and the event loop, which also
receives and decodes the other rooms, never waits on x264.

Muting (the teacher's `mute` notice) keeps the tracks flowing: video sends black frames,
audio sends silence. A stalled track would look like a broken link to the server and to
the recorder, and would need a key frame and a jitter-buffer reset on unmute.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from classroom.agent.encoder import VideoEncoder
from classroom.agent.sources import ToneSource, VideoSource, black_frame


class EncodedVideoTrack(MediaStreamTrack):
    """A video track whose frames are already encoded (H.264 or VP8 `av.Packet`s)."""

    kind = "video"

    def __init__(self, source: VideoSource, encoder: VideoEncoder) -> None:
        super().__init__()
        self.source = source
        self.encoder = encoder
        self.muted = False
        self._pending: deque[av.Packet] = deque()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-encode")

    async def recv(self) -> av.Packet:  # type: ignore[override]
        """The next packet, paced by the source's clock (hot path: once per frame)."""
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self.readyState != "live":
                raise MediaStreamError
            pts = await self.source.tick()
            was_muted = self.muted
            # grabbing/drawing runs in the executor too: a camera frame conversion or
            # a file frame's reformat is a millisecond we keep off the event loop
            packets = await loop.run_in_executor(self._executor, self._produce, pts, was_muted)
            self._pending.extend(packets)
        return self._pending.popleft()

    def _produce(self, pts: int, muted: bool) -> list[av.Packet]:
        if muted:
            frame = black_frame(self.encoder.width, self.encoder.height, pts)
        else:
            frame = self.source.frame_at(pts)
        return self.encoder.encode(frame)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self.source.close()
            self._executor.shutdown(wait=False, cancel_futures=True)


class ToneAudioTrack(MediaStreamTrack):
    """An audio track playing the room's tone; aiortc encodes it to Opus."""

    kind = "audio"

    def __init__(self, source: ToneSource) -> None:
        super().__init__()
        self.source = source
        self.muted = False

    async def recv(self) -> av.AudioFrame:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        await self.source.tick()
        return self.source.frame(silent=self.muted)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
