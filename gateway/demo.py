"""`python -m gateway.demo`: a headless visitor and agent against a running cluster.

Shows the data path working and prints two figures: events per second end to end through
one gateway process (visitor -> JetStream -> agent), and visitor-to-agent latency at a
steady moderate rate. Reads gateway URLs and dev keys from .run/cluster.json (`make run`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from pathlib import Path

import trio

from gateway import tokens

from .client import Client


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))] if s else float("nan")


async def _pair(url: str, keyring: tokens.Keyring, nursery) -> tuple[Client, Client]:
    sid = "demo-" + secrets.token_hex(6)
    now = time.time()
    visitor = Client(
        [url], sid, tokens.mint(keyring, sid=sid, role="visitor", now=now, ttl=3600), "visitor"
    )
    agent = Client(
        [url], sid, tokens.mint(keyring, sid=sid, role="agent", now=now, ttl=3600), "agent"
    )
    await nursery.start(visitor.run)
    await visitor.send_snapshot(b"<html><body>demo</body></html>")
    await visitor.wait_acked(1)
    await nursery.start(agent.run)
    with trio.fail_after(10):
        await agent.events.receive()  # the snapshot
    return visitor, agent


async def throughput(url: str, keyring: tokens.Keyring, n: int, payload: int) -> dict:
    async with trio.open_nursery() as nursery:
        visitor, agent = await _pair(url, keyring, nursery)
        body = b"x" * payload
        t0 = time.perf_counter()

        async def send_all():
            for i in range(n):
                await visitor.send("mutation", {"i": i, "d": body})

        nursery.start_soon(send_all)
        with trio.fail_after(300):
            for _ in range(n):
                await agent.events.receive()
        elapsed = time.perf_counter() - t0
        visitor.close()
        agent.close()
        nursery.cancel_scope.cancel()
    return {
        "events": n,
        "payload_bytes": payload,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
    }


async def latency(
    url: str, keyring: tokens.Keyring, rate: float, seconds: float, payload: int
) -> dict:
    lat: list[float] = []
    async with trio.open_nursery() as nursery:
        visitor, agent = await _pair(url, keyring, nursery)
        body = b"x" * payload
        n = int(rate * seconds)

        async def send_paced():
            start = trio.current_time()
            for i in range(n):
                await trio.sleep_until(start + i / rate)
                await visitor.send("mutation", {"t": time.perf_counter(), "d": body})

        nursery.start_soon(send_paced)
        with trio.fail_after(seconds + 60):
            for _ in range(n):
                d = await agent.events.receive()
                lat.append((time.perf_counter() - d.payload["t"]) * 1000)
        visitor.close()
        agent.close()
        nursery.cancel_scope.cancel()
    return {
        "rate_per_s": rate,
        "events": len(lat),
        "p50_ms": round(_pct(lat, 50), 2),
        "p99_ms": round(_pct(lat, 99), 2),
        "max_ms": round(max(lat), 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.demo", description=__doc__)
    p.add_argument("--cluster", default=".run/cluster.json")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--payload", type=int, default=100, help="bytes of filler per event")
    p.add_argument("--rate", type=float, default=500.0, help="events/s for the latency run")
    p.add_argument("--seconds", type=float, default=10.0)
    a = p.parse_args(argv)
    info = json.loads(Path(a.cluster).read_text())
    url = info["gateways"][0]["url"]
    keyring = tokens.Keyring.parse(info["token_keys"])
    t = trio.run(throughput, url, keyring, a.events, a.payload)
    print(
        f"throughput via {url}: {t['events']} events of {a.payload} B in {t['seconds']} s = {t['events_per_s']} events/s"
    )
    lt = trio.run(latency, url, keyring, a.rate, a.seconds, a.payload)
    print(
        f"latency at {a.rate:g} events/s for {a.seconds:g} s: p50 {lt['p50_ms']} ms, "
        f"p99 {lt['p99_ms']} ms, max {lt['max_ms']} ms ({lt['events']} events)"
    )
    print(json.dumps({"throughput": t, "latency": lt}))


if __name__ == "__main__":
    main()
