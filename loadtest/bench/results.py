"""Pure helpers of `python -m loadtest bench`: statistics, formatting, the result document.

No I/O beyond `write_json`; the unit tests exercise these directly.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SECTIONS = ("machine", "floor", "path", "latency", "memory", "micro", "workers")


def mono() -> float:
    """A system-wide monotonic clock, comparable between processes on one machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks.

    NaN for no values; p outside 0..100 is an error.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, got {p!r}")
    if not values:
        return math.nan
    s = sorted(values)
    if len(s) == 1:
        return float(s[0])
    pos = (len(s) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def latency_summary(ms: Sequence[float]) -> dict[str, float | int]:
    """p50, p90, p99 and max of latencies in milliseconds, rounded to 0.01 ms."""
    return {
        "samples": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else math.nan,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive."""
    if a is None or b is None or not b > 0 or math.isnan(a):
        return None
    return a / b


def fmt_ratio(r: float | None, digits: int = 2) -> str:
    """'0.42x'; 'n/a' when there is nothing to compare."""
    if r is None or math.isnan(r):
        return "n/a"
    return f"{r:.{digits}f}x"


def fmt_rate(v: float | None, unit: str = "/s") -> str:
    """A rate with thousands grouped: '27,950/s'; 'n/a' when missing."""
    if v is None or math.isnan(v):
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:,.1f}{unit}"


def fmt_bytes(v: float | None) -> str:
    """Bytes as KiB with one decimal: '19.5 KiB'."""
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v / 1024:,.1f} KiB"


def fmt_ms(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:,.1f} ms" if v >= 10 else f"{v:,.2f} ms"


def check(value: float | None, op: str, limit: float) -> bool | None:
    """Whether `value op limit` holds; None when the value is missing."""
    if value is None or math.isnan(value):
        return None
    if op == ">=":
        return value >= limit
    if op == "<=":
        return value <= limit
    if op == "<":
        return value < limit
    if op == ">":
        return value > limit
    raise ValueError(f"unknown comparison {op!r}")


def mark(ok: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[ok]


def numbers(doc: Any) -> Iterable[float]:
    """Every int/float in a nested JSON-like document (bools excluded)."""
    if isinstance(doc, bool):
        return
    if isinstance(doc, int | float):
        yield doc
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from numbers(v)
    elif isinstance(doc, list | tuple):
        for v in doc:
            yield from numbers(v)


def _clean(doc: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    if isinstance(doc, dict):
        return {str(k): _clean(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_clean(v) for v in doc]
    return doc


def write_json(path: str | os.PathLike, doc: dict) -> Path:
    """Write the results atomically (a partial file never replaces a good one)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(_clean(doc), indent=2, sort_keys=False) + "\n")
    tmp.replace(p)
    return p


COLUMNS = ("figure", "result", "compared with", "target", "met", "gateway load")
# Printed above the headline table, one line per column: the table is read without docs.
COLUMN_NOTES = (
    ("figure", "what was measured (ev/s: events a second delivered to agents; latency:"),
    ("", "from the visitor's send to the agent's receipt, at that offered rate)"),
    ("result", "the figure measured in this run"),
    ("compared with", "its reference, measured in the same run (the floors: raw libraries)"),
    ("target", "the target the project holds this figure to, where it has one"),
    ("met", "yes, NO, or n/a (not measured); a NO makes `make bench` exit 1"),
    ("gateway load", "gateway's share of a core busy, of the time runnable but waiting for"),
    ("", "a core (a busy machine), and its CPU time per event delivered"),
)
MICRO_COLUMNS = ("micro-benchmark", "result", "note")

Row = tuple[str, str, str, str, str, str]
MicroRow = tuple[str, str, str]


def fmt_load(run: dict) -> str:
    """'65%, 34%, 650 µs': the gateway's share of a core busy, its share of the time runnable
    but waiting for a core, and its CPU time per event delivered."""
    cpu = (run.get("cpu") or {}).get("gateway")
    if cpu is None:
        return ""
    parts = [f"{cpu:.0%}"]
    wait = (run.get("runq_wait") or {}).get("gateway")
    if wait is not None:
        parts.append(f"{wait:.0%}")
    per = run.get("gateway_cpu_us_per_event")
    if per is not None:
        parts.append(f"{per:,.0f} µs")
    return ", ".join(parts)


def _row(
    figure: str, result: str, compared: str = "", target: str = "", met: str = "", load: str = ""
) -> Row:
    return (figure, result, compared, target, met, load)


def _run_row(label: str, run: dict, compared: str = "") -> Row:
    """A throughput run's row: '<label> N sessions', its events/s and the gateway's load."""
    return _row(
        f"{label} {run.get('sessions', '?')} sessions",
        fmt_rate(run.get("events_per_s"), " ev/s"),
        compared,
        load=fmt_load(run),
    )


def table_rows(doc: dict) -> list[Row]:
    """The headline table, one row per figure (see COLUMNS); short cells, so that it fits
    100 columns (`print_table`)."""
    rows: list[Row] = []
    floor = doc.get("floor", {})
    ws = floor.get("ws_small", {})
    wsb = floor.get("ws_batched", {})
    nats = floor.get("nats", {})
    rows.append(
        _row(
            f"trio-websocket {ws.get('bytes', '?')} B",
            fmt_rate(ws.get("frames_per_s"), " frames/s"),
            "floor: 2 processes",
        )
    )
    if wsb:
        rows.append(
            _row(
                f"trio-websocket {wsb.get('bytes', '?')} B",
                fmt_rate(wsb.get("frames_per_s"), " frames/s"),
                f"{wsb.get('mb_per_s', 'n/a')} MB/s",
            )
        )
    rows.append(
        _row(
            f"nats-py pub->sub {nats.get('bytes', '?')} B",
            fmt_rate(nats.get("msgs_per_s"), " msgs/s"),
            "floor: 1 process",
        )
    )
    path = doc.get("path", {})
    one = path.get("one_session", {})
    r = one.get("ratio_to_ws_floor")
    rows.append(
        _row(
            "our path, 1 session",
            fmt_rate(one.get("events_per_s"), " ev/s"),
            f"{fmt_ratio(r)} of ws floor",
            ">= 0.5x",
            mark(check(r, ">=", 0.5)),
            fmt_load(one),
        )
    )
    many = path.get("many_sessions", {})
    if many:
        compared = f"{fmt_ratio(many.get('ratio_to_ws_floor'))} of ws floor"
        rows.append(_run_row("our path,", many, compared))
    for lat in doc.get("latency", []):
        target = lat.get("target_p99_ms")
        rows.append(
            _row(
                f"{lat.get('sessions', '?')} sessions, {lat.get('rate', 0):,.0f} ev/s",
                f"p99 {fmt_ms(lat.get('p99_ms'))}",
                f"p50 {fmt_ms(lat.get('p50_ms'))[:-3]}, max {fmt_ms(lat.get('max_ms'))}",
                f"p99 < {target:g} ms" if target else "",
                mark(check(lat.get("p99_ms"), "<", target)) if target else "",
                fmt_load(lat),
            )
        )
    mem = doc.get("memory", {})
    mr = mem.get("ratio_to_raw")
    rows.append(
        _row(
            f"memory/idle conn ({mem.get('connections', '?')})",
            fmt_bytes(mem.get("gateway_bytes_per_conn")),
            f"{fmt_ratio(mr)} of raw {fmt_bytes(mem.get('raw_bytes_per_conn'))}",
            "<= 1.3x raw",
            mark(check(mr, "<=", 1.3)),
        )
    )
    workers = doc.get("workers", {})
    if workers.get("available"):
        w1, w2 = workers.get("one", {}), workers.get("two", {})
        rows.append(_run_row("--workers 1,", w1))
        rows.append(
            _run_row("--workers 2,", w2, f"{fmt_ratio(workers.get('scaling'))} of 1 worker")
        )
    else:
        rows.append(_row("gateway: one process vs two", workers.get("note", "n/a")))
    return rows


def micro_rows(doc: dict) -> list[MicroRow]:
    """The micro-benchmarks of the sans-I/O cores (see MICRO_COLUMNS), apart from the
    headline figures: they time one function, not the system."""
    rows: list[MicroRow] = []
    micro = doc.get("micro", {})
    codec = micro.get("codec", {})
    if codec:
        rows.append(
            (
                f"codec enc+dec, {codec.get('events_per_frame', '?')}-event frame",
                fmt_rate(codec.get("frames_per_s"), " frames/s"),
                fmt_rate(codec.get("events_per_s"), " ev/s"),
            )
        )
    css = micro.get("css_rewrite", {})
    if css:
        rows.append(
            (
                "proxy CSS rewrite, large sheet",
                f"{css.get('rewrite_ms')} ms, hit {css.get('cached_hit_us')} µs",
                css.get("note", ""),
            )
        )
    for key, label in (
        ("reorder_in_order", "reorder push, in order"),
        ("reorder_shuffled", "reorder push, shuffled"),
        ("token_bucket", "token bucket try_take"),
    ):
        m = micro.get(key, {})
        if m:
            rows.append((label, fmt_rate(m.get("ops_per_s"), " ops/s"), m.get("note", "")))
    return rows


def exit_status(targets: Iterable[dict], *, report_only: bool) -> int:
    """1 when a target was missed or not measured (its value missing), unless the run only
    reports; 0 otherwise."""
    missed = [t for t in targets if t.get("ok") is not True]
    return 1 if missed and not report_only else 0
