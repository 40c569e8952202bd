/* viewer/sanitiser.js: the viewer's security boundary (G4, docs/browser.md "What the viewer
 * refuses"). The visitor's page is untrusted input: which elements are never created (they
 * become inert <cb-blocked data-tag="..."> so ids still line up, an empty box where they
 * took room), which attributes are dropped, which URLs are script URLs, and `writeAttr`,
 * the one place where a visitor attribute becomes (or does not become) a DOM attribute.
 * tests/browser/test_browser_sanitiser.py holds a table of hostile inputs and what each becomes.
 */

const BLOCKED_HTML = new Set(["script", "noscript", "iframe", "frame", "frameset", "object", "embed",
  "portal", "fencedframe", "base", "applet"]);
const BLOCKED_SVG = new Set(["script", "handler", "listener"]);
// Blocked elements that take room on the visitor's page: an empty box of the same size.
const BOXED = new Set(["iframe", "frame", "object", "embed", "portal", "fencedframe", "applet"]);
const BOX_ATTRS = new Set(["class", "id", "style", "width", "height", "title", "hidden"]);
// Attributes whose value is a URL (URL_VALUED_ATTRS, format.js) are checked for script URLs
// wherever they appear.
// Never set, whatever the element: handlers, inline documents, and what would load or
// refetch outside the proxy.
const DROPPED_ATTRS = new Set(["srcdoc", "formaction", "xml:base", "integrity", "crossorigin", "ping",
  "manifest", "imagesrcset", "imagesizes"]);
const BACKGROUND_TAGS = new Set(["body", "table", "thead", "tbody", "tfoot", "tr", "td", "th"]);
const SVG_ANIMATIONS = new Set(["animate", "set", "animatemotion", "animatetransform", "animatecolor"]);
const SVG_ANIMATION_ATTRS = ["attributeName", "to", "from", "values", "by"];
// Classes the viewer itself puts on replica elements (apply.js, actions.js): the visitor's
// element states (STATE_CLASSES, format.js) and the agent's highlight.
const VIEWER_CLASSES = [...Object.values(STATE_CLASSES), "cb-agent-hl"];

// Browsers strip C0 controls and spaces around a URL and tabs/newlines inside it, and DOM
// attribute values are already entity-decoded: compare with all of those removed.
function urlKey(v) {
  // eslint-disable-next-line no-control-regex
  return String(v).replace(/[\u0000-\u0020\u007f-\u00a0\u1680\u180e\u2000-\u200f\u2028\u2029\u202f\u205f\u3000\ufeff]/g, "").toLowerCase();
}

function isScriptUrl(v) {
  const k = urlKey(v);
  return /^(javascript|vbscript|livescript|mocha):/.test(k) ||
    /^data:(text\/html|application\/xhtml|text\/xml|application\/xml|text\/javascript|application\/javascript|text\/xsl)/.test(k);
}

// Somewhere inside (animation values are ;-separated lists).
function containsScriptUrl(v) {
  const k = urlKey(v);
  return /(javascript|vbscript|livescript|mocha):/.test(k) || /data:(text\/html|application\/xhtml|image\/svg)/.test(k);
}

function isFragment(v) {
  return String(v).trim().startsWith("#");
}

/** An element the viewer never creates (it becomes <cb-blocked>). */
function blockedTag(n, lower) {
  if (n.ns === "svg") return BLOCKED_SVG.has(lower);
  if (n.ns === "math") return false;
  if (BLOCKED_HTML.has(lower)) return true;
  if (lower === "meta" && n.a) {
    for (const k of Object.keys(n.a)) if (k.toLowerCase() === "http-equiv") return true;
  }
  return false;
}

