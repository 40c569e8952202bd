"""The read hub (gateway/read_hub.py) on real socket pairs: who is called back, when, and
that a removed or closed socket is never reported to anyone."""

from __future__ import annotations

import socket

import trio

from gateway.read_hub import ReadHub


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def test_a_socket_is_reported_while_it_has_bytes_and_not_after_remove() -> None:
    hub = ReadHub()
    ours, theirs = pair()
    got: list[bytes] = []
    read = trio.Event()

    def on_readable() -> None:
        got.append(ours.recv(3))  # less than is there: level-triggered, so called again
        if b"".join(got) == b"abcdef":
            read.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        hub.add(ours.fileno(), on_readable)
        theirs.send(b"abcdef")
        with trio.fail_after(5):
            await read.wait()
        hub.remove(ours.fileno())
        assert len(hub) == 0
        theirs.send(b"more")
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert got == [b"abc", b"def"]
    ours.close()
    theirs.close()


async def test_a_callback_may_remove_a_socket_reported_in_the_same_wake() -> None:
    hub = ReadHub()
    (a, a_peer), (b, b_peer) = pair(), pair()
    calls: list[str] = []
    done = trio.Event()

    def on_a() -> None:
        calls.append("a")
        a.recv(100)
        hub.remove(b.fileno())  # b's bytes are there too, but b is no longer ours
        hub.remove(a.fileno())
        done.set()

    def on_b() -> None:
        calls.append("b")
        b.recv(100)
        hub.remove(a.fileno())
        hub.remove(b.fileno())
        done.set()

    hub.add(a.fileno(), on_a)
    hub.add(b.fileno(), on_b)
    a_peer.send(b"x")
    b_peer.send(b"y")
    await trio.sleep(0.01)  # both readable before the hub's first look
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        with trio.fail_after(5):
            await done.wait()
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert calls in (["a"], ["b"])
    for s in (a, a_peer, b, b_peer):
        s.close()


async def test_the_peer_closing_is_reported_and_removing_a_closed_socket_is_quiet() -> None:
    hub = ReadHub()
    ours, theirs = pair()
    ended = trio.Event()

    def on_readable() -> None:
        if ours.recv(100) == b"":
            ended.set()
            hub.remove(ours.fileno())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        hub.add(ours.fileno(), on_readable)
        theirs.close()
        with trio.fail_after(5):
            await ended.wait()
        nursery.cancel_scope.cancel()

    again, again_peer = pair()
    hub2 = ReadHub()
    hub2.add(again.fileno(), lambda: None)
    fd = again.fileno()
    again.close()
    hub2.remove(fd)  # the kernel already dropped it from the epoll
    assert len(hub2) == 0
    again_peer.close()
    ours.close()


async def test_cancelling_the_hub_forgets_every_socket() -> None:
    hub = ReadHub()
    ours, theirs = pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.run)
        hub.add(ours.fileno(), lambda: None)
        await trio.lowlevel.checkpoint()
        nursery.cancel_scope.cancel()
    assert len(hub) == 0
    ours.close()
    theirs.close()


# ---- a gateway without the hub (COBROWSE_GATEWAY_READ_HUB=off) ---------------------------


async def test_a_gateway_without_the_hub_reads_each_socket_in_its_connections_task(
    nats_server, gateways_factory
) -> None:
    """`--read-hub off` (and a platform without epoll) takes the per-task branch of
    `Connection._read_frames`: events in order both ways, back-pressure, a bad frame closed
    with its code while the other session carries on."""
    from gateway.client import Client
    from gateway.codec import Close
    from tests.gateway.test_bad_input import exchange, hello
    from tests.support.keys import mint, new_sid

    g = gateways_factory(nats_server.url)
    for gid in ("gw-a", "gw-b"):
        g.start(gid, ["--workers", "1", "--read-hub", "off"])
        assert "read_hub=False" in g.cluster.log_text(gid)
    sid = new_sid()
    n_events = 3_000
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    agent = Client([g.url("gw-b")], sid, mint(sid, "agent"), "agent")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send("snapshot", {"i": 0, "n": 1, "d": b"<html>"})
        await n.start(agent.run)
        for i in range(1, n_events):
            await visitor.send("mutation", {"i": i})
        # Bad input on the same gateway meanwhile: its own close code, nobody else hurt.
        bad_sid = new_sid()
        frames, code = await exchange(g.url("gw-a"), [hello(bad_sid, "visitor"), b"\xc1junk"])
        assert code == Close.BAD_FRAME
        assert [f.code for f in frames if getattr(f, "op", None) == "error"] == ["bad_frame"]
        await visitor.wait_acked(n_events, timeout=60)
        got = []
        with trio.move_on_after(60):
            while len(got) < n_events:
                got.append(await agent.events.receive())
        await agent.send("pointer", {"x": 1})
        with trio.fail_after(20):
            back = await visitor.events.receive()
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()
    assert [d.seq for d in got] == list(range(1, n_events + 1))
    assert [d.payload["i"] for d in got[1:]] == list(range(1, n_events))
    assert (back.kind, back.src) == ("pointer", agent.welcome.aid)
