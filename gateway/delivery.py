"""Delivery to one connection: live core-NATS messages merged with stream reads, in order.

Each sender a connection listens to (the visitor, for an agent; each agent, for the visitor)
is a `Receiver` with its own sans-I/O ReorderBuffer. Live messages come from the gateway's
shared subscription (`Fanout`) and are handled synchronously on the NATS reader task: a
stored batch that is exactly what the receiver expects next (the common case) is forwarded
as it is, since its body already is the frame the client gets; anything else goes through
the reorder buffer event by event.

The stream is read (in the connection's own task, `catch_up`) to start a receiver, to fill a
hole that lasted `gap_timeout`, to catch a tail the live path lost (`tail_check` after a
receiver's last event, every `idle_check` otherwise, and after a NATS reconnect), and to
serve a receiver that fell behind: a client that reads slower than its events arrive stops
taking live messages once `high_water` bytes wait in its socket's outbox, and is served from
the stream when that outbox has drained, so a slow agent costs its gateway a bounded buffer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial

import structlog

from . import metrics, streams
from .codec import (
    MAX_EVENTS_PER_BATCH,
    Event,
    Events,
    decode_batch,
    encode_frame,
    payload_size,
    snapshot_part,
)
from .jetstream import received_at
from .nats_client import Msg, NatsClient
from .reorder import ReorderBuffer

log = structlog.get_logger("gateway.delivery")

HIGH_WATER = 1 << 20  # bytes queued for one client before its receivers stop taking live events
FRAME_BUDGET = 512 * 1024  # estimated bytes per frame built from released events
READ_BATCH = 64  # stored messages per stream read before the outbox is looked at again
AT_ONCE = -math.inf  # a deadline already past, whenever the caller reads its clock


def observe_latency(headers: bytes) -> None:
    """One visitor frame reached an agent's socket: time since it reached its gateway."""
    at = received_at(headers)
    if at is not None:
        metrics.DELIVERY_LATENCY.observe(max(0.0, time.time() - at))


class HistoryLost(Exception):
    """The resume point is older than what the stream retains."""


class Fanout:
    """One core-NATS subscription per subject per gateway, shared by its local receivers."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._subs: dict[str, tuple[object, set]] = {}

    @staticmethod
    def _dispatch(listeners: set, msg: Msg) -> None:
        for listener in tuple(listeners) if len(listeners) > 1 else listeners:
            listener(msg)

    def add(self, subject: str, listener: Callable[[Msg], None]) -> None:
        entry = self._subs.get(subject)
        if entry is None:
            listeners: set = {listener}
            sub = self.nc.subscribe(subject, partial(self._dispatch, listeners))
            self._subs[subject] = (sub, listeners)
        else:
            entry[1].add(listener)

    def remove(self, subject: str, listener: Callable[[Msg], None]) -> None:
        entry = self._subs.get(subject)
        if entry is None:
            return
        entry[1].discard(listener)
        if not entry[1]:
            del self._subs[subject]
            self.nc.unsubscribe(entry[0])

    @property
    def subjects(self) -> int:
        return len(self._subs)


class Receiver:
    """One sender's events as one connection receives them."""

    __slots__ = (
        "subject",
        "src",
        "buf",
        "behind",
        "last_live",
        "live",
        "live_seen",
        "tail_checked",
        "needs_read",
        "needs_tail",
    )

    def __init__(self, subject: str, src: str | None, buf: ReorderBuffer | None) -> None:
        self.subject = subject
        self.src = src  # the agent id for the visitor's receivers; None: the visitor's events
        self.buf = buf  # None: waiting for the next snapshot part 0 to start from
        self.behind = False  # the client is slow: serve from the stream, not the live path
        self.last_live = 0.0  # about when the last live message came (to the sweep's second)
        self.live = 0  # live messages taken: counted here, timed by the sweep
        self.live_seen = 0
        self.tail_checked = True
        self.needs_read = False  # a hole or a lost tail: read the stream
        self.needs_tail = False  # look at the stream's tail: did the live path lose something?


Send = Callable[[bytes], None]
Clock = Callable[[], float]


