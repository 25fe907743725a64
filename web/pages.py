"""Pages served by the server (being written; see issue 3)."""

from __future__ import annotations

from aiohttp import web


def setup_pages(app: web.Application) -> None:
    return None
