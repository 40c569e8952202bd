"""The CPU window's figures and verdict (loadtest/cpu.py): when a run says it measured the
load generator instead of the gateways."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loadtest.cpu import MAX_HARNESS_SHARE, CpuPoint, CpuWindow
from loadtest.report import cpu_rows


def window(
    harness: float,
    gateways: dict[str, float],
    *,
    seconds: float = 10.0,
    events=10_000,
    nats: dict[str, float] | None = None,
    lag_ms: float = 0.0,
) -> CpuWindow:
    w = CpuWindow(source="psutil")
    w.start = CpuPoint(
        t=100.0,
        harness=5.0,
        gateways={g: 1.0 for g in gateways},
        delivered=1_000,
        nats={n: 2.0 for n in nats or {}},
    )
    w.lag(lag_ms)
    w.end = CpuPoint(
        t=100.0 + seconds,
        harness=5.0 + harness,
        gateways={g: 1.0 + c for g, c in gateways.items()},
        delivered=1_000 + events,
        nats={n: 2.0 + c for n, c in (nats or {}).items()},
    )
    return w


def test_a_cheap_harness_measures_the_gateways():
    f = window(1.0, {"gw-1": 2.0, "gw-2": 2.0}, nats={"nats-0": 1.0}).figures()
    assert f["harness_us_per_event"] == 100.0
    assert f["gateways_us_per_event"] == 400.0
    assert f["nats_us_per_event"] == 100.0
    assert f["harness_to_gateways"] == 0.25
    assert f["harness_to_gateways_and_nats"] == 0.2
    assert f["trustworthy"] is True
    assert "the figures measure the gateways" in f["verdict"]


def test_a_harness_above_a_third_of_the_gateways_says_it_measured_itself():
    f = window(1.6, {"gw-1": 4.0}, nats={"nats-0": 2.0}).figures()
    assert f["harness_to_gateways"] == 0.4
    assert f["harness_to_gateways_and_nats"] == 0.267  # shown, but not what is judged
    assert f["trustworthy"] is False
    assert "0.40x the gateways' CPU per event" in f["verdict"]


def test_a_lagging_or_saturated_harness_is_not_trusted_however_cheap_per_event():
    lagging = window(1.0, {"gw-1": 10.0}, lag_ms=150.0).figures()
    assert lagging["trustworthy"] is False
    assert "lagged up to 150 ms" in lagging["verdict"]
    busy = window(9.5, {"gw-1": 40.0}).figures()  # 95 % of a core over 10 s
    assert busy["harness_to_gateways"] < MAX_HARNESS_SHARE
    assert busy["trustworthy"] is False
    assert "95% of a core" in busy["verdict"]


def test_unknown_gateways_and_missing_windows_are_said_so():
    f = window(1.0, {}).figures()
    assert f["gateways_us_per_event"] is None and f["harness_to_gateways"] is None
    assert f["trustworthy"] is None
    assert "unknown" in f["verdict"]
    assert CpuWindow().figures()["trustworthy"] is False
    nothing = window(1.0, {"gw-1": 1.0}, events=0).figures()
    assert nothing["trustworthy"] is False
    assert "no event was delivered" in nothing["verdict"]


def test_a_killed_node_counts_up_to_its_last_sample_and_its_restart_from_zero():
    w = window(1.0, {"gw-1": 4.0}, nats={"nats-0:100": 1.0})
    w.start.gateways["gw-gone"] = 3.0  # in the start point only: not counted
    w.start.nats["nats-1:101"] = 5.0
    w.end.nats["nats-1:101"] = 5.8  # killed in the window: the harness keeps its last sample
    w.end.nats["nats-1:102"] = 0.5  # its restart, a new pid: from zero
    f = w.figures()
    assert f["gateways_cpu_s"] == 4.0
    assert f["nats_cpu_s"] == 2.3


def test_without_nats_samples_the_row_is_the_gateways_alone():
    f = window(1.0, {"gw-1": 4.0}).figures()  # a --target run: no NATS pids
    assert f["nats_cpu_s"] is None and f["harness_to_gateways_and_nats"] is None
    row = dict(cpu_rows(f))["CPU per delivered event"]
    assert "NATS" not in row
    assert row.startswith("harness (fast client) 100 us, gateways 400 us (psutil), ratio 0.25;")


def test_the_report_row_puts_nats_beside_the_gateways():
    f = window(1.6, {"gw-1": 4.0}, nats={"nats-0": 2.0}).figures()
    rows = dict(cpu_rows(f))
    assert rows["CPU per delivered event"] == (
        "harness (fast client) 160 us, gateways 400 us (psutil), NATS 200 us, "
        "ratio 0.4 (0.267 of gateways + NATS); 10000 events in 10 s, both directions"
    )
    assert rows["measured"].startswith("this run measured the load generator")


@given(
    harness=st.floats(0.01, 20.0),
    gateways=st.floats(0.01, 20.0),
    lag=st.floats(0.0, 300.0),
)
def test_trusted_exactly_when_cheap_enough_not_lagging_and_not_saturated(harness, gateways, lag):
    f = window(harness, {"gw-1": gateways}, lag_ms=lag).figures()
    spent = (5.0 + harness) - 5.0  # as the window subtracts its two points
    ratio = round(spent / round((1.0 + gateways) - 1.0, 3), 3)  # a gateway's seconds: to 1 ms
    assert f["harness_to_gateways"] == ratio
    assert f["trustworthy"] is (ratio <= MAX_HARNESS_SHARE and lag <= 100.0 and spent <= 9.0)
