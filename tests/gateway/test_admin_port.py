"""The gateway's admin port: probes, metrics and an authenticated drain; and a real
gateway drained from anywhere through `python -m router drain`."""

from __future__ import annotations

import subprocess
import sys

import trio

from gateway import metrics  # noqa: F401 - registers the gateway metrics
from gateway.admin_port import AdminHooks, route
from tests.support.keys import ADMIN_KEY


def hooks(ready: bool = True, key: str | None = "k" * 20) -> tuple[AdminHooks, list]:
    calls: list = []

    def drain() -> dict:
        calls.append(1)
        return {"ok": True, "state": "draining"}

    return AdminHooks(ready=lambda: ready, drain=drain, admin_key=key), calls


def test_probes_and_metrics():
    h, _ = hooks()
    assert route(h, b"GET", "/healthz", {})[0] == 200
    assert route(h, b"GET", "/readyz", {})[0] == 200
    assert route(hooks(ready=False)[0], b"GET", "/readyz", {})[0] == 503
    status, ctype, body = route(h, b"GET", "/metrics", {})
    assert status == 200 and b"cobrowse_gateway_connections" in body
    assert route(h, b"GET", "/nope", {})[0] == 404
    assert route(h, b"DELETE", "/healthz", {})[0] == 405


def test_drain_needs_the_admin_key():
    h, calls = hooks()
    assert route(h, b"GET", "/admin/drain", {})[0] == 405
    assert route(h, b"POST", "/admin/drain", {})[0] == 401
    assert route(h, b"POST", "/admin/drain", {b"authorization": b"Bearer wrong"})[0] == 401
    assert calls == []
    status, _, body = route(h, b"POST", "/admin/drain", {b"authorization": b"Bearer " + b"k" * 20})
    assert status == 202 and b"draining" in body and calls == [1]
    no_key, calls2 = hooks(key=None)
    assert route(no_key, b"POST", "/admin/drain", {b"authorization": b"Bearer x"})[0] == 403
    assert calls2 == []
    assert ADMIN_KEY  # the fixtures give real gateways a key


async def test_router_drain_command_drains_a_real_gateway(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-a", ["--drain-window", "1"])
    out = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "router", "drain", "gw-a", "--nats", nats_server.url],
            capture_output=True,
            text=True,
            timeout=30,
        )
    )
    assert out.returncode == 0, out.stderr
    assert "draining" in out.stdout
    proc = g.procs["gw-a"][0]
    with trio.fail_after(15):
        while proc.poll() is None:
            await trio.sleep(0.05)
    assert proc.returncode == 0


async def _ask(port: int, data: bytes, wait: float = 1.0) -> bytes:
    """Send `data`, then read what comes back until the server closes or `wait` passes."""
    got = b""
    with trio.move_on_after(wait):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            try:
                await stream.send_all(data)
                while chunk := await stream.receive_some(65536):
                    got += chunk
            except trio.BrokenResourceError:
                pass
    return got


async def test_garbage_never_takes_the_admin_port_down():
    """Random bytes and broken HTTP (seeded): each connection ends (an answer, or closed
    within the header timeout) and the port still answers its probes afterwards. A handler
    that raised anything but a protocol error would end `serve_admin` itself: the probes
    of a gateway would then fail and Kubernetes would restart it."""
    import random

    from gateway.admin_port import serve_admin

    rng = random.Random(20261203)
    broken = [
        b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /admin/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\nab",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET \xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /readyz?\x00 HTTP/1.1\r\nHost: \x00\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"",
    ]
    h, calls = hooks()
    async with trio.open_nursery() as n:
        port = await n.start(
            lambda task_status: serve_admin(
                "127.0.0.1", 0, h, header_timeout=0.3, task_status=task_status
            )
        )
        for data in broken + [rng.randbytes(rng.randrange(1, 3000)) for _ in range(30)]:
            await _ask(port, data)
        ok = await _ask(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"ok\n"), ok
        assert calls == []  # nothing above drained
        n.cancel_scope.cancel()
