"""The visitor's snippet (router/static/visitor/) in real Chromium, through its capture hook.

`Cobrowse._capture(emit)` records with no network and no consent; every event that would go on
the wire lands in `window.__events` as `[kind, payload]` (bytes shown as `{"$bin": length}`).
The session tests (start, consent, continuation across a reload) run the real snippet with a
stub wire client and Playwright routes standing in for the router.
"""

from __future__ import annotations

import json

import pytest

from router import browser_assets

# The fixtures chromium, context and pages_server come from conftest: binding them here too
# would start a second Playwright in the same run.

INJECT = """([src, attrs]) => {
  const s = document.createElement("script");
  for (const [k, v] of Object.entries(attrs)) s.setAttribute(k, v);
  s.textContent = src;
  document.head.appendChild(s);
  return typeof window.Cobrowse;
}"""

CAPTURE = """() => {
  window.__events = [];
  const enc = (v) => JSON.parse(JSON.stringify(v, (k, x) =>
    x instanceof Uint8Array ? {"$bin": x.length, "head": Array.from(x.slice(0, 4))} : x));
  window.__cap = Cobrowse._capture((k, p) => window.__events.push([k, enc(p)]));
}"""

# A tiny viewer-side applier: rebuilds the tree from a snapshot, applies mutations in the
# order the contract gives, and fails loudly when a parent or "before" node is missing.
APPLIER = """() => {
window.__mirror = (snap) => {
  const map = new Map();
  const build = (n, list) => {
    const o = {id: n.id, list};
    if (n.tag !== undefined) { o.tag = n.tag; o.a = Object.assign({}, n.a); o.c = [];
      for (const ch of n.c || []) o.c.push(build(ch, o.c));
      if (n.sh) { o.sh = []; for (const ch of n.sh.c) o.sh.push(build(ch, o.sh)); } }
    else if (n.x !== undefined) o.x = n.x; else o.cm = n.cm;
    map.set(n.id, o);
    return o;
  };
  const root = build(snap.root, null);
  const errors = [];
  const apply = (m) => {
    for (const id of m.rem || []) { const o = map.get(id); if (o && o.list) { const i = o.list.indexOf(o); if (i >= 0) o.list.splice(i, 1); o.list = null; } }
    for (const ad of m.adds || []) {
      const p = map.get(ad.p);
      if (!p || !p.c) { errors.push("no parent " + ad.p); continue; }
      const o = build(ad.n, p.c);
      if (ad.b === null) p.c.push(o);
      else { const b = map.get(ad.b); const i = b ? p.c.indexOf(b) : -1;
        if (i < 0) { errors.push("no before " + ad.b + " in " + ad.p); p.c.push(o); } else p.c.splice(i, 0, o); }
    }
    for (const at of m.attr || []) { const o = map.get(at.id); if (!o) { errors.push("no attr node " + at.id); continue; }
      for (const [k, v] of Object.entries(at.a)) { if (v === null) delete o.a[k]; else o.a[k] = v; } }
    for (const t of m.text || []) { const o = map.get(t.id); if (!o) { errors.push("no text node " + t.id); continue; }
      if (o.cm !== undefined) o.cm = t.x; else o.x = t.x; }
  };
  const canon = (o) => o.tag !== undefined
    ? {id: o.id, tag: o.tag, a: Object.fromEntries(Object.entries(o.a).sort()), c: o.c.map(canon), sh: o.sh ? o.sh.map(canon) : null}
    : (o.x !== undefined ? {id: o.id, x: o.x} : {id: o.id, cm: o.cm});
  const canonSnap = (n) => n.tag !== undefined
    ? {id: n.id, tag: n.tag, a: Object.fromEntries(Object.entries(n.a).sort()), c: (n.c || []).map(canonSnap), sh: n.sh ? n.sh.c.map(canonSnap) : null}
    : (n.x !== undefined ? {id: n.id, x: n.x} : {id: n.id, cm: n.cm});
  return {apply, errors, tree: () => canon(root), same: (snap2) => JSON.stringify(canon(root)) === JSON.stringify(canonSnap(snap2.root))};
};
}"""


def bundle_js() -> str:
    return browser_assets.bundle("cobrowse.js").body.decode()


def open_page(context, pages_server, name, attrs=None, capture=True):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{pages_server.url}/pages/{name}")
    assert page.evaluate(INJECT, [bundle_js(), attrs or {}]) == "object"
    if capture:
        page.evaluate(CAPTURE)
    page.errors = errors
    return page


def drain(page, kind=None):
    # JSON text: far faster through Playwright than a deep object graph
    evs = json.loads(page.evaluate("() => JSON.stringify(window.__events.splice(0))"))
    return [p for k, p in evs if k == kind] if kind else evs


def wait_for(page, kind, timeout=8.0):
    """Events of one kind, once at least one has come (the canvas encodes asynchronously)."""
    page.wait_for_function(
        f"() => window.__events.some(e => e[0] === {json.dumps(kind)})",
        timeout=timeout * 1000,
        polling=50,
    )
    return drain(page, kind)


def mirror_start(page):
    """Capture with the applier: the mirror starts from the first snapshot."""
    page.evaluate(APPLIER)
    page.evaluate(CAPTURE)
    page.evaluate(
        "() => { window.__m = window.__mirror(window.__events.splice(0).find(e => e[0] === 'snapshot')[1]); }"
    )


def mirror_apply(page, keep=False):
    """Apply the pending mutation events in the page; returns the events (when keep) or their kinds."""
    got = page.evaluate(
        """(keep) => { const evs = window.__events.splice(0);
      for (const [k, p] of evs) if (k === "mutation") window.__m.apply(p);
      return keep ? JSON.stringify(evs) : JSON.stringify(evs.map(e => e[0])); }""",
        keep,
    )
    return json.loads(got)


def mirror_check(page):
    """A fresh snapshot of the page against the mirror: (errors, same)."""
    return page.evaluate("""() => { window.__cap.snapshot();
      const s = window.__events.splice(0).filter(e => e[0] === "snapshot").pop()[1];
      return [window.__m.errors, window.__m.same(s)]; }""")


def settle(page, ms=0):
    """Let MutationObserver callbacks and timers run."""
    page.evaluate(f"() => new Promise(r => setTimeout(r, {ms}))")


def walk(node):
    yield node
    for ch in node.get("c", []):
        yield from walk(ch)
    if "sh" in node:
        for ch in node["sh"]["c"]:
            yield from walk(ch)


def by_attr_id(root):
    return {n["a"]["id"]: n for n in walk(root) if "a" in n and "id" in n["a"]}


