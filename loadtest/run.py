"""`python -m loadtest run`: simulated visitors and agents against a cluster, verified.

The run, in order:

1. Target: a local cluster on loopback started here (`localcluster`, shaped by the scenario),
   or `--target URL` (a router API of a real deployment; keys from flags or environment).
2. Ramp: sessions are created through the HTTP API (`POST /v1/sessions`, then one
   `POST /v1/sessions/lookup` by short code per agent), spread over the first seconds. Each
   visitor connects to the gateways the API returned, sends a full snapshot, and once it is
   acked its agents join (they start at that snapshot).
3. Load: every session plays its event mix (`workload`) until `--duration` ends. At half
   time the scenario acts (`scenarios`). Gateway metrics are scraped every few seconds.
4. Settle: sending stops; the harness waits until every sender's events are acked and
   every receiver has the last acked event of every stream it should get (or `--settle`
   seconds pass), then says bye to every client.
5. Report: the verifier's counts, the summary table, `--json`, `--report DIR`; exit 0 only
   when nothing was lost, duplicated or reordered (see docs/loadtest.md for exit codes).

Every loop is bounded in count and time. Against a local cluster everything is on loopback,
and every process started is stopped at the end, on error and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import trio

from gateway.client import Client, ClientError, ClientStats
from gateway.sequencer import Sequencer

from . import report as rep
from . import scenarios
from .localcluster import LocalCluster, Target, end_leftovers
from .verifier import Verifier, new_histogram, percentiles_ms, record_latency
from .workload import EventMix, payload, snapshot_bytes

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

# ---- options ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest run",
        description="Load-test a cobrowse cluster with simulated visitors and agents, and "
        "verify that no event is lost, duplicated or reordered.",
    )
    p.add_argument("--scenario", choices=scenarios.SCENARIOS, default="steady")
    p.add_argument("--sessions", type=int, default=50, help="sessions (default 50)")
    p.add_argument("--agents-per-session", type=int, default=1, help="agents per session")
    p.add_argument(
        "--rate", type=float, default=5.0, help="visitor events per second per session (5)"
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    p.add_argument(
        "--target",
        default=None,
        help="router API URL of a deployment (or a .run/cluster.json); "
        "default: start a local cluster on loopback",
    )
    p.add_argument("--site-key", default=os.environ.get("COBROWSE_SITE_KEY"))
    p.add_argument("--agent-key", default=os.environ.get("COBROWSE_AGENT_KEY"))
    p.add_argument("--admin-key", default=os.environ.get("COBROWSE_ADMIN_KEY"))
    p.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--report", type=Path, default=None, help="write report.json/png/md here")
    p.add_argument("--seed", type=int, default=None, help="seed of the event mix (random)")
    p.add_argument(
        "--settle", type=float, default=30.0, help="max seconds to wait for in-flight events"
    )
    p.add_argument("--ramp", type=float, default=None, help="seconds over which sessions start")
    p.add_argument(
        "--storm-rate", type=float, default=100.0, help="storm: new handshakes per second"
    )
    p.add_argument(
        "--storm-sessions",
        type=int,
        default=None,
        help="storm: real new sessions created during the storm (default sessions/2)",
    )
    p.add_argument("--run-dir", type=Path, default=Path(".run/loadtest"), help="local logs")
    p.add_argument("--keep-logs", action="store_true", help="keep local logs after a pass")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    if a.sessions < 1 or a.sessions > 100_000:
        p.error("--sessions must be 1..100000")
    if a.agents_per_session < 0 or a.agents_per_session > 100:
        p.error("--agents-per-session must be 0..100")
    if a.rate < 0 or a.rate > 1000:
        p.error("--rate must be 0..1000")
    if a.duration <= 0 or a.duration > 24 * 3600:
        p.error("--duration must be > 0 and at most a day")
    if a.target and a.scenario in scenarios.LOCAL_ONLY:
        p.error(f"--scenario {a.scenario} kills local processes: it cannot run with --target")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(2**31)
    if a.ramp is None:
        a.ramp = min(10.0, max(0.5, a.duration / 10))
    a.ramp = min(a.ramp, a.duration / 2)
    a.storm_seconds = min(10.0, max(2.0, a.duration / 6))
    if a.storm_sessions is None:
        a.storm_sessions = max(1, a.sessions // 2)
    return a


def resolve_target(a: argparse.Namespace) -> Target | None:
    """The deployment to test, or None to start a local cluster."""
    if not a.target:
        return None
    path = Path(a.target)
    if a.target.endswith(".json") and path.exists():  # what `make run` wrote
        import json

        info = json.loads(path.read_text())
        return Target(
            api_url=info["api"]["url"],
            site_key=a.site_key or info["site_key"],
            agent_key=a.agent_key or info["agent_api_key"],
            admin_key=a.admin_key or info.get("admin_key"),
        )
    missing = [n for n in ("site_key", "agent_key") if not getattr(a, n)]
    if a.scenario in ("drain",) and not a.admin_key:
        missing.append("admin_key")
    if missing:
        names = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise SystemExit(f"--target needs {names} (or COBROWSE_SITE_KEY / _AGENT_KEY / _ADMIN_KEY)")
    return Target(a.target.rstrip("/"), a.site_key, a.agent_key, a.admin_key)


# ---- the router API -----------------------------------------------------------------------


class ApiError(Exception):
    pass


class Api:
    """The few calls of the router's HTTP API the harness makes (docs/api.md)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.http = httpx.AsyncClient(
            base_url=target.api_url,
            timeout=10.0,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.rate_limited = 0  # 429s from the API (the harness retries after Retry-After)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _auth(self, admin: bool = False) -> dict[str, str]:
        key = self.target.admin_key if admin and self.target.admin_key else self.target.agent_key
        return {"Authorization": f"Bearer {key}"}

    async def _post(self, path: str, body: dict, headers: dict | None = None) -> dict:
        """POST with retries on 429/503 (after Retry-After) and on connection errors; the
        caller's deadline bounds them."""
        delay = 0.2
        err = "busy"
        for _ in range(60):
            try:
                r = await self.http.post(path, json=body, headers=headers)
            except httpx.HTTPError as exc:
                err = f"{type(exc).__name__}: {exc}"
                await trio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            if r.status_code in (200, 201):
                return r.json()
            if r.status_code in (429, 503):
                if r.status_code == 429:
                    self.rate_limited += 1
                wait = _float(r.headers.get("retry-after"), 1.0)
                await trio.sleep(min(10.0, wait) * random.uniform(1.0, 1.5))
                continue
            raise ApiError(f"{path}: HTTP {r.status_code} {r.text[:200]}")
        raise ApiError(f"{path}: gave up after retries ({err})")

    async def create_session(self) -> dict:
        return await self._post("/v1/sessions", {"site_key": self.target.site_key})

    async def lookup(self, code: str) -> dict:
        return await self._post("/v1/sessions/lookup", {"code": code}, self._auth())

    async def cluster(self) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/cluster", headers=self._auth(admin=True))
        if r.status_code != 200:
            raise ApiError(f"/v1/cluster: HTTP {r.status_code} {r.text[:200]}")
        return r.json().get("gateways", [])

    async def drain(self, gateway_id: str) -> tuple[int, Any]:
        r = await self.http.post(
            f"/v1/cluster/gateways/{gateway_id}/drain", headers=self._auth(admin=True)
        )
        try:
            body = r.json()
        except ValueError:
            body = r.text[:200]
        return r.status_code, body

    async def metrics(self, admin_url: str) -> str | None:
        try:
            r = await self.http.get(urljoin(admin_url, "metrics"), timeout=3.0)
        except httpx.HTTPError:
            return None
        return r.text if r.status_code == 200 else None


