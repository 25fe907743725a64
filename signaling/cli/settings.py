"""The options every subcommand that opens the database shares, and the settings they make."""

from __future__ import annotations

import argparse
from pathlib import Path

from classroom.config import Settings


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --database-url, for every subcommand that opens the database."""
    parser.add_argument(
        "--data-dir", type=Path, help="data folder (default ./tongbu-data, or $TONGBU_DATA_DIR)"
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db "
        "(default SQLite in the data folder, or $TONGBU_DATABASE_URL)",
    )


def settings_from_args(args: argparse.Namespace, **extra: object) -> Settings:
    return Settings.from_env(
        data_dir=getattr(args, "data_dir", None),
        database_url=getattr(args, "database_url", None),
        **extra,
    )
