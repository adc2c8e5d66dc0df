"""The app in-process over httpx's ASGI transport, for the HTTP contract tests (a plain
module: importable as `tests.unit.serving.asgi`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from dinrec.serving.http.app import create_app
from dinrec.serving.service import RankingService, ServeConfig


@asynccontextmanager
async def in_process(config: ServeConfig) -> AsyncIterator[tuple[httpx.AsyncClient,
                                                                 RankingService]]:
    """(a client of the app serving `config`, its RankingService); closed afterwards."""
    app = create_app(config)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.service
    finally:
        app.state.service.close()
