"""What a run costs in CPU: the harness's own process against the gateways', per event.

A load generator on the same cores as the gateways must cost far less per event than they
do, or the run measures the generator (docs/loadtest.md). Over the *load window* (from the
end of the ramp to the moment sending stops, so the ramp's snapshots are left out and a
drain or crash in the middle is in), this takes the CPU seconds (user + system) of

- the harness: this process (`psutil`), children excluded (a local cluster's processes are
  the harness's children);
- the gateways: by pid with `psutil` for a local cluster (with their worker processes),
  sampled every second so that a gateway that exits (a drain, a kill) counts up to its last
  sample; otherwise from each
  gateway's `process_cpu_seconds_total` in its `/metrics`, scraped at both ends;
- the NATS servers of a local cluster, the same way (shown beside the others, not part of
  the verdict: the target is a third of the gateways' CPU);

and divides both by the events delivered to receivers in the window, both directions
(visitor -> agents, counted once per agent, and agents -> visitor).

Sans-I/O: the harness feeds samples, this computes the figures and the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The harness may cost at most this share of the gateways' CPU per event to be trusted.
MAX_HARNESS_SHARE = 1 / 3
# An event-loop lag above this (ms) delays the harness's reads and sends visibly.
MAX_LOOP_LAG_MS = 100.0
# A harness process above this share of one core is saturated: it queues its own work.
MAX_HARNESS_CORE_SHARE = 0.9

DENOMINATOR = "events delivered to receivers, both directions (visitor->agents once per agent, agents->visitor)"


@dataclass
class CpuPoint:
    t: float  # monotonic seconds
    harness: float  # CPU seconds of the harness process
    gateways: dict[str, float]  # gateway id -> CPU seconds (its last known value)
    delivered: int  # events delivered so far, both directions
    nats: dict[str, float] = field(default_factory=dict)  # node -> CPU seconds (local only)


@dataclass
class CpuWindow:
    """CPU points at the two ends of the load window, plus the loop lag seen inside it."""

    source: str | None = None  # "psutil" | "process_cpu_seconds_total" | None (unknown)
    start: CpuPoint | None = None
    end: CpuPoint | None = None
    loop_lag_max_ms: float = 0.0
    client: str = "fast"
    notes: list[str] = field(default_factory=list)

    def lag(self, ms: float) -> None:
        """Record a loop-lag sample taken while the window is open."""
        if self.start is not None and self.end is None:
            self.loop_lag_max_ms = max(self.loop_lag_max_ms, ms)

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "client": self.client,
            "denominator": DENOMINATOR,
            "gateway_source": self.source,
        }
        if self.start is None or self.end is None:
            out["verdict"] = "no load window was measured (the run ended before its ramp did)"
            out["trustworthy"] = False
            return out
        a, b = self.start, self.end
        seconds = max(1e-9, b.t - a.t)
        events = b.delivered - a.delivered
        harness = b.harness - a.harness
        gw = {g: round(spent, 3) for g, spent in sorted(_grown(a.gateways, b.gateways).items())}
        gateways = sum(gw.values()) if gw else None
        grown_nats = _grown(a.nats, b.nats)
        nats = sum(grown_nats.values()) if grown_nats else None
        out.update(
            window_s=round(seconds, 2),
            events=events,
            events_per_s=round(events / seconds, 1),
            harness_cpu_s=round(harness, 3),
            harness_core_share=round(harness / seconds, 3),
            gateways_cpu_s=None if gateways is None else round(gateways, 3),
            gateways_cpu_s_by_gateway=gw,
            harness_us_per_event=_per_event(harness, events),
            gateways_us_per_event=None if gateways is None else _per_event(gateways, events),
            nats_cpu_s=None if nats is None else round(nats, 3),
            nats_us_per_event=None if nats is None else _per_event(nats, events),
            loop_lag_max_ms=round(self.loop_lag_max_ms, 1),
        )
        ratio = None
        if gateways and events:
            ratio = round(harness / gateways, 3)
        out["harness_to_gateways"] = ratio
        out["harness_to_gateways_and_nats"] = (
            round(harness / (gateways + nats), 3) if gateways and nats is not None else None
        )
        problems = []
        if events == 0:
            problems.append("no event was delivered in the load window")
        if ratio is not None and ratio > MAX_HARNESS_SHARE:
            problems.append(
                f"the harness cost {ratio:.2f}x the gateways' CPU per event (more than "
                f"{MAX_HARNESS_SHARE:.2f})"
            )
        if self.loop_lag_max_ms > MAX_LOOP_LAG_MS:
            problems.append(f"its event loop lagged up to {self.loop_lag_max_ms:.0f} ms")
        if harness / seconds > MAX_HARNESS_CORE_SHARE:
            problems.append(f"it used {100 * harness / seconds:.0f}% of a core")
        if problems:
            out["trustworthy"] = False
            out["verdict"] = (
                "this run measured the load generator, not only the gateways: "
                + "; ".join(problems)
                + " (latency and throughput figures include the harness's own delays)"
            )
        elif gateways is None:
            out["trustworthy"] = None
            out["verdict"] = (
                "the gateways' CPU is unknown (no pids, no process_cpu_seconds_total): "
                "cannot tell whether the harness was cheap enough"
            )
        else:
            out["trustworthy"] = True
            out["verdict"] = (
                f"the harness cost {ratio:.2f}x the gateways' CPU per event, at most "
                f"{MAX_HARNESS_SHARE:.2f}: the figures measure the gateways"
            )
        return out


def _grown(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process of the end point spent since the start point: one first seen
    at the end (restarted in the window: a new key) counts from zero, one whose figure went
    back (a restart under the same key) does not count."""
    return {k: end[k] - start.get(k, 0.0) for k in end if end[k] >= start.get(k, 0.0)}


def _per_event(seconds: float, events: int) -> float | None:
    return round(seconds * 1e6 / events, 1) if events else None
