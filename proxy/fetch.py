"""Fetch one asset for the proxy, under the SSRF policy of `proxy.address_policy` (G4).

    result = await fetch(url, allow=allow, resolve=resolve, accept={"text/css"})

Every hop (the first URL and each redirect) is parsed with `parse_target`, resolved once
through the injected `resolve(host, port)` and checked with `choose_address`; the request
then goes to exactly that IP (`http://<ip>:<port>/path` with `Host: <hostname>`, and for
https the hostname as SNI / certificate name via httpx's `sni_hostname` extension), so
httpx never does a DNS lookup of its own. Redirects are followed by hand with
`check_redirect`. The body is streamed raw and decoded by `proxy.decoding.BodyDecoder`, so
`max_bytes` bounds the raw bytes and the decoded bytes as they are decoded (a compression
bomb is cut after at most `max_bytes` + 1 decoded bytes); the whole fetch, redirects
included, runs under one `trio.fail_after(timeout)` deadline.

Failures raise `Refused` with codes from address_policy plus: too_large, timeout,
bad_content_type, bad_encoding (stacked, unknown or undecodable Content-Encoding),
upstream_error (connection/protocol failure).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx
import trio

from proxy.address_policy import (
    AllowList,
    Refused,
    Target,
    check_literal,
    check_redirect,
    choose_address,
    parse_target,
)
from proxy.decoding import ACCEPT_ENCODING, BodyDecoder

Resolver = Callable[[str, int], Awaitable[list[str]]]

REDIRECT_STATUSES = {301, 302, 303, 307, 308}
DEFAULT_ACCEPT = frozenset({"text/css"})
USER_AGENT = "cobrowse-asset-proxy/1"


@dataclass(frozen=True)
class FetchResult:
    status: int  # 200-class, or 304 for a revalidated conditional request
    url: str  # the final URL after redirects
    content_type: str | None  # media type only, lower-case, without parameters
    body: bytes  # empty for 304
    headers: httpx.Headers


async def default_resolve(host: str, port: int) -> list[str]:
    """Every address of `host` from the system resolver (A and AAAA)."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except OSError as e:
        raise Refused("dns_error", f"cannot resolve {host!r}: {e}") from None
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


def _media_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


async def _address_for(target: Target, allow: AllowList, resolve: Resolver) -> str:
    if target.ip is not None:
        check_literal(target, allow)
        return str(target.ip)
    resolved = await resolve(target.host, target.port)
    return choose_address(target.host, list(resolved), allow)


def _request_url(target: Target, address: str) -> str:
    ip = ipaddress.ip_address(address)
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{target.scheme}://{netloc}:{target.port}{target.path}"


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if target.ip is not None and target.ip.version == 6 else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


async def fetch(
    url: str,
    *,
    allow: AllowList | None = None,
    resolve: Resolver | None = None,
    max_bytes: int = 5 * 2**20,
    timeout: float = 10.0,
    max_redirects: int = 5,
    accept: Iterable[str] = DEFAULT_ACCEPT,
    conditional: dict | None = None,
    verify: bool | object = True,
) -> FetchResult:
    """Fetch `url` (see the module docstring). `conditional` may carry "etag" and/or
    "last_modified" (sent as If-None-Match / If-Modified-Since); a 304 answer is returned
    as FetchResult(status=304, body=b""). `verify` is passed to httpx (an SSL context or
    a CA bundle path for tests)."""
    allow = allow or AllowList()
    resolve = resolve or default_resolve
    accepted = {a.lower() for a in accept}
    try:
        with trio.fail_after(timeout):
            return await _fetch(
                url, allow, resolve, max_bytes, max_redirects, accepted, conditional, verify
            )
    except trio.TooSlowError:
        raise Refused("timeout", f"fetch of {url!r} took longer than {timeout} s") from None


async def _fetch(url, allow, resolve, max_bytes, max_redirects, accepted, conditional, verify):
    current = parse_target(url).url
    hops = 0
    while True:  # bounded: check_redirect raises after max_redirects hops
        target = parse_target(current)
        address = await _address_for(target, allow, resolve)
        headers = {
            "Host": _host_header(target),
            "User-Agent": USER_AGENT,
            "Accept-Encoding": ACCEPT_ENCODING,
        }
        if conditional:
            if conditional.get("etag"):
                headers["If-None-Match"] = conditional["etag"]
            if conditional.get("last_modified"):
                headers["If-Modified-Since"] = conditional["last_modified"]
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        # A fresh client per hop: no connection reuse across host names / SNI, and
        # trust_env=False so no environment proxy sees (or resolves) the request.
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, verify=verify, timeout=None
        ) as client:
            request = client.build_request(
                "GET", _request_url(target, address), headers=headers, extensions=extensions
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as e:
                raise Refused("upstream_error", f"{target.host}: {e!r}") from None
            try:
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    location = response.headers.get("location", "")
                    current = check_redirect(location, current, hops, max_redirects)
                    hops += 1
                    continue
                if status == 304 and conditional:
                    return FetchResult(304, current, None, b"", response.headers)
                if not 200 <= status < 300:
                    raise Refused("upstream_status", f"origin answered {status}")
                content_type = _media_type(response.headers.get("content-type"))
                if content_type not in accepted:
                    raise Refused("bad_content_type", f"content type {content_type!r} refused")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise Refused("too_large", f"declared length {declared} > {max_bytes}")
                decoder = BodyDecoder.for_header(
                    response.headers.get("content-encoding"), max_bytes
                )
                body = bytearray()
                raw_bytes = 0
                try:
                    # Raw bytes: httpx's own decoders would inflate a whole chunk at once.
                    async for chunk in response.aiter_raw():
                        raw_bytes += len(chunk)
                        if raw_bytes > max_bytes:
                            raise Refused("too_large", f"body larger than {max_bytes} bytes")
                        body += decoder.feed(chunk)
                    decoder.finish()
                except httpx.HTTPError as e:
                    raise Refused("upstream_error", f"{target.host}: {e!r}") from None
                return FetchResult(status, current, content_type, bytes(body), response.headers)
            finally:
                await response.aclose()
