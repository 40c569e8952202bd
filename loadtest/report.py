"""What a load-test run reports: the time line, the gateways' metrics, the JSON report, the
PNG plot, the Markdown summary, and the terminal's live progress and final table.

Nothing here does network I/O: the harness scrapes, this parses and renders.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from .verifier import LATENCY_MAX_US, Verifier, percentiles_ms, record_latency, record_many

# ---- time line ----------------------------------------------------------------------------


def _second_histogram() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, 2)  # two digits: small enough to keep one a second


@dataclass
class Mark:
    t: float  # seconds since the load started
    label: str


@dataclass
class Timeline:
    """Per-second counts and latency since `t0` (wall clock), plus marked moments."""

    t0: float
    sent: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    _latency: list[HdrHistogram | None] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # connections over time
    marks: list[Mark] = field(default_factory=list)
    # Latencies (us) not yet folded into their second's histogram, by second.
    _pending: dict[int, list[int]] = field(default_factory=dict)
    _last: tuple[float, float, int] = (0.0, 0.0, -1)  # [from, to) of the last slot, its index

    def slot(self, now: float) -> int:
        """The index of the second `now` (wall clock) falls in."""
        return self._slot(now)

    def _slot(self, now: float) -> int:
        lo, hi, i = self._last
        if lo <= now < hi:
            return i
        i = max(0, int(now - self.t0))
        while len(self.sent) <= i:
            self.sent.append(0)
            self.delivered.append(0)
            self._latency.append(None)
        if now >= self.t0:
            self._last = (self.t0 + i, self.t0 + i + 1, i)
        return i

    def on_sent(self, now: float, n: int = 1) -> None:
        self.sent[self._slot(now)] += n

    def on_delivered(self, now: float, latency: float | None) -> None:
        i = self._slot(now)
        self.delivered[i] += 1
        if latency is not None:
            h = self._latency[i]
            if h is None:
                h = self._latency[i] = _second_histogram()
            record_latency(h, latency)

    def add_deliveries(self, now: float, n: int) -> None:
        """`n` events delivered at `now` (their latencies come by `add_latencies`)."""
        self.delivered[self._slot(now)] += n

    def add_latencies(self, now: float, us) -> None:
        """Latencies (microseconds) of events delivered around `now`, folded into that
        second's histogram later (`flush`, which every reader of `latency` calls)."""
        i = self._slot(now)
        pending = self._pending.get(i)
        if pending is None:
            self._pending[i] = list(us)
        else:
            pending.extend(us)

    def flush(self) -> None:
        """Fold the pending latencies into their seconds' histograms."""
        pending, self._pending = self._pending, {}
        for i, us in pending.items():
            if us:
                h = self._latency[i]
                if h is None:
                    h = self._latency[i] = _second_histogram()
                record_many(h, us)

    @property
    def latency(self) -> list[HdrHistogram | None]:
        """One histogram per second (None: nothing recorded in that second)."""
        if self._pending:
            self.flush()
        return self._latency

    def sample(self, now: float, connected: int, gateways: dict[str, int], **extra: Any) -> None:
        self.samples.append(
            {
                "t": round(now - self.t0, 2),
                "connected": connected,
                "gateways": dict(gateways),
                **extra,
            }
        )

    def mark(self, now: float, label: str) -> Mark:
        m = Mark(round(now - self.t0, 2), label)
        self.marks.append(m)
        return m

    def rates(self, now: float, window: int = 3) -> tuple[float, float]:
        """Events sent and delivered per second over the last whole seconds."""
        i = self._slot(now)
        lo = max(0, i - window)
        span = max(1, i - lo)
        return sum(self.sent[lo:i]) / span, sum(self.delivered[lo:i]) / span

    def latency_between(self, start: float, end: float) -> dict[str, Any]:
        """p50/p99/max (ms) and count of the latencies recorded from `start` to `end`
        seconds (whole seconds; two significant digits)."""
        merged = _second_histogram()
        for h in self.latency[max(0, int(start)) : max(0, int(end))]:
            if h is not None:
                merged.add(h)
        out = percentiles_ms(merged)
        out["events"] = merged.get_total_count()
        return out

    def phases(self, ramp_end: float | None, end: float) -> dict[str, dict[str, Any]]:
        """Latency in each phase: the ramp, before the scenario's first mark, after it."""
        cuts: list[tuple[str, float, float]] = []
        start = 0.0
        if ramp_end is not None and ramp_end > 0:
            cuts.append(("ramp", 0.0, ramp_end))
            start = ramp_end
        if self.marks:
            at = max(start, self.marks[0].t)
            cuts += [("before_event", start, at), ("after_event", at, end)]
        else:
            cuts.append(("load", start, end))
        return {name: self.latency_between(a, b) for name, a, b in cuts if b > a}

    def series(self) -> dict[str, list]:
        p50, p99 = [], []
        for h in self.latency:
            if h is None or h.get_total_count() == 0:
                p50.append(None)
                p99.append(None)
            else:
                p50.append(round(h.get_value_at_percentile(50) / 1000, 2))
                p99.append(round(h.get_value_at_percentile(99) / 1000, 2))
        return {
            "t": list(range(len(self.sent))),
            "sent_per_s": list(self.sent),
            "delivered_per_s": list(self.delivered),
            "p50_ms": p50,
            "p99_ms": p99,
        }


