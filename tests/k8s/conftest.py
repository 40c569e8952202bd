"""The overlay fixture shared by the manifest tests (test_k8s.py, test_affinity.py)."""

import pytest


@pytest.fixture(params=["dev", "prod"])
def overlay(request) -> str:
    return request.param
