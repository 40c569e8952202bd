"""The agent's viewer (router/static/viewer/) in real Chromium, without a network.

A test page holds an iframe; the embed bundle is injected and a replayer built on the
iframe with a fake `sign` (URLs point at /signed/ on the test server) and a fake
`rewriteCss` (`:hover` to `.cb-hover`, every url() signed). Snapshots and events are
hand-written per docs/browser.md, or serialized from a real page by a tiny test-only
serializer, and the iframe's DOM is checked directly or with tests/support/dom_compare.py.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import zlib
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from router import browser_assets
from tests.support.dom_compare import NORMALIZE_JS, assert_same, normalized

ORIGIN = "http://origin.test"


@pytest.fixture(scope="module")
def bundle() -> str:
    return browser_assets.bundle("embed.js").body.decode()


SETUP_JS = """
({signed, frameId, interactive}) => {
  window.signCalls = [];
  window.rewriteCalls = [];
  window.agentEvents = [];
  const iframe = document.getElementById(frameId || "f");
  window.R = CobrowseViewer.replayer(iframe, {
    sign: async (urls, kind) => {
      window.signCalls.push([kind, urls.slice()]);
      return urls.map((u) => signed + "/" + kind + "?u=" + encodeURIComponent(u));
    },
    rewriteCss: async (css, base) => {
      window.rewriteCalls.push([css, base]);
      return css.replace(/:hover/g, ".cb-hover").replace(/url\\(([^)]*)\\)/g, 'url("' + signed + '/asset")');
    },
    onAgentEvent: (kind, payload) => window.agentEvents.push([kind, payload]),
    interactive: interactive !== false,
  });
  window.D = () => iframe.contentDocument;
  window.byId = (id) => window.R.nodeById(id);
  return true;
}
"""


class Viewer:
    """A page with a replayer on its iframe, and helpers to drive it."""

    def __init__(self, page, server, frame_id: str = "f") -> None:
        self.page = page
        self.server = server
        self.frame_id = frame_id
        self.requests: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))

    def apply(self, kind: str, payload) -> None:
        self.page.evaluate("([k, p]) => R.apply(k, p)", [kind, payload])

    def snapshot(self, doc: dict) -> None:
        self.apply("snapshot", doc)
        self.settle()

    def settle(self) -> None:
        # Signing and CSS rewriting are async (microtasks, then a promise): two frames do.
        self.page.evaluate(
            "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 20))))"
        )

    def js(self, expr: str, arg=None):
        return self.page.evaluate(expr, arg)

    def stats(self) -> dict:
        return self.page.evaluate("() => R.stats()")

    def origin_requests(self) -> list[str]:
        return [u for u in self.requests if u.startswith(ORIGIN)]


def open_viewer(
    context,
    pages_server,
    bundle,
    page_name: str = "viewer_host.html",
    frame_id: str = "f",
    interactive=True,
) -> Viewer:
    page = context.new_page()
    page.route(ORIGIN + "/**", lambda route: route.abort())
    v = Viewer(page, pages_server, frame_id)
    page.goto(pages_server.url + "/pages/" + page_name)
    page.add_script_tag(content=bundle)
    page.evaluate(
        SETUP_JS,
        {"signed": pages_server.url + "/signed", "frameId": frame_id, "interactive": interactive},
    )
    return v


def doc(root: dict, **kw) -> dict:
    d = {
        "v": 1,
        "url": ORIGIN + "/page",
        "base": ORIGIN + "/",
        "title": "t",
        "dt": {"name": "html", "pub": "", "sys": ""},
        "vw": [800, 600],
        "scroll": [0, 0],
        "root": root,
        "sheets": [],
        "adopted": [],
        "focus": None,
    }
    d.update(kw)
    return d


def page_doc(
    body_children: list, head_children: list | None = None, body_attrs: dict | None = None, **kw
) -> dict:
    return doc(
        {
            "id": 1,
            "tag": "html",
            "a": {},
            "c": [
                {"id": 2, "tag": "head", "a": {}, "c": head_children or []},
                {"id": 3, "tag": "body", "a": body_attrs or {}, "c": body_children},
            ],
        },
        **kw,
    )


# A test-only serializer: a real page in, a snapshot document (docs/browser.md) out.
SERIALIZE_JS = """
() => {
  let next = 1;
  const SVG = "http://www.w3.org/2000/svg", MATH = "http://www.w3.org/1998/Math/MathML";
  const ser = (n) => {
    const id = next++;
    if (n.nodeType === 3) return {id, x: n.data};
    if (n.nodeType === 8) return {id, cm: n.data};
    const o = {id, tag: n.localName, a: {}, c: []};
    if (n.namespaceURI === SVG) o.ns = "svg";
    if (n.namespaceURI === MATH) o.ns = "math";
    for (const a of n.attributes) o.a[a.name] = a.value;
    if (n.localName !== "script") {
      for (const c of n.childNodes) if (c.nodeType === 1 || c.nodeType === 3 || c.nodeType === 8) o.c.push(ser(c));
    }
    if (n.localName === "input" || n.localName === "textarea" || n.localName === "select") o.v = n.value;
    if (n.localName === "input" && /checkbox|radio/.test(n.type)) o.ck = n.checked;
    if (n.localName === "option") o.sl = n.selected;
    return o;
  };
  const dt = document.doctype;
  return {v: 1, url: "http://origin.test/shop/page", base: "http://origin.test/shop/", title: document.title,
    dt: dt ? {name: dt.name, pub: dt.publicId, sys: dt.systemId} : null, vw: [innerWidth, innerHeight],
    scroll: [scrollX, scrollY], root: ser(document.documentElement), sheets: [], adopted: [], focus: null};
}
"""


def test_snapshot_rebuilds_a_real_page(context, pages_server, bundle):
    visitor = context.new_page()
    visitor.route(ORIGIN + "/**", lambda route: route.abort())
    visitor.goto(pages_server.url + "/pages/viewer_page.html")
    # Form state the parser does not show: values typed after load.
    visitor.evaluate("""() => { document.querySelector('[name=q]').value = 'typed';
      document.querySelector('[name=r][value="1"]').checked = true;
      document.querySelector('[name=s]').value = 'a'; document.querySelector('textarea').value = 'edited'; }""")
    snap = visitor.evaluate(SERIALIZE_JS)
    v = open_viewer(context, pages_server, bundle)
    v.snapshot(snap)
    want = normalized(visitor)
    got = normalized(v.page, "D()")
    assert_same(got, want)
    d = v.js("""() => { const d = D(); return {
      mode: d.compatMode, dt: d.doctype && d.doctype.name,
      grad: d.querySelector('linearGradient') && d.querySelector('linearGradient').namespaceURI,
      mfrac: d.querySelector('mfrac').namespaceURI, fo: d.querySelector('foreignObject div').namespaceURI,
      xlink: d.querySelectorAll('use')[1].getAttributeNS('http://www.w3.org/1999/xlink', 'href'),
      noteColor: getComputedStyle(d.querySelector('p.note')).color,
      title: d.title, scripts: d.getElementsByTagName('script').length,
      value: d.querySelector('[name=q]').value, pw: d.querySelector('[name=pw]').value,
      multi: Array.from(d.querySelector('[name=m]').selectedOptions, (o) => o.text),
      cartHref: d.querySelector('a.link').getAttribute('href'), cartData: d.querySelector('a.link').getAttribute('data-cb-href'),
      formAction: d.querySelector('form').getAttribute('action'),
      frameBox: [d.querySelector('cb-blocked[data-tag=iframe]').offsetWidth, d.querySelector('cb-blocked[data-tag=iframe]').offsetHeight],
    }; }""")
    assert d["mode"] == "CSS1Compat" and d["dt"] == "html"
    assert d["grad"] == "http://www.w3.org/2000/svg"
    assert d["mfrac"] == "http://www.w3.org/1998/Math/MathML"
    assert d["fo"] == "http://www.w3.org/1999/xhtml"
    assert d["xlink"] == "#g1"
    assert d["noteColor"] == "rgb(0, 128, 0)"
    assert d["title"] == "Viewer fidelity page & friends"
    assert d["scripts"] == 0
    assert d["value"] == "typed" and d["pw"] == "hunter2"
    assert d["multi"] == ["1", "3"]
    assert d["cartHref"] == "/cart" and d["cartData"] is None  # kept, inert: :link matches
    assert d["formAction"] is None
    assert d["frameBox"] == [120, 60]
    assert v.origin_requests() == []
    assert v.stats()["errors"] == 0


def test_quirks_mode_without_doctype(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    v.snapshot(page_doc([{"id": 4, "x": "old"}], dt=None))
    assert v.js("() => [D().compatMode, D().doctype]") == ["BackCompat", None]
    dt = {
        "name": "html",
        "pub": "-//W3C//DTD XHTML 1.0 Transitional//EN",
        "sys": "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd",
    }
    v.snapshot(page_doc([{"id": 4, "x": "new"}], dt=dt))
    assert v.js("() => [D().compatMode, D().doctype.publicId, D().body.textContent]") == [
        "CSS1Compat",
        dt["pub"],
        "new",
    ]


def ul_doc():
    items = [
        {
            "id": 10 + i,
            "tag": "li",
            "a": {"class": f"i{i}"},
            "c": [{"id": 20 + i, "x": f"item {i}"}],
        }
        for i in range(1, 4)
    ]
    return page_doc(
        [
            {"id": 4, "tag": "ul", "a": {"id": "list"}, "c": items},
            {"id": 5, "tag": "p", "a": {"title": "t"}, "c": [{"id": 6, "x": "para"}]},
        ]
    )


def texts(v):
    return v.js(
        "() => Array.from(D().querySelectorAll('#list > li'), (li) => li.className + ':' + li.textContent)"
    )


def test_mutations_in_order_with_moves(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    v.snapshot(ul_doc())
    assert texts(v) == ["i1:item 1", "i2:item 2", "i3:item 3"]
    # Move item 3 to the front, append a new item 4 with a child added by a later add,
    # then insert item 5 before the new item 4 (which exists by then).
    v.apply(
        "mutation",
        {
            "rem": [13],
            "adds": [
                {
                    "p": 4,
                    "b": 11,
                    "n": {
                        "id": 13,
                        "tag": "li",
                        "a": {"class": "i3"},
                        "c": [{"id": 23, "x": "item 3"}],
                    },
                },
                {"p": 4, "b": None, "n": {"id": 14, "tag": "li", "a": {"class": "i4"}, "c": []}},
                {"p": 14, "b": None, "n": {"id": 24, "x": "item 4"}},
                {
                    "p": 4,
                    "b": 14,
                    "n": {
                        "id": 15,
                        "tag": "li",
                        "a": {"class": "i5"},
                        "c": [{"id": 25, "x": "item 5"}],
                    },
                },
            ],
            "attr": [
                {"id": 11, "a": {"class": "first", "data-new": "yes"}},
                {"id": 5, "a": {"title": None}},
            ],
            "text": [{"id": 22, "x": "item two"}, {"id": 6, "x": "changed"}],
        },
    )
    assert texts(v) == ["i3:item 3", "first:item 1", "i2:item two", "i5:item 5", "i4:item 4"]
    assert v.js(
        "() => [byId(11).getAttribute('data-new'), byId(5).hasAttribute('title'), byId(5).textContent]"
    ) == ["yes", False, "changed"]
    # The moved node is the new one under the same id; removing it removes it.
    v.apply("mutation", {"rem": [13, 12]})
    assert texts(v) == ["first:item 1", "i5:item 5", "i4:item 4"]
    assert v.js("() => [byId(13), byId(23), byId(12)]") == [None, None, None]
    assert v.stats()["skipped"] == 0


def test_unknown_ids_are_skipped_and_counted(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    v.apply("mutation", {"rem": [1]})  # before any snapshot: ignored
    v.snapshot(ul_doc())
    before = v.stats()["skipped"]
    v.apply(
        "mutation",
        {
            "rem": [999],
            "adds": [
                {"p": 998, "b": None, "n": {"id": 50, "x": "lost"}},
                {"p": 4, "b": 997, "n": {"id": 51, "x": "lost"}},
                {
                    "p": 4,
                    "b": None,
                    "n": {"id": 52, "tag": "li", "a": {}, "c": [{"id": 53, "x": "kept"}]},
                },
            ],
            "attr": [{"id": 996, "a": {"x": "1"}}],
            "text": [{"id": 995, "x": "y"}],
        },
    )
    for kind, payload in [
        ("input", {"id": 994, "v": "x"}),
        ("scroll", {"id": 993, "x": 1, "y": 1}),
        ("hover", {"id": 992}),
        ("focus", {"id": 991}),
        ("css", {"op": "insert", "node": 990, "rule": "a{}", "index": 0}),
        ("mutation", None),
        ("mutation", {"adds": [None, {"p": 4}]}),
        ("nonsense", {}),
        ("snapshot", {"i": 1, "n": 2, "d": "x"}),
        ("nav", "not a map"),
    ]:
        v.apply(kind, payload)
    assert texts(v)[-1] == ":kept"
    s = v.stats()
    assert s["skipped"] - before >= 12
    assert s["errors"] == 0
    # A sheet entry that is not a sheet costs that entry, not the page (it cost the page).
    v.snapshot({**ul_doc(), "sheets": [None, 7]})
    assert v.stats()["errors"] == 0 and texts(v)


def test_form_state_and_input_events(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    form = [
        {"id": 4, "tag": "input", "a": {"type": "text", "value": "attr"}, "v": "typed"},
        {"id": 5, "tag": "input", "a": {"type": "checkbox"}, "ck": True},
        {
            "id": 6,
            "tag": "select",
            "a": {},
            "v": "b",
            "c": [
                {"id": 7, "tag": "option", "a": {"value": "a"}, "c": [{"id": 8, "x": "A"}]},
                {"id": 9, "tag": "option", "a": {"value": "b"}, "c": [{"id": 10, "x": "B"}]},
            ],
        },
        {
            "id": 11,
            "tag": "select",
            "a": {"multiple": ""},
            "c": [
                {"id": 12, "tag": "option", "a": {}, "sl": True, "c": [{"id": 13, "x": "1"}]},
                {"id": 14, "tag": "option", "a": {}, "c": [{"id": 15, "x": "2"}]},
                {"id": 16, "tag": "option", "a": {}, "sl": True, "c": [{"id": 17, "x": "3"}]},
            ],
        },
        {"id": 18, "tag": "textarea", "a": {}, "v": "area", "c": [{"id": 19, "x": "default"}]},
        {
            "id": 20,
            "tag": "input",
            "a": {"type": "password", "value": "*****"},
            "v": "*****",
            "m": True,
        },
    ]
    v.snapshot(page_doc(form))
    state = "() => [byId(4).value, byId(4).getAttribute('value'), byId(5).checked, byId(6).value, Array.from(byId(11).selectedOptions, o => o.text), byId(18).value, byId(20).value]"
    assert v.js(state) == ["typed", "attr", True, "b", ["1", "3"], "area", "*****"]
    v.apply("input", {"id": 4, "v": "again"})
    v.apply("input", {"id": 5, "ck": False})
    v.apply("input", {"id": 6, "v": "a"})
    v.apply("input", {"id": 11, "sel": [1]})
    v.apply("input", {"id": 18, "v": "new area"})
    assert v.js(state) == ["again", "attr", False, "a", ["2"], "new area", "*****"]


def test_scroll_window_and_elements(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    body = [
        {"id": 4, "tag": "div", "a": {"style": "height: 3000px; width: 3000px"}, "c": []},
        {
            "id": 5,
            "tag": "div",
            "a": {"style": "height: 100px; overflow: auto"},
            "sc": [0, 150],
            "c": [{"id": 6, "tag": "div", "a": {"style": "height: 1000px"}, "c": []}],
        },
    ]
    v.snapshot(page_doc([body[1], body[0]], scroll=[20, 340], vw=[640, 480]))
    assert v.js("() => [D().defaultView.scrollX, D().defaultView.scrollY, byId(5).scrollTop]") == [
        20,
        340,
        150,
    ]
    v.apply("scroll", {"id": 0, "x": 0, "y": 1200})
    v.apply("scroll", {"id": 5, "x": 0, "y": 400})
    assert v.js("() => [D().defaultView.scrollX, D().defaultView.scrollY, byId(5).scrollTop]") == [
        0,
        1200,
        400,
    ]
    # The iframe is the visitor's viewport, scaled to fit the 800x600 stage.
    assert v.js(
        "() => [document.getElementById('f').style.width, document.getElementById('f').style.height, R.scale()]"
    ) == ["640px", "480px", 1.25]
    v.apply("viewport", {"w": 1600, "h": 900})
    assert v.js("() => [document.getElementById('f').style.width, R.scale()]") == ["1600px", 0.5]


def test_hover_and_focus_classes(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    body = [
        {
            "id": 4,
            "tag": "div",
            "a": {"class": "card"},
            "c": [
                {
                    "id": 5,
                    "tag": "a",
                    "a": {"href": "/x"},
                    "c": [{"id": 6, "tag": "span", "a": {}, "c": [{"id": 7, "x": "go"}]}],
                },
                {"id": 8, "tag": "input", "a": {}},
            ],
        }
    ]
    v.snapshot(
        page_doc(
            body,
            head_children=[
                {
                    "id": 9,
                    "tag": "style",
                    "a": {},
                    "c": [
                        {
                            "id": 10,
                            "x": "a:hover span { color: rgb(255, 0, 0); } div:not(:hover) { opacity: 1 }",
                        }
                    ],
                }
            ],
        )
    )
    hovered = "() => Array.from(D().querySelectorAll('.cb-hover'), (e) => e.localName)"
    v.apply("hover", {"id": 6})
    v.settle()
    assert v.js(hovered) == ["html", "body", "div", "a", "span"]
    assert v.js("() => getComputedStyle(byId(6)).color") == "rgb(255, 0, 0)"
    # A class change on a hovered element keeps the viewer's class.
    v.apply("mutation", {"attr": [{"id": 4, "a": {"class": "card open"}}]})
    assert v.js("() => byId(4).className") == "card open cb-hover"
    v.apply("hover", {"id": 8})
    assert v.js(hovered) == ["html", "body", "div", "input"]
    assert v.js("() => [byId(5).hasAttribute('class'), byId(4).className]") == [
        False,
        "card open cb-hover",
    ]
    v.apply("hover", {"id": None})
    assert v.js(hovered) == []
    # Focus: the element, focus-visible when the visitor's matches, focus-within up the tree;
    # the outline is the browser's own for :focus-visible, none otherwise (no viewer outline).
    state = "() => [byId(8).className, byId(4).className, getComputedStyle(byId(8)).outlineStyle]"
    v.apply("focus", {"id": 8, "fv": True})
    assert v.js(state) == [
        "cb-focus cb-focus-visible cb-focus-within",
        "card open cb-focus-within",
        "auto",
    ]
    v.apply("focus", {"id": 8})
    assert v.js(state) == ["cb-focus cb-focus-within", "card open cb-focus-within", "none"]
    v.apply("focus", {"id": None})
    assert v.js("() => byId(8).hasAttribute('class')") is False
    # Active rides on hover: the pressed element and its ancestors, until released.
    v.apply("hover", {"id": 8, "act": 8})
    assert v.js("() => [byId(8).className, byId(4).className]") == [
        "cb-hover cb-active",
        "card open cb-hover cb-active",
    ]
    v.apply("hover", {"id": 8, "act": None})
    assert v.js("() => [byId(8).className, byId(4).className]") == [
        "cb-hover",
        "card open cb-hover",
    ]


def _png(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_canvas_image_is_drawn(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    v.snapshot(
        page_doc(
            [{"id": 4, "tag": "canvas", "a": {"width": "40", "height": "20"}, "cv": True, "c": []}]
        )
    )
    # Scaled down by the visitor (20x10): drawn over the canvas's own 40x20.
    png = base64.b64encode(_png(20, 10, (255, 0, 0))).decode()
    v.js(
        """(b64) => { const s = atob(b64); const d = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) d[i] = s.charCodeAt(i);
      R.apply('canvas', {id: 4, d, mime: 'image/png', w: 20, h: 10}); }""",
        png,
    )
    v.page.wait_for_function(
        "() => byId(4).getContext('2d').getImageData(39, 19, 1, 1).data[3] === 255"
    )
    assert v.js("() => Array.from(byId(4).getContext('2d').getImageData(39, 19, 1, 1).data)") == [
        255,
        0,
        0,
        255,
    ]
    assert v.js("() => [byId(4).width, byId(4).height]") == [40, 20]


def test_cssom_insert_delete_replace_adopt(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    head = [
        {"id": 10, "tag": "style", "a": {}, "c": [{"id": 11, "x": "p { color: rgb(1, 1, 1); }"}]},
        {
            "id": 12,
            "tag": "style",
            "a": {},
            "css": "b { color: rgb(0, 0, 9); }\ni:hover { color: rgb(7, 7, 7); }",
            "c": [{"id": 13, "x": "b { color: rgb(9, 9, 9); }"}],
        },
    ]
    body = [
        {"id": 4, "tag": "p", "a": {}, "c": [{"id": 5, "x": "p"}]},
        {"id": 6, "tag": "b", "a": {}, "c": []},
        {"id": 7, "tag": "i", "a": {}, "c": []},
        {"id": 8, "tag": "u", "a": {}, "c": []},
    ]
    v.snapshot(
        page_doc(
            body,
            head_children=head,
            sheets=[{"sid": 1, "css": "u { color: rgb(2, 2, 2); }"}],
            adopted=[1],
        )
    )
    color = "(id) => getComputedStyle(byId(id)).color"
    assert v.js(color, 4) == "rgb(1, 1, 1)"
    assert v.js(color, 6) == "rgb(0, 0, 9)"  # the CSSOM ("css") wins over the text child
    assert v.js(color, 8) == "rgb(2, 2, 2)"
    v.apply("hover", {"id": 7})
    v.settle()
    assert v.js(color, 7) == "rgb(7, 7, 7)"
    v.apply("css", {"op": "insert", "node": 10, "rule": "p { color: rgb(3, 3, 3); }", "index": 1})
    v.apply(
        "css",
        {"op": "insert", "sheet": 1, "rule": "b { color: rgb(4, 4, 4) !important; }", "index": 0},
    )
    v.settle()
    assert v.js(color, 4) == "rgb(3, 3, 3)"
    assert v.js(color, 6) == "rgb(4, 4, 4)"
    v.apply("css", {"op": "delete", "node": 10, "index": 1})
    v.apply("css", {"op": "replace", "sheet": 2, "css": "p { color: rgb(5, 5, 5) !important; }"})
    v.apply("css", {"op": "adopt", "host": 0, "sheets": [2, 1]})
    v.settle()
    assert v.js(color, 4) == "rgb(5, 5, 5)"
    assert v.js(color, 8) == "rgb(2, 2, 2)"
    v.apply("css", {"op": "adopt", "host": 0, "sheets": []})
    v.settle()
    assert v.js(color, 4) == "rgb(1, 1, 1)"
    # A text change re-parses the <style>, as in the visitor's browser.
    v.apply("mutation", {"text": [{"id": 11, "x": "p { color: rgb(6, 6, 6); }"}]})
    v.settle()
    assert v.js(color, 4) == "rgb(6, 6, 6)"
    # Every CSS went through rewriteCss with the page's base URL.
    assert {b for _, b in v.js("() => rewriteCalls")} == {ORIGIN + "/"}
    assert v.stats()["errors"] == 0


def test_proxied_urls_are_signed_in_batches(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    head = [
        {"id": 10, "tag": "link", "a": {"rel": "stylesheet", "href": "/css/site.css"}},
        {"id": 11, "tag": "link", "a": {"rel": "icon", "href": "/favicon.ico"}},
        {"id": 12, "tag": "link", "a": {"rel": "preload", "href": "/font.woff2", "as": "font"}},
        {
            "id": 13,
            "tag": "style",
            "a": {},
            "c": [{"id": 14, "x": "body { background: url(bg.png) }"}],
        },
    ]
    body = [
        {
            "id": 4,
            "tag": "img",
            "a": {
                "src": "img/a.png",
                "srcset": "img/a.png 1x, https://cdn.test/a,2x.png 2x",
                "crossorigin": "anonymous",
            },
        },
        {"id": 5, "tag": "video", "a": {"poster": "p.jpg"}},
        {"id": 6, "tag": "div", "a": {"style": "background-image: url('img/d.png'); color: red"}},
        {
            "id": 7,
            "tag": "svg",
            "ns": "svg",
            "a": {},
            "c": [{"id": 8, "tag": "image", "ns": "svg", "a": {"href": "img/s.png"}}],
        },
        {"id": 9, "tag": "input", "a": {"type": "image", "src": "btn.png"}},
        {"id": 15, "tag": "img", "a": {"src": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    v.snapshot(page_doc(body, head_children=head))
    calls = v.js("() => signCalls")
    assert sorted(k for k, _ in calls) == ["asset", "stylesheet"]  # one request per kind
    sheet = dict(calls)["stylesheet"]
    assert sheet == [ORIGIN + "/css/site.css"]
    assert sorted(dict(calls)["asset"]) == sorted(
        [
            ORIGIN + "/img/a.png",
            "https://cdn.test/a,2x.png",
            ORIGIN + "/p.jpg",
            ORIGIN + "/img/d.png",
            ORIGIN + "/img/s.png",
            ORIGIN + "/btn.png",
        ]
    )
    signed = pages_server.url + "/signed/"
    got = v.js("""() => ({link: byId(10).getAttribute('href'), icon: [byId(11).getAttribute('href'), byId(11).getAttribute('data-cb-href')],
      preload: byId(12).getAttribute('href'), img: byId(4).getAttribute('src'), srcset: byId(4).getAttribute('srcset'),
      cross: byId(4).hasAttribute('crossorigin'), poster: byId(5).getAttribute('poster'), style: byId(6).getAttribute('style'),
      svg: byId(8).getAttribute('href'), input: byId(9).getAttribute('src'), data: byId(15).getAttribute('src'),
      css: byId(13).textContent})""")
    assert got["link"] == signed + "stylesheet?u=" + "http%3A%2F%2Forigin.test%2Fcss%2Fsite.css"
    assert got["icon"] == [None, "/favicon.ico"] and got["preload"] is None
    assert got["img"].startswith(signed + "asset?u=") and not got["cross"]
    assert (
        got["srcset"].count(signed) == 2
        and got["srcset"].endswith(" 2x")
        and " 1x, " in got["srcset"]
    )
    assert (
        got["poster"].startswith(signed)
        and got["svg"].startswith(signed)
        and got["input"].startswith(signed)
    )
    assert got["style"].startswith('background-image: url("' + signed + "asset?u=") and got[
        "style"
    ].endswith("color: red;")
    assert got["data"] == "data:image/png;base64,iVBORw0KGgo="
    assert got["css"] == 'body { background: url("' + pages_server.url + '/signed/asset") }'
    # Signed URLs are cached: the same URLs again cost no request.
    v.apply(
        "mutation",
        {"adds": [{"p": 3, "b": None, "n": {"id": 40, "tag": "img", "a": {"src": "/img/a.png"}}}]},
    )
    v.settle()
    assert len(v.js("() => signCalls")) == 2
    assert v.js("() => byId(40).getAttribute('src')") == got["img"]
    # Changing rel to stylesheet signs the href; a later href wins over an older pending one.
    v.apply(
        "mutation",
        {
            "attr": [
                {"id": 11, "a": {"rel": "stylesheet"}},
                {"id": 10, "a": {"href": "/css/a.css"}},
                {"id": 10, "a": {"href": "/css/b.css"}},
            ]
        },
    )
    v.settle()
    assert v.js("() => [byId(11).getAttribute('href'), byId(10).getAttribute('href')]") == [
        signed + "stylesheet?u=http%3A%2F%2Forigin.test%2Ffavicon.ico",
        signed + "stylesheet?u=http%3A%2F%2Forigin.test%2Fcss%2Fb.css",
    ]
    assert v.origin_requests() == []


def test_urls_stay_empty_until_signed_and_when_signing_fails(context, pages_server, bundle):
    page = context.new_page()
    page.route(ORIGIN + "/**", lambda route: route.abort())
    reqs = []
    page.on("request", lambda r: reqs.append(r.url))
    page.goto(pages_server.url + "/pages/viewer_host.html")
    page.add_script_tag(content=bundle)
    page.evaluate("""() => {
      window.release = null;
      const gate = new Promise((r) => { window.release = r; });
      window.R = CobrowseViewer.replayer(document.getElementById('f'), {
        sign: async (urls) => { await gate; throw new Error('proxy down'); },
        rewriteCss: async () => { await gate; throw new Error('proxy down'); },
      });
    }""")
    snap = page_doc(
        [
            {"id": 4, "tag": "img", "a": {"src": "a.png"}},
            {"id": 5, "tag": "div", "a": {"style": "background: url(b.png)"}},
        ],
        head_children=[
            {"id": 6, "tag": "link", "a": {"rel": "stylesheet", "href": "s.css"}},
            {
                "id": 7,
                "tag": "style",
                "a": {},
                "c": [{"id": 8, "x": "@import url(c.css); p { background: url(d.png) }"}],
            },
        ],
    )
    page.evaluate("(s) => R.apply('snapshot', s)", snap)
    pending = "() => [R.nodeById(4).getAttribute('src'), R.nodeById(5).getAttribute('style'), R.nodeById(6).getAttribute('href'), R.nodeById(7).textContent]"
    assert page.evaluate(pending) == ["", 'background: url("about:invalid");', "", ""]
    page.evaluate("() => release()")
    page.wait_for_timeout(50)
    assert page.evaluate(pending) == ["", 'background: url("about:invalid");', "", ""]
    assert page.evaluate("() => [R.stats().signFailed, R.stats().rewriteFailed]") == [3, 1]
    assert [u for u in reqs if u.startswith(ORIGIN)] == []


def test_snapshot_parts_are_reassembled(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    snap = page_doc(
        [{"id": 4, "tag": "p", "a": {}, "c": [{"id": 5, "x": "héllo wörld — ✓ " * 50}]}]
    )
    data = json.dumps(snap, ensure_ascii=False).encode()
    cut = [0, 7, len(data) // 2 + 1, len(data)]  # cuts inside multi-byte characters too
    parts = [list(data[a:b]) for a, b in zip(cut, cut[1:], strict=False)]
    v.js(
        """(parts) => parts.forEach((p, i) => R.apply('snapshot', {i, n: parts.length, d: new Uint8Array(p)}))""",
        parts,
    )
    assert v.js("() => byId(5).data") == "héllo wörld — ✓ " * 50
    # An incomplete run (part 1 of 2 missing) is dropped; the next complete one applies.
    snap2 = page_doc([{"id": 4, "tag": "p", "a": {}, "c": [{"id": 5, "x": "second"}]}])
    d2 = list(json.dumps(snap2).encode())
    v.js(
        "(d) => { R.apply('snapshot', {i: 0, n: 2, d: new Uint8Array(d.slice(0, 10))}); R.apply('snapshot', {i: 0, n: 1, d: new Uint8Array(d)}); }",
        d2,
    )
    assert v.js("() => byId(5).data") == "second"


def test_visitor_pointer_click_and_agent_actions(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    body = [
        {
            "id": 4,
            "tag": "div",
            "a": {
                "style": "position: absolute; left: 100px; top: 100px; width: 200px; height: 100px"
            },
            "c": [
                {
                    "id": 5,
                    "tag": "button",
                    "a": {"style": "width: 100px; height: 50px"},
                    "c": [{"id": 6, "x": "Buy"}],
                }
            ],
        }
    ]
    v.snapshot(page_doc(body, vw=[1600, 1200]))  # scale 0.5 in the 800x600 stage
    v.apply("pointer", {"x": 400, "y": 300})
    assert v.js(
        "() => { const d = Array.from(document.querySelectorAll('#stage > div > div')).find((e) => e.style.borderRadius === '50%'); return [d.style.left, d.style.top, d.style.display]; }"
    ) == ["200px", "150px", "block"]
    v.apply("click", {"x": 10, "y": 10, "id": 5})
    # The agent moves over the replica: visitor coordinates, at most every 50 ms.
    v.page.mouse.move(60, 60)
    v.page.mouse.move(61, 61)
    v.page.wait_for_timeout(120)
    ev = v.js("() => agentEvents")
    assert ev[0] == ["pointer", {"x": 120, "y": 120}]
    assert ev[-1] == ["pointer", {"x": 122, "y": 122}] and len(ev) == 2
    # A click is a click; Alt+click (or highlight mode) highlights the element under it.
    v.page.mouse.click(60, 60)
    v.page.keyboard.down("Alt")
    v.page.mouse.click(60, 60)
    v.page.keyboard.up("Alt")
    v.js("() => R.setHighlightMode(true)")
    v.page.mouse.click(60, 60)
    ev = [e for e in v.js("() => agentEvents") if e[0] != "pointer"]
    assert ev == [
        ["click", {"x": 120, "y": 120}],
        ["highlight", {"id": 5, "on": True}],
        ["highlight", {"id": 5, "on": False}],
    ]
    # The replica never gets the agent's clicks.
    assert v.js("() => D().activeElement === D().body")


HOSTILE = "parent.__pwned = (parent.__pwned || 0) + 1"


def hostile_doc() -> dict:
    js_urls = [
        "javascript:" + HOSTILE,
        " JaVaScRiPt:" + HOSTILE,
        "java\tscript:" + HOSTILE,
        "java\nscript:" + HOSTILE,
        "\x01javascript:" + HOSTILE,
        "jav&#x09;ascript:" + HOSTILE,
        "vbscript:msgbox(1)",
        "data:text/html,<script>" + HOSTILE + "</script>",
        "DATA:TEXT/HTML;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0xPC9zY3JpcHQ+",
    ]
    n = iter(range(100, 10000))

    def el(tag, a=None, c=None, **kw):
        d = {"id": next(n), "tag": tag, "a": a or {}, "c": c or []}
        d.update(kw)
        return d

    def tx(x):
        return {"id": next(n), "x": x}

    on = {
        "onload": HOSTILE,
        "onerror": HOSTILE,
        "onclick": HOSTILE,
        "onmouseover": HOSTILE,
        "onfocus": HOSTILE,
        "ONANIMATIONSTART": HOSTILE,
    }
    links = [el("a", {"href": u, "class": "jslink"}, [tx("link")]) for u in js_urls]
    body = [
        el("script", {}, [tx(HOSTILE)]),
        el("script", {"src": ORIGIN + "/evil.js"}),
        el("noscript", {}, [tx("<img src=x onerror='" + HOSTILE + "'>")]),
        el("img", {"src": "nope.png", **on}),
        el("img", {"src": "javascript:" + HOSTILE}),
        el(
            "svg",
            {"onload": HOSTILE},
            [
                el("script", {}, [tx(HOSTILE)], ns="svg"),
                el(
                    "a",
                    {"href": js_urls[0], "xlink:href": js_urls[1]},
                    [
                        el("set", {"attributeName": "href", "to": js_urls[0]}, ns="svg"),
                        el(
                            "animate",
                            {
                                "attributeName": "filter",
                                "to": "url(" + ORIGIN + "/f.svg#f)",
                                "dur": "1s",
                            },
                            ns="svg",
                        ),
                        el(
                            "animate",
                            {
                                "attributeName": "xlink:href",
                                "values": "x;" + js_urls[2],
                                "begin": "0s",
                            },
                            ns="svg",
                        ),
                        el("text", {"x": "1", "y": "10"}, [tx("svg link")], ns="svg"),
                    ],
                    ns="svg",
                ),
                el("use", {"href": ORIGIN + "/sprite.svg#i"}, ns="svg"),
                el("image", {"href": js_urls[3], "onload": HOSTILE}, ns="svg"),
                el(
                    "rect",
                    {
                        "width": "5",
                        "height": "5",
                        "filter": "url(" + ORIGIN + "/f.svg#x)",
                        "fill": "u\\72l(" + ORIGIN + "/g.svg#g)",
                    },
                    ns="svg",
                ),
                el(
                    "foreignObject",
                    {},
                    [el("iframe", {"srcdoc": "<script>" + HOSTILE + "</script>"})],
                    ns="svg",
                ),
            ],
            ns="svg",
        ),
        el("math", {}, [el("mi", {"href": js_urls[0]}, [tx("x")], ns="math")], ns="math"),
        el(
            "iframe",
            {
                "srcdoc": "<script>" + HOSTILE + "</script>",
                "src": js_urls[0],
                "width": "50",
                "height": "40",
            },
        ),
        el("iframe", {"src": ORIGIN + "/frame.html"}),
        el("frame", {"src": js_urls[0]}),
        el("object", {"data": js_urls[0]}),
        el("embed", {"src": ORIGIN + "/x.swf"}),
        el("portal", {"src": ORIGIN + "/p"}),
        el("meta", {"http-equiv": "refresh", "content": "0;url=javascript:" + HOSTILE}),
        el("meta", {"HTTP-EQUIV": "Set-Cookie", "content": "a=b"}),
        el("base", {"href": "javascript:" + HOSTILE + "//"}),
        el("link", {"rel": "import", "href": ORIGIN + "/imp.html"}),
        el("link", {"rel": "prefetch", "href": ORIGIN + "/pre"}),
        el("link", {"rel": "manifest", "href": ORIGIN + "/m.json"}),
        el("link", {"rel": "stylesheet", "href": js_urls[0]}),
        el(
            "form",
            {"action": js_urls[4]},
            [
                el("button", {"formaction": js_urls[0]}, [tx("go")]),
                el("input", {"type": "image", "src": js_urls[5], "formaction": js_urls[1]}),
                el("input", {"type": "text", "onfocus": HOSTILE, "autofocus": ""}),
            ],
        ),
        el(
            "div",
            {
                "style": "background: u\\72l("
                + ORIGIN
                + "/esc.png); --v: \\75rl("
                + ORIGIN
                + "/var.png); width: 10px",
                "onmouseover": HOSTILE,
            },
        ),
        el("video", {"src": js_urls[0], "poster": js_urls[1]}),
        el("area", {"href": js_urls[2]}),
        el("details", {"open": "", "ontoggle": HOSTILE}, [tx("d")]),
        el("marquee", {"onstart": HOSTILE}, [tx("m")]),
        *links,
    ]
    head = [
        el("title", {}, [tx("evil")]),
        el("script", {}, [tx(HOSTILE)]),
        el(
            "style",
            {},
            [
                tx(
                    "@import url("
                    + ORIGIN
                    + "/i.css); body { background: url("
                    + ORIGIN
                    + "/bg.png) }"
                )
            ],
        ),
    ]
    snap = page_doc(
        body,
        head_children=head,
        body_attrs={"onload": HOSTILE, "onpageshow": HOSTILE, "background": js_urls[6]},
    )
    snap["root"]["a"] = {"manifest": ORIGIN + "/app.manifest", "onclick": HOSTILE}
    return snap


def hostile_mutation(body_id: int = 3) -> dict:
    return {
        "adds": [
            {
                "p": body_id,
                "b": None,
                "n": {"id": 20000, "tag": "script", "a": {}, "c": [{"id": 20001, "x": HOSTILE}]},
            },
            {
                "p": body_id,
                "b": None,
                "n": {"id": 20002, "tag": "img", "a": {"src": "x", "onerror": HOSTILE}},
            },
            {"p": body_id, "b": None, "n": {"id": 20003, "tag": "a", "a": {"href": "ok"}, "c": []}},
            {"p": body_id, "b": None, "n": {"id": 20004, "tag": "meta", "a": {"name": "x"}}},
            {
                "p": body_id,
                "b": None,
                "n": {
                    "id": 20005,
                    "tag": "svg",
                    "ns": "svg",
                    "a": {},
                    "c": [
                        {
                            "id": 20006,
                            "tag": "animate",
                            "ns": "svg",
                            "a": {"attributeName": "fill", "to": "red"},
                        }
                    ],
                },
            },
        ],
        "attr": [
            {"id": 20002, "a": {"onload": HOSTILE, "src": "javascript:" + HOSTILE}},
            {"id": 20003, "a": {"href": " javascript:" + HOSTILE, "onclick": HOSTILE}},
            {"id": 20004, "a": {"http-equiv": "refresh", "content": "0;url=javascript:" + HOSTILE}},
            {"id": 20006, "a": {"attributeName": "href"}},
            {"id": 3, "a": {"onload": HOSTILE, "ONCLICK": HOSTILE}},
            {"id": 20000, "a": {"src": ORIGIN + "/late.js"}},
        ],
    }


CHECK_INERT_JS = """
(frameId) => {
  const d = document.getElementById(frameId).contentDocument;
  const bad = [];
  const all = [d.documentElement, ...d.querySelectorAll('*')];
  for (const e of all) {
    if (['script', 'iframe', 'frame', 'object', 'embed', 'portal', 'base', 'noscript'].includes(e.localName)) bad.push('element ' + e.localName);
    if (e.localName === 'meta' && e.hasAttribute('http-equiv')) bad.push('meta http-equiv');
    for (const a of e.attributes) {
      const k = a.value.replace(/[\\u0000-\\u0020]/g, '').toLowerCase();
      if (a.name.toLowerCase().startsWith('on')) bad.push('handler ' + a.name + ' on ' + e.localName);
      if (['srcdoc', 'formaction'].includes(a.name.toLowerCase())) bad.push(a.name);
      if (/javascript:|vbscript:|data:text\\/html/.test(k)) bad.push('script url in ' + e.localName + ' ' + a.name);
      if (a.value.includes('//origin.test') && !a.name.startsWith('data-cb-')) bad.push('origin URL in ' + e.localName + ' ' + a.name + '=' + a.value);
    }
  }
  const blocked = Array.from(d.querySelectorAll('cb-blocked'), (b) => b.dataset.tag + ':' + getComputedStyle(b).display);
  const form = d.querySelector('form');
  return {bad, blocked, formAction: form && form.getAttribute('action'), pwned: window.__pwned || 0,
    links: Array.from(d.querySelectorAll('a.jslink'), (a) => [a.getAttribute('href'), a.getAttribute('data-cb-href')])};
}
"""


@pytest.mark.parametrize("frame_id", ["f", "g"], ids=["sandboxed", "not-sandboxed"])
def test_g4_nothing_from_the_visitor_runs_or_loads(context, pages_server, bundle, frame_id):
    v = open_viewer(context, pages_server, bundle, page_name="viewer_pwned.html", frame_id=frame_id)
    v.snapshot(hostile_doc())
    v.apply("mutation", hostile_mutation())
    v.apply(
        "css",
        {
            "op": "replace",
            "sheet": 9,
            "css": "@import url(" + ORIGIN + "/x.css); a { background: url(" + ORIGIN + "/y.png) }",
        },
    )
    v.apply("css", {"op": "adopt", "host": 0, "sheets": [9]})
    v.settle()
    # Give handlers, meta refresh, SVG animations and any loads a moment to fire. (Clicks
    # are cancelable, as a user's are: the viewer cancels them, links keep an inert href.)
    v.js(
        "() => { const d = D(); for (const e of d.querySelectorAll('*')) { try { e.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true})); e.dispatchEvent(new Event('load')); } catch (x) {} } }"
    )
    v.page.wait_for_timeout(300)
    r = v.js(CHECK_INERT_JS, frame_id)
    assert r["bad"] == [], r["bad"]
    assert r["pwned"] == 0
    assert r["formAction"] is None
    # "&#x09;" is no entity in a DOM value: that one is a relative URL, kept inert.
    assert (
        r["links"]
        == [[None, None]] * 5 + [["jav&#x09;ascript:" + HOSTILE, None]] + [[None, None]] * 3
    )
    assert (
        "iframe:inline-block" in r["blocked"]
        and "script:none" in r["blocked"]
        and "meta:none" in r["blocked"]
    )
    assert "base:none" in r["blocked"] and "noscript:none" in r["blocked"]
    assert v.js("() => window.__pwned") is None
    assert v.origin_requests() == []
    # The top window still is the test page (no meta refresh, no base, no navigation).
    assert v.page.url.endswith("/pages/viewer_pwned.html")
    assert v.stats()["errors"] == 0


def test_g4_normalized_view_matches_a_clean_copy(context, pages_server, bundle):
    """The normaliser treats the hostile page and the viewer's rebuild as the same page."""
    v = open_viewer(context, pages_server, bundle)
    snap = hostile_doc()
    v.snapshot(snap)
    tree = normalized(v.page, "D()")
    text = json.dumps(tree)
    assert "javascript" not in text.lower() and "onload" not in text
    assert ["blocked", "script"] in tree[1][1][3][0][3]  # html > head > script


