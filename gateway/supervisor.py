"""`python -m gateway --workers N`: N worker processes sharing one port (SO_REUSEPORT).

One trio process per core, since one Python process uses one core. The supervisor holds
no connections: it starts the workers, restarts one that crashes, serves the admin port
with every worker's metrics summed (prometheus multiprocess mode; each worker also serves
its own admin port at port+1+i), keeps the gateway's one per-address count of new sessions
(gateway/address_limit.py), and drains them all together: SIGTERM, /admin/drain, or a
drain requested over NATS (which reaches every worker, since they share the gateway id's
drain subject). It exits 0 once every worker has drained. A worker drained by its own id
("gw-1.w0") exits with `EXIT_DRAINED_ALONE` and is replaced by a fresh one. Its /readyz and
/healthz speak for the workers: it asks each one's own /readyz every second
(gateway/worker_health.py decides), so a worker that lost NATS makes the pod unready and
one that stopped answering makes it unhealthy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import structlog
import trio
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from . import build_info
from .address_limit import AddressLimitServer, socket_path
from .admin_port import AdminHooks, serve_admin
from .config import GatewayConfig
from .process_metrics import ProcessesCollector
from .worker_health import PROBE_INTERVAL, PROBE_TIMEOUT, WorkerHealth, WorkerState

log = structlog.get_logger("gateway.supervisor")

# A worker's exit status after it was drained by its own id ("gw-1.w0"), not with its
# gateway: the supervisor starts a fresh worker in its place, as a Deployment would a pod.
EXIT_DRAINED_ALONE = 3


def set_parent_death_signal() -> None:
    """A worker dies with its supervisor, even when the supervisor is SIGKILLed."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


