"""`python -m loadtest run`: its options, the target they name, and the run from start to
exit code (the local cluster started and stopped, Ctrl-C and SIGTERM, the report written).

Against a local cluster everything is on loopback, and every process started is stopped at
the end, on error and on Ctrl-C too. The run itself is `harness.Harness`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from router.launcher import LocalCluster, end_leftovers

from . import report as rep
from . import scenarios
from .api import Target
from .harness import Harness


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
    p.add_argument(
        "--client",
        choices=("fast", "reference"),
        default="fast",
        help="fast: the load generator (one epoll reactor, loadtest/fastclient.py); reference: "
        "the trio reference client, gateway/client.py (costs several times more CPU per event)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local cluster: worker processes per gateway (1); a drain then drains them all",
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
    if a.workers < 1 or a.workers > 16:
        p.error("--workers must be 1..16")
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


EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


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
            spec.workers = opts.workers
            cluster = LocalCluster(spec, run_dir, log=lambda m: print("  " + m, flush=True))
            print(
                f"starting a local cluster in {run_dir}: {spec.gateways} gateways "
                f"of {spec.workers} worker(s), "
                f"{spec.nats_nodes} NATS node(s)",
                flush=True,
            )
            target = Target.of(cluster.start())
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
                if report is not None:  # the stop's own reports count too
                    rep.add_process_errors(report, cluster.last_resort_reports())
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
