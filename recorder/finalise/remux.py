"""Packet logs of one room → one playable file per room, by muxing the stored frames.

Nothing is decoded or encoded here (docs/ARCHITECTURE.md, decision 2): the publisher's frames are
put into a container as they are. H.264 goes into MP4 (with the room's Opus), VP8 into
WebM (with the room's Opus); the Opus alone also goes into an Ogg file for listening.

How the container learns about the codec without an encoder
-----------------------------------------------------------
PyAV's `add_stream("h264")` would open libx264 when the header is written and put *its*
SPS/PPS in the file. Instead each output stream is made with `add_stream_from_template`
from a scratch stream (which marks the codec context as initialised, so it is never
opened) and we set what the muxer needs ourselves:
- H.264: `extradata` = the first keyframe's SPS and PPS in Annex-B form. FFmpeg's MP4
  muxer turns that into the `avcC` box and converts every Annex-B access unit to
  length-prefixed NAL units. The publisher repeats SPS/PPS before every IDR; they stay
  in the samples, so a mid-lesson change (a reconnect at another size) still decodes.
- Opus: `extradata` = an `OpusHead` (RFC 7845) built here; RTP carries no pre-skip, so it
  is 0, and the channel count is read from the packets' TOC bytes.
- VP8 needs no extradata; width and height come from the track meta or one decoded
  keyframe.

Time
----
Frames carry `pts_us` on the lesson clock. Each file starts at its room's first frame
(video or audio, whichever came first): that instant, in seconds on the lesson clock, is
`offset_s` in the result and in the manifest, so the composite and the player line rooms up
by adding it. All parts (one per connection of the room) are chained into one file.

Gaps (a room that dropped and came back) stay gaps on the timeline, never a broken file:
- video: the last frame before the gap lasts until the next one (MP4 sample duration), so
  players show the last picture frozen, then continue at the right time;
- audio: the gap is filled with 20 ms Opus silence frames (3 bytes each), because browsers
  play audio packets back to back and take the audio clock as the media clock: a
  timestamp jump in audio alone would shift every later second out of sync with video.
  The same filler covers the time from the file's start to the first audio packet, and
  Opus DTX pauses.
The gaps found are reported (`gaps`, lesson-clock seconds) for the library's timeline.
"""

from __future__ import annotations

import heapq
import io
import json
import logging
import os
import re
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av

from recorder.capture.packetlog import (
    LoggedFrame,
    PacketLogError,
    PacketLogReader,
    TrackMeta,
    iter_packet_log,
)
from recorder.storage.local import hash_and_stamp

logger = logging.getLogger(__name__)

_US = 1_000_000
GAP_S = 0.5  # a pause in a track longer than this is reported as a gap
_AUDIO_FILL_US = 60_000  # fill audio holes longer than this with silence
_OPUS_SILENCE_MONO = b"\xf8\xff\xfe"  # CELT FB 20 ms, mono: decodes to silence
_OPUS_SILENCE_STEREO = b"\xfc\xff\xfe"
_OPUS_FRAME_US = 20_000
# packet log file name: <classroom_id>-<kind>.<part:03d>.tbl
_LOG_NAME = re.compile(r"^(?P<room>\d+)-(?P<kind>audio|video)\.(?P<part>\d+)\.tbl$")

MIME = {
    "mp4": 'video/mp4; codecs="avc1.42E01F, opus"',
    "mp4-video": 'video/mp4; codecs="avc1.42E01F"',
    "webm": 'video/webm; codecs="vp8, opus"',
    "webm-video": 'video/webm; codecs="vp8"',
    "ogg": 'audio/ogg; codecs="opus"',
}


# ---------------------------------------------------------------- finding the logs


@dataclass
class TrackLogs:
    """One kind (audio or video) of one room: its parts in order, one codec."""

    classroom_id: int
    kind: str
    codec: str  # lower-case mime: "video/h264", "video/vp8", "audio/opus"
    parts: list[Path] = field(default_factory=list)
    metas: list[TrackMeta] = field(default_factory=list)


@dataclass
class RoomLogs:
    classroom_id: int
    video: list[TrackLogs] = field(default_factory=list)  # one per codec used
    audio: TrackLogs | None = None


