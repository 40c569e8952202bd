"""Co-browsing end to end with the visitor in Firefox ESR and WebKitGTK, and the agent's
viewer in Firefox, through a real local cluster (the pattern of test_browser_e2e.py, whose
helpers this module reuses; tests/support/engines.py drives the browsers).

`make test` runs the subset (snapshot + 200 mutations + form input + masking with the
visitor in Firefox and the viewer in Chromium, and with the visitor in WebKit and the viewer
in Firefox; the canvas-size regression in a Firefox viewer; remote control with the visitor
in Firefox and in WebKit, about 10 s each); `make test-engines` runs all 15 (the rest are
marked `engines_full`: more pairs, hover, canvas, hostile page).
"""

from __future__ import annotations

import base64
import json
import time
from contextlib import closing, contextmanager

import msgpack
import pytest

from tests.browser.test_browser_e2e import (
    RANDOM_MUTATIONS,
    VDOC,
    cluster,  # noqa: F401  (the module's local cluster fixture)
    poll,
    wait_same,
)
from tests.support import engines, fidelity

pytestmark = pytest.mark.timeout(240)

full = pytest.mark.engines_full

# Frames the page hands to WebSocket.send, as base64: the same record in every engine
# (Playwright's framesent event is Chromium-only). Installed before Cobrowse.start, which
# opens the socket.
RECORD_SENT = """(() => { window.__cbSent = []; const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) {
    let u = typeof d === 'string' ? new TextEncoder().encode(d)
      : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    let s = ''; for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
    __cbSent.push(btoa(s)); return send.call(this, d); };
  return true; })()"""


@pytest.fixture(scope="module")
def browsers(chromium):
    """One browser per engine for the module, started when a test first asks for it."""
    started: dict[str, engines.Engine] = {}

    def get(name: str) -> engines.Engine:
        if name not in started:
            try:
                started[name] = engines.start(name, chromium)
            except engines.EngineMissing as e:
                pytest.fail(f"{e}: run `make test`, which installs it")
        return started[name]

    yield get
    for e in started.values():
        e.close()


class EngineVisitor:
    """The visitor's page in any engine; `page.evaluate` as Playwright's, for wait_same."""

    def __init__(self, engine: engines.Engine, cluster, page_name: str) -> None:  # noqa: F811
        self.page = engine.open(cluster.page(page_name), 900, 600)
        self.sent: list[bytes] = []
        assert self.page.evaluate(RECORD_SENT)
        started = self.page.evaluate("Cobrowse.start({consented: true})")
        self.sid, self.code = started["sessionId"], started["code"]

    def frames(self) -> list[dict]:
        self.sent += [base64.b64decode(f) for f in self.page.evaluate("__cbSent.splice(0)")]
        return [msgpack.unpackb(f, raw=False) for f in self.sent]

    def events(self, kind: str) -> list:
        return [e for f in self.frames() if f.get("t") == "ev" for e in f["ev"] if e[1] == kind]

    def close(self) -> None:
        self.page.close()


class EngineAgent:
    def __init__(self, engine: engines.Engine, cluster, code: str) -> None:  # noqa: F811
        self.page = engine.open(cluster.embed_url(code), 1200, 900)
        poll(
            self.page,
            f"CobrowseViewer.current && CobrowseViewer.current.state === 'live' && {VDOC} && {VDOC}.body && {VDOC}.body.childElementCount > 0",
            20,
            f"the viewer to go live in {engine.name}",
        )

    def close(self) -> None:
        self.page.close()


@contextmanager
def pair(browsers, cluster, page_name: str, visitor: str, viewer: str):  # noqa: F811
    """A visitor in one engine that started a session, and an agent in another watching it."""
    with closing(EngineVisitor(browsers(visitor), cluster, page_name)) as v:
        with closing(EngineAgent(browsers(viewer), cluster, v.code)) as a:
            yield v, a


FORM_STATE = """(doc) => ({
    name: doc.getElementById('name').value, gift: doc.getElementById('gift').checked,
    r2: doc.getElementById('r2').checked, size: doc.getElementById('size').value,
    colors: [...doc.getElementById('colors').selectedOptions].map(o => o.value),
    scroller: Math.round(doc.getElementById('scroller').scrollTop), win: Math.round(doc.defaultView.scrollY) })"""
