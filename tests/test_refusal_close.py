"""Browsers cannot read a refused handshake's HTTP status, so `?refusal=close` gets 4009."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from gateway.codec import Close

from .conftest import new_sid


async def _close_of(url: str) -> tuple[int, str]:
    async with open_websocket_url(url, connect_timeout=5) as ws:
        with pytest.raises(ConnectionClosed) as info:
            with trio.fail_after(5):
                await ws.get_message()
    return info.value.reason.code, info.value.reason.reason or ""


async def test_refused_browser_handshake_is_a_4009_close_with_retry_after(
    nats_server, gateways_factory
):
    g = gateways_factory(nats_server.url)
    url = g.start("gw-r", ["--new-rate", "0.01", "--new-burst", "1"])
    # The one token in the bucket goes to the first connection, which is let in.
    async with open_websocket_url(f"{url}?sid={new_sid()}&refusal=close", connect_timeout=5):
        code, reason = await _close_of(f"{url}?sid={new_sid()}&refusal=close")
    assert code == Close.REFUSED
    assert reason.startswith("rate_limited: retry_after=")
    assert int(reason.rsplit("=", 1)[1]) >= 1
    # Without the flag the refusal stays an HTTP 429 with Retry-After.
    with pytest.raises(ConnectionRejected) as rej:
        async with open_websocket_url(f"{url}?sid={new_sid()}", connect_timeout=5):
            pass
    assert rej.value.status_code == 429
    assert any(k.lower() == b"retry-after" for k, _ in rej.value.headers)