def test_dom_compare_normalizer_rules(context, pages_server):
    page = context.new_page()
    page.set_content(
        """<!DOCTYPE html><html><body>
        <div id=a class="x cb-hover" style="background: url(a.png)"><a href="/x" onclick="f()">t</a>a<!--c-->b</div>
        <div id=b class="x" style="background: url('https://proxy/s?u=1')"><a data-cb-href="/y">t</a>ab<!--c-->b</div>
        <input type=password value=secret id=p><script>var s = 1;</script><cb-blocked data-tag=script></cb-blocked>
        </body></html>"""
    )
    a = page.evaluate(f"() => ({NORMALIZE_JS})(document.getElementById('a'))")
    b = page.evaluate(f"() => ({NORMALIZE_JS})(document.getElementById('b'))")
    assert a[2] == {
        "class": "x",
        "id": "a",
        "style": "background: url() center center repeat;",
    } or a[2]["style"].startswith("background: url()")
    a[2]["id"] = b[2]["id"] = ""
    assert a[3][0] == b[3][0] == ["el", "a", {"href": "<url>"}, [["#text", "t"]], {}]
    assert a[3][1] == ["#text", "a"] and b[3][1] == ["#text", "ab"]
    p = page.evaluate(f"() => ({NORMALIZE_JS})(document.getElementById('p'))")
    assert p[2]["value"] == "*" * 8 and p[4]["value"] == "*" * 8
    body = page.evaluate(f"() => ({NORMALIZE_JS})(document.body, {{collapseWhitespace: true}})")
    assert [c for c in body[3] if c[0] == "blocked"] == [
        ["blocked", "script"],
        ["blocked", "script"],
    ]


