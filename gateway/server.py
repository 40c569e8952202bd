"""The gateway: a listener in front of JetStream, and its drain.

A gateway holds only per-connection state; everything a restart would lose lives in
JetStream (events) and the session KV bucket (epoch, agents, snapshot pointer), so any
gateway can serve any session and may die at any instant. Each accepted socket gets one task
(connection.py). Admission happens at the upgrade, before any frame is read (G3); a drain
fails readiness at once and then tells clients to leave one by one, NATS lame-duck style
(G2).
"""

from __future__ import annotations

import random
import secrets
import select
import socket
from functools import partial
from typing import Any

import structlog
import trio

from . import address_limit, membership, metrics, streams
from .admission_gate import AdmissionGate
from .config import GatewayConfig
from .connection import KV_TIMEOUT, ConnContext, Connection
from .delivery import Fanout
from .drain_plan import DrainPlanner, reconnect_delay
from .jetstream import Publisher
from .nats_bridge import NatsBridge
from .nats_client import Msg, NatsClient
from .read_hub import ReadHub
from .session_store import SessionBucket

log = structlog.get_logger("gateway")

LISTEN_BACKLOG = 4096  # a drain's reconnect wave arrives at once
TICK = 0.1  # the ticker's period: how late an ack may be; publish retries are due 2 s after
# a publish (0.25 s after a 503)
SWEEP_EVERY = 10  # ticks between sweeps of every connection's receivers (tail checks)


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """Worker processes share one port (SO_REUSEPORT): the kernel spreads connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class Gateway:
    def __init__(
        self,
        cfg: GatewayConfig,
        nc: NatsClient,
        bridge: NatsBridge,
        members_kv: Any = None,
        *,
        publish_nc: NatsClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.nc = nc
        self.publish_nc = publish_nc or nc
        self.bridge = bridge
        self.members_kv = members_kv
        self.rng = random.Random()
        self.drain_started = trio.Event()
        self._accepting = trio.CancelScope()  # cancelled: stop accepting (stop_accepting)
        self.drain_done = trio.Event()
        self.draining = False
        self.conns: set[Connection] = set()
        self.listen_port: int | None = None
        self._empty = trio.Event()
        self._empty.set()  # no connections yet
        sessions = SessionBucket(nc, cfg.stream.kv_bucket, KV_TIMEOUT)
        self.ctx = ConnContext(
            cfg=cfg,
            nc=nc,
            bridge=bridge,
            sessions=sessions,
            fanout=Fanout(nc),
            publisher=Publisher(self.publish_nc),
            gate=AdmissionGate(
                cfg.admission,
                cfg.keyring,
                sessions.load,
                address_limit.for_process(cfg.admission.new_per_address, cfg.worker_index),
            ),
            draining=lambda: self.draining,
            visitors={},
            acks_due=set(),
            read_hub=ReadHub() if cfg.read_hub and hasattr(select, "epoll") else None,
            instance=secrets.token_hex(8),
        )
        nc.on_reconnected(self._nats_reconnected)
        # Needs the gateway's NATS user to subscribe to $JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>;
        # without it the server refuses the subscription (a logged -ERR) and publishes in
        # flight are retried on their 2 s timer only.
        nc.subscribe(streams.leader_elected_subject(cfg.stream.stream), self._leader_elected)
        if self.publish_nc is not nc:  # a publish written before a reconnect got no answer
            self.publish_nc.on_reconnected(partial(self._retry_in_flight, "reconnected"))

    async def serve(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        listener = listen_socket(self.cfg.host, self.cfg.port, self.cfg.reuse_port)
        self.listen_port = listener.getsockname()[1]
        log.info(
            "gateway_listening",
            gateway=self.cfg.gateway_id,
            port=self.listen_port,
            read_hub=self.ctx.read_hub is not None,
        )
        try:
            async with trio.open_nursery() as nursery:
                metrics.NATS_CONNECTED.set(self.nats_connected)  # then each sweep (1 s)
                nursery.start_soon(self._ticker)
                if self.ctx.read_hub is not None:
                    nursery.start_soon(self.ctx.read_hub.run)
                task_status.started(self.listen_port)
                with self._accepting:
                    await self._accept(listener, nursery)
                listener.close()  # stopped accepting; the connections carry on
        finally:
            listener.close()

    async def _accept(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        """Every connection waiting in the backlog is taken per wake."""
        while True:
            await trio.lowlevel.wait_readable(listener)
            while True:
                try:
                    sock, addr = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:  # out of file descriptors: let some close first
                    log.warning("accept_failed", error=repr(exc))
                    await trio.sleep(0.1)
                    break
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nursery.start_soon(self._handle, sock, addr[0], name="connection")

    async def _handle(self, sock: socket.socket, peer: str) -> None:
        conn = Connection(self.ctx, sock, peer)
        self.conns.add(conn)
        if self._empty.is_set():
            self._empty = trio.Event()
        try:
            await conn.run()
        finally:
            self.conns.discard(conn)
            if not self.conns:
                self._empty.set()

    async def _ticker(self) -> None:
        """Slow timers of every connection (acks, publish retries, tail checks) in one task."""
        n = 0
        while True:
            await trio.sleep(TICK)
            n += 1
            due, self.ctx.acks_due = self.ctx.acks_due, set()
            for sender in due:
                sender.send_ack()
            metrics.TALLY.flush()
            now = trio.current_time()
            sweep = n % SWEEP_EVERY == 0
            queued = top = 0
            for conn in list(self.conns):
                conn.tick(now, sweep=sweep)
                if sweep:
                    pending = conn.ws.out.pending
                    queued += pending
                    top = max(top, pending)
            if sweep:
                metrics.SEND_QUEUE_BYTES.set(queued)
                metrics.SEND_QUEUE_MAX_BYTES.set(top)
                metrics.NATS_CONNECTED.set(self.nats_connected)

    @property
    def nats_connected(self) -> bool:
        """Every NATS connection is up: live events, JetStream publishes, KV and requests."""
        return self.nc.connected and self.publish_nc.connected and self.bridge.connected

    def _nats_reconnected(self) -> None:
        for conn in self.conns:
            if conn.delivery is not None:
                conn.delivery.nats_reconnected()

    def _leader_elected(self, msg: Msg) -> None:
        """A new stream leader: retry every publish that is waiting on an answer now. A
        publish sent to the old leader (or while there was none) gets no answer, and its
        next try could come up to 2 s after the election."""
        metrics.JS_LEADER_ELECTIONS.inc()
        retried = self._retry_in_flight("leader_elected")
        log.info("stream_leader_elected", stream=self.cfg.stream.stream, retried=retried)

    def _retry_in_flight(self, cause: str) -> int:
        """Every publish waiting on an answer goes again now; how many."""
        now = trio.current_time()
        retried = 0
        for conn in self.conns:
            sender = conn.sender
            if sender is not None and sender.retry_now(now):
                conn.wake()
                retried += 1
        if retried:
            metrics.JS_PROMPT_RETRIES.labels(cause=cause).inc(retried)
        return retried

    def stop_accepting(self) -> None:
        """Close the listening socket: with SO_REUSEPORT the kernel then sends new connections
        to the sibling workers only (a worker drained alone)."""
        self._accepting.cancel()

    def start_drain(self) -> bool:
        """Fail readiness and refuse handshakes at once; the notices follow in `drain`."""
        if self.draining:
            return False
        self.draining = True
        metrics.DRAINING.set(1)
        self.drain_started.set()
        return True

    async def drain(self, window: float) -> None:
        """NATS lame-duck style: one reconnect notice per client, each carrying the next
        gateway in its session's order, spread evenly with jitter over the window; then
        stragglers are closed (1001) and everything in flight reaches JetStream."""
        self.start_drain()
        start = trio.current_time()
        gateways = []
        if self.members_kv is not None:
            try:
                gateways = await self.bridge.call(membership.list_gateways, self.members_kv)
            except Exception as exc:
                log.warning("drain_membership_unavailable", error=repr(exc))
        conns = [c for c in self.conns if c.sid is not None]
        plan = DrainPlanner(window, self.rng).plan(conns, start)
        log.info("gateway_draining", connections=len(conns), window=window)
        for at, conn in plan:
            await trio.sleep_until(at)
            if conn not in self.conns:
                continue
            hint = membership.drain_hint(conn.sid, gateways, self.cfg.url)
            conn.reconnect(delay_ms=int(reconnect_delay(self.rng) * 1000), hint=hint)
            metrics.DRAIN_NOTICES.inc()
        with trio.move_on_at(start + window):
            await self._empty.wait()
        stragglers = list(self.conns)
        for conn in stragglers:
            conn.going_away()
        with trio.move_on_after(5):
            await self._empty.wait()
        flushed = await self._flush(self.cfg.publish_timeout)
        metrics.TALLY.flush()
        log.info(
            "gateway_drained",
            stragglers=len(stragglers),
            flushed=flushed,
            seconds=round(trio.current_time() - start, 3),
        )
        self.drain_done.set()

    async def _flush(self, timeout: float) -> bool:
        """Wait until every publish in flight has its answer (or its connection gave up)."""
        with trio.move_on_after(timeout):
            while self.ctx.publisher.in_flight:  # noqa: ASYNC110 - answers arrive on the reader
                await trio.sleep(0.02)
            await self.nc.flush()
            await self.publish_nc.flush()
            return True
        return False
