"""Gateway settings: environment first (12-factor, for k8s), command-line flags override.

The variables, their defaults and their rules are declared in gateway/settings.py; this module
maps each flag to the variable beside it and builds `GatewayConfig`. A bad value, from the
environment or a flag, ends `parse_args` with exit status 2 and one message naming each.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.tokens import Keyring

from . import settings as s
from .admission_gate import AdmissionSettings
from .budget import BudgetSettings
from .nats_security import NatsSecurity, NatsSecurityError, from_settings
from .streams import StreamSettings

PROG = "python -m gateway"

# flag -> (argparse dest, the variable it overrides)
FLAGS: dict[str, tuple[str, s.Var]] = {
    "--host": ("host", s.GATEWAY_HOST),
    "--port": ("port", s.GATEWAY_PORT),
    "--id": ("gateway_id", s.GATEWAY_ID),
    "--public-url": ("public_url", s.GATEWAY_PUBLIC_URL),
    "--health-port": ("health_port", s.GATEWAY_HEALTH_PORT),
    "--nats": ("nats", s.NATS_URL),
    "--storage": ("storage", s.STREAM_STORAGE),
    "--replicas": ("replicas", s.STREAM_REPLICAS),
    "--max-age": ("max_age", s.STREAM_MAX_AGE),
    "--max-msgs-per-session": ("max_msgs_per_session", s.STREAM_MAX_MSGS_PER_SESSION),
    "--hello-timeout": ("hello_timeout", s.HELLO_TIMEOUT),
    "--drain-window": ("drain_window", s.DRAIN_WINDOW),
    "--new-rate": ("new_rate", s.ADMIT_NEW_RATE),
    "--new-burst": ("new_burst", s.ADMIT_NEW_BURST),
    "--resume-rate": ("resume_rate", s.ADMIT_RESUME_RATE),
    "--resume-burst": ("resume_burst", s.ADMIT_RESUME_BURST),
    "--new-per-address": ("new_per_address", s.ADMIT_NEW_PER_ADDRESS),
    "--forwarded-hops": ("forwarded_hops", s.GATEWAY_FORWARDED_HOPS),
    "--workers": ("workers", s.GATEWAY_WORKERS),
    "--worker-stuck-after": ("worker_stuck_after", s.GATEWAY_WORKER_STUCK_AFTER),
    "--read-hub": ("read_hub", s.GATEWAY_READ_HUB),
}
FLAG_OF: dict[str, str] = {var.name: flag for flag, (_, var) in FLAGS.items()}


@dataclass
class GatewayConfig:
    keyring: Keyring
    nats_servers: list[str] = field(default_factory=lambda: list(s.NATS_URL.default))
    nats: NatsSecurity = field(default_factory=NatsSecurity)  # credentials and TLS
    gateway_id: str = field(default_factory=lambda: "gw-" + secrets.token_hex(3))
    host: str = s.GATEWAY_HOST.default
    port: int = s.GATEWAY_PORT.default
    public_url: str | None = None
    health_port: int | None = None  # admin port: /healthz /readyz /metrics /admin/drain
    admin_key: str | None = None  # bearer key for POST /admin/drain; None: endpoint refuses
    stream: StreamSettings = field(default_factory=StreamSettings)
    hello_timeout: float = s.HELLO_TIMEOUT.default
    admin_header_timeout: float = s.HTTP_HEADER_TIMEOUT.default  # admin port's slow clients
    resume_ttl: float = 24 * 3600.0  # resume tokens outlive any reasonable disconnect
    max_in_flight: int = (
        512  # seqs a sender may run ahead of its cumulative ack (bounds resume reads)
    )
    gap_timeout: float = 0.25  # how long a receiver waits on a gap before reading the stream
    tail_check: float = 2.0  # an idle receiver checks the stream's tail this often
    publish_timeout: float = 30.0  # must outlast a stream-leader election
    drain_window: float = s.DRAIN_WINDOW.default  # reconnect notices are spread over this
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)  # each connection's sends
    workers: int = 1  # processes sharing the port (SO_REUSEPORT)
    worker_stuck_after: float = s.GATEWAY_WORKER_STUCK_AFTER.default  # supervisor's /healthz
    read_hub: bool = True  # one task reads every client socket (where epoll exists)
    worker_index: int | None = None  # set in a worker process started by the supervisor
    base_id: str | None = None  # a worker's gateway id without its ".w<i>" suffix
    log: s.LogSettings = field(default_factory=s.LogSettings)

    @property
    def reuse_port(self) -> bool:
        return self.worker_index is not None

    @property
    def url(self) -> str:
        return self.public_url or f"ws://{self.host}:{self.port}/"


def _help(var: s.Var) -> str:
    meaning = var.meaning.replace("`", "").replace("%", "%%")
    default = var.doc_default().replace("`", "")
    return f"{meaning} ({var.name}; default {default})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="cobrowse WebSocket gateway. Settings come from COBROWSE_* environment "
        "variables (README, Configuration); a flag overrides the variable beside it.",
    )
    for flag, (dest, var) in FLAGS.items():
        p.add_argument(flag, dest=dest, default=None, metavar="VALUE", help=_help(var))
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    return p


def parse_args(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """The configuration from the environment (os.environ unless `environ` is given) and
    the flags in `argv`; exit status 2 with a message naming every bad value."""
    p = build_parser()
    a = p.parse_args(argv)
    if a.worker_index is not None and a.worker_index < 0:
        p.error("--worker-index must be at least 0")
    overrides = {var.name: getattr(a, dest) for dest, var in FLAGS.values()}
    kw = dict(overrides=overrides, labels=FLAG_OF)
    try:
        if environ is None:
            got = s.from_environ(s.GatewaySettings, **kw)
        else:
            got = s.read(s.GatewaySettings, environ, **kw)
        nats = from_settings(got.nats_auth)  # reads the password file once, at start
    except s.SettingsError as exc:
        p.exit(2, exc.report(PROG))
    except NatsSecurityError as exc:
        p.exit(2, s.SettingsError([str(exc)]).report(PROG))
    return config_from(got, a.worker_index, nats)


def config_from(
    got: s.GatewaySettings, worker_index: int | None = None, nats: NatsSecurity | None = None
) -> GatewayConfig:
    cfg = GatewayConfig(
        keyring=got.token_keys,
        nats_servers=list(got.nats_servers),
        nats=nats or NatsSecurity(),
        host=got.host,
        port=got.port,
        public_url=got.public_url,
        health_port=got.health_port,
        drain_window=got.drain_window,
        hello_timeout=got.hello_timeout,
        admin_header_timeout=got.admin_header_timeout,
        admin_key=got.admin_key,
        admission=AdmissionSettings(
            new_rate=got.new_rate,
            new_burst=got.new_burst,
            resume_rate=got.resume_rate,
            resume_burst=got.resume_burst,
            new_per_address=got.new_per_address,
            forwarded_hops=got.forwarded_hops,
        ),
        stream=got.stream.settings,
        budget=got.budget.settings,
        workers=got.workers or (os.cpu_count() or 1),
        worker_stuck_after=got.worker_stuck_after,
        read_hub=got.read_hub == "on",
        log=got.log,
    )
    if got.gateway_id:
        cfg.gateway_id = got.gateway_id
    if worker_index is not None:
        cfg.worker_index = worker_index
        cfg.base_id = cfg.gateway_id
        cfg.gateway_id = f"{cfg.gateway_id}.w{worker_index}"
        if cfg.health_port is not None:  # the supervisor has the port; worker i takes +1+i
            cfg.health_port += 1 + worker_index
    return cfg