function blockedElement(rs, n, lower) {
  const el = rs.doc.createElement("cb-blocked");
  el.setAttribute("data-tag", lower);
  // A shadow root without a slot: whatever the visitor put inside never renders.
  try { el.attachShadow({mode: "closed"}); } catch (e) { /* renders nothing anyway */ }
  if (BOXED.has(lower) && n.a) {
    const m = raw(rs, el);
    for (const k of Object.keys(n.a)) if (BOX_ATTRS.has(k.toLowerCase())) m.set(k.toLowerCase(), String(n.a[k]));
    const w = m.get("width");
    const h = m.get("height");
    const size = (w && /^\d+(\.\d+)?$/.test(w.trim()) ? `width:${w.trim()}px;` : "") + (h && /^\d+(\.\d+)?$/.test(h.trim()) ? `height:${h.trim()}px;` : "");
    if (size) m.set("style", size + (m.get("style") || ""));
    const laidOut = frameSizeStyle(n);  // the visitor's box, whatever its CSS said (frames.js)
    if (laidOut) m.set("style", (m.get("style") || "") + ";" + laidOut);
    m.delete("width");
    m.delete("height");
    for (const k of m.keys()) writeAttr(rs, el, k);
  }
  return el;
}

// image-set() loads its strings as URLs, and a var() in it is only known at computed time:
// `--v: "http://x/"; background: image-set(var(--v) 1x)` would load unsigned. A value with
// both is refused whole, wherever the var() is (a string may hide a ";" or a ")"); an
// escaped `v\61r(` keeps its backslash in the serialization, which is refused already.
const substitutedImageSet = (val) => /image-set\(/i.test(val) && /\b(var|env|attr)\(/i.test(val);

// A style attribute through the browser's own CSS parser, so escapes cannot hide a url().
function normaliseStyle(rs, v) {
  const tmp = parseDocOf(rs).createElement("div");
  tmp.setAttribute("style", v);
  let text = tmp.style.cssText;
  const unsafe = (val) => val.replace(URL_RE, "").includes("\\") || substitutedImageSet(val);
  if (unsafe(text)) {
    // Left over escapes live in custom properties (kept as raw tokens), and an image-set()
    // with a var() cannot be signed: drop those properties.
    const parts = [];
    for (let i = 0; i < tmp.style.length; i++) {
      const p = tmp.style.item(i);
      const val = tmp.style.getPropertyValue(p);
      if (unsafe(val)) continue;
      parts.push(p + ": " + val + (tmp.style.getPropertyPriority(p) ? " !important" : "") + ";");
    }
    text = parts.join(" ");
  }
  return text;
}

// ---- attribute setting ----
/** The visitor's attributes of `el` (name -> value), as sent: writeAttr reads them. */
function raw(rs, el) {
  let m = rs.rawAttrs.get(el);
  if (!m) { m = new Map(); rs.rawAttrs.set(el, m); }
  return m;
}

function token(rs, el, name) {
  let m = rs.attrTokens.get(el);
  if (!m) { m = new Map(); rs.attrTokens.set(el, m); }
  const t = (m.get(name) || 0) + 1;
  m.set(name, t);
  return () => m.get(name) === t;
}

function put(rs, el, name, value) {
  try {
    if (value === null || value === undefined) {
      el.removeAttribute(name);
    } else if (name.startsWith("xlink:")) {
      el.setAttributeNS(NS_XLINK, name, value);
    } else if (name.startsWith("xml:")) {
      el.setAttributeNS(NS_XML, name, value);
    } else if (name === "xmlns" || name.startsWith("xmlns:")) {
      el.setAttributeNS(NS_XMLNS, name, value);
    } else {
      el.setAttribute(name, value);
    }
  } catch (e) {
    rs.stats.skipped++;  // a name the DOM refuses
  }
}

// Set now, or leave empty and set once `later` resolves (if nothing newer came meanwhile).
function putLater(rs, el, name, now, later) {
  const current = token(rs, el, name);
  put(rs, el, name, now);
  const g = rs.gen;
  later.then((v) => {
    if (g !== rs.gen || !current()) return;
    put(rs, el, name, v === null || v === undefined ? now : v);  // failed: stays empty
    relayout(rs);
  });
}

/** A link's href kept as the visitor has it, so `:link`, `a[href]` and `a[href^="https"]`
 * match as they do for the visitor; it is inert: the glass takes the agent's pointer, and
 * `listen` (build.js) cancels every click, key activation, drag and navigation in the
 * replica. A script URL is dropped (the link then matches `a:not([href])`, as near as we
 * can get without keeping the script). */
function inertLink(rs, el, name, v, has) {
  put(rs, el, name, has && !isScriptUrl(v) ? v : null);
}

// A target kept as data-cb-* for the agent to read, never followed or loaded.
function moveTo(rs, el, name, alias, v, has) {
  put(rs, el, name, null);
  put(rs, el, alias, has && !isScriptUrl(v) ? v : null);
}

function withViewerClasses(el, v) {
  const extra = VIEWER_CLASSES.filter((c) => el.classList.contains(c));
  if (!extra.length) return v;
  return (v === null || v === undefined ? "" : v + " ") + extra.join(" ");
}

// The one place where a visitor attribute becomes (or does not become) a DOM attribute.
function writeAttr(rs, el, name) {
  const v = raw(rs, el).get(name);
  const has = v !== undefined && v !== null;
  const lname = name.toLowerCase();
  const tag = el.localName.toLowerCase();
  const alias = "data-cb-" + lname.replace(/[^a-z0-9-]/g, "-");
  if (rs.attrTokens.has(el)) token(rs, el, name);  // any pending async value for this name is now stale
  if (lname.startsWith("on") || DROPPED_ATTRS.has(lname) || (lname === "http-equiv" && tag === "meta")) {
    put(rs, el, name, null);
    return;
  }
  if (lname === "class") {
    put(rs, el, name, withViewerClasses(el, has ? v : null));
    return;
  }
  if (lname === "style") {
    if (!has) return put(rs, el, name, null);
    if (!/url\(|\\|image-set|@import/i.test(v)) return put(rs, el, name, v);
    const norm = normaliseStyle(rs, v);
    return putLater(rs, el, name, placeholderCssUrls(norm), signCssUrls(rs, norm));
  }
  if (el.namespaceURI === NS_HTML) return writeHtmlAttr(rs, el, name, lname, tag, alias, v, has);
  if (el.namespaceURI === NS_SVG) return writeSvgAttr(rs, el, name, lname, tag, alias, v, has);
  if (el.namespaceURI === NS_MATH && (lname === "href" || lname === "xlink:href")) return moveTo(rs, el, name, alias, v, has);
  if (!has) return put(rs, el, name, null);
  if (URL_VALUED_ATTRS.has(lname) && isScriptUrl(v)) return put(rs, el, name, null);
  return put(rs, el, name, v);
}

function writeHtmlAttr(rs, el, name, lname, tag, alias, v, has) {
  if (tag === "iframe" && !frameAttrAllowed(lname)) return;  // a mirrored frame loads nothing (frames.js)
  if ((tag === "a" || tag === "area") && lname === "href") return inertLink(rs, el, name, v, has);
  if (tag === "form" && lname === "action") return moveTo(rs, el, name, alias, v, has);
  if (tag === "link" && (lname === "href" || lname === "rel")) {
    const href = raw(rs, el).get("href");
    const rel = " " + String(raw(rs, el).get("rel") || "").toLowerCase().replace(/\s+/g, " ") + " ";
    if (lname === "rel") put(rs, el, "rel", has ? v : null);
    if (rel.includes(" stylesheet ") && href !== undefined && href !== null) {
      put(rs, el, "data-cb-href", null);
      const signed = assetUrl(rs, href, "stylesheet");
      putLater(rs, el, "href", "", signed);
      // Not signed (the proxy refused the URL: over 8192 characters, credentials in it, a
      // blob: sheet; or signing failed): no request, so no `error` either. Ask the visitor.
      const g = rs.gen;
      signed.then((u) => { if (!u && g === rs.gen && !isScriptUrl(href)) askForSheet(rs, el, href); });
    } else {
      token(rs, el, "href");
      put(rs, el, "href", null);
      put(rs, el, "data-cb-href", href !== undefined && href !== null && !isScriptUrl(href) ? href : null);
    }
    return;
  }
  if (tag === "input" && (lname === "src" || lname === "type")) {
    if (lname === "type") put(rs, el, "type", has ? v : null);
    const src = raw(rs, el).get("src");
    const isImage = String(raw(rs, el).get("type") || "").trim().toLowerCase() === "image";
    if (src === undefined || src === null) { put(rs, el, "src", null); return; }
    if (isImage) putLater(rs, el, "src", "", assetUrl(rs, src, "asset"));
    else { token(rs, el, "src"); put(rs, el, "src", null); put(rs, el, "data-cb-src", isScriptUrl(src) ? null : src); }
    return;
  }
  if (!has) return put(rs, el, name, null);
  if (!v.trim() && (lname === "src" || lname === "srcset" || lname === "poster" || lname === "background")) {
    return put(rs, el, name, v);  // an empty URL loads nothing
  }
  if (lname === "src" && (tag === "img" || tag === "source" || tag === "video" || tag === "audio")) {
    return putLater(rs, el, name, "", assetUrl(rs, v, "asset"));
  }
  if (lname === "srcset" && (tag === "img" || tag === "source")) return putLater(rs, el, name, "", signSrcset(rs, v));
  if (lname === "poster" && tag === "video") return putLater(rs, el, name, "", assetUrl(rs, v, "asset"));
  if (lname === "background" && BACKGROUND_TAGS.has(tag)) return putLater(rs, el, name, null, assetUrl(rs, v, "asset"));
  if (lname === "src" && tag === "track") return moveTo(rs, el, name, alias, v, has);
  if (lname === "content" && tag === "meta" && containsScriptUrl(v)) return put(rs, el, name, null);
  if (URL_VALUED_ATTRS.has(lname) && isScriptUrl(v)) return put(rs, el, name, null);
  return put(rs, el, name, v);
}

function writeSvgAttr(rs, el, name, lname, tag, alias, v, has) {
  if (lname === "href" || lname === "xlink:href") {
    if (!has) { put(rs, el, name, null); put(rs, el, alias, null); return; }
    if (tag === "a") return inertLink(rs, el, name, v, has);
    if (isFragment(v)) return put(rs, el, name, v);
    if (tag === "image" || tag === "feimage") return putLater(rs, el, name, null, assetUrl(rs, v, "asset"));
    return put(rs, el, name, null);  // external <use> and friends would bypass the proxy
  }
  if (SVG_ANIMATIONS.has(tag) && SVG_ANIMATION_ATTRS.some((a) => a.toLowerCase() === lname)) {
    // Animating a link target or a handler could turn it into a script URL: never.
    const target = String(raw(rs, el).get("attributeName") || "").trim().toLowerCase();
    const bad = target.startsWith("on") || /(^|:)href$/.test(target) || URL_VALUED_ATTRS.has(target) || target === "style";
    for (const a of SVG_ANIMATION_ATTRS) {
      const av = raw(rs, el).get(a);
      if (av === undefined || av === null) { put(rs, el, a, null); continue; }
      // An animated url() to another document would load it from the origin.
      const drop = a === "attributeName" ? bad : containsScriptUrl(av) || /url\(\s*['"]?\s*[^#'"\s)]/i.test(av);
      put(rs, el, a, drop ? null : av);
    }
    return;
  }
  if (!has) return put(rs, el, name, null);
  if (URL_VALUED_ATTRS.has(lname) && isScriptUrl(v)) return put(rs, el, name, null);
  if (/url\(|\\/i.test(v)) {
    if (v.includes("\\")) return put(rs, el, name, null);
    return putLater(rs, el, name, placeholderCssUrls(v), signCssUrls(rs, v));
  }
  return put(rs, el, name, v);
}
