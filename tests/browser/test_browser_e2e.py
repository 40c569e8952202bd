"""Co-browsing end to end in real Chromium, through a real local cluster.

A visitor page carrying the one script tag, in one browser context; the agent's `/embed`
page in another; NATS, a gateway, the router and the proxy as real processes. What the
agent sees is compared with what the visitor has, after the snapshot, after random DOM
mutations and after form input; the wire is watched for private values (G4).
"""

from __future__ import annotations

import base64
import json
import os
import time
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import msgpack
import pytest

from tests.support import dom_compare, e2e_cluster

pytestmark = pytest.mark.timeout(180)

FRAME = "document.getElementById('cb-frame')"
VDOC = f"{FRAME}.contentDocument"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = e2e_cluster.start(tmp_path_factory.mktemp("e2e"))
    yield c
    c.stop()
    reports = c.local.last_resort_reports()  # the graceful stop's too
    assert not reports, "\n".join(reports[:5])


def poll(page, expr: str, timeout: float = 15.0, what: str = ""):
    """Wait until `expr` is truthy. The embed page's CSP forbids eval, which Playwright's
    wait_for_function needs, so this polls with evaluate (run by the debugger, not eval)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expr)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or expr}")
        time.sleep(0.05)


class Visitor:
    def __init__(self, chromium, cluster, page_name: str, viewport: dict | None = None) -> None:
        self.ctx = chromium.new_context(viewport=viewport or {"width": 900, "height": 600})
        self.page = self.ctx.new_page()
        self.sent: list[bytes] = []
        self.page.on("websocket", self._watch)
        self.page.goto(cluster.page(page_name))
        started = self.page.evaluate("Cobrowse.start({consented: true})")
        self.sid, self.code = started["sessionId"], started["code"]

    def _watch(self, ws) -> None:
        ws.on(
            "framesent",
            lambda payload: self.sent.append(
                payload if isinstance(payload, bytes) else payload.encode()
            ),
        )

    def frames(self) -> list[dict]:
        return [msgpack.unpackb(f, raw=False) for f in self.sent]

    def events(self, kind: str | None = None) -> list:
        out = []
        for f in self.frames():
            if f.get("t") == "ev":
                out += [e for e in f["ev"] if kind is None or e[1] == kind]
        return out

    def close(self) -> None:
        self.ctx.close()


class Agent:
    def __init__(self, chromium, cluster, code: str) -> None:
        self.ctx = chromium.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.ctx.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(cluster.embed_url(code))
        poll(
            self.page,
            f"CobrowseViewer.current && CobrowseViewer.current.state === 'live' && {VDOC} && {VDOC}.body && {VDOC}.body.childElementCount > 0",
            20,
            "the viewer to go live",
        )

    def close(self) -> None:
        self.ctx.close()


OURS = "cobrowse-overlay, cobrowse-consent, [data-cobrowse-overlay]"  # the snippet's own UI


@contextmanager
def pair(chromium, cluster, page_name: str, visitor_viewport: dict | None = None):
    """A visitor on `page_name` that started a session, and an agent watching it."""
    v = Visitor(chromium, cluster, page_name, visitor_viewport)
    try:
        a = Agent(chromium, cluster, v.code)
        try:
            yield v, a
        finally:
            a.close()
    finally:
        v.close()


def visitor_tree(v: Visitor):
    return v.page.evaluate(dom_compare.js_call("document", ignore=OURS))


def viewer_tree(a: Agent):
    return a.page.evaluate(dom_compare.js_call(VDOC, ignore=OURS))


def wait_same(
    v: Visitor, a: Agent, timeout: float = 15.0, what: str = "the viewer to match"
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        want, got = visitor_tree(v), viewer_tree(a)
        if want == got:
            return
        if time.monotonic() > deadline:
            dom_compare.assert_same(want, got, what)
        time.sleep(0.1)


RANDOM_MUTATIONS = """
(seed) => {
  // A seeded PRNG (mulberry32) so a failure can be replayed.
  let s = seed >>> 0;
  const rnd = () => { s = (s + 0x6D2B79F5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const root = document.getElementById('playground');
  const all = () => [root, ...root.querySelectorAll('*')];
  const tags = ['div', 'p', 'span', 'b', 'i', 'ul', 'li', 'section', 'em'];
  let n = 0;
  const ops = [
    () => { const el = document.createElement(pick(tags)); el.textContent = 'n' + (n++);
            const parent = pick(all()); const ref = pick([null, ...parent.childNodes]);
            parent.insertBefore(el, ref); },
    () => { const c = all().slice(1); if (c.length > 3) pick(c).remove(); },
    () => { const c = all().slice(1); if (!c.length) return; const el = pick(c);
            const target = pick(all()); if (el.contains(target)) return;
            target.insertBefore(el, pick([null, ...target.childNodes])); },
    () => { pick(all()).setAttribute(pick(['class', 'title', 'data-x']), 'v' + Math.floor(rnd() * 100)); },
    () => { const el = pick(all()); el.removeAttribute(pick(['class', 'title', 'data-x'])); },
    () => { const texts = []; const w = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
            while (w.nextNode()) texts.push(w.currentNode); if (texts.length) pick(texts).data = 't' + (n++); },
    () => { pick(all()).appendChild(document.createTextNode(' x' + (n++))); },
  ];
  return new Promise((resolve) => {
    let done = 0;
    const step = () => {
      // Several mutations per task, so batches hold adds, moves and removals together.
      for (let k = 0; k < 10 && done < 200; k++, done++) pick(ops)();
      if (done < 200) setTimeout(step, 5); else resolve(done);
    };
    step();
  });
}
"""


def test_viewer_mirrors_snapshot_mutations_and_form_input(chromium, cluster):
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        wait_same(v, a, what="after the snapshot")
        assert v.page.evaluate(RANDOM_MUTATIONS, 20261125) == 200
        wait_same(v, a, what="after 200 random mutations")
        # typing, selecting, checking, scrolling
        v.page.fill("#name", "Grace Hopper")
        v.page.fill("#notes", "second\nthird")
        v.page.check("#gift")
        v.page.check("#r2")
        v.page.select_option("#size", "L")
        v.page.select_option("#colors", ["red", "blue"])
        v.page.evaluate(
            "document.getElementById('scroller').scrollTop = 120; window.scrollTo(0, 400)"
        )
        want = {
            "name": "Grace Hopper",
            "notes": "second\nthird",
            "gift": True,
            "r1": False,
            "r2": True,
            "size": "L",
            "colors": ["red", "blue"],
        }
        state_js = """(doc) => ({
            name: doc.getElementById('name').value, notes: doc.getElementById('notes').value,
            gift: doc.getElementById('gift').checked, r1: doc.getElementById('r1').checked,
            r2: doc.getElementById('r2').checked, size: doc.getElementById('size').value,
            colors: [...doc.getElementById('colors').selectedOptions].map(o => o.value),
            scroller: doc.getElementById('scroller').scrollTop,
            win: doc.defaultView.scrollY })"""
        assert {
            k: val for k, val in v.page.evaluate(f"({state_js})(document)").items() if k in want
        } == want
        poll(
            a.page,
            f"(() => {{ const s = ({state_js})({VDOC}); return s.name === 'Grace Hopper' && s.size === 'L' "
            "&& s.r2 && s.gift && s.colors.join() === 'red,blue' && s.notes === 'second\\nthird' "
            "&& s.scroller === 120 && s.win === 400; })()",
            15,
            "form state and scroll in the viewer",
        )
        wait_same(v, a, what="after form input")


def test_hover_in_the_viewer_has_the_visitors_computed_style(chromium, cluster):
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        # the proxied stylesheet has arrived and applies
        poll(
            a.page,
            f"{VDOC}.defaultView.getComputedStyle({VDOC}.getElementById('buy')).backgroundColor === 'rgb(200, 200, 200)'",
            15,
            "the proxied stylesheet",
        )
        v.page.hover("#buy")
        style = "(doc) => { const cs = doc.defaultView.getComputedStyle(doc.getElementById('buy')); return [cs.backgroundColor, cs.color]; }"
        want = v.page.evaluate(f"({style})(document)")
        assert want == ["rgb(10, 125, 50)", "rgb(255, 255, 0)"]
        poll(
            a.page,
            f"(s => s[0] === {json.dumps(want[0])} && s[1] === {json.dumps(want[1])})(({style})({VDOC}))",
            10,
            "hover style",
        )
        # leaving the element takes the hover away again
        v.page.mouse.move(5, 590)
        poll(a.page, f"({style})({VDOC})[0] === 'rgb(200, 200, 200)'", 10, "hover to end")
        # the menu item: the rule is on li:hover > a, so the ancestor must carry the class too
        v.page.hover("#shoes")
        poll(
            a.page,
            f"{VDOC}.defaultView.getComputedStyle({VDOC}.getElementById('shoes')).color === 'rgb(200, 0, 0)'",
            10,
            "ancestor hover",
        )


def test_canvas_changes_are_sent_and_unchanged_canvases_are_not(chromium, cluster):
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        draw = "(c) => { const x = document.getElementById('moving').getContext('2d'); x.fillStyle = c; x.fillRect(0, 0, 64, 32); }"
        v.page.evaluate(f"({draw})('rgb(255, 0, 0)')")
        pixel = f"(() => {{ const c = {VDOC}.getElementById('moving'); const d = c.getContext('2d').getImageData(10, 10, 1, 1).data; return [d[0], d[1], d[2]]; }})()"
        poll(
            a.page,
            f"(p => p[0] > 240 && p[1] < 15 && p[2] < 15)({pixel})",
            10,
            "a red canvas in the viewer",
        )
        # The replica has scripting disabled, where a <canvas> shows only its fallback
        # content: the agent must see the image anyway, at the canvas's size.
        shown = a.page.evaluate(
            f"(() => {{ const c = {VDOC}.getElementById('moving'); const r = c.getBoundingClientRect();"
            f" return [r.width, r.height, {VDOC}.defaultView.getComputedStyle(c).backgroundImage]; }})()"
        )
        assert shown[0] == 64 and shown[1] == 32 and shown[2].startswith('url("blob:'), shown
        v.page.evaluate(f"({draw})('rgb(0, 0, 255)')")
        poll(a.page, f"(p => p[2] > 240 && p[0] < 15)({pixel})", 10, "a blue canvas in the viewer")
        time.sleep(1.5)  # three sampling intervals with nothing drawn
        ids = {}
        for e in v.events("canvas"):
            ids.setdefault(e[3]["id"], []).append(e[3])
        moving = v.page.evaluate("Cobrowse._nodeId(document.getElementById('moving'))")
        counts = sorted(len(x) for x in ids.values())
        # 'still' was drawn once before the snapshot: at most one image; 'moving' twice (+ its first blank)
        assert len(ids) == 2, ids.keys()
        assert 2 <= len(ids[moving]) <= 3, len(ids[moving])
        assert counts[0] <= 1 and counts[-1] <= 3, counts
        before = len(v.events("canvas"))
        time.sleep(1.2)
        assert len(v.events("canvas")) == before, "an unchanged canvas was sent again"


def test_private_values_never_reach_the_wire_or_the_viewer(chromium, cluster):
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        secret_pw, secret_cc = "hunter2-Zq9", "4111111111111111"
        v.page.type("#pw", secret_pw, delay=5)
        v.page.type("#cc", secret_cc, delay=5)
        v.page.evaluate("document.getElementById('secret').textContent = 'Account 5555-6666-7777'")
        v.page.fill("#name", "visible")
        poll(a.page, f"{VDOC}.getElementById('name').value === 'visible'", 10, "the public field")
        time.sleep(0.3)
        raw = b"".join(v.sent)
        for secret in (
            secret_pw,
            secret_cc,
            "9911-2233-4455",
            "5555-6666-7777",
            "hunter",
            "41111111",
        ):
            assert secret.encode() not in raw, f"{secret!r} went over the wire"
        # snapshot parts are JSON inside msgpack bin: check the decoded text too
        snap = b"".join(bytes(e[3]["d"]) for e in v.events("snapshot")).decode("utf-8", "replace")
        assert "9911" not in snap and secret_pw not in snap
        html = a.page.evaluate(f"{VDOC}.documentElement.outerHTML")
        values = a.page.evaluate(
            f"[...{VDOC}.querySelectorAll('input')].map(i => i.value).join('|')"
        )
        for secret in (secret_pw, secret_cc, "9911-2233-4455", "5555-6666-7777"):
            assert secret not in html and secret not in values
        assert a.page.evaluate(f"{VDOC}.getElementById('pw').value") == "*" * 8


def test_scripts_handlers_and_javascript_urls_never_run_in_the_viewer(chromium, cluster):
    with pair(chromium, cluster, "e2e_hostile.html") as (v, a):
        poll(a.page, f"!!{VDOC}.getElementById('a1')", 10, "the hostile page in the viewer")
        # later additions and attribute changes are hostile too
        v.page.evaluate(
            """() => {
            const later = document.getElementById('later');
            const img = document.createElement('img'); img.setAttribute('src', 'x:nope');
            img.setAttribute('onerror', "parent.__pwned='mutation-onerror'"); later.appendChild(img);
            const s = document.createElement('script'); s.textContent = "parent.__pwned='mutation-script'";
            later.appendChild(s);
            document.getElementById('a1').setAttribute('href', "javascript:parent.__pwned='attr'");
            document.getElementById('i1').setAttribute('onload', "parent.__pwned='attr-onload'");
        }"""
        )
        poll(a.page, f"{VDOC}.querySelectorAll('#later *').length >= 2", 10, "the mutations")
        # try to trigger what could run: clicks on links and buttons inside the viewer
        for sel in ("#a1", "#a2", "#btn", "#sa"):
            a.page.evaluate(
                f"(() => {{ const el = {VDOC}.querySelector('{sel}'); if (el) el.dispatchEvent(new MouseEvent('click', {{bubbles: true}})); }})()"
            )
        time.sleep(1.0)
        assert a.page.evaluate("window.__pwned === undefined"), a.page.evaluate(
            "String(window.__pwned)"
        )
        assert a.page.evaluate(f"{VDOC}.defaultView.__visitorRan === undefined")
        assert (
            a.page.evaluate(
                f"{VDOC}.querySelectorAll('script, base, iframe[srcdoc], object, embed').length"
            )
            == 0
        )
        assert a.page.evaluate(f"{VDOC}.querySelectorAll('meta[http-equiv]').length") == 0
        handlers = a.page.evaluate(
            f"[...{VDOC}.querySelectorAll('*')].flatMap(el => [...el.attributes].filter(at => /^on/i.test(at.name) || /^\\s*javascript:/i.test(at.value)).map(at => el.tagName + ' ' + at.name))"
        )
        assert handlers == []
        # the viewer page is still where it was: no navigation, no refresh
        assert a.page.url.startswith(cluster.router + "/embed")
        # nothing was fetched from the visitor's origin directly: only through the proxy
        assert not [u for u in a.requests if u.startswith(cluster.origin)], a.requests
        # and if the viewer ever missed a URL, the embed page's CSP (inherited by the
        # iframe's document) still stops the load
        a.page.evaluate(
            f"""(url) => {{ window.__violations = [];
            {VDOC}.addEventListener('securitypolicyviolation', e => __violations.push(e.blockedURI));
            const img = {VDOC}.createElement('img'); img.src = url; {VDOC}.body.appendChild(img); }}""",
            cluster.origin + "/pages/e2e_shop.css?direct",
        )
        poll(a.page, "window.__violations.length > 0", 5, "a CSP violation for a direct load")


def test_svg_images_show_in_the_viewer_through_the_proxy(chromium, cluster):
    """SVG logos and avatars (<img src>, srcset, CSS background, SVG <image>) arrive through
    the proxy's /v1/asset and take the visitor's size, so the layout does not move."""
    sizes = """(doc) => ({
        imgs: [...doc.querySelectorAll('#avatar, #set')].map(i => [i.id, i.naturalWidth, i.naturalHeight]),
        card: doc.getElementById('card').getBoundingClientRect().height,
        bg: getComputedStyle(doc.getElementById('bg')).backgroundImage.startsWith('url('),
    })"""
    with pair(chromium, cluster, "e2e_svg.html") as (v, a):
        want = v.page.evaluate(f"({sizes})(document)")
        assert want["imgs"] == [["avatar", 200, 150], ["set", 100, 75]]  # 2x: half size
        poll(
            a.page,
            f"[...{VDOC}.querySelectorAll('#avatar, #set')].every(i => i.complete && i.naturalWidth > 0)",
            10,
            "the SVG images in the viewer",
        )
        assert a.page.evaluate(f"({sizes})({VDOC})") == want
        bg = a.page.evaluate(f"getComputedStyle({VDOC}.getElementById('bg')).backgroundImage")
        assert cluster.proxy + "/v1/asset?" in bg
        # one signed URL for one target: the browser loads it once for every use
        assert [u for u in a.requests if u.startswith(cluster.proxy + "/v1/asset?")]
        assert not [u for u in a.requests if u.startswith(cluster.origin)], a.requests


STATES_SEEN = """(() => { const el = document.getElementById('cb-status'); window.__seen = [el.dataset.state];
  new MutationObserver(() => { if (__seen[__seen.length - 1] !== el.dataset.state) __seen.push(el.dataset.state); })
    .observe(el, {attributes: true, attributeFilter: ['data-state']}); })()"""


def test_a_reload_continues_the_session_with_a_fresh_snapshot(chromium, cluster):
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        wait_same(v, a, what="before the reload")
        # The gateway tells the agent the visitor is there (ctl visitor live), and that it
        # went away and came back across the reload.
        poll(a.page, "document.getElementById('cb-status').dataset.state === 'live'", 10, "live")
        a.page.evaluate(STATES_SEEN)
        v.page.evaluate("document.querySelector('.title').textContent = 'before reload'")
        poll(a.page, f"{VDOC}.querySelector('.title').textContent === 'before reload'", 10)
        epoch = v.page.evaluate("JSON.parse(sessionStorage.getItem('cobrowse')).epoch")
        v.page.reload()
        # the new page picks the session up by itself: no consent, no new code
        poll(v.page, "window.Cobrowse && Cobrowse.getCode()", 10, "the session after reload")
        assert v.page.evaluate("Cobrowse.getCode()") == v.code
        state = v.page.evaluate("JSON.parse(sessionStorage.getItem('cobrowse'))")
        assert state["sid"] == v.sid and state["epoch"] == epoch
        v.page.evaluate("document.querySelector('.title').textContent = 'after reload'")
        poll(
            a.page,
            f"{VDOC}.querySelector('.title').textContent === 'after reload'",
            15,
            "the viewer after reload",
        )
        wait_same(v, a, what="after the reload")
        seen = poll(
            a.page,
            "__seen.length > 2 && __seen[__seen.length - 1] === 'live' && __seen",
            10,
            "the view back to live after the reload",
        )
        assert seen[0] == "live" and seen[1] in ("visitor-away", "visitor-left"), seen
        navs = v.events("nav")
        assert navs, "the new page announced itself"


def test_agent_pointer_and_highlight_reach_the_visitor(chromium, cluster):
    """... and remote control and drawing (check_remote_control_and_drawing)."""
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        a.page.evaluate("CobrowseViewer.current.wire.send('pointer', {x: 120, y: 80})")
        buy = v.page.evaluate("Cobrowse._nodeId(document.getElementById('buy'))")
        a.page.evaluate(f"CobrowseViewer.current.wire.send('highlight', {{id: {buy}, on: true}})")
        got = poll(
            v.page,
            "(s => s && s.pointer && s.highlights.length ? s : null)(Cobrowse._overlayState())",
            10,
            "the agent's pointer and highlight in the overlay",
        )
        assert got["pointer"] == [120, 80] or got["pointer"] == {"x": 120, "y": 80}
        assert buy in got["highlights"]
        check_remote_control_and_drawing(v, a, cluster)
        # the overlay never takes the visitor's clicks
        v.page.click("#buy")
        # closing the viewer is heard on the visitor's side
        # (the trailing null: Playwright would call the unsubscribe function `on` returns)
        v.page.evaluate(
            "window.__left = []; Cobrowse.on('agent-left', (e) => __left.push(e.agentId)); null"
        )
        aid = a.page.evaluate("CobrowseViewer.current.wire.aid")
        a.page.close()  # pagehide: the viewer says bye
        assert poll(v.page, "window.__left.length && window.__left", 10, "agent-left") == [aid]


def test_the_visitors_end_ends_the_session_for_everyone(chromium, cluster):
    """`Cobrowse.end()` ends the session through the API with the visitor's token: the
    agent's viewer shows "Session ended", the session reads ended, the code no longer
    resolves (before: only a bye, the agent stayed "Live" and the code kept working)."""
    with pair(chromium, cluster, "e2e_shop.html") as (v, a):
        assert v.page.evaluate("Cobrowse.end()") is True
        poll(
            a.page,
            "CobrowseViewer.current.state === 'ended' && document.body.innerText.includes('Session ended')",
            10,
            "the viewer to show the end",
        )
        # The replica stays, greyed out and inert; Highlight is off and disabled.
        assert a.page.evaluate(
            "(() => { const b = document.getElementById('cb-highlight'); const rp = CobrowseViewer.current.replayer;"
            " return [document.getElementById('cb-status').dataset.state, rp.inert(), rp.highlightMode(), b.disabled,"
            f" {FRAME}.style.filter, getComputedStyle({FRAME}).pointerEvents]; }})()"
        ) == ["ended", True, False, True, "grayscale(1)", "none"]
        bearer = {"Authorization": f"Bearer {e2e_cluster.AGENT_KEY}"}
        r = httpx.get(f"{cluster.router}/v1/sessions/{v.sid}", headers=bearer)
        assert r.json()["ended"] is True
        r = httpx.post(
            f"{cluster.router}/v1/sessions/lookup", json={"code": v.code}, headers=bearer
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_code"


def test_the_embed_page_says_why_it_shows_no_session(chromium, cluster):
    """A link the router refuses shows the reason in the frame area, not a white box."""
    ctx = chromium.new_context()
    try:
        page = ctx.new_page()
        for fragment, code, words in (
            (
                f"code=000000&key={e2e_cluster.AGENT_KEY}",
                "unknown_code",
                "No session has this code",
            ),
            ("code=123456&key=ak_nobody", "bad_api_key", "No access: the API key was refused"),
            ("sid=s_no_such_session&token=v1.x.y.z", "bad_token", "no longer valid"),
        ):
            page.goto("about:blank")
            page.goto(f"{cluster.router}/embed#{fragment}")
            poll(page, "document.getElementById('cb-status').dataset.state === 'error'", 10, code)
            got = page.evaluate(
                "(() => { const m = document.getElementById('cb-message'); const r = m.getBoundingClientRect();"
                " return [CobrowseViewer.current.error.code, m.textContent, r.width > 0 && r.height > 0,"
                " document.getElementById('cb-highlight').disabled]; })()"
            )
            assert got[0] == code and words in got[1] and got[2:] == [True, True], (fragment, got)
    finally:
        ctx.close()


F1 = "getElementById('f1').contentDocument"
F2 = f"{F1}.getElementById('f2').contentDocument"


def wait_same_doc(v: Visitor, a: Agent, path: str, what: str, timeout: float = 15.0) -> None:
    """wait_same for a frame's document: `path` is reached from `document` (visitor) and
    from the replica's document (viewer)."""
    deadline = time.monotonic() + timeout
    while True:
        want = v.page.evaluate(dom_compare.js_call(f"document.{path}", ignore=OURS))
        got = a.page.evaluate(
            f"(() => {{ try {{ return ({dom_compare.NORMALIZE_JS})({VDOC}.{path}, {{ignore: {json.dumps(OURS)}}}); }} catch (e) {{ return String(e); }} }})()"
        )
        if want == got:
            return
        if time.monotonic() > deadline:
            dom_compare.assert_same(want, got, what)
        time.sleep(0.1)


def test_same_origin_frames_are_mirrored_and_cross_origin_ones_are_sized_boxes(
    chromium, cluster, pages_server
):
    """A same-origin iframe and the one nested in it are rebuilt inside sandboxed frames of
    the replica (one id space), follow mutations and input, mask private fields on the wire,
    and run nothing; a cross-origin frame (another loopback port) is a box of its size."""
    with pair(chromium, cluster, "e2e_frames.html") as (v, a):
        wait_same_doc(v, a, F1, "the same-origin frame after the snapshot")
        wait_same_doc(v, a, F2, "the nested frame after the snapshot")
        # one id space: the frame's nodes have ids of their own in the viewer's map
        ids = a.page.evaluate(
            f"""[{VDOC}.documentElement, {VDOC}.{F1}.documentElement, {VDOC}.{F2}.getElementById('deep')]
            .map(n => CobrowseViewer.current.replayer.idOf(n))"""
        )
        assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 3, ids
        # the nested frame's stylesheet went through the proxy like the top one's
        colour = "getComputedStyle({d}.getElementById('deep')).color"
        assert v.page.evaluate(colour.format(d=f"document.{F2}")) == "rgb(1, 2, 3)"
        poll(
            a.page,
            f"{colour.format(d=f'{VDOC}.{F2}')} === 'rgb(1, 2, 3)'",
            10,
            "the nested frame's style",
        )
        # mutations and input inside the frames
        v.page.evaluate(
            f"""() => {{ const d = document.{F1}; const li = d.createElement('li'); li.textContent = 'two';
            d.getElementById('list').appendChild(li); d.getElementById('hello').setAttribute('title', 'hi');
            document.{F2}.getElementById('deep').textContent = 'changed deep'; }}"""
        )
        inner = v.page.frame_locator("#f1")
        inner.locator("#name").fill("visible in a frame")
        secret = "hunter2-Fr4me"
        inner.locator("#pw").type(secret, delay=5)
        v.page.evaluate(
            f"document.{F1}.getElementById('acct').textContent = 'Account 5555-6666-7777'"
        )
        poll(
            a.page,
            f"{VDOC}.{F1}.getElementById('name').value === 'visible in a frame'",
            10,
            "the input inside the frame",
        )
        wait_same_doc(v, a, F1, "the same-origin frame after mutations and input")
        # focus, hover and the frame's own scroll; the pointer in the top window's coordinates
        poll(
            a.page,
            f"{VDOC}.{F1}.getElementById('pw').classList.contains('cb-focus')",
            10,
            "the focus inside the frame",
        )
        inner.locator("#hello").hover()
        poll(
            a.page,
            f"{VDOC}.{F1}.getElementById('hello').classList.contains('cb-hover')",
            10,
            "the hover inside the frame",
        )
        centre = v.page.evaluate(
            f"""(() => {{ const f = document.getElementById('f1').getBoundingClientRect();
            const r = document.{F1}.getElementById('hello').getBoundingClientRect();
            return [f.left + 2 + r.left + r.width / 2, f.top + 2 + r.top + r.height / 2]; }})()"""
        )
        deadline = time.monotonic() + 5  # the pointer is throttled: wait for the last one
        while True:
            last = [e[3] for e in v.events("pointer")][-1:]
            if last and abs(last[0]["x"] - centre[0]) <= 1 and abs(last[0]["y"] - centre[1]) <= 1:
                break
            assert time.monotonic() < deadline, (last, centre)
            time.sleep(0.05)
        v.page.evaluate(f"document.{F1}.defaultView.scrollTo(0, 120)")
        poll(
            a.page,
            f"{VDOC}.{F1}.scrollingElement.scrollTop === 120",
            10,
            "the frame's scroll",
        )
        wait_same_doc(v, a, F2, "the nested frame after a mutation")
        raw = b"".join(v.sent)
        for s in (secret, "hunter2", "9911-2233-4455", "5555-6666-7777"):
            assert s.encode() not in raw, f"{s!r} went over the wire"
        assert a.page.evaluate(f"{VDOC}.{F1}.getElementById('pw').value") == "*" * 8
        # nothing from the frames runs in the viewer: no scripts, handlers, nor sources
        assert v.page.evaluate("window.__innerRan") == 2  # it ran for the visitor
        assert (
            a.page.evaluate(
                f"[window.__innerRan, window.__pwned, {VDOC}.defaultView.__innerRan, {VDOC}.defaultView.__pwned]"
            )
            == [None] * 4
        )
        assert a.page.evaluate(
            f"""[{VDOC}.{F1}, {VDOC}.{F2}].map(d => d.querySelectorAll('script').length
            + [...d.querySelectorAll('*')].filter(el => [...el.attributes].some(at => /^on/i.test(at.name))).length)"""
        ) == [0, 0]
        assert (
            a.page.evaluate(
                f"[{VDOC}.getElementById('f1'), {VDOC}.{F1}.getElementById('f2')].map(f => f.getAttribute('sandbox') + '|' + f.hasAttribute('src'))"
            )
            == ["allow-same-origin|false"] * 2
        )
        assert not [u for u in a.requests if u.startswith(cluster.origin)], a.requests
        # a cross-origin frame: mirrored while it is the empty same-origin document, then,
        # once it loads from another port, a box of the size it took on the visitor's page
        v.page.evaluate(
            "(u) => { document.getElementById('xo').src = u; }",
            pages_server.url + "/pages/e2e_frame_nested.html",
        )
        size = "(el => [el.offsetWidth, el.offsetHeight, el.localName])({d}.getElementById('xo'))"
        want = v.page.evaluate(size.format(d="document"))
        assert want[2] == "iframe" and want[:2] != [300, 150], want  # not the default box
        poll(a.page, f"!!{VDOC}.querySelector('cb-blocked#xo')", 10, "the cross-origin box")
        assert a.page.evaluate(size.format(d=VDOC)) == want[:2] + ["cb-blocked"]
        assert not [u for u in a.requests if u.startswith(pages_server.url)], a.requests


# -- element states and links (issue 14) ----------------------------------------------

STYLES = """(doc, ids) => ids.map((id) => { const el = doc.getElementById(id);
  if (!el) return [id, null];  // not in the replica yet (a redraw on its way): poll again
  const cs = doc.defaultView.getComputedStyle(el);
  return [id, cs.color, cs.backgroundColor, cs.textDecorationColor, cs.outlineStyle, cs.outlineWidth, cs.outlineColor]; })"""


def same_styles(v: Visitor, a: Agent, ids: list[str], what: str) -> list:
    """Wait until the replica's computed styles of `ids` are the visitor's; returns them."""
    want = v.page.evaluate(f"({STYLES})(document, {json.dumps(ids)})")
    assert all(w[1] is not None for w in want), f"{what}: the visitor's page lacks one of {ids}"
    deadline = time.monotonic() + 10
    while True:
        got = a.page.evaluate(f"({STYLES})({VDOC}, {json.dumps(ids)})")
        if got == want:
            return want
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: visitor {want} != replica {got}")
        time.sleep(0.05)


def test_links_states_and_hover_after_a_redraw_match_the_visitor(chromium, cluster):
    """Issue 14, one page: `:link`, `a[href]`, `a[href^=...]` and `a:not([href])` match in
    the replica as for the visitor; :focus, :focus-visible, :focus-within and :active styles
    follow the visitor, :active from Space held too; :target follows the visitor's URL
    fragment (in the snapshot and after a change); a row redrawn or a list scrolled under a
    pointer that does not move takes the hover in the replica too; and clicks, a middle
    click and Enter on a replica link navigate and fetch nothing."""
    magenta, green = "rgb(200, 0, 200)", "rgb(0, 100, 0)"
    with pair(chromium, cluster, "e2e_states.html#s1") as (v, a):
        st = same_styles(v, a, ["s1", "s2"], ":target in the snapshot")
        assert st[0][2] == magenta and st[1][1:3] == [green, "rgba(0, 0, 0, 0)"], st
        v.page.evaluate("location.hash = '#s2'")
        st = same_styles(v, a, ["s1", "s2"], ":target after a hash change")
        assert st[0][1:3] == [green, "rgba(0, 0, 0, 0)"] and st[1][2] == magenta, st
        ids = ["field", "btn", "form"]
        same_styles(v, a, ids, "before any focus")
        v.page.click("#field")  # a text field matches :focus-visible even from a click
        st = same_styles(v, a, ids, "field focused")
        assert st[0][2] == "rgb(255, 240, 200)" and st[0][4:] == ["solid", "3px", "rgb(255, 0, 0)"]
        assert st[2][2] == "rgb(230, 230, 255)"
        v.page.keyboard.press("Tab")  # keyboard focus: the button matches :focus-visible
        st = same_styles(v, a, ids, "button focused by keyboard")
        assert st[1][4:] == ["dashed", "4px", "rgb(0, 0, 200)"] and st[0][4] == "none"
        v.page.keyboard.down(" ")  # Space held on the focused button: :active
        st = same_styles(v, a, ids, "button pressed with Space")
        assert st[1][2] == "rgb(0, 200, 0)"
        v.page.keyboard.up(" ")
        st = same_styles(v, a, ids, "Space released")
        assert st[1][2] == "rgb(220, 220, 220)"
        box = v.page.locator("#btn").bounding_box()
        v.page.mouse.move(box["x"] + 5, box["y"] + 5)
        v.page.mouse.down()
        st = same_styles(v, a, ids, "button pressed")
        assert st[1][2] == "rgb(0, 200, 0)"
        v.page.mouse.up()
        st = same_styles(v, a, ids, "button released")
        assert st[1][2] == "rgb(220, 220, 220)"
        v.page.hover("#c2")
        st = same_styles(v, a, ["c1", "c2"], "row hovered")
        assert st[1][2] == "rgb(250, 200, 0)"
        v.page.evaluate("redraw()")  # the pointer stays where it is
        st = same_styles(v, a, ["d1", "d2"], "hover after the redraw")
        assert st[1][2] == "rgb(250, 200, 0)", st
        v.page.hover("#i1")
        same_styles(v, a, ["i1", "i2"], "list item hovered")
        v.page.evaluate("document.getElementById('list').scrollTop = 30")  # the pointer stays
        teal = (
            "getComputedStyle(document.getElementById('i2')).backgroundColor === 'rgb(0, 150, 150)'"
        )
        poll(v.page, teal, 10, "the visitor's own hover to follow the scroll")  # on a timer
        st = same_styles(v, a, ["i1", "i2"], "hover after a scroll")
        assert st[0][2] == "rgba(0, 0, 0, 0)" and st[1][2] == "rgb(0, 150, 150)", st
        styles = same_styles(v, a, ["rel", "abs", "none"], "link styles")
        blue, green, yellow, purple = (
            "rgb(0, 0, 255)",
            "rgb(0, 128, 0)",
            "rgb(255, 255, 0)",
            "rgb(128, 0, 128)",
        )
        assert [s[1:4] for s in styles] == [
            [blue, "rgba(0, 0, 0, 0)", green],
            [blue, yellow, green],
            [purple, "rgba(0, 0, 0, 0)", purple],
        ]
        # Even with the glass gone, a real click, a middle click and Enter go nowhere.
        where = a.page.evaluate(f"(window.__replica = {VDOC}).location.href")
        a.page.evaluate(
            "document.querySelectorAll('#cb-stage div').forEach(d => d.style.pointerEvents = 'none')"
        )
        frame = a.page.frame_locator("#cb-frame")
        stayed = f"{VDOC} === window.__replica && {FRAME}.contentWindow.location.href"
        actions = {
            "click": lambda: frame.locator("#rel").click(timeout=3000),
            "click on an absolute link": lambda: frame.locator("#abs").click(timeout=3000),
            "middle click": lambda: frame.locator("#abs").click(button="middle", timeout=3000),
            "Enter": lambda: (frame.locator("#rel").focus(), a.page.keyboard.press("Enter")),
        }
        for what, act in actions.items():
            act()
            time.sleep(0.15)  # a navigation would have started by now
            assert a.page.evaluate(stayed) == where, f"the replica navigated after: {what}"
        # a link dragged out would carry its URL elsewhere: the drag never starts
        dragged = f"{VDOC}.getElementById('abs').dispatchEvent(new DragEvent('dragstart', {{bubbles: true, cancelable: true}}))"
        assert a.page.evaluate(dragged) is False
        # A click that cannot be cancelled (only a script of the embed page can make one)
        # follows the link: the embed page's CSP (frame-src about:) refuses it unfetched.
        a.page.evaluate(f"{VDOC}.getElementById('rel').dispatchEvent(new MouseEvent('click'))")
        time.sleep(0.3)
        assert len(a.ctx.pages) == 1
        assert not [u for u in a.requests if u.startswith(cluster.origin)], a.requests
        assert not [u for u in a.requests if "/somewhere" in u or "/elsewhere" in u], a.requests


def test_a_sheet_the_proxy_may_not_fetch_styles_the_replica_through_the_visitor(chromium, cluster):
    """The CSS fallback: the page's sheet is behind its login (403 without the cookie the
    page set), so the proxy cannot fetch it; the viewer asks the visitor (`control`
    css-need), the visitor sends the sheet's text (`css` link), the proxy rewrites it. The
    sheets it @imports (also behind the login) come inline, under their media and with
    their own base URL; a sheet whose URL the proxy refuses to sign and a blob: sheet, which
    never fire `error` in the replica, are asked for too."""
    sheet = cluster.origin + e2e_cluster.LOCKED + "e2e_locked.css"
    assert httpx.get(sheet).status_code == 403  # what the proxy gets
    style = """(doc) => ['box', 'imp', 'unsigned', 'blobbed'].map((id) => {
      const cs = doc.defaultView.getComputedStyle(doc.getElementById(id));
      return [cs.backgroundColor, cs.color, cs.width, cs.borderLeftWidth, cs.borderLeftColor, cs.outlineColor]; })"""
    with pair(chromium, cluster, "e2e_locked.html") as (v, a):
        want = v.page.evaluate(f"({style})(document)")
        assert want[0][:3] == ["rgb(12, 34, 56)", "rgb(255, 255, 255)", "321px"]
        assert want[1][1] != "rgb(255, 0, 0)" and want[1][3:5] == ["5px", "rgb(0, 90, 0)"]
        assert want[2][3:5] == ["9px", "rgb(1, 2, 3)"] and want[3][5] == "rgb(0, 0, 77)"
        compact = json.dumps(json.dumps(want, separators=(",", ":")))
        got = f"JSON.stringify(({style})({VDOC}))"
        try:
            poll(a.page, f"{got} === {compact}", 15, "the fallback sheets")
        except AssertionError:
            raise AssertionError(f"visitor {want} != replica {a.page.evaluate(got)}") from None
        stats = a.page.evaluate("CobrowseViewer.current.replayer.stats()")
        assert stats["cssNeed"] == 3 and stats["cssFallback"] == 3, stats
        # the imported sheet's url() resolved against its own URL (imp/), then signed
        bg = a.page.evaluate(f"getComputedStyle({VDOC}.getElementById('imp')).backgroundImage")
        u = parse_qs(urlsplit(bg[5:-2]).query)["u"][0]
        assert base64.urlsafe_b64decode(u + "=" * (-len(u) % 4)).decode() == (
            cluster.origin + "/pages/e2e_avatar.svg"
        ), bg
        # the text went through the proxy's rewrite: :hover is the viewer's class
        v.page.hover("#box")
        poll(
            a.page,
            f"({style})({VDOC})[0][1] === 'rgb(250, 200, 0)'",
            10,
            "hover from the fallback sheet",
        )
        [need] = [e for e in v.events("css") if e[3].get("op") == "link" and e[3]["base"] == sheet]
        assert need[3]["n"] == 1
        wait_same(v, a)  # the DOM is the visitor's: the fallback adds no element


def test_an_800x600_agent_sees_a_1280x800_visitor_fit_at_100_percent_and_not_following(
    chromium, cluster
):
    """The replica keeps the visitor's viewport (1280x800) and is scaled down to fit an
    800x600 agent window, the visitor's viewport frame wholly inside it; the agent's pointer
    lands on the element under it in the visitor's page. At 100 % the replica is unscaled
    (a 13 px select drawn at its size) and the stage scrolls. Not following, the visitor's
    scroll leaves the replica where it is and moves the frame; following again catches up."""
    with pair(chromium, cluster, "e2e_shop.html", {"width": 1280, "height": 800}) as (v, a):
        a.page.set_viewport_size({"width": 800, "height": 600})
        fit = """(() => { const f = document.getElementById('cb-frame'), s = document.getElementById('cb-stage');
          const r = document.querySelector('.cb-viewport-frame').getBoundingClientRect(), st = s.getBoundingClientRect();
          return {w: f.style.width, h: f.style.height, scale: CobrowseViewer.current.replayer.scale(),
                  inside: r.left >= st.left - 0.5 && r.top >= st.top - 0.5 && r.right <= Math.min(st.right, 800) + 0.5 && r.bottom <= Math.min(st.bottom, 600) + 0.5,
                  rw: r.width, rh: r.height, sw: st.width, sh: st.height}; })()"""
        got = poll(a.page, f"(g => g.scale < 1 && g.inside && g)({fit})", 10, "the replica to fit")
        assert (got["w"], got["h"]) == ("1280px", "800px")
        # it fits the stage on one side exactly: scaled, not clipped and not shrunk further
        assert min(abs(got["rw"] - got["sw"]), abs(got["rh"] - got["sh"])) < 1, got
        assert (
            abs(got["rw"] / 1280 - got["scale"]) < 1e-3
            and abs(got["rh"] / 800 - got["scale"]) < 1e-3
        )
        # the agent points at the middle of #buy in the scaled replica: the visitor's overlay
        # shows the pointer inside #buy's box in the visitor's page
        drawn = f"""(id) => {{ const f = {FRAME}.getBoundingClientRect(), s = CobrowseViewer.current.replayer.scale();
              const b = {VDOC}.getElementById(id).getBoundingClientRect();
              return [f.left + (b.left + b.width / 2) * s, f.top + (b.top + b.height / 2) * s, b.height * s, b.height]; }}"""

        def point_at_buy() -> None:
            at = a.page.evaluate(drawn, "buy")
            a.page.mouse.move(at[0] - 2, at[1] - 2)
            a.page.mouse.move(at[0], at[1])
            box = v.page.evaluate(
                "(() => { const r = document.getElementById('buy').getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()"
            )
            inside = f"(p => p && (x => x[0] >= {box[0]} && x[0] <= {box[2]} && x[1] >= {box[1]} && x[1] <= {box[3]})(Array.isArray(p) ? p : [p.x, p.y]))((Cobrowse._overlayState() || {{}}).pointer)"
            poll(v.page, inside, 10, f"the agent's pointer inside #buy {box} at the visitor")

        point_at_buy()
        # 100 %: unscaled, the select's 13 px text drawn at its size; the stage scrolls and
        # the pointer still lands on #buy
        a.page.click("#cb-fit")
        poll(a.page, "CobrowseViewer.current.replayer.scale() === 1", 10, "100 %")
        sel = a.page.evaluate(drawn, "size")
        assert sel[2] == sel[3] and a.page.evaluate(
            f"getComputedStyle({VDOC}.getElementById('size')).fontSize"
        ).startswith("13")
        assert a.page.evaluate(
            "(s => s.scrollWidth > s.clientWidth)(document.getElementById('cb-stage'))"
        )
        a.page.evaluate("document.getElementById('cb-stage').scrollTo(400, 200)")
        point_at_buy()
        a.page.click("#cb-fit")
        # not following: the visitor scrolls, the replica stays, the frame moves down
        a.page.click("#cb-follow")
        v.page.evaluate("window.scrollTo(0, 300)")
        poll(
            a.page,
            "CobrowseViewer.current.replayer.view().offset[1] === 300",
            10,
            "the frame to move",
        )
        assert a.page.evaluate(f"{VDOC}.defaultView.scrollY") == 0
        a.page.click("#cb-follow")
        poll(a.page, f"{VDOC}.defaultView.scrollY === 300", 10, "the replica to follow again")


def test_a_replay_seeks_to_the_dom_the_visitor_had_then(chromium, cluster):
    """/replay reads the session's stored events (GET /v1/sessions/{id}/history) and rebuilds
    from the nearest snapshot: seeking to a time shows what the visitor's page held then,
    back and forth, and playing reaches the end."""
    v = Visitor(chromium, cluster, "e2e_shop.html")
    ctx = chromium.new_context(viewport={"width": 1000, "height": 700})
    try:
        for step in ("one", "two"):  # two changes, far enough apart to seek between them
            time.sleep(0.4)
            v.page.evaluate(
                "(s) => { const p = document.createElement('p'); p.id = 'step-' + s; p.textContent = s;"
                " document.body.appendChild(p); }",
                step,
            )
        time.sleep(0.4)
        v.page.evaluate("document.getElementById('step-one').textContent = 'uno'")
        deadline = time.monotonic() + 10  # the three mutations are stored
        bearer = {"Authorization": f"Bearer {e2e_cluster.AGENT_KEY}"}
        while True:
            r = httpx.get(f"{cluster.router}/v1/sessions/{v.sid}/history", headers=bearer)
            events = msgpack.unpackb(r.content, raw=False)["events"]
            stored = [e[3] for e in events]
            if stored.count("mutation") >= 3 and len(v.events("mutation")) >= 3:
                break
            assert time.monotonic() < deadline, f"the mutations were not stored: {stored}"
            time.sleep(0.1)
        start = events[0][4]  # the replay's time 0: the first stored event
        t1, t2, t3 = (e[2] - start for e in v.events("mutation")[-3:])
        page = ctx.new_page()
        page.add_init_script(
            f"sessionStorage.setItem('cobrowse.console.key', {json.dumps(e2e_cluster.AGENT_KEY)})"
        )
        page.goto(f"{cluster.router}/replay#sid={v.sid}")
        poll(
            page, "CobrowseReplay.current && CobrowseReplay.current.state === 'paused'", 15, "load"
        )
        shown = (
            "(() => { const d = document.getElementById('cb-frame').contentDocument;"
            " const t = (id) => { const e = d.getElementById(id); return e ? e.textContent : null; };"
            " return [!!d.querySelector('body *'), t('step-one'), t('step-two')]; })()"
        )
        for at, want in (
            ((t1 + t2) / 2, [True, "one", None]),
            (t3 + 1, [True, "uno", "two"]),
            ((t2 + t3) / 2, [True, "one", "two"]),
            (max(0, t1 - 150), [True, None, None]),
        ):
            page.evaluate(f"CobrowseReplay.current.seek({at})")
            assert page.evaluate(shown) == want, (at, t1, t2, t3)
        page.evaluate("CobrowseReplay.current.setSpeed(8); CobrowseReplay.current.play()")
        poll(page, "CobrowseReplay.current.state === 'paused'", 10, "play to the end")
        assert page.evaluate(shown) == [True, "uno", "two"]
        assert page.evaluate("document.getElementById('rp-play').textContent") == "Play"
    finally:
        ctx.close()
        v.close()


# ---- the agents' console ----------------------------------------------------------------

EMBED = "document.getElementById('cc-embed')"
CONSOLE_REPLICA = f"({EMBED}?.contentDocument?.getElementById('cb-frame')?.contentDocument)"


def test_the_console_lists_a_session_live_opens_it_and_returns_when_it_ends(chromium, cluster):
    """Signed in by keyboard, the console shows a session started after it loaded (no
    reload), with its page's title and URL; a click opens it and the replica shows the
    visitor's page; Back and the code typed in open it again; the visitor's end brings the
    agent back to the list. The API key is in
    no URL the console or its viewer loads, and not on `window`."""
    ctx = chromium.new_context(viewport={"width": 1100, "height": 700})
    urls: list[str] = []
    try:
        page = ctx.new_page()
        page.on("request", lambda r: urls.append(r.url))
        page.on("framenavigated", lambda f: urls.append(f.url))
        page.goto(f"{cluster.router}/console")
        assert page.evaluate("document.activeElement.id") == "cc-key"  # focused on load
        page.fill("#cc-key", e2e_cluster.AGENT_KEY)
        page.keyboard.press("Enter")
        poll(page, "CobrowseConsole.view === 'list'", 10, "the list after signing in")
        v = Visitor(chromium, cluster, "e2e_shop.html")
        try:
            row = f"#cc-sessions tr[data-sid='{v.sid}']"
            text = poll(
                page,
                f"(r => r && r.innerText.includes('e2e shop') && r.innerText)(document.querySelector(\"{row}\"))",
                15,
                "the new session with its page in the list",
            )
            assert v.code[:3] + " " + v.code[3:] in text and "/pages/e2e_shop.html" in text
            assert "None yet" in text
            # Keyboard order: the code field, its Join, then the newest session's Join.
            page.focus("#cc-code")
            page.keyboard.press("Tab")
            page.keyboard.press("Tab")
            assert page.evaluate(
                f'document.activeElement === document.querySelector("{row} button")'
            )
            clicked = time.monotonic()
            page.click(f"{row} button")
            poll(
                page,
                f"(d => !!(d && d.getElementById('buy')))({CONSOLE_REPLICA})",
                20,
                "the replica of the visitor's page",
            )
            shown = time.monotonic() - clicked
            print(f"console click -> replica shows the page: {shown * 1000:.0f} ms")
            assert page.evaluate("CobrowseConsole.sid") == v.sid
            assert page.evaluate("document.activeElement.id") == "cc-back"
            # Back by keyboard, then in again by the code the visitor reads out.
            page.keyboard.press("Enter")
            poll(page, "CobrowseConsole.view === 'list'", 5, "the list after Back")
            assert page.evaluate("document.getElementById('cc-embed')") is None
            page.fill("#cc-code", v.code[:3] + " " + v.code[3:])
            page.keyboard.press("Enter")
            poll(
                page,
                f"(d => !!(d && d.getElementById('buy')))({CONSOLE_REPLICA})",
                20,
                "the replica after joining by code",
            )
            assert v.page.evaluate("Cobrowse.end()") is True
            note = poll(
                page,
                "CobrowseConsole.view === 'list' && document.getElementById('cc-notice').innerText",
                15,
                "back to the list when the session ends",
            )
            assert "has ended" in note and page.evaluate("document.activeElement.id") == "cc-notice"
            poll(page, f'!document.querySelector("{row}")', 10, "the ended session to leave")
        finally:
            v.close()
        assert urls and not [u for u in urls if e2e_cluster.AGENT_KEY in u]
        assert "#sid=" + v.sid in " ".join(urls)  # the viewer got a session token, not the key
        assert e2e_cluster.AGENT_KEY not in page.evaluate("JSON.stringify(CobrowseConsole)")
    finally:
        ctx.close()


# ---- remote control and drawing (docs/browser.md "Remote control", "Drawing") ------------------

CONTROL = "Cobrowse._controlState()"
OVERLAY = "Cobrowse._overlayState()"
SHOTS = os.environ.get("COBROWSE_DOCS_SHOTS")  # a directory: write the docs' screenshots there


def over_replica(a: Agent, selector: str) -> None:
    """The agent's real mouse moved to the centre of a replica element."""
    x, y = a.page.evaluate(
        f"""(sel) => {{ const f = {FRAME}.getBoundingClientRect();
        const r = {VDOC}.querySelector(sel).getBoundingClientRect();
        const s = CobrowseViewer.current.replayer.scale();
        return [f.left + (r.left + r.width / 2) * s, f.top + (r.top + r.height / 2) * s]; }}""",
        selector,
    )
    a.page.mouse.move(x, y)


def click_replica(a: Agent, selector: str) -> None:
    """A real mouse click in the agent's page, on the centre of a replica element."""
    over_replica(a, selector)
    a.page.mouse.down()
    a.page.mouse.up()


def check_remote_control_and_drawing(v: Visitor, a: Agent, cluster) -> None:
    """Without a grant the gateway refuses the agent's input and the page is untouched; the
    visitor is asked in a dialog naming the agent; granted, the agent's typing and click run
    the page's own handlers; private fields stay out of reach; "Stop control" ends it at
    once; a stroke shows on the visitor's overlay and in the agent's view. (Run inside
    test_agent_pointer_and_highlight_reach_the_visitor: one pair for both.)"""
    v.page.evaluate("""() => { window.__seen = [];
      document.getElementById('buy').addEventListener('click', () => __seen.push(['buy']));
      const n = document.getElementById('name');
      for (const t of ['input', 'change']) n.addEventListener(t, (e) => __seen.push([t, e.target.value]));
      n.addEventListener('keydown', (e) => __seen.push(['keydown', e.key])); }""")
    ids = v.page.evaluate(
        "() => Object.fromEntries(['name', 'buy', 'pw', 'cc'].map((k) => [k, Cobrowse._nodeId(document.getElementById(k))]))"
    )

    def send(kind: str, payload: dict) -> None:
        a.page.evaluate("([k, p]) => CobrowseViewer.current.wire.send(k, p)", [kind, payload])

    def after_all(x: int) -> None:
        """A pointer sent last: once the visitor shows it, everything before has arrived."""
        send("pointer", {"x": x, "y": 5})
        poll(
            v.page,
            f"(s => s && s.pointer && s.pointer[0] === {x})({OVERLAY})",
            10,
            "the marker",
        )

    name = "document.getElementById('name').value"
    # 1. No grant: the gateway refuses (ctl "refused", its log) and nothing happens.
    send("rc-text", {"id": ids["name"], "value": "pwned"})
    send("rc-click", {"id": ids["buy"], "x": 3, "y": 3})
    after_all(11)
    assert v.page.evaluate(name) == "Ada" and v.page.evaluate("window.__seen") == []
    poll(a.page, "CobrowseViewer.current.refused >= 1", 10, "the gateway's refusal")
    assert "control_refused" in cluster.log("gw-1")

    # 2. The agent asks; the visitor gets a dialog naming the agent, "Refuse" focused.
    a.page.click("#cb-control")
    dialog = poll(v.page, f"{CONTROL}.dialog", 10, "the prompt")
    assert dialog["role"] == "dialog" and "E2E Support asks to control" in dialog["text"]
    assert dialog["focused"] == "Refuse"
    v.page.keyboard.press("Tab")  # to "Allow control", by keyboard
    assert v.page.evaluate(f"{CONTROL}.dialog.focused") == "Allow control"
    v.page.keyboard.press("Enter")
    aid = a.page.evaluate("CobrowseViewer.current.wire.aid")
    assert v.page.evaluate(f"{CONTROL}.holder") == aid
    poll(a.page, "document.getElementById('cb-control').dataset.state === 'granted'", 10)

    # 3. Granted: the agent types into the field and clicks the button, through the UI.
    click_replica(a, "#name")
    a.page.fill("#cb-rc-editor", "Grace Hopper")
    a.page.press("#cb-rc-editor", "Enter")
    click_replica(a, "#buy")
    seen = poll(v.page, "window.__seen.some((s) => s[0] === 'buy') && window.__seen", 10)
    assert ["input", "Grace Hopper"] in seen and ["change", "Grace Hopper"] in seen
    # The editor's Enter is the field's too (rc-key): the page's key handler hears it.
    assert seen.index(["change", "Grace Hopper"]) < seen.index(["keydown", "Enter"])
    assert v.page.evaluate(name) == "Grace Hopper"
    poll(a.page, f"{VDOC}.getElementById('name').value === 'Grace Hopper'", 10, "the replica")
    # A select: the agent picks in a chooser over the replica's (its picker cannot be opened).
    click_replica(a, "#size")
    a.page.select_option("#cb-rc-editor", "L")
    poll(v.page, "document.getElementById('size').value === 'L'", 10, "the visitor's choice")
    poll(a.page, f"{VDOC}.getElementById('size').value === 'L'", 10, "the replica's choice")
    assert a.page.evaluate("document.getElementById('cb-rc-editor')") is None
    # The wheel over a scrollable box scrolls that box, not the window.
    win = v.page.evaluate("window.scrollY")
    over_replica(a, "#scroller")
    a.page.mouse.wheel(0, 100)
    poll(v.page, "document.getElementById('scroller').scrollTop > 0", 10, "the box's scroll")
    assert v.page.evaluate("window.scrollY") == win
    # A contenteditable region (a chat box): the editor over it types into it.
    v.page.evaluate(
        """document.getElementById('scroller').insertAdjacentHTML('afterend',
        '<div id="chat" contenteditable style="min-height:24px;border:1px solid">hi <b>there</b></div>')"""
    )
    poll(a.page, f"!!{VDOC}.getElementById('chat')", 10, "the chat box in the replica")
    click_replica(a, "#chat")
    assert a.page.input_value("#cb-rc-editor") == "hi there"
    a.page.fill("#cb-rc-editor", "Hello from support")
    poll(v.page, "document.getElementById('chat').textContent === 'Hello from support'", 10)
    a.page.press("#cb-rc-editor", "Escape")

    # 4. Private fields (a password, a card number typed as text) refuse the holder's input.
    ignored = v.page.evaluate(f"{CONTROL}.ignored")
    send("rc-text", {"id": ids["pw"], "value": "hunter2"})
    send("rc-text", {"id": ids["cc"], "value": "4111 1111 1111 1111"})
    after_all(22)
    assert v.page.evaluate("['pw', 'cc'].map((k) => document.getElementById(k).value)") == [
        "",
        "",
    ]
    assert v.page.evaluate(f"{CONTROL}.ignored") == ignored + 2

    # 5. A stroke: on the visitor's overlay and in the agent's view.
    a.page.click("#cb-draw")
    box = a.page.locator("#cb-frame").bounding_box()
    a.page.mouse.move(box["x"] + 100, box["y"] + 120)
    a.page.mouse.down()
    a.page.mouse.move(box["x"] + 260, box["y"] + 180, steps=8)
    a.page.mouse.up()
    strokes = poll(v.page, f"(s => s && s.strokes.length && s.strokes)({OVERLAY})", 10)
    assert len(strokes[0].split(" ")) >= 2
    assert a.page.evaluate("document.querySelectorAll('#cb-stage polyline').length") >= 1
    if SHOTS:
        a.page.mouse.move(box["x"] + 300, box["y"] + 60)
        v.page.screenshot(path=os.path.join(SHOTS, "control-visitor.png"))
        a.page.screenshot(path=os.path.join(SHOTS, "control-agent.png"))
    a.page.click("#cb-draw")

    # 6. One click on "Stop control": the next input does nothing, sent with no wait.
    stop = v.page.evaluate(f"{CONTROL}.stop")
    assert stop["text"] == "Stop control"
    v.page.mouse.click(stop["x"], stop["y"])
    send("rc-text", {"id": ids["name"], "value": "too late"})
    after_all(33)
    assert v.page.evaluate(name) == "Grace Hopper" and v.page.evaluate(f"{CONTROL}.holder") is None
    poll(a.page, "document.getElementById('cb-control').dataset.state === 'off'", 10)
    # ... and the gateway heard the revoke: the agent's input is refused there again.
    refused = a.page.evaluate("CobrowseViewer.current.refused")
    for _ in range(50):
        send("rc-scroll", {"id": 0, "dx": 0, "dy": 40})
        if a.page.evaluate(f"CobrowseViewer.current.refused > {refused}"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(
            "the gateway kept taking input after the revoke: "
            + "\n".join(ln for ln in cluster.log("gw-1").splitlines() if "control" in ln)
        )
