"""`python -m router up` (what `make run` runs) starts a working cluster and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import trio

from gateway import logs, tokens
from gateway.client import Client
from router import natsproc
from router.launcher import ClusterSpec, LocalCluster, end_leftovers, wait_healthy, wait_until
from tests.support.procs import started


def _wait_for(path, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    raise TimeoutError("cluster.json not written")


async def exchange(info: dict) -> bytes:
    keyring = tokens.Keyring.parse(info["token_keys"])
    sid = "local-cluster-test"
    now = time.time()
    urls = [g["url"] for g in info["gateways"]]
    visitor = Client(
        urls[0], sid, tokens.mint(keyring, sid=sid, role="visitor", now=now, ttl=60), "visitor"
    )
    agent = Client(
        urls[1], sid, tokens.mint(keyring, sid=sid, role="agent", now=now, ttl=60), "agent"
    )
    async with trio.open_nursery() as n:
        await n.start(visitor.run)
        await visitor.send_snapshot(b"hello")
        await visitor.wait_acked(1)
        await n.start(agent.run)
        with trio.fail_after(10):
            got = await agent.events.receive()
        visitor.close()
        agent.close()
        n.cancel_scope.cancel()
    return got.payload["d"]


def _drain(admin_url: str, key: str) -> tuple[int, dict]:
    req = urllib.request.Request(
        admin_url + "admin/drain", method="POST", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _pids(run_dir) -> dict[str, int]:
    """pids.json: the launcher's own pid as owner, and each process it started."""
    data = json.loads((run_dir / "pids.json").read_text())
    return {p["name"]: p["pid"] for p in data["procs"]}


def _gateway_pid(run_dir, gid: str) -> int:
    return _pids(run_dir)[gid]


def _wait_restarted(run_dir, gw: dict, old_pid: int, launcher, timeout: float = 30.0) -> None:
    """Until the launcher has replaced the drained gateway and the new one is ready."""

    def restarted() -> bool:
        return _gateway_pid(run_dir, gw["id"]) != old_pid

    wait_until(restarted, launcher, timeout, f"{gw['id']} was not started again")
    wait_healthy(gw["admin"] + "readyz", launcher, timeout)


def _nats_info(url: str) -> dict:
    """The INFO a NATS server sends first (in plain text, also when it requires TLS)."""
    host, port = url.removeprefix("nats://").split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        line = sock.makefile("rb").readline()
    assert line.startswith(b"INFO "), line
    return json.loads(line[5:])


