"""The harness's API client (loadtest/api.py) against a real HTTP server on loopback: it lets
no more requests into httpx than its pool has connections, so a ramp's requests wait in the
harness, not in httpcore's pool (which rescans its connections for every queued request)."""

from __future__ import annotations

import json
from functools import partial

import h11
import trio

from loadtest.api import IN_FLIGHT, POOL, Api, Target


class SlowApi:
    """An HTTP/1.1 server that answers POST /v1/sessions after `delay` and counts how many
    requests it holds at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0
        self.served = 0
        self.connections = 0

    async def serve(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                self.now += 1
                self.most = max(self.most, self.now)
                await trio.sleep(self.delay)
                self.now -= 1
            elif isinstance(event, h11.EndOfMessage):
                body = json.dumps({"session_id": f"s{self.served}"}).encode()
                self.served += 1
                headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
                out = conn.send(h11.Response(status_code=201, headers=headers))
                out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


class Inside:
    """Counts the requests inside httpx (its pool) at once."""

    def __init__(self, request) -> None:
        self.request = request
        self.now = 0
        self.most = 0

    async def __call__(self, *args, **kw):
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.request(*args, **kw)
        finally:
            self.now -= 1


async def test_a_ramp_of_requests_waits_in_the_harness_below_the_pool() -> None:
    assert IN_FLIGHT <= POOL
    server = SlowApi(delay=0.2)  # long enough for 16 connections to open under CI load
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        api = Api(Target(f"http://127.0.0.1:{port}", "site", "agent", None))
        inside = Inside(api.http.request)
        api.http.request = inside  # type: ignore[method-assign]
        got: list[dict] = []

        async def create() -> None:
            got.append(await api.create_session())

        with trio.fail_after(30):
            async with trio.open_nursery() as ramp:
                for _ in range(3 * POOL):
                    ramp.start_soon(create)
        await api.aclose()
        nursery.cancel_scope.cancel()
    assert len(got) == 3 * POOL
    assert len({g["session_id"] for g in got}) == 3 * POOL
    assert inside.most == IN_FLIGHT  # every slot used, never more: nothing queues in the pool
    assert server.most == IN_FLIGHT
    assert server.connections <= POOL
