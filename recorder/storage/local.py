"""The library in a local folder: the zero-setup default (docs/ARCHITECTURE.md, decision 4).

Writes are atomic: a file enters under a temporary name beside its destination and is
renamed into place only if its sha256 is the expected one, so a reader never sees half a
file and a failed or corrupt store leaves nothing behind. Blocking file work runs in
threads so the event loop keeps serving signaling.

When the source is on the library's filesystem (the default: both under data_dir) the
file is hard-linked, not copied: no bytes move, and the library's name and the
finaliser's are one inode, which nothing rewrites in place (finalisation replaces names,
never contents). The sha256 check then is about that inode's bytes. A producer that has
just hashed the file it wrote (the remux worker, recorder/finalise/remux.py) leaves the digest
on the inode with `hash_and_stamp` (an extended attribute with the file's size and mtime);
a link whose stamp is current is checked against it without reading the file again, and
a link without one (or on a filesystem without user xattrs) is hashed. Elsewhere (another
filesystem, hard links refused) the file is copied, hashed while copied, and fsynced.
"""

from __future__ import annotations

import asyncio
import errno
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
_STAMP = "user.tongbu.sha256"  # "<sha256 hex> <size> <mtime_ns>" of the inode when hashed


def stamped_sha256(path: Path | int) -> str | None:
    """The stamped digest if the file has not changed since it was stamped, else None."""
    try:
        value = os.getxattr(path, _STAMP).decode().split()
        st = os.stat(path)
    except (OSError, UnicodeDecodeError):
        return None
    if len(value) != 3 or value[1:] != [str(st.st_size), str(st.st_mtime_ns)]:
        return None
    return value[0]


def hash_and_stamp(path: Path) -> str:
    """sha256 of a file just written (page cache warm), stamped on it (blocking).

    The stamp is left only if the file did not change while it was read, and says which
    size and mtime it is valid for; a filesystem without user xattrs gets none."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        before = os.fstat(f.fileno())
        while chunk := f.read(CHUNK):
            digest.update(chunk)
        after = os.fstat(f.fileno())
        sha256 = digest.hexdigest()
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
            try:
                os.setxattr(f.fileno(), _STAMP,
                            f"{sha256} {after.st_size} {after.st_mtime_ns}".encode())
            except OSError:
                pass
    return sha256


# Why os.link may fail where a copy would not: another filesystem, a filesystem without
# hard links (some FUSE, SMB), too many links to the inode, not permitted.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP,
            errno.EACCES, errno.ENOSYS}


class LocalStorage:
    name = "local"
    media_origin: str | None = None  # files are streamed by our own origin

    def __init__(self, root: Path, *, link: bool = True) -> None:
        self.root = root.resolve()
        self.link = link  # hard-link from the same filesystem (False: always copy)

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_file(self, key: str, path: Path, sha256: str) -> StoredObject:
        return await asyncio.to_thread(self._put, key, path, sha256.lower())

    def _put(self, key: str, source: Path, expected: str) -> StoredObject:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            linked = self.link and self._link(source, tmp)
            sha256, size = self._linked(tmp) if linked else self._copy(source, tmp)
            if sha256 != expected:
                raise StorageIntegrityError(
                    f"{key}: stored sha256 {sha256} is not the expected {expected}"
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=size, sha256=expected)

    @staticmethod
    def _link(source: Path, tmp: Path) -> bool:
        try:
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno in _NO_LINK:
                return False
            raise
        return True

    @staticmethod
    def _linked(tmp: Path) -> tuple[str, int]:
        """The linked inode's digest (its current stamp, else read) and size; fsynced,
        which costs nothing when its producer already did."""
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        sha256 = stamped_sha256(tmp)
        if sha256 is None:
            sha256 = hash_and_stamp(tmp)
        return sha256, size

    @staticmethod
    def _copy(source: Path, tmp: Path) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        with source.open("rb") as src, tmp.open("wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        return digest.hexdigest(), size

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
