"""How much CPU does a classroom box spend publishing 720p30? (target: <= 25% of one core)

Cases, each paced in real time for --seconds after a warm-up:
- `encode`: our path without networking: test pattern rendered in I420, encoded by
  `VideoEncoder` (x264 ultrafast/zerolatency) into packets.
- `aiortc-encode`: the same frames through aiortc's own `H264Encoder` (what a
  VideoStreamTrack returning av.VideoFrame costs in the sender).
- `publish`: the agent's real `MediaPublisher` (video packets + Opus tone) through a real
  RTCPeerConnection to a receiver in *another process* (which decodes and reads the
  pattern back), so packetisation, SRTP and RTCP are counted and decoding is not.
- `aiortc-publish`: the same loopback with a VideoStreamTrack of av.VideoFrames, which
  aiortc encodes with its default encoder.

CPU is this process's user+system time (all threads) over wall time, in % of one core.

    .venv/bin/python bench/publish.py --seconds 20
    .venv/bin/python bench/publish.py --seconds 20 --cases encode,aiortc-encode --content texture
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import cv2
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import VideoStreamTrack

from classroom.agent.encoder import VideoEncoder
from classroom.agent.publisher import MediaPublisher, initial_bitrate
from classroom.agent.sources import FrameClock, SourceSpec
from classroom.agent.testpattern import PatternCode, PatternRenderer, read_pattern_frame

TB = Fraction(1, 90000)


@dataclass
class Result:
    case: str
    cpu_percent: float
    fps: float
    kbps: float
    note: str = ""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # this process, all threads; no children
    return usage.ru_utime + usage.ru_stime


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, nproc {os.cpu_count()}, {platform.system()} {platform.release()}"


# ------------------------------------------------------------------ encode only


class TextureFrames:
    """Camera-like content: a detailed image panning 3 px per frame, code block stamped.

    The test pattern is mostly flat colour and cheap to encode; a classroom camera is not.
    """

    def __init__(self, width: int, height: int) -> None:
        rng = np.random.default_rng(1)
        small = rng.integers(0, 256, (height // 4, width // 2, 3), dtype=np.uint8)
        fine = rng.integers(-24, 24, (height, width * 2, 3))
        texture = cv2.resize(small, (width * 2, height), interpolation=cv2.INTER_CUBIC)
        texture = np.clip(texture.astype(int) + fine, 0, 255).astype(np.uint8)
        self.wide = cv2.cvtColor(texture, cv2.COLOR_BGR2YUV_I420)  # (3H/2, 2W)
        self.width, self.height = width, height
        self.stamper = PatternRenderer(width, height, "Bench Room", 7)

    def render_frame(self, counter: int, timestamp_ms: int) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(self.render(counter, timestamp_ms), format="yuv420p")

    def render(self, counter: int, timestamp_ms: int) -> np.ndarray:
        w, h = self.width, self.height
        x = (3 * counter) % w & ~1
        i420 = np.empty((h * 3 // 2, w), dtype=np.uint8)
        i420[:h] = self.wide[:h, x : x + w]
        chroma = self.wide[h:].reshape(h, w)  # U then V, each (h/2, w) in wide coordinates
        i420[h:] = chroma[:, x // 2 : x // 2 + w // 2].reshape(h // 2, w)
        self.stamper._stamp(i420[:h], PatternCode(7, counter & 0xFFFFFF, timestamp_ms))
        return i420


async def bench_encode(which: str, seconds: float, width: int, height: int, fps: int,
                       content: str = "pattern") -> Result:
    renderer: PatternRenderer | TextureFrames
    if content == "texture":
        renderer = TextureFrames(width, height)
    else:
        renderer = PatternRenderer(width, height, "Bench Room", 7)
    clock = FrameClock(fps)
    bitrate = initial_bitrate(width, height, fps)
    ours = VideoEncoder("h264", width, height, fps, bitrate) if which == "encode" else None
    theirs = H264Encoder() if ours is None else None
    if theirs is not None:
        theirs.target_bitrate = bitrate
    warmup = 2.0
    frames = 0
    size = 0
    start_wall = time.monotonic()
    t0 = c0 = None
    while True:
        pts = await clock.tick()
        now = time.monotonic()
        if t0 is None and now - start_wall >= warmup:
            t0, c0, frames, size = now, cpu_seconds(), 0, 0
        if t0 is not None and now - t0 >= seconds:
            break
        frame = renderer.render_frame(frames, int(time.time() * 1000) % 2**32)
        frame.pts, frame.time_base = pts, TB
        if ours is not None:
            size += sum(p.size for p in ours.encode(frame))
        else:
            assert theirs is not None
            payloads, _ = theirs.encode(frame)
            size += sum(len(p) for p in payloads)
        frames += 1
    wall = time.monotonic() - t0
    label = "ours: x264 ultrafast+zerolatency" if ours else "aiortc H264Encoder (default)"
    label += f", {content}"
    return Result(which, 100 * (cpu_seconds() - c0) / wall, frames / wall,
                  size * 8 / wall / 1000, label)


# ------------------------------------------------------------------ loopback


def _receiver_main(conn) -> None:  # type: ignore[no-untyped-def]
    """Child process: answer, decode everything, count frames and readable patterns."""
    asyncio.run(_receiver(conn))


async def _receiver(conn) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    counts = {"frames": 0, "patterns": 0, "last_counter": -1}
    tasks = []

    @pc.on("track")
    def _track(track) -> None:  # type: ignore[no-untyped-def]
        async def consume() -> None:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    counts["frames"] += 1
                    code = read_pattern_frame(frame)
                    if code is not None:
                        counts["patterns"] += 1
                        counts["last_counter"] = code.counter

        tasks.append(asyncio.ensure_future(consume()))

    offer = await loop.run_in_executor(None, conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send(pc.localDescription.sdp)
    while True:
        message = await loop.run_in_executor(None, conn.recv)
        if message == "count":
            conn.send(dict(counts))
        elif message == "stop":
            break
    for task in tasks:
        task.cancel()
    await pc.close()


class PatternFrameTrack(VideoStreamTrack):
    """aiortc's usual way: a track of av.VideoFrames that aiortc encodes itself."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.renderer = PatternRenderer(width, height, "Bench Room", 7)
        self.counter = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.renderer.render_frame(self.counter, int(time.time() * 1000) % 2**32)
        frame.pts, frame.time_base = pts, time_base
        self.counter += 1
        return frame


