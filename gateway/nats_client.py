"""A NATS client in trio for the gateway's hot path: publish, subscribe, request/reply.

Why not nats-py: under trio it runs through trio-asyncio, which was 22-38% of a gateway's CPU,
and each message cost a task chain (callback task, future, reply subject). Here the protocol
is `nats_wire` (sans-I/O) and this file is its shell: one raw non-blocking socket per
connection, read by one task that hands each message to its subscription's handler on the
spot, and written through an `Outbox` that the `TurnFlusher` sends once per run-loop turn.
nats-py stays for management (KV buckets, stream creation).

Security (gateway/nats_security.py): credentials go in CONNECT; TLS starts after the server's
plain-text INFO, as NATS does it, when the server requires it or this client was given a CA
(then a server without TLS is refused rather than sent a password in the clear). The
connection stays one non-blocking socket, now an `ssl.SSLSocket`, so the reader, the
`Outbox` and the reconnect loop are the same with and without TLS.

Lifetimes: `NatsClient.open()` is an async context manager whose nursery runs the connection
loop; each connection has its own nursery (reader, writer, pinger) that is cancelled when
the connection fails, and the loop then reconnects, forever, until the block exits.

Guarantees, as in NATS itself: core publishes are at most once. Bytes queued while
disconnected (up to `pending_limit`) are sent after the reconnect; bytes the kernel had
taken when a connection died are lost. Subscriptions are re-sent on reconnect, but messages
published during the gap are not replayed: `on_reconnected` callbacks exist so receivers can
re-read the stream. Requests in flight when a connection drops keep waiting until their own
timeout, because the reply may still come after the reconnect (a JetStream publish that was
stored before the drop is acked then, or the caller retries with the same Nats-Msg-Id).
"""

from __future__ import annotations

import errno
import math
import os
import random
import secrets
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import outcome
import structlog
import trio

from .nats_security import NatsSecurity
from .nats_wire import (
    DEFAULT_MAX_PAYLOAD,
    PING,
    PONG,
    Err,
    Event,
    Info,
    Msg,
    Ok,
    Parser,
    PayloadTooLarge,
    Ping,
    Pong,
    ProtocolError,
    connect,
    pub,
    sub,
    unsub,
)
from .outbox import Outbox, current_flusher

__all__ = [
    "ClientClosed",
    "ConnectionLost",
    "ConnectRefused",
    "Msg",
    "NatsClient",
    "NatsError",
    "NoServersAvailable",
    "OutboundBufferFull",
    "PayloadTooLarge",
    "ProtocolError",
    "Stats",
    "Subscription",
]

log = structlog.get_logger("gateway.nats")

VERSION = "0.1.0"
_READ_SIZE = 256 * 1024  # one recv(); a wake usually finds far less
_READS_PER_WAKE = 16  # then back to the run loop, so a flood cannot starve other tasks
# A non-blocking SSLSocket says "not now" with these rather than BlockingIOError.
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
LAME_DUCK_JITTER = 1.0  # seconds: clients of a lame-duck server leave spread over this


class NatsError(Exception):
    pass


class NoServersAvailable(NatsError):
    """The first connect: no server answered (each error is in the message)."""


class ConnectRefused(NatsError):
    """The server answered -ERR before the handshake's PONG (e.g. an authorization error),
    or its TLS does not match this client's (none offered while a CA is configured)."""


class ConnectionLost(NatsError):
    """The connection ended (EOF, a failed send, unanswered PINGs, lame duck)."""


class OutboundBufferFull(NatsError):
    """More than `pending_limit` bytes queued: the server (or the link) is not keeping up."""


class ClientClosed(NatsError):
    """The client's context has exited."""


@dataclass(slots=True)
class Stats:
    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    reconnects: int = 0


class Subscription:
    """A subscription: `handler(msg)` is called on the reader task, once per message."""

    __slots__ = ("sid", "subject", "queue", "handler")

    def __init__(
        self, sid: int, subject: str, queue: str | None, handler: Callable[[Msg], None]
    ) -> None:
        self.sid = sid
        self.subject = subject
        self.queue = queue
        self.handler = handler

    def __repr__(self) -> str:
        return f"Subscription(sid={self.sid}, subject={self.subject!r}, queue={self.queue!r})"


class _Pong:
    """A flush waiting for its PONG; `error` is set if the connection drops first."""

    __slots__ = ("event", "error")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.error: BaseException | None = None


