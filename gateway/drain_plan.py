"""When each client of a draining gateway is told to reconnect (G2), sans-I/O.

NATS lame-duck mode: notices go out one by one, spread over the drain window with random
pauses. Centrifugo and Socket.IO close every client at once, and the reconnect storm lands
on the remaining gateways in one instant.
"""

from __future__ import annotations

import math
import random
from typing import TypeVar

T = TypeVar("T")


def spread_stats(
    times: list[float], start: float, window: float, buckets: int = 10
) -> dict[str, object]:
    """How evenly `times` cover [start, start + window): the measure of G2's spread that
    tests/gateway/test_drain_plan.py and tests/gateway/test_drain.py check plans and real drains against.

    Keys: `counts` (notices per 1/buckets of the window), `max`, `min` (of counts), `n`,
    `outside` (times not in the window, left out of counts), `first` and `last` (offsets
    from start, None when there are no times).
    """
    if not window > 0:
        raise ValueError(f"window must be > 0, got {window!r}")
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets!r}")
    counts = [0] * buckets
    outside = 0
    for t in times:
        offset = t - start
        if not 0 <= offset < window:
            outside += 1
            continue
        counts[min(int(offset / window * buckets), buckets - 1)] += 1
    offsets = sorted(t - start for t in times)
    return {
        "counts": counts,
        "max": max(counts),
        "min": min(counts),
        "n": len(times),
        "outside": outside,
        "first": offsets[0] if offsets else None,
        "last": offsets[-1] if offsets else None,
    }


class DrainPlanner:
    """One slot of window/n per client, a random instant in each, in a shuffled order.

    One jittered point per slot (rather than n uniform points) bounds the crowding: any
    stretch of the window holds at most one notice more than its fair share.
    """

    def __init__(self, window: float, rng: random.Random) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a finite number > 0, got {window!r}")
        self.window = float(window)
        self._rng = rng

    def plan(self, items: list[T], now: float) -> list[tuple[float, T]]:
        """(time, item) pairs, sorted by time, every time in [now, now + window)."""
        n = len(items)
        if n == 0:
            return []
        order = list(items)
        self._rng.shuffle(order)  # so that no client is always the first to go
        # (i + u) and the sums below can round up to the window's end: keep inside it.
        latest = max(now, math.nextafter(now + self.window, -math.inf))
        out = [
            (min(now + (i + self._rng.random()) * self.window / n, latest), item)
            for i, item in enumerate(order)
        ]
        # In order already but for rounding; sort on time only, items need not compare.
        out.sort(key=lambda pair: pair[0])
        return out


RECONNECT_JITTER = 0.25
"""Seconds: the notices are already spread one slot per client over the drain window, so the
jitter only has to part clients of one slot. Every client's events wait out its delay, so a
longer one shows directly in the latency of a drain (p99 0.7-0.86 s with 1 s here)."""


def reconnect_delay(rng: random.Random, cap: float = RECONNECT_JITTER) -> float:
    """Uniform in [0, cap): clients noticed at the same instant must not arrive together.

    cap == 0 turns the jitter off and returns 0.0.
    """
    if not (cap >= 0 and math.isfinite(cap)):
        raise ValueError(f"cap must be a finite number >= 0, got {cap!r}")
    if cap == 0:
        return 0.0
    return min(rng.random() * cap, math.nextafter(cap, 0.0))