# ---- gateway metrics ----------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

# report name -> (Prometheus sample name, label that splits it, or None)
GATEWAY_FIGURES: dict[str, tuple[str, str | None]] = {
    "events_in": ("cobrowse_gateway_events_in_total", "role"),
    "events_out": ("cobrowse_gateway_events_out_total", "role"),
    "admission": ("cobrowse_gateway_admission_total", "lane"),
    "connects": ("cobrowse_gateway_connects_total", "resumed"),
    "closes": ("cobrowse_gateway_closes_total", "code"),
    "protocol_errors": ("cobrowse_gateway_protocol_errors_total", "code"),
    "publish_retries": ("cobrowse_gateway_js_publish_retries_total", None),
    "publish_failed": ("cobrowse_gateway_js_publish_failed_total", None),
    "drain_notices": ("cobrowse_gateway_drain_notices_total", None),
    "gap_fills": ("cobrowse_gateway_gap_fills_total", None),
    "reorder_waits": ("cobrowse_gateway_reorder_waits_total", None),
    "snapshot_requests": ("cobrowse_gateway_snapshot_requests_total", None),
    "cpu_seconds": ("process_cpu_seconds_total", None),  # absent behind a multi-worker supervisor
}


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text format: (name, labels, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, value))
    return out


def gateway_figures(text: str) -> dict[str, Any]:
    """The gateway-side figures the report shows, from one /metrics scrape."""
    samples = parse_prometheus(text)
    out: dict[str, Any] = {}
    for key, (name, label) in GATEWAY_FIGURES.items():
        if label is None:
            out[key] = sum(v for n, _, v in samples if n == name)
        else:
            split: dict[str, float] = {}
            for n, labels, v in samples:
                if n == name:
                    k = labels.get(label, "")
                    split[k] = split.get(k, 0.0) + v
            out[key] = split
    return out


def sum_figures(per_gateway: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for figs in per_gateway:
        for key, value in figs.items():
            if isinstance(value, dict):
                d = total.setdefault(key, {})
                for k, v in value.items():
                    d[k] = d.get(k, 0.0) + v
            else:
                total[key] = total.get(key, 0.0) + value
    return total


# ---- the report ---------------------------------------------------------------------------


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p99/max of seconds, in milliseconds (nearest-rank)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    s = sorted(values)

    def rank(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))] * scale, 1)

    return {"p50": rank(50), "p99": rank(99), "max": round(s[-1] * scale, 1)}


