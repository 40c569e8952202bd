"""`python -m gateway`: one gateway process (run one per core)."""

from __future__ import annotations

import json
import signal
import sys
import time
from functools import partial

import structlog
import trio

from . import build_info, logs, membership, streams
from .admin_port import AdminHooks, serve_admin
from .config import GatewayConfig, parse_args
from .nats_bridge import NatsBridge, open_bridge
from .nats_client import NatsClient
from .server import Gateway
from .supervisor import EXIT_DRAINED_ALONE, Supervisor, ready_file, set_parent_death_signal

log = structlog.get_logger("gateway")

# JetStream publishes go out on their own NATS connection, whose acknowledgements are read
# at most every 5 ms while they keep coming, unless a sender has events waiting on one:
# otherwise nothing waits for them but the client's ack (sent every 0.1 s anyway), and at
# 2,000 events/s it saves about half the gateway's NATS wake-ups. Live events and requests
# stay on the main connection, read as they come.
ACK_READ_INTERVAL = 0.005
# A drain request is answered once the registry records "draining" (one KV put, a few ms),
# at most this long after it: under the router's 5 s wait for the answers.
DRAIN_RECORD_WAIT = 2.0


async def ensure_layout(bridge: NatsBridge, cfg: GatewayConfig):
    """Idempotent stream and KV set-up (the session bucket too, which connections then use
    on the trio client); gateways starting together may race, so retry. The membership
    bucket."""
    for attempt in range(20):
        try:
            await bridge.call(streams.ensure_stream, bridge.js, cfg.stream)
            members = await bridge.call(
                membership.ensure_bucket, bridge.js, cfg.stream.storage, cfg.stream.replicas
            )
            return members
        except Exception as exc:
            log.warning("stream_setup_retry", attempt=attempt, error=repr(exc))
            await trio.sleep(0.25 * (attempt + 1))
    raise RuntimeError("could not set up the JetStream stream and KV buckets")


async def heartbeat(
    gw: Gateway, members, admin_url: str | None, drain_recorded: trio.Event
) -> None:
    """Keep this gateway's membership entry fresh; publish a state change at once, and set
    `drain_recorded` once the registry says "draining" (a drain request is answered then)."""
    cfg = gw.cfg
    last_wall, last_cpu = time.monotonic(), time.process_time()
    while True:
        now_wall, now_cpu = time.monotonic(), time.process_time()
        load = (now_cpu - last_cpu) / max(1e-3, now_wall - last_wall)
        last_wall, last_cpu = now_wall, now_cpu
        info = membership.GatewayInfo(
            id=cfg.gateway_id,
            url=cfg.url,
            state="draining" if gw.draining else "active",
            connections=len(gw.conns),
            load=round(load, 3),
            admin_url=admin_url,
            updated=time.time(),
            instance=gw.ctx.instance,
        )
        try:
            await gw.bridge.call(membership.put, members, info)
            if info.state == "draining":
                drain_recorded.set()
        except Exception as exc:
            log.warning("heartbeat_failed", error=repr(exc))
        with trio.move_on_after(membership.HEARTBEAT):
            if not gw.draining:
                await gw.drain_started.wait()
            else:
                await trio.sleep_forever()