class _Request:
    __slots__ = ("task", "msgs", "until", "timeout", "deadline")

    def __init__(self, until: Callable[[Msg], bool] | None, timeout: float) -> None:
        self.task = trio.lowlevel.current_task()
        self.msgs: list[Msg] = []
        self.until = until
        self.timeout = timeout
        self.deadline = trio.current_time() + timeout


class _Requests:
    """Requests waiting for replies, by token, and one task that times them out.

    A cancel scope per request (`trio.fail_after`) was about half of what a request cost
    here, so a waiting task is parked with `wait_task_rescheduled` and woken by the reply
    or by the sweeper. Requests with the same timeout expire in the order they were made,
    so each timeout value has a FIFO (an insertion-ordered dict) whose head expires first,
    and the sweeper sleeps until the earliest head."""

    def __init__(self) -> None:
        self.by_token: dict[str, _Request] = {}
        self._fifos: dict[float, dict[str, _Request]] = {}
        self._sleep: trio.CancelScope | None = None  # the sweeper's, until its next expiry

    def add(self, token: str, r: _Request) -> None:
        self.by_token[token] = r
        fifo = self._fifos.get(r.timeout)
        if fifo is None:
            fifo = self._fifos[r.timeout] = {}
        fifo[token] = r
        if self._sleep is not None and r.deadline < self._sleep.deadline:
            self._sleep.deadline = r.deadline  # only for a shorter timeout than any so far

    def pop(self, token: str) -> _Request | None:
        r = self.by_token.pop(token, None)
        if r is not None:
            fifo = self._fifos[r.timeout]
            del fifo[token]
            if not fifo:  # timeouts computed per call must not leave a FIFO each behind
                del self._fifos[r.timeout]
        return r

    def finish(self, token: str, result: outcome.Outcome) -> None:
        r = self.pop(token)
        if r is not None:
            trio.lowlevel.reschedule(r.task, result)

    async def sweep(self) -> None:
        while True:
            now = trio.current_time()
            expired, wake = [], math.inf
            for fifo in self._fifos.values():
                for token, r in fifo.items():
                    if r.deadline > now:
                        wake = min(wake, r.deadline)
                        break
                    expired.append(token)
            for token in expired:
                self.finish(token, outcome.Error(trio.TooSlowError()))
            with trio.CancelScope(deadline=wake) as self._sleep:
                await trio.sleep_forever()

    def fail_all(self, exc: BaseException) -> None:
        for token in list(self.by_token):
            self.finish(token, outcome.Error(exc))


@dataclass(frozen=True, slots=True)
class _Server:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: bool = False  # tls://: TLS required whatever the server's INFO says

    @property
    def url(self) -> str:  # without credentials: it goes to logs
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tls' if self.tls else 'nats'}://{host}:{self.port}"

    @classmethod
    def parse(cls, url: str, like: _Server | None = None) -> _Server:
        """`nats|tls://[user:pass@|token@]host[:4222]`, or `host:port` (as INFO's
        connect_urls)."""
        parts = urlsplit(url if "://" in url else "nats://" + url)
        if parts.scheme not in ("nats", "tcp", "tls"):
            raise ValueError(f"unsupported NATS URL {url!r} (nats:// or tls://)")
        if not parts.hostname:
            raise ValueError(f"NATS URL without a host: {url!r}")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        token = None
        if user is not None and password is None:
            user, token = None, user
        tls = parts.scheme == "tls"
        if like is not None and user is None and token is None:  # discovered: same credentials
            user, password, token = like.user, like.password, like.token
        if like is not None:
            tls = tls or like.tls
        return cls(parts.hostname, parts.port or 4222, user, password, token, tls)


class _ServerPool:
    """The configured servers plus those INFO announces, tried round robin."""

    def __init__(self, urls: list[str]) -> None:
        self.servers = [_Server.parse(u) for u in urls]
        if not self.servers:
            raise ValueError("no NATS servers given")

    def add(self, urls: list[str], like: _Server) -> None:
        known = {(s.host, s.port) for s in self.servers}
        for u in urls:
            try:
                s = _Server.parse(u, like)
            except ValueError:
                log.warning("nats_error", error=f"bad connect_url {u!r} in INFO")
                continue
            if (s.host, s.port) not in known:
                known.add((s.host, s.port))
                self.servers.append(s)
                log.info("nats_server_discovered", url=s.url)

    def after(self, failed: _Server) -> list[_Server]:
        """Every server once, starting after `failed` and ending with it."""
        try:
            i = self.servers.index(failed) + 1
        except ValueError:
            i = 0
        return self.servers[i:] + self.servers[:i]