def _float(v: str | None, default: float) -> float:
    try:
        return float(v) if v is not None else default
    except ValueError:
        return default


# ---- instrumented clients -----------------------------------------------------------------


@dataclass
class LaneStats(ClientStats):
    """ClientStats that also sorts refused handshakes by admission lane: a client without a
    resume token asks the new-session lane, one with a resume token the resume lane."""

    rejected_new: int = 0
    rejected_resume: int = 0

    def bind(self, client: Client) -> LaneStats:
        object.__setattr__(self, "_owner", client)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        owner = self.__dict__.get("_owner")
        if name == "rejected" and owner is not None:
            lane = "rejected_new" if owner.rt is None else "rejected_resume"
            object.__setattr__(self, lane, getattr(self, lane) + value - self.rejected)
        object.__setattr__(self, name, value)


class RecordingSequencer(Sequencer):
    """The client's sequencer, reporting what it numbers and what the gateway acks, and
    (with `on_acked_after`) how long each event waited for its ack: the time to durable."""

    def __init__(self, on_push, on_ack, on_restart, *, on_acked_after=None, clock=None, **kw):
        self._on_push, self._on_ack, self._on_restart = on_push, on_ack, on_restart
        self._on_acked_after = on_acked_after
        self._clock = clock or time.time
        self._pushed_at: deque[tuple[int, float]] = deque()
        super().__init__(**kw)

    def push(self, kind, ts, payload):
        ev = super().push(kind, ts, payload)
        if self._on_acked_after is not None:
            self._pushed_at.append((ev.seq, self._clock()))
        self._on_push(self.epoch, ev.seq)
        return ev

    def ack(self, seq: int) -> int:
        freed = super().ack(seq)
        if seq > 0 and seq == self.acked:
            self._on_ack(self.epoch, seq)
            if self._pushed_at and self._pushed_at[0][0] <= seq:
                now = self._clock()
                while self._pushed_at and self._pushed_at[0][0] <= seq:
                    self._on_acked_after(now - self._pushed_at.popleft()[1])
        return freed

    def restart(self, epoch: int) -> None:
        old, abandoned = self.epoch, len(self.unacked())
        super().restart(epoch)
        self._pushed_at.clear()
        self._on_restart(old, epoch, abandoned)


