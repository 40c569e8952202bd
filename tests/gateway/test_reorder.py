import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.reorder import ReorderBuffer, ReorderOverflow


@st.composite
def shuffled_with_noise(draw, max_n=60):
    """Seqs 1..n of epoch 5 in any order, with duplicates and epoch-4 leftovers mixed in."""
    n = draw(st.integers(0, max_n))
    keys = [(5, s) for s in range(1, n + 1)]
    if n:
        keys += draw(st.lists(st.sampled_from(keys), max_size=n))
    keys += draw(st.lists(st.tuples(st.just(4), st.integers(1, 100)), max_size=10))
    return n, draw(st.permutations(keys))


@given(shuffled_with_noise())
def test_any_order_releases_each_seq_once_in_order(case):
    n, keys = case
    rb = ReorderBuffer(5)
    out = []
    for t, (e, s) in enumerate(keys):
        released = rb.push(e, s, (e, s), now=t * 0.01)
        assert released == [(5, s) for s in range(len(out) + 1, len(out) + 1 + len(released))]
        out += released
        assert rb.expected == (5, len(out) + 1)
        assert rb.pending <= n
    assert out == [(5, s) for s in range(1, n + 1)]
    assert rb.pending == 0
    assert rb.deadline() is None
    assert rb.gap_due(1e9) is None


def test_release_stops_at_a_missing_seq():
    rb = ReorderBuffer(1)
    assert rb.push(1, 1, "a", 0.0) == ["a"]
    assert rb.push(1, 3, "c", 0.0) == []
    assert rb.push(1, 4, "d", 0.0) == []
    assert rb.push(1, 3, "c'", 0.0) == []  # duplicate of a buffered key
    assert rb.pending == 2
    assert rb.expected == (1, 2)
    assert rb.push(1, 2, "b", 0.0) == ["b", "c", "d"]
    assert rb.push(1, 2, "b'", 0.0) == []  # duplicate of a released key
    assert rb.expected == (1, 5)
    assert rb.pending == 0


def test_gap_is_reported_after_the_timeout_then_again_after_another():
    rb = ReorderBuffer(1, gap_timeout=0.25)
    assert rb.deadline() is None
    assert rb.gap_due(100.0) is None
    rb.push(1, 3, "c", 10.0)
    assert rb.deadline() == 10.25
    rb.push(1, 5, "e", 10.2)  # the gap started with the first push
    assert rb.deadline() == 10.25
    assert rb.gap_due(10.1) is None
    assert rb.gap_due(10.25) == (1, 1)
    assert rb.deadline() == 10.5
    assert rb.gap_due(10.3) is None
    assert rb.gap_due(10.6) == (1, 1)
    assert rb.deadline() == pytest.approx(10.85)
    # the fill closes this gap; a new one (4 missing) starts at the push that found it
    assert rb.push(1, 1, "a", 10.7) == ["a"]
    assert rb.push(1, 2, "b", 10.7) == ["b", "c"]
    assert rb.deadline() == pytest.approx(10.95)
    assert rb.gap_due(10.9) is None
    assert rb.gap_due(10.95) == (1, 4)
    assert rb.push(1, 4, "d", 11.0) == ["d", "e"]
    assert rb.deadline() is None
    assert rb.gap_due(99.0) is None


@given(st.floats(0, 1e6), st.floats(0.001, 10))
def test_gap_due_at_deadline(t0, timeout):
    rb = ReorderBuffer(0, gap_timeout=timeout)
    rb.push(0, 2, "x", t0)
    d = rb.deadline()
    assert rb.gap_due(d) == (0, 1)
    assert rb.deadline() == d + timeout


def test_newer_epoch_waits_for_advance_epoch():
    rb = ReorderBuffer(1)
    assert rb.push(1, 1, "1.1", 0.0) == ["1.1"]
    assert rb.push(2, 1, "2.1", 0.0) == []  # epoch 1 may still have events in flight
    assert rb.push(2, 3, "2.3", 0.0) == []
    assert rb.push(3, 1, "3.1", 0.0) == []
    assert rb.push(1, 3, "1.3", 0.0) == []
    assert rb.pending_newer_epoch() == 2
    assert rb.deadline() == 0.25  # something waits and (1, 2) is missing
    assert rb.push(1, 2, "1.2", 0.1) == ["1.2", "1.3"]
    assert rb.expected == (1, 4)
    assert rb.gap_due(1.0) == (1, 4)
    # the stream has no more of epoch 1
    assert rb.advance_epoch(2, 1.0) == ["2.1"]
    assert rb.expected == (2, 2)
    assert rb.pending_newer_epoch() == 3
    assert rb.deadline() == 1.25
    assert rb.push(2, 2, "2.2", 1.1) == ["2.2", "2.3"]
    assert rb.push(1, 4, "1.4", 1.1) == []  # older epoch: superseded
    assert rb.push(1, 99, "1.99", 1.1) == []
    assert rb.pending == 1
    assert rb.advance_epoch(3, 2.0) == ["3.1"]
    assert rb.pending_newer_epoch() is None
    assert rb.pending == 0
    assert rb.deadline() is None


