"""Delivery to one receiver: live core-NATS messages merged with JetStream reads, in order.

Each sender the receiver listens to (the visitor for an agent; each agent for the visitor)
is a `Source` with its own sans-I/O ReorderBuffer. Live messages come from the gateway's
shared subscription (`Fanout`); reads from the stream resume the receiver and fill gaps, so
an event missing from the live path (a NATS reconnect, a slow consumer, a publish retried
through a leader election) is fetched rather than waited for forever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import structlog
import trio

from . import metrics, streams
from .codec import MAX_EVENTS_PER_BATCH, Event, approx_size, decode_stored
from .nats_bridge import NatsBridge
from .reorder import ReorderBuffer, ReorderOverflow

log = structlog.get_logger("gateway.delivery")

SendBatch = Callable[[int, list[Event], str | None], Awaitable[None]]


@dataclass
class _Entry:
    listeners: set = field(default_factory=set)
    sub: object = None
    ready: trio.Event = field(default_factory=trio.Event)


class Fanout:
    """One core-NATS subscription per subject per gateway, shared by its local receivers."""

    def __init__(self, bridge: NatsBridge) -> None:
        self.bridge = bridge
        self._subs: dict[str, _Entry] = {}

    def _dispatch(self, entry: _Entry, subject: str, data: bytes) -> None:
        for listener in list(entry.listeners):
            listener(subject, data)

    async def add(self, subject: str, listener: Callable[[str, bytes], None]) -> None:
        entry = self._subs.get(subject)
        if entry is None:
            entry = self._subs[subject] = _Entry()
            entry.listeners.add(listener)
            try:
                entry.sub = await self.bridge.subscribe(subject, partial(self._dispatch, entry))
            except BaseException:
                self._subs.pop(subject, None)
                raise
            entry.ready.set()
        else:
            entry.listeners.add(listener)
            await entry.ready.wait()

    async def remove(self, subject: str, listener: Callable[[str, bytes], None]) -> None:
        entry = self._subs.get(subject)
        if entry is None:
            return
        entry.listeners.discard(listener)
        if not entry.listeners and entry.ready.is_set():
            del self._subs[subject]
            await self.bridge.unsubscribe(entry.sub)


class HistoryLost(Exception):
    """The resume point is older than what the stream retains."""


class Source:
    """One sender's event stream as one receiver sees it."""

    def __init__(
        self,
        bridge: NatsBridge,
        stream: str,
        subject: str,
        buf: ReorderBuffer | None,
        *,
        src: str | None,
        gap_timeout: float = 0.25,
    ) -> None:
        self.bridge = bridge
        self.stream = stream
        self.subject = subject
        self.buf = buf  # None: waiting for the next snapshot to start from
        self.src = src
        self.gap_timeout = gap_timeout
        self.ready: list[tuple[int, Event]] = []  # released, not yet sent

    def _release(self, items: list) -> None:
        self.ready.extend(items)

    def push(self, epoch: int, ev: Event, now: float) -> None:
        if self.buf is None:
            if ev.kind == "snapshot" and isinstance(ev.payload, dict) and ev.payload.get("i") == 0:
                self.buf = ReorderBuffer(epoch, ev.seq, gap_timeout=self.gap_timeout)
            else:
                return
        self._release(self.buf.push(epoch, ev.seq, (epoch, ev), now))

    async def fill(self, now: Callable[[], float], start_pos: int | None = None) -> None:
        """Read the stream from the expected key (or `start_pos`) to its end."""
        if self.buf is None:
            return
        metrics.GAP_FILLS.inc()
        nc = self.bridge.nc
        pos = start_pos
        if pos is None:
            pos = await self.bridge.call(
                streams.locate, nc, self.stream, self.subject, self.buf.expected
            )
        while pos is not None:
            got, pos = await self.bridge.call(streams.read_from, nc, self.stream, self.subject, pos)
            t = now()
            for s in got:
                self._release(self.buf.push(s.epoch, s.event.seq, (s.epoch, s.event), t))
        if not self.buf.pending:
            # Nothing held back, so no gap: the next event may simply not exist yet.
            return
        # Something is held back, so the expected event is missing after reading everything stored.
        newer = self.buf.pending_newer_epoch()
        if newer is not None:
            self._release(self.buf.advance_epoch(newer, now()))
            return
        first = await self.bridge.call(streams.first_of, nc, self.stream, self.subject)
        if first is not None and first.key > self.buf.expected:
            raise HistoryLost(f"{self.subject}: stream starts at {first.key}")

    def take_ready(self) -> list[tuple[int, Event]]:
        out, self.ready = self.ready, []
        return out


def batches(items: list[tuple[int, Event]], max_bytes: int = 512 * 1024):
    """Group released events into frames: one epoch per frame, bounded count and size."""
    cur: list[Event] = []
    cur_epoch = None
    size = 0
    for epoch, ev in items:
        est = 32 + approx_size(ev.payload)
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


def decode_live(data: bytes) -> tuple[int, Event] | None:
    try:
        return decode_stored(data)
    except Exception:
        log.warning("undecodable_stored_event", size=len(data))
        return None


__all__ = ["Fanout", "Source", "HistoryLost", "batches", "decode_live", "ReorderOverflow"]
