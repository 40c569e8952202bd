"""On a failed test that used a module's local cluster (`cluster`), its processes' logs; and a
test after which a process of it logged Python's last-resort report fails."""

from __future__ import annotations

import pytest

from tests.support.logs import call_failed, print_tails


@pytest.fixture(autouse=True)
def cluster_logs_on_failure(request):
    if "cluster" not in request.fixturenames:
        yield
        return
    local = request.getfixturevalue("cluster").local
    before = len(local.last_resort_reports())
    yield
    if call_failed(request):
        print_tails(local)
    new = local.last_resort_reports()[before:]
    if new:
        pytest.fail("the cluster logged Python's last-resort report:\n" + "\n".join(new[:5]))
