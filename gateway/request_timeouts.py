"""Read timeouts for the router's and the proxy's HTTP servers: a client that trickles its
request never holds a connection for ever (issue 12, item 6).

Both serve ASGI apps with Hypercorn's trio worker. Hypercorn bounds the headers: its
`keep_alive_timeout` timer runs from the connection's start (and from each response's end)
until a request's headers are complete, so `COBROWSE_HTTP_HEADER_TIMEOUT` sets it. It has no
bound on the body: once the headers are in, a client sending one byte a second held its
connection and a task (300 such connections were all still open after 20 s). Its
`read_timeout` is no fix: it bounds every read, including the wait for a slow handler's answer
after the whole request is in, so it would cut the proxy's upstream fetches.

`BodyTimeout` bounds the body instead: the app's reads must have the whole body within
`COBROWSE_HTTP_BODY_TIMEOUT` of the request's start. One overall deadline, not a gap between
chunks: a gap bound still lets a client send one byte per gap for ever. When it passes, the app
is cancelled, the client gets `408` with `Connection: close`, and Hypercorn drops the
connection (it never reuses one whose request body did not end). An app that answers without
reading the body is not held either: Hypercorn closes such a connection after the answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog
import trio
from hypercorn.config import Config as HyperConfig
from prometheus_client import Counter

from .settings import HttpTimeouts

log = structlog.get_logger("gateway.request_timeouts")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SLOW_BODIES = Counter(
    "cobrowse_http_slow_bodies_total",
    "HTTP requests whose body did not arrive within COBROWSE_HTTP_BODY_TIMEOUT (closed)",
)


def hypercorn_config(host: str, port: int, timeouts: HttpTimeouts) -> HyperConfig:
    """Hypercorn's settings for serving on host:port, headers bounded by `timeouts.header`."""
    hc = HyperConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hc.accesslog = None  # the app's own access log has the route and the forwarded client
    # Hypercorn's messages through the root logger, in the process's one format (logs.py),
    # not through a handler and format of Hypercorn's own.
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 5.0
    hc.include_server_header = False
    hc.keep_alive_timeout = timeouts.header  # also the time to a request's complete headers
    return hc


@dataclass
class _BodyProgress:
    """What one request has done so far: body complete, response started, timed out."""

    complete: bool = False
    responding: bool = False
    timed_out: bool = False

    def saw(self, message: Message) -> None:
        """Note a message the app received."""
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True  # the last chunk, or a disconnect: nothing more to wait for


def _timeout_response(seconds: float) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "error": {
                "code": "request_timeout",
                "message": f"the request body did not arrive within {seconds:g} s",
            }
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 408,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


@dataclass(frozen=True)
class BodyTimeout:
    """ASGI middleware: the request body must be in within `seconds` of the request's start
    (see the module docstring). Other scopes (lifespan, websocket) pass through."""

    app: ASGIApp
    seconds: float

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = trio.current_time() + self.seconds
        progress = _BodyProgress()

        with trio.CancelScope() as app_scope:

            async def timed_receive() -> Message:
                if progress.complete:  # only a disconnect is left to wait for: no deadline
                    return await receive()
                with trio.move_on_at(deadline):
                    message = await receive()
                    progress.saw(message)
                    return message
                progress.timed_out = True
                app_scope.cancel()
                await trio.lowlevel.checkpoint()  # raises Cancelled: the app ends here
                raise AssertionError("unreachable")

            async def watched_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    progress.responding = True
                await send(message)

            await self.app(scope, timed_receive, watched_send)

        if progress.timed_out:
            SLOW_BODIES.inc()
            client = scope.get("client")
            log.info(
                "slow_request_body",
                path=scope.get("path"),
                client=client[0] if client else None,
                timeout=self.seconds,
            )
            if not progress.responding:  # else the half-sent response ends the connection
                for message in _timeout_response(self.seconds):
                    await send(message)
