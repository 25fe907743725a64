"""What a classroom box publishes: its video (encoded by us) and its audio (a tone).

`MediaPublisher` implements the `Publisher` protocol of `classroom.agent.client`; the
client makes one per connection through the factory below, adds `tracks()` to the peer
connection and hands each transceiver's sender to `attach_sender()`, where PLI/FIR and
REMB are wired into our encoder. Each room gets a distinct tag (classroom_id & 0xFF),
colour and tone frequency (300 + 100 * (classroom_id % 16) Hz), so a receiver can tell the
rooms apart from the media alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc import RTCRtpSender

from classroom.agent.client import Publisher, PublisherFactory
from classroom.agent.defaults import KEYFRAME_INTERVAL_S
from classroom.agent.encoder import Codec, VideoEncoder
from classroom.agent.feedback import watch_sender_feedback
from classroom.agent.sources import SourceSpec, ToneSource, parse_source
from classroom.agent.tracks import EncodedVideoTrack, ToneAudioTrack

logger = logging.getLogger(__name__)

BITS_PER_PIXEL = 0.045  # start: ~1.2 Mbit/s at 720p30; REMB moves it from there


def initial_bitrate(width: int, height: int, fps: float) -> int:
    return int(width * height * fps * BITS_PER_PIXEL)


def tone_frequency(classroom_id: int) -> float:
    return 300.0 + 100.0 * (classroom_id % 16)


class MediaPublisher:
    """One connection's outgoing tracks and the encoder behind the video."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        width: int,
        height: int,
        fps: float,
        codec: Codec,
        label: str,
        tag: int,
        tone_hz: float,
        bitrate_bps: int | None = None,
        keyframe_interval_s: float = KEYFRAME_INTERVAL_S,
    ) -> None:
        self.codec: Codec = codec
        self.tag = tag & 0xFF
        self.label = label
        source = spec.open(width, height, fps, label, self.tag)
        self.encoder = VideoEncoder(
            codec,
            width,
            height,
            fps,
            bitrate_bps or initial_bitrate(width, height, fps),
            keyframe_interval_s=keyframe_interval_s,
        )
        self.video = EncodedVideoTrack(source, self.encoder)
        self.audio = ToneAudioTrack(ToneSource(tone_hz))

    def tracks(self) -> tuple[ToneAudioTrack, EncodedVideoTrack]:
        """(audio, video): the order the client adds them to the peer connection."""
        return self.audio, self.video

    def attach_sender(self, kind: str, sender: RTCRtpSender) -> None:
        """Route the video sender's PLI/FIR and REMB to our encoder (audio needs nothing)."""
        if kind == "video":
            watch_sender_feedback(
                sender, self.encoder.request_keyframe, self.encoder.set_target_bitrate
            )

    def set_muted(self, kind: str, muted: bool) -> None:
        if kind == "video":
            self.video.set_muted(muted)
        elif kind == "audio":
            self.audio.set_muted(muted)

    def preferred_video_codec(self) -> str:
        """The codec name after "video/" ("H264" or "VP8"): the client prefixes it."""
        return "H264" if self.codec == "h264" else "VP8"

    def close(self) -> None:
        """Stop both tracks and release the source (a camera can be opened once)."""
        self.video.stop()
        self.audio.stop()


def publisher_factory(
    source_spec: str,
    *,
    width: int,
    height: int,
    fps: float,
    codec: Codec,
    label_for: Callable[[int, str], str] | None = None,
    bitrate_bps: int | None = None,
    keyframe_interval_s: float = KEYFRAME_INTERVAL_S,
) -> PublisherFactory:
    """A factory making a fresh publisher per connection; ValueError on a bad spec now.

    Making a new publisher closes the previous one: the client drops it on reconnect
    without closing it, and a camera stays busy until its capture is released.
    """
    spec = parse_source(source_spec)
    previous: list[MediaPublisher] = []

    def make(classroom_id: int, role: str) -> Publisher:
        while previous:
            previous.pop().close()
        label = label_for(classroom_id, role) if label_for else f"classroom {classroom_id}"
        publisher = MediaPublisher(
            spec,
            width=width,
            height=height,
            fps=fps,
            codec=codec,
            label=label,
            tag=classroom_id & 0xFF,
            tone_hz=tone_frequency(classroom_id),
            bitrate_bps=bitrate_bps,
            keyframe_interval_s=keyframe_interval_s,
        )
        previous.append(publisher)
        return publisher

    return make
