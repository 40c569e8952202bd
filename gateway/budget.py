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

A visitor's buckets belong to its session, not to one socket: the connection writes what is
left to the session metadata (`CarriedBudget`, wall-clock time) when it closes and, while
either bucket is under half full, at most once a second; the next visitor connection of the
session, on any gateway, starts from there (refilled for the time between). Otherwise a
flooder that reconnects, or opens a new connection that takes over the session, would get a
fresh 8 MiB burst every time. A takeover within the second after a save still starts at most
one second of refill (2 MiB) richer. Agents' buckets are per connection: agents hold tokens
from an API key, and an agent's events are pointer moves and clicks.

A session's visitor may also send at most `session_bytes` (4 GiB) over the session's life,
counted with the buckets and carried the same way: past it the connection is closed with
4011 `session_full` and further visitor hellos are refused, while agents keep watching what
is stored. At the full 2 MiB/s that is 34 minutes of flooding, while a page sending a 5 MiB
snapshot every minute and a 120 KiB canvas frame every second would take over 5 hours (an
estimate from those sizes, not a measurement). A crash of the gateway loses the count since
that connection's last save.

"Without a break" means: once a frame had to wait, the streak ends only when a frame is
admitted at once with both buckets still at least half full afterwards (`RECOVERED`). A
client that slips a tiny frame into the last tokens between its floods has not slowed down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

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
    session_bytes: float = 4096.0 * MIB  # a session's visitor, over its life (SESSION_CAP)

    def __post_init__(self) -> None:
        if self.session_bytes < MAX_FRAME_BYTES:
            raise ValueError(f"the session byte cap must hold one full frame ({MAX_FRAME_BYTES})")
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


class CarriedBudget(NamedTuple):
    """What a session's visitor had left in its buckets at `at` (unix s), and the bytes it
    had sent over the session's life, stored in the session metadata as
    [events, bytes, at, sent] for the next visitor connection."""

    events: float
    bytes: float
    at: float
    sent: float = 0.0


SAVE_EVERY = 1.0  # s between saves of a spending visitor's buckets (one KV write each)


class Budget:
    """The two buckets of one connection; they start full, or where the session left them."""

    __slots__ = ("s", "events", "bytes", "at", "over_since", "_held", "sent")

    def __init__(
        self,
        settings: BudgetSettings,
        now: float,
        carried: CarriedBudget | None = None,
        wall: float = 0.0,
    ) -> None:
        self.s = settings
        self.events = settings.event_burst
        self.bytes = settings.byte_burst
        self.at = now
        self.over_since: float | None = None  # start of the current streak over budget
        self._held = False  # the last answer was a wait: this take is that frame again
        self.sent = (
            0.0  # bytes taken over the session's life (carried from connection to connection)
        )
        if carried is not None:
            self.sent = max(0.0, carried.sent)
            # Another host's clock may be ahead: never refill for negative time. Values
            # from the KV are clamped, so a bad record cannot grant more than a burst.
            self.events = max(0.0, min(self.events, carried.events))
            self.bytes = max(0.0, min(self.bytes, carried.bytes))
            self._refill(max(0.0, wall - carried.at))

    def _refill(self, dt: float) -> None:
        s = self.s
        self.events = min(s.event_burst, self.events + dt * s.event_rate)
        self.bytes = min(s.byte_burst, self.bytes + dt * s.byte_rate)

    def carry(self, now: float, wall: float) -> CarriedBudget:
        """What is left at `now` (this connection's clock), stamped with wall time `wall`."""
        if now > self.at:
            self._refill(now - self.at)
            self.at = now
        return CarriedBudget(self.events, self.bytes, wall, self.sent)

    def session_full(self, nbytes: int = 0) -> bool:
        """Taking `nbytes` more would pass the session's lifetime byte cap (0: already at it)."""
        return self.sent + max(nbytes, 1) > self.s.session_bytes

    def exhaust_session(self) -> None:
        """A frame was refused for the cap: the session is full for every later connection
        too, though what it stored stops short of the cap."""
        self.sent = max(self.sent, self.s.session_bytes)

    def spent(self) -> bool:
        """Below either burst: what the session's next connection must not get back."""
        return self.events < self.s.event_burst or self.bytes < self.s.byte_burst

    def spending(self) -> bool:
        """Under half of either burst: worth saving for the session's next connection."""
        s = self.s
        return self.events < RECOVERED * s.event_burst or self.bytes < RECOVERED * s.byte_burst

    def take(self, events: int, nbytes: int, now: float) -> float:
        """GO (and the frame's cost is taken), a wait in seconds, or CLOSE."""
        s = self.s
        dt = now - self.at
        if dt > 0:
            self.at = now
            self._refill(dt)
        short_e = events - self.events
        short_b = nbytes - self.bytes
        if short_e <= 0 and short_b <= 0:
            self.events -= events
            self.bytes -= nbytes
            self.sent += nbytes
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