async def run(cfg: GatewayConfig) -> int:
    """Serve until drained; the exit status (`EXIT_DRAINED_ALONE` after a drain of this
    worker alone, which its supervisor answers by starting a fresh one)."""
    async with (
        NatsClient.open(cfg.nats_servers, name=cfg.gateway_id, security=cfg.nats) as nc,
        NatsClient.open(
            cfg.nats_servers,
            name=f"{cfg.gateway_id}-publish",
            read_interval=ACK_READ_INTERVAL,
            security=cfg.nats,
        ) as nc_publish,
        open_bridge(cfg.nats_servers, name=f"{cfg.gateway_id}-mgmt", security=cfg.nats) as bridge,
    ):
        members = await ensure_layout(bridge, cfg)
        gw = Gateway(cfg, nc, bridge, members, publish_nc=nc_publish)

        alone = False  # this worker was drained by its own id, not with its gateway

        def drain_state() -> dict:
            gw.start_drain()
            return {
                "ok": True,
                "gateway": cfg.gateway_id,
                "state": "draining",
                "connections": len(gw.conns),
            }

        async with trio.open_nursery() as nursery:
            await nursery.start(gw.serve)
            admin_url = None
            if cfg.health_port is not None:
                hooks = AdminHooks(
                    ready=lambda: not gw.draining and nc.connected and bridge.connected,
                    drain=drain_state,
                    admin_key=cfg.admin_key,
                )
                hp = await nursery.start(
                    partial(serve_admin, header_timeout=cfg.admin_header_timeout),
                    cfg.host,
                    cfg.health_port,
                    hooks,
                )
                admin_url = f"http://{cfg.host}:{hp}/"
                log.info("admin_listening", port=hp)
            drain_recorded = trio.Event()
            nursery.start_soon(heartbeat, gw, members, admin_url, drain_recorded)

            async def answer_when_recorded(reply: str, state: dict) -> None:
                """Answer once the registry says "draining", so whoever asked (the router's
                API clears its gateway directory on the answer) reads it there; at most
                `DRAIN_RECORD_WAIT` later if the registry cannot be written."""
                with trio.move_on_after(DRAIN_RECORD_WAIT):
                    await drain_recorded.wait()
                nc.publish(reply, json.dumps(state).encode())

            def on_drain_request(msg) -> None:
                nonlocal alone
                if msg.subject == worker_subject and not gw.draining:
                    # The siblings behind the same port stay: let the kernel send new
                    # connections to them rather than to this worker's refusals.
                    alone = True
                    gw.stop_accepting()
                state = drain_state()
                if msg.reply:
                    nursery.start_soon(answer_when_recorded, msg.reply, state)

            gateway_subject = membership.drain_subject(cfg.base_id or cfg.gateway_id)
            nc.subscribe(gateway_subject, on_drain_request)
            worker_subject = None
            if cfg.base_id is not None:  # a worker: its own id drains it alone
                worker_subject = membership.drain_subject(cfg.gateway_id)
                nc.subscribe(worker_subject, on_drain_request)
            nursery.start_soon(_signals, gw)
            log.info("gateway_ready", gateway=cfg.gateway_id, url=cfg.url)
            if cfg.worker_index is not None and (ready := ready_file(cfg.worker_index)):
                ready.touch()
            await gw.drain_started.wait()
            await gw.drain(cfg.drain_window)
            try:
                with trio.move_on_after(2):
                    await bridge.call(membership.remove, members, cfg.gateway_id)
            except Exception as exc:
                log.warning("membership_remove_failed", error=repr(exc))
            nursery.cancel_scope.cancel()
    return EXIT_DRAINED_ALONE if alone else 0


class StopNow(Exception):
    """A second Ctrl-C (SIGINT) during a drain: stop without finishing it."""


async def _signals(gw: Gateway) -> None:
    """SIGTERM or SIGINT starts the drain. A SIGTERM during a drain changes nothing (a
    supervisor or an orchestrator may send it to a worker already draining over NATS: the
    drain finishes its window and exits 0); a second SIGINT (Ctrl-C again) stops now."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            log.info("signal", signal=name, draining=gw.draining)
            if gw.draining and signum == signal.SIGINT:
                raise StopNow
            gw.start_drain()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    logs.configure("gateway", cfg.log)
    build_info.register("gateway")
    if cfg.worker_index is None and cfg.workers > 1:
        sys.exit(trio.run(Supervisor(cfg, argv).run))
    if cfg.worker_index is not None:
        set_parent_death_signal()
        structlog.contextvars.bind_contextvars(worker=cfg.worker_index)
    try:
        sys.exit(trio.run(run, cfg))
    except* (KeyboardInterrupt, StopNow):
        sys.exit(130)


if __name__ == "__main__":
    main()
