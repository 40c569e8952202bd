"""Fidelity across the peer corpus: every rrweb / rrweb-snapshot test page, mirrored and compared.

The corpus is the checkout's copy in `tests/corpus/rrweb-fixtures/` (MIT, see its LICENSE),
or the folder `COBROWSE_CORPUS` names (tests/support/corpus_dir.py): about 70 HTML files from rrweb's
and rrweb-snapshot's tests. For each page:

1. the **visitor** page opens it from a local HTTP server (127.0.0.1; every other host is
   refused, so CDN scripts fail fast as they would offline), gets `cobrowse.js`, and
   records with `Cobrowse._capture(emit)`: the snapshot and whatever the page's own
   scripts change in the next 300 ms;
2. the events go, as JSON, into `CobrowseViewer.replayer(iframe, {sign, rewriteCss})` in a
   second page (the viewer: an iframe with `sandbox="allow-same-origin"`, as on /embed).
   The proxy is not running here, so `sign` maps a URL to itself on the local server and
   `rewriteCss` passes the text through;
3. the visitor's document (taken at the moment recording stops, after every mutation
   record was delivered) and the viewer's iframe document are compared as normalised
   trees (tests/support/dom_compare.py).

Pages known not to match are `xfail(strict=True)` with the concrete reason, so a page that
starts matching fails the run and the list (docs/fidelity.md) stays true.
"""

from __future__ import annotations

import json
import sys

import pytest

from router.browser_assets import bundle
from tests.support import dom_compare
from tests.support.browser import StaticServer
from tests.support.corpus_dir import corpus_dir

CORPUS = corpus_dir()
PAGES = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.html"))
SETTLE_MS = 300  # the page's own scripts' changes in this window are recorded too
# dom_compare options: leave out the snippet's overlay host (an element in the visitor's page).
COMPARE = {"ignore": "cobrowse-overlay, [data-cobrowse-overlay]"}

# What rrweb's own tests do to a page, done here while recording (after the snapshot), so the
# mutations, input and CSSOM events are mirrored too. Pages that define `window.workload`
# (rrweb's mutation benchmarks) run it; JS strings are evaluated in the page, callables get
# the Playwright page.
WORKLOAD_JS = "() => { if (typeof window.workload === 'function') window.workload(); }"
WORKLOADS: dict[str, object] = {
    "rrweb/test/html/blocked-unblocked.html": "() => { mutate1(); mutate2(); }",
    "rrweb/test/html/dialog.html": "() => document.querySelector('dialog').showModal()",
    "rrweb-snapshot/test/html/dialog.html": "() => document.querySelector('dialog').show()",
    "rrweb/test/html/shuffle.html": """() => {
      const ul = document.querySelector('ul');
      for (const i of [3, 0, 4, 1, 2]) ul.appendChild(ul.children[i]);
    }""",
    "rrweb/test/html/move-node.html": """() => {
      const div = document.querySelector('div'), span = document.querySelector('span');
      div.appendChild(span);
      document.body.appendChild(document.querySelector('b'));
      div.querySelector('p').textContent = 'moved';
    }""",
    "rrweb/test/html/mutation-observer.html": """() => {
      const li = document.createElement('li');
      document.querySelector('ul').append(li, document.createElement('li'));
      li.remove();
      document.querySelector('p').setAttribute('data-x', '1');
      document.querySelector('p').firstChild.data = 'changed';
    }""",
    "rrweb/test/html/form.html": lambda page: (
        page.fill("input[type=text]", "typed text"),
        page.check("input[value=on]"),
        page.check("input[type=checkbox]"),
        page.fill("textarea", "a\nb"),
        page.select_option("select", "2"),
    ),
    "rrweb-snapshot/test/html/form-fields.html": lambda page: (
        page.fill("input[type=text]", "typed"),
        page.check("input[type=checkbox]"),
        page.select_option("select", "2"),
    ),
    "rrweb/test/html/password.html": lambda page: (
        page.fill("#password", "secret1"),
        page.click("#show-password"),
    ),
}

# Per-page dom_compare options.
COMPARE_EXTRA: dict[str, dict] = {
    # The page's "show password" button turns the field into type=text. The snippet keeps
    # a field it has masked masked (G4), so compare it as masked on both sides: the check
    # is then that the real value never shows in the viewer.
    "rrweb/test/html/password.html": {"maskSelector": "#password"},
}

