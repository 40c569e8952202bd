"""The router's browser routes (snippet, embed page, connect) and the proxy's agent signing."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from gateway import tokens
from proxy import signing
from proxy.address_policy import AllowList
from proxy.config import ProxyConfig
from proxy.service import create_app
from router import browser_assets
from router.api.browser_routes import embed_ancestors
from router.config import RouterConfig
from tests.router.test_api import auth, serving
from tests.support.asgi import serving_app
from tests.support.keys import KEYRING, mint, new_sid

PROXY_KEYS = tokens.Keyring((("p1", b"p" * 32),))


async def test_snippet_and_embed_are_served_with_caching_and_a_strict_csp(nats_server):
    async with serving(nats_server.url, proxy_public_url="http://proxy.test") as a:
        r = await a.http.get("/cobrowse.js")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.content == browser_assets.bundle("cobrowse.js").body
        assert b"window.Cobrowse" in r.content or b"Cobrowse" in r.content
        again = await a.http.get("/cobrowse.js", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
        r = await a.http.get("/embed.js")
        assert r.status_code == 200 and r.content == browser_assets.bundle("embed.js").body
        r = await a.http.get("/embed")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-eval" not in csp
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp
        assert "http://proxy.test" in csp
        assert "frame-ancestors *" in csp  # the default already lets the console frame it
        # The console: our own script and styles, the router only, framed by no one.
        r = await a.http.get("/console")
        assert r.status_code == 200 and r.content == browser_assets.page("console.html").body
        csp = r.headers["content-security-policy"]
        for rule in ("script-src 'self'", "style-src 'self'", "connect-src 'self'"):
            assert rule in csp.split("; "), csp
        assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        for name in ("console.js", "console.css"):
            r = await a.http.get(f"/{name}")
            assert r.status_code == 200 and r.content == browser_assets.page(name).body
        # /demo exists only when a demo site key is configured
        assert (await a.http.get("/demo")).status_code == 404


def test_the_embed_may_always_be_framed_by_the_routers_own_console():
    def ancestors(value: str) -> str:
        cfg = RouterConfig(KEYRING, {}, {}, embed_frame_ancestors=value)
        return embed_ancestors(cfg)

    assert ancestors("*") == "*"
    assert ancestors("https://crm.example") == "'self' https://crm.example"
    assert ancestors("'self' https://a.example") == "'self' https://a.example"
    assert ancestors("'none'") == "'none'"  # an operator who wants no framing gets none


def test_bundles_hide_the_loader_globals_and_pin_the_vendored_codec():
    import hashlib

    vendored = browser_assets.VENDOR_MSGPACK.read_bytes()
    # @msgpack/msgpack 3.1.3 dist.umd/msgpack.min.js without its sourceMappingURL line
    assert hashlib.sha256(vendored).hexdigest() == (
        "e75e1a3c6e4ef2b6dc0a070f9e718b557993a5fa4eb29f72d002e1c59f281bcc"
    )
    body = browser_assets.bundle("cobrowse.js").body.decode()
    assert body.count("(function (define, exports, module)") == 1
    assert "})(undefined, undefined, undefined);" in body


def test_every_bundle_part_is_installed_as_package_data():
    """A regular install (the image's `pip install .`) ships only what pyproject's
    package-data globs name: a bundle part in a subfolder they miss would be absent and the
    router could not assemble its scripts."""
    import tomllib

    pyproject = tomllib.loads(
        (Path(browser_assets.__file__).parents[1] / "pyproject.toml").read_text()
    )
    router_dir = Path(browser_assets.__file__).parent
    shipped = {
        f
        for glob in pyproject["tool"]["setuptools"]["package-data"]["router"]
        for f in router_dir.glob(glob)
    }
    parts = {browser_assets.STATIC / f for files in browser_assets.BUNDLES.values() for f in files}
    assert parts and sorted(str(f) for f in parts - shipped) == []
    assert browser_assets.VENDOR_MSGPACK in shipped


async def test_connect_tells_a_token_holder_where_to_go(nats_server):
    async with serving(nats_server.url, proxy_public_url="http://proxy.test/") as a:
        made = await a.create()
        sid = made["session_id"]
        for token, role in ((made["visitor_token"], "visitor"), (mint(sid, "agent"), "agent")):
            r = await a.http.post(
                f"/v1/sessions/{sid}/connect", headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["role"] == role and body["gateways"] == made["gateways"]
            assert body["proxy"] == "http://proxy.test"
        # an expired join token still finds its session (it resumes on its resume token)
        old = tokens.mint(KEYRING, sid=sid, role="agent", now=time.time() - 7200, ttl=60)
        r = await a.http.post(
            f"/v1/sessions/{sid}/connect", headers={"Authorization": f"Bearer {old}"}
        )
        assert r.status_code == 200
        for headers in (
            {},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": f"Bearer {mint(new_sid(), 'agent')}"},  # another session's token
            {"Authorization": f"Bearer {mint(sid, 'resume')}"},
        ):
            r = await a.http.post(f"/v1/sessions/{sid}/connect", headers=headers)
            assert r.status_code == 401, (headers, r.text)
            assert r.json()["error"]["code"] == "bad_token"
        # a well-signed token for a session that does not exist
        ghost = new_sid()
        r = await a.http.post(
            f"/v1/sessions/{ghost}/connect",
            headers={"Authorization": f"Bearer {mint(ghost, 'agent')}"},
        )
        assert r.status_code == 404
        # an ended session
        assert (await a.http.delete(f"/v1/sessions/{sid}", headers=auth())).status_code == 200
        r = await a.http.post(
            f"/v1/sessions/{sid}/connect",
            headers={"Authorization": f"Bearer {made['visitor_token']}"},
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_session"


@pytest.fixture
async def proxy_http(nursery):
    cfg = ProxyConfig(
        keyring=PROXY_KEYS,
        public_url="http://proxy.test",
        allow=AllowList.parse("127.0.0.1/32"),
        token_keys=KEYRING,
    )
    app = create_app(cfg)
    async with serving_app(nursery, app) as http:
        yield http


async def test_proxy_signs_only_for_an_agent_of_the_session(proxy_http):
    sid = new_sid()
    agent = {"Authorization": f"Bearer {mint(sid, 'agent')}"}
    urls = ["https://shop.example/a.css", "javascript:alert(1)", "http://127.0.0.1:1/x.png", 7]
    r = await proxy_http.post("/v1/sign", json={"urls": urls}, headers=agent)
    assert r.status_code == 200, r.text
    out = r.json()["urls"]
    assert out[1] is None and out[3] is None
    for original, signed_url in ((urls[0], out[0]), (urls[2], out[2])):
        assert signed_url.startswith("http://proxy.test/v1/asset?")
        query = dict(httpx.URL(signed_url).params)
        target, session = signing.verify(PROXY_KEYS, query, time.time())
        assert (target, session) == (original, sid)
    for headers, code in (
        ({}, "missing_token"),
        ({"Authorization": f"Bearer {mint(sid, 'visitor')}"}, "bad_token"),
        ({"Authorization": "Basic eDp5"}, "bad_token"),
        ({"Authorization": "Bearer v1.x.y.z"}, "bad_token"),
    ):
        r = await proxy_http.post("/v1/sign", json={"urls": urls}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == code, (headers, r.text)
    r = await proxy_http.post("/v1/sign", json={"urls": ["x"] * 513}, headers=agent)
    assert r.status_code == 400
    r = await proxy_http.post("/v1/sign", content=b"{", headers=agent)
    assert r.status_code == 400
    r = await proxy_http.post("/v1/sign", json=["not", "an object"], headers=agent)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_json"
    r = await proxy_http.post("/v1/sign", content=b" " * (1024 * 1024 + 1), headers=agent)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    # CORS preflight from the embed page's origin
    r = await proxy_http.options(
        "/v1/sign",
        headers={
            "Origin": "https://cobrowse.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] in (
        "*",
        "https://cobrowse.example",
    )


async def test_proxy_rewrites_for_an_agent_token(proxy_http):
    sid = new_sid()
    agent = {"Authorization": f"Bearer {mint(sid, 'agent')}"}
    body = {"css": "a:hover{background:url(b.png)}", "base_url": "https://shop.example/c/"}
    r = await proxy_http.post("/v1/rewrite", json=body, headers=agent)
    assert r.status_code == 200, r.text
    css = r.json()["css"]
    assert ".cb-hover" in css and "http://proxy.test/v1/asset?" in css
    r = await proxy_http.post("/v1/rewrite", json=body, headers={"Authorization": "Bearer junk"})
    assert r.status_code == 401
    r = await proxy_http.post("/v1/rewrite", json={"css": 1, "base_url": "x"}, headers=agent)
    assert r.status_code == 400
