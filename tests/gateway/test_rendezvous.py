import hashlib
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from gateway.rendezvous import order, weight

NODES = ["gw-a", "gw-b", "gw-c", "gw-d", "gw-e"]
KEYS = [f"s{i:05d}" for i in range(2000)]


def test_weight_is_64_bit_blake2b_big_endian():
    digest = hashlib.blake2b(b"s1\x00gw-a", digest_size=8).digest()
    assert weight("s1", "gw-a") == int.from_bytes(digest, "big")
    assert 0 <= weight("s1", "gw-a") < 2**64
    assert weight("s1", "gw-a") != weight("s1", "gw-b")


@given(key=st.text(max_size=30), nodes=st.lists(st.text(max_size=10), max_size=8))
def test_order_is_a_permutation_without_duplicates(key, nodes):
    result = order(key, nodes)
    assert sorted(result) == sorted(set(nodes))
    weights = [weight(key, n) for n in result]
    assert weights == sorted(weights, reverse=True)


def test_deterministic_and_independent_of_input_order():
    for key in KEYS[:200]:
        first = order(key, NODES)
        assert order(key, NODES) == first
        assert order(key, list(reversed(NODES))) == first
        assert order(key, NODES + NODES[:2]) == first


def test_empty_nodes():
    assert order("s1", []) == []


def test_removing_a_node_moves_only_its_keys_to_their_second_choice():
    before = {key: order(key, NODES) for key in KEYS}
    for gone in NODES:
        remaining = [n for n in NODES if n != gone]
        moved = 0
        for key in KEYS:
            after = order(key, remaining)
            # The relative order of the others never changes.
            assert after == [n for n in before[key] if n != gone]
            if before[key][0] == gone:
                assert after[0] == before[key][1]
                moved += 1
            else:
                assert after[0] == before[key][0]
        assert 300 <= moved <= 500  # about 2000 / 5


def test_adding_a_node_only_takes_keys_to_it():
    before = {key: order(key, NODES[:4])[0] for key in KEYS}
    for key in KEYS:
        now = order(key, NODES)[0]
        assert now in (before[key], NODES[4])


def test_balance_three_nodes():
    nodes = ["gw-0", "gw-1", "gw-2"]
    counts = Counter(order(f"session-{i}", nodes)[0] for i in range(3000))
    assert set(counts) == set(nodes)
    assert all(850 <= c <= 1150 for c in counts.values()), counts
