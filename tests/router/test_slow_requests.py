"""Clients that trickle a request are dropped (issue 12, item 6): headers within
COBROWSE_HTTP_HEADER_TIMEOUT, bodies within COBROWSE_HTTP_BODY_TIMEOUT, on the router (served
by `run_server`), the proxy (`python -m proxy serve`) and a gateway's admin port; requests that
keep within the bounds, also a steady upload, are served meanwhile.

Real servers on 127.0.0.1 and raw sockets. `-s` prints the measured drop times."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client import REGISTRY

from gateway import tokens
from gateway.admin_port import AdminHooks, serve_admin
from gateway.request_timeouts import BodyTimeout, hypercorn_config
from gateway.settings import HttpTimeouts
from gateway.tokens import Keyring
from proxy.__main__ import _serve_until_signal
from proxy.config import ProxyConfig
from proxy.service import create_app
from router.natsproc import free_port
from tests.proxy.test_proxy_cli import KEYS
from tests.router.test_api import SITE_KEY, serving

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
SLACK = 3.0  # two shared cores, loaded; under the 5 s Hypercorn gives headers by default
CEILING = 10.0  # seconds the trickling clients wait at most (without the fix: for ever)
SLOW = 50  # connections trickling a body
SLOW_HEADS = 10  # connections trickling their headers
DRIP = 0.2  # seconds between trickled bytes
TIMEOUTS = {"COBROWSE_HTTP_HEADER_TIMEOUT": "1", "COBROWSE_HTTP_BODY_TIMEOUT": "2"}


@dataclass
class Dropped:
    """When the server closed each trickling connection (seconds after it opened), and what
    it had answered by then."""

    after: list[float] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.after)} dropped after {min(self.after):.2f}-{max(self.after):.2f} s"


def request_head(path: str, length: int, *, close: bool = False, extra: str = "") -> bytes:
    """A POST's head; `extra` is more header lines, each ending in CRLF."""
    extra += "Connection: close\r\n" if close else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def slow_bodies_counted() -> float:
    return REGISTRY.get_sample_value("cobrowse_http_slow_bodies_total") or 0.0