# ---- the /embed page, with a fake router, proxy and gateway (Playwright routes) ----

ROUTER = "http://router.test"
PROXY = "http://proxy.test"
GATEWAY = "ws://gw.test/"
APP = "http://app.test"


class FakeCluster:
    """Router, proxy and one gateway, answered by Playwright routes in one browser context.
    After its welcome the gateway tells the agent the visitor's `presence` (None: nothing,
    as when the visitor is not connected) and sends the `snapshot` (None: no events)."""

    def __init__(
        self, ctx, snapshot: dict | None, token: str = "tok-1", presence: str | None = "live"
    ) -> None:
        import msgpack

        from router.api.browser_routes import embed_csp

        self.msgpack = msgpack
        self.token = token
        self.snapshot = snapshot
        self.presence = presence
        self.calls: list[tuple[str, str, dict]] = []
        self.agent_events: list = []
        self.socket = None
        self.csp = embed_csp(SimpleNamespace(proxy_url=PROXY, embed_frame_ancestors="*"))
        ctx.route(ROUTER + "/**", self._router)
        ctx.route(PROXY + "/**", self._proxy)
        ctx.route(APP + "/**", self._app)
        ctx.route(ORIGIN + "/**", lambda route: route.abort())
        ctx.route_web_socket(GATEWAY + "**", self._gateway)

    def _json(self, route, body, status=200):
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    def _record(self, route) -> dict:
        req = route.request
        body = json.loads(req.post_data or "{}")
        self.calls.append((req.url, req.headers.get("authorization", ""), body))
        return body

    def _router(self, route) -> None:
        url = route.request.url
        if url.startswith(ROUTER + "/embed.js"):
            route.fulfill(
                status=200,
                content_type="text/javascript",
                body=browser_assets.bundle("embed.js").body,
            )
        elif url.startswith(ROUTER + "/embed"):
            route.fulfill(
                status=200,
                content_type="text/html",
                headers={"Content-Security-Policy": self.csp},
                body=browser_assets.page("embed.html").body,
            )
        elif url == ROUTER + "/v1/sessions/lookup":
            body = self._record(route)
            if (
                route.request.headers.get("authorization") != "Bearer ak_1"
                or body.get("code") != "123456"
            ):
                return self._json(
                    route, {"error": {"code": "unknown_code", "message": "unknown code"}}, 404
                )
            self._json(
                route, {"session_id": "s1", "agent_token": self.token, "gateways": [GATEWAY]}
            )
        elif url == ROUTER + "/v1/sessions/s1/connect":
            self._record(route)
            if route.request.headers.get("authorization") != "Bearer " + self.token:
                return self._json(
                    route, {"error": {"code": "bad_token", "message": "bad token"}}, 401
                )
            self._json(route, {"gateways": [GATEWAY], "proxy": PROXY})
        else:
            route.fulfill(status=404)

    def _proxy(self, route) -> None:
        url = route.request.url
        if route.request.method == "POST":
            body = self._record(route)
            if url == PROXY + "/v1/sign":
                return self._json(
                    route,
                    {
                        "urls": [
                            f"{PROXY}/v1/{body['kind']}?u={quote(u, safe='')}" for u in body["urls"]
                        ]
                    },
                )
            if url == PROXY + "/v1/rewrite":
                return self._json(
                    route, {"css": body["css"].replace(":hover", ".cb-hover"), "notes": []}
                )
        if "/v1/stylesheet" in url:
            return route.fulfill(
                status=200, content_type="text/css", body="h1 { color: rgb(0, 0, 200); }"
            )
        route.fulfill(status=404)

    def _app(self, route) -> None:
        # The agent's product, embedding the viewer and listening to its messages.
        html = (
            "<!DOCTYPE html><html><body><script>window.msgs = []; addEventListener('message', (e) => msgs.push(e.data));</script>"
            f"<iframe id=embed style='width:1000px;height:700px' src='{ROUTER}/embed#{route.request.url.split('?', 1)[1]}'></iframe></body></html>"
        )
        route.fulfill(status=200, content_type="text/html", body=html)

    def _gateway(self, ws) -> None:
        self.socket = ws
        ws.on_message(lambda m: self._frame(ws, m))

    def send(self, ws, frame: dict) -> None:
        ws.send(self.msgpack.packb(frame, use_bin_type=True))

    def _frame(self, ws, message) -> None:
        f = self.msgpack.unpackb(
            message if isinstance(message, bytes) else message.encode(), raw=False
        )
        if f.get("t") == "hello":
            assert f["role"] == "agent" and f["sid"] == "s1" and f["token"] == self.token
            self.send(
                ws,
                {
                    "t": "welcome",
                    "v": 1,
                    "sid": "s1",
                    "aid": "a1",
                    "epoch": 1,
                    "durable": 0,
                    "rt": "rt1",
                    "gw": "gw-1",
                    "delivered": None,
                },
            )
            if self.presence:
                self.control(self.presence)
            if self.snapshot is None:
                return
            data = json.dumps(self.snapshot).encode()
            half = len(data) // 2
            parts = [{"i": 0, "n": 2, "d": data[:half]}, {"i": 1, "n": 2, "d": data[half:]}]
            self.send(
                ws,
                {"t": "ev", "e": 1, "ev": [[1 + i, "snapshot", 0, p] for i, p in enumerate(parts)]},
            )
        elif f.get("t") == "ev":
            self.agent_events += [[e[1], e[3]] for e in f["ev"]]
            self.send(ws, {"t": "ack", "seq": f["ev"][-1][0]})

    def control(self, msg: str) -> None:
        """The gateway's presence message to agents (docs/protocol.md `visitor`)."""
        self.send(self.socket, {"t": "ctl", "op": "visitor", "msg": msg})

    def visitor_events(self, first_seq: int, events: list) -> None:
        self.send(
            self.socket,
            {
                "t": "ev",
                "e": 1,
                "ev": [[first_seq + i, k, 0, p] for i, (k, p) in enumerate(events)],
            },
        )


