"""One sender's events on their way into JetStream, sans-I/O: batches, chained, in order.

A sender (a visitor in one epoch, or one agent id) writes one subject. Its checked events
are stored as messages of consecutive events, one per client frame, or several frames
coalesced while the previous message is in flight, and each message is published with

- `Nats-Msg-Id: <sid>:<epoch or aid>:<first>-<last>`, so a message stays one message however
  often it is retried (JetStream's duplicate window), and a retry refused for a wrong last
  sequence can be recognised as our own earlier attempt in the subject's tail;
- `Nats-Expected-Last-Subject-Sequence: <stream position of the previous message>`, so the
  subject is a chain: a publish from another connection of the same sender (a dead or
  partitioned gateway still retrying, a replaced visitor) can never land in between, and the
  newest stored event always ends an unbroken prefix (`session.durable_prefix`).

Only one message per sender is in flight, since the next must name this one's position.
At co-browsing rates that costs nothing (a session's events come 20-200 ms apart; a
JetStream round trip is under 1 ms here); a flood coalesces into fewer, larger messages.

The client's cumulative ack covers the stored messages, except that a message holding a
visitor snapshot's part 0 holds the ack below that part until the snapshot pointer is in
the session metadata, so a sender never drops a snapshot that late joiners cannot find.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .codec import (
    MAX_EVENTS_PER_BATCH,
    MAX_FRAME_BYTES,
    Close,
    Event,
    ProtocolError,
    encode_batch,
    payload_size,
    snapshot_part,
)
from .jetstream_codes import (
    DUPLICATE_IN_PROCESS,
    WRONG_LAST_SEQUENCE,
    WRONG_LAST_SEQUENCE_IN_PROCESS,
)
from .session_store import SnapshotPointer

# A stored body leaves room for the headers: NATS's max_payload (1 MiB by default) counts them.
MAX_BODY = MAX_FRAME_BYTES - 4096
RETRY_SOON = 0.25  # seconds before retrying a publish that found no stream leader


class Refusal(enum.Enum):
    RETRY = "retry"  # no stream leader right now: the same message again soon
    CHECK_TAIL = "check_tail"  # wrong last sequence: was the subject's tail our own attempt?


@dataclass(slots=True)
class ChainMessage:
    """One JetStream publish: consecutive events `first..last` of one sender."""

    msg_id: str
    expected: int  # stream position of the previous message on the subject; 0: none
    body: bytes
    first: int
    last: int
    snapshot_seq: int | None  # seq of the newest visitor snapshot part 0 in it
    received: float = 0.0  # wall-clock time its oldest client frame reached the gateway


@dataclass(slots=True)
class Stored:
    """A message is in the stream. `ack`: the client's new cumulative ack, if it moved.
    `record`: write this snapshot pointer, then call `pointer_recorded` with its seq."""

    ack: int | None
    record: SnapshotPointer | None


def unavailable(message: str) -> ProtocolError:
    """A gateway-side failure: the client resumes (1011), which rebuilds the chain."""
    return ProtocolError("unavailable", message, Close.INTERNAL)


@dataclass
class _Chunk:
    events: list[Event]
    wire: bytes | None  # the client's frame, when it can be stored as it is
    size: int  # bytes, or an upper estimate
    received: float = 0.0  # wall-clock arrival of the client's frame (0: not known)


class PublishChain:
    """The sender's queue of checked events and its one message in flight."""

    __slots__ = (
        "msg_id_prefix", "epoch", "src", "is_visitor", "attempt_timeout", "publish_timeout",
        "max_events", "max_bytes", "last_sseq", "stored_upto", "added_upto", "acked",
        "_queue", "_queued_bytes", "_held", "in_flight", "_first_try", "_next_try",
    )  # fmt: skip

    def __init__(
        self,
        *,
        msg_id_prefix: str,
        epoch: int,
        src: str | None,
        last_sseq: int,
        acked: int,
        is_visitor: bool,
        attempt_timeout: float = 2.0,
        publish_timeout: float = 30.0,
        max_events: int = MAX_EVENTS_PER_BATCH,
        max_bytes: int = MAX_FRAME_BYTES // 2,
    ) -> None:
        self.msg_id_prefix = msg_id_prefix
        self.epoch = epoch
        self.src = src  # the agent id on an agent's subject: its bodies carry it for the visitor
        self.is_visitor = is_visitor
        self.attempt_timeout = attempt_timeout
        self.publish_timeout = publish_timeout
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.last_sseq = last_sseq  # stream position of the newest message on the subject
        self.stored_upto = acked  # highest seq stored
        self.added_upto = acked  # highest seq queued
        self.acked = acked  # the client's cumulative ack
        self._queue: list[_Chunk] = []  # usually empty: a deque is ten times its size
        self._queued_bytes = 0  # the sum of the queue's sizes
        self._held: list[int] = []  # snapshot part-0 seqs waiting for their pointer (few)
        self.in_flight: ChainMessage | None = None
        self._first_try = 0.0
        self._next_try = 0.0

    @property
    def outstanding(self) -> int:
        """Seqs taken from the client and not yet acked to it (the back-pressure measure)."""
        return self.added_upto - self.acked

    @property
    def idle(self) -> bool:
        """Everything taken from the client is stored (or nothing was)."""
        return self.in_flight is None and not self._queue

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def add(self, events: list[Event], wire: bytes | None = None, received: float = 0.0) -> None:
        """Queue the events of one checked client frame (consecutive, continuing the chain);
        `received`: the frame's wall-clock arrival, carried to the receiving gateways."""
        if not events:
            return
        if self.src is not None:
            wire = None  # an agent's body must name it (src) for the visitor
        size = len(wire) if wire is not None else _estimate(events)
        self._queue.append(_Chunk(events, wire, size, received))
        self._queued_bytes += size
        self.added_upto = events[-1].seq

    def next(self, now: float) -> ChainMessage | None:
        """The next message to publish, if none is in flight and something is queued."""
        if self.in_flight is not None or not self._queue:
            return None
        received = self._queue[0].received  # the oldest frame in the message
        events, body = self._take()
        snap = None
        if self.is_visitor:
            for ev in events:
                if ev.kind == "snapshot" and snapshot_part(ev.payload) == 0:
                    snap = ev.seq
        first, last = events[0].seq, events[-1].seq
        self.in_flight = ChainMessage(
            msg_id=f"{self.msg_id_prefix}:{first}-{last}",
            expected=self.last_sseq,
            body=body,
            first=first,
            last=last,
            snapshot_seq=snap,
            received=received,
        )
        self._first_try = now
        self._next_try = now + self.attempt_timeout
        return self.in_flight

    def _take(self) -> tuple[list[Event], bytes]:
        """Whole chunks from the queue, up to the message limits (at least one chunk)."""
        chunk = self._queue.pop(0)
        self._queued_bytes -= chunk.size
        if not self._queue and chunk.wire is not None and len(chunk.wire) <= MAX_BODY:
            return chunk.events, chunk.wire
        events, size = list(chunk.events), chunk.size
        while self._queue:
            more = self._queue[0]
            if (
                len(events) + len(more.events) > self.max_events
                or size + more.size > self.max_bytes
            ):
                break
            self._queue.pop(0)
            self._queued_bytes -= more.size
            events += more.events
            size += more.size
        body = encode_batch(self.epoch, events, self.src)
        while len(body) > MAX_BODY and len(events) > 1:
            # Only a frame near the limit gets here (an agent's also gains its src): split it.
            keep = len(events) // 2
            rest = events[keep:]
            self._queue.insert(0, _Chunk(rest, None, _estimate(rest), chunk.received))
            self._queued_bytes += self._queue[0].size
            events = events[:keep]
            body = encode_batch(self.epoch, events, self.src)
        return events, body

    def stored(self, sseq: int) -> Stored:
        """JetStream stored the message in flight at stream position `sseq` (or had it
        already: a duplicate of a retry answers with the original position)."""
        msg = self.in_flight
        assert msg is not None
        self.in_flight = None
        self.last_sseq = sseq
        self.stored_upto = msg.last
        record = None
        if msg.snapshot_seq is not None:
            self._held.append(msg.snapshot_seq)
            record = SnapshotPointer(self.epoch, msg.snapshot_seq, sseq)
        return Stored(self._advance(), record)

    def pointer_recorded(self, seq: int) -> int | None:
        """The snapshot pointer of part 0 at `seq` is written: the ack may pass it."""
        try:
            self._held.remove(seq)
        except ValueError:
            return None
        return self._advance()

    def _advance(self) -> int | None:
        ack = self.stored_upto if not self._held else min(self.stored_upto, self._held[0] - 1)
        if ack > self.acked:
            self.acked = ack
            return ack
        return None

    def refused(self, now: float, code: int | None, err_code: int | None, text: str) -> Refusal:
        """JetStream answered the message in flight with an error. Without a stream leader
        (503, or a timeout status) the same message goes again soon. A wrong last sequence
        is either our own earlier attempt, stored but unacknowledged (JetStream checks the
        expected position before the duplicate window), or another writer: the caller reads
        the subject's tail and calls `confirm`. While another publish to the subject (ours,
        a retry racing its first attempt, or another writer's) is still being replicated
        (10164), the same message goes again soon, and the answer then is a duplicate, a
        10071 with a tail to check, or stored. Anything else ends the connection
        (ProtocolError) and the client's resume rebuilds the chain from the stream."""
        if err_code == WRONG_LAST_SEQUENCE:
            return Refusal.CHECK_TAIL
        if code in (503, 408) or err_code in (DUPLICATE_IN_PROCESS, WRONG_LAST_SEQUENCE_IN_PROCESS):
            self._next_try = now + RETRY_SOON
            return Refusal.RETRY
        raise unavailable(f"JetStream refused the events: {text}"[:200])

    def confirm(self, msg: ChainMessage, tail_msg_id: str | None, tail_sseq: int) -> Stored | None:
        """After a wrong last sequence: the subject's newest message is `tail_msg_id` at
        `tail_sseq`. Ours: it is stored. Another writer's: the chain is broken (raises).
        None when `msg` is no longer in flight (its own acknowledgement came meanwhile)."""
        if self.in_flight is not msg:
            return None
        if tail_msg_id != msg.msg_id:
            raise unavailable("another connection wrote this sender's events; resume")
        return self.stored(tail_sseq)

    def retry_now(self, now: float) -> bool:
        """The message in flight is due again now rather than at its next try: the stream
        has a new leader, or the publish connection reconnected, and the attempt went where
        no answer will come from; waiting out `attempt_timeout` (2 s) only lengthens the
        stall. False when nothing is waiting on an answer or a try is already due."""
        if self.in_flight is None or self._next_try <= now:
            return False
        self._next_try = now
        return True

    def due(self, now: float) -> ChainMessage | None:
        """The message in flight again (same id, same expected position) when its attempt
        timed out; raises once it has been trying for `publish_timeout`, which must
        outlast a stream-leader election (about 5-7 s)."""
        msg = self.in_flight
        if msg is None or now < self._next_try:
            return None
        if now - self._first_try > self.publish_timeout:
            raise unavailable(f"JetStream did not acknowledge within {self.publish_timeout:g} s")
        self._next_try = now + self.attempt_timeout
        return msg

    @property
    def next_try(self) -> float | None:
        return self._next_try if self.in_flight is not None else None


def _estimate(events: list[Event]) -> int:
    return sum(32 + payload_size(e.payload) for e in events)
