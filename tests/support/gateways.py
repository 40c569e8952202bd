"""Gateway processes for one test on its own NATS, through the one launcher."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from router.launcher import ClusterSpec, LocalCluster
from tests.support.keys import TEST_KEYS


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
        """Sum of a Prometheus metric's samples scraped from the gateway's /metrics; a name
        with labels (`x_total{cause="a"}`, as the exposition writes them) is that one sample."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health[gid]}/metrics", timeout=5) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name or head.split("{")[0] == name:
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
