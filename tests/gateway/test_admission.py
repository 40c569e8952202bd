import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.admission import (
    MAX_RETRY_AFTER,
    Admission,
    Decision,
    TokenBucket,
    retry_after_header,
)

# ---- TokenBucket: exact arithmetic (rates and steps are powers of two) -------------------


def test_starts_full_and_empties_after_burst():
    b = TokenBucket(rate=2.0, burst=4.0, now=100.0)
    assert b.level(100.0) == 4.0
    assert [b.try_take(100.0) for _ in range(5)] == [True, True, True, True, False]
    assert b.level(100.0) == 0.0


def test_refills_at_rate():
    b = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    for _ in range(4):
        assert b.try_take(0.0)
    assert b.level(0.25) == 0.5
    assert not b.try_take(0.25)
    assert b.level(0.5) == 1.0
    assert b.try_take(0.5)
    assert b.level(0.5) == 0.0


def test_refill_is_capped_at_burst():
    b = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    assert b.try_take(0.0, 3.0)
    assert b.level(1000.0) == 4.0
    assert b.try_take(1000.0, 4.0)
    assert not b.try_take(1000.0)


def test_fractional_takes():
    b = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    assert b.try_take(0.0, 0.5)
    assert b.try_take(0.0, 0.5)
    assert not b.try_take(0.0, 0.5)
    assert b.try_take(0.0, 0.0)


def test_retry_after_exact():
    b = TokenBucket(rate=4.0, burst=2.0, now=10.0)
    assert b.retry_after(10.0) == 0.0
    assert b.try_take(10.0, 2.0)
    assert b.retry_after(10.0) == 0.25
    assert b.retry_after(10.0, 2.0) == 0.5
    assert b.retry_after(10.125) == 0.125
    assert not b.try_take(10.125)
    assert b.try_take(10.25)


def test_retry_after_is_inf_when_never():
    b = TokenBucket(rate=0.0, burst=1.0, now=0.0)
    assert b.retry_after(0.0) == 0.0
    assert b.try_take(0.0)
    assert b.retry_after(0.0) == math.inf
    assert b.retry_after(1e9) == math.inf
    assert not b.try_take(1e9)
    # More than the bucket can ever hold.
    assert TokenBucket(rate=1.0, burst=2.0, now=0.0).retry_after(0.0, 3.0) == math.inf


def test_infinite_rate_refills_at_once():
    b = TokenBucket(rate=math.inf, burst=2.0, now=0.0)
    assert b.try_take(0.0, 2.0)
    assert not b.try_take(0.0)
    w = b.retry_after(0.0)
    assert 0.0 < w < 1e-300
    assert b.try_take(0.0 + w)


def test_time_going_backwards_counts_as_no_time():
    b = TokenBucket(rate=1.0, burst=2.0, now=10.0)
    assert b.try_take(10.0, 2.0)
    assert b.level(5.0) == 0.0
    assert not b.try_take(5.0)
    # The bucket keeps the latest time seen: going forward from 5 again mints nothing.
    assert b.level(9.0) == 0.0
    assert b.level(10.0) == 0.0
    assert b.level(10.5) == 0.5
    assert b.retry_after(3.0) == 8.0  # from 3.0: the token is there at 10.5 + 0.5
    assert b.try_take(11.0)


def test_validation():
    for rate, burst in [(-1.0, 1.0), (math.nan, 1.0), (1.0, 0.5), (1.0, 0.0), (1.0, math.nan)]:
        with pytest.raises(ValueError):
            TokenBucket(rate=rate, burst=burst, now=0.0)
    TokenBucket(rate=0.0, burst=1.0, now=0.0)
    b = TokenBucket(rate=1.0, burst=1.0, now=0.0)
    with pytest.raises(ValueError):
        b.try_take(0.0, -1.0)
    with pytest.raises(ValueError):
        b.retry_after(0.0, math.nan)


steps = st.lists(
    st.tuples(
        st.floats(-5.0, 5.0, allow_nan=False),  # dt, sometimes backwards
        st.floats(0.0, 3.0, allow_nan=False),  # n
    ),
    max_size=200,
)


@given(
    rate=st.floats(0.0, 100.0, allow_nan=False),
    burst=st.floats(1.0, 50.0, allow_nan=False),
    start=st.floats(-1e6, 1e6, allow_nan=False),
    seq=steps,
)
def test_never_admits_more_than_burst_plus_rate_times_elapsed(rate, burst, start, seq):
    b = TokenBucket(rate=rate, burst=burst, now=start)
    now = latest = start
    taken = 0.0
    for dt, n in seq:
        now += dt
        latest = max(latest, now)
        if b.try_take(now, n):
            taken += n
        bound = burst + rate * (latest - start)
        assert taken <= bound + 1e-9 * max(1.0, bound, abs(start) * rate)
        assert 0.0 <= b.level(now) <= burst


@given(
    rate=st.floats(0.001, 1000.0, allow_nan=False),
    burst=st.floats(1.0, 50.0, allow_nan=False),
    start=st.floats(-1e6, 1e6, allow_nan=False),
    seq=steps,
    n=st.floats(0.0, 1.0, allow_nan=False),
)
def test_waiting_retry_after_is_always_enough(rate, burst, start, seq, n):
    b = TokenBucket(rate=rate, burst=burst, now=start)
    now = start
    for dt, k in seq:
        now += dt
        b.try_take(now, k)
    w = b.retry_after(now, n)
    assert w >= 0.0
    if w > 0.0:
        assert not b.try_take(now, n)
    assert b.try_take(now + w, n)


