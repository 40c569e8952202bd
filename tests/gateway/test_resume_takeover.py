"""Session life: late joiners start at the latest snapshot, snapshots on request, resume
points older than the stream, and one visitor per session."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager

import pytest
import trio

from gateway import session_store
from gateway.client import Client, ClientError
from gateway.codec import Close
from tests.support.keys import mint, new_sid


@asynccontextmanager
async def sessions_bucket(g):
    """(bridge, kv): nats-py on the cluster and the sessions bucket, to read and change a
    session's metadata as the tests need."""
    from gateway import streams
    from gateway.nats_bridge import open_bridge

    async with open_bridge(g.nats_url) as bridge:
        yield bridge, await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())


def visitor_on_a_agent_on_b(g, sid: str, **agent_kw) -> tuple[Client, Client]:
    return (
        Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor"),
        Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent", **agent_kw),
    )


async def meta_when(bridge, kv, sid: str, ok, timeout: float = 10.0):
    """The session's metadata once `ok` says it is what the test waits for."""
    with trio.fail_after(timeout):
        while not ok(meta := await bridge.call(session_store.load, kv, sid)):
            await trio.sleep(0.05)
    return meta


def assert_starts_at(got: list, snap: list) -> None:
    """The agent's first two deliveries: the snapshot's part 0, then the mutation after it."""
    assert [(d.seq, d.kind) for d in got] == [
        (snap[0].seq, "snapshot"),
        (snap[0].seq + 1, "mutation"),
    ]


async def take(client: Client, n: int, timeout: float = 20) -> list:
    got = []
    with trio.fail_after(timeout):
        while len(got) < n:
            got.append(await client.events.receive())
    return got


async def test_late_agent_starts_at_latest_snapshot(two_gateways):
    g = two_gateways
    sid = new_sid()
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send_snapshot(b"A" * 300_000)  # 3 chunks: seqs 1-3
        for i in range(50):
            await visitor.send("mutation", {"i": i})  # 4-53
        second = await visitor.send_snapshot(b"B" * 200_000)  # 2 chunks: 54-55
        for i in range(20):
            await visitor.send("mutation", {"j": i})  # 56-75
        await visitor.wait_acked(75)
        late = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent")
        await n.start(late.run)
        got = await take(late, 22)
        assert late.welcome.delivered == [visitor.welcome.epoch, second[0].seq - 1]
        await visitor.send("mutation", {"k": 1})
        more = await take(late, 1)
        visitor.close()
        late.close()
        n.cancel_scope.cancel()
    assert [d.seq for d in got] == list(range(54, 76))
    assert got[0].kind == "snapshot" and got[0].payload["i"] == 0 and got[0].payload["n"] == 2
    assert b"".join(d.payload["d"] for d in got[:2]) == b"B" * 200_000
    assert more[0].seq == 76


async def test_agent_without_snapshot_makes_gateway_ask_visitor(two_gateways):
    g = two_gateways
    sid = new_sid()
    asked = trio.Event()

    def on_control(ctl):
        if ctl.op == "snapshot":
            asked.set()

    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor", on_control=on_control)
    agent = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        for i in range(10):
            await visitor.send("mutation", {"i": i})  # no snapshot in the stream
        await visitor.wait_acked(10)
        await n.start(agent.run)
        assert agent.welcome.delivered is None
        with trio.fail_after(10):
            await asked.wait()  # the agent's gateway asked through NATS; the visitor's relayed it
        await visitor.send("mutation", {"skipped": True})  # before the snapshot: not shown
        snap = await visitor.send_snapshot(b"page")
        await visitor.send("mutation", {"after": True})
        got = await take(agent, 2)
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()
    assert_starts_at(got, snap)


