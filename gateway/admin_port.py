"""The gateway's admin port: /healthz, /readyz, Prometheus /metrics and POST /admin/drain.

The router serves the same port without the drain as its metrics port (router/serve.py).

Readiness fails as soon as a drain starts (and while NATS is unreachable), so a load
balancer stops sending new clients before any existing one is told to leave. Liveness fails
only where the supervisor of several workers finds one stuck (gateway/worker_health.py).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

import h11
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .settings import HTTP_HEADER_TIMEOUT

MAX_REQUEST_BYTES = 16 * 1024

Response = tuple[int, str, bytes]


@dataclass
class AdminHooks:
    ready: Callable[[], bool]
    drain: Callable[[], dict] | None  # starts a drain, returns the state; None: no drains
    admin_key: str | None
    metrics: Callable[[], bytes] = generate_latest
    live: Callable[[], bool] = lambda: True
    detail: Callable[[], dict[str, str]] | None = None  # e.g. each worker's state, in bodies


def _probe(ok: bool, good: bytes, bad: bytes, hooks: AdminHooks) -> Response:
    """A probe's answer: 200 or 503, the word, then `detail` as `key=value` words."""
    extra = " ".join(f"{k}={v}" for k, v in hooks.detail().items()) if hooks.detail else ""
    body = (good if ok else bad) + (b" " + extra.encode() if extra else b"") + b"\n"
    return (200 if ok else 503), "text/plain", body


def _json(status: int, obj: dict) -> Response:
    return status, "application/json", json.dumps(obj).encode()


def route(hooks: AdminHooks, method: bytes, path: str, headers: dict[bytes, bytes]) -> Response:
    """Sans-I/O: one request in, one response out."""
    if path == "/admin/drain" and hooks.drain is not None:
        if method != b"POST":
            return _json(405, {"error": {"code": "method_not_allowed", "message": "use POST"}})
        auth = headers.get(b"authorization", b"").decode("latin-1")
        key = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not hooks.admin_key:
            return _json(
                403, {"error": {"code": "admin_disabled", "message": "no admin key configured"}}
            )
        if not hmac.compare_digest(key.encode(), hooks.admin_key.encode()):
            return _json(
                401, {"error": {"code": "bad_admin_key", "message": "missing or wrong bearer key"}}
            )
        return _json(202, hooks.drain())
    if method not in (b"GET", b"HEAD"):
        return _json(405, {"error": {"code": "method_not_allowed", "message": "use GET"}})
    if path == "/healthz":
        return _probe(hooks.live(), b"ok", b"stuck", hooks)
    if path == "/readyz":
        return _probe(hooks.ready(), b"ready", b"not ready", hooks)
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, hooks.metrics()
    return _json(404, {"error": {"code": "not_found", "message": "no such path"}})


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    """The request's head, or None when the client closes or sends something else."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            if not data:
                return None
            conn.receive_data(data)
            continue
        return event if isinstance(event, h11.Request) else None


async def _respond(stream: trio.SocketStream, hooks: AdminHooks, header_timeout: float) -> None:
    """Answer one request and close: its body is never read, so only the headers (and the
    answer, which a client may not read) need a bound."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    event = None
    with trio.move_on_after(header_timeout):
        event = await _read_request(stream, conn)
    if event is None:
        return
    path = event.target.decode("latin-1").split("?", 1)[0]
    headers = {k.lower(): v for k, v in event.headers}
    status, ctype, body = route(hooks, event.method, path, headers)
    out = [("content-type", ctype), ("content-length", str(len(body))), ("connection", "close")]
    with trio.move_on_after(header_timeout):
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=out)))
        if event.method != b"HEAD":
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def serve_admin(
    host: str,
    port: int,
    hooks: AdminHooks,
    *,
    header_timeout: float = HTTP_HEADER_TIMEOUT.default,
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _respond(stream, hooks, header_timeout)
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)
