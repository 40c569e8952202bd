"""`python -m router serve | status | drain`: the HTTP API process and two operator commands.

`serve` opens the NATS bridge, makes sure the stream and the three KV buckets exist (sessions,
short codes, gateway membership) and serves the API with Hypercorn's trio worker until SIGINT
or SIGTERM. `status` prints the gateways registered in the membership bucket; `drain` asks one
gateway, by NATS request, to drain.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import structlog
import trio
from hypercorn.trio import serve as hypercorn_serve
from nats.js.errors import BucketNotFoundError

from gateway import membership, settings, streams
from gateway.admin_port import AdminHooks, serve_admin
from gateway.logs import configure
from gateway.nats_bridge import open_bridge
from gateway.nats_security import NatsSecurity, NatsSecurityError, from_settings, load
from gateway.request_timeouts import BodyTimeout, hypercorn_config

from . import gateway_control, sessions
from .api import create_app
from .config import ConfigError, RouterConfig
from .config import load as load_config

log = structlog.get_logger("router.serve")

CONNECT_TIMEOUT = 5.0
PROG = "python -m router"


async def run_server(
    cfg: RouterConfig,
    *,
    shutdown_trigger=None,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API; `task_status.started` gets the bound URLs."""
    async with open_bridge(cfg.nats_servers, name="cobrowse-router", security=cfg.nats) as bridge:
        kv_sessions = await bridge.call(streams.ensure_stream, bridge.js, cfg.stream)
        kv_codes = await bridge.call(
            sessions.ensure_codes_bucket,
            bridge.js,
            cfg.codes_bucket,
            cfg.codes_ttl,
            cfg.stream.storage,
            cfg.stream.replicas,
        )
        kv_gateways = await bridge.call(
            membership.ensure_bucket, bridge.js, cfg.stream.storage, cfg.stream.replicas
        )
        app = BodyTimeout(
            create_app(cfg, bridge, kv_sessions, kv_codes, kv_gateways), cfg.http.body
        )
        hc = hypercorn_config(cfg.host, cfg.port, cfg.http)

        async with trio.open_nursery() as n:

            async def serving(*, task_status=trio.TASK_STATUS_IGNORED):
                await hypercorn_serve(
                    app, hc, shutdown_trigger=shutdown_trigger, task_status=task_status
                )
                n.cancel_scope.cancel()  # the metrics listener ends with the API

            urls = await n.start(serving)
            if cfg.metrics_port is not None:
                hooks = AdminHooks(ready=lambda: bridge.connected, drain=None, admin_key=None)
                port = await n.start(
                    partial(serve_admin, header_timeout=cfg.http.header),
                    cfg.host,
                    cfg.metrics_port,
                    hooks,
                )
                log.info("router_metrics_listening", port=port)
            log.info("router_listening", urls=urls, nats=cfg.nats_servers)
            task_status.started(urls)


async def _serve_until_signal(cfg: RouterConfig) -> None:
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def watch() -> None:
            async for signum in signals:
                log.info("router_stopping", signal=signal.Signals(signum).name)
                stop.set()
                return

        async with trio.open_nursery() as n:
            n.start_soon(watch)
            await run_server(cfg, shutdown_trigger=stop.wait)
            n.cancel_scope.cancel()


def cmd_serve(host: str | None, port: int | str | None) -> int:
    try:
        cfg = load_config(host=host, port=port)
    except ConfigError as exc:
        sys.stderr.write(exc.report(PROG))
        return 2
    configure("router", cfg.log)
    trio.run(_serve_until_signal, cfg)
    log.info("router_stopped")
    return 0


# ---- operator commands ------------------------------------------------------------------


def nats_url(
    flag: str | None, cluster: str = ".run/cluster.json", environ: Mapping[str, str] | None = None
) -> str | None:
    """--nats, else COBROWSE_NATS_URL, else the local cluster's (`make run`). A bad flag or
    variable raises ConfigError (with a bad log setting: the commands log too)."""
    reader = settings.Reader(
        os.environ if environ is None else environ,
        overrides={settings.NATS_URL.name: flag},
        labels={settings.NATS_URL.name: "--nats"},
    )
    given = reader.raw(settings.NATS_URL) is not None
    servers = reader.value(settings.NATS_URL)
    reader.read(settings.LogSettings)
    reader.check()
    if given:
        return ",".join(servers)
    path = Path(cluster)
    if path.exists():
        try:
            return json.loads(path.read_text())["nats"]["url"]
        except (ValueError, KeyError, TypeError):
            return None
    return None


