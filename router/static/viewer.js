/* viewer.js: the agent's viewer (docs/browser.md).
 *
 * `CobrowseViewer.replayer(iframe, opts)` rebuilds the visitor's page inside a sandboxed
 * iframe (allow-same-origin, no allow-scripts) from snapshot and mutation payloads, by DOM
 * calls only. The visitor's page is untrusted input (G4): scripts, frames, plugins, event
 * handlers and script URLs are never created, links are never followed, and everything
 * that would load goes through the proxy under signed URLs, or is left empty.
 * `CobrowseViewer.embed()` is the /embed page: it connects with `CobrowseWire` and feeds a
 * replayer. Concatenated after wire.js in one function scope (router/browser_assets.py).
 */


// Created as inert <cb-blocked data-tag="..."> so that ids still line up.
const BLOCKED_HTML = new Set(["script", "noscript", "iframe", "frame", "frameset", "object", "embed",
  "portal", "fencedframe", "base", "applet"]);
const BLOCKED_SVG = new Set(["script", "handler", "listener"]);
// Blocked elements that take room on the visitor's page: an empty box of the same size.
const BOXED = new Set(["iframe", "frame", "object", "embed", "portal", "fencedframe", "applet"]);
const BOX_ATTRS = new Set(["class", "id", "style", "width", "height", "title", "hidden"]);
// Attributes whose value is a URL: checked for script URLs wherever they appear.
const URL_ATTRS = new Set(["href", "src", "action", "formaction", "xlink:href", "poster", "background",
  "srcset", "data", "ping", "codebase", "cite", "longdesc", "lowsrc", "dynsrc", "manifest", "icon",
  "classid", "archive", "profile", "imagesrcset", "itemtype"]);
const BACKGROUND_TAGS = new Set(["body", "table", "thead", "tbody", "tfoot", "tr", "td", "th"]);
const SVG_ANIMATIONS = new Set(["animate", "set", "animatemotion", "animatetransform", "animatecolor"]);
const VIEWER_CLASSES = ["cb-hover", "cb-focus", "cb-agent-hl"];
const SIGN_BATCH = 200;

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

// HTML's "parse a srcset attribute", reduced to what we need: URL + descriptor text.
function parseSrcset(s) {
  const out = [];
  let i = 0;
  const n = s.length;
  const ws = (c) => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f";
  while (i < n) {
    while (i < n && (ws(s[i]) || s[i] === ",")) i++;
    if (i >= n) break;
    let j = i;
    while (j < n && !ws(s[j])) j++;
    let url = s.slice(i, j);
    i = j;
    let desc = "";
    if (url.endsWith(",")) {
      url = url.replace(/,+$/, "");
    } else {
      let depth = 0;
      let k = i;
      while (k < n) {
        const c = s[k];
        if (c === "(") depth++;
        else if (c === ")") depth = Math.max(0, depth - 1);
        else if (c === "," && depth === 0) break;
        k++;
      }
      desc = s.slice(i, k).trim();
      i = k + 1;
    }
    if (url) out.push({url, desc});
  }
  return out;
}

// Signed proxy URLs carry their expiry (`e=`, unix seconds): forget them a minute before.
function signedExpiry(u) {
  const m = /[?&]e=(\d+)/.exec(u);
  return m ? Number(m[1]) * 1000 - 60000 : Date.now() + 10 * 60000;
}