async def bench_publish(which: str, seconds: float, width: int, height: int,
                        fps: int, content: str = "pattern") -> Result:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_receiver_main, args=(child,), daemon=True)
    process.start()
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    publisher = None
    if which == "publish":
        publisher = MediaPublisher(SourceSpec("testpattern"), width=width, height=height,
                                   fps=fps, codec="h264", label="Bench Room", tag=7,
                                   tone_hz=600)
        audio, video = publisher.tracks()
        if content == "texture":
            video.source.renderer = TextureFrames(width, height)  # type: ignore[attr-defined]
        pc.addTrack(audio)
        pc.addTrack(video)
    else:
        track = PatternFrameTrack(width, height)
        if content == "texture":
            track.renderer = TextureFrames(width, height)  # type: ignore[assignment]
        pc.addTrack(track)
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/H264"])
            if publisher is not None:
                publisher.attach_sender("video", transceiver.sender)
    video_sender = next(s for s in pc.getSenders() if s.kind == "video")
    await pc.setLocalDescription(await pc.createOffer())
    parent.send(pc.localDescription.sdp)
    answer = await loop.run_in_executor(None, parent.recv)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def ask() -> dict[str, int]:
        parent.send("count")
        return await loop.run_in_executor(None, parent.recv)

    async def sent_bytes() -> int:
        stats = await video_sender.getStats()
        return sum(s.bytesSent for s in stats.values() if s.type == "outbound-rtp")

    await asyncio.sleep(3.0)  # ICE, DTLS, first key frame, REMB settling
    before, b0 = await ask(), await sent_bytes()
    t0, c0 = time.monotonic(), cpu_seconds()
    await asyncio.sleep(seconds)
    cpu, wall = cpu_seconds() - c0, time.monotonic() - t0
    after, b1 = await ask(), await sent_bytes()
    parent.send("stop")
    await pc.close()
    if publisher is not None:
        publisher.close()
    process.join(timeout=5)
    frames = after["frames"] - before["frames"]
    patterns = after["patterns"] - before["patterns"]
    note = f"{content}; receiver read the pattern in {patterns}/{frames} frames"
    if publisher is not None:
        note += f"; encoder target {publisher.encoder.target_bitrate // 1000} kbit/s"
    return Result(which, 100 * cpu / wall, frames / wall, (b1 - b0) * 8 / wall / 1000, note)


# ------------------------------------------------------------------ main


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--cases", default="encode,aiortc-encode,publish,aiortc-publish")
    parser.add_argument("--content", choices=("pattern", "texture"), default="pattern",
                        help="what is encoded (texture: camera-like detail and motion)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.width}x{args.height}@{args.fps}, {args.seconds:g} s per case\n")
    print("| case | CPU, % of one core | fps | video kbit/s | note |")
    print("| --- | ---: | ---: | ---: | --- |")
    results = []
    for case in args.cases.split(","):
        if case in ("encode", "aiortc-encode"):
            result = await bench_encode(case, args.seconds, args.width, args.height, args.fps,
                                        args.content)
        elif case in ("publish", "aiortc-publish"):
            result = await bench_publish(case, args.seconds, args.width, args.height, args.fps,
                                         args.content)
        else:
            parser.error(f"unknown case {case}")
        results.append(result)
        print(f"| {result.case} | {result.cpu_percent:.1f} | {result.fps:.1f} | "
              f"{result.kbps:.0f} | {result.note} |", flush=True)
    ours = next((r for r in results if r.case == "publish"), None)
    if ours is not None:
        verdict = "meets" if ours.cpu_percent <= 25 else "MISSES"
        print(f"\npublish: {ours.cpu_percent:.1f}% of one core, {verdict} the 25% target")
        return 0 if ours.cpu_percent <= 25 else 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
