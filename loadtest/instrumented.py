"""The hook the verifier needs inside a client: the sequencer reports what it numbers and
what the gateway acks. (The client counts its refused handshakes by lane itself:
`ClientStats.rejected_new` / `rejected_resume`.)"""

from __future__ import annotations

import time
from collections import deque

from gateway.sequencer import Sequencer


class RecordingSequencer(Sequencer):
    """The client's sequencer, reporting what it numbers and what the gateway acks, and
    (with `ack_us`, a list) how long each event waited for its ack in microseconds: the time
    to durable. `clock` gives the time of a push, `ack_clock` that of an ack (the load
    generator's: its turn's clock, and the ack frame's arrival); both default to time.time."""

    def __init__(
        self, on_push, on_ack, on_restart, *, ack_us=None, clock=None, ack_clock=None, **kw
    ):
        self._on_push, self._on_ack, self._on_restart = on_push, on_ack, on_restart
        self._ack_us: list[int] | None = ack_us
        self._clock = clock or time.time
        self._ack_clock = ack_clock or self._clock
        # With ack_us: when each unacked event was pushed, in step with the resend buffer
        # (the same events, in order: appended by a push, freed by an ack, cleared together).
        self._pushed_at: deque[float] = deque()
        super().__init__(**kw)

    def push(self, kind, ts, payload):
        ev = super().push(kind, ts, payload)
        if self._ack_us is not None:
            self._pushed_at.append(self._clock())
        self._on_push(self.epoch, ev.seq)
        return ev

    def push_event(self, ev, nbytes):
        super().push_event(ev, nbytes)
        if self._ack_us is not None:
            self._pushed_at.append(self._clock())
        self._on_push(self.epoch, ev[0])
        return ev

    def ack(self, seq: int) -> int:
        freed = super().ack(seq)
        if seq > 0 and seq == self.acked:
            self._on_ack(self.epoch, seq)
            if freed and self._pushed_at:
                now, pop = self._ack_clock(), self._pushed_at.popleft
                record = self._ack_us.append
                for _ in range(freed):
                    record(int((now - pop()) * 1_000_000))
        return freed

    def restart(self, epoch: int) -> None:
        old, abandoned = self.epoch, len(self.unacked())
        super().restart(epoch)
        self._pushed_at.clear()
        self._on_restart(old, epoch, abandoned)
