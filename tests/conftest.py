"""Fixtures: real nats-server processes and real gateway processes on free loopback ports.
Helpers live in tests/support/; tests are grouped by the package they test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from router import natsproc
from tests.support.browser import chromium, context, pages_server  # noqa: F401  (fixtures)
from tests.support.gateways import Gateways
from tests.support.logs import call_failed, print_tails


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for fixtures that act on a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def gateways_factory(tmp_path, request):
    made: list[Gateways] = []

    def make(nats_url: str) -> Gateways:
        g = Gateways(tmp_path, nats_url)
        made.append(g)
        return g

    yield make
    reports = []
    for g in made:
        g.stop_all()
        if call_failed(request):
            print_tails(g.cluster)
        reports += g.cluster.last_resort_reports()
    if reports:
        pytest.fail("a gateway logged Python's last-resort report:\n" + "\n".join(reports[:5]))


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
# `make hunt` (--hypothesis-profile hunt): every property test with many more examples, to
# look for what 100 do not find (the WebSocket layer's masking-key bug of 2026-12-03 showed
# once in CI). COBROWSE_HUNT_EXAMPLES sets how many.
settings.register_profile(
    "hunt",
    deadline=None,
    max_examples=int(os.environ.get("COBROWSE_HUNT_EXAMPLES", "20000")),
    suppress_health_check=[HealthCheck.too_slow],
)


# Files whose tests time drains, floods, budgets, publish chains or benchmarks, or load the
# machine themselves: `make test` runs them alone first, then everything else two at a time
# (pytest-xdist, one file per worker). Run two at a time, these failed where they pass
# alone (a quick bench's table, a grant's metadata write timed at 10 s).
SERIAL = {
    "gateway/test_drain.py",
    "gateway/test_failover.py",
    "gateway/test_flood.py",
    "gateway/test_workers.py",
    "gateway/test_session_budget.py",
    "gateway/test_resume_takeover.py",
    "gateway/test_slow_client.py",
    "gateway/test_nats_client.py",
    "loadtest/test_bench.py",
    "loadtest/test_loadtest.py",
    "loadtest/test_fastclient.py",
    "router/test_api.py",
    "router/test_local_cluster.py",
    "router/test_slow_requests.py",
    "proxy/test_proxy_service.py",
}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if item.path.relative_to(TESTS).as_posix() in SERIAL:
            item.add_marker(pytest.mark.serial)