class Delivery:
    """Everything one connection receives, and the frames that carry it."""

    __slots__ = (
        "nc", "stream", "send", "backlog", "clock", "poke", "gap_timeout", "tail_check",
        "idle_check", "high_water", "receivers", "on_new_sender", "_next_idle_check", "role",
    )  # fmt: skip

    def __init__(
        self,
        *,
        nc: NatsClient,
        stream: str,
        send: Send,
        backlog: Callable[[], int],
        clock: Clock,
        poke: Callable[[float], None],
        gap_timeout: float,
        tail_check: float,
        idle_check: float,
        role: str,
        high_water: int = HIGH_WATER,
    ) -> None:
        self.nc = nc
        self.stream = stream
        self.send = send  # queue one binary frame to the client
        self.backlog = backlog  # bytes queued for the client
        self.clock = clock
        self.poke = poke  # ask the connection's task to run `catch_up` at this time
        self.gap_timeout = gap_timeout
        self.tail_check = tail_check
        self.idle_check = idle_check
        self.high_water = high_water
        self.receivers: dict[str, Receiver] = {}  # by sender: "v" or the agent id
        self.on_new_sender: Callable[[str], Receiver | None] | None = None
        self._next_idle_check = clock() + idle_check
        self.role = role  # the receiving client's, for the counters

    # ---- the live path (synchronous, on the NATS reader task) ------------------------------

    def receiver_for(self, subject: str) -> Receiver | None:
        key = "v" if subject.endswith(".v") else subject.rsplit(".", 1)[1]
        rcv = self.receivers.get(key)
        if rcv is None and self.on_new_sender is not None:
            rcv = self.on_new_sender(key)
        return rcv

    def on_live(self, msg: Msg) -> None:
        rcv = self.receiver_for(msg.subject)
        if rcv is None or rcv.behind:
            return
        rcv.live += 1
        try:
            batch = decode_batch(msg.data)
        except Exception:
            log.warning("undecodable_stored_batch", subject=msg.subject, size=len(msg.data))
            self._want_read(rcv, self.clock())
            return
        buf = rcv.buf
        if buf is None:
            buf = self._start_at_snapshot(rcv, batch.epoch, batch.events())
            if buf is None:
                return
        elif buf.take_run(batch.epoch, batch.first, batch.last):
            self.send(msg.data)  # in order: the stored body is the client's frame
            if self.role == "agent" and msg.headers is not None:
                observe_latency(msg.headers)
            tally = metrics.TALLY
            tally.frames_out[self.role] += 1
            tally.events_out[self.role] += len(batch.items)
            self._check_backlog(rcv)
            return
        self._push(rcv, batch.epoch, batch.events(), self.clock())

    def _start_at_snapshot(self, rcv: Receiver, epoch: int, events: list[Event]):
        """A receiver that waits for a snapshot starts at the newest part 0 it sees."""
        start = None
        for ev in events:
            if ev.kind == "snapshot" and snapshot_part(ev.payload) == 0:
                start = ev.seq
        if start is None:
            return None
        rcv.buf = ReorderBuffer(epoch, start, gap_timeout=self.gap_timeout)
        return rcv.buf

    def _push(self, rcv: Receiver, epoch: int, events: list[Event], now: float) -> None:
        buf = rcv.buf
        assert buf is not None
        released: list = []
        for ev in events:
            released += buf.push(epoch, ev.seq, (epoch, ev), now)  # may raise ReorderOverflow
        if released:
            self._send_released(rcv, released)
        if buf.pending:
            deadline = buf.deadline()
            if deadline is not None:
                self.poke(deadline)

    def _send_released(self, rcv: Receiver, items: list[tuple[int, Event]]) -> None:
        for epoch, evs in batches(items):
            self.send(encode_frame(Events(epoch=epoch, events=evs, src=rcv.src)))
            tally = metrics.TALLY
            tally.frames_out[self.role] += 1
            tally.events_out[self.role] += len(evs)
        self._check_backlog(rcv)

    def _check_backlog(self, rcv: Receiver) -> None:
        if self.backlog() > self.high_water and not rcv.behind:
            rcv.behind = True
            metrics.RECEIVERS_BEHIND.inc()

    def _want_read(self, rcv: Receiver, now: float) -> None:
        rcv.needs_read = True
        self.poke(now)

    def nats_reconnected(self) -> None:
        """The live path may have lost messages while NATS was away: look at every tail."""
        now = self.clock()
        for rcv in self.receivers.values():
            rcv.needs_tail = True
        self.poke(now)

    # ---- the stream (asynchronous, on the connection's task) -------------------------------

    @property
    def behind(self) -> bool:
        return any(rcv.behind for rcv in self.receivers.values())

    def sweep(self, now: float) -> bool:
        """Called about once a second by the gateway: mark the receivers whose tail is due a
        look (`tail_check` after their last live event, and all of them every
        `idle_check`); True when the connection's task has stream reads to do. Timers
        that would fire for every connection live here rather than in each task's wait."""
        idle_round = now >= self._next_idle_check
        if idle_round:
            self._next_idle_check = now + self.idle_check
        due = False
        for rcv in self.receivers.values():
            if rcv.live != rcv.live_seen:  # live messages since the last sweep
                rcv.live_seen, rcv.last_live, rcv.tail_checked = rcv.live, now, False
            if idle_round or (not rcv.tail_checked and now >= rcv.last_live + self.tail_check):
                rcv.tail_checked = True
                rcv.needs_tail = rcv.buf is not None
            due = due or rcv.needs_tail or rcv.needs_read or rcv.behind
        return due

    def deadline(self) -> float | None:
        """When `catch_up` next has something to do: AT_ONCE, or when a hole is due a read."""
        times = []
        for rcv in self.receivers.values():
            if rcv.needs_read or rcv.needs_tail or rcv.behind:
                return AT_ONCE
            if rcv.buf is not None:
                d = rcv.buf.deadline()
                if d is not None:
                    times.append(d)
        return min(times, default=None)

    async def catch_up(self, on_lost: Callable) -> None:
        """Read the stream for every receiver that needs it now. The caller first waits
        until the client has taken what was queued for it when a receiver is `behind`.
        `on_lost(receiver)` is awaited when a resume point is gone from the stream."""
        now = self.clock()
        for rcv in list(self.receivers.values()):
            if rcv.behind:
                rcv.behind = False
                rcv.needs_read = True
            if rcv.buf is None:
                rcv.needs_tail = False
                continue
            if rcv.buf.gap_due(now) is not None:
                metrics.REORDER_WAITS.inc()
                rcv.needs_read = True
            if rcv.needs_read:
                rcv.needs_tail = False
                await self.fill(rcv, on_lost)
            elif rcv.needs_tail:
                rcv.needs_tail = False
                last = await streams.last_of(self.nc, self.stream, rcv.subject)
                if last is not None and rcv.buf is not None and last.last_key >= rcv.buf.expected:
                    await self.fill(rcv, on_lost)

    async def fill(self, rcv: Receiver, on_lost: Callable, pos: int | None = None) -> None:
        """Read the stream from what the receiver expects next (or from position `pos`)."""
        if rcv.buf is None:
            return
        rcv.needs_read = False
        metrics.GAP_FILLS.inc()
        try:
            await self._read(rcv, pos)
        except HistoryLost as exc:
            log.info("history_lost", subject=rcv.subject, detail=str(exc))
            await on_lost(rcv)

    async def _read(self, rcv: Receiver, pos: int | None) -> None:
        buf = rcv.buf
        assert buf is not None
        if pos is None:
            pos = await streams.locate(self.nc, self.stream, rcv.subject, buf.expected)
        while pos is not None:
            got, pos = await streams.read_from(self.nc, self.stream, rcv.subject, pos, READ_BATCH)
            if rcv.buf is not buf:
                return  # reset meanwhile (a new snapshot start): that start reads for itself
            now = self.clock()
            released: list = []
            for m in got:
                b = m.batch
                if buf.take_run(b.epoch, b.first, b.last):
                    released += [(b.epoch, Event(*item)) for item in b.items]
                else:
                    for ev in b.events():
                        released += buf.push(b.epoch, ev.seq, (b.epoch, ev), now)
            if released:
                self._send_released(rcv, released)
            if rcv.behind and pos is not None:
                rcv.needs_read = True  # the rest when the client has read what it has
                return
        if not buf.pending:
            return  # nothing held back: no hole, the next event may not exist yet
        # Something waits behind a hole that the whole stream does not fill.
        newer = buf.pending_newer_epoch()
        if newer is not None:
            # The epoch's tail was never stored (a new page began): go on with the next one.
            self._send_released(rcv, buf.advance_epoch(newer, self.clock()))
            return
        first = await streams.first_of(self.nc, self.stream, rcv.subject)
        if first is not None and first.first_key > buf.expected:
            raise HistoryLost(f"{rcv.subject}: stream starts at {first.first_key}")


def batches(items: list[tuple[int, Event]], max_bytes: int = FRAME_BUDGET):
    """Group released events into frames: one epoch per frame, bounded count and size."""
    cur: list[Event] = []
    cur_epoch = None
    size = 0
    for epoch, ev in items:
        est = 32 + payload_size(ev.payload)
        if cur and (
            epoch != cur_epoch or len(cur) >= MAX_EVENTS_PER_BATCH or size + est > max_bytes
        ):
            yield cur_epoch, cur
            cur, size = [], 0
        cur_epoch = epoch
        cur.append(ev)
        size += est
    if cur:
        yield cur_epoch, cur
