"""Where the resource library keeps its files: one small interface, two backends.

- `LocalStorage` (the zero-setup default): a folder, <data_dir>/library/<key>.
- `S3Storage`: any S3-compatible object store (MinIO, Ceph, OSS, AWS), via aiobotocore.

Keys are relative POSIX paths ("lessons/12/composite.mp4"). Every file enters through
`put_file` with the sha256 its producer computed; the backend checks that what it stored
has that digest and, if not, leaves nothing behind and raises StorageIntegrityError.
Playback either streams byte ranges through the server (`open_range`, local folders) or
hands the client a short-lived signed URL (`presigned_url`, object storage), so large
files never pass through Python when the store can serve them itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StorageIntegrityError",
    "StoredObject",
    "check_key",
    "file_sha256",
]

CHUNK = 1024 * 1024


class StorageError(Exception):
    """A backend failed (I/O error, refused request)."""


class StorageIntegrityError(StorageError):
    """What was stored does not have the sha256 the caller expected; nothing was kept."""


class ObjectNotFound(StorageError):
    """No object with this key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str  # lower-case hex; "" from stat() when the backend cannot tell cheaply


@runtime_checkable
class Storage(Protocol):
    """What the library asks of a backend. Byte ranges are half-open: [start, end)."""

    name: str  # "local" | "s3"

    # The origin browsers fetch presigned URLs from ("https://minio.school.lan:9000"), which
    # the pages' Content-Security-Policy must allow for media and images; None when files
    # are served by our own origin.
    media_origin: str | None

    async def put_file(self, key: str, path: Path, sha256: str) -> StoredObject: ...

    async def stat(self, key: str) -> StoredObject: ...  # ObjectNotFound if missing

    async def exists(self, key: str) -> bool: ...

    def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]: ...

    async def presigned_url(
        self, key: str, expires_s: int = 300, *, mime: str | None = None
    ) -> str | None: ...

    async def delete(self, key: str) -> bool: ...  # False if there was nothing to delete

    async def delete_prefix(self, prefix: str) -> int: ...  # how many objects were removed

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could escape the library (absolute, "..", empty segments)."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key or len(key) > 500:
        raise ValueError(f"invalid storage key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A prefix for delete_prefix: a key followed by "/", so "lessons/1/" never hits 10."""
    if not prefix.endswith("/"):
        raise ValueError(f"a prefix ends with '/': {prefix!r}")
    check_key(prefix[:-1])
    return prefix


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (blocking: call it in a thread for large files)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
