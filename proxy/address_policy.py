"""Which URLs and addresses the asset proxy may fetch (guarantee G4, SSRF defence).

Sans-I/O: no DNS, no sockets, no clock. The caller drives it:

    target = parse_target(url)                    # scheme, host, port; Refused on bad URLs
    if target.ip is not None:
        addresses = [str(target.ip)]              # the host is an IP literal in some form
    else:
        addresses = <DNS lookup of target.host>   # every A/AAAA record
    address = choose_address(target.host, addresses, allow)
    <connect to `address`:target.port, Host header / SNI = target.host>

`choose_address` refuses if ANY resolved address is refused (an attacker controls several
records) and returns the one address the caller must connect to, so there is no second DNS
lookup and no DNS-rebinding window. On a redirect, `check_redirect` gives the next URL and
the caller repeats the steps above for it.

Only globally routable public unicast addresses pass, unless an `AllowList` (configuration,
for development and tests) names the network or the host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192


class Refused(Exception):
    """Why a URL or address was refused; `code` is a short machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- allow-list


@dataclass(frozen=True)
class AllowList:
    """Networks and exact host names the proxy may reach although they are not public.

    Meant for development and tests (e.g. "127.0.0.0/8,localhost"); empty in production."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, spec: str | None) -> AllowList:
        """Comma-separated CIDR networks, IP addresses and host names."""
        networks = []
        hosts = set()
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part.strip("[]"), strict=True))
                continue
            except ValueError:
                pass
            if "/" in part or not _HOSTNAME_RE.fullmatch(part):
                raise ValueError(f"allow-list entry {part!r} is neither a network nor a host name")
            hosts.add(_normalise_name(part))
        return cls(tuple(networks), frozenset(hosts))

    def allows_ip(self, ip: IPAddress) -> bool:
        candidates = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)

    def allows_host(self, host: str) -> bool:
        return bool(self.hosts) and _normalise_name(host) in self.hosts


def _normalise_name(host: str) -> str:
    return host.lower().rstrip(".")


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A parsed, acceptable-looking proxy target. `host` is lower-cased, without brackets
    or trailing dot; `ip` is set when the host is an IP literal in any form."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, never empty ("/" at least)
    ip: IPAddress | None

    @property
    def url(self) -> str:
        """The normalised URL (the literal IP replaces odd forms such as 0x7f.1)."""
        if self.ip is not None:
            netloc = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        else:
            netloc = self.host
        if self.port != ALLOWED_SCHEMES[self.scheme]:
            netloc += f":{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"


_HOSTNAME_RE = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*\.?", re.I
)
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def parse_target(url: str) -> Target:
    """Parse an absolute http(s) URL, or raise Refused.

    Refuses other schemes, credentials (user:pass@), missing or malformed hosts, zone ids,
    bad ports, whitespace, control characters and backslashes (which browsers read as '/')."""
    if not isinstance(url, str) or not url:
        raise Refused("bad_url", "URL must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise Refused("bad_url", f"URL longer than {MAX_URL_LENGTH} characters")
    if _BAD_URL_CHARS.search(url):
        raise Refused("bad_url", "URL contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise Refused("bad_url", f"URL does not parse: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise Refused("bad_scheme", f"scheme {parts.scheme!r} is not http or https")
    netloc = parts.netloc
    if not netloc:
        raise Refused("bad_host", "URL has no host")
    if "@" in netloc:
        raise Refused("credentials", "URL carries credentials (user@host)")
    host, port = _split_host_port(netloc, ALLOWED_SCHEMES[scheme])
    ip = literal_ip(host)
    if ip is None:
        host = _check_hostname(host)
    else:
        host = str(ip)
    path = parts.path or "/"
    if not path.startswith("/"):
        raise Refused("bad_url", "URL path must start with '/'")
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, port, path, ip)


def _split_host_port(netloc: str, default_port: int) -> tuple[str, int]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise Refused("bad_host", "unterminated IPv6 literal")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise Refused("bad_host", "junk after IPv6 literal")
        port_s = rest[1:] if rest else None
    else:
        host, sep, port_s = netloc.partition(":")
        if not sep:
            port_s = None
        if "[" in host or "]" in host:
            raise Refused("bad_host", "misplaced bracket in host")
    if not host:
        raise Refused("bad_host", "URL has no host")
    if port_s is None or port_s == "":
        return host, default_port
    if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5:
        raise Refused("bad_port", f"port {port_s!r} is not a number")
    port = int(port_s)
    if not 1 <= port <= 65535:
        raise Refused("bad_port", f"port {port} is out of range")
    return host, port


def _check_hostname(host: str) -> str:
    if "%" in host:
        raise Refused("bad_host", "percent-encoded host")
    if not host.isascii():
        # Browsers apply IDNA (with NFKC), so full-width digits become an IP literal.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise Refused("bad_host", "host is not a valid internationalised name") from None
        if literal_ip(host) is not None:
            raise Refused("bad_host", "non-ASCII host that normalises to an IP literal")
    host = host.lower()
    if not _HOSTNAME_RE.fullmatch(host) or len(host.rstrip(".")) > 253:
        raise Refused("bad_host", f"malformed host name {host!r}")
    if _ends_in_number(host):
        # A resolver or browser could read it as a (malformed) IPv4 address: refuse.
        raise Refused("bad_host", f"host {host!r} looks like a malformed IPv4 address")
    return host.rstrip(".")


# --------------------------------------------------------------------------- IP literals

_V4_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def _ends_in_number(host: str) -> bool:
    """WHATWG URL 'ends in a number': the last label is digits or 0x-hex."""
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1] if labels else ""
    return bool(last) and _V4_PART.fullmatch(last) is not None


def _parse_v4_part(part: str) -> int | None:
    if not _V4_PART.fullmatch(part):
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part[0] == "0":
        if any(c in "89" for c in part):
            return None
        return int(part, 8)
    return int(part, 10)


def _parse_ipv4_like(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG / inet_aton IPv4 parser: 1 to 4 parts, each decimal, octal (leading 0)
    or hex (0x); the last part fills the remaining bytes (127.1, 2130706433)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # one trailing dot
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for p in parts:
        n = _parse_v4_part(p)
        if n is None:
            return None
        numbers.append(n)
    *head, last = numbers
    if any(n > 255 for n in head):
        return None
    if last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def literal_ip(host: str) -> IPAddress | None:
    """The IP address `host` denotes if a resolver or browser would treat it as one, else None.

    Handles dotted decimal, shortened forms (127.1), single integers (2130706433), octal
    (0177.0.0.1, 017700000001), hex (0x7f.0.0.1, 0x7f000001), a trailing dot and bracketed
    IPv6 ([::1], [::ffff:127.0.0.1]). Raises Refused for an IPv6 zone id or a malformed
    bracketed literal."""
    if not isinstance(host, str) or not host:
        return None
    if host.startswith("[") or ":" in host:
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if host.startswith("[") != host.endswith("]"):
            raise Refused("bad_host", f"malformed IPv6 literal {host!r}")
        if "%" in inner:
            raise Refused("bad_host", "IPv6 zone ids are not allowed")
        try:
            return ipaddress.IPv6Address(inner)
        except ValueError:
            raise Refused("bad_host", f"malformed IPv6 literal {host!r}") from None
    if not host.isascii():
        return None
    return _parse_ipv4_like(host)


# --------------------------------------------------------------------------- address checks


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Refused IPv4 ranges, named, in addition to anything ipaddress says is not global.
IPV4_REFUSED = {
    "this-network": _nets("0.0.0.0/8"),
    "private": _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
    "shared-address-space": _nets("100.64.0.0/10"),
    "loopback": _nets("127.0.0.0/8"),
    "link-local": _nets("169.254.0.0/16"),  # includes cloud metadata 169.254.169.254
    "ietf-protocol-assignments": _nets("192.0.0.0/24"),
    "documentation": _nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),
    "6to4-relay-anycast": _nets("192.88.99.0/24"),
    "benchmarking": _nets("198.18.0.0/15"),
    "multicast": _nets("224.0.0.0/4"),
    "reserved": _nets("240.0.0.0/4"),  # includes broadcast 255.255.255.255
}

IPV6_REFUSED = {
    "ipv4-compatible": _nets("::/96"),  # includes :: and ::1
    "nat64-local-use": _nets("64:ff9b:1::/48"),
    "discard-only": _nets("100::/64"),
    "teredo": _nets("2001::/32"),
    "documentation": _nets("2001:db8::/32", "3fff::/20"),
    "unique-local": _nets("fc00::/7"),
    "link-local": _nets("fe80::/10"),
    "site-local": _nets("fec0::/10"),
    "multicast": _nets("ff00::/8"),
}

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def _refuse(ip: IPAddress, why: str) -> Refused:
    return Refused("address_refused", f"{ip} is not a public address ({why})")


def _check_v4(ip: ipaddress.IPv4Address, shown: IPAddress) -> None:
    for name, nets in IPV4_REFUSED.items():
        if any(ip in n for n in nets):
            raise _refuse(shown, name)
    if not ip.is_global:
        raise _refuse(shown, "not globally routable")


def check_ip(ip: IPAddress | str, allow: AllowList | None = None) -> None:
    """Raise Refused unless `ip` is globally routable public unicast or allow-listed.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64
    64:ff9b::/96, 6to4 2002::/16) are judged by the embedded IPv4 address."""
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            raise Refused("bad_address", f"{ip!r} is not an IP address") from None
    allow = allow or AllowList()
    if allow.allows_ip(ip):
        return
    if isinstance(ip, ipaddress.IPv4Address):
        _check_v4(ip, ip)
        return
    if ip.scope_id:
        raise Refused("bad_address", "IPv6 zone ids are not allowed")
    if ip.ipv4_mapped is not None:
        _check_v4(ip.ipv4_mapped, ip)
        return
    if ip in _NAT64:
        _check_v4(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), ip)
        return
    for name, nets in IPV6_REFUSED.items():
        if any(ip in n for n in nets):
            raise _refuse(ip, name)
    if ip.sixtofour is not None:
        _check_v4(ip.sixtofour, ip)
        return
    if ip not in _GLOBAL_UNICAST_V6:
        raise _refuse(ip, "outside global unicast 2000::/3")
    if not ip.is_global:
        raise _refuse(ip, "not globally routable")


def choose_address(host: str, resolved: list[str], allow: AllowList | None = None) -> str:
    """Pick the address to connect to among what DNS returned for `host`.

    Refuses if ANY address is refused, otherwise returns the first one: the caller connects
    to exactly that address (Host header and SNI set to `host`), with no second lookup."""
    allow = allow or AllowList()
    if not resolved:
        raise Refused("no_address", f"{host!r} resolved to no address")
    host_allowed = allow.allows_host(host)
    chosen: list[IPAddress] = []
    for text in resolved:
        if not isinstance(text, str) or "%" in text:
            raise Refused("bad_address", f"resolved address {text!r} is not a plain IP address")
        try:
            ip = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            raise Refused(
                "bad_address", f"resolved address {text!r} is not an IP address"
            ) from None
        if not host_allowed:
            check_ip(ip, allow)
        chosen.append(ip)
    return str(chosen[0])


def check_literal(target: Target, allow: AllowList | None = None) -> None:
    """Refuse early when the target's host is itself an IP literal that is refused."""
    if target.ip is not None and not (allow and allow.allows_host(target.host)):
        check_ip(target.ip, allow)


# --------------------------------------------------------------------------- redirects


def check_redirect(location: str, current_url: str, hops: int, max_redirects: int) -> str:
    """The absolute URL to follow for a redirect's Location header, or raise Refused.

    `hops` counts the redirects already followed before this one. The result has passed
    `parse_target`; the caller repeats DNS and `choose_address` for it."""
    if hops >= max_redirects:
        raise Refused("too_many_redirects", f"more than {max_redirects} redirects")
    if not isinstance(location, str) or not location.strip():
        raise Refused("bad_redirect", "redirect without a Location")
    if _BAD_URL_CHARS.search(location):
        raise Refused("bad_redirect", "Location contains whitespace, control characters or '\\'")
    parse_target(current_url)
    try:
        absolute = urljoin(current_url, location)
    except ValueError as e:
        raise Refused("bad_redirect", f"Location does not parse: {e}") from None
    absolute = absolute.split("#", 1)[0]
    return parse_target(absolute).url
