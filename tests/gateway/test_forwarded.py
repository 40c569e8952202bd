"""The client address behind trusted reverse proxies (gateway/forwarded.py), sans-I/O."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.forwarded import forwarded_client

addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
)


@settings(max_examples=50)
@given(
    client=addresses,
    forged=st.lists(addresses, max_size=4),
    proxies=st.lists(addresses, min_size=1, max_size=4),
    per_line=st.integers(1, 3),
    sep=st.sampled_from([",", ", ", " ,  "]),
)
def test_the_client_is_found_behind_its_proxies_whatever_it_forged(
    client, forged, proxies, per_line, sep
):
    """Each trusted proxy appends the address it received from; the client may send any
    X-Forwarded-For of its own, which comes first. The header may arrive as several lines."""
    hops = [*forged, client, *proxies[:-1]]  # the last proxy is the TCP peer, not in the header
    header = [sep.join(hops[i : i + per_line]) for i in range(0, len(hops), per_line)]
    assert forwarded_client(header, proxies[-1], len(proxies)) == client


def test_no_trusted_proxy_means_the_peer():
    assert forwarded_client(["6.6.6.6"], "10.0.0.9", 0) == "10.0.0.9"
    assert forwarded_client(["6.6.6.6"], "10.0.0.9", -1) == "10.0.0.9"


def test_no_header_means_the_peer():
    assert forwarded_client([], "10.0.0.9", 1) == "10.0.0.9"
    assert forwarded_client([" ", ", ,"], "10.0.0.9", 2) == "10.0.0.9"


def test_a_header_shorter_than_the_hops_gives_its_first_entry():
    """A client that reached us past fewer proxies than configured: the leftmost entry is the
    best there is (and the one a proxy in front wrote, if any)."""
    assert forwarded_client(["1.1.1.1, 2.2.2.2"], "10.0.0.9", 3) == "1.1.1.1"


def test_several_header_lines_read_as_one_list():
    assert forwarded_client(["1.1.1.1", "2.2.2.2, 3.3.3.3"], "10.0.0.9", 2) == "2.2.2.2"
