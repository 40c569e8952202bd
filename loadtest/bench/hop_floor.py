"""The runtime's floor per hop: what one relayed message costs a server that does nothing else.

A co-browsing event crosses two servers (the visitor's gateway, then the agent's), and on
each it is one wake, one `recv()` and one `send()` at the least. How much CPU that costs
depends on the event loop alone, so this measures it without any cobrowse code: a server
that relays every chunk read from connection 2k to connection 2k+1, driven at a fixed rate
over many pairs (the trickle shape of peer-bench's 2,000 ev/s point), one server at a time,
in rounds, its CPU per message read from /proc. The servers:

- `trio-tasks`: one trio task per connection, `wait_readable`, `recv`, `send`: the shape of
  a trio-websocket or per-connection server;
- `trio-hub`: every connection behind the gateway's own `ReadHub` (gateway/read_hub.py), one
  task over a private epoll: the shape of our gateways' read path;
- `epoll`: a plain Python epoll loop, no event-loop library: CPython's own floor;
- `asyncio`, `uvloop`: asyncio's protocol callbacks on its default loop, and on uvloop's (a
  C loop over libuv) where uvloop is installed: what another Python event loop would cost;
- `node`: Node's `net` module (if `node` is installed): the runtime of peer-bench's relay.

It prints each server's CPU per message, the ratio to `node`'s in the same round, and the
driver's own CPU per message beside them (a driver that costs more than the servers would be
measuring itself). Run: `python -m loadtest.bench.hop_floor` (about a minute); the figures
of a run are in docs/bench.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

KINDS = ("trio-tasks", "trio-hub", "epoll", "asyncio", "uvloop", "node")
MESSAGE = 100  # bytes, as peer-bench's events
WARMUP = 1.0  # seconds of load before the measured ones
RECV = 65536

NODE_RELAY = """
const net = require('net');
const conns = [];
const srv = net.createServer(s => {
  s.setNoDelay(true);
  const i = conns.length; conns.push(s);
  if (i % 2 === 0) s.on('data', d => { conns[i + 1].write(d); });
  else s.on('data', () => {});
});
srv.listen(0, '127.0.0.1', () => console.log(JSON.stringify({port: srv.address().port})));
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();
"""


@dataclass(frozen=True, slots=True)
class HopResult:
    kind: str
    round: int
    sent: int
    relayed: int
    server_us_per_message: float
    driver_us_per_message: float


# ---- the servers (each in its own process) -------------------------------------------------


def _accept_all(lsock: socket.socket, count: int) -> list[socket.socket]:
    """Every connection before the load, so no message comes before its peer exists."""
    conns = []
    for _ in range(count):
        conn, _ = lsock.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    return conns


def _relay(conns: list[socket.socket], i: int) -> None:
    """Read connection i; what a visitor's connection (even i) sends goes to its agent."""
    try:
        data = conns[i].recv(RECV)
    except BlockingIOError:
        return
    if data and i % 2 == 0:
        conns[i + 1].send(data)


def serve(kind: str, pairs: int) -> None:
    lsock = socket.create_server(("127.0.0.1", 0), backlog=2 * pairs + 8)
    print(json.dumps({"port": lsock.getsockname()[1]}), flush=True)
    conns = _accept_all(lsock, 2 * pairs)
    if kind == "epoll":
        _serve_epoll(conns)
    elif kind in ("asyncio", "uvloop"):
        _serve_asyncio(conns, kind == "uvloop")
    else:
        _serve_trio(conns, kind == "trio-hub")


def _serve_epoll(conns: list[socket.socket]) -> None:
    ep = select.epoll()
    index = {c.fileno(): i for i, c in enumerate(conns)}
    for fd in index:
        ep.register(fd, select.EPOLLIN)
    while True:
        for fd, _ in ep.poll():
            _relay(conns, index[fd])


def _serve_trio(conns: list[socket.socket], hub: bool) -> None:
    import trio

    from gateway.read_hub import ReadHub

    async def one_task(i: int) -> None:
        while True:
            await trio.lowlevel.wait_readable(conns[i])
            _relay(conns, i)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if not hub:
                for i in range(len(conns)):
                    nursery.start_soon(one_task, i)
                return
            read_hub = ReadHub()
            for i, c in enumerate(conns):
                read_hub.add(c.fileno(), lambda i=i: _relay(conns, i))
            nursery.start_soon(read_hub.run)

    trio.run(main)


def _serve_asyncio(conns: list[socket.socket], uvloop: bool) -> None:
    """asyncio's protocol callbacks: the loop reads and calls `data_received`, the write
    goes to the peer's transport."""
    import asyncio

    transports: list[asyncio.Transport] = []

    class Relay(asyncio.Protocol):
        def __init__(self, i: int) -> None:
            self.i = i

        def data_received(self, data: bytes) -> None:
            if self.i % 2 == 0:
                transports[self.i + 1].write(data)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for i, c in enumerate(conns):
            t, _ = await loop.connect_accepted_socket(lambda i=i: Relay(i), c)
            transports.append(t)
        await asyncio.Event().wait()

    if uvloop:
        import uvloop as uv

        uv.run(main())
    else:
        asyncio.run(main())


