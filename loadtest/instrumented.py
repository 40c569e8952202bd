"""The hooks the verifier needs inside a client: the sequencer reports what it numbers and
what the gateway acks, and the stats sort refused handshakes by admission lane."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from gateway.client import Client, ClientStats
from gateway.sequencer import Sequencer


@dataclass
class LaneStats(ClientStats):
    """ClientStats that also sorts refused handshakes by admission lane: a client without a
    resume token asks the new-session lane, one with a resume token the resume lane.

    `rejected` is a property here, so that the other counters (the protocol core bumps
    `duplicates_dropped` and `gaps` on every frame) stay plain attributes."""

    rejected_new: int = 0
    rejected_resume: int = 0

    def bind(self, client: Client) -> LaneStats:
        self._owner = client
        return self


def _get_rejected(self: LaneStats) -> int:
    return self.__dict__.get("_rejected", 0)


def _set_rejected(self: LaneStats, value: int) -> None:
    owner = self.__dict__.get("_owner")
    if owner is not None:
        lane = "rejected_new" if owner.rt is None else "rejected_resume"
        setattr(self, lane, getattr(self, lane) + value - self.rejected)
    self.__dict__["_rejected"] = value


# Set after the dataclass is made: its __init__ still takes and sets `rejected`.
LaneStats.rejected = property(_get_rejected, _set_rejected)  # type: ignore[assignment]


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