function cssString(u) {
  return '"' + String(u).replace(/["\\\n\r\f]/g, (c) => "\\" + c.charCodeAt(0).toString(16) + " ") + '"';
}

// The quirks decision of the HTML parser, reduced: standards unless there is no doctype, it
// is not "html", or it is a legacy public id that the parser puts in quirks mode.
function wantsQuirks(dt) {
  if (!dt) return true;
  if (String(dt.name || "").toLowerCase() !== "html") return true;
  const pub = String(dt.pub || "").toLowerCase();
  const sys = String(dt.sys || "");
  if (!pub) return false;
  if (pub.startsWith("-//w3c//dtd html 4.01 transitional//") || pub.startsWith("-//w3c//dtd html 4.01 frameset//")) return !sys;
  if (pub.startsWith("-//w3c//dtd xhtml 1.0")) return false;
  return /^(-\/\/w3o\/\/dtd w3 html|-\/\/ietf\/\/dtd html|-\/\/w3c\/\/dtd html (3|4\.0 )|-\/\/netscape|-\/\/microsoft|-\/\/softquad|-\/\/spyglass|-\/\/sun microsystems|-\/\/webtechs|-\/\/o'reilly|-\/\/metrius|-\/\/as\/\/dtd|-\/\/advasoft|-\/\/sq\/\/dtd|-\/\/w3c\/\/dtd html experimental|-\/\/w3c\/\/dtd w3 html|html$)/.test(pub);
}

function replayer(iframe, opts) {
  opts = opts || {};
  const sign = opts.sign || (async (urls) => urls.map(() => null));
  const rewriteCss = opts.rewriteCss || (async () => "");
  const onAgentEvent = opts.onAgentEvent || (() => {});
  const onInfo = opts.onInfo || (() => {});
  const interactive = opts.interactive !== false;

  const ids = new Map();          // id -> node
  const rev = new WeakMap();      // node -> id
  const rawAttrs = new WeakMap(); // element -> Map(name -> visitor's value)
  const attrTokens = new WeakMap(); // element -> Map(name -> n): a newer value wins over an older async one
  const styleState = new WeakMap(); // <style> -> sheet state
  const rawText = new WeakMap();    // text node inside <style> -> the visitor's CSS text
  const canvasSeq = new WeakMap();
  let canvasRules = new Map();  // canvas id -> {rule, url}: its image as a background
  const signCache = new Map();      // kind \n url -> {p: Promise, until}
  const pendingSign = {stylesheet: [], asset: []};
  const sheets = new Map();         // constructed sheet id -> {sheet, state}
  const desiredScroll = new Map();  // element -> [x, y]
  let signScheduled = false;
  let gen = 0;                      // bumped by every snapshot: late async results are dropped
  let doc = null;
  let win = null;
  let base = null;
  let viewerSheet = null;
  let winScroll = [0, 0];
  let viewport = [iframe.clientWidth || 1024, iframe.clientHeight || 768];
  let scale = 1;
  let hovered = [];
  let focused = null;
  const highlighted = new Set();
  let highlightMode = false;
  let snapParts = null;
  let destroyed = false;
  let info = {url: null, title: null};
  const stats = {events: 0, skipped: 0, errors: 0, signFailed: 0, rewriteFailed: 0, snapshots: 0, unknown: 0};
  let parseDoc = null;

  // ---- the embed page's layer above the iframe (never inside the visitor's document) ----
  const host = iframe.parentElement;
  const edoc = iframe.ownerDocument;
  if (host && edoc.defaultView.getComputedStyle(host).position === "static") host.style.position = "relative";
  Object.assign(iframe.style, {position: "absolute", left: "0", top: "0", border: "0",
    transformOrigin: "0 0", background: "#fff"});
  const overlay = edoc.createElement("div");
  Object.assign(overlay.style, {position: "absolute", left: "0", top: "0", pointerEvents: "none",
    overflow: "hidden", zIndex: "1"});
  const glass = edoc.createElement("div");  // takes the agent's pointer: the replica is not clickable
  Object.assign(glass.style, {position: "absolute", inset: "0", pointerEvents: interactive ? "auto" : "none",
    cursor: "default"});
  const dot = edoc.createElement("div");    // the visitor's pointer
  Object.assign(dot.style, {position: "absolute", width: "14px", height: "14px", margin: "-7px 0 0 -7px",
    borderRadius: "50%", background: "rgba(230,60,30,.85)", border: "2px solid #fff",
    boxShadow: "0 0 3px rgba(0,0,0,.6)", display: "none", boxSizing: "border-box"});
  overlay.append(glass, dot);
  if (host) host.appendChild(overlay);

  function layout() {
    const [vw, vh] = viewport;
    iframe.style.width = vw + "px";
    iframe.style.height = vh + "px";
    const cw = host ? host.clientWidth : 0;
    const ch = host ? host.clientHeight : 0;
    scale = cw && ch ? Math.min(cw / vw, ch / vh) : 1;
    if (!isFinite(scale) || scale <= 0) scale = 1;
    iframe.style.transform = scale === 1 ? "" : `scale(${scale})`;
    overlay.style.width = vw * scale + "px";
    overlay.style.height = vh * scale + "px";
  }
  let resizeObs = null;
  if (host && typeof ResizeObserver !== "undefined") {
    resizeObs = new ResizeObserver(() => layout());
    resizeObs.observe(host);
  }
  layout();

  // ---- signing and CSS rewriting through the proxy ----
  function signUrl(url, kind) {
    const key = kind + "\n" + url;
    const hit = signCache.get(key);
    if (hit && hit.until > Date.now()) return hit.p;
    if (signCache.size > 5000) {  // a long session: forget the oldest (Map keeps insertion order)
      let drop = 1000;
      for (const k of signCache.keys()) { signCache.delete(k); if (--drop <= 0) break; }
    }
    const entry = {until: Infinity, p: null};
    entry.p = new Promise((resolve) => pendingSign[kind].push({url, resolve, entry, key}));
    signCache.set(key, entry);
    if (!signScheduled) {
      signScheduled = true;
      queueMicrotask(flushSign);  // one request for everything a snapshot or batch needs
    }
    return entry.p;
  }

  function flushSign() {
    signScheduled = false;
    for (const kind of ["stylesheet", "asset"]) {
      const all = pendingSign[kind].splice(0);
      // Batches under the proxy's limits (count and body size).
      const batches = [];
      let cur = [];
      let chars = 0;
      for (const item of all) {
        if (cur.length && (cur.length >= SIGN_BATCH || chars + item.url.length > 256 * 1024)) {
          batches.push(cur);
          cur = [];
          chars = 0;
        }
        cur.push(item);
        chars += item.url.length + 4;
      }
      if (cur.length) batches.push(cur);
      for (const batch of batches) {
        Promise.resolve().then(() => sign(batch.map((b) => b.url), kind)).then((out) => {
          batch.forEach((b, j) => {
            const u = out && out[j];
            if (typeof u === "string" && /^https?:\/\//i.test(u.trim()) && !isScriptUrl(u)) {
              b.entry.until = signedExpiry(u);
              b.resolve(u.trim());
            } else {
              stats.signFailed++;
              signCache.delete(b.key);
              b.resolve(null);
            }
          });
        }, () => {
          batch.forEach((b) => { stats.signFailed++; signCache.delete(b.key); b.resolve(null); });
        });
      }
    }
  }

  function resolveUrl(v) {
    if (!base) return null;
    try {
      const u = new URL(String(v).trim(), base);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // What an image-like URL becomes: a literal (data:image, fragment), a signed URL, or nothing.
  function assetUrl(v, kind) {
    const s = String(v).trim();
    if (!s || isScriptUrl(s)) return Promise.resolve(null);
    const k = urlKey(s);
    if (kind === "asset" && k.startsWith("data:image/")) return Promise.resolve(s);
    if (k.startsWith("data:") || k.startsWith("blob:")) return Promise.resolve(null);
    const abs = resolveUrl(s);
    return abs ? signUrl(abs, kind) : Promise.resolve(null);
  }

  function signSrcset(v) {
    const cands = parseSrcset(String(v));
    return Promise.all(cands.map((c) => assetUrl(c.url, "asset"))).then((urls) =>
      cands.map((c, i) => (urls[i] ? urls[i] + (c.desc ? " " + c.desc : "") : null)).filter(Boolean).join(", "));
  }

  // url(...) in declarations: fragment and data:image URLs stay, the rest is signed.
  const URL_RE = /url\(\s*(?:"((?:[^"\\]|\\[\s\S])*)"|'((?:[^'\\]|\\[\s\S])*)'|([^)"'\s]*))\s*\)/gi;
  function cssUnescape(s) {
    return s.replace(/\\([0-9a-fA-F]{1,6}\s?|[\s\S])/g, (m, g) => {
      if (/^[0-9a-fA-F]/.test(g)) {
        const cp = parseInt(g, 16);
        return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : "\ufffd";
      }
      return g === "\n" ? "" : g;
    });
  }
  function signCssUrls(text) {
    const found = [];
    text.replace(URL_RE, (m, a, b, c) => { found.push(cssUnescape(a !== undefined ? a : b !== undefined ? b : c || "")); return m; });
    return Promise.all(found.map((u) => (isFragment(u) ? Promise.resolve(null) : assetUrl(u, "asset")))).then((signed) => {
      let i = 0;
      return text.replace(URL_RE, (m) => {
        const u = found[i];
        const s = signed[i++];
        if (isFragment(u)) return m;  // url(#clip): a reference inside the page
        return "url(" + cssString(s || "about:invalid") + ")";
      });
    });
  }
  function placeholderCssUrls(text) {
    return text.replace(URL_RE, (m, a, b, c) => {
      const u = cssUnescape(a !== undefined ? a : b !== undefined ? b : c || "");
      return isFragment(u) ? m : 'url("about:invalid")';
    });
  }

  // A style attribute through the browser's own CSS parser, so escapes cannot hide a url().
  function normaliseStyle(v) {
    if (!parseDoc) parseDoc = edoc.implementation.createHTMLDocument("");
    const tmp = parseDoc.createElement("div");
    tmp.setAttribute("style", v);
    let text = tmp.style.cssText;
    if (text.replace(URL_RE, "").includes("\\")) {
      // Left over escapes live in custom properties (kept as raw tokens): drop those.
      const parts = [];
      for (let i = 0; i < tmp.style.length; i++) {
        const p = tmp.style.item(i);
        const val = tmp.style.getPropertyValue(p);
        if (val.replace(URL_RE, "").includes("\\")) continue;
        parts.push(p + ": " + val + (tmp.style.getPropertyPriority(p) ? " !important" : "") + ";");
      }
      text = parts.join(" ");
    }
    return text;
  }

  // ---- stylesheets: the visitor's rules as text, rewritten by the proxy ----
  function parseRules(text) {
    if (!parseDoc) parseDoc = edoc.implementation.createHTMLDocument("");
    const st = parseDoc.createElement("style");
    st.textContent = text;
    parseDoc.head.appendChild(st);
    let rules = null;
    try {
      rules = st.sheet ? Array.from(st.sheet.cssRules, (r) => r.cssText) : null;
    } catch (e) {
      rules = null;
    }
    st.remove();
    if (rules) return rules;
    const sh = new (edoc.defaultView.CSSStyleSheet)();
    sh.replaceSync(text);
    return Array.from(sh.cssRules, (r) => r.cssText);
  }

  function newSheetState(target) {
    return {raw: "", model: null, n: 0, scheduled: false, target};
  }

  function scheduleSheet(state) {
    if (state.scheduled) return;
    state.scheduled = true;
    const g = gen;
    queueMicrotask(() => {
      state.scheduled = false;
      if (g !== gen) return;
      const text = state.model ? state.model.join("\n") : state.raw;
      const n = ++state.n;
      const done = (css) => {
        if (g !== gen || n !== state.n) return;  // a newer version is on its way
        try { state.target(css); } catch (e) { stats.errors++; }
        relayout();
      };
      if (!text.trim()) return done("");
      Promise.resolve().then(() => rewriteCss(text, base)).then((css) => {
        if (typeof css === "string") done(css);
        else stats.rewriteFailed++;
      }, () => { stats.rewriteFailed++; });
    });
  }

  function styleOf(el) {
    let st = styleState.get(el);
    if (!st) {
      st = newSheetState((css) => {
        // The rewritten CSS goes in the first text child; the others stay empty.
        let first = null;
        for (const c of el.childNodes) {
          if (c.nodeType === 3) {
            if (!first) first = c;
            else c.data = "";
          }
        }
        if (!first) {
          first = doc.createTextNode("");
          el.appendChild(first);
        }
        first.data = css;
      });
      st.cssField = null;
      styleState.set(el, st);
    }
    return st;
  }

  function restyle(el) {
    const st = styleOf(el);
    if (st.cssField === null) {
      let raw = "";
      for (const c of el.childNodes) if (c.nodeType === 3 && rawText.has(c)) raw += rawText.get(c);
      st.raw = raw;
    }
    st.model = null;  // the visitor's browser re-parses too: CSSOM edits are gone
    scheduleSheet(st);
  }

  function isStyle(el) {
    return el && el.nodeType === 1 && el.localName === "style" && (el.namespaceURI === NS_HTML || el.namespaceURI === NS_SVG);
  }

  function sheetFor(p) {
    if (p.sheet !== undefined && p.sheet !== null) {
      const s = sheets.get(p.sheet);
      return s ? s.state : null;
    }
    const el = ids.get(p.node);
    return isStyle(el) ? styleOf(el) : null;
  }

  function constructed(sid) {
    let s = sheets.get(sid);
    if (!s) {
      const sheet = new win.CSSStyleSheet();
      s = {sheet, state: newSheetState((css) => sheet.replaceSync(css))};
      sheets.set(sid, s);
    }
    return s;
  }

  function adopt(target, sids) {
    const list = [];
    for (const sid of sids || []) {
      const s = sheets.get(sid) || constructed(sid);
      list.push(s.sheet);
    }
    if (target === doc) {
      doc.adoptedStyleSheets = list.concat(viewerSheet ? [viewerSheet] : []);
    } else if (target) {
      target.adoptedStyleSheets = list;
    }
  }

  // ---- attributes ----
  function raw(el) {
    let m = rawAttrs.get(el);
    if (!m) { m = new Map(); rawAttrs.set(el, m); }
    return m;
  }

  function token(el, name) {
    let m = attrTokens.get(el);
    if (!m) { m = new Map(); attrTokens.set(el, m); }
    const t = (m.get(name) || 0) + 1;
    m.set(name, t);
    return () => m.get(name) === t;
  }

  function put(el, name, value) {
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
      stats.skipped++;  // a name the DOM refuses
    }
  }

  // Set now, or leave empty and set once `later` resolves (if nothing newer came meanwhile).
  function putLater(el, name, now, later) {
    const current = token(el, name);
    put(el, name, now);
    const g = gen;
    later.then((v) => {
      if (g !== gen || !current()) return;
      put(el, name, v === null || v === undefined ? now : v);  // failed: stays empty
      relayout();
    });
  }

  function withViewerClasses(el, v) {
    const extra = VIEWER_CLASSES.filter((c) => el.classList.contains(c));
    if (!extra.length) return v;
    return (v === null || v === undefined ? "" : v + " ") + extra.join(" ");
  }

  // The one place where a visitor attribute becomes (or does not become) a DOM attribute.
  function writeAttr(el, name) {
    const v = raw(el).get(name);
    const has = v !== undefined && v !== null;
    const lname = name.toLowerCase();
    const tag = el.localName.toLowerCase();
    const ns = el.namespaceURI;
    const alias = "data-cb-" + lname.replace(/[^a-z0-9-]/g, "-");
    if (attrTokens.has(el)) token(el, name);  // any pending async value for this name is now stale
    if (lname.startsWith("on") || lname === "srcdoc" || lname === "formaction" || lname === "xml:base" ||
        lname === "integrity" || lname === "crossorigin" || lname === "ping" || lname === "manifest" ||
        lname === "imagesrcset" || lname === "imagesizes" || (lname === "http-equiv" && tag === "meta")) {
      put(el, name, null);
      return;
    }
    if (lname === "class") {
      put(el, name, withViewerClasses(el, has ? v : null));
      return;
    }
    if (lname === "style") {
      if (!has) return put(el, name, null);
      if (!/url\(|\\|image-set|@import/i.test(v)) return put(el, name, v);
      const norm = normaliseStyle(v);
      return putLater(el, name, placeholderCssUrls(norm), signCssUrls(norm));
    }
    if (ns === NS_HTML) {
      if ((tag === "a" || tag === "area") && lname === "href") return moveTo(el, name, alias, v, has);
      if (tag === "form" && lname === "action") return moveTo(el, name, alias, v, has);
      if (tag === "link" && (lname === "href" || lname === "rel")) {
        const href = raw(el).get("href");
        const rel = " " + String(raw(el).get("rel") || "").toLowerCase().replace(/\s+/g, " ") + " ";
        if (lname === "rel") put(el, "rel", has ? v : null);
        if (rel.includes(" stylesheet ") && href !== undefined && href !== null) {
          put(el, "data-cb-href", null);
          putLater(el, "href", "", assetUrl(href, "stylesheet"));
        } else {
          token(el, "href");
          put(el, "href", null);
          put(el, "data-cb-href", href !== undefined && href !== null && !isScriptUrl(href) ? href : null);
        }
        return;
      }
      if (tag === "input" && (lname === "src" || lname === "type")) {
        if (lname === "type") put(el, "type", has ? v : null);
        const src = raw(el).get("src");
        const isImage = String(raw(el).get("type") || "").trim().toLowerCase() === "image";
        if (src === undefined || src === null) { put(el, "src", null); return; }
        if (isImage) putLater(el, "src", "", assetUrl(src, "asset"));
        else { token(el, "src"); put(el, "src", null); put(el, "data-cb-src", isScriptUrl(src) ? null : src); }
        return;
      }
      if (!has) return put(el, name, null);
      if (!v.trim() && (lname === "src" || lname === "srcset" || lname === "poster" || lname === "background")) {
        return put(el, name, v);  // an empty URL loads nothing
      }
      if (lname === "src" && (tag === "img" || tag === "source" || tag === "video" || tag === "audio")) {
        return putLater(el, name, "", assetUrl(v, "asset"));
      }
      if (lname === "srcset" && (tag === "img" || tag === "source")) return putLater(el, name, "", signSrcset(v));
      if (lname === "poster" && tag === "video") return putLater(el, name, "", assetUrl(v, "asset"));
      if (lname === "background" && BACKGROUND_TAGS.has(tag)) return putLater(el, name, null, assetUrl(v, "asset"));
      if (lname === "src" && tag === "track") return moveTo(el, name, alias, v, has);
      if (lname === "content" && tag === "meta" && containsScriptUrl(v)) return put(el, name, null);
      if (URL_ATTRS.has(lname) && isScriptUrl(v)) return put(el, name, null);
      return put(el, name, v);
    }
    if (ns === NS_SVG) {
      if (lname === "href" || lname === "xlink:href") {
        if (!has) { put(el, name, null); put(el, alias, null); return; }
        if (tag === "a") return moveTo(el, name, alias, v, has);
        if (isFragment(v)) return put(el, name, v);
        if (tag === "image" || tag === "feimage") return putLater(el, name, null, assetUrl(v, "asset"));
        return put(el, name, null);  // external <use> and friends would bypass the proxy
      }
      if (SVG_ANIMATIONS.has(tag)) {
        if (lname === "attributename" || lname === "to" || lname === "from" || lname === "values" || lname === "by") {
          // Animating a link target or a handler could turn it into a script URL: never.
          const target = String(raw(el).get("attributeName") || "").trim().toLowerCase();
          const bad = target.startsWith("on") || /(^|:)href$/.test(target) || URL_ATTRS.has(target) || target === "style";
          for (const a of ["attributeName", "to", "from", "values", "by"]) {
            const av = raw(el).get(a);
            if (av === undefined || av === null) { put(el, a, null); continue; }
            // An animated url() to another document would load it from the origin.
            const drop = a === "attributeName" ? bad : containsScriptUrl(av) || /url\(\s*['"]?\s*[^#'"\s)]/i.test(av);
            put(el, a, drop ? null : av);
          }
          return;
        }
      }
      if (!has) return put(el, name, null);
      if (URL_ATTRS.has(lname) && isScriptUrl(v)) return put(el, name, null);
      if (/url\(|\\/i.test(v)) {
        if (v.includes("\\")) return put(el, name, null);
        return putLater(el, name, placeholderCssUrls(v), signCssUrls(v));
      }
      return put(el, name, v);
    }
    if (ns === NS_MATH && (lname === "href" || lname === "xlink:href")) return moveTo(el, name, alias, v, has);
    if (!has) return put(el, name, null);
    if (URL_ATTRS.has(lname) && isScriptUrl(v)) return put(el, name, null);
    return put(el, name, v);
  }

  function moveTo(el, name, alias, v, has) {
    put(el, name, null);
    put(el, alias, has && !isScriptUrl(v) ? v : null);
  }

  // ---- building nodes ----
  function blockedTag(n, lower) {
    if (n.ns === "svg") return BLOCKED_SVG.has(lower);
    if (n.ns === "math") return false;
    if (BLOCKED_HTML.has(lower)) return true;
    if (lower === "meta" && n.a) {
      for (const k of Object.keys(n.a)) if (k.toLowerCase() === "http-equiv") return true;
    }
    return false;
  }

  function register(id, node) {
    if (typeof id === "number" || typeof id === "string") {
      const old = ids.get(id);
      if (old && old !== node && old.isConnected && old.parentNode) {
        unregister(old);
        old.parentNode.removeChild(old);
      }
      ids.set(id, node);
      rev.set(node, id);
    }
  }

  function unregister(node) {
    const walk = (n) => {
      const id = rev.get(n);
      if (id !== undefined && ids.get(id) === n) ids.delete(id);
      if (n.nodeType === 1) {
        desiredScroll.delete(n);
        if (n.shadowRoot) for (const c of n.shadowRoot.childNodes) walk(c);
      }
      for (const c of n.childNodes) walk(c);
    };
    walk(node);
  }

  function build(n, parent) {
    if (!n || typeof n !== "object") throw new Error("bad node");
    if (n.x !== undefined) {
      const t = doc.createTextNode("");
      if (isStyle(parent)) rawText.set(t, String(n.x));  // its CSS goes through the proxy first
      else t.data = String(n.x);
      register(n.id, t);
      return t;
    }
    if (n.cm !== undefined) {
      const c = doc.createComment(String(n.cm));
      register(n.id, c);
      return c;
    }
    const tag = String(n.tag || "");
    const lower = tag.toLowerCase();
    let el;
    if (blockedTag(n, lower)) {
      el = blockedElement(n, lower);
    } else {
      try {
        const uri = nodeNsUri(n.ns);
        el = uri === NS_HTML ? doc.createElement(lower) : doc.createElementNS(uri, tag);
      } catch (e) {
        el = doc.createElement("cb-blocked");
        el.setAttribute("data-tag", "invalid");
        stats.skipped++;
      }
      const attrs = n.a && typeof n.a === "object" ? n.a : {};
      const m = raw(el);
      for (const k of Object.keys(attrs)) if (attrs[k] !== null && attrs[k] !== undefined) m.set(k, String(attrs[k]));
      for (const k of m.keys()) writeAttr(el, k);
    }
    register(n.id, el);
    const kids = Array.isArray(n.c) ? n.c : [];
    for (const c of kids) {
      try { el.appendChild(build(c, el)); } catch (e) { stats.skipped++; }
    }
    if (isStyle(el)) {
      const st = styleOf(el);
      if (typeof n.css === "string") { st.cssField = n.css; st.raw = n.css; }
      restyle(el);
    }
    formState(el, n);
    if (n.sh && typeof n.sh === "object" && el.localName !== "cb-blocked") {
      try {
        const root = el.attachShadow({mode: "open"});
        for (const c of Array.isArray(n.sh.c) ? n.sh.c : []) {
          try { root.appendChild(build(c, null)); } catch (e) { stats.skipped++; }
        }
        if (Array.isArray(n.sh.adopted)) adopt(root, n.sh.adopted);
      } catch (e) {
        stats.skipped++;
      }
    }
    if (Array.isArray(n.sc)) {
      desiredScroll.set(el, [Number(n.sc[0]) || 0, Number(n.sc[1]) || 0]);
    }
    return el;
  }

  function blockedElement(n, lower) {
    const el = doc.createElement("cb-blocked");
    el.setAttribute("data-tag", lower);
    // A shadow root without a slot: whatever the visitor put inside never renders.
    try { el.attachShadow({mode: "closed"}); } catch (e) { /* renders nothing anyway */ }
    if (BOXED.has(lower) && n.a) {
      const m = raw(el);
      for (const k of Object.keys(n.a)) if (BOX_ATTRS.has(k.toLowerCase())) m.set(k.toLowerCase(), String(n.a[k]));
      const w = m.get("width");
      const h = m.get("height");
      const size = (w && /^\d+(\.\d+)?$/.test(w.trim()) ? `width:${w.trim()}px;` : "") + (h && /^\d+(\.\d+)?$/.test(h.trim()) ? `height:${h.trim()}px;` : "");
      if (size) m.set("style", size + (m.get("style") || ""));
      m.delete("width");
      m.delete("height");
      for (const k of m.keys()) writeAttr(el, k);
    }
    return el;
  }

  // Only where `value` is the live value: on checkboxes, hidden, buttons... it is the attribute.
  const NO_LIVE_VALUE = new Set(["checkbox", "radio", "hidden", "submit", "reset", "button", "image", "file"]);
  function setValue(el, v) {
    if (!("value" in el) || el.localName === "cb-blocked" || el.localName === "option") return;
    if (el.localName === "input" && NO_LIVE_VALUE.has(String(el.type).toLowerCase())) return;
    if (el.localName === "select" && el.multiple) return;  // its options' "sl" say it all
    el.value = String(v);
  }

  function formState(el, n) {
    try {
      if (n.v !== undefined && n.v !== null) setValue(el, n.v);
      if (n.ck !== undefined && "checked" in el) el.checked = !!n.ck;
      if (n.sl !== undefined && "selected" in el) el.selected = !!n.sl;
    } catch (e) {
      stats.skipped++;
    }
  }

  // ---- snapshot ----
  function applySnapshot(snap) {
    if (!snap || typeof snap !== "object") throw new Error("bad snapshot");
    gen++;
    stats.snapshots++;
    ids.clear();
    sheets.clear();
    desiredScroll.clear();
    hovered = [];
    focused = null;
    highlighted.clear();
    base = null;
    for (const cand of [snap.base, snap.url]) {
      try {
        const u = new URL(String(cand));
        if (u.protocol === "http:" || u.protocol === "https:") { base = u.href; break; }
      } catch (e) { /* next */ }
    }
    info = {url: snap.url || null, title: snap.title || null};
    win = iframe.contentWindow;
    doc = iframe.contentDocument;
    // A fresh document in the right parsing mode: the constant strings below are ours.
    doc.open();
    if (!wantsQuirks(snap.dt)) doc.write("<!DOCTYPE html>");
    doc.close();
    doc = iframe.contentDocument;
    while (doc.firstChild) doc.removeChild(doc.firstChild);
    if (snap.dt && typeof snap.dt === "object") {  // "<!DOCTYPE >" has an empty name
      try {
        doc.appendChild(doc.implementation.createDocumentType(String(snap.dt.name), String(snap.dt.pub || ""), String(snap.dt.sys || "")));
      } catch (e) { stats.skipped++; }
    }
    for (const entry of canvasRules.values()) if (entry.url) URL.revokeObjectURL(entry.url);
    canvasRules = new Map();
    viewerSheet = new win.CSSStyleSheet();
    viewerSheet.replaceSync(VIEWER_CSS);
    for (const s of Array.isArray(snap.sheets) ? snap.sheets : []) {
      const c = constructed(s.sid);
      c.state.raw = String(s.css || "");
      scheduleSheet(c.state);
    }
    adopt(doc, Array.isArray(snap.adopted) ? snap.adopted : []);
    if (snap.root && typeof snap.root === "object") doc.appendChild(build(snap.root, null));  // null: an empty document
    listen();
    if (Array.isArray(snap.vw)) setViewport(snap.vw[0], snap.vw[1]);
    winScroll = Array.isArray(snap.scroll) ? [Number(snap.scroll[0]) || 0, Number(snap.scroll[1]) || 0] : [0, 0];
    setFocus(snap.focus === undefined ? null : snap.focus);
    relayout();  // scrolling needs a layout: let the next frame do it rather than force one now
    onInfo(info);
  }

  // Scroll positions are re-applied when stylesheets and images arrive and the page grows.
  function applyScroll() {
    if (!doc) return;
    try {
      // scrollTo of the current position is a no-op, and cheaper than reading it back.
      if (winScroll[0] || winScroll[1] || win.scrollX || win.scrollY) win.scrollTo(winScroll[0], winScroll[1]);
    } catch (e) { /* detached */ }
    for (const [el, [x, y]] of desiredScroll) {
      if (el.scrollLeft !== x) el.scrollLeft = x;
      if (el.scrollTop !== y) el.scrollTop = y;
    }
  }
  let relayoutPending = false;
  function relayout() {
    if (relayoutPending) return;
    relayoutPending = true;
    const run = () => { relayoutPending = false; applyScroll(); paintHighlights(); };
    if (typeof requestAnimationFrame === "function") requestAnimationFrame(run);
    else setTimeout(run, 16);
  }

  function noSubmit(e) { e.preventDefault(); }

  function listen() {
    // document.open() dropped listeners on the old document: resources that change layout.
    doc.addEventListener("load", relayout, true);
    // Without allow-forms the sandbox blocks submission; this holds even without a sandbox
    // (an action-less form would submit to the iframe's own URL, target=_top to the embed).
    doc.addEventListener("submit", noSubmit, true);
  }

  // ---- incremental events ----
  function applyMutation(m) {
    const touchedStyles = new Set();
    const noteParent = (p) => { if (isStyle(p)) touchedStyles.add(p); };
    for (const id of Array.isArray(m.rem) ? m.rem : []) {
      const node = ids.get(id);
      if (!node) { stats.skipped++; continue; }
      const p = node.parentNode;
      noteParent(p);
      unregister(node);
      if (p) p.removeChild(node);
    }
    for (const add of Array.isArray(m.adds) ? m.adds : []) {
      try {
        const parent = add && (add.p === 0 ? doc : ids.get(add.p));
        if (!parent || !add.n) { stats.skipped++; continue; }
        const before = add.b === null || add.b === undefined ? null : ids.get(add.b);
        if (add.b !== null && add.b !== undefined && !before) { stats.skipped++; continue; }
        const node = build(add.n, parent);
        if (before && before.parentNode === parent) parent.insertBefore(node, before);
        else {
          if (before) stats.skipped++;  // `b` is not a child of `p`: append rather than lose it
          parent.appendChild(node);
        }
        noteParent(parent);
      } catch (e) {
        stats.skipped++;
      }
    }
    for (const ch of Array.isArray(m.attr) ? m.attr : []) {
      const el = ch && ids.get(ch.id);
      if (!el || el.nodeType !== 1 || !ch.a || typeof ch.a !== "object") { stats.skipped++; continue; }
      if (el.localName === "cb-blocked") continue;  // blocked stays blocked, whatever it becomes
      for (const k of Object.keys(ch.a)) {
        const v = ch.a[k];
        if (v === null || v === undefined) raw(el).delete(k);
        else raw(el).set(k, String(v));
        try { writeAttr(el, k); } catch (e) { stats.skipped++; }
      }
    }
    for (const t of Array.isArray(m.text) ? m.text : []) {
      const node = t && ids.get(t.id);
      if (!node || (node.nodeType !== 3 && node.nodeType !== 8)) { stats.skipped++; continue; }
      if (node.nodeType === 3 && isStyle(node.parentNode)) {
        rawText.set(node, String(t.x));
        const st = styleOf(node.parentNode);
        st.cssField = null;
        touchedStyles.add(node.parentNode);
      } else {
        node.data = String(t.x);
      }
    }
    for (const st of touchedStyles) {
      const s = styleOf(st);
      s.cssField = null;
      restyle(st);
    }
    relayout();
  }

  function applyInput(p) {
    const el = ids.get(p.id);
    if (!el || el.nodeType !== 1) { stats.skipped++; return; }
    if (p.v !== undefined && p.v !== null) setValue(el, p.v);
    if (p.ck !== undefined && "checked" in el) el.checked = !!p.ck;
    if (Array.isArray(p.sel) && el.options) {
      const sel = new Set(p.sel.map(Number));
      Array.from(el.options).forEach((o, i) => { o.selected = sel.has(i); });
    }
  }

  function applyScrollEvent(p) {
    const x = Number(p.x) || 0;
    const y = Number(p.y) || 0;
    if (!p.id) {
      winScroll = [x, y];
    } else {
      const el = ids.get(p.id);
      if (!el || el.nodeType !== 1) { stats.skipped++; return; }
      desiredScroll.set(el, [x, y]);
    }
    applyScroll();
  }

  function classOn(el, cls, on) {
    if (!el || el.nodeType !== 1) return;
    el.classList.toggle(cls, on);
    if (!el.classList.length && !raw(el).has("class")) el.removeAttribute("class");
  }

  function parentOf(n) {
    if (n.parentNode && n.parentNode.nodeType === 11 && n.parentNode.host) return n.parentNode.host;
    return n.parentNode;
  }

  function setHover(id) {
    for (const el of hovered) classOn(el, "cb-hover", false);
    hovered = [];
    if (id === null || id === undefined) return;
    let el = ids.get(id);
    if (!el) { stats.skipped++; return; }
    if (el.nodeType !== 1) el = parentOf(el);
    while (el && el.nodeType === 1) {  // :hover matches the ancestors too
      classOn(el, "cb-hover", true);
      hovered.push(el);
      el = parentOf(el);
    }
  }

  function setFocus(id) {
    if (focused) classOn(focused, "cb-focus", false);
    focused = null;
    if (id === null || id === undefined) return;
    const el = ids.get(id);
    if (!el || el.nodeType !== 1) { stats.skipped++; return; }
    classOn(el, "cb-focus", true);
    focused = el;
  }

  function setViewport(w, h) {
    w = Math.max(1, Math.min(20000, Number(w) || 0));
    h = Math.max(1, Math.min(20000, Number(h) || 0));
    viewport = [w, h];
    layout();
    relayout();
  }

  function applyCanvas(p) {
    const el = ids.get(p.id);
    if (!el || el.localName !== "canvas" || !(p.d instanceof Uint8Array)) { stats.skipped++; return; }
    const mime = p.mime === "image/png" || p.mime === "image/webp" || p.mime === "image/jpeg" ? p.mime : "image/png";
    const n = (canvasSeq.get(el) || 0) + 1;
    canvasSeq.set(el, n);
    const g = gen;
    const blob = new Blob([p.d], {type: mime});
    createImageBitmap(blob).then((bmp) => {
      if (g !== gen || canvasSeq.get(el) !== n) return;  // a newer image arrived first
      // Keep the visitor's own width/height attributes (layout); the image may be scaled down.
      const ctx = el.getContext("2d");
      if (ctx) {
        ctx.clearRect(0, 0, el.width, el.height);
        ctx.drawImage(bmp, 0, 0, el.width, el.height);
      }
      if (bmp.close) bmp.close();
      showCanvas(el, p.id, blob);
    }, () => { stats.skipped++; });
  }

  // The replica runs with scripting disabled, and a <canvas> in such a document renders as
  // its fallback content, with no size and no bitmap. So the image is also shown as the
  // element's background, by a zero-specificity rule in the viewer's own sheet: the page's
  // CSS still decides the canvas's size and display where it says anything.
  function showCanvas(el, id, blob) {
    if (!viewerSheet || !Number.isInteger(id)) return;
    el.setAttribute("data-cb-canvas", String(id));
    let entry = canvasRules.get(id);
    if (!entry) {
      const i = viewerSheet.cssRules.length;
      viewerSheet.insertRule(`:where(canvas[data-cb-canvas="${id}"]) {}`, i);
      entry = {rule: viewerSheet.cssRules[i], url: null};
      canvasRules.set(id, entry);
    }
    const url = URL.createObjectURL(blob);
    entry.rule.style.setProperty("width", `${el.width}px`);
    entry.rule.style.setProperty("height", `${el.height}px`);
    entry.rule.style.setProperty("background-image", `url("${url}")`);
    if (entry.url) URL.revokeObjectURL(entry.url);
    entry.url = url;
  }

  function applyCss(p) {
    if (p.op === "adopt") {
      const target = !p.host ? doc : (ids.get(p.host) && ids.get(p.host).shadowRoot);
      if (!target) { stats.skipped++; return; }
      adopt(target, Array.isArray(p.sheets) ? p.sheets : []);
      return;
    }
    if (p.op === "replace") {
      const s = constructed(p.sheet);
      s.state.raw = String(p.css || "");
      s.state.model = null;
      scheduleSheet(s.state);
      return;
    }
    const st = sheetFor(p);
    if (!st) { stats.skipped++; return; }
    if (!st.model) st.model = st.raw.trim() ? parseRules(st.raw) : [];
    const i = Math.max(0, Math.min(st.model.length, Number(p.index) || 0));
    if (p.op === "insert") st.model.splice(i, 0, String(p.rule || ""));
    else if (p.op === "delete") {
      if (i < st.model.length) st.model.splice(i, 1);
      else stats.skipped++;
    } else { stats.unknown++; return; }
    scheduleSheet(st);
  }

  function toOverlay(x, y) {
    return [(Number(x) || 0) * scale, (Number(y) || 0) * scale];
  }

  function showPointer(p) {
    const [x, y] = toOverlay(p.x, p.y);
    dot.style.left = x + "px";
    dot.style.top = y + "px";
    dot.style.display = "block";
  }

  function ripple(p, color) {
    const [x, y] = toOverlay(p.x, p.y);
    const r = edoc.createElement("div");
    Object.assign(r.style, {position: "absolute", left: x + "px", top: y + "px", width: "30px", height: "30px",
      margin: "-15px 0 0 -15px", borderRadius: "50%", border: "3px solid " + (color || "rgba(230,60,30,.9)"),
      boxSizing: "border-box", pointerEvents: "none"});
    overlay.appendChild(r);
    const done = () => r.remove();
    if (r.animate) {
      const a = r.animate([{transform: "scale(.3)", opacity: 1}, {transform: "scale(1.6)", opacity: 0}], {duration: 600, easing: "ease-out"});
      a.onfinish = done;
    }
    setTimeout(done, 700);
  }

  function apply(kind, payload) {
    if (destroyed) return;
    stats.events++;
    try {
      if (kind === "snapshot") {
        if (payload && payload.d !== undefined && payload.n !== undefined) return snapshotPart(payload);
        return applySnapshot(payload);
      }
      if (kind === "nav") {
        info = {url: payload && payload.url || null, title: payload && payload.title || null};
        onInfo(info);
        return;
      }
      if (!doc) { stats.skipped++; return; }  // nothing to change before the first snapshot
      if (!payload || typeof payload !== "object") { stats.skipped++; return; }
      switch (kind) {
        case "mutation": return applyMutation(payload);
        case "input": return applyInput(payload);
        case "scroll": return applyScrollEvent(payload);
        case "hover": return setHover(payload.id);
        case "focus": return setFocus(payload.id);
        case "viewport": return setViewport(payload.w, payload.h);
        case "canvas": return applyCanvas(payload);
        case "css": return applyCss(payload);
        case "pointer": return showPointer(payload);
        case "click": return ripple(payload);
        default: stats.unknown++;
      }
    } catch (e) {
      stats.errors++;
      if (typeof console !== "undefined") console.warn("cobrowse viewer:", kind, e);
    }
  }

  // Snapshot parts {i, n, d} are consecutive; part 0 starts a new one.
  const utf8dec = new TextDecoder();
  function snapshotPart(p) {
    const i = Number(p.i);
    const n = Number(p.n);
    const d = p.d instanceof Uint8Array ? p.d : Array.isArray(p.d) ? Uint8Array.from(p.d)
      : typeof p.d === "string" ? new TextEncoder().encode(p.d) : null;
    if (!d || !(n >= 1)) { stats.skipped++; return; }
    if (i === 0) snapParts = {n, parts: []};
    if (!snapParts || snapParts.n !== n || snapParts.parts.length !== i) { snapParts = null; stats.skipped++; return; }
    snapParts.parts.push(d);
    if (snapParts.parts.length < n) return;
    const parts = snapParts.parts;
    snapParts = null;
    const total = parts.reduce((a, b) => a + b.length, 0);
    const all = new Uint8Array(total);
    let o = 0;
    for (const b of parts) { all.set(b, o); o += b.length; }
    applySnapshot(JSON.parse(utf8dec.decode(all)));
  }

  // ---- the agent's actions over the replica ----
  let lastPointerSent = 0;
  let pointerTimer = null;
  let pointerLatest = null;
  function toVisitor(e) {
    const r = overlay.getBoundingClientRect();
    return {x: Math.round((e.clientX - r.left) / scale), y: Math.round((e.clientY - r.top) / scale)};
  }
  function sendPointer() {
    pointerTimer = null;
    if (!pointerLatest) return;
    lastPointerSent = Date.now();
    const p = pointerLatest;
    pointerLatest = null;
    onAgentEvent("pointer", p);
  }
  function onMove(e) {
    pointerLatest = toVisitor(e);
    const wait = 50 - (Date.now() - lastPointerSent);
    if (wait <= 0) sendPointer();
    else if (!pointerTimer) pointerTimer = setTimeout(sendPointer, wait);
  }
  function elementAt(x, y) {
    if (!doc) return null;
    let el = doc.elementFromPoint(x, y);
    while (el && el.shadowRoot) {  // open shadow roots: the deepest element we built
      const inner = el.shadowRoot.elementFromPoint(x, y);
      if (!inner || inner === el) break;
      el = inner;
    }
    while (el && rev.get(el) === undefined) el = parentOf(el);
    return el;
  }
  function onClick(e) {
    const p = toVisitor(e);
    if (highlightMode || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) {
      const el = elementAt(p.x, p.y);
      if (!el) return;
      const id = rev.get(el);
      const on = !highlighted.has(id);
      toggleHighlight(id, on);
      onAgentEvent("highlight", {id, on});
    } else {
      ripple(p, "rgba(30,110,230,.9)");
      onAgentEvent("click", p);
    }
  }
  function toggleHighlight(id, on) {
    const el = ids.get(id);
    if (on) highlighted.add(id); else highlighted.delete(id);
    if (el && el.nodeType === 1) classOn(el, "cb-agent-hl", on);
  }
  function paintHighlights() {
    for (const id of highlighted) {
      const el = ids.get(id);
      if (el && el.nodeType === 1 && !el.classList.contains("cb-agent-hl")) classOn(el, "cb-agent-hl", true);
    }
  }
  if (interactive) {
    glass.addEventListener("pointermove", onMove);
    glass.addEventListener("click", onClick);
  }

  function destroy() {
    destroyed = true;
    gen++;
    if (resizeObs) resizeObs.disconnect();
    clearTimeout(pointerTimer);
    overlay.remove();
    ids.clear();
    sheets.clear();
  }

  return {
    applySnapshot: (s) => { try { applySnapshot(s); } catch (e) { stats.errors++; throw e; } },
    apply,
    nodeById: (id) => ids.get(id) || null,
    idOf: (node) => rev.get(node),
    stats: () => Object.assign({}, stats),
    info: () => Object.assign({}, info),
    viewport: () => viewport.slice(),
    scale: () => scale,
    setHighlightMode: (on) => { highlightMode = !!on; glass.style.cursor = on ? "crosshair" : "default"; },
    highlightMode: () => highlightMode,
    highlight: (id, on) => toggleHighlight(id, on !== false),
    layout,
    destroy,
    get document() { return doc; },
  };
}

// Inside the replica only (adopted, so it is not a node of the visitor's tree). Zero
// specificity where the page's own rules should win; !important where they must not.
const VIEWER_CSS = `
cb-blocked { display: none !important; }
cb-blocked:is([data-tag="iframe"],[data-tag="frame"],[data-tag="object"],[data-tag="embed"],[data-tag="portal"],[data-tag="fencedframe"],[data-tag="applet"]) { display: inline-block !important; }
:where(cb-blocked) { width: 300px; height: 150px; box-sizing: border-box; border: 1px dashed #aaa;
  background: repeating-linear-gradient(45deg, #f4f4f4 0 10px, #e8e8e8 10px 20px); vertical-align: bottom; }
.cb-focus { outline: 2px solid #f59e0b !important; outline-offset: 1px !important; }
.cb-agent-hl { outline: 3px solid #2563eb !important; outline-offset: 2px !important; }
:where(canvas) { display: inline-block; background: no-repeat 0 0 / 100% 100%;
  width: attr(width px, 300px); height: attr(height px, 150px); }
canvas > * { display: none !important; }
`;

// ---- the /embed page ----

function parseFragment(hash) {
  const out = {};
  for (const part of String(hash || "").replace(/^#/, "").split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? "" : part.slice(eq + 1);
    try { out[decodeURIComponent(k)] = decodeURIComponent(v); } catch (e) { /* ignore a bad pair */ }
  }
  return out;
}

async function postJson(url, bearer, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + bearer},
    body: JSON.stringify(body || {}),
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error && data.error.message) || ("HTTP " + r.status));
    err.code = (data && data.error && data.error.code) || "http_" + r.status;
    err.status = r.status;
    throw err;
  }
  return data || {};
}

function embed(options) {
  options = options || {};
  const d = document;
  const frame = options.iframe || d.getElementById("cb-frame");
  const statusEl = options.status || d.getElementById("cb-status");
  const hlButton = options.highlightButton || d.getElementById("cb-highlight");
  const titleEl = d.getElementById("cb-title");
  const routerBase = options.router || location.origin;
  const params = parseFragment(options.hash !== undefined ? options.hash : location.hash);
  const current = {replayer: null, wire: null, state: "connecting", sid: null, proxy: null, error: null};
  CobrowseViewer.current = current;

  const post = (event, extra) => {
    if (window.parent && window.parent !== window) {
      try { window.parent.postMessage(Object.assign({type: "cobrowse", event}, extra || {}), "*"); } catch (e) { /* detached */ }
    }
  };
  const LABELS = {connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", ended: "Session ended", error: "Error"};
  const setStatus = (state, text) => {
    current.state = state;
    if (statusEl) {
      statusEl.textContent = text || LABELS[state] || state;
      statusEl.setAttribute("data-state", state);
    }
  };
  setStatus("connecting");

  const fail = (err) => {
    current.error = {code: err.code || "error", message: String(err.message || err)};
    setStatus("error", "Error: " + current.error.message);
    post("error", {code: current.error.code, message: current.error.message});
  };

  (async () => {
    let sid = params.sid;
    let token = params.token;
    let gateways = null;
    let proxy = null;
    if (params.code && params.key) {
      const r = await postJson(routerBase + "/v1/sessions/lookup", params.key, {code: params.code});
      sid = r.session_id;
      token = r.agent_token;
      gateways = r.gateways;
      proxy = r.proxy || null;
    }
    if (!sid || !token) throw Object.assign(new Error("the link has no session (#sid=…&token=… or #code=…&key=…)"), {code: "bad_link"});
    const connect = () => postJson(routerBase + "/v1/sessions/" + encodeURIComponent(sid) + "/connect", token, {});
    if (!gateways || !proxy) {
      const r = await connect();
      gateways = r.gateways || gateways;
      proxy = r.proxy || proxy;
    }
    proxy = proxy ? String(proxy).replace(/\/+$/, "") : null;
    current.sid = sid;
    current.proxy = proxy;

    const sign = async (urls, kind) => {
      if (!proxy) return urls.map(() => null);
      const r = await postJson(proxy + "/v1/sign", token, {urls, kind});
      if (!Array.isArray(r.urls)) return urls.map(() => null);
      return r.urls.map((u) => (typeof u === "string" ? new URL(u, proxy + "/").href : null));
    };
    // Without a proxy the page's CSS could only load from its origin: show it unstyled.
    const rewriteCss = async (css, baseUrl) => {
      if (!proxy) return "";
      const r = await postJson(proxy + "/v1/rewrite", token, {css, base_url: baseUrl});
      return typeof r.css === "string" ? r.css : "";
    };

    let wire = null;
    const rp = replayer(frame, {
      sign,
      rewriteCss,
      onAgentEvent: (kind, payload) => { if (wire) wire.send(kind, payload); },
      onInfo: (i) => {
        if (titleEl) titleEl.textContent = i.title || i.url || "";
        post("page", {url: i.url, title: i.title});
      },
    });
    current.replayer = rp;
    if (hlButton) {
      hlButton.addEventListener("click", () => {
        const on = !rp.highlightMode();
        rp.setHighlightMode(on);
        hlButton.setAttribute("aria-pressed", on ? "true" : "false");
      });
    }
    wire = new CobrowseWire({
      role: "agent",
      sid,
      token,
      gateways: gateways || [],
      refreshGateways: async () => (await connect()).gateways,
      onEvents(events) {
        for (const e of events) rp.apply(e.kind, e.payload);
      },
      onControl(ctl) { /* "reset": the snapshot that follows resets the replica anyway */ void ctl; },
      onState(s, detail) {
        const err = detail && detail.error;
        const why = s === "ended" && detail && detail.code && detail.code !== 1000 && detail.code !== 4004
          ? ` (${(err && err.msg) || "code " + detail.code})` : "";
        setStatus(s, why ? LABELS[s] + why : undefined);
        if (s === "live" || s === "ended" || s === "reconnecting") post(s, detail && detail.code ? {code: detail.code} : {});
      },
    });
    current.wire = wire;
    wire.start();
    // Closing the viewer says bye, so the visitor hears "agent-left" at once; a dropped
    // connection is not reported (it may resume).
    window.addEventListener("pagehide", () => wire.end("agent closed the viewer"));
  })().catch(fail);
  return current;
}

const CobrowseViewer = {replayer, embed, parseFragment, current: null};
window.CobrowseViewer = CobrowseViewer;

if (typeof document !== "undefined" && document.documentElement && document.documentElement.hasAttribute("data-cobrowse-embed")) {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => embed());
  else embed();
}
