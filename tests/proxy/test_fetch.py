"""proxy.fetch against a real local origin (trio + h11 on 127.0.0.1), and proxy.cache."""

from __future__ import annotations

import email.utils
import shutil
import ssl

import pytest
import trio
import trio.testing

from proxy.address_policy import AllowList, Refused
from proxy.cache import ByteLRU, Entry, SingleFlight, freshness
from proxy.fetch import fetch
from tests.support.origin import OriginServer

LOCAL = AllowList.parse("127.0.0.1/32")
CSS = b"body { color: red }\n"


class Origin(OriginServer):
    """The routes these tests need."""

    async def route(self, path: str, headers: dict[str, str]):
        css = [("Content-Type", "text/css; charset=utf-8")]
        if path == "/style.css":
            return 200, css, CSS, None
        if path == "/big.css":  # 64 KiB chunks, 1000 of them, no Content-Length
            return 200, css, b"a" * 65536, 1000
        if path == "/declared-big.css":
            return 200, css, b"a" * 200_000, None
        if path == "/slow.css":
            await trio.sleep(10)
            return 200, css, CSS, None
        if path == "/to-metadata":
            return 302, [("Location", "http://169.254.169.254/latest/meta-data/")], b"", None
        if path == "/loop":
            return 302, [("Location", "/loop")], b"", None
        if path == "/hop":
            return 301, [("Location", "/style.css")], b"", None
        if path == "/etag.css":
            if headers.get("if-none-match") == '"v1"':
                return 304, [("ETag", '"v1"')], b"", None
            return 200, [*css, ("ETag", '"v1"')], CSS, None
        if path == "/page.html":
            return 200, [("Content-Type", "text/html")], b"<script>x</script>", None
        return 404, [("Content-Type", "text/plain")], b"not found", None


@pytest.fixture
async def origin(nursery):
    o = Origin()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    o.port = listeners[0].socket.getsockname()[1]
    await nursery.start(trio.serve_listeners, o.handle, listeners)
    return o


def resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise Refused("dns_error", f"no such host {host}")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# --------------------------------------------------------------------------- fetch


async def test_stylesheet_fetched(origin):
    r = await fetch(f"{origin.base}/style.css", allow=LOCAL, accept={"text/css"}, timeout=5)
    assert (r.status, r.body, r.content_type) == (200, CSS, "text/css")
    assert r.url == f"{origin.base}/style.css"


async def test_redirect_within_origin_followed(origin):
    r = await fetch(f"{origin.base}/hop", allow=LOCAL, timeout=5)
    assert r.body == CSS and r.url.endswith("/style.css")
    assert [p for p, _ in origin.seen] == ["/hop", "/style.css"]


async def test_oversized_streamed_response_cut_off(origin):
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/big.css", allow=LOCAL, max_bytes=100_000, timeout=5)
    assert e.value.code == "too_large"


async def test_oversized_declared_length_refused(origin):
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/declared-big.css", allow=LOCAL, max_bytes=1000, timeout=5)
    assert e.value.code == "too_large"


async def test_slow_origin_times_out(origin):
    start = trio.current_time()
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/slow.css", allow=LOCAL, timeout=0.5)
    assert e.value.code == "timeout"
    assert trio.current_time() - start < 3


async def test_redirect_to_metadata_address_refused(origin):
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/to-metadata", allow=LOCAL, timeout=5)
    assert e.value.code == "address_refused"
    assert [p for p, _ in origin.seen] == ["/to-metadata"]


async def test_redirect_loop_refused(origin):
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/loop", allow=LOCAL, max_redirects=3, timeout=5)
    assert e.value.code == "too_many_redirects"
    assert len(origin.seen) == 4  # the first request plus 3 followed redirects


@pytest.mark.parametrize("records", [["10.0.0.5"], ["127.0.0.1", "169.254.169.254"]])
async def test_host_resolving_to_private_address_refused(origin, records):
    resolve = resolver({"evil.test": records})
    with pytest.raises(Refused) as e:
        await fetch(
            f"http://evil.test:{origin.port}/style.css", allow=LOCAL, resolve=resolve, timeout=5
        )
    assert e.value.code == "address_refused"
    assert origin.seen == []


async def test_loopback_refused_without_allow_list(origin):
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/style.css", timeout=5)
    assert e.value.code == "address_refused"
    assert origin.seen == []


async def test_connects_to_checked_address_with_host_header(origin):
    resolve = resolver({"origin.test": ["127.0.0.1"]})
    r = await fetch(
        f"http://origin.test:{origin.port}/style.css", allow=LOCAL, resolve=resolve, timeout=5
    )
    assert r.body == CSS
    assert r.url == f"http://origin.test:{origin.port}/style.css"
    assert resolve.calls == ["origin.test"]  # resolved once, by us
    assert origin.seen[0][1]["host"] == f"origin.test:{origin.port}"


async def test_conditional_request_revalidated(origin):
    first = await fetch(f"{origin.base}/etag.css", allow=LOCAL, timeout=5)
    etag = first.headers["etag"]
    again = await fetch(
        f"{origin.base}/etag.css", allow=LOCAL, timeout=5, conditional={"etag": etag}
    )
    assert (again.status, again.body) == (304, b"")
    assert origin.seen[1][1]["if-none-match"] == '"v1"'


async def test_content_type_refused(origin):
    with pytest.raises(Refused) as e:
        await fetch(f"{origin.base}/page.html", allow=LOCAL, accept={"text/css"}, timeout=5)
    assert e.value.code == "bad_content_type"