# ---- the driver ------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(kind: str, pairs: int) -> subprocess.Popen:
    if kind == "node":
        args = ["node", "-e", NODE_RELAY]
    else:
        args = [sys.executable, "-m", "loadtest.bench.hop_floor", "serve", kind, str(pairs)]
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


class _Load:
    """The driver's side: visitors' sockets it sends on, agents' sockets it reads."""

    def __init__(self, socks: list[socket.socket], pairs: int, rate: float) -> None:
        self.socks, self.pairs, self.rate = socks, pairs, rate
        self.agents = {s.fileno(): s for s in socks[1::2]}
        self.ep = select.epoll()
        for fd in self.agents:
            self.ep.register(fd, select.EPOLLIN)
        self.sent = self.received = 0  # messages; bytes

    def pump(self, seconds: float) -> None:
        """Send at `rate` for `seconds`, reading what arrives, then wait (at most 1 s) for
        the rest."""
        msg = b"x" * MESSAGE
        start = due = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            while due <= now:
                self.socks[2 * (self.sent % self.pairs)].send(msg)
                self.sent += 1
                due += 1.0 / self.rate
            self._read(max(0.0, due - time.monotonic()))
        end = time.monotonic() + 1.0
        while self.received < self.sent * MESSAGE and time.monotonic() < end:
            self._read(0.05)

    def _read(self, timeout: float) -> None:
        for fd, _ in self.ep.poll(timeout):
            self.received += len(self.agents[fd].recv(RECV))


def drive(kind: str, pairs: int, rate: float, seconds: float, rnd: int) -> HopResult:
    """One server: connect, warm it up for `WARMUP` s (Node's JIT compiles the relay then),
    then send `rate` messages a second round-robin over the pairs for `seconds` and count
    what the agents' sides received."""
    proc = _start(kind, pairs)
    socks: list[socket.socket] = []
    load = None
    try:
        port = json.loads(proc.stdout.readline())["port"]
        for _ in range(2 * pairs):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        time.sleep(0.5)  # every connection accepted and registered
        for s in socks:
            s.setblocking(False)
        load = _Load(socks, pairs, rate)
        load.pump(WARMUP)
        sent0 = load.sent
        server0, driver0 = _cpu_seconds(proc.pid), time.process_time()
        load.pump(seconds)
        server = _cpu_seconds(proc.pid) - server0
        driver = time.process_time() - driver0
        sent = load.sent - sent0
        return HopResult(
            kind=kind,
            round=rnd,
            sent=sent,
            relayed=min(sent, load.received // MESSAGE - sent0),
            server_us_per_message=round(server / sent * 1e6, 1),
            driver_us_per_message=round(driver / sent * 1e6, 1),
        )
    finally:
        if load is not None:
            load.ep.close()
        for s in socks:
            s.close()
        proc.stdin.close()
        proc.kill()
        proc.wait()


def _available(kind: str) -> bool:
    """`node` and `uvloop` are measured where they are installed (uvloop is not one of our
    dependencies: `pip install uvloop` into the venv to measure it)."""
    if kind == "node":
        return shutil.which("node") is not None
    if kind == "uvloop":
        return importlib.util.find_spec("uvloop") is not None
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.bench.hop_floor", description=__doc__)
    ap.add_argument("--rate", type=float, default=2000.0, help="messages per second (2000)")
    ap.add_argument("--pairs", type=int, default=100, help="connection pairs (100)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per measurement (8)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over every server (2)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="servers to measure")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    unknown = [k for k in args.kinds.split(",") if k not in KINDS]
    if unknown:
        ap.error(f"unknown server {', '.join(unknown)}; known: {', '.join(KINDS)}")
    kinds = [k for k in args.kinds.split(",") if _available(k)]
    results = []
    for rnd in range(args.rounds):
        for kind in kinds:
            r = drive(kind, args.pairs, args.rate, min(args.seconds, 60.0), rnd)
            results.append(r)
            print(
                f"round {rnd} {kind:10s} server {r.server_us_per_message:6.1f} us/message, "
                f"driver {r.driver_us_per_message:5.1f}, {r.relayed} of {r.sent} relayed",
                flush=True,
            )
    print(f"\nper hop at {args.rate:g} messages/s over {args.pairs} pairs (median of rounds):")
    medians = {
        k: statistics.median(r.server_us_per_message for r in results if r.kind == k) for k in kinds
    }
    for k, us in medians.items():
        vs = f", {us / medians['node']:.2f}x node" if "node" in medians else ""
        print(f"  {k:10s} {us:6.1f} us{vs}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"medians": medians, "results": [asdict(r) for r in results]}, f, indent=1)
    lost = [r for r in results if r.relayed != r.sent]
    for r in lost:
        print(f"{r.kind} round {r.round}: {r.sent - r.relayed} of {r.sent} not relayed")
    return 1 if lost else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
