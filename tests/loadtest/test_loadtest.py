"""The load-test harness: the verifier (exhaustively), the event mix, the report writer, and
one short real run end to end (`python -m loadtest run --scenario drain`)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadtest import report as rep
from loadtest.__main__ import main as loadtest_main
from loadtest.cli import parse_args
from loadtest.instrumented import RecordingSequencer
from loadtest.verifier import LATENCY_MAX_US, Latencies, SeqSet, Verifier, new_histogram
from loadtest.workload import (
    AGENT_SHARE,
    CANVAS_BYTES,
    SNAPSHOT_BYTES,
    VISITOR_GESTURES,
    EventMix,
    payload,
    payload_bytes,
    sent_time,
    snapshot_bytes,
)
from router.launcher import ClusterSpec, end_leftovers
from tests.support.procs import started

REPO = Path(__file__).resolve().parents[2]

# ---- verifier ------------------------------------------------------------------------------


@st.composite
def runs(draw):
    """A sender's events over 1-3 epochs, what was acked, where the receiver starts, and a
    delivery with injected losses, duplicates and reorders whose counts are known."""
    epochs = draw(st.integers(1, 3))
    sent: list[tuple[int, int]] = []
    acked: dict[int, int] = {}
    for e in range(1, epochs + 1):
        n = draw(st.integers(0, 30))
        sent += [(e, s) for s in range(1, n + 1)]
        acked[e] = draw(st.integers(0, n))  # an epoch's unacked tail was abandoned or is late
    is_acked = {k: k[1] <= acked[k[0]] for k in sent}
    start = draw(st.integers(0, len(sent)))
    after = sent[start - 1] if start else (0, 0)
    # Delivered: every acked key after the start, and some unacked ones (stored, ack not seen).
    base = [k for k in sent[start:] if is_acked[k] or draw(st.booleans())]
    idx = list(range(len(base)))
    lost = set(draw(st.lists(st.sampled_from(idx), unique=True, max_size=len(idx))) if idx else [])
    lost = {i for i in lost if is_acked[base[i]]}
    swaps: list[int] = []
    i = 0
    while i + 1 < len(base):
        if i not in lost and i + 1 not in lost and draw(st.integers(0, 3)) == 0:
            swaps.append(i)
            i += 2
        else:
            i += 1
    order = list(base)
    for i in swaps:
        order[i], order[i + 1] = order[i + 1], order[i]
    kept = [k for j, k in enumerate(order) if j not in lost]
    dups = set(draw(st.lists(st.sampled_from(kept), unique=True))) if kept else set()
    delivered: list[tuple[int, int]] = []
    for k in kept:
        delivered.append(k)
        if k in dups:
            delivered.append(k)
    return {
        "sent": sent,
        "acked": acked,
        "after": after,
        "delivered": delivered,
        "lost": len(lost),
        "duplicated": len(dups),
        "reordered": len(swaps),
    }


@settings(max_examples=400, deadline=None)
@given(runs(), st.booleans())
def test_verifier_counts_injected_losses_duplicates_and_reorders_exactly(run, acks_first):
    v = Verifier()
    v.expect("s1", "v", "agent-0", run["after"])
    for e, s in run["sent"]:
        v.sent("s1", "v", "visitor", e, s)

    def ack_all():
        for e, s in run["acked"].items():
            for upto in range(1, s + 1):  # cumulative acks, some repeated: harmless
                v.acked("s1", "v", "visitor", e, upto)
            if s:
                v.acked("s1", "v", "visitor", e, s)

    if acks_first:
        ack_all()
    for e, s in run["delivered"]:
        v.delivered("s1", "v", "visitor", "agent-0", e, s, latency=0.001)
    if not acks_first:  # acks may arrive after delivery: only the end state matters
        ack_all()
    t = v.totals()
    assert (t["lost"], t["duplicated"], t["reordered"]) == (
        run["lost"],
        run["duplicated"],
        run["reordered"],
    )
    assert t["sent"] == len(run["sent"])
    assert t["acked"] == sum(run["acked"].values())
    assert t["delivered"] == len(run["delivered"]) - run["duplicated"]
    assert v.latency["v"].get_total_count() == t["delivered"]
    clean = run["lost"] == run["duplicated"] == run["reordered"] == 0
    assert (v.problems() == []) == clean


@settings(max_examples=300, deadline=None)
@given(runs(), st.lists(st.integers(1, 5), max_size=30), st.floats(0, 0.2))
def test_an_inbox_checks_exactly_what_per_event_deliveries_check(run, cuts, joined):
    """The same deliveries, one verifier told of each as it comes, the other through an
    Inbox flushed at random points: the same verdicts, counts and latencies."""
    each, bulk = Verifier(), Verifier()
    tl_each, tl_bulk = rep.Timeline(t0=1000.0), rep.Timeline(t0=1000.0)
    for v in (each, bulk):
        v.expect("s1", "v", "agent-0", run["after"])
        for e, s in run["acked"].items():
            v.acked("s1", "v", "visitor", e, s)
    box = bulk.inbox("s1", "v", "visitor", "agent-0", 1000.0 + joined, tl_bulk)
    steps = iter(cuts)
    until = next(steps, 0)
    for i, (e, s) in enumerate(run["delivered"]):
        sent, got = 1000.0 + i * 0.03, 1000.0 + i * 0.03 + 0.002 + (i % 5) * 0.001
        lat = got - sent if sent >= 1000.0 + joined else None
        dups = each.totals()["duplicated"]
        each.delivered("s1", "v", "visitor", "agent-0", e, s, latency=lat)
        if lat is not None and each.totals()["duplicated"] == dups:  # a repeat has none
            tl_each.on_delivered(got, lat)
        box.at_epoch(e)
        box.add_seq(s), box.add_sent(sent), box.add_received(got)
        until -= 1
        if until <= 0:
            bulk.flush()
            until = next(steps, 0)
    assert bulk.totals() == each.totals()
    assert bulk.problems() == each.problems()
    assert bulk.outstanding() == each.outstanding()
    a, b = each.latency["v"].histogram(), bulk.latency["v"].histogram()
    assert list(a.counts) == list(b.counts) and a.get_total_count() == b.get_total_count()
    kept = [h.get_total_count() if h else 0 for h in tl_each.latency]
    assert [h.get_total_count() if h else 0 for h in tl_bulk.latency][: len(kept)] == kept


@given(st.lists(st.integers(-5, 4_000_000_000), max_size=80))
def test_latencies_recorded_in_bulk_are_recorded_exactly(us):
    bulk, each = Latencies(), new_histogram()
    bulk.us.extend(us)
    for u in us:
        each.record_value(min(LATENCY_MAX_US, max(1, u)))
    h = bulk.histogram()
    assert list(h.counts) == list(each.counts) and h.get_total_count() == len(us)
    if us:
        assert (h.min_value, h.max_value) == (each.min_value, each.max_value)
        assert bulk.get_value_at_percentile(50) == each.get_value_at_percentile(50)
    assert not bulk.us  # folded


@given(st.lists(st.integers(1, 60)), st.integers(1, 60), st.integers(1, 60))
def test_seqset_matches_a_plain_set(seqs, lo, hi):
    s, plain = SeqSet(), set()
    for x in seqs:
        assert s.add(x) == (x not in plain)
        plain.add(x)
    assert all((x in s) == (x in plain) for x in range(1, 62))
    assert s.count_in(lo, hi) == len([x for x in plain if lo <= x <= hi])


def test_verifier_streams_directions_and_receivers_are_separate():
    v = Verifier()
    v.expect("s1", "v", "agent-0", (1, 0))
    v.expect("s1", "v", "agent-1", (1, 0))
    v.expect("s1", "a", "visitor", (0, 0))
    v.expect("s2", "v", "agent-0", (1, 0))
    for s in range(1, 6):
        v.acked("s1", "v", "visitor", 1, s)
        v.delivered("s1", "v", "visitor", "agent-0", 1, s)
    for s in (1, 2, 4, 5):  # agent-1 misses seq 3
        v.delivered("s1", "v", "visitor", "agent-1", 1, s)
    v.acked("s1", "a", "aa1", 0, 2)
    v.delivered("s1", "a", "aa1", "visitor", 0, 2)  # seq 1 of this agent lost
    v.acked("s1", "a", "aa2", 0, 1)
    v.delivered("s1", "a", "aa2", "visitor", 0, 1)
    v.acked("s2", "v", "visitor", 1, 1)  # s2's agent got nothing at all
    assert v.totals("v")["lost"] == 2 and v.totals("a")["lost"] == 1
    bad = {(p["session"], p["receiver"], p["sender"]): p["lost"] for p in v.problems()}
    assert bad == {
        ("s1", "agent-1", "visitor"): 1,
        ("s1", "visitor", "aa1"): 1,
        ("s2", "agent-0", "visitor"): 1,
    }
    assert v.outstanding() == 1  # s2's agent has not got its stream's last acked event


def test_verifier_outstanding_tracks_the_settle_phase():
    v = Verifier()
    v.expect("s", "v", "a0", (1, 0))
    assert v.outstanding() == 0
    v.acked("s", "v", "visitor", 1, 3)
    assert v.outstanding() == 1
    for s in (1, 2, 3):
        v.delivered("s", "v", "visitor", "a0", 1, s)
    assert v.outstanding() == 0
    v.acked("s", "v", "visitor", 2, 1)  # a new epoch: its first event is still under way
    assert v.outstanding() == 1
    v.delivered("s", "v", "visitor", "a0", 2, 1)
    assert v.outstanding() == 0 and v.totals()["lost"] == 0


def test_verifier_reset_and_skip_follow_the_protocol():
    v = Verifier()
    v.expect("s", "v", "a0", (1, 0))
    v.acked("s", "v", "visitor", 1, 10)
    for s in range(1, 6):
        v.delivered("s", "v", "visitor", "a0", 1, s)
    # ctl reset: delivery restarts at a snapshot (seq 4), so 4 and 5 come again, not dups
    v.reset("s", "v", "a0")
    for s in range(4, 11):
        v.delivered("s", "v", "visitor", "a0", 1, s)
    t = v.totals()
    assert (t["lost"], t["duplicated"], t["reordered"]) == (0, 0, 0) and v.resets == 1
    # A visitor's new page: agent events stored before it are not replayed to it.
    v.expect("s", "a", "visitor", (0, 0))
    v.acked("s", "a", "aa1", 0, 7)
    v.skip_acked("s", "a", "visitor")
    v.acked("s", "a", "aa1", 0, 9)
    v.delivered("s", "a", "aa1", "visitor", 0, 8)
    v.delivered("s", "a", "aa1", "visitor", 0, 9)
    assert v.totals("a")["lost"] == 0


def test_verifier_sums_client_figures_and_latency():
    v = Verifier()
    v.record_client(
        connects=3,
        resumes=2,
        reconnect_notices=1,
        rejected_new=1,
        rejected_resume=0,
        resume_times=[0.1, 0.3],
        notice_times=[0.5],
    )
    v.record_client(connects=1, resumes=0, reconnect_notices=0, rejected_new=0, rejected_resume=2)
    c = v.clients
    assert (c.clients, c.connects, c.resumed, c.rejected_new, c.rejected_resume) == (2, 4, 2, 1, 2)
    assert rep.percentiles(c.resume_times) == {"p50": 100.0, "p99": 300.0, "max": 300.0}


def test_recording_sequencer_reports_pushes_acks_and_restarts():
    seen = []
    seq = RecordingSequencer(
        lambda e, s: seen.append(("push", e, s)),
        lambda e, s: seen.append(("ack", e, s)),
        lambda old, new, n: seen.append(("restart", old, new, n)),
        epoch=0,
    )
    seq.epoch = 4  # the first welcome sets the epoch directly
    for _ in range(3):
        seq.push("mutation", 0, {})
    seq.ack(2)
    seq.restart(5)
    assert seen == [
        ("push", 4, 1),
        ("push", 4, 2),
        ("push", 4, 3),
        ("ack", 4, 2),
        ("restart", 4, 5, 1),
    ]


# ---- event mix -----------------------------------------------------------------------------


def test_event_mix_rate_kinds_and_sizes_over_a_fixed_seed():
    mix = EventMix(5.0, 1234)
    plan = list(mix.visitor(600))
    assert abs(len(plan) / 600 - 5.0) < 0.5  # --rate is the mean over the run
    assert all(a.at <= b.at for a, b in zip(plan, plan[1:], strict=False))
    assert all(0 <= e.at < 600 for e in plan)
    kinds = Counter(e.kind for e in plan)
    assert set(kinds) == set(VISITOR_GESTURES)
    assert kinds["pointer"] > kinds["mutation"] > kinds["canvas"] > 0
    for e in plan:
        lo, hi = VISITOR_GESTURES[e.kind].size
        assert lo <= e.size <= hi
    canvas = [e.size for e in plan if e.kind == "canvas"]
    assert all(CANVAS_BYTES[0] <= s <= CANVAS_BYTES[1] for s in canvas)
    # Pointer moves come in runs at 20 Hz.
    pointer = [e.at for e in plan if e.kind == "pointer"]
    gaps = Counter(round(b - a, 3) for a, b in zip(pointer, pointer[1:], strict=False))
    assert gaps.most_common(1)[0][0] == 0.05
    # The same seed, the same plan; another seed, another plan.
    assert [(e.at, e.kind, e.size) for e in EventMix(5.0, 1234).visitor(600)] == [
        (e.at, e.kind, e.size) for e in plan
    ]
    assert list(EventMix(5.0, 99).visitor(60)) != plan[: len(list(EventMix(5.0, 99).visitor(60)))]
    sizes = [mix.snapshot_size() for _ in range(200)]
    assert all(SNAPSHOT_BYTES[0] <= s <= SNAPSHOT_BYTES[1] for s in sizes)
    assert len(snapshot_bytes(123_456, "sid")) == 123_456


def test_event_mix_agents_and_edge_cases():
    mix = EventMix(5.0, random.Random(7))
    plan = list(mix.agent(600))
    assert {e.kind for e in plan} == {"pointer", "highlight"}
    assert abs(len(plan) / 600 - 5.0 * AGENT_SHARE) < 0.15
    assert list(EventMix(0, 1).visitor(60)) == []
    assert list(EventMix(5, 1).visitor(0)) == []
    with pytest.raises(ValueError):
        EventMix(-1)


@pytest.mark.parametrize("kind", ["pointer", "mutation", "scroll", "input", "canvas", "highlight"])
def test_payloads_carry_the_send_time_and_about_the_planned_size(kind):
    lo, hi = VISITOR_GESTURES.get(kind, VISITOR_GESTURES["input"]).size
    size = (lo + hi) // 2
    p = payload(kind, size, 3, 1700000000.25)
    assert p["t"] == 1700000000.25
    n = len(msgpack.packb(p, use_bin_type=True))
    assert 0.7 * size <= n <= 1.3 * size + 20, (kind, size, n)


@pytest.mark.parametrize("kind", ["pointer", "input", "mutation", "canvas"])
def test_the_send_time_is_read_from_our_payloads_else_from_the_event(kind):
    sent = 1700000000.25
    assert sent_time(payload(kind, 100, 3, sent), 5000) == sent
    packed = msgpack.unpackb(payload_bytes(kind, 100, 3, sent), raw=False)
    assert sent_time(packed, 5000) == sent
    assert sent_time(b"<html>", 1700000000250) == sent  # a snapshot part: the event's ts
    assert sent_time({"t": "late"}, 1500) == 1.5  # not ours


# ---- report --------------------------------------------------------------------------------

METRICS_TEXT = """# HELP cobrowse_gateway_events_in_total Events received from senders
# TYPE cobrowse_gateway_events_in_total counter
cobrowse_gateway_events_in_total{role="visitor"} 120.0
cobrowse_gateway_events_in_total{role="agent"} 7.0
cobrowse_gateway_events_in_created{role="visitor"} 1.7e9
cobrowse_gateway_events_out_total{role="agent"} 118.0
cobrowse_gateway_admission_total{lane="new"} 10.0
cobrowse_gateway_admission_total{lane="resume"} 4.0
cobrowse_gateway_js_publish_retries_total 2.0
cobrowse_gateway_drain_notices_total 5.0
"""


def _sample_report(tmp_path: Path) -> dict:
    v = Verifier()
    tl = rep.Timeline(t0=1000.0)
    v.expect("s", "v", "agent-0", (1, 0))
    for s in range(1, 51):
        v.sent("s", "v", "visitor", 1, s)
        v.acked("s", "v", "visitor", 1, s)
        tl.on_sent(1000.0 + s / 10)
        v.delivered("s", "v", "visitor", "agent-0", 1, s, latency=0.004 + s / 10000)
        tl.on_delivered(1000.0 + s / 10 + 0.005, 0.004 + s / 10000)
    tl.sample(1001.0, 1, {"gw-1": 2})
    tl.sample(1003.0, 1, {"gw-2": 2})
    tl.mark(1002.5, "drain gw-1")
    figs = rep.gateway_figures(METRICS_TEXT)
    return rep.build_report(
        scenario="drain",
        config={"sessions": 1, "agents_per_session": 1, "rate": 5, "duration": 5, "seed": 1},
        verifier=v,
        timeline=tl,
        sessions_started=1,
        sessions_failed=0,
        gateways={"gw-1": figs, "gw-2": figs},
        settle={"seconds": 0.2, "complete": True},
    )


def test_an_uncaught_exception_in_the_clusters_logs_fails_the_run(tmp_path):
    """A process under test that logged Python's last-resort report (gateway/logs.py) has a
    bug, whatever the verifier counted: the run fails and the summary shows the line."""
    report = _sample_report(tmp_path)
    rep.add_process_errors(report, [])
    assert report["ok"] and report["process_errors"] == 0
    assert "process errors" not in dict(rep.summary_rows(report))
    line = "gw-2: timestamp='t' level='error' event='thread_exception' thread='w'"
    rep.add_process_errors(report, [line])
    assert not report["ok"] and report["process_error_samples"] == [line]
    rows = dict(rep.summary_rows(report))
    assert "1 uncaught exception(s)" in rows["process errors"] and line in rows["process errors"]
    assert rows["result"] == "FAIL"


def test_the_config_names_the_options_the_target_and_the_local_cluster():
    opts = parse_args(["--scenario", "drain", "--sessions", "8", "--duration", "20", "--seed", "3"])
    spec = ClusterSpec(gateways=3, drain_window=4.0)
    local = rep.run_config(opts, None, spec)
    assert (local["scenario"], local["sessions"], local["seed"], local["target"]) == (
        "drain",
        8,
        3,
        "local cluster",
    )
    assert local["ramp"] == 2.0 and local["settle_max"] == 30.0  # a tenth of the duration
    assert local["local_cluster"]["gateways"] == 3
    assert local["local_cluster"]["drain_window"] == 4.0
    remote = rep.run_config(opts, "https://api.example.com", None)
    assert remote["target"] == "https://api.example.com" and "local_cluster" not in remote


def test_the_harness_load_is_its_median_and_highest_cpu_and_worst_lag():
    load = rep.harness_load([30.0, 90.0, 10.0, 50.0, 70.0, 20.0], 0.1234, 17)
    assert load == {
        "cpu_percent_p50": 30.0,  # nearest rank: the 3rd of 6
        "cpu_percent_max": 90.0,
        "loop_lag_max_ms": 123.4,
        "reactor_turns": 17,
    }
    assert rep.harness_load([], 0.0, None) == {
        "cpu_percent_p50": None,
        "cpu_percent_max": None,
        "loop_lag_max_ms": 0.0,
    }


def test_gateway_metrics_are_parsed_and_summed():
    figs = rep.gateway_figures(METRICS_TEXT)
    assert figs["events_in"] == {"visitor": 120.0, "agent": 7.0}
    assert figs["admission"] == {"new": 10.0, "resume": 4.0}
    assert figs["publish_retries"] == 2.0 and figs["drain_notices"] == 5.0
    assert figs["publish_failed"] == 0
    total = rep.sum_figures([figs, figs])
    assert total["events_in"]["visitor"] == 240.0 and total["drain_notices"] == 10.0


def test_report_writer_json_png_and_markdown(tmp_path):
    report = _sample_report(tmp_path)
    paths = rep.write_report_dir(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    for key in (
        "scenario",
        "sessions",
        "events_sent",
        "events_delivered",
        "lost",
        "duplicated",
        "reordered",
        "latency_ms",
        "resumed",
        "resume_ms",
        "rejected_new",
        "rejected_resume",
        "gateway_metrics",
        "marks",
        "timeline",
    ):
        assert key in data, key
    assert set(data["latency_ms"]) >= {"p50", "p99", "max"}
    assert set(data["resume_ms"]) >= {"p50", "p99"}
    assert data["ok"] is True and data["events_sent"] == data["events_delivered"] == 50
    assert data["marks"] == [{"t": 2.5, "label": "drain gw-1"}]
    assert data["gateway_metrics"]["totals"]["drain_notices"] == 10.0
    png = paths["png"].read_bytes()
    assert len(png) > 1000 and png.startswith(b"\x89PNG")
    md = paths["md"].read_text()
    assert "PASS" in md and "report.png" in md and "drain gw-1" in md
    assert "PASS" in rep.progress_line(
        {
            "elapsed": 1.0,
            "phase": "load",
            "connected": 1,
            "sessions": 1,
            "sent_rate": 5.0,
            "delivered_rate": 5.0,
            "p99_ms": 3.0,
            "reconnects": 0,
            "rejected": 0,
            "last_mark": "PASS",
        }
    )


# ---- the command ---------------------------------------------------------------------------


def test_main_dispatches_and_refuses_local_only_scenarios_against_a_target(capsys):
    assert loadtest_main([]) == 2
    assert "run" in capsys.readouterr().out
    assert loadtest_main(["nope"]) == 2
    with pytest.raises(SystemExit) as exc:
        loadtest_main(["run", "--scenario", "crash", "--target", "http://127.0.0.1:1"])
    assert exc.value.code == 2


def test_leftovers_of_a_dead_harness_are_ended_and_a_live_ones_are_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = started(["sleep", "60"])
    other = started(["sleep", "61"])
    try:
        for name, owner, proc in (("a", dead.pid, orphan), ("b", os.getpid(), other)):
            (tmp_path / name).mkdir()
            (tmp_path / name / "pids.json").write_text(
                json.dumps({"owner": owner, "procs": [{"pid": proc.pid, "marker": "sleep"}]})
            )
        assert end_leftovers(tmp_path) == [orphan.pid]
        assert orphan.wait(5) == -9
        assert other.poll() is None  # its harness (this process) still runs
        assert not (tmp_path / "a" / "pids.json").exists()
    finally:
        for proc in (orphan, other):
            proc.kill()
            proc.wait()


def test_a_short_real_drain_run_loses_nothing(tmp_path):
    out = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "loadtest",
        "run",
        "--scenario",
        "drain",
        "--sessions",
        "6",
        "--duration",
        "12",
        "--json",
        str(out),
        "--run-dir",
        str(tmp_path / "run"),
        "--seed",
        "7",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0)
    assert r["ok"] and r["sessions"] == 6 and r["events_delivered"] == r["events_acked"] > 0
    assert r["marks"] and r["marks"][0]["label"].startswith("drain")
    assert r["reconnect_notices"] > 0 and r["resumed"] >= r["reconnect_notices"]
    assert r["latency_ms"]["p99"] is not None
    assert r["process_errors"] == 0  # the cluster's logs were read: no uncaught exception
    assert "load test summary" in proc.stdout
    assert not list((tmp_path / "run").glob("*/pids.json"))  # every process was stopped


def test_gateway_cpu_counts_its_worker_processes():
    """A gateway of several workers (`--workers N`) is a supervisor whose children do the
    work: its CPU is the tree's, live children and reaped ones alike."""
    import psutil

    from loadtest.harness import tree_cpu_seconds

    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    parent_code = (
        "import subprocess, sys\n"
        f"subprocess.run([sys.executable, '-c', {busy!r}])\n"  # reaped: children_* times
        f"p = subprocess.Popen([sys.executable, '-c', {busy!r} + 'time.sleep(30)'])\n"
        "print('ready', flush=True)\n"
        "p.wait()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout.readline().strip() == "ready"
        proc = psutil.Process(parent.pid)
        live = proc.children()[0]
        deadline = time.monotonic() + 10
        while live.cpu_times().user + live.cpu_times().system < 0.35:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        own = proc.cpu_times()
        assert own.user + own.system < 0.3  # the parent itself only waits
        assert tree_cpu_seconds(proc) >= 0.7  # the reaped child's 0.4 s and the live one's
    finally:
        for p in psutil.Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait(10)


def test_a_gateways_process_tree_is_listed_again_only_after_its_refresh_or_a_worker_ending():
    """The CPU sample every second reuses the list of a gateway's workers (listing reads every
    process's /proc entry) until `refresh` seconds passed or a listed worker ended."""
    import psutil

    from loadtest.harness import ProcessTree

    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    parent_code = (
        "import subprocess, sys\n"
        "sys.stdin.readline()\n"
        f"p = subprocess.Popen([sys.executable, '-c', {busy!r} + 'time.sleep(30)'])\n"
        "print(p.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "p.kill(); p.wait()\n"
        "print('reaped', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tree = ProcessTree(psutil.Process(parent.pid), refresh=5.0)
        tree.cpu_seconds(0.0)
        assert tree.descendants == []
        parent.stdin.write("spawn\n")
        parent.stdin.flush()
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 10
        while sum(child.cpu_times()[:2]) < 0.25:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = tree.cpu_seconds(1.0)
        assert tree.descendants == []  # not listed again yet
        after = tree.cpu_seconds(5.0)
        assert [c.pid for c in tree.descendants] == [child.pid]
        assert after - before >= 0.2  # the worker's 0.25 s and more count from this listing on
        parent.stdin.write("kill\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "reaped"
        reaped = tree.cpu_seconds(5.5)  # before the refresh: a listed worker ended
        assert tree.descendants == []
        assert reaped >= after - 0.01  # its time is now in the parent's children_* times
    finally:
        for p in psutil.Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait(10)
