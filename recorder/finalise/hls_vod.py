"""HLS VOD (a playlist and ~4 s segments) of a finished MP4, for seekable replay.

A remux again, no transcoding: the MP4's packets go through FFmpeg's `hls` muxer with
fragmented-MP4 segments (`EXT-X-MAP` init segment + `.m4s`), which carry H.264 and Opus
(MPEG-TS would not carry Opus for browsers) as well as H.264 and AAC. The muxer cuts at
the first keyframe after every `hls_time` seconds, so segment lengths follow the source's
keyframe interval: 4 s with our agents and the composite, longer with a publisher that
sends keyframes only on request; a recording gap lands inside one longer segment.

VP8 (WebM rooms) has no standard HLS packaging; those rooms are replayed from the WebM
file, which browsers seek with Range requests.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import av

logger = logging.getLogger(__name__)

SEGMENT_S = 4
PLAYLIST = "index.m3u8"
INIT = "init.mp4"
SEGMENT_PATTERN = "seg-%05d.m4s"
HLS_CODECS = {"h264", "aac", "opus"}


@dataclass
class HlsResult:
    playlist: Path
    init: Path
    segments: list[Path]
    duration_s: float


def can_package(video: Path) -> bool:
    """Does every stream of this file go into fragmented-MP4 HLS?"""
    with av.open(str(video)) as container:
        return bool(container.streams) and all(
            s.codec_context is not None and s.codec_context.name in HLS_CODECS
            for s in container.streams
        )


def make_hls(source: Path, out_dir: Path, *, segment_s: int = SEGMENT_S) -> HlsResult:
    """Package `source` (MP4) as HLS VOD into `out_dir` (replaced if it exists)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    playlist = out_dir / PLAYLIST
    with av.open(str(source)) as inp:
        out = av.open(str(playlist), "w", format="hls", options={
            "hls_time": str(segment_s),
            "hls_playlist_type": "vod",
            "hls_segment_type": "fmp4",
            "hls_fmp4_init_filename": INIT,
            "hls_segment_filename": str(out_dir / SEGMENT_PATTERN),
            "hls_flags": "independent_segments",
        })
        try:
            streams = {s.index: out.add_stream_from_template(s) for s in inp.streams
                       if s.type in ("video", "audio")}
            for packet in inp.demux(*[inp.streams[i] for i in streams]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        finally:
            out.close()
    duration = 0.0
    for line in playlist.read_text().splitlines():
        if line.startswith("#EXTINF:"):
            duration += float(line[len("#EXTINF:"):].split(",")[0])
    return HlsResult(playlist, out_dir / INIT, sorted(out_dir.glob("seg-*.m4s")), duration)


def parse_playlist(playlist: Path) -> list[tuple[float, str]]:
    """(duration, uri) of each segment of a VOD media playlist; raises if it is not one."""
    lines = [line.strip() for line in playlist.read_text().splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError(f"{playlist}: not an M3U8 playlist")
    if "#EXT-X-ENDLIST" not in lines:
        raise ValueError(f"{playlist}: no #EXT-X-ENDLIST, not a finished VOD playlist")
    segments: list[tuple[float, str]] = []
    pending: float | None = None
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            pending = float(line[len("#EXTINF:"):].split(",")[0])
        elif not line.startswith("#"):
            if pending is None:
                raise ValueError(f"{playlist}: segment {line} without #EXTINF")
            segments.append((pending, line))
            pending = None
    return segments
