"""A gateway of several worker processes sharing one port (SO_REUSEPORT): connections
spread over the workers, metrics per worker and in total, and the drain covers them all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import trio

from gateway.client import Client
from gateway.codec import close_name
from router import natsproc
from tests.gateway.test_drain import wait_members
from tests.support.gateways import Gateways
from tests.support.keys import mint, new_sid


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def scrape(port: int, name: str) -> float:
    text = metrics_text(port)
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith(name) and line.split("{")[0].split(" ")[0] == name
    )


async def open_pairs(n: trio.Nursery, urls: list[str], count: int) -> list[tuple[Client, Client]]:
    """`count` sessions, each a visitor (its snapshot acked) and an agent, on `urls`."""
    pairs = []
    for _ in range(count):
        sid = new_sid()
        v = Client(urls, sid, mint(sid, "visitor"), "visitor")
        a = Client(urls, sid, mint(sid, "agent"), "agent")
        await n.start(v.run)
        await v.send_snapshot(b"x")
        await v.wait_acked(1)
        await n.start(a.run)
        pairs.append((v, a))
    return pairs


async def test_two_workers_share_a_port_and_drain_together(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-w", ["--workers", "2", "--drain-window", "2"])
    g.start("gw-b")
    gws = await wait_members(nats_server.url, 3)
    assert {x.id for x in gws} == {"gw-w.w0", "gw-w.w1", "gw-b"}
    assert len({x.url for x in gws if x.id.startswith("gw-w")}) == 1  # one port
    async with trio.open_nursery() as n:
        pairs = await open_pairs(n, [g.url("gw-w"), g.url("gw-b")], 15)
        admin = g.health["gw-w"]
        per_worker = [scrape(admin + 1 + i, "cobrowse_gateway_connections") for i in range(2)]
        total = scrape(admin, "cobrowse_gateway_connections")
        assert all(c > 0 for c in per_worker), per_worker  # the kernel spread them
        assert total == sum(per_worker) == 30
        # The supervisor's /metrics (issue 16): its build, NATS up in every worker, and
        # process_* of each process (a multiprocess registry has none of its own).
        text = metrics_text(admin)
        assert 'cobrowse_build_info{component="gateway",version="' in text
        assert scrape(admin, "cobrowse_gateway_nats_connected") == 1
        for process in ("supervisor", "w0", "w1"):
            assert f'process_resident_memory_bytes{{process="{process}"}}' in text, process
        supervisor = g.procs["gw-w"][0]
        supervisor.send_signal(signal.SIGTERM)
        for v, _ in pairs:
            await v.send("mutation", {"after": "drain"})
        with trio.fail_after(30):
            while supervisor.poll() is None:
                await trio.sleep(0.05)
        with trio.fail_after(30):  # every client follows its notice to the other gateway
            while any(c.gateway != "gw-b" for pair in pairs for c in pair):
                await trio.sleep(0.05)
        for v, a in pairs:
            await v.wait_acked(2, timeout=30)
            with trio.fail_after(30):
                got = [await a.events.receive() for _ in range(2)]
            assert [d.seq for d in got] == [1, 2]
            assert v.gateway == a.gateway == "gw-b", (v.gateway, a.gateway, v.stats, a.stats)
        for v, a in pairs:
            v.close()
            a.close()
        n.cancel_scope.cancel()
    assert supervisor.returncode == 0


def router_drain(nats_url: str, gateway_id: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "router", "drain", gateway_id, "--nats", nats_url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


async def test_drains_over_nats_by_gateway_or_worker_id(nats_server, gateways_factory):
    """`router drain gw-w.w0` drains that worker alone (the supervisor starts a fresh one);
    `router drain gw-w` drains every worker, answers with the sum, and each worker finishes
    its window and exits 0: a worker that finished first never turns into a second signal
    for one still draining. Every client is told, and nothing is lost or reordered."""
    g = gateways_factory(nats_server.url)
    g.start("gw-w", ["--workers", "2", "--drain-window", "1"])
    g.start("gw-b")
    await wait_members(nats_server.url, 3)
    admin = g.health["gw-w"]
    async with trio.open_nursery() as n:
        pairs = await open_pairs(n, [g.url("gw-w"), g.url("gw-b")], 8)
        clients = [c for pair in pairs for c in pair]
        on_w0 = [c for c in clients if c.gateway == "gw-w.w0"]
        on_w1 = [c for c in clients if c.gateway == "gw-w.w1"]
        assert on_w0 and on_w1, [c.gateway for c in clients]  # the kernel spread them
        got = {a: [] for _, a in pairs}

        async def all_delivered() -> None:
            """One more event per session, and every agent has had 1..n exactly once."""
            for v, _ in pairs:
                await v.send("mutation", {"n": v.seq.next_seq})
            for v, a in pairs:
                await v.wait_acked(v.seq.next_seq - 1, timeout=30)
                with trio.fail_after(30):
                    while len(got[a]) < v.seq.next_seq - 1:
                        got[a].append((await a.events.receive()).seq)
                assert got[a] == list(range(1, v.seq.next_seq)), got[a]

        # One worker alone.
        supervisor = g.procs["gw-w"][0]
        workers = set(children(supervisor.pid))
        out = await trio.to_thread.run_sync(router_drain, nats_server.url, "gw-w.w0")
        assert f"({len(on_w0)} connections to move)" in out, out
        with trio.fail_after(30):  # its clients left it, and a fresh w0 took its place
            while any(c.gateway == "gw-w.w0" and c.stats.reconnect_notices == 0 for c in on_w0):
                await trio.sleep(0.05)
            while len(workers & set(children(supervisor.pid))) != 1 or not await ready(admin):
                await trio.sleep(0.05)
        assert all(c.stats.reconnect_notices == 1 for c in on_w0)
        assert all(c.stats.reconnect_notices == 0 for c in on_w1)
        await all_delivered()

        # The whole gateway.
        on_w = [c for c in clients if c.gateway and c.gateway.startswith("gw-w")]
        before = {c: c.stats.reconnect_notices for c in on_w}
        out = await trio.to_thread.run_sync(router_drain, nats_server.url, "gw-w")
        assert f"is draining ({len(on_w)} connections to move" in out, out
        with trio.fail_after(30):
            while supervisor.poll() is None:
                await trio.sleep(0.05)
        assert supervisor.returncode == 0, g.log("gw-w")[-2000:]
        assert all(c.stats.reconnect_notices == before[c] + 1 for c in on_w)
        await all_delivered()
        assert all(c.gateway == "gw-b" for c in clients)
        for c in clients:
            c.close()
        n.cancel_scope.cancel()
    log = g.log("gw-w")
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    # A drain is normal: its NATS connections close at INFO (issue 16), close codes by name.
    assert "event='nats_disconnected'" in log
    assert "level='warning' event='nats_disconnected'" not in log
    closes = re.findall(r"event='connection_closed' .* code=(\d+) reason_name='(\w+)'", log)
    assert closes and all(close_name(int(code)) == name for code, name in closes), closes


def handshake_status(port: int) -> int:
    """The HTTP status a new WebSocket handshake gets (101 admitted, 429 refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        return int(sock.recv(64).split(b" ")[1])


async def test_one_address_count_and_one_set_of_probes_per_gateway(nats_server, gateways_factory):
    """Not one per worker: with 2 workers and 10/minute, an address gets 10 handshakes a
    minute, not 20, whichever worker the kernel hands each connection to. Then (one gateway
    start for both) the supervisor's /readyz and /healthz speak for the workers."""
    g = gateways_factory(nats_server.url)
    args = ["--workers", "2", "--new-per-address", "10/minute", "--worker-stuck-after", "1"]
    g.start("gw-w", args)
    port, admin = g.procs["gw-w"][1], g.health["gw-w"]
    got = [await trio.to_thread.run_sync(handshake_status, port) for _ in range(30)]
    assert got.count(101) == 10 and got.count(429) == 20, got
    per_worker = [scrape(admin + 1 + i, "cobrowse_gateway_admission_total") for i in range(2)]
    assert all(n > 0 for n in per_worker), per_worker  # both workers took handshakes
    text = await trio.to_thread.run_sync(metrics_text, admin)
    local = [x for x in text.splitlines() if 'lane="address_limit_local"' in x]
    assert all(float(x.rpartition(" ")[2]) == 0 for x in local), local  # all asked the supervisor
    await check_probes(g, nats_server)


async def test_workers_die_with_a_killed_supervisor(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-w", ["--workers", "2"])
    gws = await wait_members(nats_server.url, 2)
    assert len(gws) == 2
    supervisor = g.procs["gw-w"][0]
    kids = children(supervisor.pid)
    assert len(kids) == 2
    g.kill("gw-w")
    with trio.fail_after(10):
        while any(natsproc.pid_alive(c) for c in kids):
            await trio.sleep(0.05)


def probe(admin_port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def wait_probes(admin_port: int, ready: int, healthy: int, *said: str) -> None:
    """Poll the supervisor's /readyz and /healthz until they give these statuses and their
    bodies say each of `said` (bounded: a probe that never gets there fails the test)."""
    with trio.fail_after(20):
        while True:
            r = await trio.to_thread.run_sync(probe, admin_port, "/readyz")
            h = await trio.to_thread.run_sync(probe, admin_port, "/healthz")
            if (r[0], h[0]) == (ready, healthy) and all(x in r[1] + h[1] for x in said):
                return
            await trio.sleep(0.1)


async def check_probes(g: Gateways, nats_server: natsproc.NatsServer) -> None:
    """The supervisor's probes speak for its workers (started with --worker-stuck-after 1):
    a worker that stops answering (SIGSTOP) makes /readyz fail at once and /healthz after
    that bound; once it runs again both recover; NATS gone makes /readyz fail (every
    worker's own /readyz does) while /healthz stays 200: a restart would not bring NATS."""
    admin = g.health["gw-w"]
    await wait_probes(admin, 200, 200)
    worker = children(g.procs["gw-w"][0].pid)[0]
    args = Path(f"/proc/{worker}/cmdline").read_text().split("\0")  # noqa: ASYNC240
    name = "w" + args[args.index("--worker-index") + 1]  # its name in the probes' bodies
    os.kill(worker, signal.SIGSTOP)
    try:
        await wait_probes(admin, 503, 503, f"{name}=stuck")
        text = await trio.to_thread.run_sync(metrics_text, admin)  # same instant's view
        stuck = [
            x for x in text.splitlines() if x.startswith('cobrowse_gateway_workers{state="stuck"}')
        ]
        assert len(stuck) == 1 and float(stuck[0].rpartition(" ")[2]) >= 1, text[-1500:]
    finally:
        os.kill(worker, signal.SIGCONT)
    await wait_probes(admin, 200, 200)
    nats_server.stop()
    await wait_probes(admin, 503, 200, "w0=not_ready", "w1=not_ready")


def children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == pid]


async def ready(admin_port: int) -> bool:
    def get() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2):
                return True
        except OSError:
            return False

    return await trio.to_thread.run_sync(get)


def _ppid(pid: int) -> int | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
