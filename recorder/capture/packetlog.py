"""The packet log: one published track's encoded frames, appended as they arrive.

A crash-safe container simpler than any muxer: finalisation remuxes it (PyAV) into
per-room files, so capture never depends on a muxer's idea of when to write its index.

File layout (all integers little-endian)::

    header  = MAGIC (8 bytes "TBPKTLOG") | version u16 | meta_len u32 | meta JSON
              | crc32(version..meta JSON) u32
    record  = length u32 | crc32 u32 | pts_us i64 | flags u8 | data (length bytes)

`length` is the size of `data`; the record's CRC32 covers length, pts_us, flags and data,
so a record cut short or half written by a kill -9 or a power cut fails its check. The
reader stops at the first record that is incomplete or fails its CRC and returns what came
before: a torn tail is expected after a crash, never an error. `flags` bit 0 = keyframe.

Frames are stored as the codec's elementary stream unit: H.264 as Annex-B access units
(with SPS/PPS as the publisher sent them), VP8 as raw frames, Opus packets as they are.

Durability: every `append` is one `os.write` (no user-space buffer), so a killed process
loses nothing already appended; `flush(sync=True)` fsyncs (the file and, the first time,
its directory) and is what bounds loss on a power cut. The capture layer calls it from a
worker thread about twice a second; `os.write` and `os.fsync` on the same descriptor from
two threads is safe, and a lock keeps `close` from racing an fsync in progress.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MAGIC = b"TBPKTLOG"
VERSION = 1
FLAG_KEYFRAME = 0x01
MAX_RECORD = 64 * 1024 * 1024  # a length above this is garbage, not a frame
MAX_META = 1024 * 1024
READ_BUFFER = 1024 * 1024

_HEAD = struct.Struct("<8sHI")  # magic, version, meta_len
_CRC = struct.Struct("<I")
_RECORD = struct.Struct("<IIqB")  # length, crc32, pts_us, flags
_RECORD_BODY = struct.Struct("<IqB")  # what the CRC covers before data: length, pts, flags


class PacketLogError(ValueError):
    """The file is not a packet log (bad magic, unknown version, corrupt header)."""


@dataclass
class TrackMeta:
    """What a packet log holds: one room's track for one connection ("part")."""

    lesson_id: int
    classroom_id: int
    kind: str  # "audio" | "video"
    codec: str  # mime type, e.g. "video/H264", "video/VP8", "audio/opus"
    clock_rate: int
    part: int
    started_at_unix: float
    width: int | None = None
    height: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackMeta:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(slots=True)
class LoggedFrame:
    pts_us: int  # lesson clock, microseconds
    keyframe: bool
    data: bytes


class PacketLogWriter:
    """Appends frames to a new packet log; see the module docstring for guarantees."""

    def __init__(self, path: Path | str, meta: TrackMeta) -> None:
        self.path = Path(path)
        self.meta = meta
        self.frames = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._dir_synced = False
        self._dirty = False
        meta_json = json.dumps(asdict(meta), separators=(",", ":")).encode()
        head = _HEAD.pack(MAGIC, VERSION, len(meta_json)) + meta_json
        crc = zlib.crc32(head[len(MAGIC) :])
        # O_EXCL: a part is never reopened; a clash means a bug, not a file to overwrite.
        self._fd: int | None = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
        )
        self._write(head + _CRC.pack(crc))

    @property
    def closed(self) -> bool:
        return self._fd is None

    def append(self, pts_us: int, keyframe: bool, data: bytes) -> None:
        """Write one frame to the OS now (hot path: one frame, one syscall)."""
        flags = FLAG_KEYFRAME if keyframe else 0
        length = len(data)
        if length > MAX_RECORD:
            raise ValueError(f"frame of {length} bytes is larger than a record may be")
        body = _RECORD_BODY.pack(length, pts_us, flags)
        crc = zlib.crc32(data, zlib.crc32(body))
        record = _RECORD.pack(length, crc, pts_us, flags) + data
        fd = self._fd
        if fd is None:
            raise ValueError("packet log is closed")
        written = os.write(fd, record)  # nearly always all of it, in one call
        if written < len(record):
            self._write(record[written:])
        self.frames += 1
        self.bytes += length
        self._dirty = True

    def flush(self, sync: bool = False) -> None:
        """Appends are already with the OS; `sync=True` forces them to the disk (blocking:
        call it from a worker thread on a live path)."""
        if not sync:
            return
        with self._lock:
            if self._fd is None or not (self._dirty or not self._dir_synced):
                return
            self._dirty = False
            os.fsync(self._fd)
            if not self._dir_synced:
                _fsync_dir(self.path.parent)
                self._dir_synced = True

    def close(self) -> None:
        """fsync and close; safe to call twice."""
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
                if not self._dir_synced:
                    _fsync_dir(self.path.parent)
                    self._dir_synced = True
            finally:
                os.close(fd)

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("packet log is closed")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


