import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.shortcodes import is_code, new_code


class FixedRandom(random.Random):
    def __init__(self, value):
        super().__init__(0)
        self.value = value
        self.calls = []

    def randrange(self, *args):
        self.calls.append(args)
        return self.value


def test_format_and_round_trip():
    for rng in (random.Random(1), random.SystemRandom()):
        for _ in range(1000):
            code = new_code(rng)
            assert len(code) == 6 and code.isdigit() and is_code(code)


def test_full_range_zero_padded():
    assert new_code(FixedRandom(0)) == "000000"
    assert new_code(FixedRandom(42)) == "000042"
    assert new_code(FixedRandom(999_999)) == "999999"
    rng = FixedRandom(7)
    new_code(rng)
    assert rng.calls == [(1_000_000,)]


def test_roughly_uniform_digits():
    rng = random.Random(12345)
    codes = [new_code(rng) for _ in range(20_000)]
    for position in range(6):
        counts = Counter(code[position] for code in codes)
        assert set(counts) == set("0123456789")
        assert all(1700 <= c <= 2300 for c in counts.values()), (position, counts)


@pytest.mark.parametrize("good", ["000000", "123456", "999999", "012345"])
def test_accepts(good):
    assert is_code(good)


@pytest.mark.parametrize(
    "bad",
    [
        " 12345",
        "12345 ",
        "123456\n",
        "\n123456",
        "12345",
        "1234567",
        "",
        "12a456",
        "+12345",
        "-12345",
        "12_345",
        "１２３４５６",  # fullwidth digits
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "12345\u00b2",  # superscript two: str.isdigit() says yes
        123456,
        12345.0,
        None,
        b"123456",
        ["123456"],
    ],
)
def test_rejects(bad):
    assert not is_code(bad)


@given(st.text(max_size=8))
def test_is_code_matches_definition(s):
    expected = len(s) == 6 and all(c in "0123456789" for c in s)
    assert is_code(s) == expected