# ---- one simulated session ----------------------------------------------------------------


class SimSession:
    def __init__(self, h: Harness, index: int, extra: bool = False) -> None:
        self.h = h
        self.index = index
        self.extra = extra
        self.mix = EventMix(h.opts.rate, random.Random(f"{h.opts.seed}:{index}"))
        self.sid = ""
        self.visitor: Client | None = None
        self.agents: list[Client] = []
        self.clients: list[tuple[str, Client]] = []
        self.notices: dict[str, list[float]] = {}
        self.joined_at: dict[str, float] = {}
        self.ready = False
        self.failed: str | None = None
        self.need_snapshot = False
        self.counter = 0

    # -- clients --

    def _client(self, urls: list[str], token: str, role: str, name: str) -> Client:
        h = self.h
        rng = random.Random(f"{h.opts.seed}:{self.index}:{name}")
        self.notices[name] = []
        client = Client(urls, self.sid, token, role, rng=rng, on_control=self._on_control(name))
        client.stats = LaneStats().bind(client)
        direction = "v" if role == "visitor" else "a"

        def sender() -> str:
            if role == "visitor":
                return "visitor"
            return client.welcome.aid if client.welcome and client.welcome.aid else name

        def on_push(epoch: int, seq: int) -> None:
            h.verifier.sent(self.sid, direction, sender(), epoch, seq)

        def on_ack(epoch: int, seq: int) -> None:
            h.verifier.acked(self.sid, direction, sender(), epoch, seq)

        def on_restart(old: int, new: int, abandoned: int) -> None:
            if role == "visitor" and old != 0:
                # A new page: agent events for the old one are not replayed to it, and the
                # agents should see a fresh snapshot.
                h.epoch_restarts += 1
                h.verifier.skip_acked(self.sid, "a", "visitor")
                self.need_snapshot = True
            elif role == "agent":  # a new agent identity: delivery restarts at a snapshot
                h.epoch_restarts += 1
                h.verifier.reset(self.sid, "v", name)

        def on_acked_after(seconds: float) -> None:
            record_latency(h.ack_latency[direction], seconds)

        client.seq = RecordingSequencer(
            on_push,
            on_ack,
            on_restart,
            on_acked_after=on_acked_after,
            epoch=0,
            max_unacked=client.seq.max_unacked,
        )
        self.clients.append((name, client))
        return client

    def _on_control(self, name: str):
        def on_control(ctl) -> None:
            if ctl.op == "reconnect":
                self.notices[name].append(time.time())
            elif ctl.op == "snapshot" and name == "visitor":
                self.need_snapshot = True
            elif ctl.op == "reset" and name != "visitor":
                self.h.verifier.reset(self.sid, "v", name)

        return on_control

    async def _run_client(self, name: str, client: Client, task_status=trio.TASK_STATUS_IGNORED):
        try:
            await client.run(task_status=task_status)
        except ClientError as exc:
            if not self.h.closing.is_set():
                self.h.client_errors.append(f"{self.sid} {name}: {exc}")

    async def _consume(self, name: str, client: Client, direction: str) -> None:
        h = self.h
        async for d in client.events:
            sent_at = d.payload.get("t") if isinstance(d.payload, dict) else None
            if not isinstance(sent_at, float):
                sent_at = d.ts / 1000
            # Only events sent after this receiver joined have a meaningful latency (a late
            # joiner starts with a snapshot sent before it came).
            latency = d.received - sent_at if sent_at >= self.joined_at.get(name, 0) else None
            sender = "visitor" if d.src is None else d.src
            h.verifier.delivered(self.sid, direction, sender, name, d.epoch, d.seq, latency)
            if direction == "v":
                h.timeline.on_delivered(d.received, latency)

    # -- the session's life --

    async def main(self, deadline: float) -> None:
        """Set up (bounded by `deadline`, trio time), stream until the run stops sending,
        then wait for the harness to close everything."""
        h = self.h
        async with trio.open_nursery() as n:
            try:
                with trio.fail_at(deadline):
                    await self._setup(n)
            except (trio.TooSlowError, ApiError, ClientError, RuntimeError, KeyError) as exc:
                self.failed = f"{type(exc).__name__}: {exc}"
                if not self.extra and not h.stop_sending.is_set():
                    h.client_errors.append(f"session {self.index} did not start: {self.failed}")
                n.cancel_scope.cancel()
                return
            self.ready = True
            with trio.move_on_at(h.stop_at):
                async with trio.open_nursery() as senders:
                    senders.start_soon(self._visitor_loop)
                    for name, client in self.clients:
                        if client.role == "agent":
                            senders.start_soon(self._agent_loop, name, client)
            await h.closing.wait()
            for _, client in self.clients:
                client.close()
            with trio.move_on_after(5):
                while any(c.connected.is_set() for _, c in self.clients):  # noqa: ASYNC110 (polls state owned elsewhere)
                    await trio.sleep(0.1)
            n.cancel_scope.cancel()

    async def _setup(self, n: trio.Nursery) -> None:
        h = self.h
        created = await h.api.create_session()
        self.sid = created["session_id"]
        h.verifier.expect(self.sid, "a", "visitor", (0, 0))
        self.visitor = self._client(
            created["gateways"], created["visitor_token"], "visitor", "visitor"
        )
        self.joined_at["visitor"] = time.time()
        await n.start(self._run_client, "visitor", self.visitor)
        n.start_soon(self._consume, "visitor", self.visitor, "a")
        await self._send_snapshot()
        await self.visitor.wait_acked(self.visitor.seq.next_seq - 1, timeout=60)
        for k in range(h.opts.agents_per_session):
            name = f"agent-{k}"
            looked = await h.api.lookup(created["short_code"])
            agent = self._client(looked["gateways"], looked["agent_token"], "agent", name)
            self.joined_at[name] = time.time()
            await n.start(self._run_client, name, agent)
            delivered = agent.welcome.delivered if agent.welcome else None
            after = tuple(delivered) if isinstance(delivered, list) else None
            h.verifier.expect(self.sid, "v", name, after)
            n.start_soon(self._consume, name, agent, "v")
            self.agents.append(agent)

    async def _send_snapshot(self) -> None:
        assert self.visitor is not None
        self.need_snapshot = False
        data = snapshot_bytes(self.mix.snapshot_size(), self.sid)
        parts = await self.visitor.send_snapshot(data)
        self.h.timeline.on_sent(time.time(), len(parts))

    async def _visitor_loop(self) -> None:
        h, visitor = self.h, self.visitor
        assert visitor is not None
        start = trio.current_time()
        for ev in self.mix.visitor(max(0.0, h.stop_at - start)):
            await trio.sleep_until(start + ev.at)
            if self.need_snapshot:
                await self._send_snapshot()
            now = time.time()
            self.counter += 1
            await visitor.send(ev.kind, payload(ev.kind, ev.size, self.counter, now))
            h.timeline.on_sent(now)

    async def _agent_loop(self, name: str, agent: Client) -> None:
        start = trio.current_time()
        n = 0
        for ev in self.mix.agent(max(0.0, self.h.stop_at - start)):
            await trio.sleep_until(start + ev.at)
            n += 1
            await agent.send(ev.kind, payload(ev.kind, ev.size, n, time.time()))

    def connected(self) -> bool:
        return self.ready and all(c.connected.is_set() for _, c in self.clients)