async def test_bad_url_refused_before_io():
    with pytest.raises(Refused) as e:
        await fetch("file:///etc/passwd", allow=LOCAL, timeout=1)
    assert e.value.code == "bad_scheme"


@pytest.fixture
async def tls_origin(nursery, tmp_path):
    """The same origin behind TLS, with a self-signed certificate for origin.test only."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    cmd += ["-subj", "/CN=origin.test", "-addext", "subjectAltName=DNS:origin.test"]
    cmd += ["-keyout", str(key), "-out", str(cert)]
    with trio.fail_after(30):
        await trio.run_process(cmd, capture_stdout=True, capture_stderr=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni_seen: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni_seen.append(name)
    o = Origin()
    o.sni_seen = sni_seen  # type: ignore[attr-defined]
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    o.port = listeners[0].socket.getsockname()[1]
    tls = [trio.SSLListener(lst, server_ctx, https_compatible=True) for lst in listeners]
    await nursery.start(trio.serve_listeners, o.handle, tls)
    o.client_ctx = ssl.create_default_context(cafile=str(cert))  # type: ignore[attr-defined]
    return o


async def test_https_uses_hostname_for_sni_and_certificate(tls_origin):
    resolve = resolver({"origin.test": ["127.0.0.1"]})
    r = await fetch(
        f"https://origin.test:{tls_origin.port}/style.css",
        allow=LOCAL,
        resolve=resolve,
        timeout=5,
        verify=tls_origin.client_ctx,
    )
    assert r.body == CSS
    assert tls_origin.sni_seen == ["origin.test"]
    assert tls_origin.seen[0][1]["host"] == f"origin.test:{tls_origin.port}"


async def test_https_certificate_for_other_name_refused(tls_origin):
    resolve = resolver({"other.test": ["127.0.0.1"]})
    with pytest.raises(Refused) as e:
        await fetch(
            f"https://other.test:{tls_origin.port}/style.css",
            allow=LOCAL,
            resolve=resolve,
            timeout=5,
            verify=tls_origin.client_ctx,
        )
    assert e.value.code == "upstream_error"
    assert tls_origin.seen == []


# --------------------------------------------------------------------------- cache


def entry(n: int, **kw) -> Entry:
    return Entry(b"x" * n, **kw)


def test_lru_byte_bound_and_eviction_order():
    lru = ByteLRU(100)
    assert lru.put("a", entry(40)) == []
    assert lru.put("b", entry(40)) == []
    assert lru.get("a") is not None  # a is now most recently used
    assert lru.put("c", entry(40)) == ["b"]
    assert lru.keys() == ["a", "c"] and lru.total == 80
    assert lru.put("d", entry(90)) == ["a", "c"]
    assert lru.keys() == ["d"] and lru.total == 90
    assert lru.put("huge", entry(101)) == [] and "huge" not in lru
    lru.put("d", entry(10, etag='"e"'))  # replace: size accounted once
    assert lru.total == 10 and lru.get("d").etag == '"e"'
    assert lru.get("missing") is None


def test_freshness_rules():
    now = 1_000_000.0
    assert freshness({"Cache-Control": "max-age=60"}, now) == now + 60
    assert freshness({"cache-control": "public, max-age=60, s-maxage=600"}, now) == now + 600
    assert freshness({"Cache-Control": "no-store, max-age=60"}, now) is None
    assert freshness({"Cache-Control": "no-cache"}, now) is None
    assert freshness({"Cache-Control": "max-age=abc"}, now) is None
    later = email.utils.formatdate(now + 120, usegmt=True)
    assert freshness({"Expires": later}, now) == now + 120
    assert freshness({"Cache-Control": "max-age=5", "Expires": later}, now) == now + 5
    assert freshness({"Expires": "0"}, now) == now  # invalid date: already expired
    assert freshness({}, now) is None
    e = Entry(b"", expires_at=now + 1)
    assert e.is_fresh(now) and not e.is_fresh(now + 1)


async def test_single_flight_runs_once_for_ten_callers(autojump_clock):
    flight = SingleFlight()
    runs = 0
    results = []

    async def slow_fetch():
        nonlocal runs
        runs += 1
        await trio.sleep(1)
        return b"body"

    async def caller():
        results.append(await flight.run("k", slow_fetch))

    async with trio.open_nursery() as n:
        for _ in range(10):
            n.start_soon(caller)
    assert runs == 1 and results == [b"body"] * 10
    # Once finished, the key is free again.
    assert await flight.run("k", slow_fetch) == b"body" and runs == 2


async def test_single_flight_error_reaches_all_waiters(autojump_clock):
    flight = SingleFlight()
    errors = []

    async def failing():
        await trio.sleep(1)
        raise Refused("timeout", "boom")

    async def caller():
        try:
            await flight.run("k", failing)
        except Refused as e:
            errors.append(e.code)

    async with trio.open_nursery() as n:
        for _ in range(10):
            n.start_soon(caller)
    assert errors == ["timeout"] * 10 and flight.started == 1


async def test_single_flight_leader_cancelled_waiters_get_error(autojump_clock):
    flight = SingleFlight()
    outcomes = []

    async def hang():
        await trio.sleep(100)

    async def leader():
        with trio.move_on_after(1):
            await flight.run("k", hang)
        outcomes.append("leader-cancelled")

    async def waiter():
        try:
            await flight.run("k", hang)
        except RuntimeError as e:
            outcomes.append(str(e))

    async with trio.open_nursery() as n:
        n.start_soon(leader)
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(waiter)
    assert sorted(outcomes) == ["leader cancelled", "leader-cancelled"]
    assert trio.current_time() < 50