# Run in the visitor's page after recording, before its DOM is normalised (no DOM change).
BEFORE_COMPARE: dict[str, str] = {
    # The page makes Node/Element.prototype.childNodes throw, non-configurable (as Salesforce
    # Lightning does). The snippet walks firstChild/nextSibling; dom_compare's normaliser
    # reads childNodes, so each node gets an own childNodes built from the native getters.
    "rrweb-snapshot/test/html/monkey-patched-elements.html": """() => {
      const get = (k) => Object.getOwnPropertyDescriptor(Node.prototype, k).get;
      const first = get("firstChild"), next = get("nextSibling");
      const list = (n) => { const out = []; for (let c = first.call(n); c; c = next.call(c)) out.push(c); return out; };
      const fix = (n) => {
        Object.defineProperty(n, "childNodes", {get: () => list(n), configurable: true});
        list(n).forEach(fix);
      };
      fix(document);
    }""",
}

# page -> why it does not match (none at the moment; docs/fidelity.md keeps the list).
MISMATCH: dict[str, str] = {}


def _params():
    for page in PAGES:
        marks = [pytest.mark.xfail(strict=True, reason=MISMATCH[page])] if page in MISMATCH else []
        yield pytest.param(page, marks=marks, id=page.replace("/test/html/", "/"))


pytestmark = pytest.mark.skipif(not PAGES, reason=f"no corpus at {CORPUS}")

HELPERS_JS = r"""
window.__cbJson = {
  replacer(key, value) {
    if (value instanceof ArrayBuffer) value = new Uint8Array(value);
    if (ArrayBuffer.isView(value)) {
      const u8 = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      let s = "";
      for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
      return {$bin: btoa(s)};
    }
    return value;
  },
  reviver(key, value) {
    if (value && typeof value === "object" && typeof value.$bin === "string") {
      const s = atob(value.$bin);
      const u8 = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
      return u8;
    }
    return value;
  },
};
// The rules of every <style> sheet in tree order (open shadow roots included): what the
// page's CSS is after insertRule/deleteRule and appended text, as the CSSOM serializes it.
window.__cbSheets = (root) => {
  const out = [];
  const visit = (node) => {
    for (const el of node.querySelectorAll("style")) {
      if (el.closest("cobrowse-overlay, [data-cobrowse-overlay]")) continue;
      let rules = null;
      try {
        rules = el.sheet ? Array.from(el.sheet.cssRules, (r) => r.cssText) : null;
      } catch (e) {
        rules = "unreadable: " + e.name;
      }
      out.push(rules);
    }
    for (const el of node.querySelectorAll("*")) if (el.shadowRoot) visit(el.shadowRoot);
  };
  visit(root);
  return out;
};
"""

START_JS = """() => {
  window.__cbEvents = [];
  window.__cbCapture = Cobrowse._capture((kind, payload) => window.__cbEvents.push([kind, payload]));
}"""

STOP_JS = """async ([normalise, options]) => {
  await new Promise((r) => setTimeout(r, 0));  // every mutation record delivered
  window.__cbCapture.flush();
  const tree = (0, eval)("(" + normalise + ")")(document, options);
  const sheets = JSON.stringify(window.__cbSheets(document));
  window.__cbCapture.stop();
  // JSON text: a 1,000-deep tree is more than Playwright's serializer (and Python's json) takes
  return {events: JSON.stringify(window.__cbEvents, window.__cbJson.replacer),
          tree: JSON.stringify(tree), sheets};
}"""

VIEWER_HTML = (
    "<!DOCTYPE html><html><head><title>viewer</title></head><body style='margin:0'>"
    '<iframe id="f" sandbox="allow-same-origin" style="width:1280px;height:800px;border:0">'
    "</iframe></body></html>"
)

REPLAY_JS = """async ([events, normalise, options]) => {
  const iframe = document.getElementById("f");
  const sign = async (urls) => urls;  // no proxy here: the local server's URLs as they are
  const rewriteCss = async (css) => css;
  const r = CobrowseViewer.replayer(iframe, {sign, rewriteCss});
  for (const [kind, payload] of JSON.parse(events, window.__cbJson.reviver)) {
    await r.apply(kind, payload);
  }
  await new Promise((res) => setTimeout(res, 50));  // signed URLs and CSS settle
  const doc = iframe.contentDocument;
  return {tree: JSON.stringify((0, eval)("(" + normalise + ")")(doc, options)),
          sheets: JSON.stringify(window.__cbSheets(doc))};
}"""