def run_config(opts: Any, target_url: str | None, cluster: Any = None) -> dict[str, Any]:
    """The report's `config`: the options of the run (`opts`, the CLI's namespace), its
    target (None: the local cluster) and, when local, the cluster's shape (a ClusterSpec)."""
    config: dict[str, Any] = {
        "scenario": opts.scenario,
        "sessions": opts.sessions,
        "agents_per_session": opts.agents_per_session,
        "rate": opts.rate,
        "duration": opts.duration,
        "seed": opts.seed,
        "ramp": opts.ramp,
        "settle_max": opts.settle,
        "target": target_url or "local cluster",
    }
    if cluster is not None:
        config["local_cluster"] = {
            "gateways": cluster.gateways,
            "nats_nodes": cluster.nats_nodes,
            "replicas": cluster.replicas,
            "storage": cluster.storage,
            "drain_window": cluster.drain_window,
            "gateway_args": cluster.gateway_args,
        }
    return config


def harness_load(
    cpu_percent: list[float], loop_lag_max: float, reactor_turns: int | None
) -> dict[str, Any]:
    """How busy the harness itself was (a saturated harness makes its latencies mean little):
    the median and highest of its per-second CPU samples, its worst event-loop lag (seconds
    in, ms out), and the load generator's turns."""
    cpu = percentiles(cpu_percent, scale=1.0)
    out: dict[str, Any] = {
        "cpu_percent_p50": cpu["p50"],
        "cpu_percent_max": cpu["max"],
        "loop_lag_max_ms": round(loop_lag_max * 1000, 1),
    }
    if reactor_turns is not None:
        out["reactor_turns"] = reactor_turns
    return out


def build_report(
    *,
    scenario: str,
    config: dict[str, Any],
    verifier: Verifier,
    timeline: Timeline,
    sessions_started: int,
    sessions_failed: int,
    extra_sessions: int = 0,
    client_errors: list[str] | None = None,
    epoch_restarts: int = 0,
    settle: dict[str, Any] | None = None,
    gateways: dict[str, dict[str, Any]] | None = None,
    scenario_details: dict[str, Any] | None = None,
    ramp_end: float | None = None,
    cpu: dict[str, Any] | None = None,
) -> dict[str, Any]:
    v = verifier.totals("v")
    a = verifier.totals("a")
    c = verifier.clients
    lost = v["lost"] + a["lost"]
    dup = v["duplicated"] + a["duplicated"]
    reordered = v["reordered"] + a["reordered"]
    errors = list(client_errors or [])
    gateways = gateways or {}
    report: dict[str, Any] = {
        "scenario": scenario,
        "ok": lost == dup == reordered == 0 and not errors and sessions_failed == 0,
        "sessions": sessions_started,
        "sessions_requested": config.get("sessions"),
        "sessions_failed": sessions_failed,
        "extra_sessions": extra_sessions,
        "agents_per_session": config.get("agents_per_session"),
        "events_sent": v["sent"],
        "events_acked": v["acked"],
        "events_delivered": v["delivered"],
        "events_expected": v["expected"],
        "lost": lost,
        "duplicated": dup,
        "reordered": reordered,
        "latency_ms": percentiles_ms(verifier.latency["v"], (50, 90, 99, 99.9)),
        "latency_by_phase_ms": timeline.phases(ramp_end, len(timeline.sent)),
        "agent_events": a,
        "agent_latency_ms": percentiles_ms(verifier.latency["a"]),
        "by_direction": {"visitor_to_agents": v, "agents_to_visitor": a},
        "resumed": c.resumed,
        "resume_ms": percentiles(c.resume_times),
        "notice_to_resumed_ms": percentiles(c.notice_times),
        "reconnect_notices": c.reconnect_notices,
        "connects": c.connects,
        "clients": c.clients,
        "rejected_new": c.rejected_new,
        "rejected_resume": c.rejected_resume,
        "client_duplicates_dropped": c.duplicates_dropped,
        "client_gaps": c.gaps,
        "resets": verifier.resets,
        "epoch_restarts": epoch_restarts,
        "client_errors": len(errors),
        "client_error_samples": errors[:20],
        "settle": settle or {},
        "marks": [{"t": m.t, "label": m.label} for m in timeline.marks],
        "scenario_details": scenario_details or {},
        "cpu": cpu or {},
        "gateway_metrics": {
            "totals": sum_figures(gateways.values()),
            "gateways": gateways,
        },
        "config": config,
        "timeline": timeline.series(),
        "connections": timeline.samples,
        "problems": verifier.problems(),
    }
    return report