def test_router_up_runs_a_cluster_and_recovers_after_a_crash(tmp_path):
    """Its second run is `--secure`: everything below also goes through NATS with TLS and a
    user per component (the gateways' events and drain, the router's API and status). It
    starts with SIGINT ignored, as bash starts a script's background jobs."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "router", "up", "--run-dir", str(run_dir)]
    crashed = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(run_dir / "cluster.json", crashed)
    leftover_pids = list(_pids(run_dir).values())
    assert {"nats-0", "gw-1", "gw-2", "router", "proxy"} <= set(_pids(run_dir))
    crashed.kill()  # the launcher dies; its children are left running
    crashed.wait(10)
    (run_dir / "cluster.json").unlink()

    # Started with SIGINT ignored, as a script's `make run &` starts it: Ctrl-C still stops it.
    proc = subprocess.Popen(
        [*cmd, "--secure"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        info = _wait_for(run_dir / "cluster.json", proc)
        assert not any(natsproc.pid_alive(p) for p in leftover_pids), "leftovers of the crashed run"
        assert len(info["gateways"]) == 2
        # Each gateway advertises its own URL with a production pod's path (/gw/<id>/), and
        # the exchange below goes through those paths.
        assert [urlsplit(g["url"]).path for g in info["gateways"]] == [
            f"/gw/{g['id']}/" for g in info["gateways"]
        ]
        server = _nats_info(info["nats"]["url"])
        assert server["tls_required"] and server["auth_required"]
        assert set(info["nats"]["users"]) == {"gateway", "router"}
        assert trio.run(exchange, info) == b"hello"
        # the browser side: the proxy answers, and the demo page carries the snippet tag
        with urllib.request.urlopen(info["proxy"]["url"] + "/healthz", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(info["demo"], timeout=5) as r:
            demo = r.read().decode()
        assert f'data-site-key="{info["site_key"]}"' in demo and "/cobrowse.js" in demo
        for path, marker in (
            ("/cobrowse.js", b"Cobrowse"),
            ("/demo.js", b"Cobrowse.start"),
            ("/demo.css", b".cta"),
        ):
            with urllib.request.urlopen(info["api"]["url"] + path, timeout=5) as r:
                assert marker in r.read(), path
        assert info["embed"].startswith(info["api"]["url"] + "/embed#key=")
        # The router's /metrics (issue 16): requests by route template, its build.
        with urllib.request.urlopen(info["api"]["url"] + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'cobrowse_router_requests_total{route="/cobrowse.js",status="200"}' in metrics
        assert 'cobrowse_build_info{component="router",version="' in metrics
        assert "process_cpu_seconds_total " in metrics
        # The gateways take the admin key it prints: a drain through the admin port works,
        # and the launcher starts the drained gateway again, as its Deployment would.
        gw2 = info["gateways"][1]
        assert _drain(gw2["admin"], "wrong-key-wrong-key")[0] == 401
        before = _gateway_pid(run_dir, gw2["id"])
        status, body = _drain(gw2["admin"], info["admin_key"])
        assert status == 202, body
        _wait_restarted(run_dir, gw2, before, proc)
        assert trio.run(exchange, info) == b"hello"
        # The operator's CLI finds the router's credentials in cluster.json.
        status = subprocess.run(
            [sys.executable, "-m", "router", "status", "--nats", info["nats"]["url"]],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COBROWSE_NATS_USER": "router",
                 "COBROWSE_NATS_PASSWORD_FILE": info["nats"]["users"]["router"],
                 "COBROWSE_NATS_TLS_CA": info["nats"]["tls_ca"]},
        )  # fmt: skip
        assert status.returncode == 0 and "gw-1" in status.stdout, status.stderr
        children = list(_pids(run_dir).values())
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "cobrowse local cluster is up" in out
    assert not any(natsproc.pid_alive(p) for p in children)
    # One format per process (development: key=value), Hypercorn's lines and the ready
    # lines included; the router logs each request with its route (issue 16).
    for name in ("router", "proxy", "gw-1"):
        lines = (run_dir / f"{name}.log").read_text().splitlines()
        bad = [line for line in lines if not line.startswith("timestamp='")]
        # Python's last-resort reports are lines in the format too (gateway/logs.py), and
        # none may appear: each is a bug (an uncaught exception, one in a finalizer or thread).
        bad += logs.last_resort_lines("\n".join(lines))
        assert lines and not bad, f"{name}.log:\n" + "\n".join(bad[:5] + lines[-80:])
    router_log = (run_dir / "router.log").read_text()
    assert "event='http_request' method='GET' route='/cobrowse.js'" in router_log
    assert "logger='hypercorn.error'" in router_log


def test_leftovers_of_a_dead_launcher_in_its_run_dir_are_ended_by_command_line(tmp_path):
    """`make run`'s layout: pids.json in the run directory itself. Only processes whose
    command line still holds their marker are signalled: a reused pid is left alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = started(["sleep", "60"])
    reused = started(["sleep", "61"])  # a pid the recorded gateway once had
    try:
        procs = [
            {"name": "nats-0", "pid": orphan.pid, "marker": "sleep"},
            {"name": "gw-1", "pid": reused.pid, "marker": "-m gateway"},
        ]
        (tmp_path / "pids.json").write_text(json.dumps({"owner": dead.pid, "procs": procs}))
        assert end_leftovers(tmp_path) == [orphan.pid]
        assert orphan.wait(5) == -9
        assert reused.poll() is None
        assert not (tmp_path / "pids.json").exists()
        (tmp_path / "pids.json").write_text('[{"pid": 1, "marker": "init"}]')  # not the format
        assert end_leftovers(tmp_path) == []
    finally:
        for proc in (orphan, reused):
            proc.kill()
            proc.wait()


def test_a_cluster_that_cannot_start_leaves_no_process_and_no_record(tmp_path):
    """A gateway that refuses its arguments fails the start (after one try here; 3 by default), and the NATS
    already started is ended with it."""
    spec = ClusterSpec(gateways=1, router=False, gateway_args=["--no-such-option"])
    cluster = LocalCluster(spec, tmp_path)
    cluster.attempts = 1
    with pytest.raises(RuntimeError, match="gateway gw-1 did not start"):
        cluster.start()
    assert {"nats-0", "gw-1"} <= set(cluster.pids())
    assert not any(natsproc.pid_alive(pid) for pid in cluster.pids().values())
    assert not (tmp_path / "pids.json").exists()


def test_the_last_resort_reports_of_every_log_in_the_run_directory(tmp_path):
    """What the tests and the load harness read to fail on a hidden crash: each log's
    uncaught, unraisable and thread exceptions (either format), named by the log."""
    (tmp_path / "gw-1.log").write_text(
        "timestamp='t' level='info' event='gateway_ready'\n"
        "timestamp='t' level='error' event='unraisable_exception' object='<X>'\n"
    )
    (tmp_path / "router.log").write_text('{"event": "uncaught_exception", "level": "critical"}\n')
    (tmp_path / "proxy.log").write_text("timestamp='t' level='info' event='thread_exception_x'\n")
    local = LocalCluster(ClusterSpec(gateways=0), tmp_path)
    assert local.last_resort_reports() == [
        "gw-1: timestamp='t' level='error' event='unraisable_exception' object='<X>'",
        'router: {"event": "uncaught_exception", "level": "critical"}',
    ]
