"""`python -m loadtest run`: simulated visitors and agents against a cluster, verified.

The run, in order:

1. Target: a local cluster on loopback started here (`router.launcher`, shaped by the scenario),
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

import os
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
from .options import parse_args, resolve_target

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