async def test_agent_waiting_for_a_snapshot_finds_one_recorded_after_its_join(two_gateways):
    """A snapshot whose live copy the agent's gateway missed (it reached NATS before the
    subscription) and whose pointer was recorded after the join's own look: the agent's
    gateway looks again about once a second and starts delivery there, without waiting for
    the visitor's next snapshot (the visitor here does not answer the request)."""
    g = two_gateways
    sid = new_sid()
    visitor, agent = visitor_on_a_agent_on_b(g, sid)
    looks = 'cobrowse_gateway_snapshot_looks_total{{result="{}"}}'
    async with sessions_bucket(g) as (bridge, kv):
        async with trio.open_nursery() as n:
            await n.start(visitor.run)
            snap = await visitor.send_snapshot(b"page")
            await visitor.send("mutation", {"after": True})
            await visitor.wait_acked(snap[-1].seq + 1)
            pointer = (await meta_when(bridge, kv, sid, lambda m: m.snap is not None)).snap

            def forget(m):
                m.snap = None

            def record(m):
                m.snap = pointer

            await bridge.call(session_store.update, kv, sid, forget)  # not recorded yet
            await n.start(agent.run)
            assert agent.welcome.delivered is None  # it waits for a snapshot
            with trio.fail_after(10):  # the join's own look is over: one later look found none
                while g.metric("gw-b", looks.format("none")) < 1:
                    await trio.sleep(0.05)
            await bridge.call(session_store.update, kv, sid, record)  # now it is
            got = await take(agent, 2, timeout=10)
            visitor.close()
            agent.close()
            n.cancel_scope.cancel()
    assert_starts_at(got, snap)
    assert g.metric("gw-b", looks.format("found")) == 1


async def test_a_waiting_agents_looks_for_a_missed_snapshot_stop_after_ten(two_gateways):
    """With no snapshot at all, the agent's gateway looks once a second for the first 10
    s and then stops (each look is a KV read; later ones could find nothing the live path
    does not deliver)."""
    g = two_gateways
    sid = new_sid()
    visitor, agent = visitor_on_a_agent_on_b(g, sid)
    looks = "cobrowse_gateway_snapshot_looks_total"  # every result: a failed look counts too
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await n.start(agent.run)
        assert agent.welcome.delivered is None
        with trio.fail_after(20):
            while g.metric("gw-b", looks) < 10:
                await trio.sleep(0.2)
        await trio.sleep(2.5)
        assert g.metric("gw-b", looks) == 10
        assert g.metric("gw-b", looks + '{result="found"}') == 0
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()


async def test_resume_older_than_retained_history_gets_reset_and_snapshot(
    nats_server, gateways_factory
):
    g = gateways_factory(nats_server.url)
    g.start("gw-a", ["--max-msgs-per-session", "10"])
    sid = new_sid()
    resets = []
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    agent = Client([g.url("gw-a")], sid, mint(sid, "agent"), "agent", on_control=resets.append)
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send_snapshot(b"first")
        await visitor.wait_acked(1)
        async with trio.open_nursery() as an:
            await an.start(agent.run)
            first = await take(agent, 1)
            an.cancel_scope.cancel()  # the agent's network drops
        for i in range(30):  # far more messages than the stream keeps per session
            ev = await visitor.send("mutation", {"i": i})
            await visitor.wait_acked(ev.seq)  # one stored message each: no batching
        snap = await visitor.send_snapshot(b"second")
        for i in range(5):
            await visitor.send("mutation", {"j": i})
        await visitor.wait_acked(snap[0].seq + 5)
        await n.start(agent.run)  # resumes from seq 1: long gone
        got = await take(agent, 6)
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()
    assert first[0].seq == 1
    assert agent.stats.resumes == 1
    assert [c.op for c in resets if c.op == "reset"] == ["reset"]
    assert [d.seq for d in got] == list(range(snap[0].seq, snap[0].seq + 6))
    assert got[0].payload["d"] == b"second"


