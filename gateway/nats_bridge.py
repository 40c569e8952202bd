"""nats-py under trio: one long-lived asyncio-side pump fed by a trio channel.

A bridge call (trio -> asyncio) costs tens of microseconds; one per event would cap publishing
near 5k msg/s. So the hot path never crosses per event: trio code drops publish requests into
a memory channel, one asyncio task takes them in batches and writes them to the connection,
and JetStream's acks come back through one wildcard subscription whose callback runs on the
same thread and completes requests synchronously. Control operations (KV, stream reads) are
rare and use `call`, one bridge crossing each.

Publishes are retried with the same Nats-Msg-Id until `publish_timeout`, which must outlast a
stream-leader election (about 5-7 s): JetStream's duplicate window drops the repeats.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import nats
import structlog
import trio
import trio_asyncio
from nats.aio.msg import Msg

from . import metrics

log = structlog.get_logger("gateway.nats")

# (stream_seq, duplicate, error): exactly one of stream_seq / error is set.
PublishDone = Callable[[int | None, bool, Exception | None], None]


class PublishFailed(Exception):
    pass


@dataclass
class _Pending:
    subject: str
    data: bytes
    msg_id: str
    done: PublishDone
    first: float
    next_try: float = 0.0
    attempts: int = 0
    finished: bool = field(default=False)


class NatsBridge:
    def __init__(
        self,
        nc: nats.NATS,
        *,
        attempt_timeout: float = 2.0,
        publish_timeout: float = 30.0,
    ) -> None:
        if publish_timeout < 10:
            raise ValueError("publish_timeout must outlast a stream-leader election (>= 10 s)")
        self.nc = nc
        self.js = nc.jetstream()
        self.attempt_timeout = attempt_timeout
        self.publish_timeout = publish_timeout
        self._send, self._recv = trio.open_memory_channel[_Pending](2**20)
        self._pending: dict[str, _Pending] = {}
        self._prefix = f"_CBACK.{secrets.token_hex(8)}."
        self._seq = 0

    # ---- trio side -------------------------------------------------------------------

    def publish(self, subject: str, data: bytes, msg_id: str, done: PublishDone) -> None:
        """Queue a JetStream publish; `done` is called on this thread when it resolves."""
        now = time.monotonic()
        self._send.send_nowait(_Pending(subject, data, msg_id, done, first=now))

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

    async def subscribe_msgs(self, subject: str, handler: Callable[[Msg], None]) -> Any:
        """Like subscribe, with the whole message (for requests that need a reply)."""

        async def cb(msg: Msg) -> None:
            handler(msg)

        return await self.call(self.nc.subscribe, subject, cb=cb)

    @property
    def in_flight(self) -> int:
        """Publishes queued or awaiting their JetStream ack."""
        return len(self._pending) + self._recv.statistics().current_buffer_used

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued publish has been acknowledged (or given up)."""
        with trio.move_on_after(timeout):
            while self.in_flight:  # noqa: ASYNC110 - acks arrive from the asyncio side
                await trio.sleep(0.02)
            return True
        return False

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

    # ---- asyncio side ----------------------------------------------------------------

    async def _pump(self) -> None:
        """The only place publishes are written: one task, batches, no per-event crossing."""
        receive = trio_asyncio.trio_as_aio(self._recv.receive)
        while True:
            p = await receive()
            batch = [p]
            while len(batch) < 4096:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            now = time.monotonic()
            for p in batch:
                await self._write(p, now)
            metrics.JS_PUBLISH_BATCH.observe(len(batch))

    async def _write(self, p: _Pending, now: float) -> None:
        self._seq += 1
        token = f"{self._seq:x}"
        p.attempts += 1
        p.next_try = now + self.attempt_timeout
        self._pending[token] = p
        await self.nc.publish(
            p.subject, p.data, reply=self._prefix + token, headers={"Nats-Msg-Id": p.msg_id}
        )

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        p = self._pending.pop(token, None)
        if p is None or p.finished:
            return
        if not msg.data:  # 503 no responders: no stream leader right now; retry soon
            p.next_try = time.monotonic() + 0.25
            self._pending[token] = p
            return
        try:
            resp = json.loads(msg.data)
        except ValueError:
            resp = {"error": {"description": "unparseable JetStream ack"}}
        if "error" in resp:
            err = resp["error"]
            code = err.get("code")
            if code in (503, 408) or err.get("err_code") in (10008,):
                p.next_try = time.monotonic() + 0.25
                self._pending[token] = p
                return
            p.finished = True
            metrics.JS_PUBLISH_FAILED.inc()
            p.done(None, False, PublishFailed(str(err.get("description", err))))
            return
        p.finished = True
        metrics.JS_PUBLISH_LATENCY.observe(time.monotonic() - p.first)
        try:
            p.done(int(resp["seq"]), bool(resp.get("duplicate")), None)
        except Exception as exc:  # a callback's failure must not stop the ack subscription
            log.exception("publish_callback_failed", error=repr(exc))

    async def _retrier(self) -> None:
        """Re-send publishes whose ack is overdue, with the same Nats-Msg-Id."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            overdue = [(t, p) for t, p in self._pending.items() if p.next_try <= now]
            for token, p in overdue:
                self._pending.pop(token, None)
                if p.finished:
                    continue
                if now - p.first > self.publish_timeout:
                    p.finished = True
                    metrics.JS_PUBLISH_FAILED.inc()
                    p.done(
                        None,
                        False,
                        PublishFailed(f"no JetStream ack within {self.publish_timeout}s"),
                    )
                    continue
                metrics.JS_PUBLISH_RETRIES.inc()
                try:
                    await self._write(p, now)
                except Exception as exc:  # disconnected: nats-py buffers or refuses; retry later
                    log.debug("republish_failed", error=repr(exc))
                    p.next_try = now + 0.5
                    self._pending[token] = p

    async def _run(self) -> None:
        await asyncio.gather(self._pump(), self._retrier())


@asynccontextmanager
async def open_bridge(servers: list[str] | str, *, name: str = "cobrowse", **kw: Any):
    """Connect to NATS (inside trio_asyncio.open_loop) and run the pump for the block."""
    if isinstance(servers, str):
        servers = [s for s in servers.split(",") if s]

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=repr(exc))

    async def on_disconnect() -> None:
        log.warning("nats_disconnected")

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
            pending_size=64 * 1024 * 1024,
        )
        bridge = NatsBridge(nc, **kw)
        try:
            async with trio.open_nursery() as nursery:
                await bridge.call(
                    nc.subscribe, bridge._prefix + "*", cb=bridge._on_ack, pending_msgs_limit=2**20
                )
                nursery.start_soon(trio_asyncio.aio_as_trio(bridge._run))
                yield bridge
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await trio_asyncio.aio_as_trio(nc.close)()