def find_room_logs(capture_dir: Path) -> dict[int, RoomLogs]:
    """The packet logs in a capture dir, grouped by room, kind and codec, parts in order.

    A log whose header is unreadable (e.g. cut before its header was written) is skipped.
    """
    rooms: dict[int, RoomLogs] = {}
    found: list[tuple[int, str, int, Path]] = []
    for path in sorted(Path(capture_dir).glob("*.tbl")):
        match = _LOG_NAME.match(path.name)
        if match:
            found.append((int(match["room"]), match["kind"], int(match["part"]), path))
    for room_id, kind, _part, path in sorted(found):
        try:
            with PacketLogReader(path) as reader:
                meta = reader.meta
                first = next(iter(reader), None)
        except (PacketLogError, OSError) as exc:
            logger.warning("skipping unreadable packet log %s: %s", path, exc)
            continue
        if first is None:
            continue  # a header and no frame: nothing to play
        room = rooms.setdefault(room_id, RoomLogs(room_id))
        codec = meta.codec.lower()
        if kind == "audio":
            if "opus" not in codec:
                logger.warning("skipping %s: audio codec %s is not Opus", path, meta.codec)
                continue
            if room.audio is None:
                room.audio = TrackLogs(room_id, "audio", codec)
            room.audio.parts.append(path)
            room.audio.metas.append(meta)
        else:
            if codec not in ("video/h264", "video/vp8"):
                logger.warning("skipping %s: video codec %s", path, meta.codec)
                continue
            track = next((t for t in room.video if t.codec == codec), None)
            if track is None:
                track = TrackLogs(room_id, "video", codec)
                room.video.append(track)
            track.parts.append(path)
            track.metas.append(meta)
    return rooms


def _frames(track: TrackLogs) -> Iterator[LoggedFrame]:
    """Every intact frame of every part, in part order (torn tails already dropped)."""
    for path in track.parts:
        yield from iter_packet_log(path)


# ---------------------------------------------------------------- codec details


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B access unit (3- or 4-byte start codes)."""
    units = []
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", data)]
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        unit = data[start:end]
        if i + 1 < len(starts):
            unit = unit.rstrip(b"\x00")  # the 4-byte start code's leading zero
        if unit:
            units.append(unit)
    return units


def h264_extradata(keyframe: bytes) -> bytes | None:
    """Annex-B SPS + PPS from a keyframe access unit, for the MP4 muxer's avcC."""
    sps = pps = None
    for unit in split_annexb(keyframe):
        nal_type = unit[0] & 0x1F
        if nal_type == 7 and sps is None:
            sps = unit
        elif nal_type == 8 and pps is None:
            pps = unit
    if sps is None or pps is None:
        return None
    return b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps


