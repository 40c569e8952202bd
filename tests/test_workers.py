"""A gateway of several worker processes sharing one port (SO_REUSEPORT): connections
spread over the workers, metrics per worker and in total, and the drain covers them all."""

from __future__ import annotations

import os
import signal
import urllib.request

import trio

from gateway.client import Client
from router import natsproc

from .conftest import mint, new_sid
from .test_drain import wait_members


def scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith(name) and line.split("{")[0].split(" ")[0] == name
    )


async def test_two_workers_share_a_port_and_drain_together(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-w", ["--workers", "2", "--drain-window", "2"])
    g.start("gw-b")
    gws = await wait_members(nats_server.url, 3)
    assert {x.id for x in gws} == {"gw-w.w0", "gw-w.w1", "gw-b"}
    assert len({x.url for x in gws if x.id.startswith("gw-w")}) == 1  # one port
    pairs = []
    async with trio.open_nursery() as n:
        for _ in range(15):
            sid = new_sid()
            urls = [g.url("gw-w"), g.url("gw-b")]
            v = Client(urls, sid, mint(sid, "visitor"), "visitor")
            a = Client(urls, sid, mint(sid, "agent"), "agent")
            await n.start(v.run)
            await v.send_snapshot(b"x")
            await v.wait_acked(1)
            await n.start(a.run)
            pairs.append((v, a))
        admin = g.health["gw-w"]
        per_worker = [scrape(admin + 1 + i, "cobrowse_gateway_connections") for i in range(2)]
        total = scrape(admin, "cobrowse_gateway_connections")
        assert all(c > 0 for c in per_worker), per_worker  # the kernel spread them
        assert total == sum(per_worker) == 30
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


async def test_workers_die_with_a_killed_supervisor(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-w", ["--workers", "2"])
    gws = await wait_members(nats_server.url, 2)
    assert len(gws) == 2
    supervisor = g.procs["gw-w"][0]
    children = [
        int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == supervisor.pid
    ]
    assert len(children) == 2
    g.kill("gw-w")
    with trio.fail_after(10):
        while any(natsproc.pid_alive(c) for c in children):
            await trio.sleep(0.05)


def _ppid(pid: int) -> int | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
