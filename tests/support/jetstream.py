"""Set-up shared by the tests that need JetStream on a fresh 3-node cluster."""

from __future__ import annotations

import trio

from gateway import streams


async def ensure_layout_when_ready(bridge, settings: streams.StreamSettings):
    """`streams.ensure_stream` once the cluster has elected its JetStream meta leader (a
    fresh cluster refuses stream set-up for a moment); returns what it returns."""
    with trio.fail_after(60):
        while True:
            try:
                return await bridge.call(streams.ensure_stream, bridge.js, settings)
            except Exception:
                await trio.sleep(0.5)
