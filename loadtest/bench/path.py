"""Our path for `python -m loadtest bench`: reference clients driving real gateways.

Each mode is its own process (`python -m loadtest.bench.path MODE ...`), started by
`loadtest.bench.suite`, so the visitors, the agents and the gateway do not share an interpreter.
Token keys come from COBROWSE_TOKEN_KEYS. Reports are JSON lines on stdout.

- `visitors`: one visitor `Client` per session id. Each connects, sends a small snapshot and
  waits for its ack, then the process prints `{"ready": n}` and waits for a line on stdin.
  Then it sends: `--events` per session as fast as `Client.send` takes them, or, with
  `--rate`, `--rate` events/s in total round-robin over the sessions for `--seconds`. Each
  event's payload carries the send time (a system-wide monotonic clock) and filler bytes.
  It prints when sending started and when JetStream acknowledged the last event.
- `agents`: one agent `Client` per session id, started after the visitors are ready, so each
  begins at the snapshot. Prints `{"ready": n}` once every agent has it, then receives the
  expected number of events per session and prints counts, first and last receive times
  and latency percentiles (receive time minus the send time in the payload).
- `idle`: visitor and agent pairs as above (snapshot done on both sides), then held open
  and idle until stdin closes or a line arrives: the gateway's memory is measured meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import trio

from gateway import tokens
from gateway.client import Client

from .results import latency_summary, mono

SNAPSHOT = b"<html><body>bench</body></html>"


def emit(**kv) -> None:
    print(json.dumps(kv), flush=True)


def _token(keyring: tokens.Keyring, sid: str, role: str) -> str:
    return tokens.mint(keyring, sid=sid, role=role, now=time.time(), ttl=3600)


async def _read_line() -> str:
    return await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


_finished: dict[int, trio.Event] = {}  # id(client) -> set once its run() returned


async def _run(c: Client, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    done = _finished[id(c)] = trio.Event()
    try:
        await c.run(task_status=task_status)
    finally:
        done.set()


async def _start_visitor(nursery, urls, keyring, sid) -> Client:
    v = Client(urls, sid, _token(keyring, sid, "visitor"), "visitor")
    await nursery.start(_run, v)
    snap = await v.send_snapshot(SNAPSHOT)
    await v.wait_acked(snap[-1].seq, timeout=30)
    return v


async def _start_agent(nursery, urls, keyring, sid) -> Client:
    a = Client(urls, sid, _token(keyring, sid, "agent"), "agent")
    await nursery.start(_run, a)
    with trio.fail_after(30):
        while True:  # the snapshot the visitor sent
            d = await a.events.receive()
            if d.kind == "snapshot":
                return a


async def _start_all(fn, nursery, urls, keyring, sids, concurrency: int) -> list[Client]:
    out: dict[str, Client] = {}
    gate = trio.Semaphore(concurrency)

    async def one(sid: str) -> None:
        async with gate:
            out[sid] = await fn(nursery, urls, keyring, sid)

    async with trio.open_nursery() as starters:
        for sid in sids:
            starters.start_soon(one, sid)
    return [out[s] for s in sids]


async def _close_all(clients: list[Client], nursery) -> None:
    for c in clients:
        c.close()
    with trio.move_on_after(5):  # each says bye; a straggler is cancelled
        for c in clients:
            await _finished[id(c)].wait()
    nursery.cancel_scope.cancel()


async def visitors(a: argparse.Namespace, keyring: tokens.Keyring) -> None:
    sids = a.sids.split(",")
    body = b"x" * a.payload
    async with trio.open_nursery() as nursery:
        with trio.fail_after(a.timeout):
            clients = await _start_all(_start_visitor, nursery, a.url, keyring, sids, a.concurrency)
        emit(ready=len(clients))
        with trio.fail_after(a.timeout):
            await _read_line()
        t0 = mono()
        last: dict[int, int] = {}
        with trio.fail_after(a.timeout):
            if a.rate:
                n = int(a.rate * a.seconds)
                start = trio.current_time()
                for i in range(n):
                    await trio.sleep_until(start + i / a.rate)
                    c = clients[i % len(clients)]
                    ev = await c.send("mutation", {"t": mono(), "d": body})
                    last[id(c)] = ev.seq
            else:

                async def flood(c: Client) -> None:
                    for _ in range(a.events):
                        ev = await c.send("mutation", {"t": mono(), "d": body})
                    last[id(c)] = ev.seq

                async with trio.open_nursery() as senders:
                    for c in clients:
                        senders.start_soon(flood, c)
            sent = mono()
            for c in clients:
                if id(c) in last:
                    await c.wait_acked(last[id(c)], timeout=a.timeout)
        emit(start=t0, sent=sent, acked=mono(), rejected=sum(c.stats.rejected for c in clients))
        await _close_all(clients, nursery)


async def agents(a: argparse.Namespace, keyring: tokens.Keyring) -> None:
    sids = a.sids.split(",")
    async with trio.open_nursery() as nursery:
        with trio.fail_after(a.timeout):
            clients = await _start_all(_start_agent, nursery, a.url, keyring, sids, a.concurrency)
        emit(ready=len(clients))
        lat_ms: list[float] = []
        firsts: list[float] = []
        lasts: list[float] = []
        got = 0

        async def drain(c: Client, n: int) -> None:
            nonlocal got
            first = None
            for _ in range(n):
                d = await c.events.receive()
                now = mono()
                first = first or now
                lat_ms.append((now - d.payload["t"]) * 1000)
                got += 1
            firsts.append(first or mono())
            lasts.append(mono())

        per = a.expect // len(clients)
        extra = a.expect - per * len(clients)
        with trio.move_on_after(a.timeout):
            async with trio.open_nursery() as receivers:
                for i, c in enumerate(clients):
                    receivers.start_soon(drain, c, per + (1 if i < extra else 0))
        emit(
            received=got,
            expected=a.expect,
            first=min(firsts) if firsts else None,
            last=max(lasts) if lasts else mono(),
            gaps=sum(c.stats.gaps for c in clients),
            duplicates=sum(c.stats.duplicates_dropped for c in clients),
            **latency_summary(lat_ms),
        )
        await _close_all(clients, nursery)


async def idle(a: argparse.Namespace, keyring: tokens.Keyring) -> None:
    sids = a.sids.split(",")
    async with trio.open_nursery() as nursery:
        with trio.fail_after(a.timeout):
            vs = await _start_all(_start_visitor, nursery, a.url, keyring, sids, a.concurrency)
            ags = await _start_all(_start_agent, nursery, a.url, keyring, sids, a.concurrency)
        emit(ready=len(vs) + len(ags))
        with trio.move_on_after(a.hold):
            await _read_line()
        await _close_all(vs + ags, nursery)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench.path")
    p.add_argument("mode", choices=["visitors", "agents", "idle"])
    p.add_argument("--url", action="append", required=True, help="gateway URL (repeatable)")
    p.add_argument("--sids", required=True, help="comma-separated session ids")
    p.add_argument("--payload", type=int, default=100, help="filler bytes per event")
    p.add_argument("--events", type=int, default=10_000, help="visitors: events per session")
    p.add_argument("--rate", type=float, default=0.0, help="visitors: total events/s (paced)")
    p.add_argument("--seconds", type=float, default=5.0, help="visitors: paced duration")
    p.add_argument("--expect", type=int, default=0, help="agents: events in total")
    p.add_argument("--concurrency", type=int, default=25, help="connections set up at once")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--hold", type=float, default=120.0, help="idle: longest hold")
    a = p.parse_args(argv)
    keyring = tokens.Keyring.from_env()
    fn = {"visitors": visitors, "agents": agents, "idle": idle}[a.mode]
    trio.run(fn, a, keyring)
    return 0


if __name__ == "__main__":
    sys.exit(main())
