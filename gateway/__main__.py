"""`python -m gateway`: one gateway process (run one per core)."""

from __future__ import annotations

import signal
import sys

import structlog
import trio

from . import logs, streams
from .config import GatewayConfig, parse_args
from .health import serve_health
from .nats_bridge import open_bridge
from .server import Gateway

log = structlog.get_logger("gateway")


async def ensure_layout(bridge, cfg: GatewayConfig):
    """Idempotent stream and KV set-up; gateways starting together may race, so retry."""
    for attempt in range(20):
        try:
            return await bridge.call(streams.ensure_stream, bridge.js, cfg.stream)
        except Exception as exc:
            log.warning("stream_setup_retry", attempt=attempt, error=repr(exc))
            await trio.sleep(0.25 * (attempt + 1))
    raise RuntimeError("could not set up the JetStream stream and KV bucket")


async def run(cfg: GatewayConfig) -> None:
    drain_window = cfg.drain_window
    async with open_bridge(
        cfg.nats_servers, name=cfg.gateway_id, publish_timeout=cfg.publish_timeout
    ) as bridge:
        kv = await ensure_layout(bridge, cfg)
        gw = Gateway(cfg, bridge, kv)
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.serve)
            if cfg.health_port is not None:
                hp = await nursery.start(
                    serve_health, cfg.host, cfg.health_port, lambda: not gw.draining
                )
                log.info("health_listening", port=hp)
            print(f"gateway {cfg.gateway_id} ready on {cfg.url}", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal", signal=signal.Signals(signum).name)
                    with trio.move_on_after(drain_window + 2):
                        await gw.drain(drain_window)
                    nursery.cancel_scope.cancel()
                    break


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    logs.configure("gateway")
    try:
        trio.run(run, cfg)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
