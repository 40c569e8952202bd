"""Compare the visitor's live DOM with the viewer's rebuilt DOM (tests only).

`NORMALIZE_JS` is a JavaScript function expression `(doc, options) => tree` that turns a
document (or any node) into a plain JSON tree. It runs in the visitor's page and in the
viewer's iframe, and the two trees must be equal when the viewer did its job. The same
rules apply on both sides, so each rule below removes a difference that the contract
(docs/browser.md) *requires*, never one it forbids:

- **Shape**: an element is ``["el", tag, {attrs}, [children], extra]``, text is ``["#text", s]``,
  a comment is ``["#comment", s]``, the doctype ``["#doctype", name, public, system]``.
  Tags are lowercased for HTML and prefixed ``svg:`` / ``math:`` for those namespaces (SVG
  keeps its case: ``svg:linearGradient``).
- **Attributes** are sorted by name. Dropped on both sides, because the viewer must drop
  them (G4): ``on*``, ``srcdoc``, ``formaction``, ``integrity``, ``crossorigin``, ``ping``,
  ``manifest``, ``nonce``, ``xml:base``, ``imagesrcset``, ``imagesizes``, and any URL
  attribute holding a ``javascript:``/``vbscript:``/``data:text/html`` URL.
- **URLs**: the viewer points loading attributes at signed proxy URLs, keeps link ``href``s
  as they are (inert) and other targets (form ``action``, ``<link rel=icon>``) as
  ``data-cb-<name>``. So ``href``, ``src``, ``srcset``, ``poster``, ``background``, ``action``,
  ``xlink:href`` and ``data`` compare by **presence only** (value ``"<url>"``), and the
  viewer's ``data-cb-<name>`` counts as ``<name>``. Fragment references (``#id``) compare
  exactly; other SVG ``href``s are dropped except on ``a``, ``image``, ``feImage`` (an
  external ``<use>`` would load from the origin). ``style`` is parsed by the browser (``element.style.cssText``) with every
  ``url(...)`` replaced by ``url()``.
- **Viewer additions** are removed: the state classes (``cb-hover``, ``cb-focus``,
  ``cb-focus-visible``, ``cb-focus-within``, ``cb-active``, ``cb-target``) and ``cb-agent-hl``
  (an empty ``class`` then counts as absent, on both sides), other ``data-cb-*`` attributes.
- **Blocked elements** (``script``, ``noscript``, ``iframe``, ``frame``, ``frameset``,
  ``object``, ``embed``, ``portal``, ``base``, ``applet``, ``meta[http-equiv]``, SVG
  ``script``) and the viewer's ``<cb-blocked data-tag=X>`` both become
  ``["blocked", X]``, with no attributes and no children (the snippet sends no script text).
- **Style sheets**: ``<style>`` children are dropped. The viewer's CSS is the proxy's
  rewrite of the visitor's, so it differs on purpose; check computed styles instead.
- **Text**: adjacent text nodes are merged (mutation batches may split them differently),
  empty ones dropped. With ``options.collapseWhitespace`` runs of whitespace become one
  space and whitespace-only nodes are dropped.
- **Form state** goes in ``extra``: ``value`` of input/textarea/select, ``checked``,
  ``selected``. **Masking**: elements the snippet must mask (``input[type=password]``,
  ``autocomplete`` starting with ``cc-``, ``[data-cobrowse-private]``, ``options.maskSelector``
  and everything inside them) have their text replaced by ``*`` of the same length (at most
  64) and their values (``value``, the text of an ``option`` or ``textarea``) by the snippet's
  one mask ``********`` (empty stays empty) on both sides, so real values compare equal to
  the masked ones.
- **Shadow DOM**: an open shadow root's children go in ``extra["shadow"]``. Closed roots are
  invisible (the viewer uses one inside ``cb-blocked``).
- ``options.ignore``: a CSS selector of elements to leave out entirely (for instance the
  snippet's own overlay host in the visitor's page). Default: ``[data-cobrowse-overlay]``.
- A document's own comments (before or after ``<html>``) are left out: the snapshot
  carries only the doctype and the root element.
- ``template`` contents (a separate fragment) are not compared.
"""

from __future__ import annotations

import json
from typing import Any

