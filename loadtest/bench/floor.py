"""The floor for `python -m loadtest bench`: raw trio-websocket and raw nats-py, no cobrowse code.

Each mode runs as its own process (`python -m loadtest.bench.floor MODE ...`) started by
`loadtest.bench.suite`, and reports on stdout as JSON lines:

- `ws-server`: a tiny trio-websocket server. It prints `{"port": P}`, then serves until its
  stdin closes. On each connection it counts binary messages; `END` makes it answer with the
  count, `HELLO` makes it answer `OK` (the analogue of our hello/welcome for idle sockets).
- `ws-client`: one connection sending N frames of B bytes as fast as it can, then `END`;
  prints frames/s measured from the first send to the server's answer (all were received).
- `ws-idle`: opens K connections, does HELLO/OK on each, prints `{"ready": K}` and holds
  them until stdin closes or a line arrives (bounded by --hold seconds).
- `nats`: plain asyncio nats-py, core NATS: one subscriber counting, N publishes of B bytes,
  prints messages/s from the first publish to the last message received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import trio
from trio_websocket import ConnectionClosed, open_websocket_url, serve_websocket

END = b"END"
HELLO = b"HELLO"
MAX_MESSAGE = 4 * 2**20


def emit(**kv) -> None:
    print(json.dumps(kv), flush=True)


def mono() -> float:
    """A system-wide monotonic clock: comparable between processes on one machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# ---- trio-websocket ------------------------------------------------------------------------


async def _ws_handler(request) -> None:
    ws = await request.accept()
    count = 0
    try:
        while True:
            msg = await ws.get_message()
            if msg == END:
                await ws.send_message(json.dumps({"count": count}).encode())
                count = 0
            elif msg == HELLO:
                await ws.send_message(b"OK")
            else:
                count += 1
    except ConnectionClosed:
        pass


async def ws_server(a: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                _ws_handler,
                "127.0.0.1",
                a.port,
                None,
                max_message_size=MAX_MESSAGE,
                task_status=task_status,
            )
        )
        emit(port=server.port)
        # Until stdin closes (the bench's signal to finish), and never past --lifetime.
        with trio.move_on_after(a.lifetime):
            while await _read_stdin_line():
                pass
        nursery.cancel_scope.cancel()


async def ws_client(a: argparse.Namespace) -> None:
    payload = b"x" * a.size
    with trio.fail_after(a.timeout):
        async with open_websocket_url(
            f"ws://127.0.0.1:{a.port}/", max_message_size=MAX_MESSAGE
        ) as ws:
            # A short warm-up so the first timed frame does not pay for first-use costs.
            for _ in range(min(1000, a.frames)):
                await ws.send_message(payload)
            await ws.send_message(END)
            await ws.get_message()
            t0 = mono()
            stop_at = t0 + a.max_seconds
            sent = 0
            while sent < a.frames:  # N frames, or as many as fit in --max-seconds
                for _ in range(min(1000, a.frames - sent)):
                    await ws.send_message(payload)
                sent += min(1000, a.frames - sent)
                if mono() > stop_at:
                    break
            await ws.send_message(END)
            reply = json.loads(await ws.get_message())
            elapsed = mono() - t0
    emit(
        frames=sent,
        received=reply["count"],
        bytes=a.size,
        seconds=round(elapsed, 4),
        frames_per_s=round(reply["count"] / elapsed, 1),
        mb_per_s=round(reply["count"] * a.size / elapsed / 1e6, 2),
    )


async def _read_stdin_line() -> str:
    return await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


async def ws_idle(a: argparse.Namespace) -> None:
    opened = 0
    release = trio.Event()
    all_open = trio.Event()
    gate = trio.Semaphore(a.concurrency)  # handshakes in flight at once

    async def hold() -> None:
        nonlocal opened
        held = False
        await gate.acquire()
        try:
            async with open_websocket_url(
                f"ws://127.0.0.1:{a.port}/", connect_timeout=10, disconnect_timeout=2
            ) as ws:
                await ws.send_message(HELLO)
                await ws.get_message()
                gate.release()
                held = True
                opened += 1
                if opened == a.conns:
                    all_open.set()
                await release.wait()
        finally:
            if not held:
                gate.release()

    async with trio.open_nursery() as nursery:
        with trio.fail_after(a.timeout):
            for _ in range(a.conns):
                nursery.start_soon(hold)
            await all_open.wait()
        emit(ready=opened)
        with trio.move_on_after(a.hold):
            await _read_stdin_line()
        release.set()


# ---- nats-py -------------------------------------------------------------------------------


async def nats_pubsub(a: argparse.Namespace) -> None:
    import nats

    nc = await nats.connect(a.url, name="bench-raw")
    try:
        received = 0
        done = asyncio.Event()
        last = 0.0
        target = a.msgs

        async def on_msg(_msg) -> None:
            nonlocal received, last
            received += 1
            if received >= target:
                last = mono()
                done.set()

        sub = await nc.subscribe("bench.raw", cb=on_msg, pending_msgs_limit=4 * a.msgs + 1024)
        payload = b"x" * a.size
        # Warm-up round, then the timed one.
        target = min(1000, a.msgs)
        for _ in range(target):
            await nc.publish("bench.raw", payload)
        await nc.flush()
        await asyncio.wait_for(done.wait(), a.timeout)
        received, target = 0, a.msgs + 1  # lowered to what was sent once sending ends
        done.clear()
        t0 = mono()
        stop_at = t0 + a.max_seconds
        sent = 0
        while sent < a.msgs:  # N messages, or as many as fit in --max-seconds
            for _ in range(min(1000, a.msgs - sent)):
                await nc.publish("bench.raw", payload)
            sent += min(1000, a.msgs - sent)
            if mono() > stop_at:
                break
        target = sent
        if received >= target:
            last = mono()
            done.set()
        await nc.flush()
        await asyncio.wait_for(done.wait(), a.timeout)
        elapsed = last - t0
        await sub.unsubscribe()
    finally:
        await nc.close()
    emit(
        msgs=sent,
        received=received,
        bytes=a.size,
        seconds=round(elapsed, 4),
        msgs_per_s=round(received / elapsed, 1),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench.floor")
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("ws-server")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--lifetime", type=float, default=600.0)
    c = sub.add_parser("ws-client")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--frames", type=int, default=100_000)
    c.add_argument("--size", type=int, default=100)
    c.add_argument("--max-seconds", type=float, default=20.0, help="stop sending after this")
    c.add_argument("--timeout", type=float, default=60.0)
    i = sub.add_parser("ws-idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--conns", type=int, default=500)
    i.add_argument("--concurrency", type=int, default=50)
    i.add_argument("--timeout", type=float, default=60.0)
    i.add_argument("--hold", type=float, default=120.0)
    n = sub.add_parser("nats")
    n.add_argument("--url", required=True)
    n.add_argument("--msgs", type=int, default=200_000)
    n.add_argument("--size", type=int, default=100)
    n.add_argument("--max-seconds", type=float, default=20.0, help="stop publishing after this")
    n.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args(argv)
    if a.mode == "ws-server":
        trio.run(ws_server, a)
    elif a.mode == "ws-client":
        trio.run(ws_client, a)
    elif a.mode == "ws-idle":
        trio.run(ws_idle, a)
    else:
        asyncio.run(nats_pubsub(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
