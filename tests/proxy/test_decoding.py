"""proxy.decoding: Content-Encoding decoded under a bound, fed in arbitrary raw chunks."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.address_policy import Refused
from proxy.decoding import BodyDecoder, parse_codings


def encode(coding: str | None, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "raw-deflate":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    return data


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


@settings(max_examples=150, deadline=None)
@given(
    coding=st.sampled_from([None, "gzip", "deflate", "raw-deflate"]),
    data=st.one_of(st.binary(max_size=3000), st.integers(0, 5000).map(lambda n: b"\0" * n)),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    limit=st.integers(0, 4000),
)
def test_decodes_exactly_or_refuses_past_the_limit(coding, data, cuts, limit):
    header = "deflate" if coding == "raw-deflate" else coding
    decoder = BodyDecoder.for_header(header, limit)
    out = bytearray()
    chunks = split(encode(coding, data), cuts)
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
        decoder.finish()
    except Refused as err:
        assert err.code == "too_large" and len(data) > limit
        # A compressed body is cut one byte past the limit; an identity one is no bigger
        # than the raw chunk that was already received.
        slack = max(map(len, chunks)) if coding is None else 1
        assert decoder.decoded <= limit + slack
    else:
        assert len(data) <= limit and bytes(out) == data


def test_bomb_in_one_chunk_decodes_at_most_the_limit():
    """16 MiB of zeros gzip to ~16 KiB: one feed() must not inflate them all."""
    bomb = gzip.compress(b"\0" * (16 << 20))
    decoder = BodyDecoder.for_header("gzip", 100_000)
    with pytest.raises(Refused) as err:
        decoder.feed(bomb)
    assert err.value.code == "too_large"
    assert decoder.decoded == 100_001


@pytest.mark.parametrize(
    ("header", "coding"),
    [(None, None), ("", None), ("identity", None), ("GZip", "gzip"), ("x-gzip", "gzip")]
    + [("deflate", "deflate"), ("identity, gzip", "gzip"), (" gzip ,", "gzip")],
)
def test_one_known_coding_accepted(header, coding):
    assert parse_codings(header) == coding


@pytest.mark.parametrize("header", ["gzip, gzip", "gzip,deflate", "br", "zstd", "compress", "x"])
def test_stacked_or_unknown_coding_refused(header):
    with pytest.raises(Refused) as err:
        parse_codings(header)
    assert err.value.code == "bad_encoding"


def test_corrupt_body_refused():
    with pytest.raises(Refused) as err:
        BodyDecoder.for_header("gzip", 1000).feed(b"not gzip at all")
    assert err.value.code == "bad_encoding"