def add_process_errors(report: dict[str, Any], lines: list[str]) -> None:
    """The local cluster's logged exceptions that nothing caught (Python's last-resort
    reports, gateway/logs.py): each is a bug in a process under test, so the run fails."""
    report["process_errors"] = len(lines)
    report["process_error_samples"] = lines[:5]
    if lines:
        report["ok"] = False


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Throughput, latency and connections per gateway over time; marks as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = report["timeline"]
    conns = report.get("connections") or []
    rows = 3 if conns else 2
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3 * rows), sharex=True)
    ax = axes[0]
    ax.plot(tl["t"], tl["sent_per_s"], label="sent/s (visitors)", lw=1)
    ax.plot(tl["t"], tl["delivered_per_s"], label="delivered/s (to agents)", lw=1)
    ax.set_ylabel("events / s")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(
        f"cobrowse load test: {report['scenario']}, {report['sessions']} sessions, "
        f"{'PASS' if report['ok'] else 'FAIL'}"
    )
    ax = axes[1]
    pts50 = [(t, y) for t, y in zip(tl["t"], tl["p50_ms"], strict=True) if y is not None]
    pts99 = [(t, y) for t, y in zip(tl["t"], tl["p99_ms"], strict=True) if y is not None]
    if pts50:
        ax.plot(*zip(*pts50, strict=True), label="p50 latency", lw=1)
    if pts99:
        ax.plot(*zip(*pts99, strict=True), label="p99 latency", lw=1)
        ax.set_yscale("log")
    ax.set_ylabel("visitor -> agent ms")
    ax.legend(loc="upper left", fontsize=8)
    if conns:
        ax = axes[2]
        names = sorted({g for s in conns for g in s["gateways"]})
        ts = [s["t"] for s in conns]
        for g in names:
            ax.plot(ts, [s["gateways"].get(g, 0) for s in conns], label=g, lw=1)
        ax.set_ylabel("connections")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("seconds since start")
    for m in report.get("marks", []):
        for ax in axes:
            ax.axvline(m["t"], color="red", ls="--", lw=1)
        axes[0].annotate(
            m["label"],
            (m["t"], 1),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            color="red",
            va="top",
            ha="left",
            rotation=90,
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    lat, res, note = report["latency_ms"], report["resume_ms"], report["notice_to_resumed_ms"]
    gm = report.get("gateway_metrics", {}).get("totals", {})
    rows = [
        ("scenario", report["scenario"]),
        (
            "sessions",
            f"{report['sessions']} started of {_fmt(report['sessions_requested'])}"
            + (
                f" (+{report['extra_sessions']} during the storm)"
                if report["extra_sessions"]
                else ""
            )
            + (f", {report['sessions_failed']} failed" if report["sessions_failed"] else ""),
        ),
        (
            "events visitor -> agents",
            f"{report['events_sent']} sent, {report['events_acked']} acked, "
            f"{report['events_delivered']} delivered",
        ),
        (
            "events agents -> visitor",
            f"{report['agent_events']['sent']} sent, {report['agent_events']['delivered']} delivered",
        ),
        (
            "lost / duplicated / reordered",
            f"{report['lost']} / {report['duplicated']} / {report['reordered']}",
        ),
        (
            "latency visitor -> agent",
            f"p50 {_fmt(lat['p50'])} ms, p99 {_fmt(lat['p99'])} ms, max {_fmt(lat['max'])} ms",
        ),
        *[
            (
                f"  {name.replace('_', ' ')} ({ph['events']} events)",
                f"p50 {_fmt(ph['p50'])} ms, p99 {_fmt(ph['p99'])} ms, max {_fmt(ph['max'])} ms",
            )
            for name, ph in report.get("latency_by_phase_ms", {}).items()
            if ph["events"]
        ],
        (
            "resumed",
            f"{report['resumed']} (disconnect -> resumed p50 {_fmt(res['p50'])} ms, "
            f"p99 {_fmt(res['p99'])} ms)",
        ),
        (
            "reconnect notices",
            f"{report['reconnect_notices']} (notice -> resumed p50 {_fmt(note['p50'])} ms, "
            f"p99 {_fmt(note['p99'])} ms)",
        ),
        ("rejected (new / resume)", f"{report['rejected_new']} / {report['rejected_resume']}"),
    ]
    if not gm:
        rows.append(("gateways", "no metrics (no admin_url in /v1/cluster, or not reachable)"))
    else:
        rows.append(
            (
                "gateways",
                f"events in {_fmt(sum(gm.get('events_in', {}).values()))}, "
                f"out {_fmt(sum(gm.get('events_out', {}).values()))}, "
                f"publish retries {_fmt(gm.get('publish_retries'))}, "
                f"drain notices {_fmt(gm.get('drain_notices'))}",
            )
        )
        adm = gm.get("admission", {})
        if adm:
            rows.append(
                ("admission by lane", ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(adm.items())))
            )
    ack = report.get("scenario_details", {}).get("ack_latency_ms", {}).get("visitor")
    if ack and ack.get("p50") is not None:
        rows.append(
            (
                "visitor send -> ack (durable)",
                f"p50 {_fmt(ack['p50'])} ms, p99 {_fmt(ack['p99'])} ms, max {_fmt(ack['max'])} ms",
            )
        )
    for m in report.get("marks", []):
        rows.append((f"at {m['t']:g} s", m["label"]))
    rows += cpu_rows(report.get("cpu") or {})
    storm = report.get("scenario_details", {}).get("flood")
    if storm:
        rows.append(
            (
                "new-session flood",
                f"{storm['attempts']} handshakes: {storm['admitted']} admitted, "
                f"{storm['rejected_429']} got 429, {storm['rejected_503']} got 503",
            )
        )
    if report["client_errors"]:
        rows.append(("client errors", str(report["client_errors"])))
    if report.get("process_errors"):
        rows.append(
            (
                "process errors",
                f"{report['process_errors']} uncaught exception(s) in the cluster's logs, "
                f"first: {report['process_error_samples'][0][:300]}",
            )
        )
    if report.get("settle") and not report["settle"].get("complete", True):
        rows.append(("settle", f"timed out after {report['settle'].get('seconds')} s"))
    rows.append(("result", "PASS" if report["ok"] else "FAIL"))
    return rows


