"""What the supervisor's /readyz and /healthz say about its workers (sans-I/O).

The supervisor asks each worker's own /readyz (its admin port, port+1+i) every
`PROBE_INTERVAL`; a worker answers 503 while it drains or has lost NATS. The pod is ready
only while every worker's last answer was 200. A worker that answers nothing at all (its
trio loop blocked, the process stopped) for `stuck_after` seconds is stuck: /healthz fails,
so the kubelet restarts the pod, which a crashed worker never needs (the supervisor
restarts that one itself). A worker that has not answered yet since it started is starting,
not stuck: it may be waiting for NATS, which a restart would not bring back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

# Seconds between probes of each worker, and the most one probe may take: a worker busy
# for 2 s on one event loop turn is slow, not gone, and the k8s readiness probe (3 misses
# of 2 s, k8s/base/gateway.yaml) absorbs one such miss.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0


class WorkerState(Enum):
    STARTING = "starting"  # no answer yet since it was (re)started
    READY = "ready"
    NOT_READY = "not_ready"  # answered 503: draining, or NATS lost
    SILENT = "silent"  # answered before, not on its last probe


@dataclass
class _Worker:
    state: WorkerState = WorkerState.STARTING
    last_answer: float | None = None  # when it last answered at all (200 or 503)


@dataclass
class WorkerHealth:
    """Each worker's last probe result; `ready()` and `stuck(now)` decide the two probes."""

    stuck_after: float
    workers: dict[int, _Worker] = field(default_factory=dict)

    def started(self, index: int) -> None:
        """Worker `index` was (re)started: nothing it said before counts."""
        self.workers[index] = _Worker()

    def answered(self, index: int, *, ready: bool, now: float) -> None:
        w = self.workers.setdefault(index, _Worker())
        w.state = WorkerState.READY if ready else WorkerState.NOT_READY
        w.last_answer = now

    def silent(self, index: int) -> None:
        """A probe got no answer within `PROBE_TIMEOUT` (or was refused)."""
        w = self.workers.setdefault(index, _Worker())
        if w.state is not WorkerState.STARTING:
            w.state = WorkerState.SILENT

    def ready(self) -> bool:
        return bool(self.workers) and all(
            w.state is WorkerState.READY for w in self.workers.values()
        )

    def stuck(self, now: float) -> list[int]:
        """Workers that answered once and then nothing for longer than `stuck_after`."""
        return sorted(
            i
            for i, w in self.workers.items()
            if w.last_answer is not None and now - w.last_answer > self.stuck_after
        )

    def report(self, now: float) -> dict[str, str]:
        """Each worker's state for the probes' bodies ("w0": "ready", "w1": "stuck")."""
        stuck = set(self.stuck(now))
        return {
            f"w{i}": "stuck" if i in stuck else w.state.value
            for i, w in sorted(self.workers.items())
        }
