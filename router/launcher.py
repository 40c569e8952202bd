"""One local cluster on loopback, for `make run`, the load-test harness and the tests.

nats-server (one node, or three with JetStream clustering, or none when the caller brings
its own), N gateways (`python -m gateway`, each with an admin port), the router's HTTP API
(`python -m router serve`) and the asset proxy (`python -m proxy serve`): real processes on
free 127.0.0.1 ports. A port can be taken between choosing it and binding it, so a process
that does not come up is started again on fresh ports (3 tries).

Every process is ours. `<run dir>/pids.json` is the one record of them,
`{"owner": <this process's pid>, "procs": [{"name", "pid", "marker"}, ...]}`, rewritten
whole at each change; `stop()` ends exactly those pids. `end_leftovers` ends what a launcher
that died outright (SIGKILL, a crash) left behind: only when its owner pid is gone, and only
processes whose command line still holds their marker, so a reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import logs

from . import natsproc
from .nats_secure import SecureNats

START_TIMEOUT = 45.0  # seconds for one process to come up: 2 shared cores start slowly
NATS_MARKER = "nats-server"
GATEWAY_MARKER = "-m gateway"


# ---- waiting for a process -------------------------------------------------------------------


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen, timeout: float, what: str
) -> None:
    """Poll `ready` (every 50 ms) until it holds; an error as soon as `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} after {timeout}s")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until something listens on 127.0.0.1:port; an error as soon as `proc` exits."""
    wait_until(lambda: _listening(port), proc, timeout, f"port {port} not listening")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until `url` answers 200; an error as soon as `proc` exits."""
    wait_until(lambda: _answers_200(url), proc, timeout, f"{url} not healthy")


def _http_json(url: str, key: str | None = None, timeout: float = 2.0) -> tuple[int, dict]:
    """GET a JSON document (with a bearer key); an HTTP error is its status and `{}`."""
    req = urllib.request.Request(url)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


# ---- spawning --------------------------------------------------------------------------------


def spawn_gateway(
    gid: str, port: int, nats_url: str, env: dict, log_dir: Path, extra: list[str] | None = None
) -> subprocess.Popen:
    """`python -m gateway` on 127.0.0.1:port, its output appended to `<log_dir>/<gid>.log`."""
    args = [sys.executable, "-m", "gateway", "--id", gid, "--port", str(port), "--nats", nats_url]
    return natsproc.spawn_logged([*args, *(extra or [])], log_dir / f"{gid}.log", env)


def gateway_url(gid: str, port: int) -> str:
    """The URL a local gateway advertises: its own port, and the path a production gateway
    pod advertises behind the Ingress (`/gw/<id>/`, docs/operations.md "Session affinity"),
    so that local clients connect, and the router places sessions, as in production."""
    return f"ws://127.0.0.1:{port}/gw/{gid}/"


def write_json(path: Path, obj: object, indent: int | None = None) -> None:
    """Whole or not at all: a reader (a second `make run`, a test) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    os.replace(tmp, path)


# ---- leftovers of a launcher that died ------------------------------------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def end_leftovers(base: Path) -> list[int]:
    """SIGKILL the processes recorded in `base/pids.json` and `base/*/pids.json` (a run
    directory, or a folder of them) by launchers that are gone; returns the pids ended."""
    ended: list[int] = []
    for pids_file in [base / "pids.json", *sorted(base.glob("*/pids.json"))]:
        try:
            data = json.loads(pids_file.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            pids_file.unlink(missing_ok=True)
            continue
        owner = data.get("owner")
        if isinstance(owner, int) and natsproc.pid_alive(owner):
            continue  # another launcher still runs: its processes are not ours to end
        # NATS last, as `stop()` does: a process that outlives its NATS by even a moment
        # logs the lost connection into the log files the new run appends to.
        procs = [e for e in data.get("procs", []) if isinstance(e, dict)]
        procs.sort(key=lambda e: e.get("marker") == NATS_MARKER)
        for entry in procs:
            pid, marker = entry.get("pid"), entry.get("marker", "")
            if isinstance(pid, int) and marker and natsproc.pid_alive(pid):
                if marker in _cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
                    ended.append(pid)
        pids_file.unlink(missing_ok=True)
    return ended


# ---- the cluster -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DevKeys:
    """The keys the processes are started with; production keys come from the operator."""

    token_keys: str
    site_key: str
    agent_api_key: str
    admin_key: str
    proxy_keys: str

    @classmethod
    def fresh(cls) -> DevKeys:
        return cls(
            token_keys=f"dev-{secrets.token_hex(2)}:{secrets.token_urlsafe(32)}",
            site_key=f"pk_dev_{secrets.token_hex(8)}",
            agent_api_key=f"ak_dev_{secrets.token_urlsafe(24)}",
            admin_key=f"adm_dev_{secrets.token_urlsafe(24)}",
            proxy_keys=f"pdev-{secrets.token_hex(2)}:{secrets.token_urlsafe(32)}",
        )


@dataclass
class ClusterSpec:
    """What to start. None leaves a gateway setting at its default."""

    gateways: int = 2  # started as gw-1 .. gw-N; more with start_gateway()
    workers: int | None = 1  # processes per gateway; 1, so a drain or a kill hits exactly it
    nats_nodes: int = 1  # 1, or 3 for a JetStream cluster
    nats_url: str | None = None  # a NATS the caller runs: none is started
    # TLS and a user per component (router/nats_secure.py): the NATS started here requires
    # them (a NATS the caller runs must have been started with the same files).
    secure: SecureNats | None = None
    router: bool = True
    proxy: bool = False
    replicas: int | None = None
    storage: str | None = None
    drain_window: float | None = None
    gateway_args: list[str] = field(default_factory=list)  # admission settings etc.
    env: dict[str, str] = field(default_factory=dict)  # over os.environ, for every process
    router_env: dict[str, str] = field(default_factory=dict)  # over env, for the router
    tenant: str = "dev"  # the tenant of the site key and the agent API key
    keys: DevKeys = field(default_factory=DevKeys.fresh)


@dataclass
class Proc:
    """A process we started, as pids.json records it."""

    name: str
    proc: subprocess.Popen
    marker: str


@dataclass(frozen=True)
class _Service:
    """The router or the proxy: `python -m <module> serve` with a health URL to wait for."""

    name: str
    module: str
    env_for: Callable[[str], dict]  # its environment, given its own URL
    health: str = "/healthz"


@dataclass
class Gateway:
    """One gateway process (all its workers behind one port) and its admin port."""

    id: str
    port: int
    admin_port: int
    proc: subprocess.Popen
    args: list[str]  # this gateway's own arguments, kept for a restart
    log_offset: int  # where its log stood when it was spawned: older lines are not its own

    @property
    def url(self) -> str:
        return gateway_url(self.id, self.port)

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/"


class LocalCluster:
    """The processes of one ClusterSpec under `run_dir`, its logs and its pids.json.

    `start()` (or `with`) brings up NATS, the gateways, the proxy and the router, and waits
    until the router lists every gateway worker as active; `stop()` ends them, NATS last.
    """

    attempts = 3  # starts on fresh ports before a process that will not come up is an error

    def __init__(
        self, spec: ClusterSpec, run_dir: Path, log: Callable[[str], None] | None = None
    ) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.keys = spec.keys
        self.log = log or (lambda _msg: None)
        self.procs: list[Proc] = []
        self.nats: list[natsproc.NatsServer] = []
        self.gateways: dict[str, Gateway] = {}
        self.api_url = ""
        self.proxy_url = ""
        self.env = dict(
            os.environ,
            COBROWSE_TOKEN_KEYS=self.keys.token_keys,
            COBROWSE_ADMIN_KEY=self.keys.admin_key,
            **spec.env,
        )
        self.gateway_env = self._nats_env(self.env, "gateway")

    def _nats_env(self, env: dict[str, str], user: str) -> dict[str, str]:
        """`env` with the NATS credentials and CA of `user`, in a secure cluster."""
        if self.spec.secure is None:
            return env
        return dict(env, **self.spec.secure.client_env(user))

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def nats_url(self) -> str:
        return self.spec.nats_url or natsproc.servers_url(self.nats)

    def pids(self) -> dict[str, int]:
        """The running record: each process's name and pid (as pids.json has them)."""
        return {p.name: p.proc.pid for p in self.procs}

    def log_text(self, name: str) -> str:
        """A process's log (`gw-1`, `router`, `proxy`)."""
        return (self.run_dir / f"{name}.log").read_text(errors="replace")

    def last_resort_reports(self) -> list[str]:
        """Every line of the run directory's logs (a restarted process keeps its log) where
        Python reported an exception nothing caught (gateway/logs.py): each is a bug."""
        found = []
        for path in sorted(self.run_dir.glob("*.log")):
            for line in logs.last_resort_lines(path.read_text(errors="replace")):
                found.append(f"{path.stem}: {line[:2000]}")
        return found

    # ---- bookkeeping ---------------------------------------------------------------------

    def _record(self, name: str, proc: subprocess.Popen, marker: str) -> None:
        self.procs = [p for p in self.procs if p.name != name or p.proc.poll() is None]
        self.procs.append(Proc(name, proc, marker))
        self._write_pids()

    def _write_pids(self) -> None:
        procs = [{"name": p.name, "pid": p.proc.pid, "marker": p.marker} for p in self.procs]
        write_json(self.run_dir / "pids.json", {"owner": os.getpid(), "procs": procs})

    def exited(self) -> list[Proc]:
        """The processes that have ended (a gateway drained or crashed, or a failure)."""
        return [p for p in self.procs if p.proc.poll() is not None]

    # ---- start ---------------------------------------------------------------------------

    def start(self) -> LocalCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec
        try:
            if spec.nats_url is None:
                self._start_nats()
            # Processes start two at a time (each takes seconds to import, on 2 cores): the
            # first gateway creates the stream and its buckets, alone among the processes
            # that use NATS so that no two race to create them, beside the proxy (no NATS);
            # then the other gateways and the router (it needs the proxy's URL).
            ids = [f"gw-{i + 1}" for i in range(spec.gateways)]
            self.proxy_url = self._start_together(ids[:1], self._proxy() if spec.proxy else None)
            self.api_url = self._start_together(ids[1:], self._router() if spec.router else None)
            if spec.router:
                self.log(f"gateways: {', '.join(self.gateways)}; router API at {self.api_url}")
                self.wait_members(spec.gateways * (spec.workers or 1))
        except BaseException:
            self.stop(grace=0)
            raise
        return self

    def _start_together(self, gids: list[str], service: _Service | None) -> str:
        """Gateways and a service spawned at once, then each awaited; the service's URL."""
        for gid in gids:
            self._spawn_gateway(gid, [])
        pending = self._spawn_service(service) if service else None
        for gid in gids:
            self._await_gateway(gid, [])
        return self._await_service(service, *pending) if service and pending else ""

    def _start_nats(self) -> None:
        if self.spec.nats_nodes > 1:
            self.nats = natsproc.start_cluster(
                self.run_dir / "nats", self.spec.nats_nodes, secure=self.spec.secure
            )
        else:
            self.nats = [natsproc.start_single(self.run_dir / "nats", secure=self.spec.secure)]
        for s in self.nats:
            assert s.proc is not None
            self._record(s.name, s.proc, NATS_MARKER)
        self.log(f"nats: {len(self.nats)} node(s) at {self.nats_url}")

    def _gateway_args(self) -> list[str]:
        spec, args = self.spec, []
        if spec.workers is not None:
            args += ["--workers", str(spec.workers)]
        if spec.drain_window is not None:
            args += ["--drain-window", f"{spec.drain_window:g}"]
        if spec.replicas is not None:
            args += ["--replicas", str(spec.replicas)]
        if spec.storage is not None:
            args += ["--storage", spec.storage]
        return [*args, *spec.gateway_args]

    def start_gateway(self, gid: str, args: list[str] | None = None) -> Gateway:
        """A gateway with the spec's arguments and then `args`, up and ready."""
        self._spawn_gateway(gid, list(args or []))
        return self._await_gateway(gid, list(args or []))

    def restart_gateway(self, gid: str) -> Gateway:
        """Start an ended gateway again on its ports (its URLs stay valid), without waiting:
        what its Deployment would do after a drain or a crash."""
        old = self.gateways[gid]
        return self._spawn_gateway(gid, old.args, old.port, old.admin_port)

    def _spawn_gateway(
        self, gid: str, args: list[str], port: int | None = None, admin_port: int | None = None
    ) -> Gateway:
        """Spawn, without waiting; on the given ports, else on fresh ones."""
        given = [*self._gateway_args(), *args]
        at = max((i for i, a in enumerate(given[:-1]) if a == "--workers"), default=None)
        workers = int(given[at + 1]) if at is not None else 1  # the last one counts
        port = port or natsproc.free_port()
        admin_port = admin_port or natsproc.free_port_run(1 + workers)
        log_path = self.run_dir / f"{gid}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        extra = ["--health-port", str(admin_port), "--public-url", gateway_url(gid, port)]
        extra += given
        proc = spawn_gateway(gid, port, self.nats_url, self.gateway_env, self.run_dir, extra)
        gw = self.gateways[gid] = Gateway(gid, port, admin_port, proc, args, offset)
        self._record(gid, proc, GATEWAY_MARKER)
        return gw

    def _gateway_ready(self, gw: Gateway) -> bool:
        """The gateway logs `gateway_ready` with its id once it has bound its port."""
        try:
            with open(self.run_dir / f"{gw.id}.log", "rb") as f:
                f.seek(gw.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return False
        return any(ready_line(line, gw.id) for line in text.splitlines())

    def _await_gateway(self, gid: str, args: list[str]) -> Gateway:
        for attempt in range(self.attempts):
            gw = self.gateways[gid]
            deadline = time.monotonic() + START_TIMEOUT
            while not self._gateway_ready(gw):
                if gw.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                return gw
            # A port taken between choosing and binding it, most likely: try fresh ports.
            _end(gw.proc)
            if attempt == self.attempts - 1:
                tail = self.log_text(gid)[-800:]
                raise RuntimeError(f"gateway {gid} did not start:\n{tail}")
            self._spawn_gateway(gid, args)
        raise AssertionError("unreachable")

    def _spawn_service(self, svc: _Service) -> tuple[subprocess.Popen, str]:
        port = natsproc.free_port()
        url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", svc.module, "serve", "--host", "127.0.0.1", "--port"]
        proc = natsproc.spawn_logged(
            [*args, str(port)], self.run_dir / f"{svc.name}.log", svc.env_for(url)
        )
        self._record(svc.name, proc, f"-m {svc.module} serve")
        return proc, url

    def _await_service(self, svc: _Service, proc: subprocess.Popen, url: str) -> str:
        """Until the service's health URL answers (fresh ports on failure); returns its URL."""
        for attempt in range(self.attempts):
            try:
                wait_healthy(url + svc.health, proc, timeout=START_TIMEOUT)
                return url
            except (RuntimeError, TimeoutError):
                _end(proc)
                if attempt == self.attempts - 1:
                    raise RuntimeError(f"{svc.name} did not start: see {svc.name}.log") from None
            proc, url = self._spawn_service(svc)
        raise AssertionError("unreachable")

    def _proxy(self) -> _Service:
        env = dict(
            self.env,
            COBROWSE_PROXY_KEYS=self.keys.proxy_keys,
            # Development only: test and demo pages are on loopback, which production refuses.
            COBROWSE_PROXY_ALLOW="127.0.0.1/32",
        )
        # Its public URL is its own address, known once its port is chosen.
        return _Service("proxy", "proxy", lambda url: dict(env, COBROWSE_PROXY_PUBLIC_URL=url))

    def _router(self) -> _Service:
        spec, keys = self.spec, self.keys
        env = dict(
            self._nats_env(self.env, "router"),
            COBROWSE_NATS_URL=self.nats_url,
            COBROWSE_SITE_KEYS=f"{keys.site_key}:{spec.tenant}",
            COBROWSE_AGENT_KEYS=f"{keys.agent_api_key}:{spec.tenant}",
        )
        if self.proxy_url:
            env["COBROWSE_PROXY_PUBLIC_URL"] = self.proxy_url
        if spec.storage is not None:
            env["COBROWSE_STREAM_STORAGE"] = spec.storage
        if spec.replicas is not None:
            env["COBROWSE_STREAM_REPLICAS"] = str(spec.replicas)
        env.update(spec.router_env)
        return _Service("router", "router", lambda _url: env, health="/readyz")

    def wait_members(self, n: int, timeout: float = 30.0) -> None:
        """Until the router lists n active gateway workers (they register by heartbeat)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, body = _http_json(
                    self.api_url + "/v1/cluster", self.keys.admin_key, timeout=2
                )
            except (OSError, ValueError):
                status, body = 0, {}
            active = [g for g in body.get("gateways", []) if g.get("state") == "active"]
            if status == 200 and len(active) >= n:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{n} gateways did not register within {timeout}s")

    # ---- faults --------------------------------------------------------------------------

    def gateway_id_for_url(self, url: str) -> str | None:
        for gid, g in self.gateways.items():
            if f":{g.port}/" in url or url.rstrip("/").endswith(f":{g.port}"):
                return gid
        return None

    def kill_gateway(self, gid: str) -> int:
        """SIGKILL, as a crash would; returns the pid."""
        proc = self.gateways[gid].proc
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        return proc.pid

    def drain_gateway(self, gid: str) -> int:
        """SIGTERM: the gateway drains its sessions (lame duck) and exits; returns the pid."""
        proc = self.gateways[gid].proc
        if proc.poll() is None:
            proc.terminate()
        return proc.pid

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
        """SIGKILL one NATS node; returns the pid."""
        for s in self.nats:
            if s.name == name:
                s.kill()
                assert s.proc is not None
                return s.proc.pid
        raise KeyError(name)

    # ---- stop ----------------------------------------------------------------------------

    def stop(self, grace: float = 8.0) -> None:
        """End every process we started: SIGTERM (a gateway drains; with no clients left it
        exits at once), SIGKILL what still runs after `grace` seconds (0: SIGKILL at once).
        NATS goes last: a draining gateway still needs it."""
        first = [p.proc for p in self.procs if p.marker != NATS_MARKER]
        last = [p.proc for p in self.procs if p.marker == NATS_MARKER]
        for group in (first, last):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM if grace > 0 else signal.SIGKILL)
            deadline = time.monotonic() + grace
            for proc in group:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _end(proc)
        (self.run_dir / "pids.json").unlink(missing_ok=True)


def ready_line(line: str, gid: str) -> bool:
    """Is `line` the `gateway_ready` event of gateway `gid` (not of one of its workers, whose
    ids are `gid.w<i>`), in either log format?"""
    return "gateway_ready" in line and (f"gateway='{gid}'" in line or f'"gateway": "{gid}"' in line)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