def test_advance_epoch_drops_stale_epochs_and_only_moves_forward():
    rb = ReorderBuffer(1)
    rb.push(1, 2, "1.2", 0.0)
    rb.push(2, 2, "2.2", 0.0)
    rb.push(4, 1, "4.1", 0.0)
    assert rb.advance_epoch(1, 0.0) == []
    assert rb.advance_epoch(0, 0.0) == []
    assert rb.expected == (1, 1)
    # skipping epoch 2 entirely drops what was buffered for it
    assert rb.advance_epoch(3, 0.5) == []
    assert rb.expected == (3, 1)
    assert rb.pending == 1
    assert rb.pending_newer_epoch() == 4
    assert rb.deadline() == 0.75
    assert rb.advance_epoch(4, 1.0) == ["4.1"]
    assert rb.advance_epoch(3, 1.0) == []
    assert rb.expected == (4, 2)
    assert rb.pending == 0


@given(st.integers(0, 20), st.integers(1, 20), st.data())
def test_epoch_switch_releases_new_epoch_in_order(n_old, n_new, data):
    """Old and new epoch interleaved in any order, the switch at any point: the new epoch is
    released once, in order, after everything of the old epoch that got through."""
    keys = [(1, s) for s in range(1, n_old + 1)] + [(2, s) for s in range(1, n_new + 1)]
    keys = data.draw(st.permutations(keys))
    switch_at = data.draw(st.integers(0, len(keys)))
    rb = ReorderBuffer(1)
    out = []
    for i, key in enumerate(keys):
        if i == switch_at:
            out += rb.advance_epoch(2, float(i))
        out += rb.push(*key, key, now=float(i))
        if i < switch_at:
            assert all(k[0] == 1 for k in out)
    out += rb.advance_epoch(2, 100.0)  # a no-op if it already happened
    old_out = [k for k in out if k[0] == 1]
    assert old_out == [(1, s) for s in range(1, len(old_out) + 1)]
    assert out == old_out + [(2, s) for s in range(1, n_new + 1)]
    assert rb.pending == 0
    assert rb.deadline() is None


def test_overflow_raises_and_does_not_keep_the_item():
    rb = ReorderBuffer(0, max_pending=3)
    for s in (2, 3, 4):
        rb.push(0, s, s, 0.0)
    with pytest.raises(ReorderOverflow):
        rb.push(0, 5, 5, 0.0)
    with pytest.raises(ReorderOverflow):
        rb.push(1, 1, "new epoch", 0.0)
    assert rb.pending == 3
    assert rb.push(0, 3, 3, 0.0) == []  # a duplicate is not an overflow
    assert rb.push(0, 1, 1, 0.0) == [1, 2, 3, 4]  # the expected key always fits


def test_reset_forgets_everything():
    rb = ReorderBuffer(1)
    rb.push(1, 3, "x", 0.0)
    rb.push(2, 1, "y", 0.0)
    rb.reset(7, 40)
    assert rb.expected == (7, 40)
    assert rb.pending == 0
    assert rb.deadline() is None
    assert rb.pending_newer_epoch() is None
    assert rb.push(7, 39, "old", 1.0) == []
    assert rb.push(7, 40, "a", 1.0) == ["a"]


@given(st.integers(1, 5), st.integers(1, 50), st.integers(0, 20), st.integers(0, 60))
def test_a_run_is_taken_whole_only_when_it_is_exactly_what_comes_next(epoch, nxt, n, first):
    rb = ReorderBuffer(epoch, nxt)
    last = first + n
    took = rb.take_run(epoch, first, last)
    assert took == (first == nxt)
    assert rb.expected == ((epoch, last + 1) if took else (epoch, nxt))
    assert not rb.take_run(epoch + 1, rb.expected[1], rb.expected[1])  # another epoch: push it


def test_a_run_waits_behind_a_hole_like_single_events():
    rb = ReorderBuffer(1)
    assert rb.push(1, 3, "c", 0.0) == []
    assert not rb.take_run(1, 1, 2)  # something is held back: one by one, to release it too
    assert rb.push(1, 1, "a", 0.0) + rb.push(1, 2, "b", 0.0) == ["a", "b", "c"]
    assert rb.take_run(1, 4, 9) and rb.expected == (1, 10)
