"""Micro-benchmarks of the sans-I/O cores for `python -m loadtest bench`.

Plain loops, bounded in count, timed with perf_counter, in the bench's own process while
no server runs: the frame codec (encode + decode of an events frame), the reorder buffer
(pushes in order, and shuffled within windows as the live path and stream fills overlap),
and the admission token bucket's `try_take`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from gateway.admission import TokenBucket
from gateway.codec import VISITOR_KINDS, Event, Events, decode_frame, encode_frame
from gateway.reorder import ReorderBuffer


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


BIG_CSS = (
    Path(__file__).resolve().parents[2]  # the checkout
    / "tests/corpus/rrweb-fixtures/rrweb-snapshot/test/css/benchmark.css"
)


def css_rewrite(repeats: int) -> dict:
    """The proxy's rewriter on a large real stylesheet (rrweb's benchmark.css, 250 KB, from
    the checkout's copy of the corpus), and a cached hit: the service's byte-bounded LRU lookup."""
    from proxy.cache import ByteLRU, Entry
    from proxy.rewrite import rewrite

    if BIG_CSS.exists():
        css, source = BIG_CSS.read_text(errors="replace"), BIG_CSS.name
    else:  # no corpus in the checkout: a generated sheet of a similar size
        rules = [
            f".c{i}:hover > a, .d{i} {{ color: red; background: url(i{i}.png) }}"
            for i in range(4000)
        ]
        css, source = "\n".join(rules), "generated"
    sign = lambda url: "/v1/asset?u=" + url  # noqa: E731 - signing is measured elsewhere
    times = []
    out = ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = rewrite(css, "https://site.example/css/main.css", sign).css
        times.append(time.perf_counter() - t0)
    cache = ByteLRU(64 * 2**20)
    cache.put(("u", "s"), Entry(out.encode(), "text/css", None, None, float("inf")))
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        cache.get(("u", "s"))
    hit = (time.perf_counter() - t0) / n
    return {
        "source": source,
        "css_bytes": len(css.encode()),
        "rewrite_ms": round(sorted(times)[len(times) // 2] * 1000, 1),
        "cached_hit_us": round(hit * 1e6, 2),
        "note": f"{source} {len(css.encode()) // 1024} KB; hit = in-process cache lookup",
    }


def run_all(quick: bool) -> dict:
    k = 1 if not quick else 0.2
    return {
        "css_rewrite": css_rewrite(5 if not quick else 1),
        "codec": codec(int(5000 * k)),
        "reorder_in_order": reorder(int(200_000 * k), shuffled=False),
        "reorder_shuffled": reorder(int(200_000 * k), shuffled=True),
        "token_bucket": token_bucket(int(300_000 * k)),
    }