NORMALIZE_JS = r"""
(root, options) => {
  options = options || {};
  const ignore = options.ignore === undefined ? "[data-cobrowse-overlay]" : options.ignore;
  const maskSel = ['input[type=password i]', '[autocomplete^="cc-" i]', '[data-cobrowse-private]']
    .concat(options.maskSelector ? [options.maskSelector] : []).join(",");
  const collapse = !!options.collapseWhitespace;
  const SVG = "http://www.w3.org/2000/svg", MATH = "http://www.w3.org/1998/Math/MathML";
  const BLOCKED = new Set(["script", "noscript", "iframe", "frame", "frameset", "object", "embed",
    "portal", "fencedframe", "base", "applet"]);
  const DROP = new Set(["srcdoc", "formaction", "integrity", "crossorigin", "ping", "manifest", "nonce",
    "xml:base", "imagesrcset", "imagesizes"]);
  const URLS = new Set(["href", "src", "srcset", "poster", "background", "action", "xlink:href", "data"]);
  const CHECK = new Set(["href", "src", "action", "formaction", "xlink:href", "poster", "background",
    "srcset", "data", "ping", "codebase", "cite", "longdesc", "lowsrc", "dynsrc", "manifest", "icon",
    "classid", "archive", "profile", "imagesrcset", "itemtype"]);
  const VIEWER_CLASSES = new Set(["cb-hover", "cb-focus", "cb-focus-visible", "cb-focus-within",
    "cb-active", "cb-target", "cb-agent-hl"]);
  const scriptUrl = (v) => {
    const k = String(v).replace(/[\u0000-\u0020\u007f-\u00a0\u1680\u180e\u2000-\u200f\u2028\u2029\u202f\u205f\u3000\ufeff]/g, "").toLowerCase();
    return /^(javascript|vbscript|livescript|mocha):/.test(k) ||
      /^data:(text\/html|application\/xhtml|text\/xml|application\/xml|text\/javascript|application\/javascript|text\/xsl)/.test(k);
  };
  const stars = (s) => "*".repeat(Math.min(64, String(s).length));
  const valueMask = (s) => (String(s) === "" ? "" : "********");
  const isValueText = (n) => n.parentNode && /^(option|textarea)$/.test(n.parentNode.localName);
  const tmpDoc = document.implementation.createHTMLDocument("");
  const styleNorm = (v) => {
    const t = tmpDoc.createElement("div");
    t.setAttribute("style", v);
    return t.style.cssText.replace(/url\((?:"(?:[^"\\]|\\[\s\S])*"|'(?:[^'\\]|\\[\s\S])*'|[^)]*)\)/g, "url()");
  };
  const tagOf = (el) => {
    if (el.namespaceURI === SVG) return "svg:" + el.localName;
    if (el.namespaceURI === MATH) return "math:" + el.localName;
    return el.localName.toLowerCase();
  };
  const blockedTag = (el) => {
    const t = tagOf(el);
    if (t === "cb-blocked") return el.getAttribute("data-tag") || "?";
    if (BLOCKED.has(t) || t === "svg:script") return t.replace(/^svg:/, "");
    if (t === "meta" && el.hasAttribute("http-equiv")) return "meta";
    return null;
  };
  const attrsOf = (el) => {
    const out = {};
    const set = (name, value) => { out[name] = value; };
    for (const a of Array.from(el.attributes)) {
      let name = a.name;
      let value = a.value;
      const lname = name.toLowerCase();
      if (lname.startsWith("data-cb-")) {
        const real = lname.slice(8);
        if (!URLS.has(real) && real !== "xlink-href") continue;
        name = real === "xlink-href" ? "xlink:href" : real;
      } else if (lname.startsWith("on") || DROP.has(lname)) {
        continue;
      }
      const ln = name.toLowerCase();
      if (CHECK.has(ln) && scriptUrl(value)) continue;
      if (ln === "http-equiv") continue;
      if (ln === "class") {
        value = value.split(/\s+/).filter((c) => c && !VIEWER_CLASSES.has(c)).join(" ");
        if (!value) continue;
      } else if (ln === "style") {
        value = styleNorm(value);
        if (!value) continue;
      } else if (URLS.has(ln)) {
        const frag = value.trim().startsWith("#");
        // SVG may only keep fragment references, except links and images (G4: no origin loads)
        if (!frag && (ln === "href" || ln === "xlink:href") && el.namespaceURI === SVG &&
            !/^(a|image|feimage)$/i.test(el.localName) && !lname.startsWith("data-cb-")) continue;
        value = frag ? value.trim() : "<url>";
      }
      set(name, value);
    }
    const sorted = {};
    for (const k of Object.keys(out).sort()) sorted[k] = out[k];
    return sorted;
  };
  const walk = (node, masked, inStyle) => {
    if (node.nodeType === 10) return ["#doctype", node.name, node.publicId, node.systemId];
    if (node.nodeType === 8) return ["#comment", node.data];
    if (node.nodeType === 3) return inStyle ? null : ["#text", !masked ? node.data : isValueText(node) ? valueMask(node.data) : stars(node.data)];
    if (node.nodeType !== 1) return null;
    if (ignore && node.matches(ignore)) return null;
    const b = blockedTag(node);
    if (b) return ["blocked", b];
    const tag = tagOf(node);
    const isMasked = masked || node.matches(maskSel);
    const isStyle = tag === "style" || tag === "svg:style";
    const extra = {};
    if ("value" in node && (tag === "input" || tag === "textarea" || tag === "select")) {
      extra.value = isMasked ? valueMask(node.value) : node.value;
    }
    if (tag === "input" && /^(checkbox|radio)$/i.test(node.type)) extra.checked = node.checked;
    if (tag === "option") extra.selected = node.selected;
    if (node.shadowRoot) extra.shadow = kids(node.shadowRoot, isMasked, false);
    const attrs = attrsOf(node);
    if (isMasked && "value" in attrs) attrs.value = valueMask(attrs.value);
    return ["el", tag, attrs, isStyle ? [] : kids(node, isMasked, isStyle), extra];
  };
  const kids = (parent, masked, inStyle) => {
    const out = [];
    for (const c of Array.from(parent.childNodes)) {
      if (parent.localName === "template") break;
      const t = walk(c, masked, inStyle);
      if (!t) continue;
      if (t[0] === "#text") {
        let s = t[1];
        const prev = out[out.length - 1];
        if (prev && prev[0] === "#text") { prev[1] += s; continue; }
        out.push(["#text", s]);
      } else {
        out.push(t);
      }
    }
    const res = [];
    for (const t of out) {
      if (t[0] === "#text") {
        let s = t[1];
        if (collapse) { s = s.replace(/\s+/g, " "); if (s === " ") s = ""; }
        if (!s) continue;
        res.push(["#text", s]);
      } else {
        res.push(t);
      }
    }
    return res;
  };
  // The snapshot carries the doctype and the root element only: not comments around them.
  if (root.nodeType === 9) return ["#document", kids(root, false, false).filter((t) => t[0] !== "#comment")];
  return walk(root, false, false);
}
"""