# ---- the harness --------------------------------------------------------------------------


class Harness:
    def __init__(self, opts: argparse.Namespace, target: Target, cluster: LocalCluster | None):
        self.opts = opts
        self.target = target
        self.cluster = cluster
        self.api = Api(target)
        self.rng = random.Random(opts.seed)
        self.verifier = Verifier()
        self.ack_latency = {"v": new_histogram(), "a": new_histogram()}  # send -> durable
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
            s = SimSession(self, len(self.sessions) + len(self.extra), extra=True)
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
            self.harness_cpu.append(me.cpu_percent())
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
                async with trio.open_nursery() as n:
                    self._nursery = n
                    self.phase = "ramp"
                    n.start_soon(self._scenario, t_start + o.duration / 2)
                    setup_deadline = t_start + max(o.duration * 0.75, o.ramp + 30)
                    for i in range(o.sessions):
                        await trio.sleep_until(t_start + i * o.ramp / o.sessions)
                        s = SimSession(self, i)
                        self.sessions.append(s)
                        n.start_soon(s.main, min(setup_deadline, self.stop_at))
                    n.start_soon(self._watch_ramp)
                    self.phase = "load"
                    await trio.sleep_until(self.stop_at)
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
        return self.build_report()

    async def _signals(self, scope: trio.CancelScope) -> None:
        """Ctrl-C or SIGTERM: cancel everything in order (trio's way), then stop."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                self.phase = "stopping"
                scope.cancel()
                return

    def build_report(self) -> dict[str, Any]:
        o = self.opts
        for s in self.all_sessions():
            for name, c in s.clients:
                st = c.stats
                notice_waits = []
                for t in s.notices.get(name, []):
                    later = [w for w in st.welcomes if w > t]
                    if later:
                        notice_waits.append(min(later) - t)
                self.verifier.record_client(
                    connects=st.connects,
                    resumes=st.resumes,
                    reconnect_notices=st.reconnect_notices,
                    rejected_new=getattr(st, "rejected_new", 0),
                    rejected_resume=getattr(st, "rejected_resume", 0),
                    duplicates_dropped=st.duplicates_dropped,
                    gaps=st.gaps,
                    resume_times=st.resume_times,
                    notice_times=notice_waits,
                )
        initial_failed = [s for s in self.sessions if not s.ready]
        details = dict(self.details)
        details["gateways_seen"] = self.gateway_states
        details["api_rate_limited"] = self.api.rate_limited
        details["metrics_scrape_failures"] = self.scrape_failures
        details["ack_latency_ms"] = {
            "visitor": percentiles_ms(self.ack_latency["v"]),
            "agents": percentiles_ms(self.ack_latency["a"]),
        }
        cpu = sorted(self.harness_cpu)
        details["harness"] = {
            "cpu_percent_p50": cpu[len(cpu) // 2] if cpu else None,
            "cpu_percent_max": cpu[-1] if cpu else None,
            "loop_lag_max_ms": round(self.loop_lag_max * 1000, 1),
        }
        if self.extra:
            details["extra_sessions_started"] = sum(1 for s in self.extra if s.ready)
            details["extra_sessions_not_started"] = sum(1 for s in self.extra if not s.ready)
        if self.errors:
            details["errors"] = self.errors
        config = {
            "scenario": o.scenario,
            "sessions": o.sessions,
            "agents_per_session": o.agents_per_session,
            "rate": o.rate,
            "duration": o.duration,
            "seed": o.seed,
            "ramp": o.ramp,
            "settle_max": o.settle,
            "target": self.target.api_url if not self.target.local else "local cluster",
        }
        if self.cluster is not None:
            spec = self.cluster.spec
            config["local_cluster"] = {
                "gateways": spec.gateways,
                "nats_nodes": spec.nats_nodes,
                "replicas": spec.replicas,
                "storage": spec.storage,
                "drain_window": spec.drain_window,
                "gateway_args": spec.gateway_args,
            }
        report = rep.build_report(
            scenario=o.scenario,
            config=config,
            verifier=self.verifier,
            timeline=self.timeline,
            sessions_started=sum(1 for s in self.sessions if s.ready),
            sessions_failed=len(initial_failed),
            extra_sessions=sum(1 for s in self.extra if s.ready),
            client_errors=self.client_errors + self.errors,
            epoch_restarts=self.epoch_restarts,
            settle=self.settle,
            gateways=self.gateway_figures,
            scenario_details=details,
            ramp_end=self.ramp_end,
        )
        return report


# ---- entry point --------------------------------------------------------------------------


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _run_trio(fn):
    """trio.run, with a Ctrl-C (or SIGTERM) that surfaced inside a task group unwrapped."""
    try:
        return trio.run(fn)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        raise


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    try:
        target = resolve_target(opts)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_ERROR
    from rich.console import Console

    console = Console()
    cluster: LocalCluster | None = None
    run_dir: Path | None = None
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    report: dict[str, Any] | None = None
    t0 = time.monotonic()
    try:
        if target is None:
            base = opts.run_dir
            base.mkdir(parents=True, exist_ok=True)
            end_leftovers(base)
            run_dir = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            spec = scenarios.cluster_spec(
                opts.scenario, opts.sessions, opts.agents_per_session, opts.duration
            )
            cluster = LocalCluster(spec, run_dir)
            print(
                f"starting a local cluster in {run_dir}: {spec.gateways} gateways, "
                f"{spec.nats_nodes} NATS node(s)",
                flush=True,
            )
            target = cluster.start(log=lambda m: print("  " + m, flush=True))
        print(
            f"load test: scenario {opts.scenario}, {opts.sessions} sessions x "
            f"{opts.agents_per_session} agent(s), {opts.rate:g} events/s per session, "
            f"{opts.duration:g} s, seed {opts.seed}",
            flush=True,
        )
        harness = Harness(opts, target, cluster)
        report = _run_trio(harness.run)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"load test could not run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if cluster is not None:
                cluster.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, old_term)
        if run_dir is not None and report is not None and report["ok"] and not opts.keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif run_dir is not None:
            print(f"logs of the local cluster: {run_dir}", file=sys.stderr)
    report["wall_seconds"] = round(time.monotonic() - t0, 1)
    if opts.json:
        rep.write_json(report, opts.json)
    if opts.report:
        paths = rep.write_report_dir(report, opts.report)
        console.print(
            f"report written to {paths['md']} ({paths['png'].name}, {paths['json'].name})"
        )
    console.print(rep.summary_table(report))
    return EXIT_OK if report["ok"] else EXIT_FAILED