async def trickle(port: int, head: bytes, byte: bytes, dropped: Dropped) -> None:
    """Send `head`, then `byte` every DRIP seconds until the server closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    opened = trio.current_time()
    answer = bytearray()
    async with stream, trio.open_nursery() as n:

        async def drip() -> None:
            try:
                await stream.send_all(head)
                while True:
                    await trio.sleep(DRIP)
                    await stream.send_all(byte)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server has closed

        n.start_soon(drip)
        try:
            while chunk := await stream.receive_some(65536):
                answer += chunk
        except trio.BrokenResourceError:
            pass
        n.cancel_scope.cancel()
    dropped.after.append(trio.current_time() - opened)
    dropped.answers.append(bytes(answer))


async def steady_upload(
    port: int, path: str, body: bytes, pieces: int = 4, extra: str = ""
) -> bytes:
    """POST `body` in `pieces` sent DRIP seconds apart, well within the body timeout; the
    whole answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request_head(path, len(body), close=True, extra=extra))
        size = -(-len(body) // pieces)
        for i in range(0, len(body), size):
            await trio.sleep(DRIP)
            await stream.send_all(body[i : i + size])
        answer = bytearray()
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    return bytes(answer)


async def slow_clients_are_dropped(
    port: int, path: str, normal: Callable[[], Awaitable[None]], extra: str = ""
) -> tuple[Dropped, Dropped]:
    """Open SLOW body tricklers (with `extra` header lines) and SLOW_HEADS header tricklers;
    call `normal()` while they are open and after they were dropped; check each kind was
    dropped by its bound."""
    bodies, heads = Dropped(), Dropped()
    with trio.move_on_after(CEILING):
        async with trio.open_nursery() as n:
            for _ in range(SLOW):
                n.start_soon(trickle, port, request_head(path, 1000, extra=extra), b" ", bodies)
            head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
            for _ in range(SLOW_HEADS):
                n.start_soon(trickle, port, head, b"x", heads)
            await trio.sleep(HEADER_TIMEOUT / 2)
            await normal()
    assert len(bodies.after) == SLOW, (
        f"{SLOW - len(bodies.after)} of {SLOW} slow bodies still open after "
        f"{CEILING} s (body timeout {BODY_TIMEOUT} s)"
    )
    assert len(heads.after) == SLOW_HEADS, (
        f"{SLOW_HEADS - len(heads.after)} of {SLOW_HEADS} slow headers still open after "
        f"{CEILING} s (header timeout {HEADER_TIMEOUT} s)"
    )
    # Not before their bound (less a little: the server's clock starts at its accept).
    assert min(bodies.after) >= BODY_TIMEOUT - 0.1, bodies.summary()
    assert HEADER_TIMEOUT - 0.1 <= min(heads.after) <= max(heads.after) <= HEADER_TIMEOUT + SLACK, (
        heads.summary()
    )
    assert heads.answers == [b""] * SLOW_HEADS  # closed without an answer
    for answer in bodies.answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"connection: close" in answer.lower() and b'"request_timeout"' in answer
    await normal()
    return bodies, heads


# ---- the router ---------------------------------------------------------------------------


async def test_router_drops_slow_bodies_and_headers(nats_server):
    over = {"http_header_timeout": "1", "http_body_timeout": "2"}
    async with serving(nats_server.url, **over) as api:
        port = int(str(api.http.base_url).rsplit(":", 1)[1].strip("/"))

        async def normal() -> None:
            await api.create()  # 201, asserted inside

        async with trio.open_nursery() as n:
            steady: list[bytes] = []

            async def upload() -> None:  # 4 KiB (the limit is 16) over 0.8 s, under 2 s
                body = json.dumps({"site_key": SITE_KEY}).encode() + b" " * 4096
                steady.append(await steady_upload(port, "/v1/sessions", body))

            n.start_soon(upload)
            bodies, heads = await slow_clients_are_dropped(port, "/v1/sessions", normal)
        assert steady[0].startswith(b"HTTP/1.1 201 "), steady[0][:300]
    print(f"\nrouter: slow bodies {bodies.summary()}; slow headers {heads.summary()}")


# ---- the proxy ----------------------------------------------------------------------------


async def test_proxy_drops_slow_bodies_and_headers():
    """`python -m proxy serve`'s server (its `_serve_until_signal`), in this process to save
    the second a process start takes."""
    env = {"COBROWSE_PROXY_KEYS": KEYS, "COBROWSE_TOKEN_KEYS": KEYS, **TIMEOUTS}
    config = ProxyConfig.from_env(env)
    port = free_port()
    async with trio.open_nursery() as server:
        server.start_soon(_serve_until_signal, create_app(config), "127.0.0.1", port, config.http)
        try:
            await proxy_checks(port)
        finally:
            server.cancel_scope.cancel()


async def proxy_checks(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        for _ in range(100):  # bounded: the server starts in well under 5 s
            try:
                await http.get("/healthz")
                break
            except httpx.TransportError:
                await trio.sleep(0.05)

        async def normal() -> None:
            assert (await http.get("/healthz")).status_code == 200

        base = "https://site.example/main.css"
        token = tokens.mint(Keyring.parse(KEYS), sid="s1", role="agent", now=time.time(), ttl=600)
        auth = f"Authorization: Bearer {token}\r\n"  # only an agent may rewrite
        css = "/* " + "-" * 50_000 + " */ a { color: red }"  # 50 KB over 0.8 s, under 2 s
        upload = {"css": css, "base_url": base}
        counted = slow_bodies_counted()
        async with trio.open_nursery() as n:
            steady: list[bytes] = []

            async def upload_css() -> None:
                body = json.dumps(upload).encode()
                steady.append(await steady_upload(port, "/v1/rewrite", body, extra=auth))

            n.start_soon(upload_css)
            bodies, heads = await slow_clients_are_dropped(port, "/v1/rewrite", normal, auth)
        answer = steady[0]
        assert answer.startswith(b"HTTP/1.1 200 ") and b"color: red" in answer, answer[:300]
        assert slow_bodies_counted() == counted + SLOW
        assert "\ncobrowse_http_slow_bodies_total " in (await http.get("/metrics")).text
    print(f"\nproxy: slow bodies {bodies.summary()}; slow headers {heads.summary()}")


# ---- a gateway's admin port ----------------------------------------------------------------

DRAIN = "/admin/drain"


async def test_admin_port_drops_slow_headers_and_answers_without_the_body():
    hooks = AdminHooks(ready=lambda: True, drain=lambda: True, admin_key=None, metrics=bytes)
    async with trio.open_nursery() as n:
        port = await n.start(
            lambda task_status: serve_admin(
                "127.0.0.1", 0, hooks, header_timeout=HEADER_TIMEOUT, task_status=task_status
            )
        )
        heads, bodies = Dropped(), Dropped()
        with trio.move_on_after(HEADER_TIMEOUT + SLACK):  # the old bound was 10 s
            async with trio.open_nursery() as clients:
                head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
                for _ in range(SLOW_HEADS):
                    clients.start_soon(trickle, port, head, b"x", heads)
                for _ in range(SLOW_HEADS):  # the body is never read: answered, then closed
                    clients.start_soon(trickle, port, request_head(DRAIN, 1000), b" ", bodies)
        assert len(heads.after) == SLOW_HEADS, f"{SLOW_HEADS - len(heads.after)} still open"
        assert min(heads.after) >= HEADER_TIMEOUT - 0.1 and all(a == b"" for a in heads.answers)
        assert len(bodies.after) == SLOW_HEADS, f"{SLOW_HEADS - len(bodies.after)} still open"
        for answer in bodies.answers:  # no admin key here: refused, at once
            assert answer.startswith(b"HTTP/1.1 403 ") and b"admin_disabled" in answer, answer
        n.cancel_scope.cancel()
    print(f"\nadmin port: slow headers {heads.summary()}; bodies {bodies.summary()}")


# ---- BodyTimeout after the answer has started -------------------------------------------------


async def test_a_body_slower_than_the_bound_after_the_answer_started_ends_the_connection():
    """An app that answers first and reads the body after (streaming) cannot be given a 408:
    the half-sent answer is cut and the connection closed, at the same bound."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":  # passed through BodyTimeout untouched
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"done\n"})

    timeouts = HttpTimeouts(header=HEADER_TIMEOUT, body=BODY_TIMEOUT)
    config = hypercorn_config("127.0.0.1", 0, timeouts)
    async with trio.open_nursery() as n:
        urls = await n.start(partial(hypercorn_serve, BodyTimeout(app, BODY_TIMEOUT), config))
        port = int(urls[0].rsplit(":", 1)[1])
        dropped = Dropped()
        with trio.move_on_after(CEILING):
            await trickle(port, request_head("/", 1000), b" ", dropped)
        assert len(dropped.after) == 1, "still open"
        assert dropped.after[0] >= BODY_TIMEOUT - 0.1, dropped.summary()
        answer = dropped.answers[0]
        assert answer.startswith(b"HTTP/1.1 200 ") and b"started" in answer, answer
        assert b"done" not in answer and b"408" not in answer, answer
        n.cancel_scope.cancel()
