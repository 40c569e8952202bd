"""`python -m loadtest bench`: the floor and our path, measured side by side in one run.

Everything runs on loopback and is started here: nats-server (router.natsproc), gateway
processes (router.launcher.LocalCluster on that NATS, with a fresh token key), raw trio-websocket and
nats-py processes (loadtest.bench.floor) and the reference clients (loadtest.bench.path, the
visitors in one process and the agents in another). Every loop is bounded in count and
time; everything started is stopped by pid at the end. docs/bench.md explains each figure.

Sections of the result (printed as a table, written as JSON with --json):
  machine  core count, Python, when
  floor    raw trio-websocket one-way frames/s (100 B and 4 KiB), raw nats-py pub->sub msgs/s
  path     events/s visitor -> gateway -> JetStream -> gateway -> agent, 1 and several sessions
  latency  p50/p99 at 1,000 and 2,000 events/s in total
  memory   gateway RSS per idle connection, and raw trio-websocket's
  micro    codec, reorder buffer, token bucket
  workers  aggregate events/s: `--workers 1` vs `--workers 2` on one port
  browser  our snapshot and mutation encoder vs rrweb in one Chromium page (browser.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from router import natsproc
from router.launcher import ClusterSpec, DevKeys, LocalCluster

from . import browser, micro
from .procs import (
    Child,
    cpu_tree,
    nats_subscriptions,
    rss_tree,
    runq_wait_tree,
    scrape,
    stop_pid,
)
from .results import (
    COLUMN_NOTES,
    COLUMNS,
    MICRO_COLUMNS,
    exit_status,
    fmt_ratio,
    micro_rows,
    mono,
    ratio,
    table_rows,
    write_json,
)

GATEWAY_ADMISSION = [
    "--new-per-address",
    "1000000/minute",
    "--new-burst",
    "100000",
    "--new-rate",
    "100000",
]

# The bench measures what a gateway can carry: one session sends far above a page's budget.
NO_BUDGET = {
    "COBROWSE_BUDGET_EVENT_RATE": "1e9",
    "COBROWSE_BUDGET_EVENT_BURST": "1e9",
    "COBROWSE_BUDGET_BYTE_RATE": "1e12",
    "COBROWSE_BUDGET_BYTE_BURST": "1e12",
}


# ---- scale -------------------------------------------------------------------------------

FULL = {
    "ws_frames": 100_000,
    "ws_batched_frames": 10_000,
    "ws_batched_bytes": 4096,
    "nats_msgs": 200_000,
    "path_events": 30_000,
    "many_sessions": 4,
    "many_events": 30_000,  # in total over the sessions
    "latency_rates": [1000, 2000],
    "latency_sessions": 10,
    "latency_seconds": 10.0,
    "idle_conns": 500,  # half visitors, half agents
    "payload": 100,
}
QUICK = {
    "ws_frames": 8_000,
    "ws_batched_frames": 1_000,
    "ws_batched_bytes": 4096,
    "nats_msgs": 20_000,
    "path_events": 2_000,
    "many_sessions": 2,
    "many_events": 2_000,
    "latency_rates": [1000, 2000],
    "latency_sessions": 4,
    "latency_seconds": 1.0,
    "idle_conns": 40,
    "payload": 100,
}
LATENCY_TARGETS_MS = {2000: 50.0}
LOG_MARKER = ".bench-logs"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the run -------------------------------------------------------------------------------


class Bench:
    def __init__(self, scale: dict, log_dir: Path, workers_available: bool) -> None:
        self.s = scale
        self.log_dir = log_dir
        self.workers_available = workers_available
        self.children: list[Child] = []
        self.gateways: list[subprocess.Popen] = []
        self.metrics_port: dict[int, int] = {}  # gateway pid -> admin port
        self.nats: natsproc.NatsServer | None = None
        self.cluster: LocalCluster | None = None  # the gateways, on self.nats
        self.keys = f"bench-{secrets.token_hex(2)}:{secrets.token_urlsafe(32)}"
        self.env = dict(
            os.environ, COBROWSE_TOKEN_KEYS=self.keys, COBROWSE_DRAIN_WINDOW="1", **NO_BUDGET
        )
        self.py = sys.executable

    # -- process helpers

    def child(self, name: str, module: str, *args: Any) -> Child:
        c = Child(name, [self.py, "-m", module, *map(str, args)], self.log_dir, self.env)
        self.children.append(c)
        return c

    def finish(self, c: Child) -> None:
        c.stop()
        if c in self.children:
            self.children.remove(c)

    def start_gateway(self, gid: str, workers: int | None) -> tuple[str, int]:
        """A gateway process (all its workers ready) through the one launcher; its URL and
        pid. The launcher retries on fresh ports when one does not come up."""
        assert self.nats is not None
        if self.cluster is None:
            spec = ClusterSpec(
                gateways=0,
                workers=None,  # the gateway's own default unless `workers` says
                nats_url=self.nats.url,
                router=False,
                gateway_args=list(GATEWAY_ADMISSION),
                env=dict(NO_BUDGET, COBROWSE_DRAIN_WINDOW="1"),  # keys: from `keys`
                keys=dataclasses.replace(DevKeys.fresh(), token_keys=self.keys),
            )
            self.cluster = LocalCluster(spec, self.log_dir).start()
        gw = self.cluster.start_gateway(gid, ["--workers", str(workers)] if workers else [])
        self.gateways.append(gw.proc)
        self.metrics_port[gw.proc.pid] = gw.admin_port
        return gw.url, gw.proc.pid

    def stop_gateway(self, proc: subprocess.Popen) -> None:
        stop_pid(proc, 15)
        if proc in self.gateways:
            self.gateways.remove(proc)

    def cleanup(self) -> None:
        for c in list(self.children):
            try:
                c.stop(grace=2)
            except Exception as exc:  # keep stopping the rest
                log(f"stopping {c.name}: {exc!r}")
        if self.cluster is not None:
            try:
                self.cluster.stop(grace=2)
            except Exception as exc:
                log(f"stopping the gateways: {exc!r}")
        if self.nats is not None:
            self.nats.stop()

    # -- 1. the floor

    def floor_and_raw_memory(self) -> tuple[dict, dict]:
        s = self.s
        srv = self.child("ws-server", "loadtest.bench.floor", "ws-server")
        port = srv.read(20)["port"]
        log("trio-websocket floor")
        small = self._watched(
            srv.pid,
            lambda: self.child(
                "ws-client-small",
                "loadtest.bench.floor",
                "ws-client",
                "--port",
                port,
                "--frames",
                s["ws_frames"],
                "--size",
                s["payload"],
            ).read(120),
        )
        batched = self._watched(
            srv.pid,
            lambda: self.child(
                "ws-client-batched",
                "loadtest.bench.floor",
                "ws-client",
                "--port",
                port,
                "--frames",
                s["ws_batched_frames"],
                "--size",
                s["ws_batched_bytes"],
            ).read(120),
        )
        log("raw trio-websocket idle memory")
        raw_mem = self._idle_memory(
            srv.pid,
            lambda n, name: self.child(
                f"raw-{name}", "loadtest.bench.floor", "ws-idle", "--port", port, "--conns", n
            ),
        )
        self.finish(srv)
        return {"ws_small": small, "ws_batched": batched}, raw_mem

    @staticmethod
    def _watched(server_pid: int, fn) -> dict:
        """Run fn() and add the server process's CPU share and run-queue wait meanwhile."""
        c0, q0, t0 = cpu_tree(server_pid), runq_wait_tree(server_pid), mono()
        out = fn()
        wall = max(mono() - t0, 1e-6)
        out["server_cpu"] = round((cpu_tree(server_pid) - c0) / wall, 2)
        out["server_waiting"] = round((runq_wait_tree(server_pid) - q0) / wall, 2)
        return out

    def nats_floor(self) -> dict:
        log("nats-py floor")
        assert self.nats is not None
        c = self.child(
            "nats-raw",
            "loadtest.bench.floor",
            "nats",
            "--url",
            self.nats.url,
            "--msgs",
            self.s["nats_msgs"],
            "--size",
            self.s["payload"],
        )
        out = c.read(120)
        self.finish(c)
        return out

    # -- memory per idle connection

    def _idle_memory(self, pid: int, spawn) -> dict:
        """RSS delta of `pid`'s tree for `idle_conns` connections, after a small warm-up."""
        n = self.s["idle_conns"]
        warm = spawn(10, "idle-warmup")
        warm.read(60)
        self.finish(warm)
        time.sleep(0.5)
        subs = self._subs()
        before = rss_tree(pid)
        c = spawn(n, "idle")
        c.read(180)
        time.sleep(1.0)  # let the last handshakes' transient buffers go
        after = rss_tree(pid)
        subs_after = self._subs()
        self.finish(c)
        out = {
            "connections": n,
            "rss_before": before,
            "rss_after": after,
            "bytes_per_conn": round((after - before) / n, 1),
        }
        if subs is not None and subs_after is not None:
            out["nats_subscriptions_added"] = subs_after - subs
        return out

    def _subs(self) -> int | None:
        if self.nats is None:
            return None
        return nats_subscriptions(self.nats.monitor_port)

    def _gateway_idle(self, url: str, pid: int) -> dict:
        def spawn(n: int, name: str) -> Child:
            sids = _sids(max(1, n // 2), name)
            return self.child(
                f"gw-{name}", "loadtest.bench.path", "idle", "--url", url, "--sids", ",".join(sids)
            )

        return self._idle_memory(pid, spawn)

    # -- 2./3./6. our path

    def run_path(
        self,
        urls: list[str],
        gw_pid: int,
        sessions: int,
        *,
        events: int = 0,
        rate: float = 0.0,
        seconds: float = 0.0,
        name: str = "path",
    ) -> dict:
        """Visitors in one process, agents in another, through the gateway(s) at `urls`."""
        sids = _sids(sessions, name)
        url_args: list[Any] = []
        for u in urls:
            url_args += ["--url", u]
        common = [*url_args, "--sids", ",".join(sids), "--payload", self.s["payload"]]
        if rate:
            total = int(rate * seconds)
            send_args = ["--rate", rate, "--seconds", seconds]
        else:
            per = max(1, events // sessions)
            total = per * sessions
            send_args = ["--events", per]
        vis = self.child(f"{name}-visitors", "loadtest.bench.path", "visitors", *common, *send_args)
        vis.read(90)
        ags = self.child(
            f"{name}-agents", "loadtest.bench.path", "agents", *common, "--expect", total
        )
        ags.read(90)
        watched = {"gateway": gw_pid, "visitors": vis.pid, "agents": ags.pid}
        if self.nats is not None and self.nats.proc is not None:
            watched["nats"] = self.nats.proc.pid
        cpu0 = {k: cpu_tree(v) for k, v in watched.items()}
        rq0 = {k: runq_wait_tree(v) for k, v in watched.items()}
        m0 = scrape(self.metrics_port.get(gw_pid))
        w0 = mono()
        vis.say("go")
        got = ags.read(max(120.0, seconds + 60))
        cpu1 = {k: cpu_tree(v) for k, v in watched.items()}
        rq1 = {k: runq_wait_tree(v) for k, v in watched.items()}
        wall = max(mono() - w0, 1e-6)
        sent = vis.read(60)
        m1 = scrape(self.metrics_port.get(gw_pid))
        self.finish(ags)
        self.finish(vis)
        span = max(got["last"] - sent["start"], 1e-6)
        out = {
            "sessions": sessions,
            "events": total,
            "received": got["received"],
            "seconds": round(span, 3),
            "events_per_s": round(got["received"] / span, 1),
            "acked_per_s": round(total / max(sent["acked"] - sent["start"], 1e-6), 1),
            "p50_ms": got["p50_ms"],
            "p99_ms": got["p99_ms"],
            "max_ms": got["max_ms"],
            "gaps": got["gaps"],
            "duplicates": got["duplicates"],
            # Share of one core each process used while the events flowed.
            "cpu": {k: round((cpu1[k] - cpu0[k]) / wall, 2) for k in watched},
            # Share of the time each was ready to run but waited for a core.
            "runq_wait": {k: round((rq1[k] - rq0[k]) / wall, 2) for k in watched},
            # The gateway's own counters over the run (from its /metrics).
            "gateway_counters": {k: m1[k] - m0.get(k, 0.0) for k in m1},
        }
        if got["received"]:
            out["gateway_cpu_us_per_event"] = round(
                1e6 * (cpu1["gateway"] - cpu0["gateway"]) / got["received"], 1
            )
        counters = out["gateway_counters"]
        if counters.get("frames_out"):
            out["events_per_frame_out"] = round(counters["events_out"] / counters["frames_out"], 2)
        if counters.get("js_publish_count"):
            out["js_publish_mean_ms"] = round(
                1000 * counters["js_publish_seconds_sum"] / counters["js_publish_count"], 2
            )
        if got["received"] != total:
            out["error"] = f"received {got['received']} of {total}"
            log(f"{name}: {out['error']}")
        return out

    def run(self) -> dict:
        s = self.s
        doc: dict[str, Any] = {
            "machine": {
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "loadavg_start": _loadavg(),
            },
            "scale": s,
        }
        t0 = mono()
        log("micro-benchmarks")
        doc["micro"] = micro.run_all(s is QUICK)
        log("browser: our snapshot and mutations vs rrweb, in Chromium")
        doc["browser"] = browser.section(self, s is QUICK)

        floor, raw_mem = self.floor_and_raw_memory()
        self.nats = natsproc.start_single(self.log_dir / "nats")
        floor["nats"] = self.nats_floor()
        doc["floor"] = floor
        ws_rate = floor["ws_small"]["frames_per_s"]

        log("gateway (1 worker)")
        w1 = 1 if self.workers_available else None
        url, pid = self.start_gateway("gw-bench-1", w1)
        log("gateway idle memory")
        gw_mem = self._gateway_idle(url, pid)
        doc["memory"] = {
            "connections": s["idle_conns"],
            "gateway_bytes_per_conn": gw_mem["bytes_per_conn"],
            "raw_bytes_per_conn": raw_mem["bytes_per_conn"],
            "ratio_to_raw": _round(ratio(gw_mem["bytes_per_conn"], raw_mem["bytes_per_conn"])),
            "gateway": gw_mem,
            "raw": raw_mem,
            "note": "half visitors, half agents, each after hello/welcome and a snapshot",
        }

        log("our path, 1 session")
        one = self.run_path([url], pid, 1, events=s["path_events"], name="path1")
        one["ratio_to_ws_floor"] = _round(ratio(one["events_per_s"], ws_rate))
        log(f"our path, {s['many_sessions']} sessions")
        many = self.run_path([url], pid, s["many_sessions"], events=s["many_events"], name="pathN")
        many["ratio_to_ws_floor"] = _round(ratio(many["events_per_s"], ws_rate))
        doc["path"] = {
            "one_session": one,
            "many_sessions": many,
            "clients": "visitors in one process, agents in another, gateway in a third",
        }

        lat = []
        for r in s["latency_rates"]:
            log(f"latency at {r}/s")
            res = self.run_path(
                [url],
                pid,
                s["latency_sessions"],
                rate=r,
                seconds=s["latency_seconds"],
                name=f"lat{r}",
            )
            lat.append(
                {
                    "rate": r,
                    "sessions": s["latency_sessions"],
                    "seconds": s["latency_seconds"],
                    "events": res["events"],
                    "received": res["received"],
                    "p50_ms": res["p50_ms"],
                    "p99_ms": res["p99_ms"],
                    "max_ms": res["max_ms"],
                    "target_p99_ms": LATENCY_TARGETS_MS.get(r),
                    "cpu": res["cpu"],
                    "runq_wait": res["runq_wait"],
                    "gateway_cpu_us_per_event": res.get("gateway_cpu_us_per_event"),
                    "events_per_frame_out": res.get("events_per_frame_out"),
                    "js_publish_mean_ms": res.get("js_publish_mean_ms"),
                }
            )
        doc["latency"] = lat

        if self.workers_available:
            workers: dict[str, Any] = {"available": True, "one": many}
            self.stop_gateway(self._gateway_by_pid(pid))
            log("gateway --workers 2")
            url2, pid2 = self.start_gateway("gw-bench-2", 2)
            two = self.run_path(
                [url2], pid2, s["many_sessions"], events=s["many_events"], name="workers2"
            )
            workers["two"] = two
            workers["scaling"] = _round(ratio(two["events_per_s"], many["events_per_s"]))
            workers["note"] = (
                f"{s['many_sessions']} sessions; same visitor and agent processes; "
                f"{os.cpu_count()} cores shared with nats-server and the clients"
            )
            doc["workers"] = workers
        else:
            doc["workers"] = {"available": False, "note": "n/a (workers not available)"}

        doc["machine"]["loadavg_end"] = _loadavg()
        doc["targets"] = targets(doc)
        doc["elapsed_s"] = round(mono() - t0, 1)
        return doc

    def _gateway_by_pid(self, pid: int) -> subprocess.Popen:
        for g in self.gateways:
            if g.pid == pid:
                return g
        raise KeyError(pid)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def _sids(n: int, tag: str) -> list[str]:
    run = secrets.token_hex(3)
    return [f"bench-{tag}-{run}-{i}" for i in range(n)]


def targets(doc: dict) -> list[dict]:
    """The issue's targets, each with the measured value and whether it is met."""
    out = []
    one = doc.get("path", {}).get("one_session", {})
    out.append(
        {
            "name": "our path / trio-websocket floor",
            "target": ">= 0.5",
            "value": one.get("ratio_to_ws_floor"),
            "ok": _ok(one.get("ratio_to_ws_floor"), lambda v: v >= 0.5),
        }
    )
    for lat in doc.get("latency", []):
        if lat.get("target_p99_ms"):
            out.append(
                {
                    "name": f"p99 at {lat['rate']} ev/s (ms)",
                    "target": f"< {lat['target_p99_ms']:g}",
                    "value": lat.get("p99_ms"),
                    "ok": _ok(lat.get("p99_ms"), lambda v, t=lat["target_p99_ms"]: v < t),
                }
            )
    mr = doc.get("memory", {}).get("ratio_to_raw")
    out.append(
        {
            "name": "idle memory / raw trio-websocket",
            "target": "<= 1.3",
            "value": mr,
            "ok": _ok(mr, lambda v: v <= 1.3),
        }
    )
    return out


def _ok(v, pred) -> bool | None:
    return None if v is None else bool(pred(v))


# ---- output --------------------------------------------------------------------------------


# The printed tables' width: a terminal of 100 columns shows them without wrapping.
WIDTH = 100


def print_table(doc: dict, file=None) -> None:
    """The headline figures (each column explained above them), then the micro-benchmarks
    and the browser section in a second table."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=WIDTH, highlight=False)
    m = doc.get("machine", {})
    console.print(
        f"cobrowse bench: {m.get('cpu_count')} cores, Python {m.get('python')}, "
        f"{doc.get('elapsed_s', '?')} s\nload average {m.get('loadavg_start', '?')} at start, "
        f"{m.get('loadavg_end', '?')} at end (a high one: other work shared the cores)"
    )
    console.print("Columns:")
    for col, note in COLUMN_NOTES:
        console.print(f"  {col:<14}{note}")
    table = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for col in COLUMNS:
        just = "right" if col == "result" else "center" if col == "met" else "left"
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in table_rows(doc):
        table.add_row(*row)
    console.print(table)
    micro = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for col in MICRO_COLUMNS:
        micro.add_column(col, justify="right" if col == "result" else "left")  # type: ignore[arg-type]
    for row in micro_rows(doc) + [r[:3] for r in browser.table_rows(doc.get("browser"))]:
        micro.add_row(*row)
    console.print(micro)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loadtest bench",
        description="Raw trio-websocket and nats-py floors and our path, side by side.",
    )
    p.add_argument("--quick", action="store_true", help="small counts (for the test suite)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 even when a target is missed (default: exit 1, for CI)",
    )
    p.add_argument(
        "--log-dir",
        default=None,
        help="logs of every process started (default: beside --json, else bench/logs)",
    )
    a = p.parse_args(argv)
    log_dir = Path(a.log_dir) if a.log_dir else Path(a.json or "bench/x").parent / "logs"
    if (log_dir / LOG_MARKER).exists():  # ours from an earlier run: start clean
        shutil.rmtree(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / LOG_MARKER).write_text("logs of python -m loadtest bench; safe to delete\n")
    workers = True  # python -m gateway --workers N (SO_REUSEPORT) exists
    bench = Bench(QUICK if a.quick else FULL, log_dir, workers)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up as Ctrl-C does
    try:
        doc = bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            bench.cleanup()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    doc["logs"] = str(log_dir)
    print_table(doc)
    for t in doc["targets"]:
        if t["ok"] is not True:
            log(f"target missed: {t['name']} {t['target']} (measured {t['value']})")
    if a.json:
        path = write_json(a.json, doc)
        print(f"results written to {path}")
    one = doc["path"]["one_session"]
    print(
        f"our path: {one['events_per_s']:,.0f} ev/s = "
        f"{fmt_ratio(one['ratio_to_ws_floor'])} of the trio-websocket floor"
    )
    status = exit_status(doc["targets"], report_only=a.report_only)
    if status:
        log("a target was missed: exit 1 (--report-only exits 0)")
    return status


if __name__ == "__main__":
    sys.exit(main())
