"""The rewritten stylesheets of test_browser_css_urls.py in Firefox and WebKit too: an agent
may use either, and each engine has its own CSS parser and its own idea of what loads.

Here the oracle is the network itself: every URL of every case points at a local HTTP
server that writes down each path it is asked for, the proxy's signed URLs included (under
/proxy/). All cases go into one page per engine, each in its own srcdoc iframe (so no rule
hides another by the cascade). As written, the cases must make that server see loads
outside /proxy/ (else the test proves nothing); rewritten, it must see none.
"""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from proxy import signing
from proxy.rewrite import rewrite
from tests.browser.test_browser_css_urls import BASE, CASES
from tests.support import engines

pytestmark = [pytest.mark.timeout(240)]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        body = b"<!DOCTYPE html><title>host</title>" if self.path == "/host.html" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder():
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    srv.shutdown()
    srv.server_close()


CASE_HTML = """<!DOCTYPE html><style>{css}</style>
<div class="t" style="width: 60px; height: 60px">T<span class="u">U</span></div>
<ul class="l"><li>x</li></ul><p class="f">text</p>"""

FILL_JS = """(docs) => {
  for (const d of docs) {
    const f = document.createElement('iframe');
    f.width = 120; f.height = 120;
    f.srcdoc = d;
    document.body.appendChild(f);
  }
  return docs.length;
}"""


def cases_at(origin: str) -> dict[str, str]:
    """CASES with evil.test moved to the recording server, under /evil/."""
    return {
        name: css.replace("evil.test", origin.removeprefix("http://") + "/evil")
        for name, css in CASES.items()
        if "surrogate" not in name  # not sendable to every driver; the Chromium test has it
    }


def loads(engine, origin: str, seen: list[str], docs: list[str]) -> list[str]:
    """The paths the server saw from a page holding `docs`, beyond the page itself."""
    seen.clear()
    page = engine.open(origin + "/host.html", 900, 700)
    try:
        assert page.evaluate(FILL_JS, docs) == len(docs)
        deadline = time.monotonic() + 3
        last = -1
        while time.monotonic() < deadline and len(seen) != last:  # until quiet for 0.5 s
            last = len(seen)
            time.sleep(0.5)
    finally:
        page.close()
    return [p for p in seen if p != "/host.html" and not p.startswith("/favicon")]


@pytest.mark.parametrize("name", ["firefox", "webkit"])
def test_rewritten_sheets_load_only_signed_urls_in(name, chromium, recorder):
    origin, seen = recorder
    try:
        engine = engines.start(name, chromium)
    except engines.EngineMissing as e:
        pytest.fail(f"{e}: run `make test`, which installs it")
    try:

        def sign(url: str) -> str:
            return origin + "/proxy" + signing.sign(b"k" * 32, url, "s1234567", 2_000_000_000)

        cases = cases_at(origin)
        raw = loads(engine, origin, seen, [CASE_HTML.format(css=c) for c in cases.values()])
        unsigned = {p for p in raw if not p.startswith("/proxy/")}
        assert len(unsigned) >= 20, sorted(unsigned)  # the oracle sees what the cases load
        rewritten = [rewrite(c, BASE, sign).css for c in cases.values()]
        got = loads(engine, origin, seen, [CASE_HTML.format(css=c) for c in rewritten])
        assert [p for p in got if not p.startswith("/proxy/")] == [], name
        assert any(p.startswith("/proxy/") for p in got)  # and it did load the signed ones
    finally:
        engine.close()
