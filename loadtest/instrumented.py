"""The hooks the verifier needs inside a client: the sequencer reports what it numbers and
what the gateway acks, and the stats sort refused handshakes by admission lane."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from gateway.client import Client, ClientStats
from gateway.sequencer import Sequencer


@dataclass
class LaneStats(ClientStats):
    """ClientStats that also sorts refused handshakes by admission lane: a client without a
    resume token asks the new-session lane, one with a resume token the resume lane."""

    rejected_new: int = 0
    rejected_resume: int = 0

    def bind(self, client: Client) -> LaneStats:
        object.__setattr__(self, "_owner", client)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        owner = self.__dict__.get("_owner")
        if name == "rejected" and owner is not None:
            lane = "rejected_new" if owner.rt is None else "rejected_resume"
            object.__setattr__(self, lane, getattr(self, lane) + value - self.rejected)
        object.__setattr__(self, name, value)


class RecordingSequencer(Sequencer):
    """The client's sequencer, reporting what it numbers and what the gateway acks, and
    (with `on_acked_after`) how long each event waited for its ack: the time to durable."""

    def __init__(self, on_push, on_ack, on_restart, *, on_acked_after=None, clock=None, **kw):
        self._on_push, self._on_ack, self._on_restart = on_push, on_ack, on_restart
        self._on_acked_after = on_acked_after
        self._clock = clock or time.time
        self._pushed_at: deque[tuple[int, float]] = deque()
        super().__init__(**kw)

    def push(self, kind, ts, payload):
        ev = super().push(kind, ts, payload)
        if self._on_acked_after is not None:
            self._pushed_at.append((ev.seq, self._clock()))
        self._on_push(self.epoch, ev.seq)
        return ev

    def ack(self, seq: int) -> int:
        freed = super().ack(seq)
        if seq > 0 and seq == self.acked:
            self._on_ack(self.epoch, seq)
            if self._pushed_at and self._pushed_at[0][0] <= seq:
                now = self._clock()
                while self._pushed_at and self._pushed_at[0][0] <= seq:
                    self._on_acked_after(now - self._pushed_at.popleft()[1])
        return freed

    def restart(self, epoch: int) -> None:
        old, abandoned = self.epoch, len(self.unacked())
        super().restart(epoch)
        self._pushed_at.clear()
        self._on_restart(old, epoch, abandoned)
