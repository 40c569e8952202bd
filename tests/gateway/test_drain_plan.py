import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drain_plan import RECONNECT_JITTER, DrainPlanner, reconnect_delay, spread_stats


class MaxRandom(random.Random):
    """random() returns its largest possible value: probes the window's open end."""

    def random(self):
        return 1.0 - 2.0**-53

    def shuffle(self, x):
        pass  # random.shuffle rejects draws this large forever


def check_plan(plan, items, now, window):
    times = [t for t, _ in plan]
    assert times == sorted(times)
    assert all(now <= t < now + window for t in times)
    assert sorted(item for _, item in plan) == sorted(items)


@given(
    n=st.integers(0, 500),
    seed=st.integers(0, 2**32),
    now=st.floats(-1e6, 1e9, allow_nan=False),
    window=st.floats(0.5, 600.0, allow_nan=False),
)
def test_plan_is_inside_window_sorted_each_item_once(n, seed, now, window):
    items = list(range(n))
    plan = DrainPlanner(window, random.Random(seed)).plan(items, now)
    assert len(plan) == n
    check_plan(plan, items, now, window)


def test_empty_plan():
    assert DrainPlanner(30.0, random.Random(1)).plan([], 5.0) == []


def test_items_need_not_be_comparable():
    items = [object() for _ in range(20)]
    plan = DrainPlanner(10.0, random.Random(1)).plan(items, 0.0)
    assert {id(item) for _, item in plan} == {id(item) for item in items}


def test_open_end_of_window_even_when_rounding_pushes_up():
    for n, now, window in [(1, 0.0, 3.0), (2, 0.1, 3.0), (3, 1e6 + 0.3, 30.0), (7, 1e9, 0.7)]:
        plan = DrainPlanner(window, MaxRandom()).plan(list(range(n)), now)
        check_plan(plan, list(range(n)), now, window)


def test_spread_with_200_items():
    plan = DrainPlanner(30.0, random.Random(7)).plan(list(range(200)), 1000.0)
    stats = spread_stats([t for t, _ in plan], 1000.0, 30.0)
    assert sum(stats["counts"]) == 200
    assert stats["outside"] == 0
    assert all(19 <= c <= 21 for c in stats["counts"]), stats
    assert stats["first"] < 30.0 / 200
    assert stats["last"] >= 30.0 - 30.0 / 200


@given(
    n=st.integers(1, 500),
    seed=st.integers(0, 2**32),
    now=st.floats(0.0, 1e6, allow_nan=False),
)
def test_each_tenth_gets_its_fair_share_within_one(n, seed, now):
    window = 60.0
    plan = DrainPlanner(window, random.Random(seed)).plan(list(range(n)), now)
    stats = spread_stats([t for t, _ in plan], now, window)
    share = n / 10
    assert sum(stats["counts"]) == n
    assert math.floor(share) - 1 <= stats["min"]
    assert stats["max"] <= math.ceil(share) + 1


def test_different_seeds_give_different_orders():
    items = list(range(50))
    orders = {
        tuple(item for _, item in DrainPlanner(10.0, random.Random(seed)).plan(items, 0.0))
        for seed in range(20)
    }
    assert len(orders) == 20
    firsts = {DrainPlanner(10.0, random.Random(seed)).plan(items, 0.0)[0][1] for seed in range(100)}
    assert len(firsts) > 20  # no client is always the first to go


def test_same_seed_same_plan():
    items = list(range(30))
    assert DrainPlanner(5.0, random.Random(3)).plan(items, 1.0) == DrainPlanner(
        5.0, random.Random(3)
    ).plan(items, 1.0)


def test_plan_does_not_mutate_input():
    items = list(range(10))
    DrainPlanner(5.0, random.Random(3)).plan(items, 0.0)
    assert items == list(range(10))


@pytest.mark.parametrize("window", [0.0, -1.0, math.nan, math.inf])
def test_window_validation(window):
    with pytest.raises(ValueError):
        DrainPlanner(window, random.Random())


def test_spread_stats_shape():
    stats = spread_stats([0.0, 0.5, 9.99, 10.0, -1.0], 0.0, 10.0, buckets=5)
    assert stats == {
        "counts": [2, 0, 0, 0, 1],
        "max": 2,
        "min": 0,
        "n": 5,
        "outside": 2,
        "first": -1.0,
        "last": 10.0,
    }
    empty = spread_stats([], 0.0, 10.0)
    assert empty["counts"] == [0] * 10
    assert (empty["first"], empty["last"], empty["max"], empty["min"]) == (None, None, 0, 0)
    with pytest.raises(ValueError):
        spread_stats([], 0.0, 0.0)
    with pytest.raises(ValueError):
        spread_stats([], 0.0, 1.0, buckets=0)


@given(seed=st.integers(0, 2**32), cap=st.floats(1e-6, 120.0, allow_nan=False))
def test_reconnect_delay_range(seed, cap):
    rng = random.Random(seed)
    for _ in range(20):
        assert 0.0 <= reconnect_delay(rng, cap) < cap


def test_reconnect_delay_default_and_edges():
    rng = random.Random(5)
    delays = [reconnect_delay(rng) for _ in range(2000)]
    assert all(0.0 <= d < RECONNECT_JITTER for d in delays)
    assert min(delays) < 0.01 and max(delays) > 0.24  # spread, not pinned
    assert reconnect_delay(MaxRandom(), 3.0) < 3.0
    assert reconnect_delay(rng, 0.0) == 0.0
    for cap in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            reconnect_delay(rng, cap)
