"""A visitor and agents on different gateways: exactly once, in order (G1)."""

from __future__ import annotations

import trio

from gateway.client import Client
from tests.support.keys import mint, new_sid


async def collect(client: Client, want: int, timeout: float) -> list:
    got = []
    with trio.move_on_after(timeout):
        while len(got) < want:
            got.append(await client.events.receive())
    return got


async def test_visitor_and_two_agents_on_different_gateways(two_gateways):
    g = two_gateways
    sid = new_sid()
    n_events = 10_000
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    agent1 = Client([g.url("gw-a")], sid, mint(sid, "agent"), "agent")
    agent2 = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        # The first events of a page are its snapshot (here one chunk).
        await visitor.send("snapshot", {"i": 0, "n": 1, "d": b"<html>"})
        await n.start(agent1.run)
        await n.start(agent2.run)
        for i in range(1, n_events):
            await visitor.send("mutation", {"i": i})
        await visitor.wait_acked(n_events, timeout=60)
        got1 = await collect(agent1, n_events, 60)
        got2 = await collect(agent2, n_events, 60)
        # Agent -> visitor on the same path.
        await agent2.send("pointer", {"x": 1, "y": 2})
        back = await collect(visitor, 1, 20)
        for c in (visitor, agent1, agent2):
            c.close()
        n.cancel_scope.cancel()
    for got in (got1, got2):
        assert [d.seq for d in got] == list(range(1, n_events + 1))
        assert got[0].kind == "snapshot"
        assert [d.payload["i"] for d in got[1:]] == list(range(1, n_events))
    assert agent1.stats.duplicates_dropped == agent2.stats.duplicates_dropped == 0
    assert agent1.stats.gaps == agent2.stats.gaps == 0
    assert [(d.src, d.seq, d.kind) for d in back] == [(agent2.welcome.aid, 1, "pointer")]
    # What an SRE sees on gw-b, which holds only the agent (issue 16): the visitor's frames
    # timed from their arrival at gw-a to agent2's socket, NATS up, the build.
    latency = "cobrowse_gateway_delivery_latency_seconds"
    timed = g.metric("gw-b", latency + "_count")
    assert 0 < timed <= n_events  # at most one observation per delivered frame
    spent = g.metric("gw-b", latency + "_sum")
    assert spent >= 0
    print(
        f"\ngw-a -> gw-b delivery latency: {spent / timed * 1000:.1f} ms mean, {timed:.0f} frames"
    )
    assert g.metric("gw-b", "cobrowse_gateway_nats_connected") == 1
    assert g.metric("gw-b", "cobrowse_build_info") == 1
    assert g.metric("gw-b", "process_cpu_seconds_total") > 0
