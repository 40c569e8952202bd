"""Fixtures: real nats-server processes and real gateway processes on free loopback ports."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from hypothesis import settings

from gateway import tokens
from router import natsproc
from router.cluster import _wait_port, spawn_gateway

from .browser import chromium, context, pages_server  # noqa: F401  (fixtures for every test)

KEYS = "test-1:" + secrets.token_urlsafe(32) + ",test-0:" + secrets.token_urlsafe(32)
KEYRING = tokens.Keyring.parse(KEYS)
ADMIN_KEY = "admin-" + secrets.token_urlsafe(16)


def mint(sid: str, role: str, ttl: float = 3600, keyring: tokens.Keyring = KEYRING) -> str:
    return tokens.mint(keyring, sid=sid, role=role, now=time.time(), ttl=ttl)


def new_sid() -> str:
    return "s" + secrets.token_hex(8)


class Gateways:
    """Gateway subprocesses started by a test; each can be SIGKILLed or SIGTERMed."""

    def __init__(self, base: Path, nats_url: str) -> None:
        self.base = base
        self.nats_url = nats_url
        self.procs: dict[str, tuple[subprocess.Popen, int]] = {}
        self.health: dict[str, int] = {}

    def start(self, gid: str, extra: list[str] | None = None, attempts: int = 4) -> str:
        """Start a gateway process; a port taken between choice and bind gets a retry."""
        for attempt in range(attempts):
            try:
                return self._start(gid, extra)
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start(self, gid: str, extra: list[str] | None) -> str:
        port, hport = natsproc.free_port(), natsproc.free_port()
        env = dict(
            os.environ,
            COBROWSE_TOKEN_KEYS=KEYS,
            COBROWSE_LOG_LEVEL="INFO",
            COBROWSE_ADMIN_KEY=ADMIN_KEY,
        )
        proc = spawn_gateway(
            gid,
            port,
            self.nats_url,
            env,
            self.base,
            ["--health-port", str(hport), "--workers", "1", *(extra or [])],
        )
        self.procs[gid] = (proc, port)
        self.health[gid] = hport
        _wait_port(port, proc, timeout=30)
        deadline = time.monotonic() + 20  # the port answering may be someone else's: wait
        while f"gateway {gid} ready" not in self.log(gid):  # for our gateway to say it bound
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"gateway {gid} did not start: {self.log(gid)[-500:]}")
            time.sleep(0.05)
        return self.url(gid)

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
        return f"ws://127.0.0.1:{self.procs[gid][1]}/"

    def kill(self, gid: str) -> None:
        proc, _ = self.procs[gid]
        proc.kill()
        proc.wait(10)

    def log(self, gid: str) -> str:
        return (self.base / f"{gid}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


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
