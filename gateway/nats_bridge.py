"""nats-py under trio, for management: KV buckets, stream set-up, the router's API.

The data path (publishes, subscriptions, stream reads) speaks NATS natively under trio
(nats_client.py); what is left here is rare and crosses into asyncio once per operation
(`call`, tens of microseconds a crossing under trio-asyncio): session metadata in the KV
bucket, creating the stream and buckets, the router's API and CLI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
import structlog
import trio
import trio_asyncio
from nats.aio.msg import Msg

from .nats_security import NatsSecurity

log = structlog.get_logger("gateway.nats")


class NatsBridge:
    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()

    async def call(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 15.0, **kw: Any
    ) -> Any:
        """Run one asyncio coroutine function (control path, not per event).

        Bounded: a NATS request lost in a reconnect must not hang a connection forever."""
        with trio.fail_after(timeout):
            return await trio_asyncio.aio_as_trio(fn)(*args, **kw)

    async def subscribe(self, subject: str, handler: Callable[[str, bytes], None]) -> Any:
        """Core-NATS subscription whose handler runs synchronously on the trio thread."""

        async def cb(msg: Msg) -> None:
            handler(msg.subject, msg.data)

        return await self.call(self.nc.subscribe, subject, cb=cb, pending_msgs_limit=65536)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def unsubscribe(self, sub: Any) -> None:
        try:
            await self.call(sub.unsubscribe)
        except Exception as exc:  # the connection may already be closed
            log.debug("unsubscribe_failed", error=repr(exc))

    async def publish_core(self, subject: str, data: bytes) -> None:
        await self.call(self.nc.publish, subject, data)


@asynccontextmanager
async def open_bridge(
    servers: list[str] | str, *, name: str = "cobrowse", security: NatsSecurity | None = None
):
    """Connect to NATS (inside trio_asyncio.open_loop) for the block, with the credentials
    and TLS of `security` (the same the trio client uses)."""
    if isinstance(servers, str):
        servers = [s for s in servers.split(",") if s]

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=repr(exc))

    async def on_disconnect() -> None:
        log.info("nats_disconnected")

    async def on_reconnect() -> None:
        log.info("nats_reconnected")

    async with trio_asyncio.open_loop():
        nc = await trio_asyncio.aio_as_trio(nats.connect)(
            servers=servers,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            **(security or NatsSecurity()).nats_py_options(),
        )
        try:
            yield NatsBridge(nc)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await trio_asyncio.aio_as_trio(nc.close)()
