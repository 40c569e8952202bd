"""SVG through the real proxy, in real Chromium: an avatar renders, a hostile SVG stays inert.

The proxy (Hypercorn's trio worker, in a thread) fetches from a loopback origin; a second
loopback server, the beacon, records every request the hostile SVG tries to make. Loaded as
an image (`<img>`, CSS background), framed (`<iframe>`, `<object>`), taken as a stylesheet
and opened as a top-level page, the hostile SVG must run nothing and fetch nothing.
"""

from __future__ import annotations

import functools
import http.server
import secrets
import threading
import time

import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve as hypercorn_serve

from gateway.tokens import Keyring
from proxy import signing
from proxy.address_policy import AllowList
from proxy.config import ProxyConfig
from proxy.service import create_app
from tests.support.browser import chromium, context  # noqa: F401 (fixtures)

KEY = Keyring((("t1", secrets.token_bytes(32)),))
SID = "svg-session"

AVATAR = b"""<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48" viewBox="0 0 64 48">
<circle cx="32" cy="24" r="20" fill="rgb(0,128,255)"/></svg>"""

# Every way an SVG document can run script or load something. Each script marks the root
# (`data-pwned`), tells the beacon and sets `top.__pwned`; B is the beacon's origin.
PWN = "document.documentElement.setAttribute('data-pwned','{0}'); new Image().src='B/{0}'; top.__pwned='{0}'"
HOSTILE = f"""<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
 width="120" height="80" viewBox="0 0 120 80" onload="{PWN.format("onload")}">
<style>@import url(B/import.css); @font-face{{font-family:x;src:url(B/font.woff)}}
 text{{font-family:x}} .bg{{fill:url(B/paint.svg#p) green}}</style>
<script>{PWN.format("script")}</script>
<rect class="bg" width="120" height="80" fill="green"/>
<image href="B/image.png" width="10" height="10"/>
<image xlink:href="B/xlink.png" y="10" width="10" height="10"/>
<text x="20" y="20">hi</text>
<foreignObject x="0" y="40" width="60" height="40"><div xmlns="http://www.w3.org/1999/xhtml">
 <script>{PWN.format("foreignObject")}</script>
 <img src="B/fo.png"/><iframe src="B/fo-frame"></iframe></div></foreignObject>
<a href="javascript:{PWN.format("link")}; void 0">
 <rect id="link" x="60" y="0" width="60" height="80" fill="blue"/></a>
</svg>"""


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET from `routes` (path -> (content type, body)), else 404; records paths."""

    routes: dict[str, tuple[str, bytes]] = {}
    seen: list[str]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        ctype, body = self.routes.get(self.path, ("text/plain", b"no"))
        self.send_response(200 if self.path in self.routes else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class Recorder:
    """A loopback HTTP server in a thread that records the paths asked of it."""

    def __init__(self, routes: dict[str, tuple[str, bytes]]) -> None:
        self.seen: list[str] = []
        handler = type("Handler", (_Recorder,), {"routes": routes, "seen": self.seen})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ProxyThread:
    """proxy.service on a loopback port, served by Hypercorn under trio in its own thread
    (the browser tests drive Playwright's sync API on the main thread)."""

    def __init__(self, cfg: ProxyConfig) -> None:
        self.app = create_app(cfg)
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        hc = HyperConfig()
        hc.bind = ["127.0.0.1:0"]
        hc.accesslog = None
        hc.graceful_timeout = 1.0
        serve = functools.partial(hypercorn_serve, self.app, hc, shutdown_trigger=self._stop.wait)
        async with trio.open_nursery() as nursery:
            self.url = (await nursery.start(serve))[0]
            self._ready.set()

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(5)


@pytest.fixture(scope="module")
def servers():
    beacon = Recorder({})
    origin = Recorder(
        {
            "/avatar.svg": ("image/svg+xml", AVATAR),
            "/hostile.svg": ("image/svg+xml", HOSTILE.replace("B/", beacon.url + "/").encode()),
        }
    )
    cfg = ProxyConfig(keyring=KEY, allow=AllowList.parse("127.0.0.1/32"), timeout=5.0)
    proxy = ProxyThread(cfg)
    try:
        yield proxy, origin, beacon
    finally:
        proxy.close()
        origin.close()
        beacon.close()


def asset(proxy: ProxyThread, origin: Recorder, path: str) -> str:
    """The signed /v1/asset URL the viewer would get for `path` on the origin."""
    expires = int(time.time()) + 600
    return proxy.url + signing.sign(KEY, origin.url + path, SID, expires)


def settle(page) -> None:
    """Two frames and a little more, for anything the page might still start loading."""
    page.evaluate(
        "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 200))))"
    )


def test_svg_images_render_and_a_hostile_one_runs_and_loads_nothing(context, servers):  # noqa: F811
    proxy, origin, beacon = servers
    avatar, hostile = asset(proxy, origin, "/avatar.svg"), asset(proxy, origin, "/hostile.svg")
    page = context.new_page()
    page.set_content(
        f"""<img id="avatar" src="{avatar}"><img id="hostile" src="{hostile}">
        <div id="bg" style="width:120px;height:80px;background-image:url('{hostile}')"></div>
        <iframe id="frame" src="{hostile}"></iframe><object id="obj" data="{hostile}"></object>
        <link rel="stylesheet" href="{hostile}" onerror="window.notCss = true">"""
    )
    page.wait_for_function(
        "[...document.images].every((i) => i.complete)", timeout=10_000, polling=50
    )
    settle(page)
    sizes = page.evaluate(
        "[...document.images].map((i) => [i.id, i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [["avatar", 64, 48], ["hostile", 120, 80]]
    assert page.evaluate("window.__pwned") is None
    assert beacon.seen == []  # also from the <iframe> and <object> (frame-ancestors 'none')
    assert page.evaluate("window.notCss") is True  # nosniff: never a stylesheet


def test_a_hostile_svg_opened_as_a_page_runs_and_loads_nothing(context, servers):  # noqa: F811
    """An agent opening the asset URL in a tab. The CSP sandbox disables script in the
    document, Playwright's own evaluate included, so the page is read over CDP."""
    proxy, origin, beacon = servers
    page = context.new_page()
    response = page.goto(asset(proxy, origin, "/hostile.svg"))
    assert response.status == 200
    assert response.headers["content-type"] == "image/svg+xml"
    cdp = context.new_cdp_session(page)
    page.mouse.click(90, 40)  # on the javascript: link
    time.sleep(0.3)  # timers do not run in the sandboxed page: give a request time to show
    root = cdp.send("DOM.getDocument", {"depth": 1})["root"]["children"][0]
    assert root["localName"] == "svg"  # shown as an SVG document
    assert "data-pwned" not in root.get("attributes", [])
    assert js(cdp, "String(window.__pwned)") == "undefined"
    assert beacon.seen == []
    assert page.url.startswith(proxy.url)  # still the SVG: nothing navigated


def js(cdp, expression: str):
    """Evaluate over CDP (works where the page itself may run no script)."""
    out = cdp.send("Runtime.evaluate", {"expression": expression})
    return out["result"].get("value")
