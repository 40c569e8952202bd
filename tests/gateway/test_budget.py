"""The send budget (gateway/budget.py): token buckets that slow a flood and then close it, and
never delay a client within its rates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.budget import CLOSE, GO, MIB, Budget, BudgetSettings, CarriedBudget
from gateway.codec import MAX_EVENTS_PER_BATCH, MAX_FRAME_BYTES
from gateway.session_store import SessionMeta

EPS = 1e-6


@dataclass
class Run:
    admitted: list[tuple[float, int, int]] = field(default_factory=list)  # (time, events, bytes)
    waits: list[tuple[float, float]] = field(default_factory=list)  # (asked at, seconds)
    closed_at: float | None = None


def shell(s: BudgetSettings, frames, cuts: frozenset[int] = frozenset(), base: float = 0.0) -> Run:
    """What the connection does: frames in order, none before it arrives or before the one
    ahead of it is admitted; a held frame is asked again after its wait. Before each frame
    index in `cuts` the client reconnects: the new connection (another gateway: its own
    monotonic clock, offset by `base` per reconnect) starts from the buckets the last one
    carried, at the same wall-clock instant."""
    b, t, offset, run = Budget(s, 0.0), 0.0, 0.0, Run()
    for i, (at, events, nbytes) in enumerate(frames):
        t = max(t, at)
        if i in cuts:
            carried = b.carry(t + offset, wall=1e9 + t)
            offset += base
            b = Budget(s, t + offset, carried, wall=1e9 + t)
        for _ in range(10_000):
            r = b.take(events, nbytes, t + offset)
            if r == GO:
                run.admitted.append((t, events, nbytes))
                break
            if r == CLOSE:
                run.closed_at = t
                return run
            run.waits.append((t, r))
            t += r
        else:
            raise AssertionError("a frame was held forever")
    return run


budgets = st.builds(
    BudgetSettings,
    event_rate=st.floats(1, 5000),
    event_burst=st.floats(MAX_EVENTS_PER_BATCH, 20_000),
    byte_rate=st.floats(0.05 * MIB, 20 * MIB),
    byte_burst=st.floats(MAX_FRAME_BYTES, 16 * MIB),
    grace=st.floats(0, 20),
)
frame_lists = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(0, 3)),  # gap after the previous frame's arrival
        st.integers(1, MAX_EVENTS_PER_BATCH),
        st.integers(1, MAX_FRAME_BYTES),
    ),
    max_size=60,
)


def arrivals(raw: list[tuple[float, int, int]]) -> list[tuple[float, int, int]]:
    out, t = [], 0.0
    for gap, events, nbytes in raw:
        t += gap
        out.append((t, events, nbytes))
    return out


def within(s: BudgetSettings, frames, margin: float = 0.0) -> bool:
    """The envelope: every run of consecutive frames fits rate * its duration + burst."""
    for j in range(len(frames)):
        events = nbytes = 0
        for i in range(j, -1, -1):
            dt = frames[j][0] - frames[i][0]
            events += frames[i][1]
            nbytes += frames[i][2]
            if events > s.event_rate * dt + s.event_burst * (1 - margin):
                return False
            if nbytes > s.byte_rate * dt + s.byte_burst * (1 - margin):
                return False
    return True


@settings(max_examples=80, deadline=None)
@given(budgets, frame_lists)
def test_never_admits_more_than_rate_times_t_plus_burst(s, raw):
    run = shell(s, arrivals(raw))
    assert within(s, run.admitted, margin=-EPS)


@settings(max_examples=80, deadline=None)
@given(budgets, frame_lists)
def test_a_client_within_its_budget_is_never_delayed(s, raw):
    kept: list[tuple[float, int, int]] = []
    for frame in arrivals(raw):  # drop what would leave the envelope (with a margin)
        if within(s, [*kept, frame], margin=EPS):
            kept.append(frame)
    run = shell(s, kept)
    assert run.waits == [] and run.closed_at is None
    assert run.admitted == kept


@settings(max_examples=80, deadline=None)
@given(budgets, frame_lists)
def test_waits_are_bounded_and_the_close_comes_only_after_the_grace_period(s, raw):
    run = shell(s, arrivals(raw))
    for _, wait in run.waits:
        assert 0 < wait <= s.longest_wait + EPS
    if run.closed_at is not None:
        assert run.waits, "closed without ever being slowed"
        assert run.closed_at - run.waits[0][0] >= s.grace


@settings(max_examples=50, deadline=None)
@given(budgets, st.integers(64 * 1024, MAX_FRAME_BYTES), st.integers(0, 100))
def test_a_flood_is_closed_within_burst_time_plus_grace(s, size, tiny_every):
    """Back to back frames, some tiny ones slipped into the last tokens: closed once the
    burst is gone and the grace period has passed, plus at most one wait."""
    flood = ((0.0, 1, 1 if tiny_every and i % tiny_every == 0 else size) for i in range(10**6))
    run = shell(s, flood)
    assert run.closed_at is not None
    first_wait = run.waits[0][0]
    assert first_wait + s.grace <= run.closed_at <= first_wait + s.grace + s.longest_wait + EPS


def test_the_defaults_fit_a_real_page_and_stop_the_flood_of_issue_12():
    s = BudgetSettings()
    # A 5 MiB snapshot in 128 KiB chunks, 8 per frame, then 8 x 120 KiB canvas frames.
    page = [(0.0, 8, 8 * 128 * 1024)] * 5 + [(0.1, 1, 120 * 1024 + 64)] * 8
    page += [(0.2 + i * 0.05, 3, 400) for i in range(200)]  # then 20 small events/s
    run = shell(s, page)
    assert run.waits == [] and len(run.admitted) == len(page)

    # Issue 12's flood: 8 x 120 KiB canvas frames in a loop, at 20 MiB/s.
    frame = 120 * 1024 + 64
    flood = [(i * frame / (20 * MIB), 1, frame) for i in range(2000)]
    run = shell(s, flood)
    assert run.closed_at is not None
    stored = sum(n for _, _, n in run.admitted)
    assert stored <= s.byte_burst + s.byte_rate * run.closed_at + EPS
    assert stored < 30 * MIB and 10 < run.closed_at < 11 + s.longest_wait


def test_a_client_that_slows_down_is_not_closed_for_an_earlier_streak():
    s = BudgetSettings(grace=5.0)
    b = Budget(s, 0.0)
    assert b.take(1, int(s.byte_burst), 0.0) == GO
    wait = b.take(1, MIB, 0.0)  # over: held half a second
    assert wait == pytest.approx(0.5)
    assert b.take(1, MIB, 0.5) == GO
    # It goes quiet long enough to refill half its burst, then sends a little: the streak ends.
    assert b.take(1, 1000, 3.0) == GO and b.over_since is None
    assert b.take(1, int(s.byte_burst), 7.0) == GO  # bucket full again by 7 s
    assert b.take(1, MIB, 7.0) > 0  # a new streak from 7 s, not from 0
    assert b.take(1, MIB, 11.0) == GO


def test_bursts_must_hold_one_full_frame():
    with pytest.raises(ValueError):
        BudgetSettings(byte_burst=MAX_FRAME_BYTES - 1)
    with pytest.raises(ValueError):
        BudgetSettings(event_burst=MAX_EVENTS_PER_BATCH - 1)
    with pytest.raises(ValueError):
        BudgetSettings(byte_rate=0)


# ---- a visitor's buckets carried from one connection of its session to the next ---------------


@settings(max_examples=60, deadline=None)
@given(budgets, frame_lists, st.sets(st.integers(0, 60)), st.floats(-1e4, 1e4))
def test_reconnecting_never_buys_more_than_rate_times_t_plus_burst(s, raw, cuts, base):
    run = shell(dataclasses.replace(s, grace=1e9), arrivals(raw), frozenset(cuts), base)
    assert within(s, run.admitted, margin=-EPS)


def test_a_carried_record_never_grants_more_than_a_burst_nor_refills_for_negative_time():
    s = BudgetSettings()
    ahead = Budget(s, 5.0, CarriedBudget(0.0, 0.0, at=2000.0), wall=1000.0)  # clock ahead
    assert (ahead.events, ahead.bytes) == (0.0, 0.0)
    junk = Budget(s, 5.0, CarriedBudget(1e18, -5.0, at=0.0), wall=0.0)
    assert (junk.events, junk.bytes) == (s.event_burst, 0.0)
    later = Budget(s, 5.0, CarriedBudget(0.0, 0.0, at=100.0), wall=101.0)  # a second passed
    assert (later.events, later.bytes) == (s.event_rate, s.byte_rate)


def test_a_session_keeps_its_carried_budget_and_ignores_a_malformed_one():
    meta = SessionMeta(budget=CarriedBudget(3.0, 4.5, 100.0))
    assert SessionMeta.from_bytes(meta.to_bytes()).budget == CarriedBudget(3.0, 4.5, 100.0)
    for bad in (b'{"budget":[1,2]}', b'{"budget":"x"}', b'{"budget":[1,"2",3]}'):
        assert SessionMeta.from_bytes(bad).budget is None


# ---- the session's lifetime byte cap ---------------------------------------------------------


@given(st.lists(st.integers(1, MAX_FRAME_BYTES), max_size=40), st.sets(st.integers(0, 40)))
def test_a_session_never_sends_past_its_byte_cap_however_it_reconnects(sizes, cuts):
    s = BudgetSettings(byte_burst=64 * MIB, byte_rate=64 * MIB, session_bytes=4 * MIB)
    b, sent, refused = Budget(s, 0.0), 0, False
    for i, n in enumerate(sizes):
        if i in cuts:
            b = Budget(s, float(i), b.carry(float(i), wall=float(i)), wall=float(i))
        if b.session_full(n):
            refused = True
            continue
        assert b.take(1, n, float(i)) == GO
        sent += n
    assert sent <= s.session_bytes
    assert refused == (sum(sizes) > s.session_bytes)  # refused only what would pass the cap


def test_a_carried_record_without_a_count_starts_at_zero_and_a_full_one_is_full():
    s = BudgetSettings(session_bytes=2 * MIB)
    assert SessionMeta.from_bytes(b'{"budget":[1,2,3]}').budget.sent == 0.0  # older records
    full = Budget(s, 0.0, CarriedBudget(10.0, 10.0, 0.0, sent=2 * MIB), wall=0.0)
    assert full.session_full() and full.session_full(1)
    near = Budget(s, 0.0, CarriedBudget(10.0, 10.0, 0.0, sent=MIB), wall=0.0)
    assert not near.session_full() and not near.session_full(MIB) and near.session_full(MIB + 1)
