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
