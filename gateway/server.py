"""The gateway: a trio-websocket server in front of JetStream.

A gateway holds only per-connection state; everything a restart would lose lives in
JetStream (events) and the session KV bucket (epoch, agents, snapshot pointer), so any
gateway can serve any session and may die at any instant. Each connection is one nursery:
a reader that publishes the sender's events, an acker that returns JetStream's acks
cumulatively, and a delivery loop that sends the other direction's events in order.
"""

from __future__ import annotations

import json
import math
import random
import secrets
import time
from functools import partial
from typing import Any

import structlog
import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from gateway import membership, tokens
from gateway.drain_plan import DrainPlanner, reconnect_delay

from . import metrics, session_store, streams
from .admission_gate import (
    AdmissionGate,
    client_address,
    refusal_reason,
    rejection,
    wants_close_refusal,
)
from .codec import (
    AGENT_KINDS,
    MAX_FRAME_BYTES,
    VISITOR_KINDS,
    Ack,
    Bye,
    Close,
    Control,
    Event,
    Events,
    Hello,
    ProtocolError,
    Welcome,
    decode_frame,
    encode_frame,
    encode_stored,
    error_frame,
)
from .config import GatewayConfig
from .delivery import Fanout, HistoryLost, Source, batches, decode_live
from .nats_bridge import NatsBridge
from .reorder import ReorderBuffer, ReorderOverflow
from .sequencer import PublishWindow, SequenceCheck

log = structlog.get_logger("gateway")

AGENT_EPOCH = 0  # an agent's events are numbered 1.. for as long as its agent id lives


class _Stop(Exception):
    """Internal: end the connection with this error (or normally when None)."""

    def __init__(self, err: ProtocolError | None = None):
        self.err = err