class _Conn:
    """One TCP connection: socket, parser, outbox, and the PINGs that await their PONGs."""

    def __init__(self, sock: socket.socket, server: _Server) -> None:
        self.sock = sock
        self.server = server
        self.parser = Parser()
        self.wake = trio.Event()  # the outbox is blocked or closed: the writer must act
        self.outbox = Outbox(sock, current_flusher(), self._outbox_needs_writer)
        self.pongs: deque[_Pong | None] = deque()  # one per PING sent; None: the pinger's
        self.pings_out = 0
        self.backlog: deque[Event] = deque()  # read with the handshake's PONG, not handled yet
        self.failure: BaseException | None = None
        self.nursery: trio.Nursery | None = None
        self.lame_duck = False
        self.closed = False

    def _outbox_needs_writer(self) -> None:
        self.wake.set()

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outbox.close()
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


_CONNECT_ERRORS = (OSError, trio.TooSlowError, NatsError, ProtocolError)


class NatsClient:
    """Core NATS over one connection at a time, reconnecting forever; see the module doc.

    Handlers given to `subscribe` run synchronously on the reader task, one message at a
    time, in order: they must not block (no awaits, no long loops). A handler's exception
    is logged and the reader goes on.
    """

    def __init__(
        self,
        servers: list[str] | str,
        *,
        name: str = "cobrowse",
        connect_timeout: float = 2.0,
        reconnect_wait: float = 0.25,
        ping_interval: float = 10.0,
        max_pings_out: int = 2,
        pending_limit: int = 64 * 2**20,
        read_interval: float = 0.0,
        security: NatsSecurity | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        self._pool = _ServerPool(servers)
        self._security = security or NatsSecurity()
        self._ssl: ssl.SSLContext | None = None  # made at the first TLS connect
        self._name = name
        self._connect_timeout = connect_timeout
        self._reconnect_wait = reconnect_wait
        self._ping_interval = ping_interval
        self._max_pings_out = max_pings_out
        self._pending_limit = pending_limit
        # > 0: while messages keep coming, read them at most every read_interval seconds,
        # so a stream of answers that nobody waits for costs one wake-up per interval
        # rather than one per message (a wake-up costs about 50 us of CPU here).
        self._read_interval = read_interval
        self._hurry = trio.Event()  # someone waits for what may be in the socket now
        self.stats = Stats()
        self._conn: _Conn | None = None
        self._up = trio.Event()  # set while connected
        self._pending = bytearray()  # publishes queued while disconnected
        self._max_payload = DEFAULT_MAX_PAYLOAD  # the last server's, from its INFO
        self._closing = False
        self._closed = False
        self._subs: dict[int, Subscription] = {}
        self._next_sid = 0
        self._on_reconnected: list[Callable[[], None]] = []
        self._on_disconnected: list[Callable[[], None]] = []
        # Requests: one wildcard subscription, a token per request (no SUB/UNSUB each).
        self._inbox = self.new_inbox() + "."
        self._inbox_len = len(self._inbox)
        self._requests = _Requests()
        self._next_token = 0
        self.subscribe(self._inbox + "*", self._on_reply)

    # ---- the API -----------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, servers: list[str] | str, **options) -> AsyncIterator[NatsClient]:
        """Connect (trying every server once, else `NoServersAvailable`) and run the
        connection loop for the block; on exit, flush what was written (1 s at most).
        `options` are `NatsClient`'s: name, connect_timeout, reconnect_wait, ping_interval,
        max_pings_out, pending_limit, read_interval, security."""
        client = cls(servers, **options)
        conn = await client._connect_first()
        client._ready(conn)
        log.info("nats_connected", url=conn.server.url, name=client._name)
        try:
            async with trio.open_nursery() as nursery:
                # Its own scope, not the nursery's: cancelling the nursery's would also
                # swallow a cancellation that reached the block from outside.
                run_scope = trio.CancelScope()
                nursery.start_soon(client._run, conn, run_scope)
                try:
                    yield client
                finally:
                    client._closing = True
                    with trio.CancelScope(shield=True):
                        await client._flush_on_exit()
                    run_scope.cancel()
        except BaseExceptionGroup as group:  # our tasks raise nothing: it is the block's
            _raise_single(group)
        finally:
            client._closed = True
            if client._conn is not None:  # cancelled before the loop ever served it
                client._lost(client._conn)
            client._requests.fail_all(ClientClosed("the NATS client closed"))
            if client._pending:
                log.warning("nats_pending_dropped", bytes=len(client._pending))
                client._pending = bytearray()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def connected_url(self) -> str | None:
        return self._conn.server.url if self._conn is not None else None

    @property
    def known_servers(self) -> list[str]:
        """The configured servers and those the cluster announced (without credentials)."""
        return [s.url for s in self._pool.servers]

    def on_reconnected(self, cb: Callable[[], None]) -> None:
        """`cb()` after each reconnect, once the subscriptions are re-sent."""
        self._on_reconnected.append(cb)

    def on_disconnected(self, cb: Callable[[], None]) -> None:
        """`cb()` when a connection is lost (also when the client closes)."""
        self._on_disconnected.append(cb)

    def hurry(self) -> None:
        """End the current read_interval now: a caller waits for an answer (say the ack a
        busy sender's next message needs) and must not sit out the interval."""
        self._hurry.set()

    def new_inbox(self) -> str:
        return "_INBOX." + secrets.token_hex(11)

    def publish(
        self,
        subject: str,
        data: bytes,
        *,
        reply: str | None = None,
        headers: dict[str, str] | bytes | None = None,
    ) -> None:
        """Queue a publish (sent this run-loop turn when connected). Never awaits.
        `headers`: a dict, or an encoded `NATS/1.0` block (see nats_wire.pub).

        `PayloadTooLarge` over the server's max_payload (headers count), which the server
        would answer by closing the connection; `OutboundBufferFull` past pending_limit."""
        wire = pub(subject, data, reply, headers, self._max_payload)
        self._send(wire)
        stats = self.stats
        stats.msgs_out += 1
        stats.bytes_out += len(wire)

    def _send(self, wire: bytes) -> None:
        conn = self._conn
        if conn is not None:
            box = conn.outbox
            if box.pending + len(wire) > self._pending_limit:
                raise OutboundBufferFull(f"{box.pending} bytes not yet taken by the kernel")
            box.write(wire)
            return
        if self._closed:
            raise ClientClosed("the NATS client is closed")
        if len(self._pending) + len(wire) > self._pending_limit:
            raise OutboundBufferFull(f"{len(self._pending)} bytes queued while disconnected")
        self._pending += wire

    def subscribe(
        self, subject: str, handler: Callable[[Msg], None], *, queue: str | None = None
    ) -> Subscription:
        """`handler(msg)` runs on the reader task and must not block. SUB is queued."""
        self._next_sid += 1
        s = Subscription(self._next_sid, subject, queue, handler)
        wire = sub(subject, s.sid, queue)  # checks the subject before anything is kept
        self._subs[s.sid] = s
        if self._conn is not None:
            self._conn.outbox.write(wire)
        return s

    def unsubscribe(self, s: Subscription) -> None:
        """No more calls to its handler from now on, even for messages already read."""
        if self._subs.pop(s.sid, None) is not None and self._conn is not None:
            self._conn.outbox.write(unsub(s.sid))

    async def request(
        self,
        subject: str,
        data: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        timeout: float,
    ) -> Msg:
        """The first reply, which may be a status message (`msg.status` "503": no
        responders): the caller decides. `trio.TooSlowError` after `timeout`; a connection
        lost meanwhile does not end the wait (the reply may come after the reconnect)."""
        return (await self._request(subject, data, headers, timeout, None))[0]

    async def request_many(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout: float,
        until: Callable[[Msg], bool],
    ) -> list[Msg]:
        """Replies up to and including the first for which `until(msg)` is true (a batched
        direct get ends with status 204 "EOB"; a 503 or 404 may come instead, so `until`
        should accept any status). `trio.TooSlowError` if it does not come in time."""
        return await self._request(subject, data, headers, timeout, until)

    async def _request(self, subject, data, headers, timeout, until) -> list[Msg]:
        self._next_token += 1
        token = f"{self._next_token:x}"
        requests = self._requests
        requests.add(token, _Request(until, timeout))
        try:
            self.publish(subject, data, reply=self._inbox + token, headers=headers)
        except BaseException:
            requests.pop(token)
            raise

        def abort(_: object) -> trio.lowlevel.Abort:  # cancelled from outside
            requests.pop(token)
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[self._inbox_len :]
        r = self._requests.by_token.get(token)
        if r is None:
            return  # late: its request timed out or already has what it waited for
        r.msgs.append(msg)
        if r.until is not None:
            try:
                if not r.until(msg):
                    return
            except Exception as exc:
                self._requests.finish(token, outcome.Error(exc))
                return
        self._requests.finish(token, outcome.Value(r.msgs))

    async def flush(self, timeout: float = 5.0) -> None:
        """A PING/PONG round trip: the server has processed everything written before.
        Waits for a connection if there is none; `ConnectionLost` if it drops first."""
        with trio.fail_after(timeout):
            while self._conn is None:
                if self._closed:
                    raise ClientClosed("the NATS client is closed")
                await self._up.wait()
            conn = self._conn
            w = _Pong()
            conn.pongs.append(w)
            conn.outbox.write(PING)
            await w.event.wait()
        if w.error is not None:
            raise w.error

    # ---- lifetime ----------------------------------------------------------------------

    async def _flush_on_exit(self) -> None:
        if self._conn is None:
            return
        try:
            await self.flush(timeout=1.0)
        except (trio.TooSlowError, NatsError) as exc:
            log.info("nats_close_flush_failed", error=repr(exc))

    async def _run(self, conn: _Conn, scope: trio.CancelScope) -> None:
        """Serve a connection until it fails, reconnect, repeat."""
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._requests.sweep)
                while True:
                    await self._serve(conn)
                    conn = await self._reconnect(conn.server)
                    self.stats.reconnects += 1
                    self._ready(conn)
                    log.info("nats_reconnected", url=conn.server.url)
                    _call_all(self._on_reconnected, "on_reconnected")

    async def _serve(self, conn: _Conn) -> None:
        try:
            async with trio.open_nursery() as nursery:
                conn.nursery = nursery
                nursery.start_soon(self._guard, conn, self._read_loop)
                nursery.start_soon(self._guard, conn, self._write_loop)
                nursery.start_soon(self._guard, conn, self._ping_loop)
                if conn.lame_duck:
                    nursery.start_soon(self._leave_lame_duck, conn)
        finally:
            self._lost(conn)

    async def _guard(self, conn: _Conn, loop: Callable) -> None:
        """A connection task's expected failures end the connection, not the client."""
        try:
            await loop(conn)
        except ProtocolError as exc:
            log.warning("nats_error", url=conn.server.url, error=f"protocol error: {exc}")
            conn.fail(exc)
        except (OSError, NatsError) as exc:
            conn.fail(exc)

    def _lost(self, conn: _Conn) -> None:
        if conn.closed:
            return
        if self._conn is conn:
            self._conn = None
            self._up = trio.Event()
        for w in conn.pongs:
            if w is not None:
                w.error = ConnectionLost(f"connection to {conn.server.url} lost before PONG")
                w.event.set()
        conn.pongs.clear()
        conn.close()
        if self._closing:
            log.info("nats_disconnected", url=conn.server.url, reason="client closing")
        else:
            # Leaving a lame-duck server is a NATS node's normal drain, not a fault.
            say = log.info if conn.lame_duck else log.warning
            say(
                "nats_disconnected",
                url=conn.server.url,
                reason=repr(conn.failure),
                lame_duck=conn.lame_duck,
            )
        _call_all(self._on_disconnected, "on_disconnected")

    # ---- connecting --------------------------------------------------------------------

    async def _connect_first(self) -> _Conn:
        errors = []
        for server in self._pool.servers:
            try:
                return await self._open_conn(server)
            except _CONNECT_ERRORS as exc:
                errors.append(f"{server.url} ({_describe(exc)})")
        raise NoServersAvailable("no NATS server answered: " + ", ".join(errors))

    async def _reconnect(self, failed: _Server) -> _Conn:
        """Round robin from the server after `failed`, a pause between rounds, forever."""
        while True:
            for server in self._pool.after(failed):
                try:
                    return await self._open_conn(server)
                except _CONNECT_ERRORS as exc:
                    log.debug("nats_connect_failed", url=server.url, error=_describe(exc))
            await trio.sleep(self._reconnect_wait)

    async def _open_conn(self, server: _Server) -> _Conn:
        """TCP connect, INFO, CONNECT + PING, PONG; all within connect_timeout."""
        with trio.fail_after(self._connect_timeout):
            addrs = await trio.socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)
            family, type_, proto, _, addr = addrs[0]
            sock = socket.socket(family, type_, proto)
            conn = _Conn(sock, server)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = sock.connect_ex(addr)
                if err not in (0, errno.EINPROGRESS):
                    raise OSError(err, os.strerror(err))
                await trio.lowlevel.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                await self._handshake(conn)
                return conn
            except BaseException:
                conn.close()
                raise

    async def _handshake(self, conn: _Conn) -> None:
        """INFO first; then CONNECT and PING: a PONG means accepted, an -ERR refused."""
        events = conn.backlog
        await _read_until_event(conn)
        first = events.popleft()
        if type(first) is not Info:
            raise ProtocolError(f"expected INFO from the server, got {first!r}")
        if first.info.get("tls_required") or conn.server.tls or self._security.tls:
            if not (first.info.get("tls_required") or first.info.get("tls_available")):
                raise ConnectRefused(
                    f"{conn.server.url} does not offer TLS, which this client requires "
                    "(COBROWSE_NATS_TLS_CA or a tls:// URL): no credentials are sent in the clear"
                )
            await self._start_tls(conn)
        self._on_info(conn, first.info)
        conn.outbox.write(connect(self._connect_options(conn.server)) + PING)
        while True:
            if not events:
                await _read_until_event(conn)
            ev = events.popleft()
            if type(ev) is Pong:
                return  # anything read after the PONG stays in the backlog for the reader
            if type(ev) is Err:
                raise ConnectRefused(f"{conn.server.url} refused the connection: {ev.text}")
            if type(ev) is not Msg:
                self._control(conn, ev)

    async def _start_tls(self, conn: _Conn) -> None:
        """Upgrade the socket in place; the server's certificate must name the URL's host."""
        if self._ssl is None:
            if self._security.tls:
                self._ssl = self._security.ssl_context()
            else:  # the server requires TLS, no CA given: the system's trusted CAs
                self._ssl = ssl.create_default_context()
        tls = self._ssl.wrap_socket(
            conn.sock, server_hostname=conn.server.host, do_handshake_on_connect=False
        )
        conn.sock = conn.outbox.sock = tls
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(tls)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(tls)
            except ssl.SSLError as exc:  # a bad certificate: say which server, and why
                raise ConnectRefused(f"TLS with {conn.server.url} failed: {exc}") from None

    def _connect_options(self, server: _Server) -> dict:
        opts = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "name": self._name,
            "lang": "python-trio",
            "version": VERSION,
            "protocol": 1,
        }
        if server.user is not None:  # in the URL: wins over the configured credentials
            opts["user"], opts["pass"] = server.user, server.password or ""
        elif server.token is not None:
            opts["auth_token"] = server.token
        else:
            opts.update(self._security.connect_fields())
        return opts

    def _ready(self, conn: _Conn) -> None:
        """After the handshake: re-send every SUB, then what was queued while disconnected."""
        box = conn.outbox
        if self._subs:
            box.write(b"".join(sub(s.subject, s.sid, s.queue) for s in self._subs.values()))
        if self._pending:
            box.write(bytes(self._pending))
            self._pending = bytearray()
        self._conn = conn
        self._up.set()

    def _on_info(self, conn: _Conn, info: dict) -> None:
        if isinstance(info.get("max_payload"), int):
            conn.parser.max_payload = self._max_payload = info["max_payload"]
        urls = info.get("connect_urls")
        if isinstance(urls, list):
            self._pool.add([u for u in urls if isinstance(u, str)], like=conn.server)
        if info.get("ldm") and not conn.lame_duck:
            conn.lame_duck = True
            log.info("nats_lame_duck", url=conn.server.url)
            if conn.nursery is not None:
                conn.nursery.start_soon(self._leave_lame_duck, conn)

    async def _leave_lame_duck(self, conn: _Conn) -> None:
        """The server is draining: move soon, at a random moment, as its other clients do."""
        await trio.sleep(random.uniform(0, LAME_DUCK_JITTER))
        conn.fail(ConnectionLost(f"{conn.server.url} entered lame-duck mode"))

    # ---- connection tasks --------------------------------------------------------------

    async def _read_loop(self, conn: _Conn) -> None:
        if conn.backlog:
            self._dispatch(conn, list(conn.backlog))
            conn.backlog.clear()
        sock, feed, stats = conn.sock, conn.parser.feed, self.stats
        interval = self._read_interval
        while True:
            if not _tls_pending(sock):  # TLS may hold decrypted bytes the kernel no longer has
                await trio.lowlevel.wait_readable(sock)
            while True:
                got = 0
                for _ in range(_READS_PER_WAKE):
                    try:
                        data = sock.recv(_READ_SIZE)
                    except _WOULD_BLOCK:
                        break
                    if not data:
                        raise ConnectionLost(f"{conn.server.url} closed the connection")
                    got += len(data)
                    self._dispatch(conn, feed(data))
                    if len(data) < _READ_SIZE:
                        break  # drained just now: wait_readable is cheaper than an EAGAIN
                stats.bytes_in += got
                if not (interval and got):
                    break
                if not self._hurry.is_set():  # let more come, unless someone is waiting
                    with trio.move_on_after(interval):
                        await self._hurry.wait()
                self._hurry = trio.Event()

    def _dispatch(self, conn: _Conn, events: list[Event]) -> None:
        subs = self._subs
        n = 0
        for ev in events:
            if type(ev) is Msg:
                n += 1
                s = subs.get(ev.sid)
                if s is not None:
                    try:
                        s.handler(ev)
                    except Exception:
                        log.exception("nats_handler_failed", subject=ev.subject, sid=ev.sid)
            else:
                self._control(conn, ev)
        self.stats.msgs_in += n

    def _control(self, conn: _Conn, ev: Event) -> None:
        kind = type(ev)
        if kind is Ping:
            conn.outbox.write(PONG)
        elif kind is Pong:
            conn.pings_out = 0
            w = conn.pongs.popleft() if conn.pongs else None
            if w is not None:
                w.event.set()
        elif kind is Info:
            self._on_info(conn, ev.info)
        elif kind is Err:
            log.warning("nats_error", url=conn.server.url, error=ev.text)
        elif kind is not Ok:
            log.warning("nats_error", url=conn.server.url, error=f"unexpected {ev!r}")

    async def _write_loop(self, conn: _Conn) -> None:
        """Runs only when the outbox says blocked (kernel buffer full) or closed."""
        while True:
            await conn.wake.wait()
            conn.wake = trio.Event()
            if not conn.outbox.closed:
                await conn.outbox.wait_flushed()
            if conn.outbox.closed:
                raise ConnectionLost(f"sending to {conn.server.url} failed")

    async def _ping_loop(self, conn: _Conn) -> None:
        """Our own PING every ping_interval: a dead peer that sends no FIN is found too."""
        while True:
            await trio.sleep(self._ping_interval)
            if conn.pings_out >= self._max_pings_out:
                raise ConnectionLost(f"{conn.server.url}: {conn.pings_out} PINGs unanswered")
            conn.pings_out += 1
            conn.pongs.append(None)
            conn.outbox.write(PING)


