"""Fixtures: real nats-server processes and real gateway processes on free loopback ports."""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import settings

from gateway import tokens
from router import natsproc
from router.launcher import ClusterSpec, DevKeys, LocalCluster

from .browser import chromium, context, pages_server  # noqa: F401  (fixtures for every test)

KEYS = "test-1:" + secrets.token_urlsafe(32) + ",test-0:" + secrets.token_urlsafe(32)
KEYRING = tokens.Keyring.parse(KEYS)
ADMIN_KEY = "admin-" + secrets.token_urlsafe(16)
TEST_KEYS = dataclasses.replace(DevKeys.fresh(), token_keys=KEYS, admin_key=ADMIN_KEY)


def mint(sid: str, role: str, ttl: float = 3600, keyring: tokens.Keyring = KEYRING) -> str:
    return tokens.mint(keyring, sid=sid, role=role, now=time.time(), ttl=ttl)


def new_sid() -> str:
    return "s" + secrets.token_hex(8)


class Gateways:
    """Gateway processes a test starts on its own NATS (a LocalCluster of gateways only);
    each can be SIGKILLed or SIGTERMed, and they are SIGKILLed at the end of the test."""

    def __init__(self, base: Path, nats_url: str) -> None:
        spec = ClusterSpec(
            gateways=0,
            nats_url=nats_url,
            router=False,
            env={"COBROWSE_LOG_LEVEL": "INFO"},
            keys=TEST_KEYS,
        )
        self.cluster = LocalCluster(spec, base).start()

    @property
    def nats_url(self) -> str:
        return self.cluster.nats_url

    def start(self, gid: str, extra: list[str] | None = None) -> str:
        """Start a gateway process (`--workers 1` unless `extra` says otherwise); its URL."""
        return self.cluster.start_gateway(gid, extra).url

    @property
    def procs(self) -> dict[str, tuple[subprocess.Popen, int]]:
        return {gid: (g.proc, g.port) for gid, g in self.cluster.gateways.items()}

    @property
    def health(self) -> dict[str, int]:
        """Each gateway's admin port (/healthz, /readyz, /metrics, /admin/drain)."""
        return {gid: g.admin_port for gid, g in self.cluster.gateways.items()}

    def metric(self, gid: str, name: str) -> float:
        """Sum of a Prometheus metric's samples scraped from the gateway's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health[gid]}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == name:
                    total += float(value)
        return total

    def url(self, gid: str) -> str:
        return self.cluster.gateways[gid].url

    def kill(self, gid: str) -> None:
        self.cluster.kill_gateway(gid)

    def log(self, gid: str) -> str:
        return self.cluster.log_text(gid)

    def stop_all(self) -> None:
        self.cluster.stop(grace=0)


@pytest.fixture
def nats_server(tmp_path):
    srv = natsproc.start_single(tmp_path / "nats")
    yield srv
    srv.stop()


@pytest.fixture
def nats_cluster(tmp_path):
    servers = natsproc.start_cluster(tmp_path / "nats", 3)
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def gateways_factory(tmp_path):
    made: list[Gateways] = []

    def make(nats_url: str) -> Gateways:
        g = Gateways(tmp_path, nats_url)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop_all()


@pytest.fixture
def two_gateways(nats_server, gateways_factory):
    g = gateways_factory(nats_server.url)
    g.start("gw-a")
    g.start("gw-b")
    return g


# Pure-function property tests share two cores with real servers and browsers: hypothesis's
# default 200 ms per-example deadline fails them on a busy machine, not on a bug.
settings.register_profile("cobrowse", deadline=None)
settings.load_profile("cobrowse")
