"""How long `GET /v1/sessions` takes to read the sessions bucket: one KV watcher pass (what
`router.sessions.list_sessions` does) against a key listing followed by one get per
session (what it did before the console polled it).

`python -m loadtest.bench.listing [--sessions N] [--runs R]` starts its own nats-server on
loopback, writes N session records (with a page and an agent, as the console lists them),
reads them R times each way and prints the median and the fastest.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import trio
from nats.js.errors import NoKeysError

from gateway import session_store
from gateway.nats_bridge import open_bridge
from gateway.page_info import PageInfo
from gateway.session_store import SessionMeta
from gateway.streams import ensure_kv
from router import natsproc, sessions

GETS_AT_ONCE = 64  # the old listing's concurrency


async def keys_then_gets(kv) -> list:
    """The listing as it was: every key, then a get per key, 64 at a time."""
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    gate = asyncio.Semaphore(GETS_AT_ONCE)

    async def one(sid: str):
        async with gate:
            return sid, await session_store.load(kv, sid)

    found = await asyncio.gather(*(one(k) for k in keys))
    return [(sid, m) for sid, m in found if m is not None and not m.ended]


async def fill(kv, count: int) -> None:
    meta = SessionMeta(
        epoch=1,
        site="shop",
        created=1.0,
        code="123456",
        agents={"a1": 1.0},
        page=PageInfo("https://shop.example/cart", "Cart"),
    )
    await asyncio.gather(*(kv.put(f"s{i:015d}", meta.to_bytes()) for i in range(count)))


async def measure(count: int, runs: int) -> dict[str, list[float]]:
    srv = natsproc.start_single(Path(tempfile.mkdtemp(prefix="cobrowse-listing-")) / "nats")
    try:
        async with open_bridge(srv.url) as bridge:
            kv = await bridge.call(ensure_kv, bridge.js, "bench_sessions", 3600, "memory", 1)
            await bridge.call(fill, kv, count)
            out: dict[str, list[float]] = {}
            for name, read in (("keys+get", keys_then_gets), ("watcher", sessions.list_sessions)):
                out[name] = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    got = await bridge.call(read, kv)
                    out[name].append(time.perf_counter() - t0)
                    if len(got) != count:
                        raise RuntimeError(f"{name} read {len(got)} of {count} sessions")
            return out
    finally:
        srv.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    for name, secs in trio.run(measure, a.sessions, a.runs).items():
        secs.sort()
        print(
            f"{name:9} {a.sessions} sessions: median {secs[len(secs) // 2] * 1000:.0f} ms,"
            f" fastest {secs[0] * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
