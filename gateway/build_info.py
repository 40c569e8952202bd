"""`cobrowse_build_info{version,component}`: which release each process runs.

A collector rather than a Gauge: in a supervisor's multiprocess registry a gauge would need a
file per worker and a mode to add them up, and the answer is the same 1 for every process.
All three components register it (router and proxy on their /metrics, gateways on the admin
port's), so one query finds a fleet running two versions during a rollout.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

NAME = "cobrowse_build_info"


def version() -> str:
    """The installed `cobrowse` distribution's version; `unknown` from a bare source tree."""
    try:
        return metadata.version("cobrowse")
    except metadata.PackageNotFoundError:
        return "unknown"


class BuildInfo(Collector):
    def __init__(self, component: str) -> None:
        self.component = component
        self.version = version()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            NAME,
            "Always 1: the version and component of this process",
            labels=["version", "component"],
        )
        family.add_metric([self.version, self.component], 1)
        yield family


_registered: dict[int, str] = {}  # id(registry) -> component


def register(component: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Add the build-info metric to `registry` once (an app made twice in one process, as
    tests do, would otherwise register a duplicate)."""
    if id(registry) in _registered:
        return
    registry.register(BuildInfo(component))
    _registered[id(registry)] = component
