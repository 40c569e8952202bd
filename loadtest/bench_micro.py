"""Micro-benchmarks of the sans-I/O cores for `python -m loadtest bench`.

Plain loops, bounded in count, timed with perf_counter, in the bench's own process while
no server runs: the frame codec (encode + decode of an events frame), the reorder buffer
(pushes in order, and shuffled within windows as the live path and stream fills overlap),
and the admission token bucket's `try_take`.
"""

from __future__ import annotations

import random
import time

from gateway.codec import VISITOR_KINDS, Event, Events, decode_frame, encode_frame
from gateway.reorder import ReorderBuffer
from router.admission import TokenBucket


def _timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return max(time.perf_counter() - t0, 1e-9)


def codec(frames: int, events_per_frame: int = 32, payload: int = 100) -> dict:
    body = b"x" * payload
    evs = [
        Event(i + 1, "mutation", 1_700_000_000_000 + i, {"t": 12345.678, "d": body})
        for i in range(events_per_frame)
    ]
    frame = Events(epoch=1, events=evs)
    size = len(encode_frame(frame))

    def run(n: int) -> None:
        for _ in range(n):
            decode_frame(encode_frame(frame), allowed_kinds=VISITOR_KINDS)

    run(min(200, frames))  # warm-up
    secs = _timed(run, frames)
    single = Events(epoch=1, events=evs[:1])

    def run1(n: int) -> None:
        for _ in range(n):
            decode_frame(encode_frame(single), allowed_kinds=VISITOR_KINDS)

    n1 = frames * 4
    secs1 = _timed(run1, n1)
    return {
        "frames": frames,
        "events_per_frame": events_per_frame,
        "frame_bytes": size,
        "payload_bytes": payload,
        "frames_per_s": round(frames / secs, 1),
        "events_per_s": round(frames * events_per_frame / secs, 1),
        "single_event_frames_per_s": round(n1 / secs1, 1),
    }


def reorder(n: int, shuffled: bool, window: int = 64, seed: int = 7) -> dict:
    order = list(range(1, n + 1))
    if shuffled:
        rng = random.Random(seed)
        for i in range(0, n, window):
            block = order[i : i + window]
            rng.shuffle(block)
            order[i : i + window] = block
    buf = ReorderBuffer(1, 1, max_pending=n + 1)
    released = 0
    t0 = time.perf_counter()
    for s in order:
        released += len(buf.push(1, s, s, 0.0))
    secs = max(time.perf_counter() - t0, 1e-9)
    if released != n:
        raise AssertionError(f"reorder released {released} of {n}")
    note = f"shuffled within windows of {window}" if shuffled else "each push releases one"
    return {"pushes": n, "ops_per_s": round(n / secs, 1), "note": note}


def token_bucket(n: int) -> dict:
    bucket = TokenBucket(rate=1000.0, burst=100.0, now=0.0)
    taken = 0
    t0 = time.perf_counter()
    now = 0.0
    for _ in range(n):
        now += 0.0005  # 2,000 attempts/s against a 1,000/s bucket: about half succeed
        taken += bucket.try_take(now)
    secs = max(time.perf_counter() - t0, 1e-9)
    return {
        "calls": n,
        "ops_per_s": round(n / secs, 1),
        "admitted": taken,
        "note": f"{taken / n:.0%} admitted at 2x the rate",
    }


def run_all(quick: bool) -> dict:
    k = 1 if not quick else 0.2
    return {
        "codec": codec(int(5000 * k)),
        "reorder_in_order": reorder(int(200_000 * k), shuffled=False),
        "reorder_shuffled": reorder(int(200_000 * k), shuffled=True),
        "token_bucket": token_bucket(int(300_000 * k)),
    }
