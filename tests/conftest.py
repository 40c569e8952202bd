"""Fixtures: real nats-server processes and real gateway processes on free loopback ports.
Helpers live in tests/support/; tests are grouped by the package they test."""

from __future__ import annotations

import pytest
from hypothesis import settings

from router import natsproc
from tests.support.browser import chromium, context, pages_server  # noqa: F401  (fixtures)
from tests.support.gateways import Gateways


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
