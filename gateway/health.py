"""Plain HTTP beside the WebSocket port: /healthz, /readyz and Prometheus /metrics.

Readiness fails as soon as a drain starts, so a load balancer stops sending new clients
before any existing one is told to leave.
"""

from __future__ import annotations

from collections.abc import Callable

import h11
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

MAX_REQUEST_BYTES = 16 * 1024


async def _respond(
    stream: trio.SocketStream, routes: dict[str, Callable[[], tuple[int, str, bytes]]]
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    with trio.move_on_after(10):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(4096)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                break
            return
        path = event.target.decode("latin-1").split("?", 1)[0]
        handler = routes.get(path)
        if event.method not in (b"GET", b"HEAD"):
            status, ctype, body = 405, "text/plain", b"method not allowed\n"
        elif handler is None:
            status, ctype, body = 404, "text/plain", b"not found\n"
        else:
            status, ctype, body = handler()
        headers = [
            ("content-type", ctype),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        if event.method != b"HEAD":
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def serve_health(
    host: str,
    port: int,
    ready: Callable[[], bool],
    *,
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    def healthz():
        return 200, "text/plain", b"ok\n"

    def readyz():
        return (200, "text/plain", b"ready\n") if ready() else (503, "text/plain", b"draining\n")

    def metrics():
        return 200, CONTENT_TYPE_LATEST, generate_latest()

    routes = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _respond(stream, routes)
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)