class Mirror:
    def __init__(self, browser, server: StaticServer) -> None:
        self.server = server
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        self.ctx.set_default_timeout(15_000)
        local = server.url + "/"
        self.ctx.route(
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(local)
                else route.abort("blockedbyclient")
            ),
        )
        self.visitor = self.ctx.new_page()
        self.viewer = self.ctx.new_page()
        self.cobrowse = bundle("cobrowse.js").body.decode()
        self.embed = bundle("embed.js").body.decode()

    def run(self, page: str, tamper=None) -> dict:
        """Mirror one corpus page; the visitor's and the viewer's trees and sheets.
        `tamper(events)` may change the recorded [kind, payload] list before the replay."""
        v = self.visitor
        v.goto(f"{self.server.url}/{page}", wait_until="load")
        for src in (self.cobrowse, HELPERS_JS):
            v.add_script_tag(content=src).evaluate("s => s.remove()")  # not part of the page
        v.evaluate(START_JS)
        work = WORKLOADS.get(page, WORKLOAD_JS)
        if callable(work):
            v.bring_to_front()  # user actions wait for animation frames: not in a background tab
            work(v)
        else:
            v.evaluate(work)
        v.wait_for_timeout(SETTLE_MS)
        if page in BEFORE_COMPARE:
            v.evaluate(BEFORE_COMPARE[page])
        options = {**COMPARE, **COMPARE_EXTRA.get(page, {})}
        got = v.evaluate(STOP_JS, [dom_compare.NORMALIZE_JS, options])
        w = self.viewer
        w.set_content(VIEWER_HTML)
        for src in (self.embed, HELPERS_JS):
            w.add_script_tag(content=src)
        events = got["events"]
        if tamper is not None:
            events = json.dumps(tamper(json.loads(events)))
        mirrored = w.evaluate(REPLAY_JS, [events, dom_compare.NORMALIZE_JS, options])
        return {
            "visitor": got["tree"],
            "viewer": mirrored["tree"],
            "visitor_sheets": got["sheets"],
            "viewer_sheets": mirrored["sheets"],
        }

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture(scope="module")
def mirror(chromium):
    server = StaticServer(CORPUS)
    m = Mirror(chromium, server)
    try:
        yield m
    finally:
        m.close()
        server.close()


@pytest.mark.parametrize("page", list(_params()))
def test_page_is_mirrored(mirror, page):
    got = mirror.run(page)
    assert_same(got["visitor"], got["viewer"], "DOM")
    assert_same(got["visitor_sheets"], got["viewer_sheets"], "<style> rules")


def first_difference(a: str, b: str) -> str | None:
    """Two trees as JSON text. The normaliser's output is canonical (equal trees give equal
    text); on a difference, dom_compare names the first one (with room for deep trees)."""
    if a == b:
        return None
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return dom_compare.first_difference(json.loads(a), json.loads(b)) or "JSON text only"
    finally:
        sys.setrecursionlimit(limit)


def assert_same(a: str, b: str, what: str) -> None:
    d = first_difference(a, b)
    assert d is None, f"{what} differ at {d}"


def test_the_comparison_notices_a_lost_event(mirror):
    """The harness is not vacuous: a page differs without its mutation events, and its
    sheets differ without the snapshot's CSSOM text (`css` of a <style> given insertRule)."""
    got = mirror.run(
        "rrweb/test/html/mutation-observer.html",
        tamper=lambda evs: [e for e in evs if e[0] != "mutation"],
    )
    assert first_difference(got["visitor"], got["viewer"]) is not None

    def drop_css(node):
        if isinstance(node, dict):
            node.pop("css", None)
            for v in node.values():
                drop_css(v)
        elif isinstance(node, list):
            for v in node:
                drop_css(v)
        return node

    got = mirror.run("rrweb/test/html/style.html", tamper=drop_css)
    assert first_difference(got["visitor"], got["viewer"]) is None
    assert first_difference(got["visitor_sheets"], got["viewer_sheets"]) is not None