async def _read_until_event(conn: _Conn) -> None:
    """Handshake reads: into conn.backlog until at least one event is there."""
    while not conn.backlog:
        if not _tls_pending(conn.sock):
            await trio.lowlevel.wait_readable(conn.sock)
        try:
            data = conn.sock.recv(_READ_SIZE)
        except _WOULD_BLOCK:
            continue
        if not data:
            raise ConnectionLost(f"{conn.server.url} closed the connection")
        conn.backlog.extend(conn.parser.feed(data))


def _tls_pending(sock: socket.socket) -> int:
    """Decrypted bytes an SSLSocket holds (a plain socket holds none)."""
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


def _call_all(callbacks: list[Callable[[], None]], what: str) -> None:
    for cb in callbacks:
        try:
            cb()
        except Exception:
            log.exception("nats_callback_failed", callback=what)


def _raise_single(group: BaseExceptionGroup) -> None:
    """Re-raise a group of one as that exception, its own cause and context kept, so that
    `except ValueError` around the block works as it reads."""
    if len(group.exceptions) != 1:
        raise group
    exc = group.exceptions[0]
    cause, context, suppress = exc.__cause__, exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__cause__, exc.__context__, exc.__suppress_context__ = cause, context, suppress


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    return str(exc) or type(exc).__name__
