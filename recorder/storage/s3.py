"""The library in S3-compatible object storage (MinIO, Ceph RGW, OSS, COS, AWS), via aiobotocore.

Integrity: a small file is hashed before it is sent and sent with `ChecksumSHA256`, so the
store refuses a body that changed on the way; a large one goes up in parts, each with its
own SHA-256 checksum checked by the store, while the whole file is hashed as it is read,
and the upload is completed only if that hash is the expected one (otherwise aborted:
no object, no orphan parts). Where a store does not echo checksums, the object is read back
and hashed. The expected sha256 is also kept in the object's metadata (x-amz-meta-sha256).

Playback never streams through the server: clients get a presigned GET URL. The store's
endpoint must therefore be reachable by the browsers that play (school LAN address).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from recorder.storage import (
    CHUNK,
    ObjectNotFound,
    StorageError,
    StorageIntegrityError,
    StoredObject,
    check_key,
    check_prefix,
)

logger = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB for every part but the last
_DIGEST_ERRORS = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def s3_origin(bucket: str, endpoint_url: str | None, region: str, addressing_style: str) -> str:
    """Where botocore's presigned URLs point: the endpoint's origin, with the bucket as a
    subdomain for virtual-hosted addressing; AWS's regional endpoint without one."""
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        scheme, host = parts.scheme or "https", parts.netloc
    else:
        scheme, host = "https", f"s3.{region}.amazonaws.com"
    if addressing_style == "virtual":
        host = f"{bucket}.{host}"
    return f"{scheme}://{host}".lower()