def cpu_rows(cpu: dict[str, Any]) -> list[tuple[str, str]]:
    """The harness's and the gateways' CPU per event, side by side, and whether to trust them."""
    if not cpu:
        return []
    rows = []
    if cpu.get("events") is not None:
        gw = cpu.get("gateways_us_per_event")
        rows.append(
            (
                "CPU per delivered event",
                f"harness ({cpu.get('client')} client) {_fmt(cpu.get('harness_us_per_event'))} us, "
                f"gateways {_fmt(gw)} us"
                + (f" ({cpu.get('gateway_source')})" if gw is not None else " (unknown)")
                + (
                    f", NATS {_fmt(cpu['nats_us_per_event'])} us"
                    if cpu.get("nats_us_per_event") is not None
                    else ""
                )
                + f", ratio {_fmt(cpu.get('harness_to_gateways'))}"
                + (
                    f" ({_fmt(cpu['harness_to_gateways_and_nats'])} of gateways + NATS)"
                    if cpu.get("harness_to_gateways_and_nats") is not None
                    else ""
                )
                + f"; {cpu['events']} events in {_fmt(cpu.get('window_s'))} s, both directions",
            )
        )
    rows.append(("measured", cpu.get("verdict", "-")))
    return rows


def write_markdown(report: dict[str, Any], path: Path, plot_name: str | None) -> None:
    cfg = report["config"]
    lines = [
        f"# Load test: {report['scenario']} - {'PASS' if report['ok'] else 'FAIL'}",
        "",
        f"{cfg.get('sessions')} sessions x {cfg.get('agents_per_session')} agent(s), "
        f"{cfg.get('rate')} events/s per session, {cfg.get('duration')} s, seed {cfg.get('seed')}, "
        f"target {cfg.get('target')}.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(report)]
    gm = report.get("gateway_metrics", {}).get("gateways", {})
    if gm:
        lines += [
            "",
            "## Gateways",
            "",
            "| gateway | events in | events out | publish retries | drain notices | admission |",
            "|---|---|---|---|---|---|",
        ]
        for gid, f in sorted(gm.items()):
            adm = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(f.get("admission", {}).items()))
            lines.append(
                f"| {gid} | {_fmt(sum(f.get('events_in', {}).values()))} "
                f"| {_fmt(sum(f.get('events_out', {}).values()))} "
                f"| {_fmt(f.get('publish_retries'))} | {_fmt(f.get('drain_notices'))} | {adm} |"
            )
    if report.get("problems"):
        lines += ["", "## Streams with problems (first 20)", ""]
        lines += [
            "| session | direction | sender | receiver | lost | duplicated | reordered |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in report["problems"]:
            lines.append(
                f"| {p['session']} | {p['direction']} | {p['sender']} | {p['receiver']} "
                f"| {p['lost']} | {p['duplicated']} | {p['reordered']} |"
            )
    if plot_name:
        lines += ["", f"![latency and throughput]({plot_name})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_report_dir(report: dict[str, Any], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "report.json",
        "png": directory / "report.png",
        "md": directory / "summary.md",
    }
    write_json(report, paths["json"])
    write_plot(report, paths["png"])
    write_markdown(report, paths["md"], paths["png"].name)
    return paths


# ---- terminal -----------------------------------------------------------------------------


def progress_line(p: dict[str, Any]) -> str:
    p99 = p.get("p99_ms")
    return (
        f"[{p['elapsed']:6.1f}s {p['phase']:<8}] sessions {p['connected']}/{p['sessions']} "
        f"sent/s {p['sent_rate']:.0f} delivered/s {p['delivered_rate']:.0f} "
        f"p99 {'-' if p99 is None else f'{p99:g}'} ms reconnects {p['reconnects']} "
        f"rejected {p['rejected']}" + (f" | {p['last_mark']}" if p.get("last_mark") else "")
    )


def progress_table(p: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"cobrowse load test: {p['scenario']}", show_header=False, min_width=60)
    t.add_column(style="bold")
    t.add_column()
    p99 = p.get("p99_ms")
    t.add_row("elapsed", f"{p['elapsed']:.1f} s of {p['duration']:g} s ({p['phase']})")
    t.add_row("sessions connected", f"{p['connected']} / {p['sessions']}")
    t.add_row("events sent / s", f"{p['sent_rate']:.0f}  (total {p['sent']})")
    t.add_row("events delivered / s", f"{p['delivered_rate']:.0f}  (total {p['delivered']})")
    t.add_row("p99 latency so far", "-" if p99 is None else f"{p99:g} ms")
    t.add_row("reconnects", str(p["reconnects"]))
    t.add_row("rejected handshakes", str(p["rejected"]))
    if p.get("last_mark"):
        t.add_row("event", p["last_mark"])
    return t


def summary_table(report: dict[str, Any]):
    from rich.table import Table

    t = Table(title="load test summary", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in summary_rows(report):
        if k == "result":
            v = f"[bold green]{v}[/]" if report["ok"] else f"[bold red]{v}[/]"
        elif k.startswith("lost") and v != "0 / 0 / 0":
            v = f"[red]{v}[/]"
        t.add_row(k, v)
    return t
