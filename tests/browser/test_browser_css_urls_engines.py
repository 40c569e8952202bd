"""The rewritten stylesheets of test_browser_css_urls.py in Firefox and WebKit too, and the
viewer's own signing of style attributes: an agent may use either engine, and each has its
own CSS parser and its own idea of what loads.

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


# The recording server's own pages: a host for the cases' iframes, and one for the viewer's
# replica in an iframe without a sandbox (the sanitiser alone must hold, as in
# tests/pages/viewer_pwned.html's #g).
PAGES = {
    "/host.html": b"<!DOCTYPE html><title>host</title>",
    "/viewer.html": b'<!DOCTYPE html><title>viewer</title><div style="width: 800px; height: 600px">'
    b'<iframe id="g" width="800" height="600"></iframe></div>',
}


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        body = PAGES.get(self.path, b"")
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


def quiet(seen: list[str], limit: float = 3.0) -> None:
    """Wait until the server saw nothing new for 0.5 s (at most `limit` s)."""
    deadline = time.monotonic() + limit
    last = -1
    while time.monotonic() < deadline and len(seen) != last:
        last = len(seen)
        time.sleep(0.5)


def beyond_pages(seen: list[str]) -> list[str]:
    return [p for p in seen if p not in PAGES and not p.startswith("/favicon")]


def loads(engine, origin: str, seen: list[str], docs: list[str]) -> list[str]:
    """The paths the server saw from a page holding `docs`, beyond the page itself."""
    seen.clear()
    page = engine.open(origin + "/host.html", 900, 700)
    try:
        assert page.evaluate(FILL_JS, docs) == len(docs)
        quiet(seen)
    finally:
        page.close()
    return beyond_pages(seen)


def started(name: str, chromium):
    try:
        return engines.start(name, chromium)
    except engines.EngineMissing as e:
        pytest.fail(f"{e}: run `make test`, which installs it")


@pytest.mark.parametrize("name", ["firefox", "webkit"])
def test_rewritten_sheets_load_only_signed_urls_in(name, chromium, recorder):
    origin, seen = recorder
    engine = started(name, chromium)
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


ADD_SCRIPT_JS = """(src) => {
  const s = document.createElement('script');
  s.textContent = src;
  document.head.appendChild(s);
  return typeof CobrowseViewer;
}"""

# Expressions, not functions: these drivers evaluate a string without an argument as is.
SETTLE_JS = (
    "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => "
    "setTimeout(r, 20))))"
)


@pytest.mark.parametrize("name", ["firefox", "webkit"])
def test_style_attributes_in_the_viewer_load_only_signed_urls_in(name, chromium, recorder):
    """test_browser_css_urls.py's style-attribute cases through the viewer (sanitiser.js signs
    a style attribute's URLs itself, with the engine's own CSS parser) in a replica without
    a sandbox, as a snapshot and then as mutations: the recording server sees only signed
    URLs. As written, the same declarations on a plain page make it see unsigned ones."""
    from router import browser_assets
    from tests.browser.test_browser_css_urls import style_cases
    from tests.browser.test_browser_viewer import SETUP_JS, page_doc

    origin, seen = recorder
    here = origin.removeprefix("http://")
    cases = [css.replace("evil.test", here + "/evil") for css in style_cases().values()]
    assert len(cases) >= 20
    engine = started(name, chromium)
    try:
        plain = [
            f'<!DOCTYPE html><div style="{c}; width: 40px; height: 40px">T</div>' for c in cases
        ]
        unsigned = {p for p in loads(engine, origin + "/site/", seen, plain) if "/proxy/" not in p}
        assert len(unsigned) >= 10, sorted(unsigned)  # the oracle sees what the cases load

        seen.clear()
        page = engine.open(origin + "/viewer.html", 900, 700)
        try:
            bundle = browser_assets.bundle("embed.js").body.decode()
            assert page.evaluate(ADD_SCRIPT_JS, bundle) == "object"
            args = {"signed": origin + "/proxy", "frameId": "g", "interactive": True}
            assert page.evaluate(SETUP_JS, args) is True
            body = [
                {"id": 10 + i, "tag": "div", "a": {"style": c + "; width: 40px; height: 40px"}}
                for i, c in enumerate(cases)
            ]
            for node in body:
                node["c"] = []
            snap = page_doc(body, url=origin + "/site/page", base=origin + "/site/")
            page.evaluate("([k, p]) => R.apply(k, p)", ["snapshot", snap])
            page.evaluate(SETTLE_JS)
            for i, c in enumerate(cases):  # and each as a mutation of the attribute
                change = {"attr": [{"id": 10 + i, "a": {"style": c + "; width: 41px"}}]}
                page.evaluate("([k, p]) => R.apply(k, p)", ["mutation", change])
            page.evaluate(SETTLE_JS)
            quiet(seen)
            assert page.evaluate("window.signCalls.length") > 0  # it did sign
        finally:
            page.close()
        got = beyond_pages(seen)
        assert [p for p in got if not p.startswith("/proxy/")] == [], name
    finally:
        engine.close()
