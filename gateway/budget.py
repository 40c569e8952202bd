"""A connection's send budget: two token buckets, events per second and bytes per second.

Sans-I/O: `Budget.take(events, nbytes, now)` is asked once per `ev` frame a client sends and
answers with a float: `GO` (0.0: publish it), a wait in seconds (hold the frame, read nothing
more from the socket, ask again with the same frame after that long: back-pressure through
TCP), or `CLOSE` (the client has wanted more than its rate for `grace` seconds without a
break: close with 4010 `over_budget`). A frame is admitted only when both buckets hold its
cost, so over any interval of length t a connection gets at most `rate * t + burst` bytes
(and events) into JetStream, however it sends.

The defaults are sized for a real page (docs/protocol.md, "Budgets"):

- bytes: 2 MiB/s sustained, 8 MiB burst. A first snapshot of a heavy page is 1-5 MiB and
  must go through at once (it is what an agent waits for); a canvas burst of 8 x 120 KiB
  (1 MiB) on top fits; a page streaming a canvas at 10 x 120 KiB/s (1.2 MiB/s) stays under
  the rate. A sustained flood of 20 MiB/s (issue 12: 97 MiB in 4.4 s) is cut to 2 MiB/s
  after the first 8 MiB.
- events: 1,000/s sustained, 10,000 burst. A busy page sends 20-200 events/s (mouse moves
  at 60 Hz, mutations, scrolls); a snapshot of a big document is a few hundred chunks and
  a frame at most 512 events.
- grace: 10 s over budget without a break before the close: a legitimate page that sends
  three 5 MiB snapshots back to back (agents joining) waits (15 - 8) / 2 = 3.5 s, slowed,
  not closed; a 20 MiB/s flood empties the burst in 0.4 s and is closed 10 s later, having
  stored at most 8 + 2 * 10.4 = 29 MiB (instead of 200 MiB).

"Without a break" means: once a frame had to wait, the streak ends only when a frame is
admitted at once with both buckets still at least half full afterwards (`RECOVERED`). A
client that slips a tiny frame into the last tokens between its floods has not slowed down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .codec import MAX_EVENTS_PER_BATCH, MAX_FRAME_BYTES

MIB = 1024 * 1024

GO = 0.0
CLOSE = math.inf  # over budget for the grace period: close with Close.OVER_BUDGET
RECOVERED = 0.5  # fraction of each burst left after an immediate admit that ends a streak
MIN_WAIT = 0.001  # a wait shorter than a timer's resolution would be asked again and again


@dataclass(frozen=True)
class BudgetSettings:
    """One connection's rates and bursts; a burst holds at least the largest frame (1 MiB,
    512 events), so any single valid frame can be admitted."""

    event_rate: float = 1000.0
    event_burst: float = 10_000.0
    byte_rate: float = 2.0 * MIB
    byte_burst: float = 8.0 * MIB
    grace: float = 10.0

    def __post_init__(self) -> None:
        if self.event_rate <= 0 or self.byte_rate <= 0 or self.grace < 0:
            raise ValueError("budget rates must be > 0 and the grace period >= 0")
        if self.event_burst < MAX_EVENTS_PER_BATCH or self.byte_burst < MAX_FRAME_BYTES:
            raise ValueError(
                f"budget bursts must hold one full frame ({MAX_EVENTS_PER_BATCH} events, "
                f"{MAX_FRAME_BYTES} bytes)"
            )

    @property
    def longest_wait(self) -> float:
        """The longest single wait `take` can answer: an empty bucket refilling one burst."""
        return max(MIN_WAIT, self.event_burst / self.event_rate, self.byte_burst / self.byte_rate)


class Budget:
    """The two buckets of one connection; they start full."""

    __slots__ = ("s", "events", "bytes", "at", "over_since", "_held")

    def __init__(self, settings: BudgetSettings, now: float) -> None:
        self.s = settings
        self.events = settings.event_burst
        self.bytes = settings.byte_burst
        self.at = now
        self.over_since: float | None = None  # start of the current streak over budget
        self._held = False  # the last answer was a wait: this take is that frame again

    def take(self, events: int, nbytes: int, now: float) -> float:
        """GO (and the frame's cost is taken), a wait in seconds, or CLOSE."""
        s = self.s
        dt = now - self.at
        if dt > 0:
            self.at = now
            self.events = min(s.event_burst, self.events + dt * s.event_rate)
            self.bytes = min(s.byte_burst, self.bytes + dt * s.byte_rate)
        short_e = events - self.events
        short_b = nbytes - self.bytes
        if short_e <= 0 and short_b <= 0:
            self.events -= events
            self.bytes -= nbytes
            if (
                not self._held
                and self.over_since is not None
                and self.events >= RECOVERED * s.event_burst
                and self.bytes >= RECOVERED * s.byte_burst
            ):
                self.over_since = None
            self._held = False
            return GO
        if self.over_since is None:
            self.over_since = now
        elif now - self.over_since >= s.grace:
            return CLOSE
        self._held = True
        return max(MIN_WAIT, short_e / s.event_rate, short_b / s.byte_rate)
