import random

from hypothesis import given
from hypothesis import strategies as st

from gateway.backoff import Backoff


class MaxRandom(random.Random):
    """uniform(a, b) returns b: exposes the upper bound of each draw."""

    def uniform(self, a, b):
        return b


@given(st.integers(0, 2000), st.integers(0, 2**32))
def test_delays_stay_in_zero_to_cap(attempts, seed):
    b = Backoff(base=0.5, cap=20.0, rng=random.Random(seed))
    for _ in range(attempts):
        b.next_delay()
    for _ in range(5):
        assert 0.0 <= b.next_delay() <= 20.0


def test_huge_attempt_counts_do_not_overflow():
    b = Backoff(base=0.5, cap=20.0, rng=MaxRandom())
    b._attempt = 10**6
    assert b.next_delay() == 20.0
    assert b.attempt == 10**6 + 1


def test_upper_bound_doubles_until_cap():
    b = Backoff(base=0.5, cap=20.0, rng=MaxRandom())
    bounds = [b.next_delay() for _ in range(10)]
    assert bounds == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0, 20.0]
    assert b.attempt == 10


def test_floor_is_respected():
    b = Backoff(base=0.5, cap=20.0, rng=random.Random(1))
    for _ in range(50):
        assert b.next_delay(floor=3.0) >= 3.0
    # a server may ask for more than the cap
    assert b.next_delay(floor=60.0) == 60.0
    hi = Backoff(base=0.5, cap=20.0, rng=MaxRandom())
    hi._attempt = 10
    assert hi.next_delay(floor=3.0) == 20.0  # max(floor, delay), not floor + delay


def test_reset_starts_over():
    b = Backoff(base=1.0, cap=20.0, rng=MaxRandom())
    for _ in range(4):
        b.next_delay()
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() == 1.0


def test_delays_are_jittered():
    b = Backoff(base=0.5, cap=20.0, rng=random.Random(42))
    first = []
    for _ in range(50):
        b.reset()
        first.append(b.next_delay())
    assert len(set(first)) > 40
    assert all(0.0 <= d <= 0.5 for d in first)


def test_jitter_after_cap_spreads_over_zero_to_cap():
    # Jitter before the cap would pin everyone at the cap and resynchronise the clients.
    b = Backoff(base=0.5, cap=20.0, rng=random.Random(7))
    for _ in range(30):
        b.next_delay()
    delays = [b.next_delay() for _ in range(200)]
    assert min(delays) < 20.0 / 4
    assert max(delays) > 3 * 20.0 / 4
    assert len(set(delays)) == 200


def test_default_rng():
    b = Backoff()
    assert 0.0 <= b.next_delay() <= 0.5