async def test_second_visitor_takes_over_and_first_is_closed(two_gateways):
    g = two_gateways
    sid = new_sid()
    first = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    second = Client([g.url("gw-b")], sid, mint(sid, "visitor"), "visitor")
    outcome = {}

    async def run_first():
        try:
            await first.run()
        except ClientError as exc:
            outcome["first"] = exc

    async with trio.open_nursery() as n:
        n.start_soon(run_first)
        with trio.fail_after(10):
            await first.connected.wait()
        await n.start(second.run)
        with trio.fail_after(10):
            while "first" not in outcome:
                await trio.sleep(0.02)
        ev = await second.send("mutation", {"ok": 1})
        await second.wait_acked(ev.seq)
        second.close()
        n.cancel_scope.cancel()
    assert outcome["first"].close_code == Close.REPLACED
    assert second.welcome.epoch == first.welcome.epoch + 1


async def test_visitor_resume_keeps_epoch_and_resends_unacked(two_gateways):
    g = two_gateways
    sid = new_sid()
    visitor = Client([g.url("gw-a"), g.url("gw-b")], sid, mint(sid, "visitor"), "visitor")
    agent = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send_snapshot(b"x")
        await visitor.wait_acked(1)
        await n.start(agent.run)
        epoch = visitor.welcome.epoch
        g.kill("gw-a")
        for i in range(100):  # queued while disconnected, sent after resume
            await visitor.send("mutation", {"i": i})
        await visitor.wait_acked(101, timeout=30)
        got = await take(agent, 101)
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()
    assert visitor.welcome.epoch == epoch and visitor.gateway == "gw-b"
    assert [d.seq for d in got] == list(range(1, 102))


@pytest.mark.parametrize("role", ["visitor", "agent"])
async def test_unreachable_gateway_is_retried_with_backoff(nats_server, gateways_factory, role):
    g = gateways_factory(nats_server.url)
    g.start("gw-a")
    sid = new_sid()
    dead = "ws://127.0.0.1:9/"  # nothing listens on the discard port
    c = Client([dead, g.url("gw-a")], sid, mint(sid, role), role)
    async with trio.open_nursery() as n:
        with trio.fail_after(20):
            await n.start(c.run)
        c.close()
        n.cancel_scope.cancel()
    assert c.gateway == "gw-a"


async def test_session_metadata_records_agents_durable_sequences_and_the_control_grant(
    two_gateways,
):
    """Also remote control across two gateways (gateway/remote_control.py): without a grant
    the agent's input reaches the visitor as `rc-refused` and the agent hears `refused`; the
    visitor's grant is in the metadata, and the agent's gateway knows it before the agent
    sees it (an input sent on seeing it passes); the holder's bye ends it."""
    g = two_gateways
    sid = new_sid()
    refusals = []
    visitor, agent = visitor_on_a_agent_on_b(g, sid, on_control=refusals.append)

    async def control_is(kv, want):
        return await meta_when(bridge, kv, sid, lambda m: m.control == want, timeout=math.inf)

    async with sessions_bucket(g) as (bridge, kv):
        async with trio.open_nursery() as n:
            await n.start(visitor.run)
            await visitor.send_snapshot(b"x")
            for i in range(9):
                await visitor.send("mutation", {"i": i})
            await visitor.wait_acked(10)
            await n.start(agent.run)
            aid = agent.welcome.aid
            for _ in range(3):
                await agent.send("pointer", {"x": 1})
            await agent.send("rc-text", {"id": 5, "value": "no grant"})  # seq 4
            await agent.wait_acked(4)
            got = await take(visitor, 4)
            assert [d.kind for d in got] == ["pointer"] * 3 + ["rc-refused"]
            assert got[3].payload == {"kind": "rc-text"} and got[3].src == aid
            assert [c.code for c in refusals if c.op == "refused"] == ["not_granted"]
            await visitor.send("rc-grant", {"aid": aid})
            with trio.fail_after(10):
                while (await agent.events.receive()).kind != "rc-grant":
                    pass
            await agent.send("rc-click", {"id": 5, "x": 1, "y": 2})  # at once: it passes
            (click,) = await take(visitor, 1)
            assert (click.kind, click.payload) == ("rc-click", {"id": 5, "x": 1, "y": 2})
            with trio.fail_after(10):
                granted = await control_is(kv, aid)
            assert aid in granted.agents
            agent.close()  # bye: the holder leaves, its grant ends
            with trio.fail_after(10):
                await control_is(kv, None)
            visitor.close()
            n.cancel_scope.cancel()
        with trio.fail_after(10):
            while True:
                meta = await bridge.call(session_store.load, kv, sid)
                if meta.durable.get("v") == 11 and meta.durable.get(aid) == 5:
                    break
                await trio.sleep(0.1)
    assert meta.epoch == visitor.welcome.epoch == 1
    assert aid not in meta.agents  # its bye: it will not resume
    assert meta.snap.key == (1, 1)


