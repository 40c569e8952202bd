"""One client connection, visitor or agent: the thin trio shell around the session core.

One task per connection does everything that waits: the upgrade and admission, the hello,
the join (the session metadata's compare-and-set, the stream's tail, the first stream
reads), then a loop that reads frames, publishes the sender's events, retries a publish
whose acknowledgement is late, reads the stream for its receivers, and waits for a slow
client. What needs no waiting happens where it arrives, on the NATS reader task: a
JetStream acknowledgement becomes the client's `ack` and the next publish, a live event
becomes a frame to the client. Frames go out through the socket's outbox at the end of the
run-loop turn. The decisions are made by session.py (who joins how; joining.py does the
join's I/O), sender.py (the sender's events into JetStream) and delivery.py (the
receivers'); here is only the order of the I/O.

The task sleeps in one place, on its socket (or, while the sender may not send more, on
nothing), inside a cancel scope whose deadline is its next timer; sync code wakes it with
`_poke` (an earlier deadline) or `wake` (now).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from . import agent_roster, joining, metrics, remote_control, session, session_store, streams
from .admission_gate import (
    AdmissionGate,
    check_handshake_sid,
    client_address,
    handshake_params,
    refusal_reason,
    rejection,
    wants_close_refusal,
)
from .budget import CLOSE, SAVE_EVERY, Budget, CarriedBudget
from .codec import (
    ALL_KINDS,
    MAX_FRAME_BYTES,
    VISITOR_KINDS,
    Bye,
    Close,
    Control,
    Events,
    Hello,
    ProtocolError,
    close_name,
    decode_frame,
    encode_frame,
    error_frame,
)
from .config import GatewayConfig
from .delivery import Delivery, Fanout, Receiver
from .jetstream import Publisher
from .nats_bridge import NatsBridge
from .nats_client import Msg, NatsClient
from .presence import PresenceView, VisitorState, after_close
from .publish_chain import unavailable
from .read_hub import ReadHub
from .reorder import ReorderOverflow
from .sender import Sender
from .session import Role
from .session_store import SessionMeta
from .tokens import mint
from .websocket import Message, WebSocket

log = structlog.get_logger("gateway")

SEND_TIMEOUT = 30.0  # a client that takes nothing from its socket for this long is dropped
IDLE_CHECK = 30.0  # an idle receiver looks at the stream's tail this often (lost live events)
KV_TIMEOUT = 5.0
LEAVE_TIMEOUT = 5.0  # a drained connection waits this long for its last publish to settle
OVER_BUDGET = ProtocolError(
    "over_budget", "over the event or byte budget for too long", Close.OVER_BUDGET
)
SESSION_FULL = ProtocolError(
    "session_full", "the session's visitor sent its lifetime byte cap", Close.SESSION_FULL
)


@dataclass
class ConnContext:
    """What a connection needs from its gateway, and nothing more."""

    cfg: GatewayConfig
    nc: NatsClient  # the data path: publishes, subscriptions, stream reads
    bridge: NatsBridge  # management: making the ended bucket at the first hello (nats-py)
    sessions: session_store.SessionBucket  # the session and ended buckets, on `nc`
    fanout: Fanout
    publisher: Publisher
    gate: AdmissionGate
    draining: Callable[[], bool]
    visitors: dict[str, Connection]  # this gateway's visitor connection of each session
    acks_due: set[Sender]  # acks to send at the ticker's next turn
    read_hub: ReadHub | None = None  # reads the client sockets (None: each task reads its own)
    instance: str = ""  # this process's registry instance (gateway/membership.py)
    kv_ended: Any = None  # the ended-session bucket, opened at the first hello

    async def load(self, sid: str) -> SessionMeta | None:
        return await self.sessions.load(sid)

    async def load_for_hello(
        self, sid: str
    ) -> tuple[session_store.StoredMeta, session_store.EndedRecord | None]:
        """The entry and the ended record (session.refuse_ended); the ended bucket is
        opened, or made with a TTL outliving this gateway's resume tokens, at the first
        hello."""
        if self.kv_ended is None:
            self.kv_ended = await self.bridge.call(
                session_store.ensure_ended_bucket,
                self.bridge.js,
                session_store.ended_ttl(self.cfg.resume_ttl),
                self.cfg.stream.storage,
                self.cfg.stream.replicas,
                timeout=KV_TIMEOUT,
            )
        return await self.sessions.load_with_ended(sid)

    async def update(
        self,
        sid: str,
        change: Callable[[SessionMeta], None],
        start: session_store.StoredMeta | None = None,
    ) -> SessionMeta:
        """Compare-and-set `change`; from `start`'s revision when the caller just read it."""
        with trio.fail_after(KV_TIMEOUT * 2):  # a read and a write at most per attempt
            return await self.sessions.update(sid, change, start)


