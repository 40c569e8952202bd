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
        self.components = [component]  # one in a real process; tests host several apps
        self.version = version()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            NAME,
            "Always 1: the version and component of this process",
            labels=["version", "component"],
        )
        for component in self.components:
            family.add_metric([self.version, component], 1)
        yield family


_registered: dict[int, BuildInfo] = {}  # id(registry) -> its collector


def register(component: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Add the build-info metric to `registry` once; a second component in the same process
    (a router and a proxy app made by one test run) adds its own sample to it, rather than
    a duplicate collector or nothing."""
    info = _registered.get(id(registry))
    if info is None:
        info = _registered[id(registry)] = BuildInfo(component)
        registry.register(info)
    elif component not in info.components:
        info.components.append(component)