async def test_large_snapshot_crosses_in_frames_under_the_limit(two_gateways):
    g = two_gateways
    sid = new_sid()
    page = bytes(range(256)) * 6000  # about 1.5 MB: 12 chunks, far over one frame
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        evs = await visitor.send_snapshot(page)
        await visitor.wait_acked(evs[-1].seq)
        late = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent")
        await n.start(late.run)
        got = await take(late, len(evs))
        visitor.close()
        late.close()
        n.cancel_scope.cancel()
    assert len(evs) == 12
    assert b"".join(d.payload["d"] for d in got) == page


async def test_resume_works_after_the_join_token_expired(two_gateways):
    g = two_gateways
    sid = new_sid()
    urls = [g.url("gw-a"), g.url("gw-b")]
    visitor = Client(urls, sid, mint(sid, "visitor", ttl=2), "visitor")
    agent = Client(urls, sid, mint(sid, "agent", ttl=2), "agent")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send_snapshot(b"x")
        await visitor.wait_acked(1)
        await n.start(agent.run)
        await take(agent, 1)
        aid = agent.welcome.aid
        await trio.sleep(2.5)  # both join tokens have expired now
        g.kill("gw-a")
        await visitor.send("mutation", {"after": "expiry"})
        await visitor.wait_acked(2, timeout=20)
        got = await take(agent, 1)
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()
    assert visitor.gateway == agent.gateway == "gw-b"
    assert agent.welcome.aid == aid and visitor.stats.resumes == 1
    assert got[0].seq == 2


async def test_new_epoch_stays_above_the_stream_when_metadata_is_gone(two_gateways):
    from gateway import streams
    from gateway.nats_bridge import open_bridge

    g = two_gateways
    sid = new_sid()
    first = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    async with trio.open_nursery() as n:
        await n.start(first.run)
        await first.send_snapshot(b"x")
        await first.wait_acked(1)
        first.close()
        n.cancel_scope.cancel()
    async with open_bridge(g.nats_url) as bridge:
        kv = await bridge.call(streams.ensure_stream, bridge.js, streams.StreamSettings())
        await bridge.call(kv.purge, sid)  # as if the KV entry had expired
    second = Client([g.url("gw-b")], sid, mint(sid, "visitor"), "visitor")
    async with trio.open_nursery() as n:
        await n.start(second.run)
        n.cancel_scope.cancel()
    assert first.welcome.epoch == 1
    assert second.welcome.epoch == 2


async def test_an_agent_that_drops_is_away_until_it_resumes(two_gateways):
    """Its gateway marks it away, with the time its resume token expires
    (gateway/agent_roster.py); its resume on the other gateway clears that; its bye removes
    it."""
    import time

    from gateway import agent_roster

    g = two_gateways
    sid = new_sid()
    visitor, agent = visitor_on_a_agent_on_b(g, sid)
    async with sessions_bucket(g) as (bridge, kv):
        async with trio.open_nursery() as n:
            await n.start(visitor.run)
            await visitor.send_snapshot(b"x")
            before = time.time()
            async with trio.open_nursery() as an:
                await an.start(agent.run)
                after = time.time()
                aid = agent.welcome.aid
                await take(agent, 1)
                an.cancel_scope.cancel()  # the agent's network drops
            dropped = await meta_when(bridge, kv, sid, lambda m: aid in m.away)
            until = dropped.away[aid]
            assert before + 24 * 3600 <= until <= after + 24 * 3600
            assert agent_roster.present(dropped, time.time()) == {aid: dropped.agents[aid]}
            assert aid not in agent_roster.present(dropped, until + agent_roster.AWAY_GRACE)

            agent.urls = [g.url("gw-a")]  # it comes back through the other gateway
            await n.start(agent.run)
            assert agent.stats.resumes == 1 and agent.welcome.aid == aid
            back = await meta_when(bridge, kv, sid, lambda m: not m.away)
            assert back.agents[aid] > dropped.agents[aid]
            agent.close()
            await meta_when(bridge, kv, sid, lambda m: aid not in m.agents)
            visitor.close()
            n.cancel_scope.cancel()


