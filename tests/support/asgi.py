"""Serve an ASGI app with Hypercorn's trio worker on a free loopback port, for a test."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve as hypercorn_serve


@asynccontextmanager
async def serving_app(nursery: trio.Nursery, app):
    """An httpx client bound to `app` served on 127.0.0.1; the server stops on exit."""
    hc = HyperConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    hc.graceful_timeout = 1.0
    stop = trio.Event()

    async def run(*, task_status=trio.TASK_STATUS_IGNORED):
        await hypercorn_serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)

    urls = await nursery.start(run)
    try:
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as http:
            yield http
    finally:
        stop.set()