# ---- Admission ---------------------------------------------------------------------------


def test_new_flood_never_touches_resumes():
    """10 s of 50 new/s (10x the new rate) and 20 resumes/s: every resume gets in."""
    adm = Admission(new_rate=5.0, new_burst=10.0, resume_rate=50.0, resume_burst=100.0, now=0.0)
    arrivals = [(i / 50, False) for i in range(500)] + [(i / 20, True) for i in range(200)]
    arrivals.sort()
    results = {False: [], True: []}
    for t, resume in arrivals:
        d = adm.decide(resume=resume, now=t)
        results[resume].append(d)
        if resume:
            assert d == Decision(True, "resume", 0, 0.0, d.reason)
    # The resume bucket only ever lost the resumes' own tokens.
    assert adm.resume_bucket.level(10.0) == 100.0

    new = results[False]
    admitted = [d for d in new if d.admit]
    rejected = [d for d in new if not d.admit]
    # burst + rate * elapsed, the last arrival at 9.98 s: 10 + 49.9.
    assert 58 <= len(admitted) <= 59
    assert all(d.lane == "new" and d.status == 0 and d.retry_after == 0.0 for d in admitted)
    assert len(rejected) == 500 - len(admitted)
    for d in rejected:
        assert (d.lane, d.status) == ("rejected", 429)
        assert 0.0 < d.retry_after <= 1 / 5.0
    assert adm.counts == {
        "new": len(admitted),
        "resume": 200,
        "resume-fallback": 0,
        "rejected_new": len(rejected),
        "rejected_resume": 0,
        "draining": 0,
    }


def test_empty_resume_lane_falls_back_to_new_lane():
    adm = Admission(new_rate=0.0, new_burst=2.0, resume_rate=0.0, resume_burst=1.0, now=0.0)
    lanes = [adm.decide(resume=True, now=0.0).lane for _ in range(4)]
    assert lanes == ["resume", "resume-fallback", "resume-fallback", "rejected"]
    assert adm.new_bucket.level(0.0) == 0.0
    # The fallback used up the new lane: new sessions are refused now.
    assert not adm.decide(resume=False, now=0.0).admit


def test_new_sessions_never_take_from_resume_lane():
    adm = Admission(new_rate=0.0, new_burst=1.0, resume_rate=0.0, resume_burst=100.0, now=0.0)
    assert adm.decide(resume=False, now=0.0).lane == "new"
    for _ in range(50):
        d = adm.decide(resume=False, now=0.0)
        assert (d.admit, d.lane, d.status) == (False, "rejected", 429)
        assert d.retry_after == math.inf
    assert adm.resume_bucket.level(0.0) == 100.0
    assert adm.decide(resume=True, now=0.0).lane == "resume"
    assert adm.counts["rejected_new"] == 50


def test_both_lanes_empty_retry_after_is_the_sooner():
    adm = Admission(new_rate=1.0, new_burst=1.0, resume_rate=4.0, resume_burst=1.0, now=0.0)
    assert adm.decide(resume=True, now=0.0).lane == "resume"
    assert adm.decide(resume=True, now=0.0).lane == "resume-fallback"
    d = adm.decide(resume=True, now=0.0)
    assert (d.admit, d.lane, d.status, d.retry_after) == (False, "rejected", 429, 0.25)
    assert adm.decide(resume=False, now=0.0).retry_after == 1.0

    adm = Admission(new_rate=8.0, new_burst=1.0, resume_rate=2.0, resume_burst=1.0, now=0.0)
    adm.decide(resume=True, now=0.0)
    adm.decide(resume=True, now=0.0)
    assert adm.decide(resume=True, now=0.0).retry_after == 0.125
    assert adm.counts["rejected_resume"] == 1


def test_draining_refuses_everyone_without_taking_tokens():
    adm = Admission(new_rate=1.0, new_burst=5.0, resume_rate=1.0, resume_burst=5.0, now=0.0)
    for resume in (False, True):
        d = adm.decide(resume=resume, now=0.0, draining=True)
        assert (d.admit, d.lane, d.status, d.retry_after) == (False, "draining", 503, 1.0)
    assert adm.counts["draining"] == 2
    assert adm.new_bucket.level(0.0) == 5.0
    assert adm.resume_bucket.level(0.0) == 5.0
    assert adm.decide(resume=False, now=0.0).admit


def test_decision_is_frozen():
    d = Decision(True, "new", 0, 0.0, "x")
    with pytest.raises(AttributeError):
        d.admit = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("seconds", "header"),
    [
        (0.0, "1"),
        (0.001, "1"),
        (1.0, "1"),
        (1.0000001, "2"),
        (2.5, "3"),
        (59.0, "59"),
        (-3.0, "1"),
        (math.nan, "1"),
        (math.inf, str(MAX_RETRY_AFTER)),
        (1e12, str(MAX_RETRY_AFTER)),
    ],
)
def test_retry_after_header(seconds, header):
    assert retry_after_header(seconds) == header
