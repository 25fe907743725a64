"""The library in a local folder: the zero-setup default (DESIGN decision 4).

Writes are atomic: a file is copied to a temporary name beside its destination, hashed
while copied, fsynced, and renamed into place only if its sha256 is the expected one, so
a reader never sees half a file and a failed or corrupt copy leaves nothing behind.
Blocking file work runs in threads so the event loop keeps serving signaling.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from recorder.storage import (
    CHUNK,
    ObjectNotFound,
    StorageIntegrityError,
    StoredObject,
    check_key,
    check_prefix,
)

_TMP_MARK = ".tmp-"


class LocalStorage:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_file(self, key: str, path: Path, sha256: str) -> StoredObject:
        return await asyncio.to_thread(self._put, key, path, sha256.lower())

    def _put(self, key: str, source: Path, expected: str) -> StoredObject:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{_TMP_MARK}{uuid.uuid4().hex}")
        digest, size = hashlib.sha256(), 0
        try:
            with source.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if digest.hexdigest() != expected:
                raise StorageIntegrityError(
                    f"{key}: stored sha256 {digest.hexdigest()} is not the expected {expected}"
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=expected)

    async def stat(self, key: str) -> StoredObject:
        path = self.path_of(key)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return StoredObject(key=key, size=size, sha256="")

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_of(key).is_file)

    async def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the object, in chunks of at most 1 MiB."""
        path = self.path_of(key)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            await asyncio.to_thread(f.seek, start)
            left = end - start
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def presigned_url(
        self, key: str, expires_s: int = 300, *, mime: str | None = None
    ) -> str | None:
        return None  # a folder has no URLs of its own: the server streams it

    async def delete(self, key: str) -> bool:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, check_prefix(prefix))

    def _delete_prefix(self, prefix: str) -> int:
        folder = self.root / prefix.rstrip("/")
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file() and _TMP_MARK not in p.name)
        shutil.rmtree(folder)
        return count

    async def close(self) -> None:
        return None
