"""The classroom agent's outgoing tracks: video and audio as encoded packets.

`EncodedVideoTrack.recv()` returns `av.Packet`s, which aiortc's RTCRtpSender packetises
without encoding again (see `classroom.agent.encoder` for why). Encoding runs in a
one-thread executor per track: frames stay in order, and the event loop, which also
receives and decodes the other rooms, never waits on x264.

Audio is encoded here too (Opus, mono, 32 kbit/s): given av.AudioFrames, aiortc's sender
computes the RFC 6465 audio level of every frame in a pure-Python loop over the samples,
and encodes stereo at 96 kbit/s; together that cost 8.5% of a core at 720p30 publishing,
a third of the box's budget (bench/publish.py). Pass `encode=False` to get frames.

Muting (the teacher's `mute` notice) keeps the tracks flowing: video sends black frames,
audio sends silence. A stalled track would look like a broken link to the server and to
the recorder, and would need a key frame and a jitter-buffer reset on unmute.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.codeccontext import AudioCodecContext
from av.codec.context import CodecContext

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

    async def recv(self) -> av.Packet:
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


OPUS_BITRATE = 32_000  # mono speech (and a tone) needs no more


class ToneAudioTrack(MediaStreamTrack):
    """An audio track playing the room's tone, as Opus packets (or frames for aiortc)."""

    kind = "audio"

    def __init__(self, source: ToneSource, *, encode: bool = True) -> None:
        super().__init__()
        self.source = source
        self.muted = False
        self.encode = encode
        self._opus: AudioCodecContext | None = None

    async def recv(self) -> av.AudioFrame | av.Packet:
        """The next 20 ms, paced in real time (hot path: 50 times a second)."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            await self.source.tick()
            frame = self.source.frame(silent=self.muted)
            if not self.encode:
                return frame
            packets = self._encode(frame)
            if packets:
                return packets[0]  # libopus: one packet per 20 ms frame

    def _encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        if self._opus is None:
            opus = CodecContext.create("libopus", "w")
            opus.sample_rate = self.source.sample_rate
            opus.layout = "mono" if self.source.channels == 1 else "stereo"
            opus.format = "s16"
            opus.bit_rate = OPUS_BITRATE
            opus.time_base = Fraction(1, self.source.sample_rate)
            opus.options = {"application": "voip", "frame_duration": "20"}
            self._opus = opus
        pts = frame.pts
        assert pts is not None  # the source stamps every frame
        packets = list(self._opus.encode(frame))
        for i, packet in enumerate(packets):
            # our own timeline: the encoder's pts start negative (its look-ahead)
            packet.pts = pts + i * self.source.samples_per_frame
            packet.time_base = Fraction(1, self.source.sample_rate)
        return packets

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
