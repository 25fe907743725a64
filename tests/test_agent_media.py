"""The classroom agent's media, end to end with real codecs and a real aiortc loopback.

What a rural room's box publishes must be readable on the other side (room tag, frame
counter, capture time, tone), must answer a keyframe request and must follow the bitrate
the receiver asks for, without aiortc encoding the video a second time.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from aiortc import (
    RTCConfiguration,
    RTCDtlsTransport,
    RTCPeerConnection,
    RTCRtpSender,
)
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from classroom.agent.encoder import VideoEncoder
from classroom.agent.feedback import HOOK, watch_sender_feedback
from classroom.agent.publisher import MediaPublisher, publisher_factory, tone_frequency
from classroom.agent.reception import FrameSaver, dominant_frequency
from classroom.agent.sources import (
    FrameClock,
    TestPatternSource,
    ToneSource,
    parse_source,
)
from classroom.agent.testpattern import (
    COLOUR_PROBE,
    PatternCode,
    PatternRenderer,
    read_pattern,
    read_pattern_frame,
    room_colour,
)
from classroom.agent.tracks import ToneAudioTrack

TB = Fraction(1, 90000)


def _decoder(codec: str) -> av.CodecContext:
    return av.CodecContext.create("h264" if codec == "h264" else "libvpx", "r")


@pytest.mark.parametrize("codec", ["h264", "vp8"])
@pytest.mark.parametrize(("width", "height"), [(1280, 720), (320, 180)])
def test_pattern_survives_low_bitrate_encoding(codec: str, width: int, height: int) -> None:
    renderer = PatternRenderer(width, height, "Sanhe Primary 2", tag=0x5A)
    encoder = VideoEncoder(codec, width, height, 30, 300_000)  # type: ignore[arg-type]
    decoder = _decoder(codec)
    read: list[PatternCode | None] = []
    for i in range(40):
        frame = renderer.render_frame(i, 4_000_000_000 + i * 33)
        frame.pts, frame.time_base = i * 3000, TB
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(av.Packet(bytes(packet))):
                read.append(read_pattern_frame(decoded))
    assert read == [
        PatternCode(tag=0x5A, counter=i, timestamp_ms=(4_000_000_000 + i * 33) % 2**32)
        for i in range(40)
    ]


def test_corrupted_block_and_random_images_read_as_nothing() -> None:
    renderer = PatternRenderer(640, 360, "Room", tag=9)
    luma = renderer.render(1234, 999)[:360].copy()
    assert read_pattern(luma) == PatternCode(9, 1234, 999)
    # flip one data cell (row 1, column 5): the CRC must refuse it
    cw, ch = 640 / 40, 360 / 22.5
    x = int(1.5 * cw + 5.5 * cw)
    y = int(360 - (1.5 + 4) * ch + 1.5 * ch)
    luma[y - 3 : y + 3, x - 3 : x + 3] = 251 - luma[y, x]
    assert read_pattern(luma) is None
    rng = np.random.default_rng(7)
    for _ in range(200):
        assert read_pattern(rng.integers(0, 256, (180, 320), dtype=np.uint8)) is None
    assert read_pattern(np.zeros((720, 1280), np.uint8)) is None


def test_rooms_are_told_apart_by_colour() -> None:
    colours = [room_colour(tag) for tag in range(1, 6)]
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 60
    i420 = PatternRenderer(320, 180, "Room", tag=3).render(0, 0)
    bgr = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    px = bgr[int(180 * COLOUR_PROBE[1]), int(320 * COLOUR_PROBE[0])]
    assert np.abs(px.astype(int) - np.array(room_colour(3))).max() < 8


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_encoder_honours_keyframe_request(codec: str) -> None:
    encoder = VideoEncoder(codec, 320, 180, 30, 500_000)  # type: ignore[arg-type]
    renderer = PatternRenderer(320, 180, "Room", 1)
    keyframes = []
    for i in range(30):
        if i == 17:
            encoder.request_keyframe()
        frame = renderer.render_frame(i, i)
        frame.pts, frame.time_base = i * 3000, TB
        for packet in encoder.encode(frame):
            assert packet.time_base == TB and packet.pts == i * 3000
            if packet.is_keyframe:
                keyframes.append(i)
    assert keyframes == [0, 17]


@pytest.mark.parametrize("interval_s, expected", [(0.5, [0, 15, 30, 45]), (60.0, [0])])
def test_periodic_keyframes_follow_the_configured_interval(
    interval_s: float, expected: list[int]
) -> None:
    encoder = VideoEncoder("h264", 320, 180, 30, 500_000, keyframe_interval_s=interval_s)
    renderer = PatternRenderer(320, 180, "Room", 1)
    keyframes = []
    for i in range(60):
        frame = renderer.render_frame(i, i)
        frame.pts, frame.time_base = i * 3000, TB
        keyframes += [i for packet in encoder.encode(frame) if packet.is_keyframe]
    assert keyframes == expected


@pytest.mark.parametrize("interval_s", [0.0, -1.0, float("nan")])
def test_a_keyframe_interval_that_is_not_positive_is_refused(interval_s: float) -> None:
    with pytest.raises(ValueError, match="keyframe interval"):
        VideoEncoder("h264", 320, 180, 30, 500_000, keyframe_interval_s=interval_s)


def test_h264_keyframes_carry_sps_and_pps() -> None:
    encoder = VideoEncoder("h264", 320, 180, 30, 500_000)
    renderer = PatternRenderer(320, 180, "Room", 1)
    for i in range(12):
        if i == 10:
            encoder.request_keyframe()
        frame = renderer.render_frame(i, i)
        frame.pts, frame.time_base = i * 3000, TB
        for packet in encoder.encode(frame):
            data = bytes(packet)
            nal_types = [data[j + 3] & 0x1F for j in range(len(data) - 3)
                         if data[j : j + 3] == b"\x00\x00\x01"]
            if i in (0, 10):
                assert {7, 8, 5} <= set(nal_types)  # SPS, PPS, IDR
            else:
                assert 5 not in nal_types


def _textured_frames(width: int, height: int):  # type: ignore[no-untyped-def]
    """A panning smooth texture: enough detail that the bitrate is the encoder's choice."""
    rng = np.random.default_rng(1)
    tex = cv2.resize(rng.integers(0, 255, (height // 3, width // 3 * 2, 3), dtype=np.uint8),
                     (width * 2, height), interpolation=cv2.INTER_LINEAR)
    i = 0
    while True:
        x = (3 * i) % width
        frame = av.VideoFrame.from_ndarray(
            cv2.cvtColor(np.ascontiguousarray(tex[:, x : x + width]), cv2.COLOR_BGR2YUV_I420),
            format="yuv420p",
        )
        frame.pts, frame.time_base = i * 3000, TB
        yield frame
        i += 1


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_encoder_follows_a_lower_target_bitrate(codec: str) -> None:
    encoder = VideoEncoder(codec, 320, 180, 30, 1_000_000,  # type: ignore[arg-type]
                           reconfigure_interval_s=0)
    frames = _textured_frames(320, 180)
    sizes: list[int] = []
    for i in range(180):
        if i == 90:
            encoder.set_target_bitrate(250_000)
        sizes.append(sum(p.size for p in encoder.encode(next(frames))))
    before = sum(sizes[30:90]) * 8 / 2
    after = sum(sizes[120:180]) * 8 / 2
    assert encoder.target_bitrate == 250_000
    assert after < before * 0.5
    assert after < 250_000 * 1.4


def test_small_bitrate_wobble_and_rapid_changes_are_ignored() -> None:
    encoder = VideoEncoder("h264", 320, 180, 30, 1_000_000, reconfigure_interval_s=60)
    frames = _textured_frames(320, 180)
    encoder.encode(next(frames))
    encoder.set_target_bitrate(1_100_000)  # +10%: below the hysteresis
    encoder.encode(next(frames))
    assert encoder.target_bitrate == 1_000_000
    encoder.set_target_bitrate(400_000)  # big, but within the minimum interval
    encoder.encode(next(frames))
    assert encoder.target_bitrate == 1_000_000
    encoder.set_target_bitrate(10)  # clamped to the floor
    assert encoder._wanted_bitrate == encoder.min_bitrate


def test_source_specs() -> None:
    assert parse_source("testpattern").kind == "testpattern"
    assert parse_source("camera:2").camera_index == 2
    for bad in ("", "camera", "camera:x", "camera:-1", "file:", "file:/no/such/file.mp4",
                "rtsp://x", "screen"):
        with pytest.raises(ValueError):
            parse_source(bad)
    with pytest.raises(ValueError):
        publisher_factory("webcam", width=320, height=180, fps=30, codec="h264")


async def test_file_source_plays_a_file_in_a_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        renderer = PatternRenderer(320, 180, "File", 4)
        for i in range(10):
            frame = renderer.render_frame(i, 0)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    source = parse_source(f"file:{path}").open(320, 180, 30, "x", 0)
    counters = []
    try:
        for _ in range(25):
            pts = await source.tick()
            code = read_pattern_frame(source.frame_at(pts))
            counters.append(code.counter if code else None)
    finally:
        source.close()
    assert 0 in counters and 9 in counters
    assert counters.count(0) >= 2  # looped


class FakeClock:
    """The machine's clock, which a loaded CI box makes jumpy: here it moves only when the
    frame clock sleeps, or when the test says time was lost (a slow encode)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_frame_clock_paces_in_real_time_and_skips_rather_than_bursts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeClock()
    monkeypatch.setattr("classroom.agent.sources.time.monotonic", fake.monotonic)
    monkeypatch.setattr("classroom.agent.sources.asyncio.sleep", fake.sleep)
    clock = FrameClock(50)
    stamps = [await clock.tick() for _ in range(11)]
    assert stamps == [i * 1800 for i in range(11)]  # 90 kHz, one frame = 20 ms
    assert sum(fake.slept) == pytest.approx(0.2) and all(
        s == pytest.approx(0.02) for s in fake.slept)
    fake.now += 0.005  # an encode took a quarter frame: absorbed, next slot kept
    assert await clock.tick() == 11 * 1800 and fake.now == pytest.approx(1000.22)
    fake.now += 0.1  # five frames lost: continue from now, no burst of late frames
    fake.slept.clear()
    assert await clock.tick() == 16 * 1800 and fake.slept == []
    assert await clock.tick() == 17 * 1800 and fake.slept == [pytest.approx(0.02)]


def test_tone_is_phase_continuous_and_timed() -> None:
    tone = ToneSource(700)
    frames = [tone.frame() for _ in range(25)]
    assert [f.pts for f in frames] == [i * 960 for i in range(25)]
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    assert abs(dominant_frequency([samples], 48000) - 700) < 3
    assert not tone.frame(silent=True).to_ndarray().any()


def test_feedback_hook_is_where_aiortc_delivers_rtcp() -> None:
    # If aiortc renames the hook, keyframe requests and REMB would silently stop reaching
    # our encoder: fail here instead.
    assert HOOK == "_handle_rtcp_packet"
    assert inspect.iscoroutinefunction(getattr(RTCRtpSender, HOOK))
    assert list(inspect.signature(getattr(RTCRtpSender, HOOK)).parameters) == ["self", "packet"]
    assert f"recipient.{HOOK}(packet)" in inspect.getsource(RTCDtlsTransport._handle_rtcp_data)
    # and aiortc sends a track's av.Packet through pack(), not through its encoder
    assert ".pack(data)" in inspect.getsource(RTCRtpSender._next_encoded_frame)


# ------------------------------------------------------------------ loopback


async def _connect(publisher: MediaPublisher) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """The agent's way of publishing (see client._answer), against an in-process peer."""
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    audio, video = publisher.tracks()
    sender_pc.addTrack(audio)
    sender_pc.addTrack(video)
    preferred = publisher.preferred_video_codec().lower()
    for transceiver in sender_pc.getTransceivers():
        if transceiver.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(
                [c for c in codecs if c.mimeType.lower() == f"video/{preferred}"])
        publisher.attach_sender(transceiver.kind, transceiver.sender)
    await sender_pc.setLocalDescription(await sender_pc.createOffer())
    await receiver_pc.setRemoteDescription(sender_pc.localDescription)
    await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
    await sender_pc.setRemoteDescription(receiver_pc.localDescription)
    return sender_pc, receiver_pc


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_published_room_is_seen_and_heard_through_a_real_peer_connection(
    codec: str,
) -> None:
    factory = publisher_factory("testpattern", width=320, height=180, fps=30,
                                codec=codec, label_for=lambda cid, role: f"Room {cid}")
    publisher = factory(258, "publish")  # tag 258 & 0xFF = 2
    assert isinstance(publisher, MediaPublisher)
    sender_pc, receiver_pc = await _connect(publisher)
    try:
        receivers = {t.kind: t.receiver for t in receiver_pc.getTransceivers()}
        video_sender = next(s for s in sender_pc.getSenders() if s.kind == "video")
        codes: list[PatternCode] = []
        audio_chunks: list[np.ndarray] = []

        async def watch_video() -> None:
            while len(codes) < 45:
                frame = await receivers["video"].track.recv()
                code = read_pattern_frame(frame)
                if code is not None:
                    codes.append(code)
                if len(codes) == 15:
                    before = publisher.encoder.keyframes
                    await receivers["video"]._send_rtcp_pli(video_sender._ssrc)
                    for _ in range(50):
                        if publisher.encoder.keyframes > before:
                            break
                        await asyncio.sleep(0.01)
                    assert publisher.encoder.keyframes > before, "PLI did not reach encoder"

        async def listen() -> None:
            while sum(len(c) for c in audio_chunks) < 48000:
                frame = await receivers["audio"].track.recv()
                samples = frame.to_ndarray().reshape(-1, frame.layout.nb_channels)[:, 0]
                audio_chunks.append(samples)

        await asyncio.wait_for(asyncio.gather(watch_video(), listen()), timeout=10)
        mime = video_sender._RTCRtpSender__encoder.__class__.__name__
        assert mime == ("H264Encoder" if codec == "h264" else "Vp8Encoder")
        assert {c.tag for c in codes} == {2}
        counters = [c.counter for c in codes]
        assert counters == sorted(counters) and counters[-1] - counters[0] >= 40
        latency = (time.time() * 1000 - codes[-1].timestamp_ms) % 2**32
        assert latency < 1000
        tone = dominant_frequency(audio_chunks, 48000)
        assert tone is not None and abs(tone - tone_frequency(258)) < 10

        # REMB from the receiver side reaches the encoder (applied before a next frame)
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                              fci=pack_remb_fci(200_000, [video_sender._ssrc]))
        await receivers["video"]._send_rtcp(remb)
        for _ in range(100):
            if publisher.encoder._wanted_bitrate == 200_000:
                break
            await asyncio.sleep(0.01)
        assert publisher.encoder._wanted_bitrate == 200_000

        # a muted room keeps sending, black
        publisher.set_muted("video", True)
        for _ in range(30):
            frame = await receivers["video"].track.recv()
            if read_pattern_frame(frame) is None:
                break
        assert read_pattern_frame(frame) is None
    finally:
        await sender_pc.close()
        await receiver_pc.close()
        publisher.close()  # type: ignore[attr-defined]


def test_factory_gives_each_room_its_own_tag_tone_and_closes_the_last() -> None:
    factory = publisher_factory("testpattern", width=320, height=180, fps=30, codec="vp8")
    first = factory(3, "publish")
    assert isinstance(first, MediaPublisher)
    assert first.tag == 3 and first.audio.source.frequency_hz == 600
    assert first.preferred_video_codec() == "VP8"
    second = factory(3, "publish")
    assert first.video.readyState == "ended" and second.video.readyState == "live"
    assert isinstance(second.video.source, TestPatternSource)
    assert second.encoder.keyframe_interval_s == 4.0  # the agent's default
    second.close()  # type: ignore[attr-defined]
    slow = publisher_factory("testpattern", width=320, height=180, fps=30, codec="h264",
                             keyframe_interval_s=60.0)(3, "publish")
    assert isinstance(slow, MediaPublisher) and slow.encoder.keyframe_interval_s == 60.0
    slow.close()


def test_watch_feedback_refuses_a_sender_without_the_hook() -> None:
    class NotASender:
        _ssrc = 1

    with pytest.raises(RuntimeError):
        watch_sender_feedback(NotASender(), lambda: None, lambda _b: None)  # type: ignore[arg-type]


async def test_audio_leaves_the_track_as_opus_packets() -> None:
    # aiortc's own audio path (frames) costs a third of the box's CPU budget; see tracks.py
    track = ToneAudioTrack(ToneSource(500))
    packets = [await track.recv() for _ in range(5)]
    assert all(isinstance(p, av.Packet) for p in packets)
    assert [p.pts for p in packets] == [i * 960 for i in range(5)]
    decoder = av.CodecContext.create("libopus", "r")
    samples = np.concatenate([f.to_ndarray().reshape(-1) for p in packets
                              for f in decoder.decode(av.Packet(bytes(p)))])
    assert len(samples) >= 4 * 960
    track.stop()


def test_a_saved_reception_survives_the_agent_being_killed(tmp_path: Path) -> None:
    """`--save` writes what a room received; SIGKILL mid-lesson must leave a file that
    decodes up to the last fragment (the header and fragments reach the file as they are
    made, not when the container closes)."""
    path = tmp_path / "received.mp4"
    pid = os.fork()
    if pid == 0:  # the "agent": writes 1.5 s at 30 fps (g=30: one full fragment), then dies
        saver = FrameSaver(path)
        for i in range(45):
            saver.write(av.VideoFrame.from_ndarray(np.full((180, 320, 3), i * 5, np.uint8)),
                        i / 30)
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert len(frames) >= 30
    assert abs(float(frames[10].mean()) - 50) < 8  # the picture that was written


def test_a_saved_reception_keeps_each_pictures_arrival_time_and_a_reconnection_its_own_file(
    tmp_path: Path,
) -> None:
    """`--save` used to stamp every packet 0: after 1,501 frames the muxer refused the file
    (`returned 22`) and the consuming task died unseen. Now each picture carries when it
    arrived (a fake clock here: 2,000 pictures 1/30 s apart, with a 2 s freeze after the
    1,000th), and a second saver for the same track (a reconnection) writes beside it."""
    path = tmp_path / "received-mid1.mp4"
    saver = FrameSaver(path)
    arrivals = [i / 30 + (2.0 if i > 1000 else 0.0) for i in range(2000)]
    for i, at in enumerate(arrivals):
        saver.write(av.VideoFrame.from_ndarray(np.full((36, 64, 3), i % 250, np.uint8)), at)
    saver.close()
    again = FrameSaver(path)
    again.write(av.VideoFrame.from_ndarray(np.zeros((36, 64, 3), np.uint8)), 100.0)
    again.close()
    assert again.path == tmp_path / "received-mid1-2.mp4" and again.path.exists()

    with av.open(str(path)) as container:
        times = [float(f.time) for f in container.decode(video=0)]
    assert len(times) == 2000  # the whole file decodes
    assert times == sorted(times)
    assert times[-1] == pytest.approx(arrivals[-1], abs=0.001)  # a fake clock, exactly
    assert times[1001] - times[1000] == pytest.approx(2.0 + 1 / 30, abs=0.001)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "2000" and probe.stderr == ""
