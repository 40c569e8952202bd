"""SSRF defence of the asset proxy (guarantee G4): proxy/address_policy.py."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.address_policy import (
    AllowList,
    Refused,
    check_ip,
    check_literal,
    check_redirect,
    choose_address,
    literal_ip,
    parse_target,
)

NO_ALLOW = AllowList()


def fetch_plan(url: str, dns: dict[str, list[str]], allow: AllowList = NO_ALLOW) -> str:
    """What the proxy shell does before connecting: parse, resolve (here a dict), choose."""
    target = parse_target(url)
    check_literal(target, allow)
    addresses = [str(target.ip)] if target.ip is not None else dns[target.host]
    return choose_address(target.host, addresses, allow)


# Every family and encoding of a non-public destination, written as a URL.
HOSTILE_URLS = [
    # loopback, in every IPv4 spelling
    "http://127.0.0.1/",
    "http://127.1/",
    "http://127.0.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0177.1/",
    "http://017700000001/",
    "http://0x7f.0.0.1/",
    "http://0x7F.0x0.0x0.0x1/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://127.0.0.1./",
    "http://127.000.000.001/",
    "https://127.0.0.1:8443/x.css",
    # unspecified / this network
    "http://0.0.0.0/",
    "http://0/",
    "http://0x0/",
    "http://0.1.2.3/",
    # cloud metadata and link-local
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.1.1/",
    # RFC 1918 private
    "http://10.0.0.1/",
    "http://012.0.0.1/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://3232235777/",
    # shared, benchmarking, documentation, reserved, broadcast, multicast
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://198.18.0.1/",
    "http://198.19.255.255/",
    "http://192.0.2.1/",
    "http://198.51.100.7/",
    "http://203.0.113.9/",
    "http://192.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://4294967295/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://192.88.99.1/",
    # IPv6
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:c0a8:101::1]/",
    "http://[2001::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://[fc00::1]/",
    "http://[fd12:3456:789a::1]/",
    "http://[fe80::1]/",
    "http://[febf::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[100::1]/",
    "http://[fd00:ec2::254]/",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_literal_urls_are_refused(url):
    assert len(HOSTILE_URLS) >= 30
    with pytest.raises(Refused) as e:
        fetch_plan(url, dns={})
    assert e.value.code in ("address_refused", "bad_host")


@pytest.mark.parametrize(
    "url, code",
    [
        ("file:///etc/passwd", "bad_scheme"),
        ("gopher://127.0.0.1:70/_x", "bad_scheme"),
        ("ftp://example.com/x.css", "bad_scheme"),
        ("javascript:alert(1)", "bad_scheme"),
        ("data:text/css,body{}", "bad_scheme"),
        ("dict://example.com:11211/", "bad_scheme"),
        ("//example.com/x.css", "bad_scheme"),
        ("/relative.css", "bad_scheme"),
        ("http://user:pass@example.com/", "credentials"),
        ("http://example.com@127.0.0.1/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("http:///x.css", "bad_host"),
        ("http://", "bad_host"),
        ("http://example.com:0/", "bad_port"),
        ("http://example.com:65536/", "bad_port"),
        ("http://example.com:8o/", "bad_port"),
        ("http://example.com:+80/", "bad_port"),
        ("http://[fe80::1%25eth0]/", "bad_host"),
        ("http://[::1/", "bad_url"),
        ("http://[::1]x/", "bad_host"),
        ("http://[1.2.3.4]/", "bad_url"),
        ("http://1.2.3.4.5/", "bad_host"),
        ("http://256.0.0.1/", "bad_host"),
        ("http://0x100.0.0.1/", "bad_host"),
        ("http://08.0.0.1/", "bad_host"),
        ("http://example.0x7f/", "bad_host"),
        ("http://%31%32%37.0.0.1/", "bad_host"),
        ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "bad_host"),
        ("http://exa mple.com/", "bad_url"),
        ("http://evil.com\\@127.0.0.1/", "bad_url"),
        ("http://example.com/\r\nHost: x", "bad_url"),
    ],
)
def test_bad_urls_are_refused(url, code):
    with pytest.raises(Refused) as e:
        parse_target(url)
    assert e.value.code == code


@pytest.mark.parametrize(
    "host, expected",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::1", "::1"),
        ("example.com", None),
        ("localhost", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),
    ],
)
def test_literal_ip_forms(host, expected):
    got = literal_ip(host)
    assert (None if got is None else str(got)) == expected


def test_literal_ip_refuses_zone_ids():
    with pytest.raises(Refused):
        literal_ip("[fe80::1%eth0]")


@pytest.mark.parametrize(
    "url, addr",
    [
        ("http://93.184.216.34/style.css", "93.184.216.34"),
        ("https://[2606:4700::1111]/a.css", "2606:4700::1111"),
        ("https://1.1.1.1:8443/", "1.1.1.1"),
        ("http://[::ffff:93.184.216.34]/", "::ffff:5db8:d822"),
        ("http://[64:ff9b::93.184.216.34]/", "64:ff9b::5db8:d822"),
        ("http://[2002:5db8:d822::1]/", "2002:5db8:d822::1"),
        ("http://1572395042/", "93.184.216.34"),
    ],
)
def test_public_literals_are_accepted(url, addr):
    assert fetch_plan(url, dns={}) == addr


def test_public_host_name_connects_to_first_checked_address():
    dns = {"cdn.example.com": ["93.184.216.34", "2606:4700::1111"]}
    assert fetch_plan("https://cdn.example.com/site.css", dns) == "93.184.216.34"
    target = parse_target("HTTPS://CDN.Example.COM./site.css?v=1#frag")
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "cdn.example.com",
        443,
        "/site.css?v=1",
    )
    assert target.ip is None
    assert target.url == "https://cdn.example.com/site.css?v=1"


@pytest.mark.parametrize(
    "resolved",
    [
        ["93.184.216.34", "10.0.0.5"],
        ["10.0.0.5", "93.184.216.34"],
        ["93.184.216.34", "1.1.1.1", "169.254.169.254"],
        ["2606:4700::1111", "::1"],
        ["93.184.216.34", "::ffff:127.0.0.1"],
        ["93.184.216.34", "fe80::1%eth0"],
        ["93.184.216.34", "not-an-ip"],
    ],
)
def test_one_private_record_among_public_ones_refuses_the_host(resolved):
    with pytest.raises(Refused):
        choose_address("rebind.attacker.example", resolved, NO_ALLOW)


def test_no_resolved_address_is_refused():
    with pytest.raises(Refused) as e:
        choose_address("nothing.example", [], NO_ALLOW)
    assert e.value.code == "no_address"


def test_allow_list_is_honoured():
    allow = AllowList.parse("127.0.0.1/32, localhost ,fd00::/8")
    assert fetch_plan("http://127.0.0.1:8080/a.css", {}, allow) == "127.0.0.1"
    assert fetch_plan("http://[::ffff:127.0.0.1]/", {}, allow) == "::ffff:7f00:1"
    assert fetch_plan("http://localhost:8080/", {"localhost": ["127.0.0.1", "::1"]}, allow)
    assert fetch_plan("http://[fd00::5]/", {}, allow) == "fd00::5"
    # Only what is listed.
    for url in ("http://127.0.0.2/", "http://10.0.0.1/", "http://[::1]/", "http://[fc00::1]/"):
        with pytest.raises(Refused):
            fetch_plan(url, {}, allow)
    # Without the allow-list, the same local origin is refused.
    with pytest.raises(Refused):
        fetch_plan("http://127.0.0.1:8080/a.css", {})
    with pytest.raises(Refused):
        fetch_plan("http://localhost:8080/", {"localhost": ["127.0.0.1"]})
    # A listed network does not open a different, unlisted name's private records.
    with pytest.raises(Refused):
        choose_address("evil.example", ["127.0.0.1", "10.0.0.1"], allow)


def test_allow_list_parse():
    allow = AllowList.parse("127.0.0.0/8,localhost,::1")
    assert allow.allows_ip(ipaddress.ip_address("127.5.5.5"))
    assert allow.allows_ip(ipaddress.ip_address("::1"))
    assert allow.allows_host("LOCALHOST.")
    assert not allow.allows_host("example.com")
    assert AllowList.parse("") == AllowList()
    assert AllowList.parse(None) == AllowList()
    for bad in ("127.0.0.1/33", "10.0.0.1/8", "not a host", "a/b"):
        with pytest.raises(ValueError):
            AllowList.parse(bad)


def test_redirect_from_allowed_host_to_private_literal_is_refused():
    allow = AllowList.parse("localhost")
    dns = {"localhost": ["127.0.0.1"], "cdn.example.com": ["93.184.216.34"]}
    assert fetch_plan("http://localhost:8000/a.css", dns, allow) == "127.0.0.1"
    nxt = check_redirect("http://169.254.169.254/latest/", "http://localhost:8000/a.css", 0, 5)
    with pytest.raises(Refused) as e:
        fetch_plan(nxt, dns, allow)
    assert e.value.code == "address_refused"
    # Encoded forms too, and from a public host.
    nxt = check_redirect("//0x7f000001/x", "https://cdn.example.com/a.css", 1, 5)
    assert nxt == "https://127.0.0.1/x"
    with pytest.raises(Refused):
        fetch_plan(nxt, dns, allow)


def test_redirect_resolution_and_limits():
    base = "https://cdn.example.com/css/site.css"
    assert check_redirect("other.css", base, 0, 5) == "https://cdn.example.com/css/other.css"
    assert check_redirect("/x.css#f", base, 0, 5) == "https://cdn.example.com/x.css"
    assert check_redirect("http://b.example/y", base, 4, 5) == "http://b.example/y"
    with pytest.raises(Refused) as e:
        check_redirect("/x.css", base, 5, 5)
    assert e.value.code == "too_many_redirects"
    for bad in ("file:///etc/passwd", "gopher://x/", "http://u:p@b.example/"):
        with pytest.raises(Refused):
            check_redirect(bad, base, 0, 5)
    for bad in ("", "   ", "/a\r\nb"):
        with pytest.raises(Refused) as e:
            check_redirect(bad, base, 0, 5)
        assert e.value.code == "bad_redirect"


# IPv4 ranges this policy refuses although (this version of) ipaddress calls them global.
EXTRA_REFUSED_V4 = [
    ipaddress.ip_network(n) for n in ("224.0.0.0/4", "192.0.0.0/24", "192.88.99.0/24")
]


def _accepted(ip) -> bool:
    try:
        check_ip(ip, NO_ALLOW)
    except Refused:
        return False
    return True


@given(st.ip_addresses(v=4))
def test_ipv4_accepted_iff_global(ip):
    extra = any(ip in n for n in EXTRA_REFUSED_V4)
    assert _accepted(ip) == (ip.is_global and not extra)


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_nat64_and_decimal_forms_agree_with_ipv4(ip):
    expected = _accepted(ip)
    assert _accepted(ipaddress.ip_address(f"::ffff:{ip}")) == expected
    assert _accepted(ipaddress.ip_address(f"64:ff9b::{ip}")) == expected
    assert str(literal_ip(str(int(ip)))) == str(ip)
    assert str(literal_ip(hex(int(ip)))) == str(ip)
    assert str(literal_ip("0" + oct(int(ip))[2:])) == str(ip)
    dotted_hex = ".".join(hex(b) for b in ip.packed)
    assert str(literal_ip(dotted_hex)) == str(ip)


@given(st.ip_addresses(v=6))
def test_ipv6_accepted_only_if_global_or_embedding_a_public_ipv4(ip):
    if _accepted(ip):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            assert embedded.is_global
        else:
            assert ip.is_global and not ip.is_multicast and not ip.is_site_local
            assert ip in ipaddress.ip_network("2000::/3")


@given(st.text(max_size=60))
def test_parse_target_never_crashes(text):
    for url in (text, "http://" + text, "https://" + text + "/"):
        try:
            target = parse_target(url)
        except Refused:
            continue
        assert target.scheme in ("http", "https")
        assert 1 <= target.port <= 65535


def test_internationalised_host_is_punycoded():
    target = parse_target("https://b\u00fccher.example/a.css")
    assert target.host == "xn--bcher-kva.example"
    assert target.ip is None


def test_check_ip_accepts_strings_and_refuses_garbage():
    check_ip("93.184.216.34")
    with pytest.raises(Refused) as e:
        check_ip("169.254.169.254")
    assert e.value.code == "address_refused"
    with pytest.raises(Refused) as e:
        check_ip("0177.0.0.1")  # resolvers return canonical text; anything else is refused
    assert e.value.code == "bad_address"
