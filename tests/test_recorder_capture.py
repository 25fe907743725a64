"""Crash-safe capture: packet logs, RTP → frames, the lesson clock, and whole lessons.

Real media throughout: x264/libvpx output packetised by aiortc's own packetisers for the
unit tests, real `tongbu agent` processes and the real server for the lesson tests. What
was recorded is read back by decoding it (PyAV) and reading the test pattern each frame
carries: the room's tag, a frame counter and the wall-clock time it was drawn.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import aiohttp
import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

import tests.live_harness as harness
from classroom.agent.client import ClassroomAgent, Reporter
from classroom.agent.encoder import VideoEncoder
from classroom.agent.publisher import publisher_factory
from classroom.agent.testpattern import PatternRenderer, read_pattern_frame
from recorder.capture.clock import NTP_EPOCH_OFFSET, TimestampUnwrapper, TrackClock
from recorder.capture.depacketize import FrameAssembler, frame_size
from recorder.capture.packetlog import (
    LoggedFrame,
    PacketLogError,
    PacketLogWriter,
    TrackMeta,
    read_packet_log,
    scan_packet_log,
)
from recorder.capture.recorder import capture_dir
from recorder.capture.setup import FINALISERS, FINALISING, RECORDERS, setup_recorder
from signaling import protocol
from tests.live_harness import (
    Api,
    create_lesson,
    free_port,
    join_token,
    running_server,
    start_agent,
    stop_all,
    wait_for,
)

TONGBU = harness.TONGBU


# --------------------------------------------------------------------------- helpers


def encoded_frames(codec: str, count: int, *, keyframe_interval_s: float = 1.0) -> list[bytes]:
    """Real encoder output of the test pattern (what a classroom box sends), 320x180."""
    encoder = VideoEncoder(codec, 320, 180, 15, 400_000, keyframe_interval_s=keyframe_interval_s)
    renderer = PatternRenderer(320, 180, "unit", 7)
    out = []
    for i in range(count):
        for packet in encoder.encode(renderer.render_frame(i, i * 66)):
            out.append(bytes(packet))
    return out


def rtp_stream(
    codec: str, frames: list[bytes], *, seq0: int, ts0: int, step: int = 6000
) -> list[list[RtpPacket]]:
    """Each frame packetised by aiortc's own packetiser into RTP packets (marker on last)."""
    packer = H264Encoder() if codec == "h264" else Vp8Encoder()
    seq = seq0
    stream = []
    for i, frame in enumerate(frames):
        packet = av.Packet(frame)
        packet.pts = 0
        packet.time_base = Fraction(1, 90000)
        payloads, _ = packer.pack(packet)
        ts = (ts0 + i * step) & 0xFFFFFFFF
        packets = []
        for j, payload in enumerate(payloads):
            packets.append(
                RtpPacket(payload_type=96, marker=j == len(payloads) - 1,
                          sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=1234,
                          payload=payload)
            )
            seq += 1
        stream.append(packets)
    return stream