# Rounded: Firefox snaps scroll offsets to device pixels, and in the viewer's scaled frame a
# device pixel is a fraction of a CSS pixel (window.scrollTo(0, 400) reads 399.75 there).

# What Playwright's select_option does: set the selection, then input and change events.
SELECT = """() => { const pick = (id, vals) => { const s = document.getElementById(id);
    for (const o of s.options) o.selected = vals.includes(o.value);
    s.dispatchEvent(new Event('input', {bubbles: true})); s.dispatchEvent(new Event('change', {bubbles: true})); };
  pick('size', ['L']); pick('colors', ['red', 'blue']);
  document.getElementById('scroller').scrollTop = 120; window.scrollTo(0, 400); return true; }"""

SECRETS = ("hunter2-Zq9", "4111111111111111")


def mirror_mutations_input_and_masking(v: EngineVisitor, a: EngineAgent) -> None:
    """Snapshot, 200 random mutations, typed and selected form state, scroll; then no
    private value (typed password and card number, private text) went over the wire."""
    wait_same(v, a, what=f"{v.page.engine} visitor: after the snapshot")
    assert v.page.evaluate(RANDOM_MUTATIONS, 20261125) == 200
    wait_same(v, a, what=f"{v.page.engine} visitor: after 200 random mutations")
    v.page.type("#name", "Grace Hopper")
    v.page.type("#pw", SECRETS[0])
    v.page.type("#cc", SECRETS[1])
    v.page.click("#gift")
    v.page.click("#r2")
    assert v.page.evaluate(f"({SELECT})()")
    v.page.evaluate("document.getElementById('secret').textContent = 'Account 5555-6666-7777'")
    want = {
        "name": "Grace Hopper",
        "gift": True,
        "r2": True,
        "size": "L",
        "colors": ["red", "blue"],
        "scroller": 120,
        "win": 400,
    }
    assert v.page.evaluate(f"({FORM_STATE})(document)") == want
    try:
        poll(
            a.page,
            f"JSON.stringify(({FORM_STATE})({VDOC})) === {json.dumps(json.dumps(want, separators=(',', ':')))}",
            15,
            f"{v.page.engine} visitor: form state and scroll in the viewer",
        )
    except AssertionError as e:
        raise AssertionError(f"{e}: {a.page.evaluate(f'({FORM_STATE})({VDOC})')}") from None
    wait_same(v, a, what=f"{v.page.engine} visitor: after form input")
    assert a.page.evaluate(f"{VDOC}.getElementById('pw').value") == "*" * 8
    v.frames()
    raw = b"".join(v.sent)
    snap = b"".join(bytes(e[3]["d"]) for e in v.events("snapshot")).decode("utf-8", "replace")
    for secret in (*SECRETS, "hunter", "41111111", "9911-2233-4455", "5555-6666-7777"):
        assert secret.encode() not in raw, f"{v.page.engine}: {secret!r} went over the wire"
        assert secret not in snap
    html = a.page.evaluate(f"{VDOC}.documentElement.outerHTML")
    for secret in (*SECRETS, "9911-2233-4455", "5555-6666-7777"):
        assert secret not in html


@pytest.mark.parametrize(
    "visitor, viewer",
    [
        ("firefox", "chromium"),
        ("webkit", "firefox"),
        pytest.param("webkit", "chromium", marks=full),
        pytest.param("chromium", "firefox", marks=full),
        pytest.param("firefox", "firefox", marks=full),
    ],
)
def test_snapshot_mutations_input_and_masking(browsers, cluster, visitor, viewer):  # noqa: F811
    with pair(browsers, cluster, "e2e_shop.html", visitor, viewer) as (v, a):
        mirror_mutations_input_and_masking(v, a)


HOVER_STYLE = "(doc) => { const cs = doc.defaultView.getComputedStyle(doc.getElementById('buy')); return [cs.backgroundColor, cs.color]; }"


