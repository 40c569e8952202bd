"""`process_*` metrics of a supervisor and its workers, on the supervisor's /metrics.

A single process gets `process_*` from prometheus_client's default registry. A supervisor
serves a multiprocess registry, which has none, while its workers (not itself) spend the
CPU and memory: this collector reads /proc for each of them and labels every sample with
`process` ("supervisor", "w0", "w1", ...), so `sum(rate(process_cpu_seconds_total[1m]))` is
the gateway pod's CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class ProcessesCollector(Collector):
    def __init__(self, pids: Callable[[], dict[str, int]]) -> None:
        self.pids = pids  # label -> pid of each live process, read at every scrape

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for label, pid in self.pids().items():
            one = ProcessCollector(pid=lambda pid=pid: pid, registry=None)
            for family in one.collect():  # nothing when the process just ended
                out = families.get(family.name)
                if out is None:
                    out = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    out.add_sample(sample.name, {**sample.labels, "process": label}, sample.value)
        yield from families.values()
