"""The baseline: what a naive aiortc server does, fanning out with MediaRelay.

`serve`: an aiohttp app with POST /publish and POST /subscribe (non-trickle SDP offer in,
answer out). The publisher's video is received the usual aiortc way (jitter buffer,
H.264 decode in a thread), `MediaRelay` hands the decoded frames to one track per
subscriber, and each subscriber's RTCRtpSender encodes them again (aiortc's H264Encoder,
its default settings) and Opus likewise. Decode once, encode N times.

`publish`: the classroom agent's own `MediaPublisher` (test pattern, x264 ultrafast, Opus
tone), exactly what `tongbu agent` publishes, offered to /publish.

    .venv/bin/python bench/_relay.py serve --port 8124
    .venv/bin/python bench/_relay.py publish --url http://127.0.0.1:8124
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack


class RelayServer:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.ready = asyncio.Event()
        self.pcs: set[RTCPeerConnection] = set()

    async def publish(self, request: web.Request) -> web.Response:
        offer = await request.json()
        pc = RTCPeerConnection()
        self.pcs.add(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tracks[track.kind] = track
            if len(self.tracks) == 2:
                self.ready.set()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def subscribe(self, request: web.Request) -> web.Response:
        offer = await request.json()
        await asyncio.wait_for(self.ready.wait(), 30)
        pc = RTCPeerConnection()
        self.pcs.add(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        for kind in [t.kind for t in pc.getTransceivers()]:
            # aiortc's server example: addTrack takes the offered recvonly m-line
            pc.addTrack(self.relay.subscribe(self.tracks[kind]))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)


async def serve(port: int) -> None:
    server = RelayServer()
    app = web.Application()
    app.router.add_post("/publish", server.publish)
    app.router.add_post("/subscribe", server.subscribe)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    print(json.dumps({"port": port}), flush=True)
    await _until_signalled()
    await server.close()
    await runner.cleanup()


async def publish(url: str, width: int, height: int, fps: int) -> None:
    from classroom.agent.publisher import MediaPublisher
    from classroom.agent.sources import SourceSpec

    publisher = MediaPublisher(SourceSpec("testpattern"), width=width, height=height, fps=fps,
                               codec="h264", label="Bench Main", tag=1, tone_hz=400)
    pc = RTCPeerConnection()
    audio, video = publisher.tracks()
    pc.addTrack(audio)
    pc.addTrack(video)
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(sorted(
                (c for c in codecs if c.mimeType.lower() == "video/h264"),
                key=lambda c: c.parameters.get("profile-level-id") != "42e01f",
            ))
        publisher.attach_sender(transceiver.kind, transceiver.sender)
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/publish", json={"sdp": pc.localDescription.sdp}) as resp:
            resp.raise_for_status()
            answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    print(json.dumps({"publishing": True}), flush=True)
    await _until_signalled()
    await pc.close()
    publisher.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    p = sub.add_parser("publish")
    p.add_argument("--url", required=True)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.command == "serve":
        asyncio.run(serve(args.port))
    else:
        asyncio.run(publish(args.url, args.width, args.height, args.fps))


if __name__ == "__main__":
    main()
