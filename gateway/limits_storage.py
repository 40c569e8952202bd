"""The `limits` package's in-memory storage, swept inline instead of by a thread per 10 ms.

`limits.storage.MemoryStorage` (5.x) drops expired moving-window entries in a 10 ms
`threading.Timer`, started again on the next hit once the last one ended, which walks every
key it holds. A gateway counts new sessions per client address with it (`address_limit.py`),
the router its creates and lookups. Measured here (one process, `limits.parse("120/minute")`,
interleaved, twice):

- with 50,000 addresses in the window, 2,000 more handshakes 1 ms apart cost 5.3 ms of CPU
  each (the sweeper threads held 91-92 % of a core) and the slowest hit waited 37-40 ms for
  the GIL; with this storage 0.09-0.11 ms each (8-9 %, a third of it the loop's own
  sleeps), the slowest 1.1-1.4 ms (with a pass every second: 0.22-0.27 ms, the slowest
  5 ms). A flood from many addresses, which the limit is there for, no longer turns the
  limit itself into the load;
- its sweep leaves an empty list per key for good: 100,000 addresses seen once kept 100,001
  keys and 18.6 MB after their window, against 1 key here;
- hits more than 10 ms apart start a thread each: 0.92-1.04 ms of CPU per hit against
  0.24-0.27 (0.08 of it the loop's sleep). In the router's create (about 9 ms of CPU) that did
  not show above the noise.

`SweptMemoryStorage` keeps the package's limiter and window arithmetic and replaces only that
sweep: each hit trims at most `SWEEP_BATCH` keys on the caller's thread, a pass over all keys
starts at most every `SWEEP_EVERY` seconds, and a key left with no entries is removed. The
moving window (the only strategy used here) reads its entries' times itself, so a late sweep
changes memory, never an answer. One thread (trio's) uses it.
"""

from __future__ import annotations

import bisect
import time

from limits.storage import MemoryStorage

# Seconds between the starts of two passes over every key. Entries live as long as their
# window (a minute for the defaults), so 10 s keeps at most about a sixth more keys than are
# live, for a tenth of the CPU of a pass every second (about 2 µs a key).
SWEEP_EVERY = 10.0
SWEEP_BATCH = 256  # keys trimmed per hit at most: a pass never stalls the event loop


class SweptMemoryStorage(MemoryStorage):
    """`MemoryStorage` for `MovingWindowRateLimiter`, with no sweeper thread."""

    def __init__(self, sweep_every: float = SWEEP_EVERY) -> None:
        super().__init__()
        self.timer.cancel()  # the one MemoryStorage starts in __init__
        self.sweep_every = sweep_every
        self._pending: list[str] = []  # keys this pass has still to trim
        self._next_pass = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (overrides limits' private hook)
        """Called by MemoryStorage before every hit (its name-mangled `__schedule_expiry`)."""
        now = time.time()
        if not self._pending:
            if now < self._next_pass:
                return
            self._next_pass = now + self.sweep_every
            self._pending = list(self.events)
        for _ in range(min(SWEEP_BATCH, len(self._pending))):
            self._trim(self._pending.pop(), now)

    def _trim(self, key: str, now: float) -> None:
        events = self.events.get(key)
        if events:  # newest first: keep those not yet expired
            del events[bisect.bisect_left(events, -now, key=lambda e: -e.expiry) :]
        if not events:
            self.events.pop(key, None)
            self.locks.pop(key, None)