async def test_an_agent_whose_gateway_was_killed_reads_as_away_with_the_registry(two_gateways):
    """A killed gateway runs no bookkeeping, so nothing marks its agents away. Each join
    records its host (the gateway process's registry instance, gateway/agent_roster.py);
    a reader of the registry (the router) counts the agent away once that instance is gone,
    until the connection's resume token expires, and connected again after its resume."""
    import time

    from gateway import agent_roster, membership
    from gateway.agent_roster import AWAY_GRACE, JOIN_MARGIN, LiveGateways

    g = two_gateways
    sid = new_sid()
    visitor, agent = visitor_on_a_agent_on_b(g, sid)
    async with sessions_bucket(g) as (bridge, kv):
        registry = await bridge.call(membership.ensure_bucket, bridge.js)

        async def live() -> LiveGateways:
            read_at = time.time()
            gws = await bridge.call(membership.list_gateways, registry)
            return LiveGateways(frozenset(gw.instance for gw in gws), read_at)

        async with trio.open_nursery() as n:
            await n.start(visitor.run)
            await visitor.send_snapshot(b"x")
            async with trio.open_nursery() as an:
                await an.start(agent.run)
                aid = agent.welcome.aid
                await take(agent, 1)
                meta = await meta_when(bridge, kv, sid, lambda m: aid in m.hosts)
                host = meta.hosts[aid]
                by_id = {gw.id: gw for gw in await bridge.call(membership.list_gateways, registry)}
                assert (host.gateway, host.joined_at) == ("gw-b", meta.agents[aid])
                assert host.instance == by_id["gw-b"].instance != by_id["gw-a"].instance != ""
                await trio.sleep(JOIN_MARGIN)  # a newer join is not judged by the registry
                assert agent_roster.away(meta, time.time(), await live()) == {}

                g.kill("gw-b")  # SIGKILL: no bookkeeping, its agent is never marked away
                an.cancel_scope.cancel()
            # What the entry's TTL does within 10 s of the gateway's last heartbeat:
            await bridge.call(membership.remove, registry, "gw-b")
            meta = await bridge.call(session_store.load, kv, sid)
            assert meta.away == {} and aid in meta.agents
            read, now = await live(), time.time()
            assert agent_roster.away(meta, now) == {}  # without the registry: connected
            assert agent_roster.away(meta, now, read) == {aid: host.resumable_until}
            assert agent_roster.present(meta, now, read) == {aid: host.joined_at}
            end = host.resumable_until + AWAY_GRACE
            assert agent_roster.present(meta, end, read) == {}
            assert agent_roster.present(meta, end) == {aid: host.joined_at}

            agent.urls = [g.url("gw-a")]  # it comes back through the other gateway
            await n.start(agent.run)
            assert agent.stats.resumes == 1 and agent.welcome.aid == aid
            back = await meta_when(bridge, kv, sid, lambda m: m.agents[aid] > host.joined_at)
            assert back.hosts[aid].instance == by_id["gw-a"].instance
            assert agent_roster.away(back, end, await live()) == {}
            agent.close()
            back = await meta_when(bridge, kv, sid, lambda m: aid not in m.agents)
            assert aid not in back.hosts
            visitor.close()
            n.cancel_scope.cancel()