def test_snapshot_document(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html")
    page.evaluate("() => window.scrollTo(0, 120)")
    page.evaluate("() => window.__cap.snapshot()")
    evs = drain(page)
    assert evs[0][0] == "nav" and evs[0][1]["url"].endswith("/pages/visitor_basic.html")
    assert evs[0][1]["title"] == "Visitor basic"
    snaps = [p for k, p in evs if k == "snapshot"]
    assert len(snaps) == 2
    first, doc = snaps
    assert doc["v"] == 1 and doc["title"] == "Visitor basic"
    assert doc["dt"] == {"name": "html", "pub": "", "sys": ""}
    assert doc["scroll"] == [0, 120] and len(doc["vw"]) == 2
    assert doc["base"] == doc["url"]
    root = doc["root"]
    assert root["tag"] == "html"
    # ids are stable within a page load: a second snapshot reuses them
    assert [n["id"] for n in walk(first["root"])] == [n["id"] for n in walk(root)]
    ids = [n["id"] for n in walk(root)]
    assert len(ids) == len(set(ids)) and min(ids) >= 1
    el = by_attr_id(root)
    # namespaces and case
    assert el["svg"]["ns"] == "svg"
    assert any(n.get("tag") == "linearGradient" and n.get("ns") == "svg" for n in walk(el["svg"]))
    assert el["m"]["ns"] == "math" and el["m"]["c"][0]["tag"] == "mi"
    assert "ns" not in el["h"]
    assert el["h"]["c"][0] == {"id": el["h"]["c"][0]["id"], "x": "Hello "}
    # comments
    assert any(n.get("cm") == " a comment " for n in walk(root))
    # form state
    assert el["t"]["v"] == "initial"
    assert el["ta"]["v"] == "area text"
    assert el["cb"].get("ck") is True and el["r1"].get("ck") is True and "ck" not in el["r2"]
    assert el["s1"]["v"] == "b"
    sel = [o.get("sl", False) for o in el["sm"]["c"] if o.get("tag") == "option"]
    assert sel == [True, False, True]
    # <script>: attributes, no children
    assert el["sc"]["c"] == [] and "script-secret-9431" not in json.dumps(doc)
    # <style>: text, plus css when the CSSOM differs
    assert el["st"]["c"][0]["x"].startswith("body {") and "css" not in el["st"]
    assert el["empty"]["c"] == [] and ".fromcssom" in el["empty"]["css"]
    assert "css" not in el["imp"]  # @import alone does not make a style differ
    assert el["lk"]["a"]["href"] == "/pages/nothing-here.css"
    # constructed + adopted sheets, open shadow root
    sheets = {s["sid"]: s["css"] for s in doc["sheets"]}
    assert len(doc["adopted"]) == 1 and "font-weight: 300" in sheets[doc["adopted"][0]]
    sh = el["host"]["sh"]
    assert sh["c"][0]["tag"] == "p" and sh["c"][0]["a"]["id"] == "inshadow"
    assert len(sh["adopted"]) == 1 and "color: green" in sheets[sh["adopted"][0]]
    # scroll offsets, canvas marker
    assert el["scroller"]["sc"] == [0, 100]
    assert el["cv"]["cv"] is True
    # our overlay is not part of the page
    assert not any(str(n.get("tag", "")).startswith("cobrowse") for n in walk(root))
    assert page.evaluate("() => !!document.querySelector('cobrowse-overlay')")
    # A single-page app moves on without a load: a nav names the new address and title
    # (the agent's toolbar shows them), once.
    drain(page)
    page.evaluate("() => { history.pushState({}, '', 'step2?x=1'); document.title = 'Step 2'; }")
    navs = wait_for(page, "nav")
    assert navs == [{"url": pages_server.url + "/pages/step2?x=1", "title": "Step 2"}]
    page.evaluate("() => new Promise((r) => setTimeout(r, 600))")  # a tick later: no repeat
    assert drain(page, "nav") == []
    assert page.errors == []


SECRETS = [
    "pw-attr-secret",
    "4111111111111111",
    "private-title-77",
    "private-text-5521",
    "nested-private-8812",
    "custom-masked-6613",
    "typed-pw-3141",
    "typed-cc-2718",
    "new-private-1618",
    "attr-secret-1414",
    "show-pw-1732",
    "chardata-secret-7071",
    "acct-secret-3377",
    "secret-order-4242",
    "late-secret-2236",
]


def test_masking_never_leaks(context, pages_server):
    page = open_page(
        context, pages_server, "visitor_basic.html", {"data-mask-selector": ".mask-me"}
    )
    page.fill("#pw", "typed-pw-3141")
    page.fill("#cc", "typed-cc-2718")
    page.evaluate("""() => {
      document.getElementById("privspan").textContent = "new-private-1618";
      document.getElementById("privlink").setAttribute("data-x", "late-secret-2236");
      document.getElementById("pw").setAttribute("value", "attr-secret-1414");
      const i = document.createElement("input"); i.type = "password"; i.value = "attr-secret-1414";
      i.setAttribute("value", "attr-secret-1414");
      document.getElementById("priv").appendChild(i);
    }""")
    settle(page)
    # showing a password turns the field into type=text: it stays private
    page.evaluate("() => { document.getElementById('pw').type = 'text'; }")
    page.evaluate(
        "() => { document.getElementById('privspan').firstChild.data = 'chardata-secret-7071'; }"
    )
    settle(page)
    page.fill("#pw", "show-pw-1732")
    page.evaluate("() => window.__cap.snapshot()")
    evs = drain(page)
    blob = json.dumps(evs)
    for s in SECRETS:
        assert s not in blob, s
    snap = [p for k, p in evs if k == "snapshot"][-1]
    el = by_attr_id(snap["root"])
    # values and attributes: one mask whatever their length; text keeps its word shape
    assert el["pw"]["m"] is True and el["pw"]["v"] == "*" * 8
    assert el["cc"]["v"] == "*" * 8 and el["cc"]["a"]["value"] == "*" * 8
    assert el["priv"]["m"] and el["privspan"]["m"] and el["privspan"]["c"][0]["x"] == "*" * 20
    assert el["priv"]["a"]["title"] == "*" * 8 and el["priv"]["a"]["data-acct"] == "*" * 8
    assert el["privlink"]["a"] == {"id": "privlink", "class": "l", "href": "", "data-x": "*" * 8}
    assert el["pw"]["a"]["type"] == "text" and el["cc"]["a"]["autocomplete"] == "cc-number"
    assert el["custommask"]["m"] and el["custommask"]["c"][0]["x"] == "*" * 18
    inputs = [p for k, p in evs if k == "input"]
    # both fields had a value when first sent: their mask never changed, so no input event
    assert not [p for p in inputs if p["id"] in (el["pw"]["id"], el["cc"]["id"])], inputs
    texts = [t for k, p in evs if k == "mutation" for t in p.get("text", [])]
    assert {"id": el["privspan"]["c"][0]["id"], "x": "*" * 20} in texts
    assert "t" not in el or "m" not in el["t"]  # a plain field is not masked
    page.fill("#pw", "")
    assert drain(page, "input")[-1]["v"] == ""  # empty stays empty (docs/browser.md)
    page.fill("#pw", "x" * 100)
    assert drain(page, "input")[-1]["v"] == "*" * 8


PRIVATE_FORM = """() => {
  document.body.insertAdjacentHTML("beforeend", `<form id="pay">
    <select id="card" autocomplete="cc-type"><option value="">Choose</option>
      <option>visa</option><option>mastercard</option><option>amex</option></select>
    <select id="plan" data-cobrowse-private><option value="basic-plan">Basic</option>
      <option value="premium-plan-yearly">Premium, billed yearly</option></select>
    <input id="code" data-cobrowse-private>
    <textarea id="note1" data-cobrowse-private>ab</textarea>
    <textarea id="note2" data-cobrowse-private>a much longer private note</textarea></form>`);
}"""


def test_private_values_have_one_mask_length(context, pages_server):
    """A private value's mask is the same whatever the value: a private select's choice, its
    options' texts and values, an input's value typed key by key (issue 12 item 7)."""
    page = open_page(context, pages_server, "visitor_blank.html")
    page.evaluate(PRIVATE_FORM)
    settle(page)
    adds = [a["n"] for p in drain(page, "mutation") for a in p.get("adds", [])]
    form = next(n for n in adds if n.get("a", {}).get("id") == "pay")
    nodes = by_attr_id(form)
    card = nodes["card"]
    options = [o for o in card["c"] if o.get("tag") == "option"]
    masks = {o["c"][0]["x"] for o in options[1:]}
    assert len(masks) == 1 and len(masks.pop()) == 8
    plan = [o for o in nodes["plan"]["c"] if o.get("tag") == "option"]
    assert [o["a"]["value"] for o in plan] == ["*" * 8] * 2
    assert plan[0]["c"][0]["x"] == plan[1]["c"][0]["x"] == "*" * 8
    assert nodes["note1"]["v"] == nodes["note2"]["v"] == "*" * 8
    assert nodes["note1"]["c"][0]["x"] == nodes["note2"]["c"][0]["x"] == "*" * 8
    assert card["v"] == ""  # empty stays empty (docs/browser.md)
    # an option's label changed later goes as a mutation, masked the same
    page.evaluate(
        "() => { document.getElementById('plan').options[0].firstChild.data = 'Basic gold'; }"
    )
    settle(page)
    texts = [t for p in drain(page, "mutation") for t in p.get("text", [])]
    assert texts == [{"id": plan[0]["c"][0]["id"], "x": "*" * 8}]

    def wire(after):
        """What the wire carries after `after` runs: its events (input, scroll, ...), then the
        fields as a fresh snapshot serializes them."""
        page.select_option("#card", "")
        page.fill("#code", "")
        settle(page)
        drain(page)
        after()
        settle(page)
        inputs = drain(page)
        page.evaluate("() => window.__cap.snapshot()")
        el = by_attr_id(drain(page, "snapshot")[-1]["root"])
        return inputs, el["card"], el["code"], el["plan"]

    seen = {}
    for choice in ("visa", "mastercard", "amex"):
        seen[choice] = wire(lambda c=choice: page.select_option("#card", c))
    plans = {
        p: wire(lambda p=p: page.select_option("#plan", p))
        for p in ("basic-plan", "premium-plan-yearly")
    }
    # key by key: 1 and 30 characters make the same events, not one per character
    typed = {
        n: wire(lambda n=n: page.locator("#code").press_sequentially("k" * n)) for n in (1, 30)
    }
    blob = json.dumps([list(d.values()) for d in (seen, plans, typed)])
    for real in ("visa", "mastercard", "amex", "Basic", "Premium", "basic-plan", "kk"):
        assert real not in blob, real
    assert seen["visa"] == seen["mastercard"] == seen["amex"]
    assert seen["visa"][0] == [["input", {"id": card["id"], "v": "*" * 8}]]
    assert seen["visa"][1]["v"] == "*" * 8
    assert plans["basic-plan"] == plans["premium-plan-yearly"]
    assert typed[1] == typed[30]
    assert ["input", {"id": nodes["code"]["id"], "v": "*" * 8}] in typed[1][0]
    assert typed[1][2]["v"] == "*" * 8
    assert page.errors == []


def test_our_elements_are_never_sent(context, pages_server):
    page = open_page(context, pages_server, "visitor_blank.html")
    drain(page)
    page.evaluate("""() => {
      document.querySelector("cobrowse-overlay").remove();           // a page script removes it
      window.__cap.agent("pointer", {x: 30, y: 30});                // the next agent event puts it back
      window.__cap.agent("highlight", {id: 5, on: true});
      window.__cap.agent("click", {x: 30, y: 30});
      Cobrowse.start().catch(() => {});                              // the consent prompt shows
      document.getElementById("p1").textContent = "changed";
    }""")
    settle(page)
    evs = drain(page)
    assert [k for k, p in evs] == ["mutation"]
    assert "cobrowse" not in json.dumps(evs)
    assert page.evaluate(
        "() => !!document.querySelector('cobrowse-overlay') && !!document.querySelector('cobrowse-consent')"
    )
    assert page.evaluate("() => window.__cap.overlayState()")["pointer"] == [30, 30]
    # the overlay never takes the visitor's pointer
    assert page.evaluate("() => document.elementFromPoint(30, 30).localName") != "cobrowse-overlay"
    page.evaluate("() => window.__cap.snapshot()")
    assert "cobrowse" not in json.dumps(drain(page))
    page.keyboard.press("Escape")


def test_bad_mask_selector_is_ignored(context, pages_server):
    page = context.new_page()
    warnings = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.goto(f"{pages_server.url}/pages/visitor_blank.html")
    assert page.evaluate(INJECT, [bundle_js(), {"data-mask-selector": "[[nope"}]) == "object"
    page.evaluate(CAPTURE)
    assert drain(page, "snapshot")[0]["root"]["tag"] == "html"
    assert any("data-mask-selector" in w for w in warnings)


def test_mutations_one_event_per_batch(context, pages_server):
    page = open_page(context, pages_server, "visitor_blank.html")
    drain(page)
    page.evaluate("""() => {
      const root = document.getElementById("root");
      const a = document.createElement("div"); a.id = "a"; a.textContent = "A";
      root.appendChild(a);
      document.getElementById("p1").setAttribute("class", "c1");
      document.getElementById("p2").firstChild.data = "TWO";
      root.insertBefore(document.createTextNode("t"), root.firstChild);
    }""")
    settle(page)
    muts = drain(page, "mutation")
    assert len(muts) == 1
    m = muts[0]
    assert "rem" not in m
    assert [ad["n"].get("tag") or "text" for ad in m["adds"]] == ["div", "text"]
    assert m["adds"][0]["b"] is None and m["adds"][0]["n"]["c"][0]["x"] == "A"
    assert m["attr"][0]["a"] == {"class": "c1"}
    assert m["text"][0]["x"] == "TWO"


RANDOM_OPS = """async ([seed, rounds]) => {
  let s = seed;
  const rnd = (n) => {  // mulberry32
    s = (s + 0x6D2B79F5) | 0; let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) % n; };
  const root = document.getElementById("root");
  const host = document.createElement("section"); host.id = "shost"; root.appendChild(host);
  host.attachShadow({mode: "open"}).innerHTML = "<i>s1</i><i>s2</i>";
  let k = 0;
  const all = () => Array.from(root.querySelectorAll("*")).concat(Array.from(host.shadowRoot.querySelectorAll("*")));
  const anyNode = () => { const els = all(); const e = els[rnd(els.length)] || root;
    const kids = Array.from(e.childNodes); return kids.length && rnd(2) ? kids[rnd(kids.length)] : e; };
  const container = () => { const c = all().filter(e => !e.contains(root)); return rnd(5) ? (c[rnd(c.length)] || root) : (rnd(2) ? root : host.shadowRoot); };
  for (let r = 0; r < rounds; r++) {
    const n = 1 + rnd(6);
    for (let i = 0; i < n; i++) {
      const op = rnd(8);
      try {
        if (op === 0) { const d = document.createElement(rnd(2) ? "div" : "span"); d.textContent = "n" + (k++);
          const p = container(); const ref = p.childNodes[rnd(p.childNodes.length + 1)] || null; p.insertBefore(d, ref); }
        else if (op === 1) { const x = anyNode(); if (x !== root && x !== host && !x.contains(root)) x.remove(); }
        else if (op === 2) { const x = anyNode(); const p = container();
          if (x !== root && x !== host && !x.contains(p) && !(x.contains && x.contains(root))) { const ref = p.childNodes[rnd(p.childNodes.length + 1)] || null; if (ref !== x) p.insertBefore(x, ref); } }
        else if (op === 3) { const e = all()[rnd(all().length)]; if (e) e.setAttribute("data-k", String(k++)); }
        else if (op === 4) { const e = all()[rnd(all().length)]; if (e) e.removeAttribute("data-k"); }
        else if (op === 5) { const x = anyNode(); if (x.nodeType === 3) x.data = "t" + (k++); }
        else if (op === 6) { const p = container(); const a = document.createElement("b"), b = document.createElement("u");
          a.textContent = "a" + k; b.textContent = "b" + (k++); p.appendChild(b); p.insertBefore(a, b);
          if (rnd(2)) { const t = document.createElement("em"); p.appendChild(t); t.remove(); } }
        else { const p = container(); const f = document.createDocumentFragment();
          for (let j = 0; j < 3; j++) { const e = document.createElement("p"); e.textContent = "f" + (k++); f.appendChild(e); }
          p.insertBefore(f, p.firstChild); }
      } catch (e) { /* an impossible move (hierarchy): skip */ }
    }
    await new Promise(res => setTimeout(res, 0));
  }
}"""


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_mutations_apply_in_order(context, pages_server, seed):
    page = open_page(context, pages_server, "visitor_blank.html", capture=False)
    mirror_start(page)
    page.evaluate(RANDOM_OPS, [seed, 40])
    settle(page)
    kinds = mirror_apply(page)
    assert kinds.count("mutation") >= 30
    errors, same = mirror_check(page)
    assert errors == []
    if not same:
        mirror = page.evaluate("() => window.__m.tree()")
        assert json.dumps(mirror, indent=1) == "fresh snapshot differs"  # show the tree
    assert page.errors == []


def test_move_and_siblings_in_one_batch(context, pages_server):
    page = open_page(context, pages_server, "visitor_blank.html", capture=False)
    page.evaluate(APPLIER)
    page.evaluate(CAPTURE)
    snap = drain(page, "snapshot")[0]
    ids = {n["a"]["id"]: n["id"] for n in walk(snap["root"]) if "a" in n and "id" in n["a"]}
    page.evaluate("(s) => { window.__m = window.__mirror(s); }", snap)
    page.evaluate("""() => {
      const root = document.getElementById("root");
      const p1 = document.getElementById("p1"), p3 = document.getElementById("p3");
      root.appendChild(p1);                       // move to the end
      const x = document.createElement("p"); x.id = "x";
      const y = document.createElement("p"); y.id = "y";
      root.insertBefore(y, p3); root.insertBefore(x, y);   // x before y, both new
      const z = document.createElement("p"); z.id = "z"; root.appendChild(z); z.remove(); // added and removed
      x.appendChild(p3);                          // moved into a new node
    }""")
    settle(page)
    muts = drain(page, "mutation")
    assert len(muts) == 1
    m = muts[0]
    assert set(m["rem"]) == {ids["p1"], ids["p3"]}
    page.evaluate("(m) => window.__m.apply(m)", m)
    added = {ad["n"]["a"]["id"]: ad for ad in m["adds"]}
    assert set(added) == {"x", "y", "p1"}
    assert added["p1"]["n"]["id"] == ids["p1"]  # a move keeps the node's id
    p3 = [n for n in walk(added["x"]["n"]) if n.get("a", {}).get("id") == "p3"][0]
    assert p3["id"] == ids["p3"]
    assert mirror_check(page) == [[], True]


def test_big_batch_is_split_in_order(context, pages_server):
    page = open_page(context, pages_server, "visitor_blank.html", capture=False)
    mirror_start(page)
    page.evaluate("""() => {
      const root = document.getElementById("root");
      document.getElementById("p1").remove();
      const kids = Array.from(root.children);
      for (let i = 0; i < 3000; i++) { const d = document.createElement("div"); d.className = "row-" + i;
        d.innerHTML = "<b>bold " + i + "</b> and some text to make it longer than a few bytes";
        root.insertBefore(d, kids[i % kids.length]); }
      document.getElementById("p3").setAttribute("class", "last");
    }""")
    settle(page)
    evs = mirror_apply(page, keep=True)
    assert [k for k, p in evs] == ["mutation"] * len(evs) and len(evs) > 1  # no snapshot fallback
    assert all(len(json.dumps(p, separators=(",", ":")).encode()) < 120 * 1024 for k, p in evs)
    assert "rem" in evs[0][1] and "attr" in evs[-1][1]
    assert mirror_check(page) == [[], True]
    # one node too big for any event: a new snapshot instead
    page.evaluate("""() => { const d = document.createElement("pre"); d.textContent = "x".repeat(200000);
      document.body.appendChild(d); }""")
    settle(page)
    assert [k for k, p in drain(page)] == ["snapshot"]


def test_inputs_of_each_type(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html")
    snap = drain(page, "snapshot")[0]
    el = by_attr_id(snap["root"])
    page.fill("#t", "hello")
    page.fill("#ta", "multi\nline")
    page.uncheck("#cb")
    page.check("#r2")
    page.select_option("#s1", "a")
    page.select_option("#sm", ["y", "z"])
    settle(page)
    inputs = drain(page, "input")
    assert {"id": el["t"]["id"], "v": "hello"} in inputs
    assert {"id": el["ta"]["id"], "v": "multi\nline"} in inputs
    assert {"id": el["cb"]["id"], "ck": False} in inputs
    assert {"id": el["r1"]["id"], "ck": False} in inputs and {
        "id": el["r2"]["id"],
        "ck": True,
    } in inputs
    assert not any(p["id"] == el["r3"]["id"] for p in inputs)
    assert {"id": el["s1"]["id"], "v": "a"} in inputs
    assert {"id": el["sm"]["id"], "sel": [1, 2]} in inputs
    # the same value is not sent twice (input then change)
    assert len([p for p in inputs if p["id"] == el["t"]["id"]]) == 1


def test_inputs_set_by_script(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html")
    el = by_attr_id(drain(page, "snapshot")[0]["root"])
    page.evaluate("""() => {
      const $ = (i) => document.getElementById(i);
      $("t").value = "from-script"; $("t").value = "from-script-2";   // one event, the last value
      $("cb").checked = false; $("r3").checked = true;
      $("s1").selectedIndex = 0; $("sm").options[1].selected = true;
      $("pw").value = "";
    }""")
    settle(page)
    inputs = drain(page, "input")
    assert inputs == [
        {"id": el["t"]["id"], "v": "from-script-2"},
        {"id": el["cb"]["id"], "ck": False},
        {"id": el["r1"]["id"], "ck": False},
        {"id": el["r3"]["id"], "ck": True},
        {"id": el["s1"]["id"], "v": "a"},
        {"id": el["sm"]["id"], "sel": [0, 1, 2]},
        {"id": el["pw"]["id"], "v": ""},
    ]
    page.evaluate("() => { document.getElementById('pw').value = 'prog-secret-999'; }")
    settle(page)
    assert drain(page, "input") == [{"id": el["pw"]["id"], "v": "*" * 8}]
    page.evaluate("() => window.__cap.stop()")
    assert page.evaluate("""() => Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set
      .toString().includes("[native code]")""")


def test_scroll_pointer_click_focus_viewport(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html")
    el = by_attr_id(drain(page, "snapshot")[0]["root"])
    page.evaluate("() => window.scrollTo(0, 200)")
    page.evaluate("() => { document.getElementById('scroller').scrollTop = 150; }")
    settle(page, 150)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.mouse.move(5, 5)
    box = page.locator("#h b").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2, steps=5)
    page.mouse.click(box["x"] + 2, box["y"] + 2)
    page.focus("#t")
    page.set_viewport_size({"width": 700, "height": 500})
    settle(page, 250)
    evs = drain(page)
    scrolls = [p for k, p in evs if k == "scroll"]
    assert {"id": 0, "x": 0, "y": 200} in scrolls and {"id": 0, "x": 0, "y": 0} in scrolls
    assert {"id": el["scroller"]["id"], "x": 0, "y": 150} in scrolls
    assert any(k == "pointer" for k, p in evs)
    bold = el["h"]["c"][1]["id"]
    assert {"id": bold} in [p for k, p in evs if k == "hover"]
    clicks = [p for k, p in evs if k == "click"]
    assert clicks and clicks[0]["id"] == bold
    # a text field matches :focus-visible however it got the focus
    assert {"id": el["t"]["id"], "fv": True} in [p for k, p in evs if k == "focus"]
    # the click pressed and released the primary button: :active on, then off
    hovers = [p for k, p in evs if k == "hover" and "act" in p]
    assert hovers == [{"id": bold, "act": bold}, {"id": bold, "act": None}]
    assert {"w": 700, "h": 500} in [p for k, p in evs if k == "viewport"]
    # a snapshot resets the viewer's hover: it is sent again right after
    page.evaluate("() => window.__cap.snapshot()")
    assert [(k, p) for k, p in drain(page) if k != "snapshot"] == [("hover", {"id": bold})]


def test_canvas_sent_when_changed(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html")
    cid = by_attr_id(drain(page, "snapshot")[0]["root"])["cv"]["id"]
    settle(page, 700)
    assert drain(page, "canvas") == []  # blank: the viewer's canvas is blank already
    page.evaluate(
        "() => { const c = document.getElementById('cv').getContext('2d'); c.fillStyle = 'red'; c.fillRect(0, 0, 30, 20); }"
    )
    cv = wait_for(page, "canvas")
    assert len(cv) == 1 and cv[0]["id"] == cid and cv[0]["w"] == 60 and cv[0]["h"] == 40
    assert cv[0]["mime"] in ("image/webp", "image/png") and cv[0]["d"]["$bin"] > 20
    settle(page, 1100)
    assert drain(page, "canvas") == []  # unchanged: not resent
    page.evaluate(
        "() => { const c = document.getElementById('cv').getContext('2d'); c.fillStyle = 'blue'; c.fillRect(10, 10, 30, 20); }"
    )
    assert len(wait_for(page, "canvas")) == 1
    # a snapshot resets the viewer: the current image comes again
    page.evaluate("() => window.__cap.snapshot()")
    assert len(wait_for(page, "canvas")) == 1


def test_big_canvas_is_scaled_under_the_event_limit(context, pages_server):
    page = open_page(context, pages_server, "visitor_blank.html")
    page.evaluate("""() => {
      const c = document.createElement("canvas"); c.width = 1600; c.height = 1200; document.body.appendChild(c);
      const g = c.getContext("2d"); let s = 1;
      for (let i = 0; i < 20000; i++) { s = (s * 16807) % 2147483647;
        g.fillStyle = "#" + (s % 0xffffff).toString(16).padStart(6, "0"); g.fillRect(s % 1600, (s >> 8) % 1200, 9, 9); }
    }""")
    cv = wait_for(page, "canvas")
    assert len(cv) == 1 and cv[0]["w"] == 1600 and 0 < cv[0]["d"]["$bin"] <= 120 * 1024
    # the next change starts at the scale that fitted
    page.evaluate(
        "() => { const g = document.querySelector('canvas').getContext('2d'); g.fillStyle = '#000'; g.fillRect(0, 0, 400, 300); }"
    )
    cv = wait_for(page, "canvas")
    assert len(cv) == 1 and cv[0]["w"] == 1600 and 0 < cv[0]["d"]["$bin"] <= 120 * 1024


def test_cssom_events(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html")
    el = by_attr_id(drain(page, "snapshot")[0]["root"])
    known = page.evaluate("() => document.adoptedStyleSheets.length")
    assert known == 1
    page.evaluate("""() => {
      const st = document.getElementById("st").sheet;
      st.insertRule(".x { color: pink; }", 1);
      st.deleteRule(0);
      try { st.insertRule("not css", 0); } catch (e) { window.__thrown = e.name; }
      const s2 = new CSSStyleSheet();
      s2.replaceSync(".y { margin: 1px; }");
      s2.insertRule(".z { margin: 2px; }", 1);
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, s2];
      const s3 = new CSSStyleSheet();
      s3.insertRule(".w { margin: 3px; }");
      document.getElementById("host").shadowRoot.adoptedStyleSheets = [s3];
    }""")
    assert page.evaluate("() => window.__thrown") == "SyntaxError"
    css = drain(page, "css")
    st = el["st"]["id"]
    assert css[0] == {"op": "insert", "node": st, "rule": ".x { color: pink; }", "index": 1}
    assert css[1] == {"op": "delete", "node": st, "index": 0}
    assert css[2]["op"] == "replace" and css[2]["css"] == ".y { margin: 1px; }"
    s2 = css[2]["sheet"]
    assert css[3] == {"op": "insert", "sheet": s2, "rule": ".z { margin: 2px; }", "index": 1}
    assert (
        css[4]["op"] == "adopt"
        and css[4]["host"] == 0
        and css[4]["sheets"][-1] == s2
        and len(css[4]["sheets"]) == 2
    )
    # s3 was never announced: it comes whole before it is adopted
    assert css[5]["op"] == "replace" and css[5]["css"] == ".w { margin: 3px; }"
    assert css[6] == {"op": "adopt", "host": el["host"]["id"], "sheets": [css[5]["sheet"]]}
    assert len(css) == 7
    # push() does not call the setter: found by the timer
    page.evaluate(
        "() => { const s = new CSSStyleSheet(); s.replaceSync('.q{top:0}'); document.adoptedStyleSheets.push(s); }"
    )
    settle(page, 700)
    css = drain(page, "css")
    assert css[-1]["op"] == "adopt" and len(css[-1]["sheets"]) == 3
    # a snapshot now carries the style's CSSOM
    page.evaluate("() => window.__cap.snapshot()")
    snap = drain(page, "snapshot")[0]
    st_node = by_attr_id(snap["root"])["st"]
    assert ".x { color: pink; }" in st_node["css"] and "body" not in st_node["css"]
    # new text replaces a style's CSSOM: the style is sent again, without the stale "css"
    page.evaluate("() => { document.getElementById('st').textContent = '.fresh { top: 1px; }'; }")
    settle(page)
    m = drain(page, "mutation")[0]
    assert st in m["rem"] and m["adds"][0]["n"]["id"] == st and "css" not in m["adds"][0]["n"]
    assert m["adds"][0]["n"]["c"][0]["x"] == ".fresh { top: 1px; }"
    # insertRule on a style added in the same task: the add comes first
    page.evaluate("""() => { const s = document.createElement("style"); s.id = "late"; document.head.appendChild(s);
      s.sheet.insertRule(".late { color: red; }"); }""")
    settle(page)
    evs = [(k, p) for k, p in drain(page) if k in ("css", "mutation")]
    assert evs[0][0] == "mutation" and evs[1][0] == "css"
    late = evs[0][1]["adds"][0]["n"]
    assert "css" not in late and evs[1][1] == {
        "op": "insert",
        "node": late["id"],
        "rule": ".late { color: red; }",
        "index": 0,
    }
    # patches go away when recording stops
    page.evaluate("() => window.__cap.stop()")
    assert page.evaluate(
        "() => CSSStyleSheet.prototype.insertRule.toString().includes('[native code]')"
    )


def test_shadow_root_mutations(context, pages_server):
    page = open_page(context, pages_server, "visitor_basic.html", capture=False)
    mirror_start(page)
    page.evaluate("""() => {
      const sr = document.getElementById("host").shadowRoot;
      sr.querySelector("p").textContent = "changed";
      sr.appendChild(document.createElement("hr"));
      const late = document.getElementById("h");
      late.attachShadow({mode: "open"}).innerHTML = "<em>late root</em>";
    }""")
    settle(page)
    assert "mutation" in mirror_apply(page)
    page.evaluate(
        "() => { document.getElementById('h').shadowRoot.querySelector('em').textContent = 'again'; }"
    )
    settle(page)
    assert mirror_apply(page) == ["mutation"]
    assert mirror_check(page) == [[], True]
    page.evaluate("() => window.__cap.snapshot()")
    fresh = drain(page, "snapshot")[0]
    assert by_attr_id(fresh["root"])["h"]["sh"]["c"][0]["c"][0]["x"] == "again"


# ---- the session: consent, start(), continuation, with a stub wire client ----

STUB_WIRE = """
class CobrowseWire {
  constructor(o) { this.o = o; window.__wire = this; }
  log(x) { const l = JSON.parse(sessionStorage.getItem("wirelog") || "[]"); l.push(x); sessionStorage.setItem("wirelog", JSON.stringify(l)); }
  start() { this.log(["start", this.o.sid, this.o.state]);
    setTimeout(() => { this.o.onState("live"); this.o.onPersist({rt: "rt-1", epoch: 1, seq: 3, unacked: [], recv: {}}); }, 0); }
  send(kind, payload) { if (kind !== "pointer" && kind !== "hover") this.log([kind]); }
  sendSnapshot(text) { this.log(["snapshot", JSON.parse(text).url]); }
  end(reason) { this.log(["end", reason]); }
  persistState() { return {rt: "rt-2", epoch: 1, seq: 9, unacked: [], recv: {}}; }
}
"""

SITE = "http://site.test"
ROUTER = "http://router.test"


def site_page(name, attrs):
    a = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return (
        f"<!DOCTYPE html><html><head><title>{name}</title>"
        f'<script src="{ROUTER}/cobrowse.js" {a}></script></head>'
        f'<body><p id="p">page {name}</p><input id="pw" type="password"></body></html>'
    )


def stub_bundle() -> str:
    return browser_assets.assemble("cobrowse.js", replace={"wire.js": STUB_WIRE})


def routed(context, session_status=201, attrs=None, connect_status=200):
    attrs = {"data-site-key": "pk_test_1", "data-agent-name": "Example Support", **(attrs or {})}
    calls = []
    js = stub_bundle()

    def router(route):
        req = route.request
        if req.url.endswith("/cobrowse.js"):
            return route.fulfill(status=200, content_type="text/javascript", body=js)
        if req.url.endswith("/connect"):
            calls.append(["connect", req.headers.get("authorization")])
            if connect_status == 200:
                body = {
                    "session_id": "sTESTsession0001",
                    "role": "visitor",
                    "gateways": ["ws://gw2.test/"],
                    "proxy": None,
                }
            else:
                body = {"error": {"code": "unknown_session", "message": "gone"}}
            return route.fulfill(
                status=connect_status,
                content_type="application/json",
                body=json.dumps(body),
                headers={
                    "access-control-allow-origin": "*",
                    "access-control-allow-headers": "authorization",
                },
            )
        if req.url.endswith("/v1/sessions"):
            calls.append(json.loads(req.post_data))
            if session_status == 201:
                body = {
                    "session_id": "sTESTsession0001",
                    "visitor_token": "v1.tok",
                    "token_expires_at": 1,
                    "gateways": ["ws://gw.test/"],
                    "short_code": "363219",
                    "code_expires_at": 1,
                }
            elif session_status == 401:
                body = {"error": {"code": "bad_site_key", "message": "unknown site key"}}
            elif session_status == 429:
                body = {"error": {"code": "rate_limited", "message": "slow down"}}
            else:
                return route.abort()
            return route.fulfill(
                status=session_status,
                content_type="application/json",
                body=json.dumps(body),
                headers={"access-control-allow-origin": "*", "retry-after": "3"},
            )
        return route.fulfill(status=404, body="")

    context.route(f"{ROUTER}/**", router)
    context.route(
        f"{SITE}/**",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            body=site_page(route.request.url.rsplit("/", 1)[-1], attrs),
        ),
    )
    return calls


def test_consent_prompt_and_decline(context):
    routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => { window.__p = Cobrowse.start().then(() => 'ok', (e) => e.code); }")
    assert page.evaluate("() => Cobrowse.state()") == "consent"
    assert page.evaluate("() => !!document.querySelector('cobrowse-consent')")
    # the prompt is in a closed shadow root; the accessibility tree still shows its text
    cdp = context.new_cdp_session(page)
    names = json.dumps(cdp.send("Accessibility.getFullAXTree"))
    assert "Example Support would like to see this page" in names
    page.keyboard.press("Escape")
    assert page.evaluate("() => window.__p") == "declined"
    assert page.evaluate("() => Cobrowse.state()") == "idle"
    assert page.evaluate("() => !!document.querySelector('cobrowse-consent')") is False
    assert page.evaluate("() => sessionStorage.getItem('wirelog')") is None  # nothing was sent
    # end() while the prompt shows is a "no" too
    page.evaluate("() => { window.__p = Cobrowse.start().then(() => 'ok', (e) => e.code); }")
    assert page.evaluate("() => !!document.querySelector('cobrowse-consent')")
    page.evaluate("() => Cobrowse.end()")
    assert page.evaluate("() => window.__p") == "declined"
    assert page.evaluate(
        "() => [Cobrowse.state(), !!document.querySelector('cobrowse-consent')]"
    ) == ["idle", False]


def test_consent_accept_starts(context):
    calls = routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => { window.__p = Cobrowse.start(); }")
    page.keyboard.press("Enter")  # "Allow" has the focus
    assert page.evaluate("() => window.__p") == {"sessionId": "sTESTsession0001", "code": "363219"}
    assert calls == [{"site_key": "pk_test_1"}]


@pytest.mark.parametrize(
    "status,code", [(401, "bad_site_key"), (429, "rate_limited"), (0, "unavailable")]
)
def test_start_errors(context, status, code):
    routed(context, session_status=status)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    got = page.evaluate("""async () => { const errs = []; Cobrowse.on("error", (e) => errs.push(e.code));
      try { await Cobrowse.start({consented: true}); return "ok"; } catch (e) { return [e.code, errs, Cobrowse.state()]; } }""")
    assert got == [code, [code], "idle"]


def test_session_continues_across_pages(context):
    routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    got = page.evaluate("() => Cobrowse.start({consented: true})")
    assert got == {"sessionId": "sTESTsession0001", "code": "363219"}
    settle(page, 50)
    assert page.evaluate("() => Cobrowse.state()") == "live"
    assert page.evaluate("() => Cobrowse.getCode()") == "363219"
    stored = json.loads(page.evaluate("() => sessionStorage.getItem('cobrowse')"))
    assert (
        stored["sid"] == "sTESTsession0001"
        and stored["token"] == "v1.tok"
        and stored["code"] == "363219"
    )
    assert stored["rt"] == "rt-1" and stored["gateways"] == ["ws://gw.test/"]
    page.goto(f"{SITE}/b.html")  # pagehide writes the latest state, the next page resumes
    settle(page, 50)
    log = json.loads(page.evaluate("() => sessionStorage.getItem('wirelog')"))
    starts = [x for x in log if x[0] == "start"]
    assert starts[0] == ["start", "sTESTsession0001", None]
    assert starts[1][1] == "sTESTsession0001" and starts[1][2]["rt"] == "rt-2"
    after = log[log.index(starts[1]) :]
    kinds = [x[0] for x in after]
    assert kinds[:3] == ["start", "nav", "snapshot"] and after[2][1] == f"{SITE}/b.html"
    assert page.evaluate("() => Cobrowse.state()") == "live"
    assert page.evaluate("() => Cobrowse.getCode()") == "363219"
    assert page.evaluate("() => document.querySelector('cobrowse-consent')") is None
    page.evaluate("() => Cobrowse.end()")
    assert page.evaluate("() => [Cobrowse.state(), sessionStorage.getItem('cobrowse')]") == [
        "ended",
        None,
    ]
    assert json.loads(page.evaluate("() => sessionStorage.getItem('wirelog')"))[-1][0] == "end"
    page.goto(f"{SITE}/c.html")
    assert page.evaluate("() => Cobrowse.state()") == "idle"


def test_agent_events_and_wire_controls(context):
    routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => Cobrowse.start({consented: true})")
    got = page.evaluate("""async () => {
      const seen = [];
      Cobrowse.on("agent-joined", (e) => seen.push(["joined", e.agentId]));
      Cobrowse.on("state", (e) => seen.push(["state", e.state]));
      const w = window.__wire;
      w.o.onControl({op: "joined", msg: "a0123456789ab"});
      const p = Cobrowse._nodeId(document.getElementById("p"));
      w.o.onEvents([{kind: "pointer", payload: {x: 10, y: 20}}, {kind: "highlight", payload: {id: p, on: true}},
                    {kind: "click", payload: {x: 5, y: 5}}, {kind: "highlight", payload: {id: 999, on: true}},
                    {kind: "highlight", payload: {id: 999, on: false}}, {kind: "pointer", payload: {x: "bad"}},
                    {kind: "draw", payload: {pts: [[1, 2], [3.4, 4]]}}, {kind: "draw", payload: {pts: [[1, "x"], [2, 2]]}}]);
      seen.push(["overlay", Cobrowse._overlayState(), p]);
      // Remote control: no grant, so the agent's input is ignored; a request asks, Escape refuses,
      // and the same agent's next request within 10 s asks nothing.
      let clicks = 0;
      document.getElementById("p").addEventListener("click", () => clicks++);
      const src = "a0123456789ab";
      w.o.onEvents([{kind: "rc-click", src, payload: {id: p, x: 1, y: 1}}]);
      seen.push(["ignored", clicks, Cobrowse._controlState().ignored]);
      w.o.onEvents([{kind: "rc-request", src, payload: {}}]);
      const asked = Cobrowse._controlState().dialog;
      seen.push(["asked", asked.role, asked.focused]);
      window.__seen = seen;
      return seen;
    }""")
    page.keyboard.press("Escape")  # the prompt has the focus
    got = page.evaluate("""async () => {
      const seen = window.__seen, w = window.__wire, src = "a0123456789ab";
      w.o.onEvents([{kind: "rc-request", src, payload: {}}]);
      seen.push(["refused", Cobrowse._controlState().asking, Cobrowse._controlState().holder]);
      // A field with React's value tracker (an own "value" property that remembers what
      // scripts set): React fires onChange only when the real value differs from it.
      const t = document.createElement("input");
      document.body.appendChild(t);
      let tracked = "";
      const own = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value");
      Object.defineProperty(t, "value", {configurable: true, get() { return own.get.call(this); },
        set(v) { tracked = String(v); own.set.call(this, v); }});
      t.addEventListener("input", () => { if (t.value !== tracked) seen.push(["onChange", t.value]); });
      t.addEventListener("change", () => seen.push(["change", t.value]));
      await new Promise((r) => setTimeout(r, 0));  // the mutation gives it an id
      window.__t = Cobrowse._nodeId(t);
      w.o.onEvents([{kind: "rc-request", src: "a0000000000b2", payload: {}}]);
      return seen;
    }""")
    page.keyboard.press("Tab")  # to "Allow control"
    page.keyboard.press("Enter")
    got = page.evaluate("""async () => {
      const seen = window.__seen, w = window.__wire;
      seen.push(["granted", Cobrowse._controlState().holder]);
      w.o.onEvents([{kind: "rc-text", src: "a0123456789ab", payload: {id: window.__t, value: "not the holder"}},
                    {kind: "rc-text", src: "a0000000000b2", payload: {id: window.__t, value: "typed", done: true}}]);
      w.o.onState("reconnecting");
      seen.push(["badge", Cobrowse._overlayState().reconnecting]);
      w.o.onControl({op: "snapshot"});
      w.o.onState("live");
      w.o.onState("ended", {code: "ended", reason: "agent ended"});
      return seen;
    }""")
    pid = got[1][2]
    assert isinstance(pid, int) and pid > 0
    assert got == [
        ["joined", "a0123456789ab"],
        [
            "overlay",
            {
                "pointer": [10, 20],
                "highlights": [pid],
                "reconnecting": False,
                "strokes": ["1,2 3,4"],
            },
            pid,
        ],
        ["ignored", 0, 1],
        ["asked", "dialog", "Refuse"],
        ["refused", None, None],
        ["granted", "a0000000000b2"],
        ["onChange", "typed"],
        ["change", "typed"],
        ["state", "reconnecting"],
        ["badge", True],
        ["state", "live"],
        ["state", "ended"],
    ]
    log = json.loads(page.evaluate("() => sessionStorage.getItem('wirelog')"))
    assert [x[0] for x in log].count("snapshot") == 2
    assert [x[0] for x in log].count("rc-revoke") == 1  # the refusal, once
    assert [x[0] for x in log].count("rc-grant") == 1
    assert page.evaluate(
        "() => [Cobrowse.state(), sessionStorage.getItem('cobrowse'), !!document.querySelector('cobrowse-overlay')]"
    ) == ["ended", None, False]


HOLDER = "a0000000000b2"


def granted_page(context, html: str, logged: list[str]):
    """A started page with `html` added, the events `logged` of every element recorded in
    `window.__keys` as [type, target id, key, keyCode], and remote control granted to
    `HOLDER` by the visitor's keyboard."""
    routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => Cobrowse.start({consented: true})")
    page.evaluate(
        """async ([html, logged, holder]) => {
      document.body.insertAdjacentHTML("beforeend", html);
      window.__keys = [];
      const log = (e) => __keys.push([e.type, e.target.id || e.target.localName, e.key || "", e.keyCode || 0]);
      for (const t of logged) document.addEventListener(t, log, true);
      await new Promise((r) => setTimeout(r, 0));  // the mutation gives them ids
      window.__id = (k) => Cobrowse._nodeId(document.getElementById(k));
      window.__wire.o.onEvents([{kind: "rc-request", src: holder, payload: {}}]);
    }""",
        [html, logged, HOLDER],
    )
    page.keyboard.press("Tab")  # to "Allow control"
    page.keyboard.press("Enter")
    assert page.evaluate("Cobrowse._controlState().holder") == HOLDER
    return page


def agent_acts(page, kind: str, el: str, payload: dict, src: str = HOLDER) -> list:
    """[the events logged, how many inputs were ignored] for one of the agent's inputs."""
    return page.evaluate(
        """([kind, el, payload, src]) => { __keys.length = 0;
          const before = Cobrowse._controlState().ignored;
          __wire.o.onEvents([{kind, src, payload: Object.assign({id: __id(el)}, payload)}]);
          return [__keys.slice(), Cobrowse._controlState().ignored - before]; }""",
        [kind, el, payload, src],
    )


def test_agent_chooses_an_option_of_a_select(context):
    """`rc-text` on a single select chooses the option with that value, as a pick does
    (input, then change); not a disabled option or one of a disabled group, not a value it
    lacks, and not in a multiple or a disabled select."""
    page = granted_page(
        context,
        """<select id="size"><option>S</option><option value="m">Medium</option>
           <option value="x" disabled>XL</option><optgroup disabled><option value="g">G</option></optgroup></select>
           <select id="many" multiple><option>a</option><option>b</option></select>
           <select id="off" disabled><option>a</option><option>b</option></select>""",
        ["input", "change"],
    )
    value = "document.getElementById('size').value"
    assert agent_acts(page, "rc-text", "size", {"value": "m", "done": True}) == [
        [["input", "size", "", 0], ["change", "size", "", 0]],
        0,
    ]
    assert page.evaluate(value) == "m"
    assert agent_acts(page, "rc-text", "size", {"value": "m"}) == [[], 0]  # already chosen
    for refused in ("x", "g", "L", 3):
        assert agent_acts(page, "rc-text", "size", {"value": refused}) == [[], 1]
    assert page.evaluate(value) == "m"
    assert agent_acts(page, "rc-text", "many", {"value": "b"}) == [[], 1]
    assert agent_acts(page, "rc-text", "off", {"value": "b"}) == [[], 1]
    assert page.evaluate("document.getElementById('off').value") == "a"


def test_agent_types_into_a_contenteditable_region(context):
    """`rc-text` on a contenteditable element replaces its editing host's text through the
    browser's editing (a trusted input with inputType insertText; execCommand fires no
    beforeinput);
    not on a private one, nor on an element that is not editable."""
    page = granted_page(
        context,
        """<div id="chat" contenteditable="true"><p id="line">old <b id="bold">words</b></p></div>
           <div id="note" contenteditable data-cobrowse-private>secret</div>
           <div id="plain">fixed</div>""",
        ["beforeinput", "input"],
    )
    page.evaluate(
        "document.addEventListener('input', (e) => __keys.push(['inputType', e.inputType, e.isTrusted]), true)"
    )
    text = "(k) => document.getElementById(k).textContent"
    # On an element inside the region: the whole host's text goes.
    assert agent_acts(page, "rc-text", "bold", {"value": "hello there"}) == [
        [["input", "chat", "", 0], ["inputType", "insertText", True]],
        0,
    ]
    assert page.evaluate(text, "chat") == "hello there"
    assert agent_acts(page, "rc-text", "chat", {"value": ""})[1] == 0
    assert page.evaluate(text, "chat") == ""
    assert agent_acts(page, "rc-text", "note", {"value": "pwned"}) == [[], 1]
    assert agent_acts(page, "rc-text", "plain", {"value": "pwned"}) == [[], 1]
    assert agent_acts(page, "rc-text", "chat", {"value": "x" * 10001}) == [[], 1]
    assert [page.evaluate(text, k) for k in ("note", "plain")] == ["secret", "fixed"]


def test_agent_keys_press_as_a_user_would(context):
    """The holder's `rc-key`: the page's key handlers run, and Enter then does what a real
    one does and a script's does not (HTML's implicit submission, a link's or a button's
    activation), unless a handler cancelled it. Other keys, other agents and private fields
    get nothing."""
    page = granted_page(
        context,
        """<form id="fa"><input id="a1"><input id="a2"><input id="apw" type="password"><button id="ab">Go</button></form>
        <form id="fb"><input id="b1"><input id="b2" type="email"></form>
        <form id="fc"><input id="c1" type="search"><input id="cx" type="checkbox"></form>
        <form id="fd"><input id="d1"><button id="db" disabled>Go</button></form>
        <form id="fe"><input id="e1" onkeypress="if (event.key === 'Enter') this.form.requestSubmit()"><button id="eb">Go</button></form>
        <a id="link" href="#moved">next</a><button id="plain" type="button">plain</button>""",
        ["keydown", "keypress", "keyup", "click", "submit"],
    )
    page.evaluate("document.addEventListener('submit', (e) => e.preventDefault())")

    def press(el: str, key: str, src: str = HOLDER) -> list:
        return agent_acts(page, "rc-key", el, {"key": key}, src)

    def keys(el: str, key: str, code: int) -> list:
        return [["keydown", el, key, code], ["keypress", el, key, code], ["keyup", el, key, code]]

    # A field of a form with a submit button: that button's click, then the submit.
    assert press("a1", "Enter") == [
        keys("a1", "Enter", 13) + [["click", "ab", "", 0], ["submit", "fa", "", 0]],
        0,
    ]
    # No submit button and two fields that block implicit submission: nothing more.
    assert press("b1", "Enter") == [keys("b1", "Enter", 13), 0]
    # No submit button and one such field (a checkbox does not count): the form submits.
    assert press("c1", "Enter") == [keys("c1", "Enter", 13) + [["submit", "fc", "", 0]], 0]
    # A disabled default button: nothing is submitted.
    assert press("d1", "Enter") == [keys("d1", "Enter", 13), 0]
    # The page submitted on Enter itself (as WebKit's engine does on an untrusted
    # keypress): once, not again.
    submits = [e for e in press("e1", "Enter")[0] if e[0] == "submit"]
    assert submits == [["submit", "fe", "", 0]]
    # A link and a button are activated.
    assert press("link", "Enter") == [keys("link", "Enter", 13) + [["click", "link", "", 0]], 0]
    assert page.evaluate("location.hash") == "#moved"
    assert press("plain", "Enter") == [keys("plain", "Enter", 13) + [["click", "plain", "", 0]], 0]
    # Escape: the page's handlers only, no keypress and nothing submitted.
    assert press("a1", "Escape") == [
        [["keydown", "a1", "Escape", 27], ["keyup", "a1", "Escape", 27]],
        0,
    ]
    # A handler that cancels the keydown keeps Enter from submitting (and from keypress).
    page.evaluate(
        "document.getElementById('a2').addEventListener('keydown', (e) => e.preventDefault())"
    )
    assert press("a2", "Enter") == [
        [["keydown", "a2", "Enter", 13], ["keyup", "a2", "Enter", 13]],
        0,
    ]
    # Refused: a key not in the set, another agent, a private field.
    assert press("a1", "Tab") == [[], 1]
    assert press("a1", "Enter", src="a0123456789ab") == [[], 1]
    assert press("apw", "Enter") == [[], 1]
    assert page.evaluate("document.activeElement.id") != "apw"


def test_new_epoch_sends_a_snapshot_unless_one_is_queued(context):
    routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => Cobrowse.start({consented: true})")
    count = "() => JSON.parse(sessionStorage.getItem('wirelog')).filter(x => x[0] === 'snapshot').length"
    assert page.evaluate(count) == 1
    page.evaluate(
        "() => { window.__wire.pending = [['snapshot', 0, {}]]; window.__wire.o.onEpoch(2, true); }"
    )
    assert page.evaluate(count) == 1
    page.evaluate("() => { window.__wire.pending = []; window.__wire.o.onEpoch(3, false); }")
    assert page.evaluate(count) == 1
    page.evaluate("() => window.__wire.o.onEpoch(4, true)")
    assert page.evaluate(count) == 2


def test_fatal_close_is_an_error_then_ended(context):
    routed(context)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => Cobrowse.start({consented: true})")
    got = page.evaluate("""() => { const seen = [];
      Cobrowse.on("error", (e) => seen.push(["error", e.code, e.closeCode]));
      Cobrowse.on("ended", (d) => seen.push(["ended", d.code]));
      window.__wire.o.onState("ended", {code: 4001, reason: "", error: {code: "bad_token", msg: "no"}});
      return seen; }""")
    assert got == [["error", "bad_token", 4001], ["ended", 4001]]
    assert page.evaluate(
        "() => [Cobrowse.state(), Cobrowse.getCode(), sessionStorage.getItem('cobrowse')]"
    ) == ["ended", None, None]


@pytest.mark.parametrize("status", [200, 404])
def test_refresh_gateways(context, status):
    calls = routed(context, connect_status=status)
    page = context.new_page()
    page.goto(f"{SITE}/a.html")
    page.evaluate("() => Cobrowse.start({consented: true})")
    got = page.evaluate("() => window.__wire.o.refreshGateways()")
    assert calls[-1] == ["connect", "Bearer v1.tok"]
    if status == 200:
        assert got == ["ws://gw2.test/"]
        page.evaluate("() => window.__wire.o.onPersist({rt: 'rt-3', epoch: 1})")
        assert json.loads(page.evaluate("() => sessionStorage.getItem('cobrowse')"))[
            "gateways"
        ] == ["ws://gw2.test/"]
    else:
        assert got is None
        assert page.evaluate("() => [Cobrowse.state(), sessionStorage.getItem('cobrowse')]") == [
            "ended",
            None,
        ]


def test_twice_on_a_page_and_a_placeholder(context, pages_server):
    page = context.new_page()
    page.goto(f"{pages_server.url}/pages/visitor_blank.html")
    page.evaluate("() => { window.Cobrowse = {queue: []}; }")  # a site's own placeholder
    assert page.evaluate(INJECT, [bundle_js(), {}]) == "object"
    assert page.evaluate("() => typeof Cobrowse._capture") == "function"
    page.evaluate("() => { window.__first = Cobrowse; }")
    assert page.evaluate(INJECT, [bundle_js(), {}]) == "object"  # a second copy stays inert
    assert page.evaluate("() => Cobrowse === window.__first")
    page.evaluate(CAPTURE)
    assert [k for k, p in drain(page)] == ["nav", "snapshot"]


ADD_SHEETS = """async () => {
  const link = (css, rel) => new Promise((ok) => {
    const l = document.createElement("link");
    l.rel = rel;
    l.href = URL.createObjectURL(new Blob([css], {type: "text/css"}));
    l.onload = l.onerror = () => ok(l);
    document.head.appendChild(l);
    if (rel !== "stylesheet") ok(l);  // nothing loads
  });
  // The rule serializes as `.e::before { content: "` (23 characters) and 40 000 UTF-16
  // units of emoji: a surrogate pair spans 32 767-32 768, where a plain cut would fall.
  const emoji = '.e::before { content: "' + "\\u{1F600}".repeat(20000) + '"; }\\n';
  window.__big = await link(emoji + "p { margin: 1px; }\\n".repeat(3000), "stylesheet");
  window.__huge = await link('.h::before { content: "' + "x".repeat(1100000) + '"; }', "stylesheet");  // > 1 Mi
  window.__icon = await link("b { color: red; }", "icon");
  // An @import with every condition, of a sheet with its own @import (inlined in turn).
  const inner = URL.createObjectURL(new Blob(["i { color: blue; }"], {type: "text/css"}));
  const mid = URL.createObjectURL(new Blob([`@import url("${inner}"); q { color: red; }`], {type: "text/css"}));
  window.__imp = await link(`@import url("${mid}") layer(x) supports(display: grid) screen; s { color: green; }`, "stylesheet");
}"""


def test_css_need_sends_a_linked_sheets_text_in_bounded_parts(context, pages_server):
    """The CSS fallback's visitor side: only a stylesheet <link> is answered, its text in
    consecutive parts of at most 32 Ki characters (no surrogate pair cut), a sheet over
    1 Mi characters as one part with css null, @imports inlined with their conditions."""
    page = open_page(context, pages_server, "visitor_blank.html", capture=False)
    page.evaluate(ADD_SHEETS)
    page.evaluate(CAPTURE)
    drain(page)
    ask = "(el) => window.__cap.agent('control', {op: 'css-need', node: Cobrowse._nodeId(el)})"
    for name in ("__icon", "__big", "__huge", "__imp"):
        page.evaluate(f"() => ({ask})(window.{name})")
    page.evaluate(f"() => ({ask})(document.getElementById('p1'))")  # not a link: nothing
    got = wait_for(page, "css")
    settle(page, 100)
    got += drain(page, "css")
    ids = page.evaluate(
        "() => [Cobrowse._nodeId(__big), Cobrowse._nodeId(__huge), Cobrowse._nodeId(__imp)]"
    )
    big = [p for p in got if p["node"] == ids[0]]
    assert {p["node"] for p in got} == set(ids)  # the icon and the <p> were not answered
    # the imports are inlined in place, under the outer import's conditions
    [imp] = [p["css"] for p in got if p["node"] == ids[2]]
    assert imp == (
        "@supports (display: grid) {\n@media screen {\n@layer x {\n"
        "i { color: blue; }\nq { color: red; }\n}\n}\n}\ns { color: green; }"
    ), imp
    want = page.evaluate("() => Array.from(__big.sheet.cssRules, (r) => r.cssText).join('\\n')")
    assert [p["i"] for p in big] == list(range(len(big))) and {p["n"] for p in big} == {len(big)}
    assert want.startswith('.e::before { content: "\U0001f600')
    assert len(big) == 3  # 40 023 + 3000 * 19 UTF-16 units
    assert all(len(p["css"]) <= 32 * 1024 for p in big)
    assert "".join(p["css"] for p in big) == want
    # a blob: sheet: no relative URL resolves against it, the page's base URL stands in
    assert all(p["base"] == page.evaluate("() => document.baseURI") for p in big)
    assert [(p["i"], p["n"], p["css"]) for p in got if p["node"] == ids[1]] == [(0, 1, None)]
    assert page.errors == []
