"""A client that stops reading costs its gateway a bounded buffer, and gets everything, in
order, once it reads again (G1, G4): its receivers leave the live path and are served from
the stream once it has taken what was queued."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import open_websocket_url

from gateway.client import Client, handshake_url
from gateway.codec import Events, Hello, Welcome, decode_frame, encode_frame
from tests.support.keys import mint, new_sid

N_EVENTS = 960
PAYLOAD = "p" * 16_000  # 960 x 16 KB: 15 MB for an agent that reads nothing


@pytest.fixture(autouse=True)
def roomy_budget(monkeypatch):
    """The receiver is under test here: the visitor's 15 MB go at once (the default send
    budget, 8 MiB then 2 MiB/s, would hold them about 3.5 s; tests/gateway/test_flood.py tests it)."""
    monkeypatch.setenv("COBROWSE_BUDGET_BYTE_BURST", str(64 * 2**20))


async def test_an_agent_that_stops_reading_is_caught_up_from_the_stream(two_gateways):
    g = two_gateways
    sid = new_sid()
    visitor = Client([g.url("gw-a")], sid, mint(sid, "visitor"), "visitor")
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send_snapshot(b"<html>")
        await visitor.wait_acked(1)
        # A raw agent on the other gateway: trio-websocket stops reading the socket as soon
        # as one message waits unread, so the gateway sees a client that takes nothing.
        url = handshake_url(g.url("gw-b"), sid, None)
        async with open_websocket_url(url, max_message_size=4 * 2**20) as ws:
            await ws.send_message(
                encode_frame(Hello(role="agent", sid=sid, token=mint(sid, "agent")))
            )
            assert isinstance(decode_frame(await ws.get_message()), Welcome)
            for i in range(N_EVENTS):
                await visitor.send("custom", {"i": i, "d": PAYLOAD})
            await visitor.wait_acked(1 + N_EVENTS, timeout=60)  # stored, whoever reads
            await trio.sleep(1.5)  # the gateway's sweep measures its send queues each second
            queued = g.metric("gw-b", "cobrowse_gateway_send_queue_max_bytes")
            got: list[int] = []
            with trio.fail_after(60):
                while not got or got[-1] < 1 + N_EVENTS:
                    frame = decode_frame(await ws.get_message())
                    if isinstance(frame, Events):
                        got += [e.seq for e in frame.events]
        visitor.close()
        n.cancel_scope.cancel()
    assert got == list(range(1, 2 + N_EVENTS))  # the snapshot, then every event, once, in order
    # Held for the client: at most the high water (1 MiB) and one frame, whatever it missed
    # (less once the kernel's socket buffers took some: queued may be 0). (The
    # process's RSS is no measure of this: 15 MB passing through leaves the allocator's high
    # water mark behind either way.)
    assert queued < 2 * 2**20, f"{queued / 2**20:.1f} MiB queued for a client that reads nothing"
    assert g.metric("gw-b", "cobrowse_gateway_receivers_behind_total") >= 1