def js_call(expression: str = "document", **options: Any) -> str:
    """A JS expression (no function to call: pages whose CSP forbids eval can run it through
    Playwright's `evaluate`) giving the normalised tree of the node `expression`."""
    return f"({NORMALIZE_JS})({expression}, {json.dumps(options)})"


def normalized(frame: Any, expression: str = "document", **options: Any) -> Any:
    """The normalised tree of `expression` (a JS expression for a node) in a Playwright
    Page or Frame, e.g. ``normalized(page, "document.getElementById('f').contentDocument")``."""
    return frame.evaluate(f"(options) => ({NORMALIZE_JS})({expression}, options)", options)


def first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where two normalised trees first differ, as a readable path and both values; None if equal."""
    if type(a) is not type(b):
        return f"{path}: {_short(a)} != {_short(b)}"
    if isinstance(a, list):
        if a and b and a[0] == "el" and b[0] == "el" and a[1] == b[1]:
            path = f"{path}/{a[1]}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        if len(a) != len(b):
            return (
                f"{path}: length {len(a)} != {len(b)}; extra: {_short(a[len(b) :] or b[len(a) :])}"
            )
        return None
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return (
                    f"{path}.{k}: {_short(a.get(k, '<absent>'))} != {_short(b.get(k, '<absent>'))}"
                )
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {_short(a)} != {_short(b)}"


def assert_same(a: Any, b: Any, what: str = "") -> None:
    """Assert two normalised trees are equal, naming the first difference."""
    d = first_difference(a, b)
    assert d is None, (what + ": " if what else "") + "DOM trees differ at " + str(d)


def _short(v: Any, limit: int = 300) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + "…"
