"""The `limits` storage swept inline: the same answers as the package's own, no thread per
hit, and memory that follows the live keys, not every key ever seen."""

from __future__ import annotations

import threading
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gateway import limits_storage
from gateway.limits_storage import SweptMemoryStorage


def timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_the_answers_are_the_packages_own():
    """A moving window of 3 a second, hit in the same pattern on both storages."""
    item = limits.parse("3/second")
    ours = MovingWindowRateLimiter(SweptMemoryStorage())
    theirs = MovingWindowRateLimiter(MemoryStorage())
    for pause in (0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.8, 0.0, 0.0, 0.4, 0.0):  # 100 ms from an edge
        time.sleep(pause)
        for who in ("a", "b"):
            got = ours.hit(item, "new", who)
            assert got == theirs.hit(item, "new", who), (pause, who)
    # the window moved: the first three fell out of it, so one hit here was admitted again
    stats = ours.get_window_stats(item, "new", "a")
    assert stats.remaining == theirs.get_window_stats(item, "new", "a").remaining


def test_no_thread_is_started_per_hit():
    """MemoryStorage starts a 10 ms Timer thread on a hit once its last one ended: one per
    request when they are more than 10 ms apart."""
    item = limits.parse("1000/second")
    ours = MovingWindowRateLimiter(SweptMemoryStorage())
    time.sleep(0.02)  # the Timer MemoryStorage.__init__ started, cancelled, has ended
    assert not timer_threads()
    for i in range(5):
        assert ours.hit(item, "new", f"10.0.0.{i}")
        assert not timer_threads()
        time.sleep(0.012)
    theirs = MovingWindowRateLimiter(MemoryStorage())  # the check can fail
    time.sleep(0.02)
    theirs.hit(item, "new", "10.0.0.1")
    assert timer_threads()


def test_expired_keys_go_in_bounded_steps():
    """1,000 addresses each hit once under 1 per 2 s, then none: once their window has
    passed, a hit trims at most SWEEP_BATCH keys, and the next passes remove every key with
    no live entry (the package's sweep keeps an empty list per key for good)."""
    item = limits.parse("1 per 2 seconds")
    storage = SweptMemoryStorage(sweep_every=0.0)  # a new pass as soon as one ends
    lim = MovingWindowRateLimiter(storage)
    t0 = time.monotonic()
    for i in range(1000):
        assert lim.hit(item, "new", f"10.1.{i // 256}.{i % 256}")
    assert time.monotonic() - t0 < 2.0, "too slow to test: the first keys expired meanwhile"
    assert len(storage.events) == 1000  # trimmed, but every one still in its window
    time.sleep(2.1)
    assert lim.hit(item, "new", "fresh")
    assert len(storage.events) >= 1001 - limits_storage.SWEEP_BATCH  # one batch, not all
    for _ in range(1000 // limits_storage.SWEEP_BATCH + 2):
        lim.hit(item, "new", "fresh")
    assert len(storage.events) == 1 and "fresh" in next(iter(storage.events)), len(storage.events)
    assert list(storage.locks) == list(storage.events)
    assert not lim.hit(item, "new", "fresh")  # its own window still counts
