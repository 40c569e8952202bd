"""Gateway settings: environment first (12-factor, for k8s), command-line flags override."""

from __future__ import annotations

import argparse
import os
import secrets
from dataclasses import dataclass, field

from gateway.tokens import Keyring

from .admission_gate import AdmissionSettings
from .streams import StreamSettings


@dataclass
class GatewayConfig:
    keyring: Keyring
    nats_servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    gateway_id: str = field(default_factory=lambda: "gw-" + secrets.token_hex(3))
    host: str = "127.0.0.1"
    port: int = 8765
    public_url: str | None = None
    health_port: int | None = None  # admin port: /healthz /readyz /metrics /admin/drain
    admin_key: str | None = None  # bearer key for POST /admin/drain; None: endpoint refuses
    stream: StreamSettings = field(default_factory=StreamSettings)
    hello_timeout: float = 10.0
    resume_ttl: float = 24 * 3600.0  # resume tokens outlive any reasonable disconnect
    ack_interval: float = 0.005  # acks to a sender are batched over this window
    max_in_flight: int = (
        512  # seqs a sender may run ahead of its cumulative ack (bounds resume reads)
    )
    gap_timeout: float = 0.25  # how long a receiver waits on a gap before reading the stream
    tail_check: float = 2.0  # an idle receiver checks the stream's tail this often
    publish_timeout: float = 30.0  # must outlast a stream-leader election
    drain_window: float = 30.0  # reconnect notices are spread over this many seconds
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    workers: int = 1  # processes sharing the port (SO_REUSEPORT)
    worker_index: int | None = None  # set in a worker process started by the supervisor
    base_id: str | None = None  # a worker's gateway id without its ".w<i>" suffix

    @property
    def reuse_port(self) -> bool:
        return self.worker_index is not None

    @property
    def url(self) -> str:
        return self.public_url or f"ws://{self.host}:{self.port}/"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def parse_args(argv: list[str] | None = None) -> GatewayConfig:
    p = argparse.ArgumentParser(prog="python -m gateway", description="cobrowse WebSocket gateway")
    p.add_argument("--host", default=_env("COBROWSE_GATEWAY_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(_env("COBROWSE_GATEWAY_PORT", "8765")))
    p.add_argument("--id", dest="gateway_id", default=_env("COBROWSE_GATEWAY_ID"))
    p.add_argument("--public-url", default=_env("COBROWSE_GATEWAY_PUBLIC_URL"))
    p.add_argument(
        "--health-port",
        type=int,
        default=int(_env("COBROWSE_GATEWAY_HEALTH_PORT", "") or 0) or None,
        help="port for /healthz, /readyz and /metrics (default: none)",
    )
    p.add_argument(
        "--nats",
        default=_env("COBROWSE_NATS_URL", "nats://127.0.0.1:4222"),
        help="comma-separated NATS server URLs",
    )
    p.add_argument(
        "--storage", choices=["memory", "file"], default=_env("COBROWSE_STREAM_STORAGE", "memory")
    )
    p.add_argument("--replicas", type=int, default=int(_env("COBROWSE_STREAM_REPLICAS", "1")))
    p.add_argument("--max-age", type=float, default=float(_env("COBROWSE_STREAM_MAX_AGE", "21600")))
    p.add_argument(
        "--max-msgs-per-session",
        type=int,
        default=int(_env("COBROWSE_STREAM_MAX_MSGS_PER_SESSION", "200000")),
    )
    p.add_argument(
        "--hello-timeout", type=float, default=float(_env("COBROWSE_HELLO_TIMEOUT", "10"))
    )
    p.add_argument("--drain-window", type=float, default=float(_env("COBROWSE_DRAIN_WINDOW", "30")))
    p.add_argument("--new-rate", type=float, default=float(_env("COBROWSE_ADMIT_NEW_RATE", "50")))
    p.add_argument(
        "--new-burst", type=float, default=float(_env("COBROWSE_ADMIT_NEW_BURST", "100"))
    )
    p.add_argument(
        "--resume-rate", type=float, default=float(_env("COBROWSE_ADMIT_RESUME_RATE", "500"))
    )
    p.add_argument(
        "--resume-burst", type=float, default=float(_env("COBROWSE_ADMIT_RESUME_BURST", "2000"))
    )
    p.add_argument(
        "--new-per-address",
        default=_env("COBROWSE_ADMIT_NEW_PER_ADDRESS", "120/minute"),
        help="new sessions per client address, in the limits package's notation",
    )
    p.add_argument(
        "--forwarded-hops",
        type=int,
        default=int(_env("COBROWSE_GATEWAY_FORWARDED_HOPS", "0")),
        help="trusted reverse proxies in front that append to X-Forwarded-For (0: use the peer)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=int(_env("COBROWSE_GATEWAY_WORKERS", "0")) or (os.cpu_count() or 1),
        help="worker processes sharing the port (default: the CPU count)",
    )
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.workers < 1:
        p.error("--workers must be at least 1")
    try:
        keyring = Keyring.from_env()
    except ValueError as exc:
        p.error(str(exc))
    cfg = GatewayConfig(
        keyring=keyring,
        nats_servers=[s for s in a.nats.split(",") if s],
        host=a.host,
        port=a.port,
        public_url=a.public_url,
        health_port=a.health_port,
        drain_window=a.drain_window,
        hello_timeout=a.hello_timeout,
        admin_key=_env("COBROWSE_ADMIN_KEY") or None,
        admission=AdmissionSettings(
            new_rate=a.new_rate,
            new_burst=a.new_burst,
            resume_rate=a.resume_rate,
            resume_burst=a.resume_burst,
            new_per_address=a.new_per_address,
            forwarded_hops=a.forwarded_hops,
        ),
        stream=StreamSettings(
            storage=a.storage,
            replicas=a.replicas,
            max_age=a.max_age,
            max_msgs_per_subject=a.max_msgs_per_session,
        ),
    )
    if a.gateway_id:
        cfg.gateway_id = a.gateway_id
    cfg.workers = a.workers
    if a.worker_index is not None:
        cfg.worker_index = a.worker_index
        cfg.base_id = cfg.gateway_id
        cfg.gateway_id = f"{cfg.gateway_id}.w{a.worker_index}"
        if cfg.health_port is not None:  # the supervisor has the port; worker i takes +1+i
            cfg.health_port += 1 + a.worker_index
    return cfg
