"""Admission at the handshake as browsers and proxies see it: 4009 refusals, X-Forwarded-For."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from gateway.codec import Close
from tests.support.keys import new_sid


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


async def test_per_address_limit_reads_trusted_forwarded_for(nats_server, gateways_factory):
    """Behind an Ingress every peer is the controller: with one trusted hop the visitor's
    own address (the right-most X-Forwarded-For entry) is what the limit counts."""
    g = gateways_factory(nats_server.url)
    url = g.start("gw-x", ["--forwarded-hops", "1", "--new-per-address", "1/minute"])

    async def status(xff: str) -> int:
        try:
            async with open_websocket_url(
                f"{url}?sid={new_sid()}",
                connect_timeout=5,
                extra_headers=[(b"X-Forwarded-For", xff.encode())],
            ):
                return 101
        except ConnectionRejected as exc:
            return exc.status_code

    assert await status("203.0.113.7") == 101
    assert await status("203.0.113.8") == 101  # another visitor, same TCP peer
    assert await status("203.0.113.7") == 429  # the first visitor again
    # a forged left-most entry does not help: only the trusted hop counts
    assert await status("198.51.100.1, 203.0.113.8") == 429
