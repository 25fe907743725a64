"""Runtime settings, read once from the command line and the environment.

Every knob has a zero-setup default (SQLite and a folder under ./tongbu-data) so that one
command starts a working server; scale-out engines are chosen by URL, never by code change.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path("tongbu-data")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    # SQLAlchemy async URL; None means SQLite inside data_dir.
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # Signs join tokens. None means a random key kept in data_dir/secret.key, so tokens
    # survive a restart of a single-node install without any setup.
    secret_key: bytes | None = None
    # STUN/TURN servers handed to clients and used by the server. Empty by default:
    # school networks are closed, and a public STUN server would only delay gathering.
    ice_servers: tuple[str, ...] = ()
    # Addresses the server's ICE agent may offer (empty: all interfaces).
    ice_interfaces: tuple[str, ...] = field(default_factory=tuple)
    # Where the resource library keeps recordings (recorder/storage): None or "local" is
    # data_dir/library; "file:///srv/library" another folder; S3-compatible object storage
    # is "s3://bucket?endpoint=http://127.0.0.1:9000&region=us-east-1&prefix=tongbu/".
    storage_url: str | None = None
    # S3 credentials; None falls back to botocore's chain (AWS_ACCESS_KEY_ID, ~/.aws, ...).
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    # Record every live lesson (recorder/) and finalise it into the library. Off only to
    # measure what recording costs (bench/recording.py); TONGBU_RECORD_LESSONS=0.
    record_lessons: bool = True
    # How often each live room's link is sampled into link_samples (loss, RTT, bitrate,
    # freezes) for the lesson statistics (signaling/services/quality_sampler.py);
    # TONGBU_LINK_SAMPLE_INTERVAL_S.
    link_sample_interval_s: float = 10.0
    # The lesson scheduler (signaling/services/scheduler.py): opens each lesson `open_lead_s` before
    # its planned start and ends it `end_grace_s` after its planned end, checking every
    # `scheduler_interval_s`. TONGBU_SCHEDULER=0 turns it off (lessons then open and end
    # only by hand); TONGBU_SCHEDULER_INTERVAL_S, TONGBU_OPEN_LEAD_S, TONGBU_END_GRACE_S.
    scheduler: bool = True
    scheduler_interval_s: float = 5.0
    open_lead_s: float = 600.0
    end_grace_s: float = 300.0

    def __post_init__(self) -> None:
        if self.scheduler_interval_s <= 0:
            raise ValueError("scheduler_interval_s must be more than 0 seconds")
        if self.open_lead_s < 0 or self.end_grace_s < 0:
            raise ValueError("open_lead_s and end_grace_s cannot be negative")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tongbu.sqlite3').resolve()}"

    def resolved_secret_key(self) -> bytes:
        if self.secret_key:
            return self.secret_key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "secret.key"
        if not path.exists():
            # Written with O_EXCL so two processes starting together agree on one key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(secrets.token_bytes(32))
        return path.read_bytes()

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Environment variables (TONGBU_*) below explicit overrides from the CLI."""
        env: dict[str, Any] = {}  # field name: a value of its type, parsed below
        if v := os.environ.get("TONGBU_DATA_DIR"):
            env["data_dir"] = Path(v)
        if v := os.environ.get("TONGBU_DATABASE_URL"):
            env["database_url"] = v
        if v := os.environ.get("TONGBU_SECRET_KEY"):
            env["secret_key"] = v.encode()
        if v := os.environ.get("TONGBU_ICE_SERVERS"):
            env["ice_servers"] = tuple(s for s in v.split(",") if s)
        if v := os.environ.get("TONGBU_STORAGE_URL"):
            env["storage_url"] = v
        if v := os.environ.get("TONGBU_S3_ACCESS_KEY_ID"):
            env["s3_access_key_id"] = v
        if v := os.environ.get("TONGBU_S3_SECRET_ACCESS_KEY"):
            env["s3_secret_access_key"] = v
        if v := os.environ.get("TONGBU_RECORD_LESSONS"):
            env["record_lessons"] = v.strip().lower() not in ("0", "false", "no", "off")
        if v := os.environ.get("TONGBU_LINK_SAMPLE_INTERVAL_S"):
            try:
                env["link_sample_interval_s"] = float(v)
            except ValueError:
                raise ValueError(
                    f"TONGBU_LINK_SAMPLE_INTERVAL_S must be a number of seconds, not {v!r}"
                ) from None
        if v := os.environ.get("TONGBU_SCHEDULER"):
            env["scheduler"] = v.strip().lower() not in ("0", "false", "no", "off")
        for name, key in (
            ("TONGBU_SCHEDULER_INTERVAL_S", "scheduler_interval_s"),
            ("TONGBU_OPEN_LEAD_S", "open_lead_s"),
            ("TONGBU_END_GRACE_S", "end_grace_s"),
        ):
            if v := os.environ.get(name):
                try:
                    env[key] = float(v)
                except ValueError:
                    raise ValueError(f"{name} must be a number of seconds, not {v!r}") from None
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env)
