"""The sender side of one connection: its events checked, chained into JetStream, acked.

The rules are sans-I/O (`SequenceCheck`, `PublishChain`); this is their shell on a gateway:
it publishes the chain's next message, takes JetStream's answer on the NATS reader task
(an ack to the client, the next message, a retry, or the end of the connection), and does
what needs waiting (a snapshot pointer in the KV bucket, a look at the subject's tail) as
jobs of the connection's task. It reaches the connection only through `SenderOwner`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import structlog
import trio

from . import metrics, page_info, session, session_store, streams
from .budget import CarriedBudget
from .codec import MAX_FRAME_BYTES, Ack, Events, ProtocolError
from .jetstream import AckReply
from .publish_chain import ChainMessage, PublishChain, Refusal, Stored
from .sequencer import SequenceCheck
from .session_store import SessionMeta

if TYPE_CHECKING:
    from .connection import ConnContext

log = structlog.get_logger("gateway")

MAX_QUEUED_BYTES = 2 * MAX_FRAME_BYTES  # a sender's events waiting for the message in flight
SNAPSHOT_POINTER_WAIT = 20.0  # seconds an acknowledged snapshot may wait for its pointer


class SenderOwner(Protocol):
    """What a sender needs of its connection."""

    id: str
    paused: bool  # the connection's task waits for room (not reading the client)

    def send(self, frame) -> None: ...
    def wake(self) -> None: ...
    def later(self, job: Callable[[], Awaitable[None]]) -> None: ...
    def stop(self, err: ProtocolError | None = None) -> None: ...
    def is_open(self) -> bool: ...


class Sender:
    """One sender (a visitor in one epoch, or one agent id) on one connection."""

    __slots__ = (
        "owner", "ctx", "sid", "subject", "check", "chain", "_token", "_published_at",
        "_ack_sent", "_page", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        owner: SenderOwner,
        ctx: ConnContext,
        *,
        sid: str,
        subject: str,
        epoch: int,
        src: str | None,
        tail: streams.StoredMessage | None,
        durable: int,
    ) -> None:
        self.owner = owner
        self.ctx = ctx
        self.sid = sid
        self.subject = subject
        self.check = SequenceCheck(durable + 1)
        self.chain = PublishChain(
            msg_id_prefix=streams.msg_id_prefix(sid, src if src is not None else epoch),
            epoch=epoch,
            src=src,
            last_sseq=tail.sseq if tail is not None else 0,
            acked=durable,
            is_visitor=src is None,
            publish_timeout=ctx.cfg.publish_timeout,
        )
        self._token: int | None = None  # reply token of the message in flight
        self._published_at = 0.0
        self._ack_sent = durable  # the last ack the client got
        self._page: page_info.PageInfo | None = None  # the visitor's latest `nav`

    # ---- from the client ----------------------------------------------------------------

    def take(self, frame: Events) -> None:
        """A checked frame of the sender's events (raises ProtocolError on a seq error)."""
        self.check.check(frame.events)
        if self.chain.is_visitor:
            self._page = page_info.latest_nav(frame.events) or self._page
        self.chain.add(frame.events, frame.wire, received=time.time())
        if self.chain.in_flight is not None:
            self.ctx.publisher.nc.hurry()  # its answer holds these back: read it at once

    @property
    def full(self) -> bool:
        """Back-pressure: the client must wait for acks before it sends more."""
        chain = self.chain
        return (
            chain.outstanding >= self.ctx.cfg.max_in_flight or chain.queued_bytes > MAX_QUEUED_BYTES
        )

    @property
    def idle(self) -> bool:
        return self.chain.idle

    # ---- to JetStream -------------------------------------------------------------------

    def publish_next(self, now: float | None = None) -> None:
        if now is None:
            now = trio.current_time()
        msg = self.chain.next(now)
        if msg is None:
            return
        self._token = self.ctx.publisher.token(self._on_reply)
        self._published_at = now
        self.ctx.publisher.publish(self.subject, msg, self._token)
        metrics.TALLY.js_messages += 1

    def retry_due(self, now: float) -> bool:
        t = self.chain.next_try
        return t is not None and now >= t

    def retry_now(self, now: float) -> bool:
        """True when the message in flight is due a retry now (the caller wakes the
        connection): a new stream leader, or a reconnected publish connection."""
        return self.chain.retry_now(now)

    def retry(self, now: float) -> None:
        """The message in flight again if its answer is late (raises past publish_timeout)."""
        msg = self.chain.due(now)
        if msg is not None:
            metrics.JS_PUBLISH_RETRIES.inc()
            self.ctx.publisher.publish(self.subject, msg, self._token)

    def _on_reply(self, reply: AckReply) -> None:
        """On the NATS reader task: JetStream answered the message in flight."""
        chain = self.chain
        if chain.in_flight is None:
            return
        if reply.seq is None:
            try:
                refusal = chain.refused(trio.current_time(), reply.code, reply.err_code, reply.text)
            except ProtocolError as err:
                self._failed(err, reply.text)
                return
            if refusal is Refusal.CHECK_TAIL:
                msg = chain.in_flight
                self.owner.later(lambda: self._check_tail(msg))
            return  # the gateway's ticker wakes the connection when it is time to retry
        self._stored(chain.stored(reply.seq))

    def _stored(self, stored: Stored) -> None:
        self.settle()
        if metrics.TALLY.js_messages % metrics.JS_LATENCY_SAMPLE == 0:
            metrics.JS_PUBLISH_LATENCY.observe(trio.current_time() - self._published_at)
        if stored.ack is not None:
            self._ack_soon()
        if stored.record is not None:
            pointer, page = stored.record, self._page
            self.owner.later(lambda: self._record_snapshot(pointer, page))
        self.publish_next()

    def settle(self) -> None:
        """Forget the message in flight's token (stored, or the connection is ending)."""
        if self._token is not None:
            self.ctx.publisher.settle(self._token)
            self._token = None

    def _failed(self, err: ProtocolError, text: str) -> None:
        metrics.JS_PUBLISH_FAILED.inc()
        log.warning("publish_refused", conn=self.owner.id, sid=self.sid, error=text)
        self.owner.stop(err)

    async def _check_tail(self, msg: ChainMessage) -> None:
        """A wrong last sequence: if the subject's newest message is this very one (an
        earlier attempt stored without its ack reaching us), it is stored."""
        ctx = self.ctx
        tail = await streams.last_stored(ctx.nc, ctx.cfg.stream.stream, self.subject)
        try:
            stored = self.chain.confirm(
                msg, tail.msg_id if tail else None, tail.sseq if tail else 0
            )
        except ProtocolError as err:
            self._failed(err, "wrong last sequence: another writer")
            return
        if stored is not None:
            self._stored(stored)

    async def _record_snapshot(
        self, pointer: session_store.SnapshotPointer, page: page_info.PageInfo | None
    ) -> None:
        """The ack waits for the pointer so an acknowledged snapshot is always findable, but
        never for long: through a KV leader election it retries, then gives up (late joiners
        then ask the visitor for a snapshot) rather than stall the visitor."""
        try:
            with trio.move_on_after(SNAPSHOT_POINTER_WAIT):
                while True:
                    try:
                        await self.ctx.update(
                            self.sid, lambda m: session.record_snapshot(m, pointer, page)
                        )
                        break
                    except Exception as exc:
                        log.warning("snapshot_pointer_retry", sid=self.sid, error=repr(exc))
                        await trio.sleep(0.5)
        finally:
            if self.chain.pointer_recorded(pointer.seq) is not None:
                self._ack_soon()

    # ---- acks to the client -------------------------------------------------------------

    def _ack_soon(self) -> None:
        """Acks are bookkeeping for the sender's resend buffer, not latency: they go out with
        the gateway's ticker (at most its 0.1 s period later), one frame for all that was
        stored meanwhile, which halves a visitor's frames at 20 events/s. A sender waiting
        for room is acked at once."""
        if self.owner.paused:
            self.send_ack()
            self.owner.wake()  # the sender was waiting for room
        else:
            self.ctx.acks_due.add(self)

    def send_ack(self) -> None:
        acked = self.chain.acked
        if acked > self._ack_sent and self.owner.is_open():
            self._ack_sent = acked
            self.owner.send(Ack(acked))

    async def record_durable(
        self,
        key: str,
        epoch: int,
        budget: CarriedBudget | None = None,
        *,
        also: Callable[[SessionMeta], None] | None = None,
    ) -> None:
        """What was acked, in the session metadata (`durable`, under "v" or the agent id),
        the visitor's budget left (`budget`) and the connection's other last change (`also`),
        in one write. `durable` is informational (operators, status): resumes read the
        stream, which is authoritative even after a gateway crash skipped this write."""
        acked = self.chain.acked
        if acked == 0 and budget is None and also is None:
            return

        def change(m: SessionMeta) -> None:
            if also is not None:
                also(m)
            if budget is not None:
                m.budget = budget
            if acked == 0:
                return
            if key != "v":
                m.durable[key] = max(m.durable.get(key, 0), acked)
            elif m.epoch == epoch:
                m.durable["v"] = max(m.durable.get("v", 0), acked)

        await self.ctx.update(self.sid, change)