@dataclass(frozen=True, slots=True)
class Admitted:
    """A handshake that passed admission; `url_sid` is the session its URL named (None:
    none), which the hello must match (`check_handshake_sid`)."""

    url_sid: str | None


class _End(Exception):
    """Internal: leave the connection's loop (its error and close code are already set)."""


class Connection:
    """One WebSocket client of this gateway."""

    # Slots: thousands of these live at once, and each attribute dict cost about 1 KB.
    __slots__ = (
        "ctx", "cfg", "sock", "peer", "ws", "id", "accepted_at", "role", "sid", "aid", "agent",
        "epoch", "vgen", "joined", "sender", "delivery", "error", "close_code",
        "close_reason", "said_bye", "stopping", "_jobs", "_early", "_scope", "paused",
        "leaving", "_notice", "_leave_by", "allowed", "_role_metric", "budget", "_held",
        "_resume_at", "presence", "_budget_saved", "control", "_control_news", "_snap_look",
        "snapshot_looks",
        "_events_in", "_failure", "__weakref__",
    )  # fmt: skip

    def __init__(self, ctx: ConnContext, sock, peer: str) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.sock = sock
        self.peer = peer
        self.ws = WebSocket(sock, 2 * MAX_FRAME_BYTES, self.wake)
        self.id = secrets.token_hex(4)
        self.accepted_at = trio.current_time()
        self.role: Role | None = None
        self.sid: str | None = None
        self.aid: str | None = None
        self.agent: agent_roster.AgentConnection | None = None  # an agent's join, once written
        self.epoch = 0
        self.vgen = 0
        self.joined = False
        self.sender: Sender | None = None
        self.delivery: Delivery | None = None
        self.error: ProtocolError | None = None
        self.close_code = Close.NORMAL
        self.close_reason = "bye"
        self.said_bye = False
        self.stopping = False
        self._jobs: list[Callable[[], Awaitable[None]]] = []  # few, rare: a list is smaller
        self._snap_look = False  # an agent's look for a snapshot it may have missed is queued
        self.snapshot_looks = 0  # such looks left (joining.request_snapshot sets them)
        self._early: list[Message] = []  # frames that came with the hello
        self.budget: Budget | None = None  # the sender's event and byte buckets
        self._held: list[Message] = []  # frames read but over budget: taken at _resume_at
        self._resume_at = 0.0
        self.presence = PresenceView()  # an agent's: what it was told about the visitor
        self._budget_saved = 0.0  # when a visitor last wrote its budget to the session
        self.control: str | None = None  # the agent holding remote control, as last heard
        self._control_news = 0  # CONTROL messages heard: a read older than one is stale
        self._scope: trio.CancelScope | None = None
        self._events_in = None  # the role's events-in tally, for `_readable`
        self._failure: Exception | None = None  # raised in `_readable`, for the task
        self.paused = False  # waiting for acks before reading more of the sender's events
        self.leaving = False  # asked to leave: store what was taken, then close with 1001
        self._notice: Control | None = None  # what to tell the client just before
        self._leave_by = 0.0
        self.allowed = VISITOR_KINDS
        self._role_metric = "pending"

    # ---- called from elsewhere (sync) --------------------------------------------------------

    def stop(self, err: ProtocolError | None = None) -> None:
        """End the connection soon: with `err` (error frame, its close code) or as set."""
        if err is not None and self.error is None:
            self.error = err
        self.stopping = True
        self.wake()

    def reconnect(self, delay_ms: int, hint: list[str] | None) -> None:
        """Lame duck: ask the client to come back elsewhere after `delay_ms`, then close.

        The sender's events already taken are stored and acked first (bounded by
        LEAVE_TIMEOUT), so the client resends nothing and the next gateway's join finds the
        stream settled: a publish still landing after it read the tail would break the chain
        and cost the client one more reconnect."""
        self._leave(Control(op="reconnect", delay_ms=delay_ms, hint=hint), "gateway draining")

    def going_away(self) -> None:
        """End of a drain window: close with 1001 (the client resumes elsewhere)."""
        self._leave(None, "gateway drained")

    def _leave(self, notice: Control | None, reason: str) -> None:
        if self.leaving or self.stopping:
            return
        self.leaving, self._notice = True, notice
        self._leave_by = trio.current_time() + LEAVE_TIMEOUT
        self.close_code, self.close_reason = Close.GOING_AWAY, reason
        if not self.joined:
            self.stop()
        self.wake()

    def wake(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def send(self, frame) -> None:
        self.ws.send(encode_frame(frame))

    def is_open(self) -> bool:
        return self.ws.open

    def tick(self, now: float, sweep: bool) -> None:
        """The gateway's ticker (every TICK s; `sweep` about once a second): wake this task
        when a publish is due a retry or a receiver's tail is due a look. One task for
        every connection's slow timers keeps each connection's wait free of deadlines."""
        sender = self.sender
        if sender is not None and sender.retry_due(now):
            self.wake()
        elif sweep and self.delivery is not None and self.delivery.sweep(now):
            self.wake()
        if sweep and self.snapshot_looks > 0 and self.joined and not self._snap_look:
            rcv = self.delivery.receivers.get("v") if self.delivery is not None else None
            if rcv is not None and rcv.buf is None:
                self.snapshot_looks -= 1
                self._snap_look = True
                self.later(self._look_for_snapshot)
            else:
                self.snapshot_looks = 0
        budget = self.budget
        if (
            sweep
            and self.role is Role.VISITOR
            and budget is not None
            and now - self._budget_saved >= SAVE_EVERY
            and budget.spending()
        ):
            self._budget_saved = now
            self.later(self._save_budget)

    async def _look_for_snapshot(self) -> None:
        """An agent still waiting for a snapshot looks again, about once a second for the
        first `joining.SNAPSHOT_LOOKS` seconds. The join looked once after listening, but a
        snapshot whose live copy reached NATS before this gateway's subscription, and whose
        pointer was recorded after that look, is seen by neither: without this the agent
        would wait for the visitor's next snapshot."""
        try:
            rcv = self.delivery.receivers.get("v")
            if rcv is not None:
                found = await joining.late_snapshot(self, rcv)
                metrics.SNAPSHOT_LOOKS.labels(result="found" if found else "none").inc()
        except (ProtocolError, ReorderOverflow):
            raise  # as in the join: the connection ends
        except Exception as exc:  # the KV or the stream did not answer: look again later
            metrics.SNAPSHOT_LOOKS.labels(result="failed").inc()
            log.warning("snapshot_look_failed", sid=self.sid, error=repr(exc))
        finally:
            self._snap_look = False

    async def _save_budget(self) -> None:
        """The visitor's buckets, for the session's next connection (gateway/budget.py)."""
        carried = self.budget.carry(trio.current_time(), time.time())
        with trio.move_on_after(3):
            try:
                await self.ctx.update(self.sid, lambda m: setattr(m, "budget", carried))
                metrics.BUDGET_SAVES.inc()
            except Exception as exc:
                log.warning("budget_not_saved", sid=self.sid, error=repr(exc))

    def _poke(self, when: float) -> None:
        """Run the loop's timers by `when` (a hole in a receiver that lasts)."""
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    def later(self, job: Callable[[], Awaitable[None]]) -> None:
        """Have the connection's task run `job` (for sync code that needs to wait)."""
        self._jobs.append(job)
        self.wake()

    # ---- the lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        metrics.CONNECTIONS.labels(role="pending").inc()
        self._role_metric = "pending"
        try:
            try:
                await self._run()
            except trio.TooSlowError:
                self.error = self.error or ProtocolError(
                    "hello_timeout", "no hello in time", Close.HELLO_TIMEOUT
                )
            except ProtocolError as err:
                self.error = self.error or err
            except ReorderOverflow:
                self.error = self.error or ProtocolError(
                    "overloaded", "receiver too far behind", Close.INTERNAL
                )
            except _End:
                pass
            except Exception as exc:
                log.exception("connection_failed", conn=self.id, sid=self.sid, error=repr(exc))
                self.error = self.error or unavailable("gateway error, retry")
            with trio.CancelScope(shield=True):
                await self._close()
        finally:
            metrics.CONNECTIONS.labels(role=self._role_metric).dec()

    async def _run(self) -> None:
        admitted = await self._upgrade()
        if admitted is None:
            return
        with trio.fail_after(self.cfg.hello_timeout):
            hello = await self._hello()
        if hello is None:
            return
        check_handshake_sid(admitted.url_sid, hello.sid)
        join = session.check_hello(hello, self.cfg.keyring, time.time())
        self.role, self.sid = join.role, join.sid
        metrics.CONNECTIONS.labels(role="pending").dec()
        self._role_metric = join.role.value
        metrics.CONNECTIONS.labels(role=self._role_metric).inc()
        stored, ended = await self.ctx.load_for_hello(join.sid)
        session.refuse_ended(stored.meta(), ended)
        if join.role is Role.VISITOR:
            await joining.join_visitor(self, join, stored)
        else:
            await joining.join_agent(self, join, stored)
        self.joined = True
        del hello, join, stored, ended  # this frame lives as long as the connection: keep it light
        await self._serve()

    async def _upgrade(self) -> Admitted | None:
        """The WebSocket upgrade and admission (G3), decided before any frame is read; None
        when the connection was not admitted."""
        ws = self.ws
        request = None
        with trio.move_on_after(self.cfg.hello_timeout):
            request = await ws.read_request()
        if request is None:
            return None
        forwarded = request.headers.get_all("X-Forwarded-For")
        path = request.path
        address = client_address(forwarded, self.peer, self.cfg.admission.forwarded_hops)
        decision = await self.ctx.gate.check(path, address, self.ctx.draining())
        if not decision.admit:
            if wants_close_refusal(path):
                # A browser cannot read a refused handshake's status or Retry-After, so it
                # asked to be told through a close code instead (protocol.md, 4009).
                if ws.accept(request):
                    ws.close(Close.REFUSED, refusal_reason(decision))
            else:
                ws.reject(*rejection(decision))
            return None
        return Admitted(handshake_params(path)[0]) if ws.accept(request) else None

    async def _hello(self) -> Hello | None:
        while True:
            messages = await self._read()
            if messages:
                self._early = messages[1:]
                frame = self._decode(messages[0], ALL_KINDS)
                if not isinstance(frame, Hello):
                    raise ProtocolError(
                        "expected_hello", "the first frame must be hello", Close.PROTOCOL
                    )
                return frame
            if self.ws.closed is not None:
                return None

    async def _read(self) -> list[Message]:
        """Wait for the socket and take what came (an empty list: nothing, or closed)."""
        await trio.lowlevel.wait_readable(self.sock)
        return self.ws.receive() or []

    async def recover(self, rcv: Receiver) -> None:
        """A receiver's resume point is gone from the stream (gateway/joining.py)."""
        await joining.recover(self, rcv)

    # ---- shared by both joins -------------------------------------------------------------------

    def new_delivery(self, role: str) -> Delivery:
        cfg = self.cfg
        self.delivery = Delivery(
            nc=self.ctx.nc,
            stream=cfg.stream.stream,
            send=self.ws.send,
            backlog=lambda: self.ws.out.pending,
            clock=trio.current_time,
            poke=self._poke,
            gap_timeout=cfg.gap_timeout,
            tail_check=cfg.tail_check,
            idle_check=IDLE_CHECK,
            role=role,
        )
        return self.delivery

    def start_sender(
        self,
        subject: str,
        *,
        epoch: int,
        src: str | None,
        tail,
        durable: int,
        carried: CarriedBudget | None = None,
    ):
        self.budget = Budget(self.cfg.budget, trio.current_time(), carried, time.time())
        if carried is not None and self.budget.session_full():
            raise SESSION_FULL
        self._budget_saved = trio.current_time()
        self.sender = Sender(
            self,
            self.ctx,
            sid=self.sid,
            subject=subject,
            epoch=epoch,
            src=src,
            tail=tail,
            durable=durable,
        )

    def resume_token(self, **claims: Any) -> str:
        return mint(
            self.cfg.keyring,
            sid=self.sid,
            role="resume",
            now=time.time(),
            ttl=self.cfg.resume_ttl,
            **claims,
        )

    def accepted(self, resumed: bool, **fields: Any) -> None:
        role = self.role.value
        metrics.CONNECTS.labels(role=role, resumed=str(resumed).lower()).inc()
        log.info(
            "connection_accepted",
            conn=self.id,
            gateway=self.cfg.gateway_id,
            role=role,
            sid=self.sid,
            resumed=resumed,
            setup_ms=round((trio.current_time() - self.accepted_at) * 1000, 1),
            **fields,
        )

    def on_ctl(self, msg: Msg) -> None:
        ctl = session.SessionControl.decode(msg.data)
        if ctl is None:
            return
        action = session.on_control(self.role, self.vgen, ctl)
        if isinstance(action, session.EndConnection):
            self.stop(action.error)
        elif isinstance(action, session.TellVisitor):
            self.send(Control(op=action.op, msg=action.aid))
            if action.announce and not self.stopping:
                self.announce(VisitorState.LIVE)
        elif isinstance(action, session.TellAgent):
            news = self.presence.on_news(action.state, action.vgen)
            if news is not None:
                self.send(Control(op="visitor", msg=news.value))
        elif isinstance(action, session.ControlHolder):
            self.control = action.aid
            self._control_news += 1

    # ---- remote control (gateway/remote_control.py) ---------------------------------------------

    def _control_changed(self, change: remote_control.GrantChange) -> None:
        """The visitor granted or ended control. Every gateway of the session is told at
        once, on the NATS connection that stores the visitor's event next, so an agent's
        gateway knows before its agent can see the grant; then the metadata is written."""
        self.control = change.holder
        self._publish_control(change.holder, self.ctx.publisher.nc)
        metrics.CONTROL_CHANGES.labels(to="none" if change.holder is None else "agent").inc()
        log.info("control_changed", sid=self.sid, holder=change.holder)
        self.later(lambda: self._tell_control(lambda m: remote_control.write(m, change)))

    def _publish_control(self, holder: str | None, nc: NatsClient | None = None) -> None:
        news = session.SessionControl(session.CtlOp.CONTROL, aid=holder)
        (nc or self.ctx.nc).publish(streams.subject_ctl(self.sid), news.encode())

    async def _tell_control(self, change: Callable[[SessionMeta], None]) -> None:
        """Write the holder, then tell it again as written: an agent that read the metadata
        while joining, before this write, hears the news after it (`read_control`)."""
        meta = None
        with trio.move_on_after(KV_TIMEOUT):
            try:
                meta = await self.ctx.update(self.sid, change)
            except Exception as exc:
                log.warning("control_not_recorded", sid=self.sid, error=repr(exc))
        self._publish_control(meta.control if meta is not None else None)  # unwritten: nobody

    async def read_control(self) -> None:
        """An agent's join, once it listens on ctl: the holder from the metadata, unless
        news came while reading (it is as new or newer)."""
        heard = self._control_news
        meta = await self.ctx.load(self.sid)
        if heard == self._control_news:
            self.control = meta.control if meta is not None else None

    def _refuse_inputs(self, refused: int) -> None:
        """An agent's inputs without a grant: counted, logged and told."""
        metrics.CONTROL_REFUSED.inc(refused)
        log.info("control_refused", sid=self.sid, aid=self.aid, refused=refused)
        self.send(
            Control(
                op="refused",
                code=remote_control.NOT_GRANTED,
                msg=remote_control.refusal_note(refused),
            )
        )

    def announce(self, state: VisitorState) -> None:
        """The visitor connection's presence, for every agent of the session."""
        news = session.SessionControl(session.PRESENCE_OPS[state], vgen=self.vgen)
        self.ctx.nc.publish(streams.subject_ctl(self.sid), news.encode())

    # ---- the loop --------------------------------------------------------------------------------

    async def _serve(self) -> None:
        ws, sender, delivery = self.ws, self.sender, self.delivery
        events_in = metrics.TALLY.events_in  # by role
        self._take(self._early, events_in, trio.current_time())
        self._early = []
        while not self.stopping:
            if ws.out.closed:
                return
            if self.leaving:
                sender.publish_next()
                if sender.idle or trio.current_time() >= self._leave_by:
                    sender.send_ack()
                    if self._notice is not None:
                        self.send(self._notice)
                    return
            if ws.out.blocked:
                await self._drain_outbox()
                continue
            if self._jobs:
                await self._jobs.pop(0)()
                continue
            now = trio.current_time()
            if self._held and now >= self._resume_at:
                self._take(self._held, events_in, now)
                continue
            sender.retry(now)  # raises once a publish has failed for publish_timeout
            due = delivery.deadline()  # usually None: the gateway's ticker pokes for the rest
            if due is not None and due <= now:
                if delivery.behind:
                    await self._drain_outbox()
                await delivery.catch_up(self.recover)
                await trio.lowlevel.checkpoint()
                continue
            deadline = due if due is not None else math.inf
            if self.leaving:
                deadline = min(deadline, self._leave_by)
            if self._held:
                deadline = min(deadline, self._resume_at)
            paused = self.leaving or sender.full
            self.paused = paused
            with trio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                if paused or self._held:  # back-pressure: wait for acks, or for the budget
                    await trio.sleep_forever()
                else:
                    await self._read_frames(events_in)
            self._scope = None
            if self._failure is not None:  # raised while the hub read for us
                failure, self._failure = self._failure, None
                raise failure
            if ws.closed is not None:
                self.close_code, self.close_reason = ws.closed.code, ws.closed.reason
                return

    async def _read_frames(self, events_in) -> None:
        """The hot loop: frames in, publishes out, under the one cancel scope the outer loop
        opened (a scope per frame cost 5-8 % of a visitor gateway's CPU). It returns when the
        outer loop has work (`_stop_reading`); sync code that needs it sooner cancels the
        scope (`wake`) or moves its deadline (`_poke`)."""
        hub = self.ctx.read_hub
        if hub is None:  # no epoll here: this task reads its own socket
            ws = self.ws
            while True:
                await trio.lowlevel.wait_readable(self.sock)
                messages = ws.receive()
                if messages:
                    self._take(messages, events_in, trio.current_time())
                if self._stop_reading():
                    return
        self._events_in = events_in
        fd = self.sock.fileno()
        hub.add(fd, self._readable)
        try:
            await trio.sleep_forever()  # the hub reads (`_readable`) until we are woken
        finally:
            hub.remove(fd)

    def _stop_reading(self) -> bool:
        """The outer loop has work: the connection ended, the client stopped reading, the
        sender must wait for room or for its budget, or a job came."""
        ws = self.ws
        return bool(
            ws.closed is not None or ws.out.blocked or self._jobs or self.sender.full or self._held
        )

    def _readable(self) -> None:
        """`_read_frames`' loop body, run by the gateway's read hub: what it raises, and
        every reason to stop reading, go to this connection's task, which is woken; nothing
        is read once the task has been asked to leave `_read_frames`."""
        ws = self.ws
        scope = self._scope
        if scope is not None and not scope.cancel_called:
            try:
                messages = ws.receive()
                if messages:
                    self._take(messages, self._events_in, trio.current_time())
            except Exception as exc:
                self._failure = exc
            if self._failure is None and not self._stop_reading():
                return
        self.ctx.read_hub.remove(self.sock.fileno())
        self.wake()

    def _take(self, messages: list[Message], events_in, now: float) -> None:
        """Frames read from the socket, in order, until one is over the budget: it and the
        rest are held (`_held`), and the loop reads nothing more until `_resume_at`."""
        self._held = []
        for i, m in enumerate(messages):
            wait = self._on_message(m, events_in, now)
            if wait:
                self._held = messages[i:]
                self._resume_at = now + wait
                metrics.BUDGET_WAITS.inc()
                metrics.BUDGET_WAIT_SECONDS.inc(wait)
                break
        self.sender.publish_next(now)

    async def _drain_outbox(self) -> None:
        with trio.move_on_after(SEND_TIMEOUT) as scope:
            await self.ws.out.wait_flushed()
        if scope.cancelled_caught:
            log.info("client_too_slow", conn=self.id, sid=self.sid, queued=self.ws.out.pending)
            self.ws.out.close()
            raise _End

    def _decode(self, m: Message, allowed: frozenset[str]):
        if isinstance(m.data, str):
            raise ProtocolError(
                "text_frame", "text frames are not part of the protocol", Close.UNSUPPORTED_DATA
            )
        return decode_frame(m.data, allowed_kinds=allowed)

    def _on_message(self, m: Message, events_in, now: float) -> float:
        """Take one frame; a wait in seconds (0: taken) when it is over the budget."""
        frame = self._decode(m, self.allowed)
        if type(frame) is Events:
            if frame.epoch != self.epoch:
                raise ProtocolError(
                    "wrong_epoch", f"events must carry epoch {self.epoch}", Close.PROTOCOL
                )
            if frame.src is not None:
                raise ProtocolError("bad_shape", "senders do not set 'src'", Close.BAD_FRAME)
            n = len(frame.events)
            if self.role is Role.VISITOR and self.budget.session_full(len(m.data)):
                self.budget.exhaust_session()
                raise SESSION_FULL
            wait = self.budget.take(n, len(m.data), now)
            if wait:
                if wait == CLOSE:
                    raise OVER_BUDGET
                return wait
            change = None
            if self.role is Role.AGENT:
                screened = remote_control.screen(frame.events, self.aid, self.control)
                if screened.refused:
                    frame.events = screened.events
                    self._refuse_inputs(screened.refused)
            else:
                change = remote_control.visitor_change(frame.events, self.control)
            self.sender.take(frame)
            if change is not None:
                self._control_changed(change)
            events_in[self.role.value] += n
        elif type(frame) is Bye:
            self.close_code, self.close_reason = Close.NORMAL, "bye"
            self.said_bye = True
            log.info("bye", conn=self.id, sid=self.sid, reason=frame.reason)
            raise _End
        else:
            raise ProtocolError(
                "unexpected_frame",
                f"{type(frame).__name__.lower()} is not sent by clients here",
                Close.PROTOCOL,
            )
        return 0.0

    # ---- the close -------------------------------------------------------------------------------

    async def _close(self) -> None:
        ctx, ws, err, sender = self.ctx, self.ws, self.error, self.sender
        if sender is not None:
            sender.settle()
            ctx.acks_due.discard(sender)
        if self.sid is not None:
            ctx.fanout.remove(streams.subject_ctl(self.sid), self.on_ctl)
            if self.delivery is not None:
                listen = streams.subject_v(self.sid)
                if self.role is Role.VISITOR:
                    listen = streams.subject_a_all(self.sid)
                ctx.fanout.remove(listen, self.delivery.on_live)
            if ctx.visitors.get(self.sid) is self:
                del ctx.visitors[self.sid]
        if err is not None:
            metrics.PROTOCOL_ERRORS.labels(code=err.code).inc()
            code, reason = err.close_code, f"{err.code}: {err.message}"[:120]
        else:
            code, reason = self.close_code, self.close_reason
        by_peer = ws.closed is not None and ws.closed.by_peer
        if ws.open and sender is not None:
            sender.send_ack()  # what is stored, so a client that ends or resumes resends less
        if ws.open:
            if err is not None:
                ws.send(error_frame(err))
            ws.close(code, reason)
        elif ws.closed is not None:
            code = ws.closed.code
        if self.role is not None:
            log.info(
                "connection_closed",
                conn=self.id,
                sid=self.sid,
                role=self.role.value,
                code=int(code),
                reason_name=close_name(code),
                error=err.code if err else None,
                by="peer" if by_peer else "gateway",
            )
        metrics.CLOSES.labels(code=str(int(code))).inc()
        await ws.finish()
        if self.joined or self.agent is not None:  # an agent in the metadata: its bookkeeping
            await self._after_close()

    async def _end_control(self, change: Callable[[SessionMeta], None]) -> None:
        """A grant ends with its holder's or the visitor's bye."""
        metrics.CONTROL_CHANGES.labels(to="none").inc()
        await self._tell_control(change)

    async def _after_close(self) -> None:
        """Bounded bookkeeping in the session metadata once the socket is gone."""
        if self.role is Role.VISITOR:
            state = after_close(session.visitor_close(self.error, self.said_bye))
            if state is not None:
                self.announce(state)
        clean_bye = self.said_bye and self.error is None
        # An agent that dropped may resume until its token expires (agent_roster.py).
        away = self.agent.dropped(time.time()) if self.agent and not clean_bye else None
        with trio.move_on_after(3):
            try:
                if clean_bye and self.role is Role.AGENT:
                    # A clean goodbye: this agent id will not resume; the visitor is told.
                    aid = self.aid
                    await self.ctx.update(self.sid, lambda m: agent_roster.left(m, aid))
                    left = session.SessionControl(session.CtlOp.LEFT, aid=aid)
                    self.ctx.nc.publish(streams.subject_ctl(self.sid), left.encode())
                    log.info("agent_left", sid=self.sid, aid=aid)
                    if remote_control.released(self.control, aid) is not None:
                        await self._end_control(lambda m: remote_control.release(m, aid))
                elif clean_bye and self.control is not None:
                    # The visitor said bye (it left the session, or ended it): no grant.
                    await self._end_control(lambda m: setattr(m, "control", None))
                if self.sender is not None:
                    key = "v" if self.role is Role.VISITOR else self.aid
                    carried = None
                    budget = self.budget
                    if self.role is Role.VISITOR and (budget.spent() or budget.sent > 0):
                        carried = budget.carry(trio.current_time(), time.time())
                    await self.sender.record_durable(key, self.epoch, carried, also=away)
                    if carried is not None:
                        metrics.BUDGET_SAVES.inc()
                elif away is not None:
                    await self.ctx.update(self.sid, away)
            except Exception as exc:
                log.warning("durable_not_recorded", sid=self.sid, error=repr(exc))
