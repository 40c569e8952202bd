"""A throwaway cluster on loopback for one load-test run, like `python -m router up`.

nats-server (one node, or three with JetStream clustering), N gateways (`python -m gateway`,
each with an admin port for /metrics) and the router's HTTP API, on free ports, with fresh
development keys. Every process is ours: its pid is written to `<run dir>/pids.json` with
the harness's own pid as owner, and `stop()` ends exactly those pids (SIGTERM, then SIGKILL).
A later run ends the leftovers of a run whose harness died without cleaning up (its owner
pid is gone), checking each process's command line first so a reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from router import natsproc
from router.cluster import dev_keys, spawn_gateway, spawn_router

UNLIMITED = "1000000/minute"  # the harness's clients all come from 127.0.0.1


@dataclass
class ClusterSpec:
    gateways: int = 2
    nats_nodes: int = 1  # 1, or 3 for a JetStream cluster
    replicas: int = 1
    storage: str = "memory"
    drain_window: float = 10.0
    gateway_args: list[str] = field(default_factory=list)  # admission settings etc.
    workers: int = 1  # processes per gateway (`python -m gateway --workers N`)


@dataclass
class Target:
    """Where the harness sends its load: a router API and the keys it accepts."""

    api_url: str
    site_key: str
    agent_key: str
    admin_key: str | None
    local: bool = False


@dataclass
class _Proc:
    name: str
    proc: subprocess.Popen
    marker: str


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def end_leftovers(base: Path) -> list[int]:
    """SIGKILL processes recorded by earlier runs under `base` whose harness is gone."""
    ended = []
    for pids_file in base.glob("*/pids.json"):
        try:
            data = json.loads(pids_file.read_text())
        except (OSError, ValueError):
            continue
        owner = data.get("owner")
        if isinstance(owner, int) and natsproc.pid_alive(owner):
            continue  # another harness still runs: its processes are not ours to end
        for entry in data.get("procs", []):
            pid, marker = entry.get("pid"), entry.get("marker", "")
            if isinstance(pid, int) and natsproc.pid_alive(pid) and marker in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
                ended.append(pid)
        pids_file.unlink(missing_ok=True)
    return ended


def _http_json(url: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, dict]:
    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


class LocalCluster:
    def __init__(self, spec: ClusterSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.procs: list[_Proc] = []
        self.nats: list[natsproc.NatsServer] = []
        self.gateways: dict[str, _Proc] = {}
        self.gateway_ports: dict[str, tuple[int, int]] = {}  # id -> (ws port, admin port)
        self.keys = dev_keys()
        self.api_url = ""
        self.router: _Proc | None = None

    # ---- bookkeeping -------------------------------------------------------------------

    def _record(self, name: str, proc: subprocess.Popen, marker: str) -> _Proc:
        p = _Proc(name, proc, marker)
        self.procs.append(p)
        self._write_pids()
        return p

    def _write_pids(self) -> None:
        data = {
            "owner": os.getpid(),
            "procs": [{"name": p.name, "pid": p.proc.pid, "marker": p.marker} for p in self.procs],
        }
        (self.run_dir / "pids.json").write_text(json.dumps(data))

    @property
    def nats_url(self) -> str:
        return natsproc.servers_url(self.nats)

    # ---- start -------------------------------------------------------------------------

    def start(self, log=print) -> Target:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec
        if spec.nats_nodes > 1:
            self.nats = natsproc.start_cluster(self.run_dir / "nats", spec.nats_nodes)
        else:
            self.nats = [natsproc.start_single(self.run_dir / "nats")]
        for s in self.nats:
            assert s.proc is not None
            self._record(s.name, s.proc, "nats-server")
        log(f"nats: {len(self.nats)} node(s) at {self.nats_url}")
        env = dict(
            os.environ,
            COBROWSE_TOKEN_KEYS=self.keys["token_keys"],
            COBROWSE_ADMIN_KEY=self.keys["admin_key"],
            COBROWSE_LOG_LEVEL=os.environ.get("COBROWSE_LOG_LEVEL", "INFO"),
        )
        args = [
            "--drain-window",
            f"{spec.drain_window:g}",
            "--replicas",
            str(spec.replicas),
            "--storage",
            spec.storage,
            *spec.gateway_args,
        ]
        # One process per gateway unless asked: a drain or a kill then hits exactly it.
        args += ["--workers", str(spec.workers)]
        # The first gateway creates the stream; start it alone so the others do not race.
        self._start_gateway("gw-1", env, args)
        others = [f"gw-{i + 1}" for i in range(1, spec.gateways)]
        for gid in others:
            self._spawn_gateway(gid, env, args)
        for gid in others:
            self._await_gateway(gid, env, args)
        self._start_router(env)
        log(f"gateways: {', '.join(self.gateways)}; router API at {self.api_url}")
        self.wait_members(spec.gateways * spec.workers)
        return Target(
            api_url=self.api_url,
            site_key=self.keys["site_key"],
            agent_key=self.keys["agent_api_key"],
            admin_key=self.keys["admin_key"],
            local=True,
        )

    def _spawn_gateway(self, gid: str, env: dict, args: list[str]) -> None:
        port, hport = natsproc.free_port(), natsproc.free_port()
        log_path = self.run_dir / f"{gid}.log"
        log_path.unlink(missing_ok=True)
        proc = spawn_gateway(
            gid, port, self.nats_url, env, self.run_dir, ["--health-port", str(hport), *args]
        )
        p = self._record(gid, proc, "-m gateway")
        self.gateways[gid] = p
        self.gateway_ports[gid] = (port, hport)

    def _gateway_ready(self, gid: str) -> bool:
        try:
            text = (self.run_dir / f"{gid}.log").read_text(errors="replace")
        except OSError:
            return False
        return f"gateway {gid} ready" in text

    def _await_gateway(self, gid: str, env: dict, args: list[str], attempts: int = 3) -> None:
        for attempt in range(attempts):
            deadline = time.monotonic() + 45
            p = self.gateways[gid]
            while not self._gateway_ready(gid):
                if p.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                return
            # A port taken between choosing and binding it, most likely: try fresh ports.
            self._end(p)
            if attempt == attempts - 1:
                tail = (self.run_dir / f"{gid}.log").read_text(errors="replace")[-800:]
                raise RuntimeError(f"gateway {gid} did not start:\n{tail}")
            self._spawn_gateway(gid, env, args)

    def _start_gateway(self, gid: str, env: dict, args: list[str]) -> None:
        self._spawn_gateway(gid, env, args)
        self._await_gateway(gid, env, args)

    def _start_router(self, env: dict, attempts: int = 3) -> None:
        router_env = dict(
            env,
            COBROWSE_SITE_KEYS=f"{self.keys['site_key']}:loadtest",
            COBROWSE_AGENT_KEYS=f"{self.keys['agent_api_key']}:loadtest",
            COBROWSE_LOOKUP_LIMIT_PER_KEY=UNLIMITED,
            COBROWSE_LOOKUP_LIMIT_PER_ADDRESS=UNLIMITED,
            COBROWSE_CREATE_LIMIT_PER_ADDRESS=UNLIMITED,
            COBROWSE_STREAM_STORAGE=self.spec.storage,
            COBROWSE_STREAM_REPLICAS=str(self.spec.replicas),
        )
        for attempt in range(attempts):
            port = natsproc.free_port()
            proc = spawn_router(port, self.nats_url, router_env, self.run_dir)
            self.router = self._record("router", proc, "-m router serve")
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 45
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if _http_json(url + "/healthz", timeout=1)[0] == 200:
                        self.api_url = url
                        return
                except (OSError, ValueError):
                    pass
                time.sleep(0.1)
            self._end(self.router)
            if attempt == attempts - 1:
                raise RuntimeError("the router API did not start: see router.log")

    def wait_members(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = _http_json(
                    self.api_url + "/v1/cluster", self.keys["admin_key"], timeout=2
                )
            except (OSError, ValueError):
                status, body = 0, {}
            active = [g for g in body.get("gateways", []) if g.get("state") == "active"]
            if status == 200 and len(active) >= n:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{n} gateways did not register within {timeout}s")

    # ---- faults ------------------------------------------------------------------------

    def gateway_id_for_url(self, url: str) -> str | None:
        for gid, (port, _) in self.gateway_ports.items():
            if f":{port}/" in url or url.rstrip("/").endswith(f":{port}"):
                return gid
        return None

    def kill_gateway(self, gid: str) -> int:
        """SIGKILL, as a crash would; returns the pid."""
        p = self.gateways[gid]
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
        return p.proc.pid

    def gateway_exit_code(self, gid: str) -> int | None:
        return self.gateways[gid].proc.poll()

    def stream_leader(self, stream: str = "COBROWSE") -> str | None:
        """The name of the node leading the stream's Raft group, from any node's /jsz."""
        for s in self.nats:
            if s.proc is None or s.proc.poll() is not None:
                continue
            try:
                status, data = _http_json(
                    f"http://127.0.0.1:{s.monitor_port}/jsz?streams=true", timeout=3
                )
            except (OSError, ValueError):
                continue
            for acct in data.get("account_details", []) or []:
                for st in acct.get("stream_detail", []) or []:
                    if st.get("name") == stream:
                        leader = (st.get("cluster") or {}).get("leader")
                        if leader:
                            return leader
        return None

    def kill_nats(self, name: str) -> int:
        for s in self.nats:
            if s.name == name:
                s.kill()
                assert s.proc is not None
                return s.proc.pid
        raise KeyError(name)

    # ---- stop --------------------------------------------------------------------------

    def _end(self, p: _Proc) -> None:
        if p.proc.poll() is None:
            p.proc.kill()
        try:
            p.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout: float = 8.0) -> None:
        """End every process we started: SIGTERM (gateways drain; with no clients left they
        exit at once), then SIGKILL whatever is still running. NATS goes last."""
        first = [p for p in self.procs if p.marker != "nats-server"]
        last = [p for p in self.procs if p.marker == "nats-server"]
        for group in (first, last):
            for p in group:
                if p.proc.poll() is None:
                    try:
                        p.proc.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + timeout
            for p in group:
                try:
                    p.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    try:
                        p.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
        (self.run_dir / "pids.json").unlink(missing_ok=True)
