"""The gateway's native trio NATS client against nats-py under trio-asyncio (gateway.nats_bridge).

One process, one nats-server (started here on loopback unless --url is given), the same
workloads through both, each bounded by a count and by --max-seconds:

- core: publish -> subscribe of 100-byte messages on one connection (messages/s from the
  first publish to the last message received). The native client publishes 1000 per turn;
  the bridge has one call per publish (`publish_core`), as the gateway's core path uses it.
- JetStream publish + ack round trips/s, with 1 publish in flight and with 100: the native
  client as `request()` per publish (and, at 100, also callback-style: publishes with a
  reply token on one wildcard inbox, as the gateway's publish chain uses it); nats-py's
  `js.publish` through the bridge, one crossing per publish.

    python -m loadtest.bench.nats_clients [--url nats://127.0.0.1:4222] [--msgs 200000] [--js 20000]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog
import trio

from gateway.nats_client import Msg, NatsClient

CORE_SUBJECT = "bench.nats.core"
STREAM = "BENCHNATS"
PAYLOAD = b"x" * 100


class Counter:
    """Counts completions; `done` is set once `target` is reached (the target may drop)."""

    def __init__(self, target: int) -> None:
        self.n = 0
        self.target = target
        self.last = 0.0
        self.done = trio.Event()

    def hit(self, *_args: object) -> None:
        self.n += 1
        if self.n >= self.target:
            self.last = time.perf_counter()
            self.done.set()

    def lower(self, target: int) -> None:
        self.target = target
        if self.n >= target:
            self.last = self.last or time.perf_counter()
            self.done.set()


def rate(count: int, seconds: float) -> float:
    return round(count / max(seconds, 1e-9), 1)


async def timed_publishes(
    publish_batch: Callable, n: int, counter: Counter, max_s: float, batch: int = 1000
) -> float:
    """Publish up to n (in awaited batches) within max_s; seconds until all arrived."""
    t0 = time.perf_counter()
    sent = 0
    while sent < n and time.perf_counter() - t0 < max_s:
        k = min(batch, n - sent)
        await publish_batch(k)
        sent += k
    counter.lower(sent)
    with trio.fail_after(60):
        await counter.done.wait()
    return counter.last - t0


# ---- the native client -------------------------------------------------------------------


async def with_cpu(run: Callable) -> dict:
    """`await run()` (a dict with "msgs" or "acks"), plus this process's CPU per operation:
    the figure that matters for a gateway, and steadier than rates on a shared machine."""
    c0 = time.process_time()
    out = await run()
    ops = out.get("msgs") or out.get("acks") or 1
    out["cpu_us_per_op"] = round((time.process_time() - c0) / ops * 1e6, 1)
    return out


async def native(url: str, a: argparse.Namespace) -> dict:
    out: dict = {}
    async with NatsClient.open(url) as nc:
        await ensure_stream(nc)
        await native_core(nc, 2000, a.max_seconds)  # warm-up
        out["core"] = await with_cpu(lambda: native_core(nc, a.msgs, a.max_seconds))
        n1 = min(a.js, 5000)
        out["js_1"] = await with_cpu(lambda: native_js_tasks(nc, "n1", n1, 1, a.max_seconds))
        out["js_100"] = await with_cpu(
            lambda: native_js_tasks(nc, "n100", a.js, 100, a.max_seconds)
        )
        out["js_100_callbacks"] = await with_cpu(
            lambda: native_js_callbacks(nc, "ncb", a.js, 100, a.max_seconds)
        )
    return out


async def native_core(nc: NatsClient, n: int, max_s: float) -> dict:
    """1000 publishes per run-loop turn, one subscription counting them."""
    counter = Counter(n)
    sub = nc.subscribe(CORE_SUBJECT, counter.hit)
    await nc.flush()

    async def batch(k: int) -> None:
        for _ in range(k):
            nc.publish(CORE_SUBJECT, PAYLOAD)
        await trio.lowlevel.checkpoint()  # the turn ends: one send, the reader runs

    secs = await timed_publishes(batch, n, counter, max_s)
    nc.unsubscribe(sub)
    return {"msgs": counter.n, "msgs_per_s": rate(counter.n, secs)}


async def ensure_stream(nc: NatsClient) -> None:
    cfg = {
        "name": STREAM,
        "subjects": ["benchjs.>"],
        "storage": "memory",
        "duplicate_window": 120_000_000_000,
        "allow_direct": True,
    }
    reply = await nc.request(f"$JS.API.STREAM.CREATE.{STREAM}", json.dumps(cfg).encode(), timeout=5)
    resp = json.loads(reply.data or b"{}")
    if "error" in resp and resp["error"].get("err_code") != 10058:  # 10058: already exists
        raise RuntimeError(f"stream create failed: {resp}")


def check_ack(msg: Msg) -> None:
    if msg.status is not None or b'"error"' in msg.data:
        raise RuntimeError(f"JetStream publish failed: {msg.status} {msg.data[:200]!r}")
    json.loads(msg.data)  # the gateway parses every ack; so does the bench


async def native_js_tasks(nc: NatsClient, run: str, n: int, inflight: int, max_s: float) -> dict:
    """`inflight` tasks, each awaiting one request() at a time."""
    subject = f"benchjs.{run}"
    t0 = time.perf_counter()
    done = 0

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while i < n and time.perf_counter() - t0 < max_s:
            ack = await nc.request(
                subject, PAYLOAD, headers={"Nats-Msg-Id": f"{run}-{i}"}, timeout=10
            )
            check_ack(ack)
            done += 1
            i += inflight

    async with trio.open_nursery() as nursery:
        for w in range(inflight):
            nursery.start_soon(worker, w)
    return {"acks": done, "acks_per_s": rate(done, time.perf_counter() - t0)}


async def native_js_callbacks(
    nc: NatsClient, run: str, n: int, inflight: int, max_s: float
) -> dict:
    """No task per publish: replies to `<inbox>.<i>` reach one handler, which publishes the
    next while under n and max_s."""
    subject = f"benchjs.{run}"
    inbox = nc.new_inbox()
    counter = Counter(n)
    t0 = time.perf_counter()
    next_i = 0

    def send() -> None:
        nonlocal next_i
        i, next_i = next_i, next_i + 1
        nc.publish(subject, PAYLOAD, reply=f"{inbox}.{i}", headers={"Nats-Msg-Id": f"{run}-{i}"})

    def on_ack(msg: Msg) -> None:
        check_ack(msg)
        counter.hit()
        if next_i < n and time.perf_counter() - t0 < max_s:
            send()
        elif counter.n == next_i:
            counter.lower(counter.n)

    sub = nc.subscribe(inbox + ".*", on_ack)
    await nc.flush()
    t0 = time.perf_counter()
    for _ in range(min(inflight, n)):
        send()
    with trio.fail_after(max_s + 30):
        await counter.done.wait()
    nc.unsubscribe(sub)
    return {"acks": counter.n, "acks_per_s": rate(counter.n, counter.last - t0)}


# ---- nats-py under trio-asyncio ----------------------------------------------------------------


async def bridged(url: str, a: argparse.Namespace) -> dict:
    from gateway.nats_bridge import open_bridge

    out: dict = {}
    async with open_bridge(url) as bridge:
        await bridge_core(bridge, 1000, a.max_seconds)  # warm-up
        out["core"] = await with_cpu(lambda: bridge_core(bridge, a.msgs, a.max_seconds))
        n1 = min(a.js, 5000)
        out["js_1"] = await with_cpu(lambda: bridge_js(bridge, "b1", n1, 1, a.max_seconds))
        out["js_100"] = await with_cpu(lambda: bridge_js(bridge, "b100", a.js, 100, a.max_seconds))
    return out


async def bridge_core(bridge, n: int, max_s: float) -> dict:
    """One bridge call per publish (`publish_core`), one subscription counting them."""
    counter = Counter(n)
    sub = await bridge.subscribe(CORE_SUBJECT, counter.hit)

    async def batch(k: int) -> None:
        for _ in range(k):
            await bridge.publish_core(CORE_SUBJECT, PAYLOAD)

    secs = await timed_publishes(batch, n, counter, max_s, batch=100)
    await bridge.unsubscribe(sub)
    return {"msgs": counter.n, "msgs_per_s": rate(counter.n, secs)}


async def bridge_js(bridge, run: str, n: int, inflight: int, max_s: float) -> dict:
    """nats-py's JetStream publish (one awaited ack each) from `inflight` tasks, one bridge
    crossing per publish. (The gateway's old batched publish pump, retired with the native
    client, measured 410-1,130 acks/s with 1 in flight and 5.6k-11.9k with 100 here.)"""
    subject = f"benchjs.{run}"
    counter = Counter(n)
    t0 = time.perf_counter()
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < n and time.perf_counter() - t0 < max_s:
            i, next_i = next_i, next_i + 1
            await bridge.call(
                bridge.js.publish, subject, PAYLOAD, headers={"Nats-Msg-Id": f"{run}-{i}"}
            )
            counter.hit()

    with trio.fail_after(max_s + 30):
        async with trio.open_nursery() as nursery:
            for _ in range(min(inflight, n)):
                nursery.start_soon(worker)
    counter.lower(counter.n)
    return {"acks": counter.n, "acks_per_s": rate(counter.n, counter.last - t0)}


# ---- the run -----------------------------------------------------------------------------------


ROWS = (
    ("core", "msgs_per_s", "core pub->sub, 100 B, msgs/s"),
    ("js_1", "acks_per_s", "JetStream publish+ack, 1 in flight, /s"),
    ("js_100", "acks_per_s", "JetStream publish+ack, 100 in flight, /s"),
)


def report(nat: dict, bri: dict) -> str:
    head = f"{'':44} {'native':>9} {'bridge':>9} {'ratio':>6}   CPU us/op: native bridge"
    lines = [head]
    rows = [*ROWS, ("js_100_callbacks", "acks_per_s", "  native with callbacks, not request()")]
    for key, field, label in rows:
        n, b = nat[key], bri[key if key in bri else "js_100"]
        x, y = n[field], b[field]
        cpu = f"{n['cpu_us_per_op']:>7.1f} {b['cpu_us_per_op']:>6.1f}"
        lines.append(f"{label:44} {x:>9,.0f} {y:>9,.0f} {x / y:>5.1f}x {' ' * 12}{cpu}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench.nats_clients")
    p.add_argument("--url", help="an existing nats-server (default: start one on loopback)")
    p.add_argument("--msgs", type=int, default=200_000, help="core messages per client")
    p.add_argument("--js", type=int, default=20_000, help="JetStream publishes per run")
    p.add_argument("--max-seconds", type=float, default=5.0, help="bound of each run")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as tmp:
        url = a.url
        if url is None:
            from router import natsproc

            server = natsproc.start_single(Path(tmp))
            url = server.url
        try:
            nat = trio.run(native, url, a)
            bri = trio.run(bridged, url, a)
        finally:
            if server is not None:
                server.stop()
    print(report(nat, bri))
    if a.json:
        print(json.dumps({"native": nat, "bridge": bri}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
