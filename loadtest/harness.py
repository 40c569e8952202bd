"""The harness of one run of `python -m loadtest run`: simulated visitors and agents against
a cluster, verified.

The run, in order:

1. Target: a local cluster on loopback started by the CLI (`router.launcher`, shaped by the
   scenario), or `--target URL` (a router API of a real deployment; keys from flags or
   environment).
2. Ramp: sessions are created through the HTTP API (`POST /v1/sessions`, then one
   `POST /v1/sessions/lookup` by short code per agent), spread over the first seconds. Each
   visitor connects to the gateways the API returned, sends a full snapshot, and once it is
   acked its agents join (they start at that snapshot).
3. Load: every session plays its event mix (`workload`) until `--duration` ends. At half
   time the scenario acts (`scenarios`). Gateway metrics are scraped every few seconds.
4. Settle: sending stops; the harness waits until every sender's events are acked and
   every receiver has the last acked event of every stream it should get (or `--settle`
   seconds pass), then says bye to every client.
5. Report: the verifier's counts, the summary table, `--json`, `--report DIR` (`report`);
   the CLI exits 0 only when nothing was lost, duplicated or reordered (see
   docs/loadtest.md for exit codes).

Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import math
import random
import signal
import sys
import time
from typing import Any

import httpx
import trio

from gateway.client import Client
from router.launcher import LocalCluster

from . import report as rep
from . import scenarios
from .api import Api, ApiError, Target
from .cpu import CpuPoint, CpuWindow
from .fastclient import Reactor
from .session import SESSIONS, SimSession
from .verifier import Latencies, Verifier, percentiles_ms


def tree_cpu_seconds(proc, descendants: list | None = None) -> float:
    """CPU seconds (user + system) of a `psutil.Process` and its descendants: the live ones,
    and the ones it has reaped (its `children_*` times). `descendants`: the live ones as
    listed earlier, instead of listing them now."""
    import psutil

    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True) if descendants is None else descendants:
        try:
            c = child.cpu_times()
        except psutil.Error:  # it ended meanwhile
            continue
        total += c.user + c.system
    return total


class ProcessTree:
    """A gateway's process and its workers, for a CPU sample every second.

    Listing a process's descendants reads /proc/<pid>/stat of every process on the machine
    (psutil's `children()`): 120 files a second for two gateways, about 1.5 % of the
    harness's CPU under load. Workers change only when one is replaced, so the list is
    read again every `refresh` seconds and after a worker ended; a worker started meanwhile
    counts from the next listing on (its supervisor's `children_*` times count it once it
    is reaped)."""

    def __init__(self, proc, refresh: float = 5.0) -> None:
        self.proc = proc
        self.refresh = refresh
        self.listed_at = -math.inf
        self.descendants: list = []

    def cpu_seconds(self, now: float) -> float:
        if now - self.listed_at >= self.refresh or any(
            not c.is_running() for c in self.descendants
        ):
            self.descendants = self.proc.children(recursive=True)
            self.listed_at = now
        return tree_cpu_seconds(self.proc, self.descendants)


class Harness:
    def __init__(self, opts: argparse.Namespace, target: Target, cluster: LocalCluster | None):
        self.opts = opts
        self.target = target
        self.cluster = cluster
        self.api = Api(target)
        self.rng = random.Random(opts.seed)
        self.verifier = Verifier()
        self.ack_latency = {"v": Latencies(), "a": Latencies()}  # send -> durable
        self.timeline = rep.Timeline(t0=time.time())
        self.sessions: list[SimSession] = []
        self.extra: list[SimSession] = []
        self.details: dict[str, Any] = {}
        self.client_errors: list[str] = []
        self.errors: list[str] = []
        self.epoch_restarts = 0
        self.gateway_figures: dict[str, dict[str, Any]] = {}
        self.gateway_states: dict[str, dict[str, Any]] = {}
        self.scrape_failures = 0
        self.harness_cpu: list[float] = []
        self.ramp_end: float | None = None
        self.loop_lag_max = 0.0
        self.delivered_total = 0  # events delivered to receivers, both directions
        self.cpu = CpuWindow(client=opts.client)
        self.session_class = SESSIONS[opts.client]
        self.reactor = Reactor() if opts.client == "fast" else None
        self._gateway_procs: dict[str, ProcessTree] = {}  # gateway id -> its processes
        self._gateway_cpu: dict[str, float] = {}  # gateway id -> last CPU seconds seen
        self._nats_cpu: dict[str, float] = {}  # NATS node -> last CPU seconds seen
        self.stop_sending = trio.Event()
        self.closing = trio.Event()
        self.stop_at = math.inf
        self.phase = "starting"
        self.settle: dict[str, Any] = {}
        self._nursery: trio.Nursery | None = None
        self._scenario_scope = trio.CancelScope()
        self.interrupted = False

    # -- used by scenarios --

    def mark(self, label: str) -> None:
        self.timeline.mark(time.time(), label)

    def live_clients(self) -> list[Client]:
        return [c for s in self.sessions + self.extra if s.ready for _, c in s.clients]

    async def spawn_extra_sessions(self, count: int, seconds: float) -> None:
        """New sessions arriving at count/seconds per second (the storm's new traffic)."""
        assert self._nursery is not None
        start = trio.current_time()
        for i in range(count):
            if self.stop_sending.is_set():
                break
            await trio.sleep_until(start + i * seconds / max(1, count))
            s = self.session_class(self, len(self.sessions) + len(self.extra), extra=True)
            self.extra.append(s)
            self._nursery.start_soon(s.main, self.stop_at)

    # -- the run --

    def all_sessions(self) -> list[SimSession]:
        return self.sessions + self.extra

    def progress(self) -> dict[str, Any]:
        now = time.time()
        sent_rate, delivered_rate = self.timeline.rates(now)
        clients = [c for s in self.all_sessions() for _, c in s.clients]
        v = self.verifier
        return {
            "scenario": self.opts.scenario,
            "elapsed": now - self.timeline.t0,
            "duration": self.opts.duration,
            "phase": self.phase,
            "sessions": len(self.all_sessions()),
            "connected": sum(1 for s in self.all_sessions() if s.connected()),
            "sent": sum(self.timeline.sent),
            "delivered": sum(self.timeline.delivered),
            "sent_rate": sent_rate,
            "delivered_rate": delivered_rate,
            "p99_ms": percentiles_ms(v.latency["v"])["p99"],
            "reconnects": sum(max(0, c.stats.connects - 1) for c in clients),
            "rejected": sum(c.stats.rejected for c in clients),
            "last_mark": self.timeline.marks[-1].label if self.timeline.marks else None,
        }

    async def _scrape(self) -> None:
        try:
            gws = await self.api.cluster()
        except (httpx.HTTPError, ApiError):
            self.scrape_failures += 1
            return
        for g in gws:
            self.gateway_states[g["id"]] = {
                "state": g.get("state"),
                "connections": g.get("connections"),
                "url": g.get("url"),
            }
            if g.get("admin_url") and not await self.scrape_gateway(g["id"], g["admin_url"]):
                self.scrape_failures += 1

    async def scrape_gateway(self, gateway_id: str, admin_url: str | None) -> bool:
        """Keep the latest figures of one gateway; False when its /metrics did not answer."""
        if not admin_url:
            return False
        text = await self.api.metrics(admin_url)
        if text is None:
            return False
        self.gateway_figures[gateway_id] = rep.gateway_figures(text)
        return True

    async def _monitor(self) -> None:
        """Connections per gateway, the harness's own CPU and event-loop lag every second
        (if the harness itself is saturated its latency figures mean little); gateway
        metrics every 5 s."""
        import psutil

        me = psutil.Process()
        me.cpu_percent()
        last_scrape = -math.inf
        while True:
            t = trio.current_time()
            await trio.sleep(0.01)
            lag = max(0.0, trio.current_time() - t - 0.01)
            self.loop_lag_max = max(self.loop_lag_max, lag)
            self.verifier.flush()  # what the receivers wrote down this second
            self.harness_cpu.append(me.cpu_percent())
            self.cpu.lag(lag * 1000)
            self._sample_gateway_cpu()
            self._sample_nats_cpu()
            per_gw: dict[str, int] = {}
            for s in self.all_sessions():
                for _, c in s.clients:
                    if c.connected.is_set() and c.gateway:
                        per_gw[c.gateway] = per_gw.get(c.gateway, 0) + 1
            self.timeline.sample(
                time.time(),
                sum(1 for s in self.all_sessions() if s.connected()),
                per_gw,
                harness_cpu=self.harness_cpu[-1],
                loop_lag_ms=round(lag * 1000, 1),
            )
            if trio.current_time() - last_scrape >= 5:
                last_scrape = trio.current_time()
                with trio.move_on_after(4):
                    await self._scrape()
            await trio.sleep(1)

    async def _display(self) -> None:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(rep.progress_table(self.progress()), refresh_per_second=4) as live:
                while True:
                    live.update(rep.progress_table(self.progress()))
                    await trio.sleep(0.5)
        else:
            while True:
                await trio.sleep(5)
                print(rep.progress_line(self.progress()), flush=True)

    async def _scenario(self, at: float) -> None:
        with self._scenario_scope:
            await self._scenario_at(at)

    async def _scenario_at(self, at: float) -> None:
        await trio.sleep_until(at)
        with trio.move_on_after(max(5.0, self.opts.duration / 4)):  # a slow ramp: wait a bit
            while not all(s.ready or s.failed for s in self.sessions):  # noqa: ASYNC110 (polls state owned elsewhere)
                await trio.sleep(0.1)
        if self.opts.scenario != "steady":
            self.phase = self.opts.scenario
        try:
            await scenarios.act(self.opts.scenario, self)
        except (RuntimeError, ApiError, httpx.HTTPError, OSError) as exc:
            self.errors.append(f"scenario {self.opts.scenario} failed: {exc}")

    async def _watch_ramp(self) -> None:
        """Note when every initial session is streaming (or has failed): the ramp's end."""
        while not all(s.ready or s.failed for s in self.sessions):  # noqa: ASYNC110
            await trio.sleep(0.2)
        self.ramp_end = time.time() - self.timeline.t0
        if trio.current_time() < self.stop_at:
            self.cpu.start = await self._cpu_point()

    # -- CPU per event --

    def _sample_gateway_cpu(self) -> None:
        """Local gateways by pid: keep each one's last CPU seconds (it may exit any time),
        its worker processes included (`--workers N`: the live ones, and the ones it has
        reaped, which its own `children_*` times count)."""
        if self.cluster is None:
            return
        import psutil

        for gid, p in self.cluster.gateways.items():
            tree = self._gateway_procs.get(gid)
            try:
                if tree is None or tree.proc.pid != p.proc.pid:
                    tree = self._gateway_procs[gid] = ProcessTree(psutil.Process(p.proc.pid))
                total = tree.cpu_seconds(time.monotonic())
            except (psutil.Error, OSError):
                continue
            self._gateway_cpu[gid] = total

    def _sample_nats_cpu(self) -> None:
        """A local cluster's NATS servers by pid, like the gateways: each process's last value,
        so a killed node counts up to its last sample and its restart counts from zero."""
        if self.cluster is None:
            return
        import psutil

        for node in self.cluster.nats:
            if node.proc is None:
                continue
            try:
                t = psutil.Process(node.proc.pid).cpu_times()
            except (psutil.Error, OSError):
                continue
            self._nats_cpu[f"{node.name}:{node.proc.pid}"] = t.user + t.system

    async def _cpu_point(self) -> CpuPoint:
        import psutil

        if self.cluster is not None:
            self._sample_gateway_cpu()
            self._sample_nats_cpu()
            self.cpu.source = "psutil"
            gateways = dict(self._gateway_cpu)
        else:
            with trio.move_on_after(4):
                await self._scrape()
            gateways = {
                g: f["cpu_seconds"] for g, f in self.gateway_figures.items() if f.get("cpu_seconds")
            }
            self.cpu.source = "process_cpu_seconds_total" if gateways else None
        t = psutil.Process().cpu_times()
        return CpuPoint(
            t=trio.current_time(),
            harness=t.user + t.system,
            gateways=gateways,
            delivered=self.delivered_total,
            nats=dict(self._nats_cpu),
        )

    async def _settle(self) -> None:
        self.phase = "settle"
        t = trio.current_time()
        deadline = t + self.opts.settle
        unacked = outstanding = 0
        while trio.current_time() < deadline:
            unacked = sum(
                1
                for s in self.all_sessions()
                if s.ready
                for _, c in s.clients
                if c.seq.next_seq - 1 > c.seq.acked
            )
            outstanding = self.verifier.outstanding()
            if unacked == 0 and outstanding == 0:
                break
            await trio.sleep(0.2)
        self.settle = {
            "seconds": round(trio.current_time() - t, 2),
            "complete": unacked == 0 and outstanding == 0,
            "senders_with_unacked": unacked,
            "receivers_behind": outstanding,
        }

    async def run(self) -> dict[str, Any]:
        o = self.opts
        t_start = trio.current_time()
        self.timeline = rep.Timeline(t0=time.time())
        self.stop_at = t_start + o.duration
        try:
            async with trio.open_nursery() as top:
                top.start_soon(self._signals, top.cancel_scope)
                top.start_soon(self._display)
                top.start_soon(self._monitor)
                if self.reactor is not None:
                    top.start_soon(self.reactor.run)
                async with trio.open_nursery() as n:
                    self._nursery = n
                    self.phase = "ramp"
                    n.start_soon(self._scenario, t_start + o.duration / 2)
                    setup_deadline = t_start + max(o.duration * 0.75, o.ramp + 30)
                    for i in range(o.sessions):
                        await trio.sleep_until(t_start + i * o.ramp / o.sessions)
                        s = self.session_class(self, i)
                        self.sessions.append(s)
                        n.start_soon(s.main, min(setup_deadline, self.stop_at))
                    n.start_soon(self._watch_ramp)
                    self.phase = "load"
                    await trio.sleep_until(self.stop_at)
                    if self.cpu.start is not None:
                        self.cpu.end = await self._cpu_point()
                    self.stop_sending.set()
                    await self._settle()
                    with trio.move_on_after(5):
                        await self._scrape()
                    self.phase = "closing"
                    self._scenario_scope.cancel()
                    self.closing.set()  # sessions say bye and end (each within 5 s)
                top.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.api.aclose()
        if self.interrupted:
            raise KeyboardInterrupt
        return self.report()

    async def _signals(self, scope: trio.CancelScope) -> None:
        """Ctrl-C or SIGTERM: cancel everything in order (trio's way), then stop."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                self.phase = "stopping"
                scope.cancel()
                return

    def report(self) -> dict[str, Any]:
        """The run's report (`report.build_report`) from what the harness observed."""
        o = self.opts
        self.verifier.flush()
        for s in self.all_sessions():
            s.record_clients(self.verifier)
        details = dict(self.details)
        details["gateways_seen"] = self.gateway_states
        details["api_rate_limited"] = self.api.rate_limited
        details["metrics_scrape_failures"] = self.scrape_failures
        details["ack_latency_ms"] = {
            "visitor": percentiles_ms(self.ack_latency["v"]),
            "agents": percentiles_ms(self.ack_latency["a"]),
        }
        details["harness"] = rep.harness_load(
            self.harness_cpu,
            self.loop_lag_max,
            self.reactor.turns if self.reactor is not None else None,
        )
        if self.extra:
            details["extra_sessions_started"] = sum(1 for s in self.extra if s.ready)
            details["extra_sessions_not_started"] = sum(1 for s in self.extra if not s.ready)
        if self.errors:
            details["errors"] = self.errors
        return rep.build_report(
            scenario=o.scenario,
            config=rep.run_config(
                o,
                None if self.target.local else self.target.api_url,
                self.cluster.spec if self.cluster is not None else None,
            ),
            verifier=self.verifier,
            timeline=self.timeline,
            sessions_started=sum(1 for s in self.sessions if s.ready),
            sessions_failed=sum(1 for s in self.sessions if not s.ready),
            extra_sessions=sum(1 for s in self.extra if s.ready),
            client_errors=self.client_errors + self.errors,
            epoch_restarts=self.epoch_restarts,
            settle=self.settle,
            gateways=self.gateway_figures,
            scenario_details=details,
            cpu=self.cpu.figures(),
            ramp_end=self.ramp_end,
        )
