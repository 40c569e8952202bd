"""`python -m loadtest bench`: its pure helpers, and one `--quick` run end to end."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench.results import (
    COLUMNS,
    check,
    exit_status,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    latency_summary,
    micro_rows,
    numbers,
    percentile,
    ratio,
    table_rows,
    write_json,
)
from loadtest.bench.suite import print_table, targets

ROOT = Path(__file__).resolve().parents[2]


# ---- percentile ----------------------------------------------------------------------------


def test_percentile_interpolates_between_closest_ranks():
    values = [10, 20, 30, 40, 50]
    assert percentile(values, 0) == 10
    assert percentile(values, 50) == 30
    assert percentile(values, 100) == 50
    assert percentile(values, 25) == 20
    assert percentile(values, 90) == pytest.approx(46)
    assert percentile([1, 2], 50) == 1.5


def test_percentile_ignores_input_order_and_handles_small_inputs():
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile([7], 99) == 7
    assert math.isnan(percentile([], 50))


def test_percentile_p99_of_a_hundred_values():
    values = list(range(1, 101))
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 50) == pytest.approx(50.5)


@pytest.mark.parametrize("p", [-1, 100.5, math.nan])
def test_percentile_rejects_out_of_range(p):
    with pytest.raises(ValueError):
        percentile([1, 2, 3], p)


def test_latency_summary():
    s = latency_summary([float(i) for i in range(1, 101)])
    assert s["samples"] == 100
    assert s["p50_ms"] == 50.5
    assert s["p99_ms"] == 99.01
    assert s["max_ms"] == 100
    empty = latency_summary([])
    assert empty["samples"] == 0 and math.isnan(empty["p50_ms"])


# ---- ratios and formatting -----------------------------------------------------------------


def test_ratio_and_its_formatting():
    assert ratio(5, 10) == 0.5
    assert ratio(None, 10) is None
    assert ratio(5, None) is None
    assert ratio(5, 0) is None
    assert ratio(math.nan, 3) is None
    assert fmt_ratio(0.5) == "0.50x"
    assert fmt_ratio(2.346) == "2.35x"
    assert fmt_ratio(1.0, digits=1) == "1.0x"
    assert fmt_ratio(None) == "n/a"
    assert fmt_ratio(math.nan) == "n/a"


def test_other_formats():
    assert fmt_rate(27950.4, " frames/s") == "27,950 frames/s"
    assert fmt_rate(12.34) == "12.3/s"
    assert fmt_rate(None) == "n/a"
    assert fmt_bytes(19.5 * 1024) == "19.5 KiB"
    assert fmt_bytes(None) == "n/a"
    assert fmt_ms(3.14159) == "3.14 ms"
    assert fmt_ms(49.96) == "50.0 ms"
    assert fmt_ms(math.nan) == "n/a"


def test_check():
    assert check(0.6, ">=", 0.5) is True
    assert check(0.4, ">=", 0.5) is False
    assert check(49.9, "<", 50) is True
    assert check(50, "<", 50) is False
    assert check(1.3, "<=", 1.3) is True
    assert check(None, "<", 1) is None
    with pytest.raises(ValueError):
        check(1, "~", 1)


# ---- the table and the JSON writer ---------------------------------------------------------


def _doc(workers: bool = True) -> dict:
    run = {
        "cpu": {"gateway": 0.8},
        "runq_wait": {"gateway": 0.1},
        "gateway_cpu_us_per_event": 57.14,
    }
    doc = {
        "machine": {"cpu_count": 2, "python": "3.11.7", "loadavg_start": 0.5},
        "floor": {
            "ws_small": {"bytes": 100, "frames_per_s": 28000.0},
            "ws_batched": {"bytes": 4096, "frames_per_s": 9000.0, "mb_per_s": 36.9},
            "nats": {"bytes": 100, "msgs_per_s": 90000.0},
        },
        "path": {
            "one_session": {"events_per_s": 14000.0, "ratio_to_ws_floor": 0.5, **run},
            "many_sessions": {"sessions": 4, "events_per_s": 20000.0, "ratio_to_ws_floor": 0.71},
        },
        "latency": [
            {"rate": 1000, "sessions": 10, "p50_ms": 3.0, "p99_ms": 12.0, "max_ms": 20.0},
            {
                "rate": 2000,
                "sessions": 10,
                "p50_ms": 5.0,
                "p99_ms": 60.0,
                "max_ms": 90.0,
                "target_p99_ms": 50.0,
                **run,
            },
        ],
        "memory": {
            "connections": 500,
            "gateway_bytes_per_conn": 40960.0,
            "raw_bytes_per_conn": 20480.0,
            "ratio_to_raw": 2.0,
        },
        "micro": {
            "codec": {"events_per_frame": 32, "frames_per_s": 6000.0, "events_per_s": 192000.0},
            "reorder_in_order": {"ops_per_s": 1e6, "note": "in order"},
            "reorder_shuffled": {"ops_per_s": 9e5, "note": "shuffled"},
            "token_bucket": {"ops_per_s": 1.1e6, "note": "half"},
        },
        "elapsed_s": 99.0,
    }
    if workers:
        doc["workers"] = {
            "available": True,
            "one": {"sessions": 4, "events_per_s": 20000.0},
            "two": {"sessions": 4, "events_per_s": 30000.0},
            "scaling": 1.5,
        }
    else:
        doc["workers"] = {"available": False, "note": "n/a (workers not available)"}
    return doc


def test_table_rows_show_each_figure_with_its_target():
    rows = table_rows(_doc())
    assert all(len(r) == len(COLUMNS) for r in rows)
    by_name = {r[0]: r for r in rows}
    one = by_name["our path, 1 session"]
    assert one[1] == "14,000 ev/s"
    assert one[2] == "0.50x of ws floor"
    assert one[4] == "yes"  # exactly at the 0.5x target
    assert one[5] == "80%, 10%, 57 µs"
    lat = by_name["10 sessions, 2,000 ev/s"]
    assert lat[1] == "p99 60.0 ms" and lat[3] == "p99 < 50 ms" and lat[4] == "NO"
    assert lat[2] == "p50 5.00, max 90.0 ms"
    assert by_name["10 sessions, 1,000 ev/s"][4] == ""  # no target at 1,000/s
    mem = by_name["memory/idle conn (500)"]
    assert mem[1] == "40.0 KiB" and mem[2] == "2.00x of raw 20.0 KiB" and mem[4] == "NO"
    assert by_name["--workers 2, 4 sessions"][2] == "1.50x of 1 worker"
    assert by_name["trio-websocket 100 B"][1] == "28,000 frames/s"
    assert not any(r[0].startswith(("codec", "reorder", "token")) for r in rows)  # micro: apart


def test_micro_rows_are_their_own_table():
    rows = {r[0]: r for r in micro_rows(_doc())}
    assert rows["codec enc+dec, 32-event frame"][1:] == ("6,000 frames/s", "192,000 ev/s")
    assert rows["reorder push, shuffled"][1] == "900,000 ops/s"
    assert rows["token bucket try_take"][2] == "half"
    assert micro_rows({}) == []


def test_table_rows_when_workers_are_missing_and_sections_are_empty():
    rows = table_rows(_doc(workers=False))
    assert ("gateway: one process vs two", "n/a (workers not available)") == rows[-1][:2]
    bare = table_rows({})  # a failed run still prints a table of n/a
    assert any(r[1] == "n/a" for r in bare)


def test_print_table_fits_100_columns_and_explains_each_column_above_it():
    out = io.StringIO()
    print_table(_doc(), file=out)
    text = out.getvalue()
    assert "2 cores" in text
    assert "n/a (workers" not in text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    header = next(i for i, line in enumerate(lines) if line.startswith("figure "))
    micro = next(i for i, line in enumerate(lines) if line.startswith("micro-benchmark "))
    explained = "\n".join(lines[:header])
    for col in COLUMNS:
        assert f"  {col} " in explained, col  # each column's note comes before the table
    for name, _, *_ in table_rows(_doc()):
        assert any(line.startswith(name + " ") for line in lines[header:micro]), name  # no wrap
    assert "token bucket try_take" in "\n".join(lines[micro:])


def test_a_missed_or_unmeasured_target_exits_1_unless_report_only():
    met = [{"ok": True}, {"ok": True}]
    assert exit_status(met, report_only=False) == 0
    for bad in ({"ok": False}, {"ok": None}):
        assert exit_status([*met, bad], report_only=False) == 1
        assert exit_status([*met, bad], report_only=True) == 0


def test_targets():
    t = {x["name"]: x for x in targets(_doc())}
    assert t["our path / trio-websocket floor"]["ok"] is True
    assert t["p99 at 2000 ev/s (ms)"]["ok"] is False
    assert t["idle memory / raw trio-websocket"]["ok"] is False
    assert targets({})[0]["ok"] is None


def test_write_json_round_trips_and_writes_nan_as_null(tmp_path):
    path = tmp_path / "deep" / "results.json"
    doc = _doc()
    doc["latency"][0]["p50_ms"] = math.nan
    doc["extra"] = (1, math.inf)
    assert write_json(path, doc) == path
    back = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert back["latency"][0]["p50_ms"] is None
    assert back["extra"] == [1, None]
    assert back["path"]["one_session"]["events_per_s"] == 14000.0
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left


def test_numbers_walks_nested_documents():
    assert sorted(numbers({"a": [1, 2.5, {"b": 3}], "c": True, "d": "4"})) == [1, 2.5, 3]


# ---- one quick run, end to end --------------------------------------------------------------


def test_quick_run_writes_every_section(tmp_path):
    out = tmp_path / "bench" / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from loadtest.bench.suite import main; sys.exit(main(sys.argv[1:]))",
            "--quick",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    doc = json.loads(out.read_text())
    missed = [t["name"] for t in doc["targets"] if t["ok"] is not True]
    assert proc.returncode == (1 if missed else 0), (missed, proc.stderr[-3000:])
    assert all(f"target missed: {name}" in proc.stderr for name in missed)
    assert "our path" in proc.stdout
    # The tables fit 100 columns; the line naming the --json path is as long as the path
    # (under pytest-xdist the tmp_path gains "popen-gwN/": 110 characters once).
    written = f"results written to {out}"
    lines = proc.stdout.splitlines()
    assert written in lines
    assert max(len(line) for line in lines if line != written) <= 100
    for section in ("machine", "floor", "path", "latency", "memory", "micro", "workers"):
        assert section in doc, section
    assert doc["machine"]["cpu_count"] >= 1

    def positive(d: dict, *keys: str) -> None:
        for k in keys:
            assert isinstance(d[k], int | float) and d[k] > 0, (k, d.get(k))

    positive(doc["floor"]["ws_small"], "frames_per_s")
    positive(doc["floor"]["ws_batched"], "frames_per_s")
    positive(doc["floor"]["nats"], "msgs_per_s")
    for run in doc["path"].values():
        if isinstance(run, dict):
            positive(run, "events_per_s", "ratio_to_ws_floor")
            assert run["received"] == run["events"]
            assert run["gaps"] == 0 and run["duplicates"] == 0
    assert [lat["rate"] for lat in doc["latency"]] == [1000, 2000]
    for lat in doc["latency"]:
        positive(lat, "p50_ms", "p99_ms", "max_ms")
        assert lat["received"] == lat["events"]
    positive(doc["memory"], "gateway_bytes_per_conn", "raw_bytes_per_conn", "ratio_to_raw")
    for name in ("reorder_in_order", "reorder_shuffled", "token_bucket"):
        positive(doc["micro"][name], "ops_per_s")
    positive(doc["micro"]["codec"], "frames_per_s", "events_per_s")
    workers = doc["workers"]
    if workers["available"]:
        positive(workers["one"], "events_per_s")
        positive(workers["two"], "events_per_s")
        positive(workers, "scaling")
    else:
        assert workers["note"] == "n/a (workers not available)"
    assert {t["name"] for t in doc["targets"]} >= {
        "our path / trio-websocket floor",
        "idle memory / raw trio-websocket",
    }
    assert (out.parent / "logs").is_dir()  # every process's log, beside the results
