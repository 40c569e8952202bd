"""Sequence numbers on both sides of a hop, sans-I/O.

`Sequencer` is the sender: it numbers events and keeps them until the gateway acks them, so
that a reconnect can resend exactly what JetStream does not hold yet. `SequenceCheck` is the
gateway's view of one inbound sender: it rejects batches that are not the exact
continuation. (What the gateway acks is decided by the publish chain, publish_chain.py.)
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any

from gateway.codec import Close, Event, ProtocolError, payload_size


class ResendBufferFull(Exception):
    """Back-pressure: wait for acks before pushing more."""


class Sequencer:
    """Numbers outgoing events and keeps the unacked ones for resend on resume.

    Acks are cumulative. The buffer is bounded by count and by bytes so a sender whose
    gateway stops acking blocks instead of growing without limit; an event is always admitted
    into an empty buffer, since waiting for acks could never make room for it.
    """

    def __init__(
        self,
        epoch: int = 0,
        next_seq: int = 1,
        max_unacked: int = 10_000,
        max_unacked_bytes: int = 64 * 2**20,
    ):
        if next_seq < 1:
            raise ValueError("next_seq must be >= 1")
        self.epoch = epoch
        self.max_unacked = max_unacked
        self.max_unacked_bytes = max_unacked_bytes
        self._next = next_seq
        self._acked = next_seq - 1
        self._buf: deque[tuple[Event, int]] = deque()
        self._bytes = 0

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def acked(self) -> int:
        """Highest seq the gateway has cumulatively acked (or that predates this sequencer)."""
        return self._acked

    @property
    def unacked_bytes(self) -> int:
        return self._bytes

    def can_push(self, nbytes: int = 0) -> bool:
        if not self._buf:
            return True
        return len(self._buf) < self.max_unacked and self._bytes + nbytes <= self.max_unacked_bytes

    def push(self, kind: str, ts: int, payload: Any) -> Event:
        """Number an event and keep it until acked; raises ResendBufferFull without using a seq."""
        n = payload_size(payload)
        if not self.can_push(n):
            raise ResendBufferFull(f"{len(self._buf)} events / {self._bytes} bytes unacked")
        ev = Event(self._next, kind, ts, payload)
        self._next += 1
        self._buf.append((ev, n))
        self._bytes += n
        return ev

    def push_event(self, ev: Event, nbytes: int) -> Event:
        """Keep an event its caller numbered (`ev.seq` must be `next_seq`) and sized (`nbytes`,
        for instance the length of its encoding): `push` for a sender that encodes each event
        once and keeps the bytes with it. Raises ResendBufferFull like `push`."""
        if ev.seq != self._next:
            raise ValueError(f"event seq {ev.seq}, expected {self._next}")
        if not self.can_push(nbytes):
            raise ResendBufferFull(f"{len(self._buf)} events / {self._bytes} bytes unacked")
        self._next += 1
        self._buf.append((ev, nbytes))
        self._bytes += nbytes
        return ev

    def ack(self, seq: int) -> int:
        """Cumulative ack; returns how many events it freed. Stale acks are harmless repeats."""
        if seq >= self._next:
            raise ProtocolError(
                "bad_ack", f"ack {seq} beyond last sent seq {self._next - 1}", Close.PROTOCOL
            )
        if seq <= self._acked:
            return 0
        freed = 0
        while self._buf and self._buf[0][0].seq <= seq:
            _, n = self._buf.popleft()
            self._bytes -= n
            freed += 1
        self._acked = seq
        return freed

    def newest(self) -> Event | None:
        """The last event numbered, if it is still unacked."""
        return self._buf[-1][0] if self._buf else None

    def unacked(self) -> list[Event]:
        return [ev for ev, _ in self._buf]

    def since(self, seq: int) -> list[Event]:
        """The unacked events numbered after `seq`, in order. Walks from the newest end, so it
        costs O(events returned), however many older ones wait for their ack."""
        n = self._next - 1 - max(seq, self._acked)
        if n <= 0:
            return []
        out = [ev for ev, _ in islice(reversed(self._buf), n)]
        out.reverse()
        return out

    def resume(self, durable: int) -> list[Event]:
        """JetStream holds everything up to `durable` in this epoch: resend only what follows."""
        if durable >= self._next:
            raise ProtocolError(
                "bad_resume",
                f"durable {durable} beyond last sent seq {self._next - 1}",
                Close.PROTOCOL,
            )
        self.ack(durable)
        return self.unacked()

    def restart(self, epoch: int) -> None:
        """The old epoch is gone for good: nothing unacked can be resent into it."""
        self.epoch = epoch
        self._next = 1
        self._acked = 0
        self._buf.clear()
        self._bytes = 0


class SequenceCheck:
    """The gateway's check that an inbound sender continues exactly where it left off.

    A gap or a repeat means the sender and the gateway disagree about what JetStream holds,
    which resend cannot repair on this connection.
    """

    __slots__ = ("next_seq",)

    def __init__(self, next_seq: int):
        self.next_seq = next_seq

    def check(self, events: list[Event]) -> None:
        """Accept the whole batch or none of it, so a rejected batch leaves no trace."""
        want = self.next_seq
        for ev in events:
            if ev.seq < want:
                raise ProtocolError(
                    "seq_backwards", f"got seq {ev.seq}, expected {want}", Close.PROTOCOL
                )
            if ev.seq > want:
                raise ProtocolError("seq_gap", f"got seq {ev.seq}, expected {want}", Close.PROTOCOL)
            want += 1
        self.next_seq = want