class Gateway:
    def __init__(
        self, cfg: GatewayConfig, bridge: NatsBridge, kv: Any, members_kv: Any = None
    ) -> None:
        self.cfg = cfg
        self.bridge = bridge
        self.kv = kv
        self.members_kv = members_kv
        self.gate = AdmissionGate(cfg.admission, cfg.keyring, bridge, kv)
        self.rng = random.Random()
        self.drain_started: trio.Event = trio.Event()
        self.drain_done: trio.Event = trio.Event()
        self.fanout = Fanout(bridge)
        self.visitors: dict[str, Conn] = {}
        self.conns: set[Conn] = set()
        self.draining = False
        self.listen_port: int | None = None
        self._empty = trio.Event()
        self._empty.set()  # no connections yet

    async def serve(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        # Twice the protocol limit, so an oversized frame still gets an error frame.
        max_size = 2 * MAX_FRAME_BYTES
        async with trio.open_nursery() as nursery:
            if self.cfg.reuse_port:
                # Worker processes share one port: the kernel spreads connections.
                listener = await reuse_port_listener(self.cfg.host, self.cfg.port)
                ws_server = WebSocketServer(
                    self.handle, [listener], handler_nursery=nursery, max_message_size=max_size
                )
                server = await nursery.start(ws_server.run)
            else:
                server = await nursery.start(
                    partial(
                        serve_websocket,
                        self.handle,
                        self.cfg.host,
                        self.cfg.port,
                        None,
                        handler_nursery=nursery,
                        max_message_size=max_size,
                    )
                )
            self.listen_port = server.port
            log.info("gateway_listening", gateway=self.cfg.gateway_id, port=server.port)
            task_status.started(server.port)

    async def handle(self, request: WebSocketRequest) -> None:
        remote = request.remote
        address = client_address(
            request.headers,
            str(getattr(remote, "address", remote)),
            self.cfg.admission.forwarded_hops,
        )
        decision = await self.gate.check(request.path, address, self.draining)
        if not decision.admit:
            if wants_close_refusal(request.path):
                # A browser cannot read a refused handshake's status or Retry-After, so it
                # asked to be told through a close code instead (protocol.md, 4009).
                ws = await request.accept()
                await ws.aclose(code=Close.REFUSED, reason=refusal_reason(decision))
                return
            status, headers, body = rejection(decision)
            await request.reject(status, extra_headers=headers, body=body)
            return
        ws = await request.accept()
        conn = Conn(self, ws)
        self.conns.add(conn)
        if self._empty.is_set():
            self._empty = trio.Event()
        try:
            await conn.run()
        finally:
            self.conns.discard(conn)
            if not self.conns:
                self._empty.set()

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
        stragglers are closed (1001), everything in flight is flushed to JetStream."""
        self.start_drain()
        start = trio.current_time()
        gateways = []
        if self.members_kv is not None:
            try:
                gateways = await self.bridge.call(membership.list_gateways, self.members_kv)
            except Exception as exc:
                log.warning("drain_membership_unavailable", error=repr(exc))
        conns = [c for c in self.conns if c.sid != "?"]
        plan = DrainPlanner(window, self.rng).plan(conns, start)
        log.info("gateway_draining", connections=len(conns), window=window)
        for at, conn in plan:
            await trio.sleep_until(at)
            if conn not in self.conns:
                continue
            # Not this gateway, nor a sibling worker behind the same URL.
            hint = [u for u in membership.urls_for(conn.sid, gateways) if u != self.cfg.url][:1]
            conn.reconnect(delay_ms=int(reconnect_delay(self.rng) * 1000), hint=hint or None)
            metrics.DRAIN_NOTICES.inc()
        with trio.move_on_at(start + window):
            await self._empty.wait()
        stragglers = list(self.conns)
        for conn in stragglers:
            conn.going_away()
        with trio.move_on_after(5):
            await self._empty.wait()
        flushed = await self.bridge.flush(self.cfg.publish_timeout)
        log.info(
            "gateway_drained",
            stragglers=len(stragglers),
            flushed=flushed,
            seconds=round(trio.current_time() - start, 3),
        )
        self.drain_done.set()


async def reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
    await sock.bind((host, port))
    sock.listen(4096)
    return trio.SocketListener(sock)


def _now() -> float:
    return time.time()


class Conn:
    """One WebSocket connection, visitor or agent."""

    def __init__(self, gw: Gateway, ws: WebSocketConnection) -> None:
        self.gw = gw
        self.cfg = gw.cfg
        self.bridge = gw.bridge
        self.ws = ws
        self.id = secrets.token_hex(6)
        self.accepted_at = trio.current_time()
        self.role = "?"
        self.sid = "?"
        self.error: ProtocolError | None = None
        self.nursery: trio.Nursery | None = None
        self.ack_wanted = trio.Event()
        self.room = trio.Event()
        self.window: PublishWindow | None = None
        self.vgen = 0
        self.log = log.bind(conn=self.id, gateway=gw.cfg.gateway_id)
        self._close_code = Close.NORMAL
        self._close_reason = "bye"
        self.said_bye = False
        self.aid: str | None = None
        self.epoch = 0

    # ---- lifecycle ---------------------------------------------------------------

    def _setup_ms(self) -> float:
        """From the accepted handshake to the welcome: what a resume costs the client."""
        return round((trio.current_time() - self.accepted_at) * 1000, 1)

    def stop(self, err: ProtocolError | None) -> None:
        if err is not None and self.error is None:
            self.error = err
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def reconnect(self, delay_ms: int, hint: list[str] | None = None) -> None:
        """Lame duck: ask the client to come back elsewhere after `delay_ms`."""
        if self.nursery is None:
            return
        self._close_code, self._close_reason = Close.GOING_AWAY, "gateway draining"
        self.nursery.start_soon(self._send_reconnect, delay_ms, hint)

    def going_away(self) -> None:
        """End of a drain window: close with 1001 (the client resumes elsewhere)."""
        self._close_code, self._close_reason = Close.GOING_AWAY, "gateway drained"
        self.stop(None)

    async def _send_reconnect(self, delay_ms: int, hint: list[str] | None) -> None:
        await self._send(Control(op="reconnect", delay_ms=delay_ms, hint=hint))
        self.stop(None)

    async def _send(self, frame: Any) -> None:
        try:
            await self.ws.send_message(encode_frame(frame))
        except ConnectionClosed:
            self.stop(None)

    async def _guard(self, fn, *args) -> None:
        """Run one of the connection's tasks; any way it ends, the connection ends."""
        try:
            await fn(*args)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except ProtocolError as err:
            self.error = self.error or err
        except _Stop as s:
            self.error = self.error or s.err
        except ReorderOverflow:
            self.error = self.error or ProtocolError(
                "overloaded", "receiver too far behind", Close.INTERNAL
            )
        except Exception as exc:
            self.log.exception("connection_task_failed", error=repr(exc))
            self.error = self.error or ProtocolError(
                "unavailable", "gateway error, retry", Close.INTERNAL
            )
        finally:
            self.stop(None)

    async def run(self) -> None:
        metrics.CONNECTIONS.labels(role="pending").inc()
        role_metric = "pending"
        try:
            try:
                with trio.fail_after(self.cfg.hello_timeout):
                    raw = await self.ws.get_message()
                hello = decode_frame(raw)
                if not isinstance(hello, Hello):
                    raise ProtocolError(
                        "expected_hello", "the first frame must be hello", Close.PROTOCOL
                    )
                self.role, self.sid = hello.role, hello.sid
                self.log = self.log.bind(role=self.role, sid=self.sid)
                metrics.CONNECTIONS.labels(role="pending").dec()
                role_metric = self.role
                metrics.CONNECTIONS.labels(role=role_metric).inc()
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    nursery.start_soon(self._guard, self._start, hello)
            except trio.TooSlowError:
                self.error = ProtocolError("hello_timeout", "no hello in time", Close.HELLO_TIMEOUT)
            except ProtocolError as err:
                self.error = err
            except ConnectionClosed:
                pass
            await self._close()
            await self._record_durable()
        finally:
            metrics.CONNECTIONS.labels(role=role_metric).dec()
            if self.gw.visitors.get(self.sid) is self:
                del self.gw.visitors[self.sid]

    async def _record_durable(self) -> None:
        window, key = self.window, ("v" if self.role == "visitor" else self.aid)
        if window is None or key is None or window.acked == 0:
            return
        epoch = self.epoch

        def change(m: session_store.SessionMeta) -> None:
            if key != "v":
                m.durable[key] = max(m.durable.get(key, 0), window.acked)
            elif m.epoch == epoch:
                m.durable["v"] = max(m.durable.get("v", 0), window.acked)

        with trio.CancelScope(shield=True), trio.move_on_after(3):
            try:
                await self.bridge.call(session_store.update, self.gw.kv, self.sid, change)
            except Exception as exc:
                self.log.warning("durable_not_recorded", error=repr(exc))

    async def _close(self) -> None:
        err = self.error
        if err is not None:
            metrics.PROTOCOL_ERRORS.labels(code=err.code).inc()
            code, reason = err.close_code, f"{err.code}: {err.message}"[:120]
        else:
            code, reason = self._close_code, self._close_reason
        closed = self.ws.closed
        self.log.info(
            "connection_closed",
            code=closed.code if closed else code,
            error=err.code if err else None,
            by="peer" if closed else "gateway",
        )
        metrics.CLOSES.labels(code=str(closed.code if closed else code)).inc()
        if closed is None:
            with trio.move_on_after(2) as cs:
                cs.shield = True
                try:
                    if err is not None:
                        await self.ws.send_message(error_frame(err))
                    await self.ws.aclose(code, reason)
                except ConnectionClosed:
                    pass

    async def _start(self, hello: Hello) -> None:
        try:
            tokens.verify(self.cfg.keyring, hello.token, sid=hello.sid, role=hello.role, now=_now())
        except tokens.TokenError as e:
            # A session under way resumes on its resume token after its join token expired.
            if e.code != "token_expired" or self._verify_resume(hello, hello.role) is None:
                raise ProtocolError(e.code, e.message, Close.UNAUTHORIZED) from None
            tokens.verify(
                self.cfg.keyring,
                hello.token,
                sid=hello.sid,
                role=hello.role,
                now=_now(),
                allow_expired=True,
            )
        meta = await self.bridge.call(session_store.load, self.gw.kv, hello.sid)
        if meta is not None and meta.ended:
            raise ProtocolError("session_ended", "this session has ended", Close.SESSION_ENDED)
        if hello.role == "visitor":
            await self._run_visitor(hello, meta)
        else:
            await self._run_agent(hello)

    def _verify_resume(self, hello: Hello, role: str) -> dict | None:
        """Claims of a valid resume token; None when stale; raises when forged."""
        if hello.resume is None:
            return None
        try:
            claims = tokens.verify(
                self.cfg.keyring, hello.resume.rt, sid=hello.sid, role="resume", now=_now()
            )
        except tokens.TokenError as e:
            if e.code == "token_expired":
                return None
            raise ProtocolError(
                "bad_resume", f"resume token refused: {e.message}", Close.UNAUTHORIZED
            ) from None
        if claims.get("r") != role:
            raise ProtocolError(
                "bad_resume", "resume token is for another role", Close.UNAUTHORIZED
            )
        return claims

    def _mint_resume(self, **extra: Any) -> str:
        return tokens.mint(
            self.cfg.keyring,
            sid=self.sid,
            role="resume",
            now=_now(),
            ttl=self.cfg.resume_ttl,
            **extra,
        )

    # ---- the sender side ---------------------------------------------------------------

    async def _durable(self, subject: str, epoch: int) -> int:
        """Highest seq of `epoch` such that it and everything before it is stored.

        The newest stored event is not enough: a publish retried through a leader election
        can land after a later one, and acking past a hole would lose the hole."""
        nc, stream = self.bridge.nc, self.cfg.stream.stream
        last = await self.bridge.call(streams.last_of, nc, stream, subject)
        if last is None or last.epoch != epoch:
            return 0
        margin = self.cfg.max_in_flight
        pos = await self.bridge.call(
            streams.locate, nc, stream, subject, (epoch, last.event.seq), margin
        )
        seen: set[int] = set()
        while pos is not None:
            got, pos = await self.bridge.call(streams.read_from, nc, stream, subject, pos, 5000)
            seen.update(s.event.seq for s in got if s.epoch == epoch)
        # A sender never has more than `margin` seqs beyond its cumulative ack outstanding
        # (see _reader), so everything up to last - margin was stored before `last` was sent.
        s = max(0, last.event.seq - margin)
        while s + 1 in seen:
            s += 1
        return s

    async def _reader(self, subject: str, epoch: int, check: SequenceCheck, msgid_key: Any) -> None:
        allowed = VISITOR_KINDS if self.role == "visitor" else AGENT_KINDS
        events_in = metrics.EVENTS_IN.labels(role=self.role)  # looked up once, not per frame
        window = self.window
        assert window is not None
        while True:
            raw = await self.ws.get_message()
            frame = decode_frame(raw, allowed_kinds=allowed)
            if isinstance(frame, Events):
                if frame.epoch != epoch:
                    raise ProtocolError(
                        "wrong_epoch", f"events must carry epoch {epoch}", Close.PROTOCOL
                    )
                if frame.src is not None:
                    raise ProtocolError("bad_shape", "senders do not set 'src'", Close.BAD_FRAME)
                for ev in frame.events:
                    if ev.kind == "snapshot":
                        p = ev.payload
                        if not (
                            isinstance(p, dict)
                            and type(p.get("i")) is int
                            and type(p.get("n")) is int
                            and 0 <= p["i"] < p["n"]
                        ):
                            raise ProtocolError(
                                "bad_shape", "snapshot payload must be {i, n, d}", Close.BAD_FRAME
                            )
                check.check(frame.events)
                events_in.inc(len(frame.events))
                for ev in frame.events:
                    # Bound the distance from the cumulative ack, not just the count in
                    # flight: _durable relies on it.
                    while ev.seq - window.acked > self.cfg.max_in_flight:
                        self.room = trio.Event()
                        await self.room.wait()
                    window.sent(ev.seq)
                    self.bridge.publish(
                        subject,
                        encode_stored(epoch, ev),
                        streams.msg_id(self.sid, msgid_key, ev.seq),
                        partial(self._published, epoch, ev),
                    )
            elif isinstance(frame, Bye):
                self._close_code, self._close_reason = Close.NORMAL, "bye"
                self.said_bye = True
                self.log.info("bye", reason=frame.reason)
                raise _Stop(None)
            else:
                raise ProtocolError(
                    "unexpected_frame",
                    f"{type(frame).__name__.lower()} is not sent by clients here",
                    Close.PROTOCOL,
                )

    def _published(
        self, epoch: int, ev: Event, sseq: int | None, dup: bool, err: Exception | None
    ) -> None:
        window = self.window
        if err is not None:
            self.log.warning("publish_failed", seq=ev.seq, error=str(err))
            self.stop(
                ProtocolError(
                    "unavailable", "JetStream did not acknowledge; resume", Close.INTERNAL
                )
            )
            return
        if (
            self.role == "visitor"
            and ev.kind == "snapshot"
            and ev.payload.get("i") == 0
            and self.nursery
        ):
            window.done(ev.seq, hold=True)
            try:
                self.nursery.start_soon(self._guard_bg, self._record_snapshot, epoch, ev.seq, sseq)
            except RuntimeError:  # the connection already ended; the resume redoes this
                pass
        elif window.done(ev.seq) is not None:
            self.ack_wanted.set()
        self.room.set()

    async def _guard_bg(self, fn, *args) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            self.log.warning("background_failed", error=repr(exc))
            self.stop(ProtocolError("unavailable", "gateway error, resume", Close.INTERNAL))

    async def _record_snapshot(self, epoch: int, seq: int, sseq: int) -> None:
        def change(m: session_store.SessionMeta) -> None:
            if m.snap is None or (m.snap[0], m.snap[1]) <= (epoch, seq):
                m.snap = [epoch, seq, sseq]
            m.snap_wanted = False

        # The ack waits for the pointer so an acknowledged snapshot is always findable, but
        # never for long: through a KV leader election it retries, then gives up (late
        # joiners then ask the visitor for a snapshot) rather than stall the visitor.
        try:
            with trio.move_on_after(20):
                while True:
                    try:
                        await self.bridge.call(
                            session_store.update, self.gw.kv, self.sid, change, timeout=3
                        )
                        break
                    except Exception as exc:
                        self.log.warning("snapshot_pointer_retry", error=repr(exc))
                        await trio.sleep(0.5)
        finally:
            if self.window.release(seq) is not None:
                self.ack_wanted.set()
                self.room.set()  # the reader may be waiting on this very ack

    async def _acker(self) -> None:
        """Cumulative acks, batched over ack_interval: never per event."""
        last = -1
        while True:
            await self.ack_wanted.wait()
            self.ack_wanted = trio.Event()
            await trio.sleep(self.cfg.ack_interval)
            acked = self.window.acked
            if acked != last:
                last = acked
                await self.ws.send_message(encode_frame(Ack(acked)))

    # ---- the receiver side --------------------------------------------------------------

    async def _deliver(
        self,
        listen: str,
        sources: dict[str, Source],
        route,
        on_lost,
        initial: list[tuple[Source, int | None]],
        after_subscribe=None,
    ) -> None:
        """Merge live messages and stream reads for this receiver; send frames in order."""
        send, recv = trio.open_memory_channel[tuple[str, bytes]](math.inf)
        backlog_limit = 50_000
        overflow = False

        def listener(subject: str, data: bytes) -> None:
            nonlocal overflow
            if recv.statistics().current_buffer_used >= backlog_limit:
                overflow = True  # dropped here, read back from the stream below
                return
            send.send_nowait((subject, data))

        clock = trio.current_time
        await self.gw.fanout.add(listen, listener)
        try:
            for src, pos in initial:
                await self._fill(src, on_lost, pos)
            if after_subscribe is not None:
                await after_subscribe()
            await self._flush(sources)
            last_activity = clock()
            while True:
                deadlines = [s.buf.deadline() for s in sources.values() if s.buf is not None]
                due = min(
                    [d for d in deadlines if d is not None] + [last_activity + self.cfg.tail_check]
                )
                got = False
                with trio.move_on_at(due):
                    item = await recv.receive()
                    got = True
                now = clock()
                if got:
                    last_activity = now
                    items = [item]
                    while len(items) < 4096:
                        try:
                            items.append(recv.receive_nowait())
                        except trio.WouldBlock:
                            break
                    for subject, data in items:
                        src = route(subject)
                        dec = decode_live(data)
                        if src is None or dec is None:
                            continue
                        src.push(dec[0], dec[1], now)
                for src in list(sources.values()):
                    if src.buf is not None and src.buf.gap_due(now) is not None:
                        metrics.REORDER_WAITS.inc()
                        await self._fill(src, on_lost)
                if overflow or (not got and now >= last_activity + self.cfg.tail_check):
                    overflow = False
                    last_activity = now
                    for src in list(sources.values()):
                        if src.buf is None and after_subscribe is not None:
                            await after_subscribe()  # still waiting for a snapshot: look again
                        if await self._behind(src):
                            await self._fill(src, on_lost)
                await self._flush(sources)
        finally:
            with trio.CancelScope(shield=True):
                await self.gw.fanout.remove(listen, listener)

    async def _behind(self, src: Source) -> bool:
        if src.buf is None:
            return False
        last = await self.bridge.call(streams.last_of, self.bridge.nc, src.stream, src.subject)
        return last is not None and last.key >= src.buf.expected

    async def _fill(self, src: Source, on_lost, pos: int | None = None) -> None:
        try:
            await src.fill(trio.current_time, pos)
        except HistoryLost as exc:
            self.log.info("history_lost", subject=src.subject, detail=str(exc))
            await on_lost(src)

    async def _flush(self, sources: dict[str, Source]) -> None:
        role = "agent" if self.role == "agent" else "visitor"
        frames_out = metrics.FRAMES_OUT.labels(role=role)
        events_out = metrics.EVENTS_OUT.labels(role=role)
        for src in sources.values():
            ready = src.take_ready()
            if not ready:
                continue
            for epoch, evs in batches(ready):
                await self.ws.send_message(
                    encode_frame(Events(epoch=epoch, events=evs, src=src.src))
                )
                frames_out.inc()
                events_out.inc(len(evs))

    # ---- visitor ------------------------------------------------------------------------

    async def _run_visitor(self, hello: Hello, before: session_store.SessionMeta | None) -> None:
        claims = self._verify_resume(hello, "visitor")
        resumed = (
            claims is not None
            and before is not None
            and claims.get("epoch") == hello.resume.epoch == before.epoch
        )

        floor = 0
        if before is None:
            # No metadata (new session, or its KV entry expired): a new epoch must still be
            # above every epoch in the stream, or message ids and receivers' keys collide.
            last = await self.bridge.call(
                streams.last_of, self.bridge.nc, self.cfg.stream.stream, streams.subject_v(self.sid)
            )
            floor = last.epoch if last is not None else 0

        def change(m: session_store.SessionMeta) -> None:
            if not resumed or m.epoch != hello.resume.epoch:
                m.epoch = max(m.epoch, floor) + 1
                m.durable.pop("v", None)
            m.vgen += 1

        meta = await self.bridge.call(session_store.update, self.gw.kv, self.sid, change)
        resumed = resumed and meta.epoch == hello.resume.epoch
        epoch, self.vgen = meta.epoch, meta.vgen
        self.epoch = epoch
        subject = streams.subject_v(self.sid)
        durable = await self._durable(subject, epoch) if resumed else 0

        # Take over: one visitor per session, the newest wins.
        old = self.gw.visitors.get(self.sid)
        if old is not None and old.vgen < self.vgen:
            old.stop(
                ProtocolError("replaced", "a newer visitor connection took over", Close.REPLACED)
            )
        self.gw.visitors[self.sid] = self
        ctl = streams.subject_ctl(self.sid)
        await self.gw.fanout.add(ctl, self._on_ctl)
        try:
            await self.bridge.publish_core(
                ctl, json.dumps({"op": "takeover", "vgen": self.vgen}).encode()
            )
            # A newer visitor that published its takeover before we subscribed is in the KV.
            now_meta = await self.bridge.call(session_store.load, self.gw.kv, self.sid)
            if now_meta is not None and now_meta.vgen > self.vgen:
                raise ProtocolError(
                    "replaced", "a newer visitor connection took over", Close.REPLACED
                )

            # Where agent -> visitor delivery starts, per agent.
            nc, stream = self.bridge.nc, self.cfg.stream.stream
            recv = (hello.resume.recv or {}) if resumed else {}
            sources: dict[str, Source] = {}
            initial: list[tuple[Source, int | None]] = []
            delivered: dict[str, int] = {}
            for aid in meta.agents:
                if aid in recv:
                    start = recv[aid]
                elif resumed:
                    start = 0
                else:  # a new page: pointer moves meant for the old one are not replayed
                    last = await self.bridge.call(
                        streams.last_of, nc, stream, streams.subject_a(self.sid, aid)
                    )
                    start = last.event.seq if last else 0
                src = Source(
                    self.bridge,
                    stream,
                    streams.subject_a(self.sid, aid),
                    ReorderBuffer(AGENT_EPOCH, start + 1, gap_timeout=self.cfg.gap_timeout),
                    src=aid,
                    gap_timeout=self.cfg.gap_timeout,
                )
                sources[aid] = src
                delivered[aid] = start
                if resumed:
                    initial.append((src, None))

            self.window = PublishWindow(durable)
            check = SequenceCheck(durable + 1)
            rt = self._mint_resume(r="visitor", epoch=epoch)
            await self._send(
                Welcome(
                    gw=self.cfg.gateway_id, epoch=epoch, rt=rt, durable=durable, delivered=delivered
                )
            )
            metrics.CONNECTS.labels(role="visitor", resumed=str(resumed).lower()).inc()
            self.log.info(
                "connection_accepted",
                epoch=epoch,
                resumed=resumed,
                durable=durable,
                setup_ms=self._setup_ms(),
            )
            if meta.snap_wanted:
                await self._send(Control(op="snapshot"))

            def route(subject: str) -> Source | None:
                aid = subject.rsplit(".", 1)[1]
                src = sources.get(aid)
                if src is None:
                    src = sources[aid] = Source(
                        self.bridge,
                        stream,
                        subject,
                        ReorderBuffer(AGENT_EPOCH, 1, gap_timeout=self.cfg.gap_timeout),
                        src=aid,
                        gap_timeout=self.cfg.gap_timeout,
                    )
                return src

            async def on_lost(src: Source) -> None:
                first = await self.bridge.call(streams.first_of, nc, stream, src.subject)
                src.buf.reset(AGENT_EPOCH, first.event.seq if first else 1)
                await src.fill(trio.current_time)

            async with trio.open_nursery() as n:
                n.start_soon(self._guard, self._reader, subject, epoch, check, epoch)
                n.start_soon(self._guard, self._acker)
                n.start_soon(
                    self._guard,
                    self._deliver,
                    streams.subject_a_all(self.sid),
                    sources,
                    route,
                    on_lost,
                    initial,
                )
        finally:
            with trio.CancelScope(shield=True):
                await self.gw.fanout.remove(ctl, self._on_ctl)

    def _on_ctl(self, subject: str, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return
        op = msg.get("op")
        if op == "end":
            self.stop(ProtocolError("session_ended", "the session was ended", Close.SESSION_ENDED))
        elif self.role != "visitor":
            return
        elif op == "takeover" and isinstance(msg.get("vgen"), int) and msg["vgen"] > self.vgen:
            self.stop(
                ProtocolError("replaced", "a newer visitor connection took over", Close.REPLACED)
            )
        elif op in ("snapshot", "joined", "left") and self.nursery is not None:
            self.nursery.start_soon(self._send, Control(op=op, msg=msg.get("aid")))

    # ---- agent --------------------------------------------------------------------------

    async def _request_snapshot(self) -> None:
        def change(m: session_store.SessionMeta) -> None:
            m.snap_wanted = True

        await self.bridge.call(session_store.update, self.gw.kv, self.sid, change)
        await self.bridge.publish_core(streams.subject_ctl(self.sid), b'{"op":"snapshot"}')
        metrics.SNAPSHOT_REQUESTS.inc()

    async def _run_agent(self, hello: Hello) -> None:
        claims = self._verify_resume(hello, "agent")
        resumed = claims is not None and isinstance(claims.get("aid"), str)
        aid = claims["aid"] if resumed else "a" + secrets.token_hex(6)
        self.aid = aid

        def change(m: session_store.SessionMeta) -> None:
            m.agents[aid] = _now()

        meta = await self.bridge.call(session_store.update, self.gw.kv, self.sid, change)
        subject = streams.subject_a(self.sid, aid)
        durable = await self._durable(subject, AGENT_EPOCH) if resumed else 0
        nc, stream = self.bridge.nc, self.cfg.stream.stream
        vsubject = streams.subject_v(self.sid)

        recv = hello.resume.recv if resumed else None
        start_pos: int | None = None
        need_snapshot = False
        if recv is not None:
            e, s = recv
            src = Source(
                self.bridge,
                stream,
                vsubject,
                ReorderBuffer(e, s + 1, gap_timeout=self.cfg.gap_timeout),
                src=None,
                gap_timeout=self.cfg.gap_timeout,
            )
            delivered: list[int] | None = [e, s]
        elif meta.snap is not None:
            e, s, start_pos = meta.snap
            src = Source(
                self.bridge,
                stream,
                vsubject,
                ReorderBuffer(e, s, gap_timeout=self.cfg.gap_timeout),
                src=None,
                gap_timeout=self.cfg.gap_timeout,
            )
            delivered = [e, s - 1]
        else:
            src = Source(
                self.bridge, stream, vsubject, None, src=None, gap_timeout=self.cfg.gap_timeout
            )
            delivered = None
            need_snapshot = True

        self.window = PublishWindow(durable)
        check = SequenceCheck(durable + 1)
        rt = self._mint_resume(r="agent", aid=aid)
        await self._send(
            Welcome(
                gw=self.cfg.gateway_id,
                epoch=meta.epoch,
                rt=rt,
                durable=durable,
                aid=aid,
                delivered=delivered,
            )
        )
        metrics.CONNECTS.labels(role="agent", resumed=str(resumed).lower()).inc()
        self.log.info(
            "connection_accepted",
            aid=aid,
            resumed=resumed,
            durable=durable,
            delivered=delivered,
            setup_ms=self._setup_ms(),
        )
        await self.bridge.publish_core(
            streams.subject_ctl(self.sid), json.dumps({"op": "joined", "aid": aid}).encode()
        )

        async def on_lost(source: Source) -> None:
            await self._send(
                Control(op="reset", msg="resume point no longer retained; a snapshot follows")
            )
            m = await self.bridge.call(session_store.load, self.gw.kv, self.sid)
            first = await self.bridge.call(streams.first_of, nc, stream, vsubject)
            if (
                m is not None
                and m.snap is not None
                and first is not None
                and first.sseq <= m.snap[2]
            ):
                source.buf = ReorderBuffer(m.snap[0], m.snap[1], gap_timeout=self.cfg.gap_timeout)
                await source.fill(trio.current_time, m.snap[2])
            else:
                source.buf = None
                await self._request_snapshot()

        async def late_snapshot() -> None:
            # A snapshot recorded between reading the metadata and subscribing was missed
            # by the live path: start from it instead of waiting for the next one.
            m = await self.bridge.call(session_store.load, self.gw.kv, self.sid)
            if src.buf is None and m is not None and m.snap is not None:
                src.buf = ReorderBuffer(m.snap[0], m.snap[1], gap_timeout=self.cfg.gap_timeout)
                await self._fill(src, on_lost, m.snap[2])

        sources = {"v": src}
        initial = [] if need_snapshot else [(src, start_pos)]
        ctl = streams.subject_ctl(self.sid)
        await self.gw.fanout.add(ctl, self._on_ctl)
        try:
            await self._agent_tasks(
                subject,
                check,
                aid,
                vsubject,
                sources,
                src,
                on_lost,
                initial,
                late_snapshot if need_snapshot else None,
                need_snapshot,
            )
        finally:
            with trio.CancelScope(shield=True):
                await self.gw.fanout.remove(ctl, self._on_ctl)
                # In `finally`: a bye stops the connection by cancelling its tasks, so code
                # after this block never ran and the visitor was never told.
                if self.said_bye and self.error is None:
                    await self._agent_left(aid)

    async def _agent_left(self, aid: str) -> None:
        """A clean goodbye: this agent id will not resume, so forget it and tell the visitor."""
        with trio.move_on_after(5):

            def forget(m: session_store.SessionMeta) -> None:
                m.agents.pop(aid, None)

            await self.bridge.call(session_store.update, self.gw.kv, self.sid, forget)
            await self.bridge.publish_core(
                streams.subject_ctl(self.sid), json.dumps({"op": "left", "aid": aid}).encode()
            )
            self.log.info("agent_left", aid=aid)

    async def _agent_tasks(
        self, subject, check, aid, vsubject, sources, src, on_lost, initial, late, need_snapshot
    ) -> None:
        async with trio.open_nursery() as n:
            if need_snapshot:
                n.start_soon(self._guard_bg, self._request_snapshot)
            n.start_soon(self._guard, self._reader, subject, AGENT_EPOCH, check, aid)
            n.start_soon(self._guard, self._acker)
            n.start_soon(
                self._guard,
                self._deliver,
                vsubject,
                sources,
                lambda _s: src,
                on_lost,
                initial,
                late,
            )
