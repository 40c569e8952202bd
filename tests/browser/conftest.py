"""On a failed test that used a module's local cluster (`cluster`), its processes' logs."""

from __future__ import annotations

import pytest

from tests.support.logs import call_failed, print_tails


@pytest.fixture(autouse=True)
def cluster_logs_on_failure(request):
    yield
    if "cluster" in request.fixturenames and call_failed(request):
        print_tails(request.getfixturevalue("cluster").local)
