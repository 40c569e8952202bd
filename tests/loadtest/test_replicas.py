"""The replicated-stream figures (loadtest/bench/replicas.py), with small counts: the leader's
tail never misses an acknowledged publish, and each race has one winner."""

from __future__ import annotations

import pytest
import trio

from loadtest.bench import replicas


@pytest.mark.timeout(120)
def test_the_leader_tail_is_never_stale_and_each_race_has_one_winner():
    got = trio.run(replicas.measure, 100, 5, 3)
    assert got["reads"] == 200
    assert got["stale"]["leader"] == 0
    assert 0 <= got["stale"]["direct get"] <= 200
    assert got["races"]["stored"] == 3
    assert sum(got["races"].values()) == 15
    assert set(got["races"]) <= {"stored", "10164", "10071 wrong last sequence: N"}