def nats_security(
    cluster: str = ".run/cluster.json", environ: Mapping[str, str] | None = None
) -> NatsSecurity:
    """The COBROWSE_NATS_* credentials and CA, else those `router up --secure` recorded
    in the local cluster's file (the router's user), else none. ConfigError when wrong."""
    reader = settings.Reader(os.environ if environ is None else environ)
    got = reader.read(settings.NatsAuthVars)
    reader.check()
    assert got is not None
    try:
        if got.user is not None or got.ca_file is not None:
            return from_settings(got)
        path = Path(cluster)
        info = json.loads(path.read_text()).get("nats", {}) if path.exists() else {}
        if isinstance(info, dict) and "tls_ca" in info:
            return load(
                user="router", password_file=info["users"]["router"], ca_file=info["tls_ca"]
            )
    except NatsSecurityError as exc:
        raise ConfigError([str(exc)]) from None
    except (ValueError, KeyError, TypeError):
        pass  # no usable local cluster file: no credentials
    return NatsSecurity()


async def _with_nats(url: str, action, security: NatsSecurity | None = None):
    """Run `action(bridge)`; None if NATS was not reachable within CONNECT_TIMEOUT."""
    result = None
    with trio.move_on_after(CONNECT_TIMEOUT + 40):  # a stuck JetStream never hangs a CLI
        connected = False

        async def connect_watchdog(cancel_scope):
            await trio.sleep(CONNECT_TIMEOUT)
            if not connected:
                cancel_scope.cancel()

        async with trio.open_nursery() as n:
            n.start_soon(connect_watchdog, n.cancel_scope)
            async with open_bridge(url, name="cobrowse-router-cli", security=security) as bridge:
                connected = True
                result = ("ok", await action(bridge))
            n.cancel_scope.cancel()
    return result


def _nats_or_exit(flag: str | None) -> tuple[str, NatsSecurity]:
    try:
        url = nats_url(flag)
        security = nats_security()
    except ConfigError as exc:
        sys.stderr.write(exc.report(PROG))
        sys.exit(2)
    configure("router", level="ERROR")  # stdout is the answer; a clean close logs warnings
    if not url:
        print(
            "no NATS URL: pass --nats, set COBROWSE_NATS_URL, or run `make run` "
            "(.run/cluster.json)",
            file=sys.stderr,
        )
        sys.exit(2)
    return url, security


async def _registered(bridge) -> list:
    try:
        kv = await bridge.call(bridge.js.key_value, membership.BUCKET)
    except BucketNotFoundError:  # no gateway has ever registered
        return []
    return await bridge.call(membership.list_gateways, kv)


def cmd_status(flag: str | None) -> int:
    url, security = _nats_or_exit(flag)

    async def action(bridge):
        return await _registered(bridge)

    got = trio.run(_with_nats, url, action, security)
    if got is None:
        print(f"cannot reach NATS at {url}", file=sys.stderr)
        return 1
    print(gateway_control.format_status(got[1], time.time()))
    return 0


def cmd_drain(gateway_id: str, flag: str | None, timeout: float = 5.0) -> int:
    url, security = _nats_or_exit(flag)

    async def action(bridge):
        try:
            expect = len(membership.workers_of(gateway_id, await _registered(bridge)))
        except Exception:  # the registry unreachable: gather for a moment instead
            expect = 0
        try:
            return await bridge.call(
                gateway_control.request_drain, bridge.nc, gateway_id, timeout, expect or None
            )
        except (gateway_control.NoAnswer, gateway_control.BadReply) as exc:
            return exc

    got = trio.run(_with_nats, url, action, security)
    if got is None:
        print(f"cannot reach NATS at {url}", file=sys.stderr)
        return 1
    reply = got[1]
    if isinstance(reply, Exception):
        print(str(reply), file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"gateway {gateway_id} refused: {json.dumps(reply)}", file=sys.stderr)
        return 1
    workers = reply.get("workers") or []
    per = ", ".join(f"{w['gateway']} {w['connections']}" for w in workers if len(workers) > 1)
    print(
        f"gateway {reply.get('gateway', gateway_id)} is {reply.get('state', '?')} "
        f"({reply.get('connections', 0)} connections to move{': ' + per if per else ''})"
    )
    return 0