@full
@pytest.mark.parametrize("visitor, viewer", [("firefox", "chromium"), ("webkit", "firefox")])
def test_hover_reaches_the_viewer(browsers, cluster, visitor, viewer):  # noqa: F811
    with pair(browsers, cluster, "e2e_shop.html", visitor, viewer) as (v, a):
        poll(a.page, f"({HOVER_STYLE})({VDOC})[0] === 'rgb(200, 200, 200)'", 15, "the sheet")
        v.page.hover("#buy")
        assert v.page.evaluate(f"({HOVER_STYLE})(document)") == [
            "rgb(10, 125, 50)",
            "rgb(255, 255, 0)",
        ]
        poll(a.page, f"({HOVER_STYLE})({VDOC})[1] === 'rgb(255, 255, 0)'", 10, "hover style")
        v.page.mouse(5, 590)
        poll(a.page, f"({HOVER_STYLE})({VDOC})[0] === 'rgb(200, 200, 200)'", 10, "hover to end")


@full
@pytest.mark.parametrize("visitor, viewer", [("firefox", "chromium"), ("webkit", "firefox")])
def test_canvas_reaches_the_viewer(browsers, cluster, visitor, viewer):  # noqa: F811
    draw = "(c) => { const x = document.getElementById('moving').getContext('2d'); x.fillStyle = c; x.fillRect(0, 0, 64, 32); return true; }"
    pixel = f"(() => {{ const c = {VDOC}.getElementById('moving'); const d = c.getContext('2d').getImageData(10, 10, 1, 1).data; return [d[0], d[1], d[2]]; }})()"
    with pair(browsers, cluster, "e2e_shop.html", visitor, viewer) as (v, a):
        v.page.evaluate(draw, "rgb(255, 0, 0)")
        poll(a.page, f"(p => p[0] > 240 && p[1] < 15 && p[2] < 15)({pixel})", 10, "red canvas")
        v.page.evaluate(draw, "rgb(0, 0, 255)")
        poll(a.page, f"(p => p[2] > 240 && p[0] < 15)({pixel})", 10, "blue canvas")


@full
@pytest.mark.parametrize(
    "visitor, viewer", [("firefox", "chromium"), ("webkit", "chromium"), ("chromium", "firefox")]
)
def test_hostile_page_never_runs_in_the_viewer(browsers, cluster, visitor, viewer):  # noqa: F811
    with pair(browsers, cluster, "e2e_hostile.html", visitor, viewer) as (v, a):
        poll(a.page, f"!!{VDOC}.getElementById('a1')", 10, "the hostile page in the viewer")
        v.page.evaluate(
            """(() => { const later = document.getElementById('later');
            const img = document.createElement('img'); img.setAttribute('src', 'x:nope');
            img.setAttribute('onerror', "parent.__pwned='mutation-onerror'"); later.appendChild(img);
            const s = document.createElement('script'); s.textContent = "parent.__pwned='mutation-script'";
            later.appendChild(s);
            document.getElementById('a1').setAttribute('href', "javascript:parent.__pwned='attr'");
            return true; })()"""
        )
        poll(a.page, f"{VDOC}.querySelectorAll('#later *').length >= 2", 10, "the mutations")
        for sel in ("#a1", "#a2", "#btn", "#sa"):
            a.page.evaluate(
                f"(() => {{ const el = {VDOC}.querySelector('{sel}'); if (el) el.dispatchEvent(new MouseEvent('click', {{bubbles: true}})); return true; }})()"
            )
        time.sleep(1.0)
        assert a.page.evaluate("window.__pwned === undefined")
        assert a.page.evaluate(f"{VDOC}.defaultView.__visitorRan === undefined")
        assert (
            a.page.evaluate(
                f"{VDOC}.querySelectorAll('script, base, iframe[srcdoc], object, embed, meta[http-equiv]').length"
            )
            == 0
        )
        handlers = a.page.evaluate(
            f"[...{VDOC}.querySelectorAll('*')].flatMap(el => [...el.attributes].filter(at => /^on/i.test(at.name) || /^\\s*javascript:/i.test(at.value)).map(at => el.tagName + ' ' + at.name))"
        )
        assert handlers == []
        assert a.page.evaluate("location.pathname") == "/embed"