class S3Storage:
    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str = "path",
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.media_origin: str | None = s3_origin(bucket, endpoint_url, region, addressing_style)
        self.prefix = prefix
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._credentials: dict[str, Any] = {}
        if access_key_id and secret_access_key:
            self._credentials = {
                "aws_access_key_id": access_key_id,
                "aws_secret_access_key": secret_access_key,
            }
        self._config = Config(
            s3={"addressing_style": addressing_style},
            signature_version="s3v4",
            # botocore's newer default (CRC checksums on every request) is refused by
            # several S3-compatible stores; we send our own SHA-256 where it matters.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        )
        self._session = get_session()
        self._client: Any = None
        self._client_cm: Any = None
        self._lock = asyncio.Lock()

    async def _s3(self) -> Any:
        """One client per storage object, made on first use inside the running loop."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client_cm = self._session.create_client(
                        "s3",
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        config=self._config,
                        **self._credentials,
                    )
                    self._client = await self._client_cm.__aenter__()
        return self._client

    async def close(self) -> None:
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (tests, first start of a fresh MinIO)."""
        s3 = await self._s3()
        try:
            await s3.head_bucket(Bucket=self.bucket)
        except ClientError:
            await s3.create_bucket(Bucket=self.bucket)

    # ----------------------------------------------------------------- upload

    async def put_file(self, key: str, path: Path, sha256: str) -> StoredObject:
        expected = sha256.lower()
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= self.multipart_threshold:
            await self._put_small(key, path, expected)
        else:
            await self._put_multipart(key, path, expected)
        stored = await self.stat(key)
        if stored.size != size:
            await self._delete_quietly(key)
            raise StorageIntegrityError(f"{key}: stored {stored.size} bytes of {size}")
        return StoredObject(key=key, size=size, sha256=expected)

    async def _put_small(self, key: str, path: Path, expected: str) -> None:
        body = await asyncio.to_thread(path.read_bytes)
        actual = hashlib.sha256(body).hexdigest()
        if actual != expected:
            raise StorageIntegrityError(
                f"{key}: file sha256 {actual} is not the expected {expected}"
            )
        s3 = await self._s3()
        try:
            answer = await s3.put_object(
                Bucket=self.bucket,
                Key=self._full(key),
                Body=body,
                ChecksumSHA256=_b64(expected),
                Metadata={"sha256": expected},
            )
        except ClientError as exc:
            await self._delete_quietly(key)
            if _code(exc) in _DIGEST_ERRORS:
                raise StorageIntegrityError(f"{key}: the store refused the body's digest") from exc
            raise StorageError(f"{key}: upload failed: {exc}") from exc
        echoed = answer.get("ChecksumSHA256")
        if echoed is None:
            await self._verify_by_reading(key, expected)
        elif echoed != _b64(expected):
            await self._delete_quietly(key)
            raise StorageIntegrityError(f"{key}: the store computed another sha256")

    async def _put_multipart(self, key: str, path: Path, expected: str) -> None:
        s3 = await self._s3()
        full = self._full(key)
        upload = await s3.create_multipart_upload(
            Bucket=self.bucket, Key=full, ChecksumAlgorithm="SHA256", Metadata={"sha256": expected}
        )
        upload_id = upload["UploadId"]
        whole = hashlib.sha256()
        parts: list[dict[str, Any]] = []
        completed = False
        try:
            with path.open("rb") as f:
                number = 1
                while chunk := await asyncio.to_thread(f.read, self.part_size):
                    whole.update(chunk)
                    checksum = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
                    answer = await s3.upload_part(
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumSHA256=checksum,
                    )
                    echoed = answer.get("ChecksumSHA256")
                    if echoed is not None and echoed != checksum:
                        raise StorageIntegrityError(f"{key}: part {number} arrived altered")
                    parts.append(
                        {"ETag": answer["ETag"], "PartNumber": number, "ChecksumSHA256": checksum}
                    )
                    number += 1
            if whole.hexdigest() != expected:
                raise StorageIntegrityError(
                    f"{key}: file sha256 {whole.hexdigest()} is not the expected {expected}"
                )
            await s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            completed = True
        except ClientError as exc:
            if _code(exc) in _DIGEST_ERRORS:
                raise StorageIntegrityError(f"{key}: the store refused a part's digest") from exc
            raise StorageError(f"{key}: multipart upload failed: {exc}") from exc
        finally:
            if not completed:
                try:
                    await s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload_id
                    )
                except ClientError:
                    logger.warning("could not abort multipart upload of %s", key, exc_info=True)

    async def _verify_by_reading(self, key: str, expected: str) -> None:
        stat = await self.stat(key)
        digest = hashlib.sha256()
        async for chunk in self.open_range(key, 0, stat.size):
            digest.update(chunk)
        if digest.hexdigest() != expected:
            await self._delete_quietly(key)
            raise StorageIntegrityError(f"{key}: the stored object has another sha256")

    async def _delete_quietly(self, key: str) -> None:
        try:
            await (await self._s3()).delete_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError:
            logger.warning("could not delete %s after a failed upload", key, exc_info=True)

    # ------------------------------------------------------------------- read

    async def stat(self, key: str) -> StoredObject:
        s3 = await self._s3()
        try:
            head = await s3.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(key) from None
            raise StorageError(f"{key}: {exc}") from exc
        sha = head.get("Metadata", {}).get("sha256", "")
        return StoredObject(key=key, size=int(head["ContentLength"]), sha256=sha)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    async def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the object (a ranged GET), in chunks of at most 1 MiB."""
        if end <= start:
            return
        s3 = await self._s3()
        try:
            answer = await s3.get_object(
                Bucket=self.bucket, Key=self._full(key), Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(key) from None
            raise StorageError(f"{key}: {exc}") from exc
        async with answer["Body"] as body:
            while chunk := await body.read(CHUNK):
                yield chunk

    async def presigned_url(
        self, key: str, expires_s: int = 300, *, mime: str | None = None
    ) -> str | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key)}
        if mime:
            params["ResponseContentType"] = mime
        s3 = await self._s3()
        return str(
            await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        )

    # ----------------------------------------------------------------- delete

    async def delete(self, key: str) -> bool:
        existed = await self.exists(key)
        await (await self._s3()).delete_object(Bucket=self.bucket, Key=self._full(key))
        return existed

    async def delete_prefix(self, prefix: str) -> int:
        full = self.prefix + check_prefix(prefix)
        s3 = await self._s3()
        count = 0
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if not keys:
                continue
            answer = await s3.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            if errors := answer.get("Errors"):
                raise StorageError(f"could not delete {len(errors)} objects under {prefix}")
            count += len(keys)
        return count
