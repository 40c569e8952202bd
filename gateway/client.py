"""Reference client: the protocol in Python, for both roles, on trio and trio-websocket.

A thin trio shell over the sans-I/O `ClientProtocol` (gateway/client_protocol.py), which
keeps the protocol state: the Sequencer with every unacked event (resent after any
disconnect), resume tokens that carry the session across gateways, duplicate dropping, and
reconnects with full-jitter backoff (after the cap). This file only moves bytes and time.
Tests use it; a Python program can co-browse headlessly with it. It is the protocol's
executable documentation; the load-test harness has a cheaper generator on the same core
(loadtest/fastclient.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from .backoff import Backoff
from .client_protocol import (
    FATAL_CLOSE,
    SNAPSHOT_CHUNK,
    WELCOME_TIMEOUT,
    Acked,
    ClientError,
    ClientProtocol,
    ClientStats,
    Delivery,
    Fatal,
    Reconnect,
    Welcomed,
    handshake_url,
    retry_after,
)
from .codec import Control, Event, ProtocolError

log = structlog.get_logger("gateway.client")


@dataclass(frozen=True)
class Delivered:
    src: str | None  # None: from the visitor; else the agent id
    epoch: int
    seq: int
    kind: str
    ts: int
    payload: Any
    received: float  # local wall clock, seconds


class _ProtocolAttribute:
    """An attribute of the client that lives in its ClientProtocol."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Client | None, owner: type) -> Any:
        return self if obj is None else getattr(obj.protocol, self.name)

    def __set__(self, obj: Client, value: Any) -> None:
        setattr(obj.protocol, self.name, value)


class Client:
    def __init__(
        self,
        urls: list[str] | str,
        sid: str,
        token: str,
        role: str,
        *,
        max_unacked: int = 20_000,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        on_control: Callable[[Control], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rng = rng or random.Random()
        self.protocol = ClientProtocol(
            urls, sid, token, role, max_unacked=max_unacked, backoff=backoff or Backoff(rng=rng)
        )
        self.on_control = on_control
        self.clock = clock
        self.connected = trio.Event()
        self._events_send, self.events = trio.open_memory_channel[Delivered](math.inf)
        self._wake = trio.Event()
        self._room = trio.Event()
        self._acked = trio.Event()
        self._ws = None

    # The protocol state, as the client's own attributes (tests and the harness read them,
    # and replace some: the harness swaps in an instrumented sequencer).
    urls = _ProtocolAttribute("urls")
    sid = _ProtocolAttribute("sid")
    token = _ProtocolAttribute("token")
    role = _ProtocolAttribute("role")
    backoff = _ProtocolAttribute("backoff")
    seq = _ProtocolAttribute("seq")
    stats = _ProtocolAttribute("stats")
    welcome = _ProtocolAttribute("welcome")
    rt = _ProtocolAttribute("rt")
    gateway = _ProtocolAttribute("gateway")
    last_v = _ProtocolAttribute("last_v")
    last_a = _ProtocolAttribute("last_a")

    # ---- application API ---------------------------------------------------------------

    async def send(self, kind: str, payload: Any, ts: int | None = None) -> Event:
        """Number and queue one event; waits while the resend buffer is full."""
        while not self.seq.can_push():
            self._room = trio.Event()
            await self._room.wait()
        ev = self.seq.push(kind, int(self.clock() * 1000) if ts is None else ts, payload)
        self._wake.set()
        return ev

    async def send_snapshot(self, data: bytes, chunk: int = SNAPSHOT_CHUNK) -> list[Event]:
        """A full snapshot, chunked into `snapshot` events under the per-event limit."""
        parts = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
        return [
            await self.send("snapshot", {"i": i, "n": len(parts), "d": p})
            for i, p in enumerate(parts)
        ]

    @property
    def acked(self) -> int:
        return self.seq.acked

    async def wait_acked(self, seq: int, timeout: float = 30.0) -> None:
        with trio.fail_after(timeout):
            while self.seq.acked < seq:
                self._acked = trio.Event()
                await self._acked.wait()

    def close(self) -> None:
        """Say bye and stop at the next opportunity."""
        self.protocol.close()
        self._wake.set()

    # ---- connection loop ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect with resume until closed or a fatal error."""
        p = self.protocol
        started = False
        while not p.closed:
            url = p.connect_url()
            try:
                async with open_websocket_url(
                    url, max_message_size=4 * 2**20, connect_timeout=5
                ) as ws:
                    self._ws = ws
                    await ws.send_message(p.hello())
                    try:
                        with trio.fail_after(WELCOME_TIMEOUT):
                            while not p.connected:
                                self._apply(p.receive(await ws.get_message(), self.clock()))
                    except trio.TooSlowError:
                        raise OSError("no welcome in time") from None
                    if not started:
                        started = True
                        task_status.started()
                    await self._pump(ws)
                decision = p.connection_lost(1000, "", self.clock())
            except ConnectionRejected as exc:
                ra = next((v for k, v in exc.headers or [] if k.lower() == b"retry-after"), None)
                decision = p.handshake_refused(exc.status_code, retry_after(ra), self.clock())
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason else None
                decision = p.connection_lost(code, exc.reason.reason or "", self.clock())
            except (HandshakeError, OSError, trio.BrokenResourceError) as exc:
                log.debug("connect_failed", url=url, error=repr(exc))
                decision = p.connect_failed(self.clock())
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected = trio.Event()
            if isinstance(decision, Fatal):
                raise decision.error
            if not isinstance(decision, Reconnect):
                break
            await trio.sleep(decision.delay)

    def _apply(self, happenings: list) -> None:
        """What the protocol reports, turned into channel sends, events and callbacks."""
        for h in happenings:
            if isinstance(h, Delivery):
                send = self._events_send.send_nowait
                for ev in h.events:
                    send(Delivered(h.src, h.epoch, ev.seq, ev.kind, ev.ts, ev.payload, h.received))
            elif isinstance(h, Acked):
                if h.freed:
                    self._room.set()
                    self._acked.set()
            elif isinstance(h, Welcomed):
                self.connected.set()
                self._room.set()
                if h.resend:
                    self._wake.set()
            elif self.on_control is not None:  # a control frame
                self.on_control(h.control)

    async def _pump(self, ws) -> None:
        """Run sender and receiver until the connection ends (its ConnectionClosed, or a
        ClientError, is raised from here) or the application closes the client (then bye,
        and the normal close)."""
        ended: list[Exception] = []

        async def guarded(fn) -> None:
            try:
                await fn(ws)
            except (ConnectionClosed, ClientError, trio.BrokenResourceError) as exc:
                ended.append(exc)
            finally:
                n.cancel_scope.cancel()

        async with trio.open_nursery() as n:
            n.start_soon(guarded, self._sender)
            n.start_soon(guarded, self._receiver)
        if ended:
            raise ended[0]
        with trio.move_on_after(2):
            try:
                await ws.send_message(self.protocol.bye())
            except ConnectionClosed:
                pass

    async def _sender(self, ws) -> None:
        """Sends what was numbered since its last wake (O(new), not the unacked list)."""
        p = self.protocol
        while not p.closed:
            frames = p.frames_to_send()
            if not frames:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            for frame in frames:
                await ws.send_message(frame)

    async def _receiver(self, ws) -> None:
        p = self.protocol
        while True:
            self._apply(p.receive(await ws.get_message(), self.clock()))


__all__ = [
    "FATAL_CLOSE",
    "Client",
    "ClientError",
    "ClientStats",
    "Delivered",
    "ProtocolError",
    "handshake_url",
]
