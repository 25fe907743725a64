"""The storage backend a server's settings name: a local folder by default, or S3."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from classroom.config import Settings
from recorder.storage import Storage
from recorder.storage.local import LocalStorage


def storage_from_settings(settings: Settings) -> Storage:
    """The backend `settings.storage_url` names; a folder under data_dir by default."""
    url = settings.storage_url
    if not url or url == "local":
        return LocalStorage(settings.data_dir / "library")
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from recorder.storage.s3 import S3Storage  # aiobotocore loads only when it is used

        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not parts.netloc:
            raise ValueError("an s3 storage URL names its bucket: s3://bucket?endpoint=...")
        return S3Storage(
            bucket=parts.netloc,
            endpoint_url=query.get("endpoint"),
            region=query.get("region", "us-east-1"),
            prefix=query.get("prefix", ""),
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            addressing_style=query.get("addressing", "path"),
        )
    raise ValueError(f"unknown storage URL scheme {parts.scheme!r} (local, file or s3)")