def annexb(frame: bytes) -> bytes:
    """What the assembler must give back for one x264 access unit: each NAL of it with a
    4-byte start code (aiortc's depayloader writes 4-byte codes, x264 mixes 3 and 4)."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in H264Encoder._split_bitstream(frame))


def decode_video(codec: str, frames: list[LoggedFrame]) -> list[av.VideoFrame]:
    context = av.CodecContext.create("h264" if codec.lower().endswith("h264") else "libvpx", "r")
    pictures = []
    for frame in frames:
        pictures.extend(context.decode(av.Packet(frame.data)))
    pictures.extend(context.decode(None))
    return pictures


def decode_opus(frames: list[LoggedFrame]) -> int:
    context = av.CodecContext.create("libopus", "r")
    context.sample_rate = 48000
    context.layout = "stereo"
    samples = 0
    for frame in frames:
        for decoded in context.decode(av.Packet(frame.data)):
            samples += decoded.samples
    return samples


def meta(kind: str = "video", codec: str = "video/H264") -> TrackMeta:
    return TrackMeta(lesson_id=1, classroom_id=2, kind=kind, codec=codec,
                     clock_rate=90000 if kind == "video" else 48000, part=0,
                     started_at_unix=time.time())


def read_events(directory: Path) -> list[dict]:
    events = []
    for line in (directory / "events.jsonl").read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass  # a torn last line after a crash
    return events


# --------------------------------------------------------------------------- packet log


def test_packet_log_round_trip(tmp_path: Path) -> None:
    frames = encoded_frames("h264", 30)
    path = tmp_path / "2-video.000.tbl"
    writer = PacketLogWriter(path, meta())
    for i, data in enumerate(frames):
        writer.append(i * 66_667, i == 0, data)
        if i % 10 == 0:
            writer.flush(sync=True)
    writer.close()
    writer.close()  # twice is harmless
    got_meta, got = read_packet_log(path)
    assert got_meta == writer.meta
    assert [f.data for f in got] == frames
    assert [f.pts_us for f in got] == [i * 66_667 for i in range(30)]
    assert [f.keyframe for f in got] == [True] + [False] * 29
    assert scan_packet_log(path).torn_bytes == 0


def test_torn_tail_at_every_byte_of_the_last_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "2-audio.000.tbl"
    writer = PacketLogWriter(path, meta("audio", "audio/opus"))
    for i in range(5):
        writer.append(i * 20_000, False, bytes([i]) * 60)
    writer.close()
    whole = path.read_bytes()
    record = 4 + 4 + 8 + 1 + 60
    last_start = len(whole) - record
    for cut in range(last_start, len(whole)):
        torn = tmp_path / "torn.tbl"
        torn.write_bytes(whole[:cut])
        _, frames = read_packet_log(torn)
        assert len(frames) == 4, cut
        assert scan_packet_log(torn).torn_bytes == cut - last_start
    # a flipped byte in the last record is torn too (power cut: garbage, not zeros)
    corrupt = bytearray(whole)
    corrupt[-3] ^= 0xFF
    torn.write_bytes(bytes(corrupt))
    assert len(read_packet_log(torn)[1]) == 4


def test_a_file_that_is_not_a_packet_log_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.tbl"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(PacketLogError, match="bad magic"):
        read_packet_log(path)
    path.write_bytes(b"")
    with pytest.raises(PacketLogError, match="bad magic"):
        read_packet_log(path)


# --------------------------------------------------------------------------- depacketize


def test_h264_from_aiortc_packetisation_is_reassembled_byte_exact_across_wraps() -> None:
    frames = encoded_frames("h264", 45)  # keyframes at 0, 15, 30
    # sequence numbers and timestamps both wrap inside the stream
    stream = rtp_stream("h264", frames, seq0=65_530, ts0=0xFFFFFFFF - 6000 * 10)
    assembler = FrameAssembler("video/H264")
    got = [f for packets in stream for p in packets for f in assembler.push(p)]
    assert [f.data for f in got] == [annexb(f) for f in frames]
    assert [f.keyframe for f in got] == [i % 15 == 0 for i in range(45)]
    assert [f.rtp_timestamp for f in got] == [p[0].timestamp for p in stream]
    assert assembler.counters.lost_packets == 0 and not assembler.needs_keyframe
    assert frame_size("video/H264", got[0].data) == (320, 180)
    pictures = decode_video("h264", [LoggedFrame(0, f.keyframe, f.data) for f in got])
    assert [read_pattern_frame(p).counter for p in pictures] == list(range(45))


def test_vp8_from_aiortc_packetisation_is_reassembled_byte_exact() -> None:
    frames = encoded_frames("vp8", 20)
    stream = rtp_stream("vp8", frames, seq0=100, ts0=5)
    assembler = FrameAssembler("video/VP8")
    got = [f for packets in stream for p in packets for f in assembler.push(p)]
    assert [f.data for f in got] == frames
    assert got[0].keyframe
    assert frame_size("video/VP8", got[0].data) == (320, 180)


def test_a_lost_packet_drops_its_frame_and_waits_for_the_next_keyframe() -> None:
    frames = encoded_frames("h264", 45)
    stream = rtp_stream("h264", frames, seq0=1000, ts0=0)
    victim = 20  # a delta frame between the keyframes at 15 and 30
    assembler = FrameAssembler("video/H264", max_delay=0.1)
    got = []
    waits = []
    for i, packets in enumerate(stream):
        for p in packets:
            if i == victim and p is packets[0]:
                continue  # lost, and never retransmitted
            got.extend(assembler.push(p))
        waits.append(assembler.needs_keyframe)
    counters = [read_pattern_frame(p).counter for p in decode_video(
        "h264", [LoggedFrame(0, f.keyframe, f.data) for f in got])]
    # frames 20..29 are gone (20 broken, 21..29 need it); 30 is a keyframe and resumes
    assert counters == [*range(20), *range(30, 45)]
    assert assembler.counters.lost_packets == 1
    assert assembler.counters.keyframe_waits == 2  # the start, then the loss
    assert any(waits[victim:30]) and not waits[30]


def test_a_retransmission_within_the_window_fills_the_hole() -> None:
    frames = encoded_frames("h264", 10)
    stream = rtp_stream("h264", frames, seq0=65_500, ts0=0)
    packets = [p for frame in stream for p in frame]
    held = packets.pop(7)
    packets.insert(12, held)  # arrives five packets late, as a NACK answer would
    assembler = FrameAssembler("video/H264")
    got = [f for p in packets for f in assembler.push(p)]
    assert [f.data for f in got] == [annexb(f) for f in frames]
    assert assembler.counters.recovered_packets == 1
    assert assembler.counters.lost_packets == 0


def test_audio_packets_are_frames_and_loss_needs_no_keyframe() -> None:
    assembler = FrameAssembler("audio/opus")
    got = []
    for i in range(10):
        if i == 4:
            continue  # lost; given up once later packets span more than 80 ms
        packet = RtpPacket(payload_type=111, sequence_number=(65_533 + i) & 0xFFFF,
                           timestamp=(0xFFFFFF00 + 960 * i) & 0xFFFFFFFF, payload=bytes([i]) * 3)
        got.extend(assembler.push(packet))
    assert [f.data[0] for f in got] == [0, 1, 2, 3]  # 5.. wait behind the hole
    got.extend(assembler.flush())  # the stream ended: nothing more will fill it
    assert [f.data[0] for f in got] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert not assembler.needs_keyframe and assembler.counters.lost_packets == 1


# --------------------------------------------------------------------------- clock


def ntp_of(unix: float) -> int:
    seconds = unix + NTP_EPOCH_OFFSET
    return (int(seconds) << 32) | int((seconds % 1) * 2**32)


def test_timestamps_unwrap_across_32_bits() -> None:
    unwrap = TimestampUnwrapper()
    values = [0xFFFF_FF00, 0xFFFF_FFF0, 0x10, 0x1000, 0x0F00]  # wrap, then a late frame
    assert [unwrap.unwrap(v) for v in values] == [
        0xFFFF_FF00, 0xFFFF_FFF0, 0x1_0000_0010, 0x1_0000_1000, 0x1_0000_0F00]


def test_sender_reports_put_a_rooms_audio_and_video_on_one_clock() -> None:
    origin = 1_700_000_000.0
    skew = 180.0  # the classroom box's clock is three minutes fast
    from recorder.capture.clock import RoomClock

    room = RoomClock()
    video = TrackClock(90000, origin, room)
    audio = TrackClock(48000, origin, room)
    # Both captured at origin + 10 s; video reaches the server 60 ms later than audio
    # (encoding), so arrival times alone would put it 60 ms late.
    v_ts0, a_ts0 = 0xFFFF_0000, 123_456
    capture = origin + 10.0
    sr_v = (ntp_of(capture + skew), v_ts0, capture + 0.005)
    sr_a = (ntp_of(capture + skew), a_ts0, capture + 0.005)
    first_a = audio.to_lesson_us(a_ts0, capture + 0.010, sr_a)
    first_v = video.to_lesson_us(v_ts0, capture + 0.070, sr_v)
    assert abs(first_a - 10_005_000) < 1000  # SR at hand: the SR mapping, skew removed
    # After ten seconds of media both are at capture + 10 s, within a millisecond,
    # though video wraps its 32-bit timestamp meanwhile.
    v_late = video.to_lesson_us((v_ts0 + 900_000) & 0xFFFFFFFF, capture + 10.07, sr_v)
    a_late = audio.to_lesson_us(a_ts0 + 480_000, capture + 10.01, sr_a)
    assert abs(v_late - a_late) < 1000
    assert abs(first_v - first_a) < 1000
    assert video.synced and audio.synced


def test_without_a_report_arrival_anchors_and_a_later_report_is_slewed_in() -> None:
    origin = 1_700_000_000.0
    clock = TrackClock(90000, origin)
    # the first (key) frame came late, 40 ms behind its own timestamp, a big frame's burst
    first = clock.to_lesson_us(1000, origin + 1.040)
    assert first == 1_040_000
    # the first SR (no network delay here) says timestamp 46000 was at origin + 1.5,
    # so frame 1000 really belongs at origin + 1.0: 40 ms to take back, gradually
    sr = (ntp_of(origin + 1.5), 1000 + 45000, origin + 1.5)
    stamps = [clock.to_lesson_us(1000 + 3000 * i, origin + 1.04 + i / 30, sr)
              for i in range(1, 90)]
    steps = [b - a for a, b in zip([first, *stamps], stamps, strict=False)]
    assert all(30_000 < s <= 33_334 for s in steps), steps  # monotonic, never squeezed
    assert abs(stamps[-1] - (1_000_000 + 89 * 100_000 / 3)) < 2


def test_a_sender_that_stalls_without_skipping_timestamps_leaves_a_gap() -> None:
    origin = 1_700_000_000.0
    clock = TrackClock(48000, origin)
    stamps = [clock.to_lesson_us(960 * i, origin + 1 + i * 0.02) for i in range(50)]
    # the sender stalls 0.4 s, then goes on where its timestamps left off
    stamps += [clock.to_lesson_us(960 * i, origin + 1.4 + i * 0.02) for i in range(50, 400)]
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(s > 0 for s in steps)
    assert sorted(steps)[-1] > 350_000  # one clean gap, once the window shows the stall
    assert abs(stamps[-1] - (1_400_000 + 399 * 20_000)) < 1000  # back on arrival time


# --------------------------------------------------------------------------- lessons


@pytest.fixture
def recording_server(monkeypatch: pytest.MonkeyPatch):
    """`running_server` with the recorder wired in (idempotent once create_app does it)."""
    original = harness.create_app

    def create_app_with_recorder(settings):  # type: ignore[no-untyped-def]
        app = original(settings)
        setup_recorder(app)
        return app

    monkeypatch.setattr(harness, "create_app", create_app_with_recorder)
    return running_server


def logs_of(directory: Path, classroom_id: int, kind: str) -> list[Path]:
    return sorted(directory.glob(f"{classroom_id}-{kind}.*.tbl"))


def frames_in(directory: Path, classroom_id: int, kind: str, part: int = 0) -> int:
    path = directory / f"{classroom_id}-{kind}.{part:03d}.tbl"
    if not path.exists():
        return 0
    try:
        return scan_packet_log(path).frames
    except PacketLogError:
        return 0  # header not written yet


def check_video(path: Path, classroom_id: int) -> tuple[list[LoggedFrame], list]:
    """Every frame decodes and shows this room's pattern, counters without a hole."""
    meta, frames = read_packet_log(path)
    assert meta.codec == "video/H264" and meta.classroom_id == classroom_id
    assert (meta.width, meta.height) == (320, 180)
    assert frames and frames[0].keyframe
    pts = [f.pts_us for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    pictures = decode_video(meta.codec, frames)
    assert len(pictures) == len(frames)
    codes = [read_pattern_frame(p) for p in pictures]
    assert all(c is not None and c.tag == classroom_id & 0xFF for c in codes), path
    counters = [c.counter for c in codes]
    assert counters == list(range(counters[0], counters[0] + len(counters))), path
    return frames, codes


def lag_s(recorded_unix: float, drawn_ms: int) -> float:
    """Recorded time minus the time the agent drew the frame (its ms clock wraps at 2**32)."""
    diff = (round(recorded_unix * 1000) - drawn_ms) % 2**32
    return (diff - 2**32 if diff >= 2**31 else diff) / 1000


def check_audio(path: Path) -> list[LoggedFrame]:
    meta, frames = read_packet_log(path)
    assert meta.codec.lower() == "audio/opus" and frames
    assert decode_opus(frames) >= len(frames) * 960 * 0.9  # every packet gave 20 ms
    return frames


async def in_process_main(server_url: str, token: str, workdir: Path):
    factory = publisher_factory("testpattern", width=320, height=180, fps=15, codec="h264")
    reporter = Reporter((workdir / "main.jsonl").open("w"))
    agent = ClassroomAgent(server_url, token, publisher_factory=factory, reporter=reporter,
                           report_interval=0.5)
    return agent, asyncio.ensure_future(agent.run())


@pytest.mark.timeout(180)
async def test_a_lesson_is_recorded_per_room_on_one_clock_with_its_timeline(
    tmp_path: Path, recording_server
) -> None:
    async with recording_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=2)
        lid = lesson.lesson_id
        finalised: list[tuple[int, Path]] = []

        async def finaliser(lesson_id: int, directory: Path) -> None:
            finalised.append((lesson_id, directory))

        server.app[FINALISERS].append(finaliser)
        directory = capture_dir(tmp_path / "data", lid)
        teacher = lesson.main_classroom_id
        rooms = [teacher, *lesson.receiving_classroom_ids]
        main, main_task = await in_process_main(
            server.base_url, await join_token(api, lid, "main", teacher), tmp_path)
        agents = [start_agent(f"room{cid}", server.base_url,
                              await join_token(api, lid, "receiving", cid), tmp_path)
                  for cid in lesson.receiving_classroom_ids]
        try:
            await wait_for(lambda: all(frames_in(directory, c, "video") > 15 for c in rooms),
                           30, "every room's video to be recorded")
            staged = lesson.receiving_classroom_ids[0]
            await main.send(protocol.Stage(classroom_id=staged))
            await asyncio.sleep(3)
            await main.send(protocol.Stage(classroom_id=None))
            await asyncio.sleep(3)
            left = lesson.receiving_classroom_ids[1]
            await agents[1].stop()
            await asyncio.sleep(1)
            counters = server.app[RECORDERS][lid].counters
            assert counters.frames > 0 and counters.errors == 0
            ended_at = time.time()
            await api.call("POST", f"/lessons/{lid}/end")
        finally:
            main.stop()
            await stop_all(agents)
            await asyncio.wait_for(main_task, 10)
        if (task := server.app[FINALISING].get(lid)) is not None:
            await task
        assert finalised == [(lid, directory)]

    info = json.loads((directory / "lesson.json").read_text())
    assert info["state"] == "complete" and info["lesson_id"] == lid
    assert info["end_reason"] and abs(info["ended_at_unix"] - ended_at) < 5
    assert [r["classroom_id"] for r in info["rooms"]] == rooms
    origin = info["clock_origin_unix"]

    events = read_events(directory)
    assert events[0]["kind"] == "recording_started"
    kinds = [(e["kind"], e["classroom_id"]) for e in events]
    for cid in rooms:
        assert ("join", cid) in kinds
    assert ("stage", staged) in kinds and ("unstage", staged) in kinds
    assert kinds.index(("stage", staged)) < kinds.index(("unstage", staged))
    assert ("leave", left) in kinds
    assert [e["t_us"] for e in events] == sorted(e["t_us"] for e in events)
    joined = {e["classroom_id"]: e["t_us"] for e in events if e["kind"] == "join"}

    latencies = {}
    for cid in rooms:
        [video_log] = logs_of(directory, cid, "video")
        [audio_log] = logs_of(directory, cid, "audio")
        frames, codes = check_video(video_log, cid)
        audio = check_audio(audio_log)
        # The lesson clock is the server's wall clock: each frame lands a few ms to a few
        # hundred ms after the time the agent drew into it (encode + network), never
        # before, and the same for every room, so the rooms line up.
        lag = [lag_s(f.pts_us / 1e6 + origin, c.timestamp_ms)
               for f, c in zip(frames, codes, strict=True)]
        latencies[cid] = sorted(lag)[len(lag) // 2]
        assert -0.05 < latencies[cid] < 0.3, (cid, latencies[cid])
        # a room's first media comes soon after its join, on the same clock
        for first in (frames[0].pts_us, audio[0].pts_us):
            assert 0 <= first - joined[cid] < 3_000_000, (cid, first, joined[cid])
        # audio and video of a room cover the same span
        assert abs(audio[0].pts_us - frames[0].pts_us) < 1_500_000
    assert max(latencies.values()) - min(latencies.values()) < 0.2, latencies
    print("capture-to-record lag per room (s):", latencies)


def admin_token(data_dir: Path) -> str:
    env = {**os.environ, "TONGBU_PASSWORD": "kill-test-password-1"}
    common = ["--data-dir", str(data_dir)]
    subprocess.run([TONGBU, "admin", "create-user", "--username", "admin", "--role", "admin",
                    *common], check=True, env=env, capture_output=True)
    done = subprocess.run([TONGBU, "admin", "issue-token", "--username", "admin", *common],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`tongbu serve` as a separate process, as it runs in a school."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [TONGBU, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(180)
async def test_kill_9_of_the_server_loses_at_most_two_seconds(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = admin_token(data_dir)
    port = free_port()
    server = serve(data_dir, port, tmp_path / "server.log")
    base_url = f"http://127.0.0.1:{port}"
    agents = []
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(base_url, token, http)

            async def up() -> bool:
                try:
                    await api.call("GET", "/lessons")
                    return True
                except (aiohttp.ClientError, harness.ApiError):
                    return False

            deadline = time.monotonic() + 30
            while not await up():
                assert time.monotonic() < deadline and server.poll() is None, "server start"
                await asyncio.sleep(0.2)
            lesson = await create_lesson(api, receiving=2)
            lid = lesson.lesson_id
            rooms = [lesson.main_classroom_id, *lesson.receiving_classroom_ids]
            agents.append(start_agent("main", base_url, await join_token(
                api, lid, "main", lesson.main_classroom_id), tmp_path))
            for cid in lesson.receiving_classroom_ids:
                agents.append(start_agent(f"room{cid}", base_url, await join_token(
                    api, lid, "receiving", cid), tmp_path))
        directory = capture_dir(data_dir, lid)
        await wait_for(lambda: all(frames_in(directory, c, "video") > 0 for c in rooms), 30,
                       "every room's video to be recorded by the served app "
                       "(is setup_recorder called in create_app?)")
        await asyncio.sleep(6)
        server.send_signal(signal.SIGKILL)
        killed_at = time.time()
        server.wait()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        await stop_all(agents)

    info = json.loads((directory / "lesson.json").read_text())
    assert info["state"] == "recording"  # it never ended cleanly
    origin = info["clock_origin_unix"]
    assert {e["kind"] for e in read_events(directory)} >= {"recording_started", "join"}
    for cid in rooms:
        for kind in ("video", "audio"):
            [path] = logs_of(directory, cid, kind)
            _, frames = read_packet_log(path)
            last = frames[-1].pts_us / 1e6 + origin
            assert killed_at - last < 2.0, (path.name, killed_at - last)
        check_video(directory / f"{cid}-video.000.tbl", cid)


@pytest.mark.timeout(180)
async def test_a_room_that_drops_and_comes_back_leaves_a_gap_not_a_broken_file(
    tmp_path: Path, recording_server
) -> None:
    async with recording_server(tmp_path / "data") as server:
        api = server.api
        lesson = await create_lesson(api, receiving=1)
        lid = lesson.lesson_id
        directory = capture_dir(tmp_path / "data", lid)
        [rural] = lesson.receiving_classroom_ids
        agents = [start_agent("main", server.base_url, await join_token(
            api, lid, "main", lesson.main_classroom_id), tmp_path)]
        agents.append(start_agent("rural", server.base_url, await join_token(
            api, lid, "receiving", rural), tmp_path))
        try:
            await wait_for(lambda: frames_in(directory, rural, "video") > 20, 30,
                           "the rural room's video to be recorded")
            await agents[1].stop()
            stopped_at = time.time()
            await asyncio.sleep(4)
            agents.append(start_agent("rural-again", server.base_url, await join_token(
                api, lid, "receiving", rural), tmp_path))
            await wait_for(lambda: frames_in(directory, rural, "video", 1) > 30, 30,
                           "the rural room's video to be recorded again")
            await api.call("POST", f"/lessons/{lid}/end")
        finally:
            await stop_all(agents)

    info = json.loads((directory / "lesson.json").read_text())
    assert info["state"] == "complete"
    for kind in ("video", "audio"):
        paths = logs_of(directory, rural, kind)
        assert [p.name for p in paths] == [f"{rural}-{kind}.000.tbl", f"{rural}-{kind}.001.tbl"]
        metas = [read_packet_log(p)[0] for p in paths]
        assert [m.part for m in metas] == [0, 1]
        before = read_packet_log(paths[0])[1]
        after = read_packet_log(paths[1])[1]
        gap = (after[0].pts_us - before[-1].pts_us) / 1e6
        assert 3.5 < gap < 20, (kind, gap)  # down 4 s, then a process start and ICE
        # The gap sits where the room was away: part 0 ends by the time the room was gone,
        # part 1 begins after it came back (the lesson clock read as wall-clock time).
        origin = info["clock_origin_unix"]
        assert before[-1].pts_us / 1e6 + origin < stopped_at + 0.5, kind
        assert after[0].pts_us / 1e6 + origin > stopped_at + 3.5, kind
    for part in (0, 1):
        check_video(directory / f"{rural}-video.{part:03d}.tbl", rural)
    # the teacher's track was never interrupted
    assert len(logs_of(directory, lesson.main_classroom_id, "video")) == 1
    kinds = [(e["kind"], e["classroom_id"]) for e in read_events(directory)]
    assert kinds.count(("join", rural)) == 2 and ("leave", rural) in kinds


async def test_a_restarted_server_resumes_the_capture_on_the_same_clock(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from classroom.lessons import LessonRoster, RosterRoom
    from recorder.capture.recorder import LessonRecorder
    from signaling.live.lesson import LiveLesson

    now = datetime.now(UTC)
    roster = LessonRoster(
        lesson_id=7, state="live", kind="dedicated", subject="数学", grade="初二",
        teacher_name="王老师", title="一次函数", planned_start=now, planned_end=now,
        broadcast=False,
        rooms=(RosterRoom(1, "主讲教室", "城关一中", "main", 0),
               RosterRoom(2, "听课1", "乡村小学1", "receiving", 1)))
    first = LessonRecorder(LiveLesson(roster), tmp_path)
    first.start()
    PacketLogWriter(first.directory / "2-video.000.tbl", meta()).close()
    await first.finish(None)  # the server stops, the lesson does not end
    info = json.loads((first.directory / "lesson.json").read_text())
    assert info["state"] == "recording" and info["rooms"][1]["school_name"] == "乡村小学1"

    second = LessonRecorder(LiveLesson(roster), tmp_path)
    assert second.origin_unix == first.origin_unix
    assert second._parts[(2, "video")] == 0  # the room's next log will be part 001
    await second.finish("teacher_ended")
    info = json.loads((second.directory / "lesson.json").read_text())
    assert info["state"] == "complete" and info["end_reason"] == "teacher_ended"
    assert info["clock_origin_unix"] == first.origin_unix
    kinds = [e["kind"] for e in read_events(second.directory)]
    assert kinds == ["recording_started", "recording_started", "recording_ended"]
