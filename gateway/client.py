"""Reference client: the protocol in Python, for both roles.

Built on the same sans-I/O pieces as the gateway: the Sequencer keeps unacked events and
resends them after any disconnect, resume tokens carry the session across gateways, and
reconnects back off with full jitter (after the cap). Tests and the load-test harness use
it; a Python program can co-browse headlessly with it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from .backoff import Backoff
from .codec import (
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_BATCH,
    MAX_FRAME_BYTES,
    Ack,
    Bye,
    Close,
    Control,
    Event,
    Events,
    Hello,
    ProtocolError,
    Resume,
    Welcome,
    approx_size,
    decode_frame,
    encode_frame,
)
from .sequencer import Sequencer

log = structlog.get_logger("gateway.client")

# Close codes after which reconnecting cannot help.
FATAL_CLOSE = {
    Close.UNAUTHORIZED,
    Close.BAD_FRAME,
    Close.PROTOCOL,
    Close.UNSUPPORTED_VERSION,
    Close.REPLACED,
    Close.SESSION_ENDED,
    Close.UNSUPPORTED_DATA,
    Close.TOO_BIG,
}


SNAPSHOT_CHUNK = MAX_EVENT_BYTES - 1024  # room for the {"i", "n", "d"} envelope
FRAME_BUDGET = MAX_FRAME_BYTES // 2  # estimated bytes per events frame, well under the limit


class ClientError(Exception):
    def __init__(self, code: str, message: str, close_code: int | None = None):
        super().__init__(f"{code}: {message} (close {close_code})")
        self.code = code
        self.message = message
        self.close_code = close_code


@dataclass(frozen=True)
class Delivered:
    src: str | None  # None: from the visitor; else the agent id
    epoch: int
    seq: int
    kind: str
    ts: int
    payload: Any
    received: float  # local wall clock, seconds


@dataclass
class ClientStats:
    connects: int = 0
    resumes: int = 0
    duplicates_dropped: int = 0
    gaps: int = 0  # events that skipped ahead: a gateway bug if ever non-zero
    rejected: int = 0
    reconnect_notices: int = 0
    resume_times: list[float] = field(default_factory=list)
    welcomes: list[float] = field(default_factory=list)  # when each welcome arrived (clock)


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
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.sid, self.token, self.role = sid, token, role
        self.seq = Sequencer(epoch=0, max_unacked=max_unacked)
        self.backoff = backoff or Backoff(rng=rng)
        self.rng = rng or random.Random()
        self.on_control = on_control
        self.clock = clock
        self.welcome: Welcome | None = None
        self.rt: str | None = None
        self.last_v: tuple[int, int] | None = None  # agent: last visitor event delivered
        self.last_a: dict[str, int] = {}  # visitor: last event delivered per agent
        self.stats = ClientStats()
        self.connected = trio.Event()
        self.gateway: str | None = None
        self._events_send, self.events = trio.open_memory_channel[Delivered](math.inf)
        self._wake = trio.Event()
        self._room = trio.Event()
        self._acked = trio.Event()
        self._ws = None
        self._sent_upto = 0
        self._stop = False
        self._url_index = 0
        self._next_url: str | None = None
        self._down_since: float | None = None

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
        self._stop = True
        self._wake.set()

    # ---- connection loop ----------------------------------------------------------------

    def _pick_url(self) -> str:
        if self._next_url:
            url, self._next_url = self._next_url, None
            return url
        url = self.urls[self._url_index % len(self.urls)]
        return url

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect with resume until closed or a fatal error."""
        started = False
        while not self._stop:
            url = self._pick_url()
            floor = 0.0
            try:
                async with open_websocket_url(
                    handshake_url(url, self.sid, self.rt),
                    max_message_size=4 * 2**20,
                    connect_timeout=5,
                ) as ws:
                    self._ws = ws
                    try:
                        await self._session(ws)
                    except trio.TooSlowError:
                        raise OSError("no welcome in time") from None
                    except ProtocolError as exc:
                        raise ClientError(exc.code, f"bad frame or resume: {exc.message}") from exc
                    if not started:
                        started = True
                        task_status.started()
                    floor = await self._pump(ws)
            except ConnectionRejected as exc:
                self.stats.rejected += 1
                floor = _retry_after(exc)
            except (HandshakeError, OSError, trio.BrokenResourceError) as exc:
                log.debug("connect_failed", url=url, error=repr(exc))
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason else None
                if code in FATAL_CLOSE:
                    raise ClientError("closed", exc.reason.reason or "", code) from None
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected = trio.Event()
                    self._down_since = self.clock()
            if self._stop:
                break
            if floor < 0:  # reconnect notice: delay given by the server, go to the next URL
                delay = -floor
            else:
                self._url_index += 1
                delay = self.backoff.next_delay(floor)
            await trio.sleep(delay)

    async def _session(self, ws) -> None:
        resume = None
        if self.rt is not None:
            recv: Any = list(self.last_v) if (self.role == "agent" and self.last_v) else None
            if self.role == "visitor":
                recv = dict(self.last_a)
            resume = Resume(rt=self.rt, epoch=self.seq.epoch, recv=recv)
        await ws.send_message(
            encode_frame(Hello(role=self.role, sid=self.sid, token=self.token, resume=resume))
        )
        with trio.fail_after(30):
            while True:
                frame = decode_frame(await ws.get_message())
                if isinstance(frame, Welcome):
                    break
                if isinstance(frame, Control) and frame.op == "error":
                    await self._expect_close(ws, frame)
        resumed = self.rt is not None
        if self.role == "agent" and self.welcome is not None and frame.aid != self.welcome.aid:
            # The resume was not accepted (e.g. its token expired): a new agent identity,
            # so number from 1 again and take delivery from where the gateway starts it.
            log.warning("agent_identity_restarted", old=self.welcome.aid, new=frame.aid)
            self.seq.restart(0)
            self.last_v = None
            resumed = False
        self.welcome = frame
        self.gateway = frame.gw
        self.rt = frame.rt
        if self.role == "visitor" and frame.epoch != self.seq.epoch:
            if self.seq.epoch != 0:
                log.warning(
                    "epoch_restarted",
                    old=self.seq.epoch,
                    new=frame.epoch,
                    dropped=len(self.seq.unacked()),
                )
                self.seq.restart(frame.epoch)
            else:
                self.seq.epoch = frame.epoch
        if self.role == "agent" and isinstance(frame.delivered, list) and self.last_v is None:
            self.last_v = (frame.delivered[0], frame.delivered[1])
        resend = self.seq.resume(frame.durable)
        self._sent_upto = frame.durable
        self.stats.connects += 1
        self.stats.welcomes.append(self.clock())
        if resumed:
            self.stats.resumes += 1
            if self._down_since is not None:
                self.stats.resume_times.append(self.clock() - self._down_since)
        self._down_since = None
        self.backoff.reset()
        self.connected.set()
        self._room.set()
        if resend:
            self._wake.set()

    async def _expect_close(self, ws, ctl: Control) -> None:
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            code = exc.reason.code if exc.reason else None
            if code in FATAL_CLOSE:
                raise ClientError(ctl.code or "error", ctl.msg or "", code) from None
            raise
        raise ClientError(ctl.code or "error", ctl.msg or "", None)

    async def _pump(self, ws) -> float:
        """Run sender and receiver until the connection ends; returns a backoff floor."""
        result: dict[str, Any] = {"floor": 0.0, "fatal": None}

        async def guarded(fn, *args) -> None:
            try:
                await fn(*args)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except (ClientError, ProtocolError) as exc:
                result["fatal"] = exc
            finally:
                n.cancel_scope.cancel()

        async with trio.open_nursery() as n:
            n.start_soon(guarded, self._sender, ws, n.cancel_scope)
            n.start_soon(guarded, self._receiver, ws, n.cancel_scope, result)
        if result["fatal"] is not None:
            exc = result["fatal"]
            if isinstance(exc, ProtocolError):
                raise ClientError(exc.code, f"gateway sent a bad frame: {exc.message}") from exc
            raise exc
        if self._stop:
            with trio.move_on_after(2):
                try:
                    await ws.send_message(encode_frame(Bye("client closed")))
                except ConnectionClosed:
                    pass
        return result["floor"]

    async def _sender(self, ws, scope: trio.CancelScope) -> None:
        while not self._stop:
            pending = [e for e in self.seq.unacked() if e.seq > self._sent_upto]
            if not pending:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            chunk: list[Event] = []
            size = 0
            for ev in pending:
                est = 32 + approx_size(ev.payload)
                if chunk and (len(chunk) >= MAX_EVENTS_PER_BATCH or size + est > FRAME_BUDGET):
                    await ws.send_message(encode_frame(Events(epoch=self.seq.epoch, events=chunk)))
                    self._sent_upto = chunk[-1].seq
                    chunk, size = [], 0
                chunk.append(ev)
                size += est
            await ws.send_message(encode_frame(Events(epoch=self.seq.epoch, events=chunk)))
            self._sent_upto = chunk[-1].seq
        scope.cancel()

    async def _receiver(self, ws, scope: trio.CancelScope, result: dict) -> None:
        while True:
            try:
                raw = await ws.get_message()
            except ConnectionClosed as exc:
                code = exc.reason.code if exc.reason else None
                if code in FATAL_CLOSE:
                    raise ClientError("closed", exc.reason.reason or "", code) from None
                scope.cancel()
                return
            frame = decode_frame(raw)
            if isinstance(frame, Ack):
                if self.seq.ack(frame.seq):
                    self._room.set()
                    self._acked.set()
            elif isinstance(frame, Events):
                self._deliver(frame)
            elif isinstance(frame, Control):
                if self.on_control is not None:
                    self.on_control(frame)
                if frame.op == "reconnect":
                    self.stats.reconnect_notices += 1
                    if frame.hint:
                        self._next_url = frame.hint[0]
                    else:
                        self._url_index += 1
                    result["floor"] = -max(0.0, (frame.delay_ms or 0) / 1000)
                elif frame.op == "reset":
                    self.last_v = None
                elif frame.op == "error":
                    continue  # the close that follows says whether to retry

    def _deliver(self, frame: Events) -> None:
        now = self.clock()
        for ev in frame.events:
            if frame.src is None:
                key = (frame.epoch, ev.seq)
                last = self.last_v
                if last is not None:
                    if key <= last:
                        self.stats.duplicates_dropped += 1
                        continue
                    if key[0] == last[0] and ev.seq != last[1] + 1:
                        self.stats.gaps += 1
                self.last_v = key
            else:
                last_seq = self.last_a.get(frame.src, 0)
                if ev.seq <= last_seq:
                    self.stats.duplicates_dropped += 1
                    continue
                if ev.seq != last_seq + 1 and frame.src in self.last_a:
                    self.stats.gaps += 1
                self.last_a[frame.src] = ev.seq
            self._events_send.send_nowait(
                Delivered(frame.src, frame.epoch, ev.seq, ev.kind, ev.ts, ev.payload, now)
            )


def handshake_url(url: str, sid: str, rt: str | None) -> str:
    """The gateway admits at the handshake: name the session, and prove a resume."""
    parts = urlsplit(url)
    q = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("sid", "rt")]
    q.append(("sid", sid))
    if rt:
        q.append(("rt", rt))
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(q)))


def _retry_after(exc: ConnectionRejected) -> float:
    for k, v in exc.headers or []:
        if k.lower() == b"retry-after":
            try:
                return float(v)
            except ValueError:
                return 1.0
    return 1.0


__all__ = ["Client", "ClientError", "Delivered", "ProtocolError"]