@dataclass
class PacketLogScan:
    """How much of a packet log was readable: `torn_bytes` > 0 after a crash."""

    meta: TrackMeta
    frames: int
    valid_bytes: int
    torn_bytes: int


class PacketLogReader:
    """Reads a packet log front to back, stopping quietly at a torn or corrupt tail."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # a large buffer: most frames are a few kB, so the default 8 kB means a read()
        # syscall for nearly every record (finalisation reads hundreds of MB)
        self._file = open(self.path, "rb", buffering=READ_BUFFER)
        try:
            self.meta, self._data_start = self._read_header()
        except BaseException:
            self._file.close()
            raise
        self.valid_bytes = self._data_start
        self.frames = 0
        self.size = os.fstat(self._file.fileno()).st_size

    def __enter__(self) -> PacketLogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def torn_bytes(self) -> int:
        return self.size - self.valid_bytes

    def _read_header(self) -> tuple[TrackMeta, int]:
        head = self._file.read(_HEAD.size)
        if len(head) < _HEAD.size or head[: len(MAGIC)] != MAGIC:
            raise PacketLogError(f"{self.path}: not a Tongbu packet log (bad magic)")
        _magic, version, meta_len = _HEAD.unpack(head)
        if version != VERSION:
            raise PacketLogError(f"{self.path}: packet log version {version} is not supported")
        if meta_len > MAX_META:
            raise PacketLogError(f"{self.path}: corrupt header (meta of {meta_len} bytes)")
        meta_json = self._file.read(meta_len)
        crc_bytes = self._file.read(_CRC.size)
        if len(meta_json) < meta_len or len(crc_bytes) < _CRC.size:
            raise PacketLogError(f"{self.path}: header is truncated")
        if zlib.crc32(head[len(MAGIC) :] + meta_json) != _CRC.unpack(crc_bytes)[0]:
            raise PacketLogError(f"{self.path}: header fails its CRC")
        try:
            meta = TrackMeta.from_json(json.loads(meta_json))
        except (ValueError, TypeError) as exc:
            raise PacketLogError(f"{self.path}: header meta is not valid: {exc}") from exc
        return meta, _HEAD.size + meta_len + _CRC.size

    def __iter__(self) -> Iterator[LoggedFrame]:
        # Hot path of finalisation (every frame of the lesson): locals, no re-packing.
        read = self._file.read
        unpack = _RECORD.unpack
        crc32 = zlib.crc32
        size = _RECORD.size
        while True:
            head = read(size)
            if len(head) < size:
                return
            length, crc, pts_us, flags = unpack(head)
            if length > MAX_RECORD:
                return
            data = read(length)
            if len(data) < length:
                return
            # the CRC covers length (head[0:4]), pts_us and flags (head[8:]), then data
            if crc32(data, crc32(head[8:], crc32(head[:4]))) != crc:
                return
            self.valid_bytes += size + length
            self.frames += 1
            yield LoggedFrame(pts_us, flags & FLAG_KEYFRAME == FLAG_KEYFRAME, data)


def iter_packet_log(path: Path | str) -> Iterator[LoggedFrame]:
    """The frames of a packet log, lazily (header errors raise on the first `next`)."""
    with PacketLogReader(path) as reader:
        yield from reader


def read_packet_log(path: Path | str) -> tuple[TrackMeta, list[LoggedFrame]]:
    """A packet log's meta and every intact frame; a torn tail is dropped silently.

    Raises `PacketLogError` if the file is not a packet log at all."""
    with PacketLogReader(path) as reader:
        return reader.meta, list(reader)


def scan_packet_log(path: Path | str) -> PacketLogScan:
    """Checks a packet log without keeping its frames (e.g. before finalising)."""
    with PacketLogReader(path) as reader:
        for _ in reader:
            pass
        return PacketLogScan(reader.meta, reader.frames, reader.valid_bytes, reader.torn_bytes)