def opus_head(channels: int, sample_rate: int = 48000, pre_skip: int = 0) -> bytes:
    """The OpusHead identification header (RFC 7845 §5.1), mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0)


_OPUS_FRAME_US_BY_CONFIG = (
    [10_000, 20_000, 40_000, 60_000] * 3  # 0-11 SILK NB/MB/WB
    + [10_000, 20_000] * 2  # 12-15 hybrid SWB/FB
    + [2_500, 5_000, 10_000, 20_000] * 4  # 16-31 CELT
)


def opus_packet_duration_us(packet: bytes) -> int:
    """A packet's duration from its TOC byte (RFC 6716 §3.1); 20 ms if unreadable."""
    if not packet:
        return _OPUS_FRAME_US
    toc = packet[0]
    frame_us = _OPUS_FRAME_US_BY_CONFIG[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = packet[1] & 0x3F if len(packet) > 1 else 1
    return frame_us * max(1, count)


def opus_channels(packets: Iterable[bytes]) -> int:
    """2 if any of these packets is coded stereo (TOC bit s), else 1."""
    return 2 if any(p and p[0] & 0x04 for p in packets) else 1


def _starts_a_file(track: TrackLogs, frame: LoggedFrame) -> bool:
    """A keyframe an MP4 can begin with. An H.264 one must carry its SPS and PPS (the avcC
    is made of them): a capture that began between the SPS/PPS packets and the IDR's holds
    an IDR alone, and starting there lost the room's whole file (seen in
    tests/test_auto_agents.py). The frames before the first such keyframe are left out."""
    if not frame.keyframe:
        return False
    return track.codec != "video/h264" or h264_extradata(frame.data) is not None


def _video_size(track: TrackLogs, keyframe: bytes) -> tuple[int, int]:
    meta = track.metas[0]
    if meta.width and meta.height:
        return int(meta.width), int(meta.height)
    # one decoded keyframe tells the size for certain (and costs a millisecond or two)
    decoder = av.CodecContext.create("h264" if track.codec == "video/h264" else "vp8", "r")
    try:
        for frame in decoder.decode(av.Packet(keyframe)):
            return frame.width, frame.height
        for frame in decoder.decode(None):
            return frame.width, frame.height
    except av.FFmpegError as exc:
        logger.warning("room %s: first keyframe does not decode: %s", track.classroom_id, exc)
    return 0, 0


# ---------------------------------------------------------------- the result


@dataclass
class Gap:
    kind: str  # "video" | "audio"
    from_s: float  # lesson clock
    to_s: float


@dataclass
class RoomFile:
    path: Path
    role: str  # "room_video" | "room_audio"
    mime: str
    container: str  # "mp4" | "webm" | "ogg"


@dataclass
class RoomRemux:
    """What remuxing one room produced, and where it sits on the lesson clock."""

    classroom_id: int
    files: list[RoomFile]
    offset_s: float  # lesson-clock time of the files' zero
    duration_s: float  # of the longest track, from the files' zero
    end_s: float  # lesson clock time of the last frame's end
    video_codec: str | None
    width: int
    height: int
    video_frames: int = 0
    audio_packets: int = 0
    silence_packets: int = 0
    dropped: int = 0  # frames out of order or before the first keyframe
    parts: int = 0
    gaps: list[Gap] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["files"] = [
            {"path": f.path.name, "role": f.role, "mime": f.mime, "container": f.container}
            for f in self.files
        ]
        return data


# ---------------------------------------------------------------- muxing

def _template(codec_name: str, **kw: Any) -> av.stream.Stream:
    """A never-opened stream to copy codec parameters from (see the module docstring)."""
    # a new scratch container per template: PyAV streams keep their container alive, and
    # sharing one across threads would race on its stream list
    scratch = av.open(io.BytesIO(), "w", format="matroska")
    return scratch.add_stream(codec_name, **kw)


def _add_video(out: av.container.OutputContainer, codec: str, width: int, height: int,
               extradata: bytes | None) -> av.stream.Stream:
    # a video codec's template is a VideoStream: PyAV's types know it only for literal names
    template = cast(av.VideoStream, _template("libx264" if codec == "video/h264" else "libvpx"))
    stream = out.add_stream_from_template(template)
    ctx = stream.codec_context
    ctx.width = width
    ctx.height = height
    ctx.extradata = extradata
    stream.time_base = Fraction(1, 90000)
    return stream


def _add_opus(out: av.container.OutputContainer, channels: int) -> av.stream.Stream:
    template = cast(av.AudioStream, _template("libopus", rate=48000))  # as for video above
    stream = out.add_stream_from_template(template)
    ctx = stream.codec_context
    ctx.sample_rate = 48000
    ctx.layout = "stereo" if channels == 2 else "mono"
    ctx.extradata = opus_head(channels)
    stream.time_base = Fraction(1, 48000)
    return stream


class _Timeline:
    """Per output stream: lesson-clock µs → the stream's ticks, strictly increasing."""

    def __init__(self, stream: av.stream.Stream, zero_us: int) -> None:
        self.stream = stream
        self.zero_us = zero_us
        tb = stream.time_base
        assert tb is not None  # _add_video and _add_opus set it
        self.num = tb.denominator  # ticks per second = den / num
        self.den = tb.numerator * _US
        self.last = -1

    def packet(self, data: bytes, pts_us: int, duration_us: int,
               keyframe: bool) -> av.Packet | None:
        """A packet for this stream, or None if it would not advance time (dropped).

        Hot path (every frame): integer maths only; the packet's time base is left unset,
        which the muxer takes as the stream's."""
        num, den = self.num, self.den
        start = pts_us - self.zero_us
        pts = (start * num + den // 2) // den
        if pts <= self.last:
            return None
        self.last = pts
        packet = av.Packet(data)
        packet.stream = self.stream
        packet.pts = pts
        packet.dts = pts
        end = ((start + duration_us) * num + den // 2) // den
        packet.duration = end - pts if end > pts else 1
        if keyframe:
            packet.is_keyframe = True
        return packet


def _with_durations(frames: Iterator[LoggedFrame], default_us: int
                    ) -> Iterator[tuple[LoggedFrame, int]]:
    """Each frame with the time until the next one (the last: the usual frame interval)."""
    previous: LoggedFrame | None = None
    interval = default_us
    for frame in frames:
        if previous is not None:
            step = frame.pts_us - previous.pts_us
            if 0 < step < 1_000_000:
                interval = step
            yield previous, max(step, 1)
        previous = frame
    if previous is not None:
        yield previous, interval


def remux_room(room: RoomLogs, out_dir: Path, *, faststart: bool = True,
               stem: str | None = None, video_files: bool = True,
               audio_file: bool | None = None) -> RoomRemux:
    """Write the room's files into out_dir (blocking; run it in a worker thread).

    `video_files`: one file with video (the first codec the room published; a room that
    switched codec mid-lesson gets a second file `...-2`) and the room's audio.
    `audio_file`: the audio alone as Ogg; by default only when there is no video file
    (finalisation makes it for every room later, in its slow phase: it is not needed to
    play the lesson and would cost a third of the remux time).
    """
    started = time.perf_counter()
    stem = stem or f"room-{room.classroom_id}"
    out_dir.mkdir(parents=True, exist_ok=True)

    # --- peek: the first keyframe of each video track, the first frames' times
    video_tracks: list[tuple[TrackLogs, LoggedFrame]] = []
    for track in room.video if video_files else []:
        key = next((f for f in _frames(track) if _starts_a_file(track, f)), None)
        if key is not None:
            video_tracks.append((track, key))
    firsts: list[int] = []
    audio_peek: list[bytes] = []
    if room.audio is not None:
        for frame in _frames(room.audio):
            if not firsts:
                firsts.append(frame.pts_us)
            audio_peek.append(frame.data)
            if len(audio_peek) >= 50:
                break
    for _track, key in video_tracks:
        firsts.append(key.pts_us)
    if not firsts:
        raise ValueError(f"room {room.classroom_id}: no playable frame in its packet logs")
    zero_us = min(firsts)
    channels = opus_channels(audio_peek)

    result = RoomRemux(
        classroom_id=room.classroom_id, files=[], offset_s=zero_us / _US, duration_s=0.0,
        end_s=zero_us / _US, video_codec=None, width=0, height=0,
        parts=sum(len(t.parts) for t in room.video)
        + (len(room.audio.parts) if room.audio else 0),
    )

    outputs: list[_Output] = []
    for index, (track, key) in enumerate(video_tracks):
        width, height = _video_size(track, key.data)
        container = "mp4" if track.codec == "video/h264" else "webm"
        name = f"{stem}.{container}" if index == 0 else f"{stem}-{index + 1}.{container}"
        extradata = h264_extradata(key.data) if container == "mp4" else None
        output = _Output(out_dir / name, container, faststart)
        output.video_stream = _add_video(output.container, track.codec, width, height,
                                         extradata)
        if room.audio is not None and index == 0:
            output.audio_stream = _add_opus(output.container, channels)
        outputs.append(output)
        mime = MIME[container] if output.audio_stream else MIME[f"{container}-video"]
        result.files.append(RoomFile(output.path, "room_video", mime, container))
        if index == 0:
            result.video_codec = track.codec.split("/")[1]
            result.width, result.height = width, height
    if audio_file is None:
        audio_file = not video_tracks
    if room.audio is not None and audio_file:
        output = _Output(out_dir / f"{stem}-audio.ogg", "ogg", False)
        output.audio_stream = _add_opus(output.container, channels)
        outputs.append(output)
        result.files.append(RoomFile(output.path, "room_audio", MIME["ogg"], "ogg"))

    try:
        for output in outputs:
            output.start(zero_us)
        end_us = zero_us
        for kind, index, frame, duration_us in _merged(room, video_tracks, zero_us, channels,
                                                       result):
            if frame.pts_us + duration_us > end_us:  # (not max(): a call per frame)
                end_us = frame.pts_us + duration_us
            if kind == "video":
                output = outputs[index]
                assert output.video is not None
                packet = output.video.packet(frame.data, frame.pts_us, duration_us,
                                             frame.keyframe)
                if packet is None:
                    result.dropped += 1
                    continue
                output.container.mux_one(packet)
                result.video_frames += index == 0
            else:
                for output in outputs:
                    if output.audio is None:
                        continue
                    packet = output.audio.packet(frame.data, frame.pts_us, duration_us, True)
                    if packet is not None:
                        output.container.mux_one(packet)
    finally:
        for output in outputs:
            output.container.close()
    result.end_s = end_us / _US
    result.duration_s = (end_us - zero_us) / _US
    result.seconds = time.perf_counter() - started
    return result


class _Output:
    def __init__(self, path: Path, container: str, faststart: bool) -> None:
        self.path = path
        # faststart: moov in front (a second pass over the file at close), so browsers
        # start playing and seek at once; without it: fragmented MP4, written in one pass
        # (see docs/PERFORMANCE.md, "Finalisation", for what each costs)
        options = {}
        if container == "mp4":
            options = {"movflags": "+faststart" if faststart
                       else "+frag_keyframe+empty_moov+default_base_moof"}
        fmt = {"mp4": "mp4", "webm": "webm", "ogg": "ogg"}[container]
        self.container: av.container.OutputContainer = av.open(
            str(path), "w", format=fmt, options=options)
        self.video_stream: av.stream.Stream | None = None
        self.audio_stream: av.stream.Stream | None = None
        self.video: _Timeline | None = None
        self.audio: _Timeline | None = None

    def start(self, zero_us: int) -> None:
        """Write the header; the muxer may change the time bases (WebM: 1 ms), so the
        timelines are made after it."""
        self.container.start_encoding()
        if self.video_stream is not None:
            self.video = _Timeline(self.video_stream, zero_us)
        if self.audio_stream is not None:
            self.audio = _Timeline(self.audio_stream, zero_us)


def _merged(room: RoomLogs, video_tracks: list[tuple[TrackLogs, LoggedFrame]], zero_us: int,
            channels: int, result: RoomRemux) -> Iterator[tuple[str, int, LoggedFrame, int]]:
    """All frames of the room in time order: (kind, video output index, frame, duration).

    Hot path (every frame of the lesson): plain generators and heapq's C heap operations;
    ties in time go video first (the sequence number keeps the sort off the frames).
    """
    sources: list[Iterator[tuple[int, int, str, int, LoggedFrame, int]]] = []
    for index, (track, key) in enumerate(video_tracks):
        sources.append(
            (f.pts_us, seq, "video", index, f, d)
            for seq, (f, d) in enumerate(_video_frames(track, result, key.pts_us))
        )
    if room.audio is not None:
        sources.append(
            (f.pts_us, seq, "audio", 0, f, d)
            for seq, (f, d) in enumerate(_audio_frames(room.audio, zero_us, channels, result))
        )
    if len(sources) == 1:
        for _pts, _seq, kind, index, frame, duration in sources[0]:
            yield kind, index, frame, duration
        return
    for _pts, _seq, kind, index, frame, duration in heapq.merge(*sources):
        yield kind, index, frame, duration


def _video_frames(track: TrackLogs, result: RoomRemux, start_us: int
                  ) -> Iterator[tuple[LoggedFrame, int]]:
    """Video frames from `start_us` (the keyframe the file begins with) and from the first
    keyframe of each part, times only moving forward."""
    def frames() -> Iterator[LoggedFrame]:
        last = -1
        for path in track.parts:
            waiting = True  # a part's first frames are useless until its keyframe
            for frame in iter_packet_log(path):
                if frame.pts_us < start_us or (waiting and not frame.keyframe):
                    result.dropped += 1
                    continue
                waiting = False
                if frame.pts_us <= last:
                    result.dropped += 1
                    continue
                if last >= 0 and frame.pts_us - last > GAP_S * _US:
                    result.gaps.append(Gap("video", last / _US, frame.pts_us / _US))
                last = frame.pts_us
                yield frame

    yield from _with_durations(frames(), 66_667)


def _audio_frames(track: TrackLogs, zero_us: int, channels: int, result: RoomRemux
                  ) -> Iterator[tuple[LoggedFrame, int]]:
    """Opus packets with silence filling every hole (see the module docstring)."""
    silence = _OPUS_SILENCE_STEREO if channels == 2 else _OPUS_SILENCE_MONO
    expected = zero_us  # where the next packet should start
    for frame in _frames(track):
        if frame.pts_us < expected - _AUDIO_FILL_US:
            result.dropped += 1  # overlaps what was already written
            continue
        hole = frame.pts_us - expected
        if hole > _AUDIO_FILL_US:
            if hole > GAP_S * _US and expected > zero_us:
                result.gaps.append(Gap("audio", expected / _US, frame.pts_us / _US))
            t = expected
            while frame.pts_us - t >= _OPUS_FRAME_US:
                result.silence_packets += 1
                yield LoggedFrame(t, True, silence), _OPUS_FRAME_US
                t += _OPUS_FRAME_US
        duration = opus_packet_duration_us(frame.data)
        result.audio_packets += 1
        yield frame, duration
        if frame.pts_us + duration > expected:
            expected = frame.pts_us + duration


# ---------------------------------------------------------------- finalisation's workers


class FileSyncer:
    """fsyncs finished files in a background thread, so that the disk write of one room
    overlaps the remux of the next; leaving the `with` block waits for all of them."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def __enter__(self) -> FileSyncer:
        return self

    def __exit__(self, *exc: object) -> None:
        for thread in self._threads:
            thread.join()
        if self._errors and exc[0] is None:
            raise self._errors[0]

    def sync(self, paths: list[Path]) -> None:
        def run() -> None:
            try:
                for path in paths:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            except BaseException as exc:
                self._errors.append(exc)

        thread = threading.Thread(target=run, name="remux-fsync")
        thread.start()
        self._threads.append(thread)


def remux_and_hash(room: RoomLogs, out_dir: Path, syncer: FileSyncer) -> dict[str, object]:
    """Remux one room, hash each file it wrote and have it fsynced (blocking).

    The sha256 is computed right after writing, in the same process, while the file's
    pages are warm, and stamped on the inode (recorder/storage/local.py), so that neither
    the library nor its local storage reads the file again. Returns a JSON-able result
    (`RoomRemux.to_json`, with each file's role, mime and sha256); {"skipped": why} if
    the room has nothing playable."""
    try:
        result = remux_room(room, out_dir)
    except ValueError as exc:
        return {"classroom_id": room.classroom_id, "skipped": str(exc)}
    data = result.to_json()
    started = time.perf_counter()
    data["files"] = [{"name": f.path.name, "role": f.role, "mime": f.mime,
                      "sha256": hash_and_stamp(f.path)} for f in result.files]
    data["hash_s"] = round(time.perf_counter() - started, 3)
    syncer.sync([f.path for f in result.files])
    return data


def _worker_main(capture_dir: Path, out_dir: Path) -> int:
    """`python -m recorder.finalise.remux --worker <capture dir> <out dir>`: remuxes the room whose
    id comes on each stdin line, answers one JSON line on stdout; when stdin closes,
    returns once every file it wrote is fsynced."""
    logs = find_room_logs(capture_dir)
    with FileSyncer() as syncer:
        for line in sys.stdin:
            classroom_id = int(line)
            try:
                result = remux_and_hash(logs[classroom_id], out_dir, syncer)
            except Exception as exc:
                logger.exception("remux of room %s failed", classroom_id)
                result = {"classroom_id": classroom_id, "error": repr(exc)}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["--worker"] or len(sys.argv) != 4:
        sys.exit("usage: python -m recorder.finalise.remux --worker <capture dir> <out dir>")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(_worker_main(Path(sys.argv[2]), Path(sys.argv[3])))
