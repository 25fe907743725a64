"""How much CPU does the live HLS broadcaster add to the server? (one teacher, 720p30)

The teacher's stream is prepared first and is not counted: the agent's own encoder
(`VideoEncoder`, x264 ultrafast/zerolatency, 2 Mbit/s) renders the test pattern at
720p30 with a keyframe every --segment seconds (as the broadcaster's PLIs make it), plus a
stereo Opus tone in 20 ms packets, all packetised into RTP by aiortc's own packetisers.

Then the RTP is replayed in real time into real `Publication`s (the server's receive
side: statistics, NACK bookkeeping, keyframe detection), twice:
- `router`: the publications alone, no sink (what any lesson costs);
- `broadcast`: the same with a `LiveBroadcaster` subscribed (frame assembly, lesson clock,
  Opus→AAC, MPEG-TS muxing and atomic writes in its worker thread, playlist).
The difference is what the broadcast adds. CPU is this process's user+system time (all
threads) over wall time, in % of one core.

    .venv/bin/python bench/broadcast.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import numpy as np
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtp import RtpPacket

from classroom.agent.encoder import VideoEncoder
from classroom.agent.testpattern import PatternRenderer
from recorder.broadcast.live import LiveBroadcaster
from signaling.media.publication import Publication

TB = Fraction(1, 90000)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def prepare(seconds: float, width: int, height: int, fps: int, bitrate: int,
            segment: float) -> list[tuple[float, str, RtpPacket]]:
    """(send time s, kind, packet) for the whole clip, in send order."""
    encoder = VideoEncoder("h264", width, height, fps, bitrate)
    renderer = PatternRenderer(width, height, "teacher", 1)
    packer = H264Encoder()
    out: list[tuple[float, str, RtpPacket]] = []
    seq = 0
    frames = int(seconds * fps)
    every = max(1, round(segment * fps))
    for i in range(frames):
        t = i / fps
        if i % every == 0:
            encoder.request_keyframe()
        frame = renderer.render_frame(i, int(t * 1000))
        frame.pts = round(t * 90000)
        frame.time_base = TB
        for packet in encoder.encode(frame):
            payloads, timestamp = packer.pack(packet)
            for n, payload in enumerate(payloads):
                rtp = RtpPacket(payload_type=102, marker=int(n == len(payloads) - 1),
                                sequence_number=seq & 0xFFFF, timestamp=timestamp & 0xFFFFFFFF,
                                ssrc=1111, payload=payload)
                seq += 1
                out.append((t, "video", rtp))
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "stereo", "s16"
    opus.bit_rate = 64000
    opus.time_base = Fraction(1, 48000)
    opus.open()
    seq = 0
    for i in range(int(seconds * 50)):
        t = (np.arange(960) + i * 960) / 48000
        tone = (np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * 960
        for packet in opus.encode(frame):
            rtp = RtpPacket(payload_type=111, sequence_number=seq & 0xFFFF,
                            timestamp=(packet.pts or 0) & 0xFFFFFFFF, ssrc=2222,
                            payload=bytes(packet))
            seq += 1
            out.append((i * 0.02, "audio", rtp))
    out.sort(key=lambda x: x[0])
    return out


def publications() -> dict[str, Publication]:
    video = Publication(track_id="1-video", classroom_id=1, kind="video", rtcp_ssrc=9,
                        send_rtcp=lambda data: None)
    video.start(RTCRtpReceiveParameters(codecs=[RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=102,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"})]))
    audio = Publication(track_id="1-audio", classroom_id=1, kind="audio", rtcp_ssrc=9,
                        send_rtcp=lambda data: None)
    audio.start(RTCRtpReceiveParameters(codecs=[RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)]))
    return {"video": video, "audio": audio}


async def replay(clip: list[tuple[float, str, RtpPacket]], broadcast: bool,
                 directory: Path) -> dict[str, object]:
    pubs = publications()
    lesson = SimpleNamespace(
        lesson_id=1, main_id=1, roster=SimpleNamespace(kind="famous_school", broadcast=True),
        publication_observers=[], publications={p.track_id: p for p in pubs.values()},
        transcodes=0)
    broadcaster = None
    if broadcast:
        broadcaster = LiveBroadcaster(lesson, directory)  # type: ignore[arg-type]
        broadcaster.attach()
    start = time.monotonic()
    cpu0 = cpu_seconds()
    loop_lag: list[float] = []
    for at, kind, packet in clip:
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            loop_lag.append(-delay)
        await pubs[kind].on_rtp(packet, int(time.monotonic() * 1000))
    if broadcaster is not None:
        await broadcaster.finish()
    wall = time.monotonic() - start
    cpu = cpu_seconds() - cpu0
    result: dict[str, object] = {"cpu_percent": round(100 * cpu / wall, 1),
                                 "wall_s": round(wall, 1)}
    if broadcaster is not None:
        state = broadcaster.state()
        result.update(segments=state.segments,
                      mean_segment_s=round(statistics.mean(
                          s.duration for s in broadcaster.writer.listed()), 2),
                      errors=broadcaster.writer.counters.write_errors)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--segment", type=float, default=2.0, help="keyframe interval, s")
    args = parser.parse_args()
    print(f"preparing {args.seconds:.0f} s of {args.width}x{args.height}@{args.fps} "
          f"H.264 {args.bitrate // 1000} kbit/s + Opus ...", flush=True)
    clip = prepare(args.seconds, args.width, args.height, args.fps, args.bitrate, args.segment)
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        model = next((ln.split(":", 1)[1].strip() for ln in info
                      if ln.startswith("model name")), "?")
    print(f"machine: {model}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
          f"PyAV {av.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        router = asyncio.run(replay(clip, False, Path(tmp) / "r"))
        broadcast = asyncio.run(replay(clip, True, Path(tmp) / "b"))
    print(f"router only:        {router}")
    print(f"router + broadcast: {broadcast}")
    added = float(broadcast["cpu_percent"]) - float(router["cpu_percent"])  # type: ignore[arg-type]
    print(f"broadcast adds {added:.1f}% of one core")


if __name__ == "__main__":
    main()
