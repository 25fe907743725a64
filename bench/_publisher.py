"""A light main-room publisher in its own process: replays a pre-encoded 720p30 clip.

`tongbu`: joins a Tongbu lesson with a main-room join token (signaling protocol v1) and
publishes the clip and Opus silence; it receives and counts whatever the server sends.
`relay`: offers the same clip and silence to the MediaRelay baseline (bench/_relay.py).
Either way the video bytes are identical: x264 output at the clip's bitrate, packetised by
aiortc (no encoding in this process), so both servers get the same stream.

    .venv/bin/python bench/_publisher.py tongbu --server http://127.0.0.1:8123 --token T
    .venv/bin/python bench/_publisher.py relay --url http://127.0.0.1:8124
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
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from bench._peers import (
    Clip,
    ProtocolPeer,
    ReplayVideoTrack,
    SilenceAudioTrack,
    encode_clip,
)


async def publish_tongbu(server: str, token: str, clip: Clip) -> None:
    peer = ProtocolPeer(server, token, clip)
    await peer.start()
    print(json.dumps({"publishing": True}), flush=True)
    await _until_signalled()
    await peer.close()


async def publish_relay(url: str, clip: Clip) -> None:
    pc = RTCPeerConnection()
    pc.addTrack(SilenceAudioTrack())
    pc.addTrack(ReplayVideoTrack(clip))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences(sorted(
                (c for c in codecs if c.mimeType.lower() == "video/h264"),
                key=lambda c: c.parameters.get("profile-level-id") != "42e01f",
            ))
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/publish", json={"sdp": pc.localDescription.sdp}) as resp:
            resp.raise_for_status()
            answer = await resp.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    print(json.dumps({"publishing": True}), flush=True)
    await _until_signalled()
    await pc.close()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=("tongbu", "relay"))
    parser.add_argument("--server", help="Tongbu server URL (tongbu)")
    parser.add_argument("--token", help="main-room join token (tongbu)")
    parser.add_argument("--url", help="baseline server URL (relay)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/tongbu-bench-clips"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    clip = encode_clip(args.width, args.height, args.fps, args.bitrate, args.clip_seconds,
                       args.cache)
    if args.target == "tongbu":
        asyncio.run(publish_tongbu(args.server, args.token, clip))
    else:
        asyncio.run(publish_relay(args.url, clip))


if __name__ == "__main__":
    main()
