"""Co-browsing end to end with the visitor in Firefox ESR and WebKitGTK, and the agent's
viewer in Firefox, through a real local cluster (the pattern of test_browser_e2e.py, whose
helpers this module reuses; tests/support/engines.py drives the browsers).

`make test` runs the subset (one snapshot + 200 mutations + form input + masking test per
visitor engine, one viewer-in-Firefox test); `make test-engines` runs the whole matrix
(marker `engines_full`: hover, canvas, hostile page, per engine).
"""

from __future__ import annotations

import base64
import json
import time
from contextlib import contextmanager

import msgpack
import pytest

from tests.browser.test_browser_e2e import (
    OURS,
    RANDOM_MUTATIONS,
    VDOC,
    cluster,  # noqa: F401  (the module's local cluster fixture)
    poll,
    viewer_tree,
    visitor_tree,
    wait_same,
)
from tests.support import engines

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
    v = EngineVisitor(browsers(visitor), cluster, page_name)
    try:
        a = EngineAgent(browsers(viewer), cluster, v.code)
        try:
            yield v, a
        finally:
            a.close()
    finally:
        v.close()


FORM_STATE = """(doc) => ({
    name: doc.getElementById('name').value, gift: doc.getElementById('gift').checked,
    r2: doc.getElementById('r2').checked, size: doc.getElementById('size').value,
    colors: [...doc.getElementById('colors').selectedOptions].map(o => o.value),
    scroller: doc.getElementById('scroller').scrollTop, win: doc.defaultView.scrollY })"""

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
    poll(
        a.page,
        f"JSON.stringify(({FORM_STATE})({VDOC})) === {json.dumps(json.dumps(want, separators=(',', ':')))}",
        15,
        f"{v.page.engine} visitor: form state and scroll in the viewer",
    )
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


@pytest.mark.parametrize("visitor", ["firefox", "webkit"])
def test_visitor_engine_snapshot_mutations_input_and_masking(browsers, cluster, visitor):  # noqa: F811
    with pair(browsers, cluster, "e2e_shop.html", visitor, "chromium") as (v, a):
        mirror_mutations_input_and_masking(v, a)


def test_viewer_in_firefox_mirrors_a_chromium_visitor(browsers, cluster):  # noqa: F811
    with pair(browsers, cluster, "e2e_shop.html", "chromium", "firefox") as (v, a):
        mirror_mutations_input_and_masking(v, a)