def test_a_canvas_without_an_image_keeps_its_size_in_a_firefox_viewer(browsers):
    """The viewer sized canvases with CSS `attr(width px)`, which only Chromium knows: in a
    Firefox (or WebKit) replica a canvas with no image yet, or never one (tainted), was
    0x0 and the page below it moved up (corpus canvas.html: 122 px tall, 35 px replica).
    The corpus page is mirrored within 300 ms, before the first canvas image."""
    ff = browsers("firefox")
    with fidelity.corpus_server() as url:
        visitor = ff.open("about:blank", fidelity.WIDTH, fidelity.HEIGHT)
        viewer = ff.open("about:blank", fidelity.WIDTH, fidelity.HEIGHT)
        try:
            got = fidelity.mirror_page(
                visitor, viewer, url, "rrweb/test/html/canvas.html", fidelity.bundles()
            )
        finally:
            visitor.close()
            viewer.close()
    assert got.dom is None, got.dom
    want, mirrored = got.boxes
    assert any(tag == "canvas" for tag, _ in want), want
    assert mirrored == want


# Added to the visitor's page for remote control: a search form (implicit submission has a
# default button to click) and a chat box.
RC_PAGE = """() => { document.getElementById('scroller').insertAdjacentHTML('afterend',
  '<form id="search"><input id="q"><button id="go">Go</button></form>' +
  '<div id="chat" contenteditable>hi <b>there</b></div>');
  window.__rc = [];
  document.getElementById('search').addEventListener('submit', (e) => { e.preventDefault();
    __rc.push(['submit', document.getElementById('q').value]); });
  document.getElementById('q').addEventListener('keydown', (e) => __rc.push(['keydown', e.key]));
  return true; }"""


@pytest.mark.parametrize("visitor, viewer", [("firefox", "chromium"), ("webkit", "chromium")])
def test_remote_control_acts_in_the_visitors_engine(browsers, cluster, visitor, viewer):  # noqa: F811
    """The visitor's keyboard grants control in its engine's dialog; the agent's typing, Enter
    (implicit submission), a select's choice, a contenteditable region's text and a click
    then act on the page through the gateway, as the Chromium tests check."""
    with pair(browsers, cluster, "e2e_shop.html", visitor, viewer) as (v, a):
        assert v.page.evaluate(f"({RC_PAGE})()")
        poll(a.page, f"!!{VDOC}.getElementById('chat')", 10, "the added nodes in the replica")
        ids = v.page.evaluate(
            "Object.fromEntries(['q', 'size', 'chat', 'gift'].map((k) => [k, Cobrowse._nodeId(document.getElementById(k))]))"
        )

        def send(kind: str, payload: dict) -> None:
            a.page.evaluate(
                f"CobrowseViewer.current.wire.send({json.dumps(kind)}, {json.dumps(payload)})"
            )

        send("rc-request", {})
        poll(v.page, "!!Cobrowse._controlState().dialog", 10, f"the prompt in {visitor}")
        v.page.press("Tab")  # from "Refuse" to "Allow control"
        v.page.press("Enter")
        aid = a.page.evaluate("CobrowseViewer.current.wire.aid")
        poll(v.page, f"Cobrowse._controlState().holder === {json.dumps(aid)}", 10, "the grant")
        poll(a.page, "document.getElementById('cb-control').dataset.state === 'granted'", 10)

        send("rc-text", {"id": ids["q"], "value": "red shoes", "done": True})
        send("rc-key", {"id": ids["q"], "key": "Enter"})
        send("rc-text", {"id": ids["size"], "value": "S", "done": True})
        send("rc-text", {"id": ids["chat"], "value": "hello from support"})
        send("rc-click", {"id": ids["gift"], "x": 2, "y": 2})
        state = """JSON.stringify([document.getElementById('q').value, __rc,
          document.getElementById('size').value, document.getElementById('chat').textContent,
          document.getElementById('gift').checked])"""
        want = [
            "red shoes",
            [["keydown", "Enter"], ["submit", "red shoes"]],
            "S",
            "hello from support",
            True,
        ]
        try:
            poll(v.page, f"{state} === {json.dumps(json.dumps(want, separators=(',', ':')))}", 10)
        except AssertionError as e:
            raise AssertionError(f"{e} in {visitor}: {v.page.evaluate(state)}") from None
        assert v.page.evaluate("Cobrowse._controlState().ignored") == 0