def poll(frame, expr: str, timeout: float = 10.0):
    """evaluate until truthy: the embed page's CSP forbids the eval that wait_for_function uses."""
    deadline = time.monotonic() + timeout
    while True:
        value = frame.evaluate(expr)
        if value:
            return value
        if time.monotonic() > deadline:
            state = frame.evaluate(
                "window.CobrowseViewer && CobrowseViewer.current && JSON.stringify({state: CobrowseViewer.current.state, error: CobrowseViewer.current.error, stats: CobrowseViewer.current.replayer && CobrowseViewer.current.replayer.stats()})"
            )
            raise AssertionError(f"timed out waiting for {expr}; viewer: {state}")
        time.sleep(0.03)


EMBED_DOC = "document.getElementById('cb-frame').contentDocument"


def test_embed_page_connects_signs_and_replays(context, pages_server):
    snap = page_doc(
        [
            {"id": 4, "tag": "h1", "a": {}, "c": [{"id": 5, "x": "Hello"}]},
            {"id": 6, "tag": "img", "a": {"src": "a.png"}},
        ],
        head_children=[
            {"id": 7, "tag": "link", "a": {"rel": "stylesheet", "href": "/s.css"}},
            {"id": 8, "tag": "style", "a": {}, "c": [{"id": 9, "x": "a:hover { color: red }"}]},
        ],
        title="Cart",
    )
    fake = FakeCluster(context, snap)
    page = context.new_page()
    page.goto(APP + "/host?sid=s1&token=" + fake.token)  # becomes the embed's fragment
    embed = next(f for f in page.frames if f.url.startswith(ROUTER + "/embed"))
    poll(
        embed,
        f"CobrowseViewer.current && CobrowseViewer.current.state === 'live' && {EMBED_DOC}.body && {EMBED_DOC}.body.textContent === 'Hello'",
    )
    # The stylesheet came through the proxy, signed with the agent token.
    poll(embed, f"getComputedStyle({EMBED_DOC}.querySelector('h1')).color === 'rgb(0, 0, 200)'")
    assert embed.evaluate(
        f"{EMBED_DOC}.querySelector('img').getAttribute('src')"
    ) == PROXY + "/v1/asset?u=" + quote(ORIGIN + "/a.png", safe="")
    assert (
        embed.evaluate(f"{EMBED_DOC}.querySelector('style').textContent")
        == "a.cb-hover { color: red }"
    )
    urls = {(u, auth) for u, auth, _ in fake.calls}
    assert (ROUTER + "/v1/sessions/s1/connect", "Bearer tok-1") in urls
    assert (PROXY + "/v1/sign", "Bearer tok-1") in urls and (
        PROXY + "/v1/rewrite",
        "Bearer tok-1",
    ) in urls
    rewrite = next(b for u, _, b in fake.calls if u.endswith("/v1/rewrite"))
    assert rewrite == {"css": "a:hover { color: red }", "base_url": ORIGIN + "/"}
    assert embed.evaluate("document.getElementById('cb-status').textContent") == "Live"
    assert embed.evaluate("document.getElementById('cb-title').textContent") == "Cart"
    # Later visitor events.
    fake.visitor_events(
        3, [("mutation", {"text": [{"id": 5, "x": "Changed"}]}), ("pointer", {"x": 10, "y": 10})]
    )
    poll(embed, f"{EMBED_DOC}.body.textContent === 'Changed'")
    # The agent's pointer and highlight go out on the wire.
    box = page.locator("#embed").bounding_box()
    page.mouse.move(box["x"] + 50, box["y"] + 80)
    embed.evaluate("document.getElementById('cb-highlight').click()")
    # The replica's layout settles a frame after the snapshot (scroll, scale): aim again if
    # a click landed before it did, on a loaded machine.
    for _attempt in range(3):
        h1 = embed.evaluate(
            f"(() => {{ const r = {EMBED_DOC}.querySelector('h1').getBoundingClientRect(); const s = CobrowseViewer.current.replayer.scale(); const f = document.getElementById('cb-frame').getBoundingClientRect(); return [f.left + (r.left + 5) * s, f.top + (r.top + 5) * s]; }})()"
        )
        page.mouse.click(box["x"] + h1[0], box["y"] + h1[1])
        deadline = time.monotonic() + 4
        while (
            not any(k == "highlight" for k, _ in fake.agent_events) and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        if any(k == "highlight" for k, _ in fake.agent_events):
            break
    assert ["highlight", {"id": 4, "on": True}] in fake.agent_events
    assert any(k == "pointer" for k, _ in fake.agent_events)
    msgs = poll(page, "() => msgs.some((m) => m.event === 'live') && msgs")
    assert all(m["type"] == "cobrowse" for m in msgs)
    assert not any(fake.token in json.dumps(m) for m in msgs)  # no secrets to the host page
    # The session ends: the gateway closes with 4004.
    fake.socket.close(code=4004, reason="ended")
    poll(embed, "document.getElementById('cb-status').textContent === 'Session ended'")
    poll(page, "() => msgs.some((m) => m.event === 'ended')")


def test_embed_page_by_code_and_key(context, pages_server):
    fake = FakeCluster(context, page_doc([{"id": 4, "x": "by code"}]))
    page = context.new_page()
    page.goto(ROUTER + "/embed#code=123456&key=ak_1")
    poll(
        page,
        f"CobrowseViewer.current && CobrowseViewer.current.state === 'live' && {EMBED_DOC}.body && {EMBED_DOC}.body.textContent === 'by code'",
    )
    lookup = next(c for c in fake.calls if c[0].endswith("/lookup"))
    assert lookup[1:] == ("Bearer ak_1", {"code": "123456"})


def test_embed_page_reports_bad_links(context, pages_server):
    FakeCluster(context, page_doc([]))
    page = context.new_page()
    page.goto(ROUTER + "/embed#code=999999&key=ak_1")
    poll(page, "document.getElementById('cb-status').dataset.state === 'error'")
    assert "unknown code" in page.evaluate("document.getElementById('cb-status').textContent")
    # and in the frame area, in words, rather than an empty white box
    assert page.evaluate("document.getElementById('cb-message').textContent").startswith(
        "No session has this code."
    )
    page.goto("about:blank")
    page.goto(ROUTER + "/embed#nothing=1")
    poll(page, "document.getElementById('cb-status').dataset.state === 'error'")
    assert page.evaluate("CobrowseViewer.current.error.code") == "bad_link"


def test_open_shadow_roots_and_their_sheets(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    host = {
        "id": 4,
        "tag": "fancy-tabs",
        "a": {"background": ""},
        "c": [{"id": 5, "tag": "span", "a": {"slot": "t"}, "c": [{"id": 6, "x": "light"}]}],
        "sh": {
            "c": [
                {
                    "id": 7,
                    "tag": "style",
                    "a": {},
                    "c": [
                        {
                            "id": 8,
                            "x": "b { color: rgb(1, 2, 3); } b:hover { color: rgb(4, 5, 6); }",
                        }
                    ],
                },
                {"id": 9, "tag": "b", "a": {}, "c": [{"id": 10, "x": "shadow"}]},
                {"id": 11, "tag": "slot", "a": {"name": "t"}, "c": []},
                {"id": 12, "tag": "i", "a": {}, "c": []},
            ],
            "adopted": [3],
        },
    }
    v.snapshot(page_doc([host], sheets=[{"sid": 3, "css": "i { color: rgb(7, 8, 9); }"}]))
    color = "(id) => getComputedStyle(byId(id)).color"
    assert v.js(
        "() => [byId(4).shadowRoot.mode, byId(9).getRootNode() === byId(4).shadowRoot, byId(4).getAttribute('background')]"
    ) == ["open", True, ""]
    assert v.js(color, 9) == "rgb(1, 2, 3)" and v.js(color, 12) == "rgb(7, 8, 9)"
    v.apply(
        "hover", {"id": 10}
    )  # a text node inside the shadow root: its element and up, across the host
    v.settle()
    assert v.js(
        "() => Array.from([byId(9), byId(4), D().body], (e) => e.classList.contains('cb-hover'))"
    ) == [True, True, True]
    assert v.js(color, 9) == "rgb(4, 5, 6)"
    v.apply("mutation", {"adds": [{"p": 12, "b": None, "n": {"id": 13, "x": "added in shadow"}}]})
    assert v.js("() => byId(12).textContent") == "added in shadow"
    v.apply("css", {"op": "replace", "sheet": 3, "css": "i { color: rgb(9, 9, 9); }"})
    v.settle()
    assert v.js(color, 12) == "rgb(9, 9, 9)"
    v.apply("nav", {"url": ORIGIN + "/next", "title": "Next"})
    assert v.js("() => R.info()") == {"url": ORIGIN + "/next", "title": "Next"}
    v.snapshot(doc(None))  # a document without a root element
    assert v.js("() => [D().documentElement, R.nodeById(4)]") == [None, None]
    assert v.stats()["errors"] == 0


def test_signing_is_batched_under_the_proxy_limits(context, pages_server, bundle):
    v = open_viewer(context, pages_server, bundle)
    imgs = [
        {"id": 10 + i, "tag": "img", "a": {"src": f"/i/{i}.png", "loading": "lazy"}}
        for i in range(450)
    ]
    v.snapshot(page_doc(imgs))
    assert [len(urls) for _, urls in v.js("() => signCalls")] == [200, 200, 50]
    assert v.js("() => byId(459).getAttribute('src')").startswith(
        pages_server.url + "/signed/asset?u="
    )


def test_a_failed_linked_sheet_is_asked_for_and_its_text_adopted(context, pages_server, bundle):
    """The CSS fallback's viewer side: a <link> whose proxied sheet fails asks the visitor
    once (`control` css-need); the `link` parts are checked (order, count, type), rewritten
    with the sheet's URL as base, adopted without a DOM change, and dropped with the link."""
    v = open_viewer(context, pages_server, bundle)
    head = [{"id": 10, "tag": "link", "a": {"rel": "stylesheet", "href": "/locked.css"}}]
    body = [{"id": 4, "tag": "p", "a": {}, "c": [{"id": 5, "x": "p"}]}]
    v.snapshot(page_doc(body, head_children=head))
    ask = ["control", {"op": "css-need", "node": 10}]
    for _ in range(50):  # the signed URL answers 404: the link fires error
        if v.js("() => agentEvents").count(ask):
            break
        v.settle()
    color = "() => getComputedStyle(byId(4)).color"
    sheet = ORIGIN + "/locked.css"
    part = {"op": "link", "node": 10, "base": sheet}
    bad = [
        {**part, "i": 1, "n": 2, "css": "p {"},  # no part 0 first
        {**part, "i": 0, "n": 10**6, "css": "p {"},  # more parts than the bound allows
        {**part, "i": 0, "n": 1, "css": 42},  # not text
        {**part, "i": 0, "n": 1, "css": "p{}", "base": "javascript:alert(1)"},
        {**part, "node": 999, "i": 0, "n": 1, "css": "p{}"},  # no such node
    ]
    for p in bad:
        v.apply("css", p)
    v.apply("css", {**part, "i": 0, "n": 1, "css": None})  # the visitor could not read it
    v.settle()
    assert v.stats()["skipped"] == len(bad) and v.stats()["cssUnavailable"] == 1
    assert v.js(color) == "rgb(0, 0, 0)"
    v.apply("css", {**part, "i": 0, "n": 2, "css": "p { color: rgb(1, 2, 3); } p:ho"})
    v.apply("css", {**part, "i": 1, "n": 2, "css": "ver { background: url(bg.png); }"})
    v.settle()
    assert v.js(color) == "rgb(1, 2, 3)"
    assert ["p { color: rgb(1, 2, 3); } p:hover { background: url(bg.png); }", sheet] in v.js(
        "() => rewriteCalls"
    )
    assert v.js("() => D().head.childElementCount") == 1  # no element added
    assert v.js("() => agentEvents").count(ask) == 1
    assert v.stats()["cssFallback"] == 1 and v.stats()["errors"] == 0
    v.apply("mutation", {"rem": [10]})
    v.settle()
    assert v.js(color) == "rgb(0, 0, 0)"


# ---- the agent's view of the visitor's viewport (viewer/geometry.js, view.js, the toolbar) ----
# The pure geometry on a table; then the embed page in an 800x600 agent window fed a 1280x800
# visitor: fit shows the whole visitor's viewport frame, the agent's pointer lands on the
# element under it, 100 % draws text at its size and the stage scrolls, following the
# visitor's scroll can be turned off and on, and the toolbar is labelled, keyboard-driven,
# visibly focused and readable. The same through a real cluster: test_browser_e2e.py.

# (name, input, expected): viewGeometry({stage, viewport, fit, visitorScroll, replicaScroll})
# -> scale, frame [x, y, w, h] in overlay px, offset [dx, dy] in replica px, where.
GEOMETRY = [
    (
        "fit, following: the frame is the whole scaled replica",
        [[800, 560], [1280, 800], True, [0, 400], [0, 400]],
        [0.625, [0, 0, 800, 500], [0, 0], "here"],
    ),
    (
        "fit is bounded by the height when that is the tighter side",
        [[800, 400], [1280, 800], True, [0, 0], [0, 0]],
        [0.5, [0, 0, 640, 400], [0, 0], "here"],
    ),
    (
        "100 %: unscaled, whatever the stage",
        [[800, 560], [1280, 800], False, [0, 0], [0, 0]],
        [1, [0, 0, 1280, 800], [0, 0], "here"],
    ),
    (
        "not following: the visitor is 300 px further down",
        [[800, 560], [1280, 800], True, [0, 700], [0, 400]],
        [0.625, [0, 187.5, 800, 500], [0, 300], "here"],
    ),
    (
        "the visitor's viewport wholly below the agent's",
        [[800, 560], [1280, 800], True, [0, 1200], [0, 400]],
        [0.625, [0, 500, 800, 500], [0, 800], "below"],
    ),
    (
        "wholly above",
        [[800, 560], [1280, 800], False, [0, 0], [0, 900]],
        [1, [0, -900, 1280, 800], [0, -900], "above"],
    ),
    (
        "to the right (horizontal scroll)",
        [[800, 560], [1280, 800], False, [1300, 0], [0, 0]],
        [1, [1300, 0, 1280, 800], [1300, 0], "right"],
    ),
    (
        "an unknown stage size: 1, never 0 or infinite",
        [[0, 0], [1280, 800], True, [0, 0], [0, 0]],
        [1, [0, 0, 1280, 800], [0, 0], "here"],
    ),
]

GEOMETRY_JS = """
(rows) => rows.map(([stage, viewport, fit, visitorScroll, replicaScroll]) => {
  const g = CobrowseViewer.viewGeometry({stage, viewport, fit, visitorScroll, replicaScroll});
  return [g.scale, [g.frame.x, g.frame.y, g.frame.w, g.frame.h], g.offset, g.where];
})
"""


# A 1280x800 visitor on a page 3000 px tall: a 13 px select and a button to point at.
VISITOR_VIEWPORT = [1280, 800]
SNAPSHOT = page_doc(
    [
        {
            "id": 4,
            "tag": "select",
            "a": {
                "id": "size",
                "style": "position: absolute; left: 40px; top: 60px; font: 13px sans-serif",
            },
            "c": [{"id": 5, "tag": "option", "a": {}, "c": [{"id": 6, "x": "Size S"}]}],
        },
        {
            "id": 7,
            "tag": "button",
            "a": {
                "id": "buy",
                "style": "position: absolute; left: 1000px; top: 600px; width: 160px; height: 60px",
            },
            "c": [{"id": 8, "x": "Buy"}],
        },
        {"id": 9, "tag": "div", "a": {"style": "height: 3000px"}, "c": []},
    ],
    title="Checkout",
    url="https://shop.example/cart?step=2",
    vw=VISITOR_VIEWPORT,
)

FRAME = "document.getElementById('cb-frame')"
STAGE = "document.getElementById('cb-stage')"
VP = "document.querySelector('.cb-viewport-frame')"
LABEL = "document.querySelector('.cb-viewport-label')"
RP = "CobrowseViewer.current.replayer"
DOT = "Array.from(document.querySelectorAll('#cb-stage div')).find((e) => e.style.borderRadius === '50%')"


def open_embed(context):
    """The embed page alone in an 800x600 agent window, live with the snapshot applied."""
    fake = FakeCluster(context, SNAPSHOT)
    page = context.new_page()
    page.set_viewport_size({"width": 800, "height": 600})
    page.goto(f"{ROUTER}/embed#sid=s1&token={fake.token}")
    poll(
        page,
        f"CobrowseViewer.current && CobrowseViewer.current.view === 'live' && !!{EMBED_DOC}.getElementById('buy')",
    )
    # the first layout pass (scroll, frame) runs a frame after the snapshot
    poll(
        page,
        f"{RP}.scale() < 1 && {EMBED_DOC}.getElementById('buy').getBoundingClientRect().width === 160",
    )
    return fake, page


def rect(page, expr: str) -> dict:
    return page.evaluate(
        f"(() => {{ const r = {expr}.getBoundingClientRect(); return {{l: r.left, t: r.top, r: r.right, b: r.bottom, w: r.width, h: r.height}}; }})()"
    )


def element_on_screen(page, el_id: str) -> dict:
    """Where a replica element is drawn in the agent's window (iframe origin + rect * scale)."""
    return page.evaluate(
        f"""(() => {{ const f = {FRAME}.getBoundingClientRect(), s = {RP}.scale();
          const r = {EMBED_DOC}.getElementById({el_id!r}).getBoundingClientRect();
          return {{l: f.left + r.left * s, t: f.top + r.top * s, w: r.width * s, h: r.height * s, rw: r.width, rh: r.height}}; }})()"""
    )


def last_pointer(fake) -> dict:
    return [p for k, p in fake.agent_events if k == "pointer"][-1]


def point_at(page, fake, el_id: str) -> dict:
    """Move the agent's mouse to the middle of `el_id` as drawn; the pointer event it sends."""
    at = element_on_screen(page, el_id)
    x, y = at["l"] + at["w"] / 2, at["t"] + at["h"] / 2
    n = len(fake.agent_events)
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y)
    poll(page, "new Promise((r) => setTimeout(() => r(true), 120))")  # past the 50 ms throttle
    for _ in range(100):
        if len(fake.agent_events) > n and last_pointer(fake) is not None:
            break
        page.wait_for_timeout(20)
    return last_pointer(fake)


def contrast(fg: list[float], bg: list[float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (0-255)."""

    def lum(c):
        ch = [v / 255 for v in c[:3]]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    a, b = sorted([lum(fg), lum(bg)], reverse=True)
    return (a + 0.05) / (b + 0.05)


TOOLBAR_COLOURS = """(() => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const bgOf = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.length < 4 || c[3] > 0) return c; } return [255, 255, 255]; };
  return Array.from(document.querySelectorAll('#cb-bar *')).filter((el) => !el.disabled && Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.data.trim()))
    .map((el) => [el.id || el.localName, rgb(getComputedStyle(el).color), bgOf(el)]);
})()"""


def test_fit_at_800x600_shows_the_whole_visitor_viewport_and_a_readable_keyboard_toolbar(context):
    fake, page = open_embed(context)
    # The pure geometry first (viewer/geometry.js), on its table.
    got = page.evaluate(GEOMETRY_JS, [row[1] for row in GEOMETRY])
    for (name, _, want), row in zip(GEOMETRY, got, strict=True):
        assert row == want, name
    # Fit: the whole 1280x800 viewport frame inside the 800x600 window, under the toolbar.
    scale = page.evaluate(f"{RP}.scale()")
    stage, vp, bar = (
        rect(page, STAGE),
        rect(page, VP),
        rect(page, "document.getElementById('cb-bar')"),
    )
    assert scale == pytest.approx(min(800 / 1280, stage["h"] / 800))
    assert vp["w"] == pytest.approx(1280 * scale) and vp["h"] == pytest.approx(800 * scale)
    assert stage["l"] - 0.5 <= vp["l"] and vp["r"] <= min(stage["r"], 800) + 0.5
    assert bar["b"] - 0.5 <= vp["t"] and vp["b"] <= min(stage["b"], 600) + 0.5
    assert (
        page.evaluate(f"getComputedStyle({LABEL}).display") == "none"
    )  # the agent sees the visitor's view
    # The agent's pointer on the drawn button is on the button in the visitor's page.
    p = point_at(page, fake, "buy")
    assert 1000 <= p["x"] <= 1160 and 600 <= p["y"] <= 660, p
    page.keyboard.down("Alt")
    at = element_on_screen(page, "buy")
    page.mouse.click(at["l"] + 10, at["t"] + 10)
    page.keyboard.up("Alt")
    poll(page, "new Promise((r) => setTimeout(() => r(true), 100))")
    assert ["highlight", {"id": 7, "on": True}] in fake.agent_events
    # Which page the visitor is on: title, and the address under it; the scale in words.
    assert page.evaluate("document.getElementById('cb-title').textContent") == "Checkout"
    assert (
        page.evaluate("document.getElementById('cb-url').textContent") == "shop.example/cart?step=2"
    )
    assert (
        page.evaluate("document.getElementById('cb-zoom').textContent")
        == f"{int(scale * 100 + 0.5)} %"
    )  # Math.round
    # A single-page app's navigation (a nav without a snapshot) updates them.
    fake.visitor_events(3, [("nav", {"url": "https://shop.example/pay", "title": "Payment"})])
    poll(page, "document.getElementById('cb-title').textContent === 'Payment'")
    assert page.evaluate("document.getElementById('cb-url').textContent") == "shop.example/pay"
    # Keyboard: Tab goes Fit, Follow, Highlight, Draw, Request control, then the page;
    # toggles say aria-pressed; the focused control has a visible outline.
    page.focus("#cb-fit")
    page.keyboard.press("Shift+Tab")  # before the first control (the status is not one)
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "(() => { const e = document.activeElement, cs = getComputedStyle(e); return [e.id || e.className, e.getAttribute('aria-pressed'), e.getAttribute('aria-label') || e.textContent, cs.outlineStyle, cs.outlineWidth]; })()"
            )
        )
    assert [o[:3] for o in order[:5]] == [
        ["cb-fit", "true", "Fit to window"],
        ["cb-follow", "true", "Follow scroll"],
        ["cb-highlight", "false", "Highlight"],
        ["cb-draw", "false", "Draw"],
        ["cb-control", None, "Request control"],
    ]
    assert order[5][0] == "cb-glass" and order[5][2].startswith("The visitor's page")
    assert all(o[3] == "solid" and o[4] == "3px" for o in order), order
    # Contrast: every text in the toolbar at least 4.5:1 against what is behind it,
    # with a toggle pressed too.
    for _ in range(3):  # back to Highlight
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # Highlight on, from the keyboard
    assert (
        page.evaluate("document.getElementById('cb-highlight').getAttribute('aria-pressed')")
        == "true"
    )
    colours = page.evaluate(TOOLBAR_COLOURS)
    assert {c[0] for c in colours} >= {
        "cb-status",
        "cb-title",
        "cb-url",
        "cb-zoom",
        "cb-fit",
        "cb-follow",
        "cb-highlight",
    }
    low = [(name, round(contrast(fg, bg), 2)) for name, fg, bg in colours if contrast(fg, bg) < 4.5]
    assert not low, low


def scroll_y(page) -> float:
    return page.evaluate(f"{EMBED_DOC}.defaultView.scrollY")


def test_100_percent_and_follow_on_and_off(context):
    fake, page = open_embed(context)
    fit_scale = page.evaluate(f"{RP}.scale()")
    # 100 %, from the keyboard: unscaled, 13 px text drawn 13 px, and the stage scrolls.
    page.focus("#cb-fit")
    page.keyboard.press("Space")
    poll(page, f"{RP}.scale() === 1")
    assert (
        page.evaluate("document.getElementById('cb-fit').getAttribute('aria-pressed')") == "false"
    )
    assert page.evaluate("document.getElementById('cb-zoom').textContent") == "100 %"
    sel = element_on_screen(page, "size")
    assert sel["h"] == sel["rh"] and sel["h"] > 13 * fit_scale + 2  # drawn at its size, not at 0.63
    assert page.evaluate(f"getComputedStyle({EMBED_DOC}.getElementById('size')).fontSize") == "13px"
    assert page.evaluate(
        f"{STAGE}.scrollWidth > {STAGE}.clientWidth && {STAGE}.scrollHeight > {STAGE}.clientHeight"
    )
    # Scrolled to the button, the agent's pointer still lands on it.
    page.evaluate(f"{STAGE}.scrollTo(600, 300)")
    p = point_at(page, fake, "buy")
    assert 1000 <= p["x"] <= 1160 and 600 <= p["y"] <= 660, p
    page.click("#cb-fit")  # back to fit
    poll(page, f"{RP}.scale() < 1")
    # Following: the visitor scrolls and the replica goes along; the frame stays the view.
    fake.visitor_events(3, [("scroll", {"id": 0, "x": 0, "y": 400})])
    poll(page, f"{EMBED_DOC}.defaultView.scrollY === 400")
    assert page.evaluate(f"{RP}.view().offset") == [0, 0]
    # Not following: the visitor scrolls back up to 100, the replica stays at 400; the frame
    # is drawn 300 px higher, and their pointer on the button (document y 600-660, so 530
    # in their viewport) is drawn on the button in the replica.
    page.click("#cb-follow")
    assert (
        page.evaluate("document.getElementById('cb-follow').getAttribute('aria-pressed')")
        == "false"
    )
    fake.visitor_events(
        4, [("scroll", {"id": 0, "x": 0, "y": 100}), ("pointer", {"x": 1080, "y": 530})]
    )
    poll(page, f"{RP}.view().offset[1] === -300 && {DOT}.style.display === 'block'")
    assert scroll_y(page) == 400
    scale = page.evaluate(f"{RP}.scale()")
    vp, glass = rect(page, VP), rect(page, "document.querySelector('.cb-glass')")
    assert vp["t"] - glass["t"] == pytest.approx(-300 * scale)
    assert page.evaluate(f"[{LABEL}.textContent, getComputedStyle({LABEL}).display]") == [
        "Visitor's view",
        "block",
    ]
    dot, buy = rect(page, DOT), element_on_screen(page, "buy")
    assert buy["l"] <= dot["l"] + dot["w"] / 2 <= buy["l"] + buy["w"]
    assert buy["t"] <= dot["t"] + dot["h"] / 2 <= buy["t"] + buy["h"]
    # The agent points at the button as drawn: the wire carries the visitor's coordinates.
    p = point_at(page, fake, "buy")
    assert 1000 <= p["x"] <= 1160 and 500 <= p["y"] <= 560, p
    # The agent scrolls the replica: the wheel over the page, then keys on the focused page.
    page.mouse.move(400, 300)
    page.mouse.wheel(0, 100)
    poll(page, f"{EMBED_DOC}.defaultView.scrollY > 400")
    y_wheel = scroll_y(page)
    assert y_wheel == pytest.approx(400 + 100 / scale, abs=2)  # as far on screen as the wheel
    page.focus(".cb-glass")
    page.keyboard.press("PageDown")
    poll(page, f"{EMBED_DOC}.defaultView.scrollY > {y_wheel}")
    assert page.evaluate(f"{RP}.view().offset[1]") == pytest.approx(100 - scroll_y(page))
    assert page.evaluate(f"{LABEL}.textContent") == "Visitor's view is above ↑"
    assert scroll_y(page) > 900
    # Following again: back to where the visitor is.
    page.click("#cb-follow")
    poll(page, f"{EMBED_DOC}.defaultView.scrollY === 100")
    assert page.evaluate(f"{RP}.view().offset") == [0, 0]
    assert page.evaluate(f"getComputedStyle({LABEL}).display") == "none"