async def probe_ready(host: str, port: int) -> bool | None:
    """GET /readyz on a worker's admin port: True (200), False (another status), or None
    when nothing answers within `PROBE_TIMEOUT`."""
    with trio.move_on_after(PROBE_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(b"GET /readyz HTTP/1.1\r\nHost: worker\r\n\r\n")
                head = b""
                while b"\r\n" not in head and len(head) < 1024:
                    chunk = await stream.receive_some(1024)
                    if not chunk:
                        return None
                    head += chunk
            return head.split(b" ", 2)[1:2] == [b"200"]
        except (OSError, trio.BrokenResourceError):
            return None
    return None


def loopback_for(host: str) -> str:
    """Where the supervisor reaches a worker's admin port bound to `host`."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


class WorkerStates:
    """`cobrowse_gateway_workers{state}`: how many workers are in each state, read at scrape
    time, so /metrics agrees with /readyz and /healthz at the same instant."""

    def __init__(self, health: WorkerHealth) -> None:
        self.health = health

    def collect(self):
        g = GaugeMetricFamily(
            "cobrowse_gateway_workers",
            "Workers of this gateway by their state in the supervisor's probes",
            labels=["state"],
        )
        states = list(self.health.report(trio.current_time()).values())
        for state in [*(s.value for s in WorkerState), "stuck"]:
            g.add_metric([state], states.count(state))
        yield g


def ready_file(index: int) -> Path | None:
    d = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(d) / f"ready-{index}" if d else None


class Supervisor:
    def __init__(self, cfg: GatewayConfig, argv: list[str]) -> None:
        self.cfg = cfg
        self.argv = argv
        self.dir = tempfile.mkdtemp(prefix="cobrowse-gw-")
        self.env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=self.dir)
        self.workers: dict[int, subprocess.Popen] = {}
        self.draining = False
        self.health = WorkerHealth(stuck_after=cfg.worker_stuck_after)
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=self.dir)
        # The supervisor's own metrics, apart: `ready` reads the workers' registry only.
        self.own = CollectorRegistry()
        build_info.register("gateway", self.own)
        self.own.register(ProcessesCollector(self.pids))
        self.own.register(WorkerStates(self.health))

    def pids(self) -> dict[str, int]:
        """This process and each live worker, by the `process` label of `process_*`."""
        live = {f"w{i}": p.pid for i, p in self.workers.items() if p.poll() is None}
        return {"supervisor": os.getpid(), **live}

    def spawn(self, i: int) -> None:
        (Path(self.dir) / f"ready-{i}").unlink(missing_ok=True)
        self.health.started(i)
        self.workers[i] = subprocess.Popen(
            [sys.executable, "-m", "gateway", *self.argv, "--worker-index", str(i)],
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def drain(self) -> dict:
        """Drain every worker (SIGTERM; a worker already draining over NATS just carries on)."""
        if not self.draining:
            self.draining = True
            log.info("supervisor_draining", workers=len(self.workers))
            for p in self.workers.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
        return {
            "ok": True,
            "gateway": self.cfg.gateway_id,
            "state": "draining",
            "workers": len(self.workers),
        }

    def metrics(self) -> bytes:
        """The workers' metrics summed, then the supervisor's own (two families' texts)."""
        return generate_latest(self.registry) + generate_latest(self.own)

    def ready(self) -> bool:
        """Every worker alive and its last /readyz 200: it listens (a pod must not get
        clients no process accepts yet), is not draining (over NATS, say) and has NATS."""
        if self.draining or any(p.poll() is not None for p in self.workers.values()):
            return False
        return self.health.ready()

    def live(self) -> bool:
        stuck = self.health.stuck(trio.current_time())
        if stuck:
            log.error("workers_stuck", workers=stuck, after=self.cfg.worker_stuck_after)
        return not stuck

    async def _probe_workers(self) -> None:
        """Ask every worker's own /readyz each `PROBE_INTERVAL` (the same index after a
        restart is a new worker: `spawn` resets it)."""
        assert self.cfg.health_port is not None
        host = loopback_for(self.cfg.host)

        async def one(i: int, proc: subprocess.Popen) -> None:
            got = await probe_ready(host, self.cfg.health_port + 1 + i)
            if self.workers.get(i) is not proc:  # restarted meanwhile: says nothing
                return
            if got is None:
                self.health.silent(i)
            else:
                self.health.answered(i, ready=got, now=trio.current_time())

        while True:
            async with trio.open_nursery() as probes:
                for i, proc in list(self.workers.items()):
                    probes.start_soon(one, i, proc)
                probes.start_soon(trio.sleep, PROBE_INTERVAL)

    async def run(self) -> int:
        try:
            async with trio.open_nursery() as nursery:
                # One count of new sessions per address for the whole gateway (before any
                # worker starts: a worker that cannot reach it counts in its own process).
                limit = AddressLimitServer(
                    self.cfg.admission.new_per_address, socket_path(self.dir)
                )
                await nursery.start(limit.serve)
                for i in range(self.cfg.workers):
                    self.spawn(i)
                if self.cfg.health_port is not None:
                    hooks = AdminHooks(
                        ready=self.ready,
                        drain=self.drain,
                        admin_key=self.cfg.admin_key,
                        metrics=self.metrics,
                        live=self.live,
                        detail=lambda: self.health.report(trio.current_time()),
                    )
                    await nursery.start(
                        partial(serve_admin, header_timeout=self.cfg.admin_header_timeout),
                        self.cfg.host,
                        self.cfg.health_port,
                        hooks,
                    )
                nursery.start_soon(self._signals)
                if self.cfg.health_port is not None:
                    nursery.start_soon(self._probe_workers)
                with trio.fail_after(60):
                    while not all((Path(self.dir) / f"ready-{i}").exists() for i in self.workers):
                        await self._check()
                        await trio.sleep(0.05)
                log.info(
                    "gateway_ready",
                    gateway=self.cfg.gateway_id,
                    url=self.cfg.url,
                    workers=self.cfg.workers,
                )
                while any(p.poll() is None for p in self.workers.values()) or not self.draining:
                    await self._check()
                    await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
        finally:
            for p in self.workers.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
            shutil.rmtree(self.dir, ignore_errors=True)
        return max(((p.returncode or 0) for p in self.workers.values()), default=1)

    async def _check(self) -> None:
        for i, p in list(self.workers.items()):
            code = p.poll()
            if code is None:
                continue
            if getattr(p, "_reaped", False):
                continue
            p._reaped = True  # type: ignore[attr-defined]
            multiprocess.mark_process_dead(p.pid, self.dir)
            if self.draining:
                continue
            if code == EXIT_DRAINED_ALONE:
                log.info("worker_drained_alone", worker=i)
                self.spawn(i)
            elif code == 0:
                # A worker finished a drain it was asked for over NATS: drain the rest too.
                log.info("worker_drained", worker=i)
                self.drain()
            else:
                log.warning("worker_died", worker=i, code=code)
                self.spawn(i)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal", signal=signal.Signals(signum).name)
                if self.draining:  # a second signal: stop now
                    for p in self.workers.values():
                        if p.poll() is None:
                            p.kill()
                self.drain()
