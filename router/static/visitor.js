/* visitor.js: the visitor's snippet, window.Cobrowse. Contract: docs/browser.md.
 * Runs inside the bundle's function scope after wire.js (MessagePack, CobrowseWire are locals).
 * Everything private is masked here, before serialization (G4): the real value of a private
 * field never goes into any payload. */

// Own scope: wire.js shares the bundle's function scope, so names here cannot clash with it.
(function () {
// Captured at load time: document.currentScript is null once this script has run.
const CB_SCRIPT = document.currentScript;
const CB_CFG = (() => {
  const s = CB_SCRIPT;
  const attr = (n) => (s && s.getAttribute(n)) || null;
  let base = null;
  if (s && s.src) {
    try { base = new URL(".", s.src).href.replace(/\/$/, ""); } catch (e) { base = null; }
  }
  let maskSelector = attr("data-mask-selector");
  if (maskSelector) {
    try { document.createDocumentFragment().querySelector(maskSelector); } catch (e) {
      console.warn("cobrowse: data-mask-selector is not a valid selector; ignored");
      maskSelector = null;
    }
  }
  return {
    base,
    siteKey: attr("data-site-key"),
    agentName: attr("data-agent-name") || "a support agent",
    maskSelector,
  };
})();

const STORE_KEY = "cobrowse";
const CANVAS_MAX = 120 * 1024;
const CANVAS_EVERY_MS = 500;
const SCROLL_MS = 100;
const POINTER_MS = 50;
const MO_OPTS = { subtree: true, childList: true, attributes: true, characterData: true };
// A private element keeps only the attributes that shape it (any other may carry its
// content: value, title, data-*, ...). Those are masked like the value; URLs are emptied,
// so the viewer never asks for a made-up address.
const KEEP_ATTRS = new Set([
  "id", "class", "style", "type", "name", "role", "for", "tabindex", "hidden", "disabled",
  "readonly", "required", "multiple", "rows", "cols", "size", "maxlength", "minlength",
  "width", "height", "autocomplete", "inputmode", "dir", "lang", "slot", "part",
  "aria-hidden", "data-cobrowse-private", "colspan", "rowspan", "viewBox", "xmlns",
]);
const URL_ATTRS = new Set(["href", "src", "srcset", "poster", "action", "formaction", "data", "background", "xlink:href", "ping"]);
function maskAttr(name, value) {
  if (KEEP_ATTRS.has(name)) return value;
  return URL_ATTRS.has(name) ? "" : mask(value);
}

// ---- node ids: one counter per page load, kept across snapshots ----
const ids = new WeakMap();
// Some frameworks replace MutationObserver before any other script runs (Salesforce LWC,
// Angular zones): take the browser's own constructor from a fresh same-origin iframe, as
// rrweb does. Only when the page's one is not native, so most pages never see the iframe.
let nativeMO = null;
function nativeMutationObserver() {
  if (nativeMO) return nativeMO;
  const MO = window.MutationObserver;
  let native = false;
  try { native = /\[native code\]/.test(Function.prototype.toString.call(MO)); } catch (e) { /* a Proxy */ }
  nativeMO = MO;
  if (!native) {
    try {
      const f = document.createElement("iframe");
      f.style.display = "none";
      (document.body || document.documentElement).appendChild(f);
      const fresh = f.contentWindow && f.contentWindow.MutationObserver;
      f.remove();
      if (fresh) nativeMO = fresh;
    } catch (e) { /* keep the page's own and hope */ }
  }
  return nativeMO;
}

const byId = new Map(); // id -> WeakRef(node): agent highlights name nodes by id
let nextId = 1;
const idOf = (n) => ids.get(n);
function idFor(n) {
  let i = ids.get(n);
  if (i === undefined) {
    i = nextId++;
    ids.set(n, i);
    byId.set(i, new WeakRef(n));
  }
  return i;
}
function nodeOf(id) {
  const r = byId.get(id);
  return r ? r.deref() : undefined;
}
function pruneIds() {
  for (const [i, r] of byId) if (!r.deref()) byId.delete(i);
}

// Our own elements (overlay, consent prompt): never serialized, never observed.
const ours = new WeakSet();

// ---- privacy (G4) ----
// Sticky: a field that was private once (a password shown as text) stays private.
const sticky = new WeakSet();
function selfPrivate(el) {
  if (el.nodeType !== 1) return false;
  if (sticky.has(el)) return true;
  let p = false;
  if (el.localName === "input" && ((el.getAttribute("type") || "").toLowerCase() === "password" || el.type === "password")) p = true;
  // cc-* (the contract), and passwords or one-time codes shown as text.
  else if (/(^|\s)(cc-|current-password|new-password|one-time-code)/i.test(el.getAttribute("autocomplete") || "")) p = true;
  else if (el.hasAttribute("data-cobrowse-private")) p = true;
  else if (CB_CFG.maskSelector) {
    try { p = el.matches(CB_CFG.maskSelector); } catch (e) { p = false; }
  }
  if (p) sticky.add(el);
  return p;
}
// Parent, crossing from a shadow root to its host.
function up(n) {
  const p = n.parentNode;
  return p && p.nodeType === 11 ? p.host || null : p;
}
function isPrivate(n) {
  for (let x = n; x; x = up(x)) if (x.nodeType === 1 && selfPrivate(x)) return true;
  return false;
}
// A private value (a field's value, an attribute, a comment) becomes this one mask whatever
// its length: "*" per character would tell "mastercard" (10) from "visa" (4) among a select's
// choices, and a PIN from a card number. An empty value stays empty: the agent may see that a
// field is filled in, never what with nor how much (docs/browser.md).
const MASK = "********";
const mask = (s) => (String(s) === "" ? "" : MASK);
// Private text keeps its whitespace (as rrweb does), so it still wraps where the real
// text would and the agent's layout holds; every other character becomes "*".
const MAX_MASK_TEXT = 4096;
const maskText = (s) => String(s).slice(0, MAX_MASK_TEXT).replace(/\S/g, "*");
// Text that is a field's value or choice (an <option>'s label, a <textarea>'s first value) is
// masked as a value: its word shape would tell the choices (and a textarea's value) apart.
const VALUE_TEXT = new Set(["option", "textarea"]);
// A private field's scroll offset follows its real value (a long input scrolls to its end, a
// textarea by its lines): it is never sent, as the mask has its own length.
const FIELD_TAGS = new Set(["input", "textarea", "select"]);
const isField = (el) => el.namespaceURI === NS_HTML && FIELD_TAGS.has(el.localName);
function maskTextNode(t) {
  const p = t.parentNode;
  return p && p.namespaceURI === NS_HTML && VALUE_TEXT.has(p.localName) ? mask(t.data) : maskText(t.data);
}

// Is n part of what we send (connected, not ours, not inside a <script>)?
function inTree(n) {
  if (!n || !n.isConnected) return false;
  for (let x = n; ; ) {
    if (ours.has(x)) return false;
    const p = x.parentNode;
    if (!p) return false;
    if (p === document) return x === document.documentElement;
    if (p.nodeType === 11) {
      if (!p.host || p.host.shadowRoot !== p) return false; // closed shadow roots are not sent
      x = p.host;
      continue;
    }
    if (p.nodeType === 1 && p.localName === "script" && p.namespaceURI === NS_HTML) return false;
    x = p;
  }
}
const sendable = (n) => n.nodeType === 1 || n.nodeType === 3 || n.nodeType === 4 || n.nodeType === 8;
// Nearest element (self or ancestor) that has an id: events name the deepest sent element.
function nearestId(n) {
  for (let x = n; x; x = up(x)) {
    if (ours.has(x)) return null;
    const i = ids.get(x);
    if (i !== undefined && x.nodeType === 1) return i;
  }
  return null;
}
function deepTarget(e) {
  const p = e.composedPath ? e.composedPath() : null;
  return p && p.length ? p[0] : e.target;
}

// ---- stylesheets ----
const sheetIds = new WeakMap(); // constructed sheet -> sid
let nextSid = 1;
function sidFor(sheet) {
  let s = sheetIds.get(sheet);
  if (s === undefined) { s = nextSid++; sheetIds.set(sheet, s); }
  return s;
}
const dirtySheets = new WeakSet(); // changed through the CSSOM while we watched
function sheetText(sheet) {
  try { return Array.from(sheet.cssRules, (r) => r.cssText).join("\n"); } catch (e) { return null; }
}
// CSSOM originals, captured before any patch: we parse with them without emitting events.
const ORIG = {
  insertRule: CSSStyleSheet.prototype.insertRule,
  deleteRule: CSSStyleSheet.prototype.deleteRule,
  replace: CSSStyleSheet.prototype.replace,
  replaceSync: CSSStyleSheet.prototype.replaceSync,
  attachShadow: Element.prototype.attachShadow,
  docAdopted: Object.getOwnPropertyDescriptor(Document.prototype, "adoptedStyleSheets"),
  rootAdopted: Object.getOwnPropertyDescriptor(ShadowRoot.prototype, "adoptedStyleSheets"),
};
// The CSS of a <style> when its CSSOM no longer matches its text (insertRule, CSS-in-JS), else null.
function styleCss(el) {
  const sheet = el.sheet;
  if (!sheet) return null;
  const now = sheetText(sheet);
  if (now === null) return null;
  if (dirtySheets.has(sheet)) return now;
  try {
    const fresh = new CSSStyleSheet();
    ORIG.replaceSync.call(fresh, el.textContent);
    // A constructed sheet drops @import rules: compare without them.
    const noImports = (sh) => Array.from(sh.cssRules).filter((r) => !(r instanceof CSSImportRule)).map((r) => r.cssText).join("\n");
    return noImports(fresh) === noImports(sheet) ? null : now;
  } catch (e) {
    return null;
  }
}

// ---- the recorder: serializer, mutations, input, CSSOM; shared by the wire and _capture ----
let activeRec = null;

function makeRecorder(out) {
  let observer = null;
  let ac = null; // AbortController for our listeners
  let timer = null;
  let ticks = 0;
  let running = false;
  const roots = []; // WeakRef(ShadowRoot) we observe
  let observed = new WeakSet();
  let viewerSheets = new Set(); // sids the viewer knows since the last snapshot
  let lastAdopt = new WeakMap(); // Document/ShadowRoot -> "1,2"
  let canvasLast = new WeakMap(); // canvas -> {h, t}
  // field -> last value sent, masked when private: a keystroke that leaves a private field's
  // mask as it was sends nothing, so the number of events does not count its characters.
  const lastVal = new WeakMap();
  const lastCk = new WeakMap();
  const sentMasked = new WeakSet();
  const sentCss = new WeakSet(); // <style> sent with "css": a new text replaces its CSSOM
  const reAdd = new Set(); // hosts that got a shadow root after they were sent
  let lastHover = null, lastFocus = null;
  const throttles = new Map();

  function emit(kind, payload) {
    try { out(kind, payload); } catch (e) { console.warn("cobrowse: emit failed", e); }
  }
  // Any event naming a node first flushes pending mutations, so the node exists for the viewer.
  function send(kind, payload) {
    flush();
    emit(kind, payload);
  }

  // ---- serializer ----
  function adoptedSids(list, ctx) {
    const sids = [];
    for (const sh of list || []) {
      const sid = sidFor(sh);
      if (!viewerSheets.has(sid)) {
        viewerSheets.add(sid);
        ctx.sheets.push({ sid, css: sheetText(sh) || "" });
      }
      sids.push(sid);
    }
    return sids;
  }
  function observeRoot(sr) {
    if (observed.has(sr)) return;
    observed.add(sr);
    roots.push(new WeakRef(sr));
    if (observer) observer.observe(sr, MO_OPTS);
    if (ac) {
      // scroll and change are not composed: they never reach the document's listeners.
      const o = { capture: true, passive: true, signal: ac.signal };
      sr.addEventListener("scroll", guarded.scroll, o);
      sr.addEventListener("change", guarded.input, o);
    }
  }
  function ser(n, priv, ctx) {
    switch (n.nodeType) {
      case 1: return serEl(n, priv, ctx);
      case 3:
      case 4: return { id: idFor(n), x: priv ? maskTextNode(n) : n.data };
      case 8: return { id: idFor(n), cm: priv ? mask(n.data) : n.data };
      default: return null;
    }
  }
  function serChildren(parent, priv, ctx) {
    const c = [];
    for (let ch = parent.firstChild; ch; ch = ch.nextSibling) {
      if (ours.has(ch)) continue;
      const s = ser(ch, priv, ctx);
      if (s) c.push(s);
    }
    return c;
  }
  function serEl(el, priv, ctx) {
    priv = priv || selfPrivate(el);
    const ns = el.namespaceURI;
    const html = ns === NS_HTML;
    const tag = el.localName;
    const o = { id: idFor(el), tag };
    const nsKey = nodeNsKey(ns);
    if (nsKey) o.ns = nsKey;
    const a = {};
    for (const at of el.attributes) {
      if (at.name === "__proto__") continue;
      a[at.name] = priv ? maskAttr(at.name, at.value) : at.value;
    }
    o.a = a;
    if (priv) { o.m = true; sentMasked.add(el); }
    if (html) {
      if (tag === "input") {
        const t = el.type;
        if (t === "checkbox" || t === "radio") {
          lastCk.set(el, el.checked);
          if (el.checked && !priv) o.ck = true;
        } else if (t !== "file") {
          o.v = priv ? mask(el.value) : el.value;
          lastVal.set(el, o.v);
        }
      } else if (tag === "textarea") {
        o.v = priv ? mask(el.value) : el.value;
        lastVal.set(el, o.v);
      } else if (tag === "select") {
        o.v = priv ? mask(el.value) : el.value;
        lastVal.set(el, el.multiple ? selIndexes(el).join(",") : o.v);
      } else if (tag === "option") {
        if (el.selected && !priv) o.sl = true;
      } else if (tag === "canvas") {
        o.cv = true;
      } else if (tag === "style") {
        const css = styleCss(el);
        if (css !== null) { o.css = css; sentCss.add(el); } else sentCss.delete(el);
      }
    }
    // Reading scroll offsets forces layout: only in full snapshots (new nodes rarely scroll).
    if (ctx.full && el !== document.scrollingElement && !(priv && isField(el)) && (el.scrollLeft || el.scrollTop)) {
      o.sc = [el.scrollLeft, el.scrollTop];
    }
    // <script>: attributes only; its text is not needed and may hold secrets.
    o.c = html && tag === "script" ? [] : serChildren(el, priv, ctx);
    const sr = el.shadowRoot; // open roots only
    if (sr) {
      observeRoot(sr);
      o.sh = { c: serChildren(sr, priv, ctx), adopted: adoptedSids(sr.adoptedStyleSheets, ctx) };
      lastAdopt.set(sr, o.sh.adopted.join(","));
    }
    return o;
  }
  function selIndexes(sel) {
    const r = [];
    for (const op of sel.options) if (op.selected) r.push(op.index);
    return r;
  }
  function focusId() {
    let a = document.activeElement;
    while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
    if (!a || a === document.body || a === document.documentElement) return null;
    return inTree(a) ? (idOf(a) ?? null) : null;
  }

  function snapshot() {
    if (observer) observer.takeRecords(); // the snapshot is the state after them
    reAdd.clear();
    viewerSheets = new Set();
    lastAdopt = new WeakMap();
    canvasLast = new WeakMap(); // the viewer starts with blank canvases
    const ctx = { sheets: [], full: true };
    const de = document.documentElement;
    const root = de ? ser(de, false, ctx) : null;
    const dt = document.doctype;
    const adopted = adoptedSids(document.adoptedStyleSheets, ctx);
    lastAdopt.set(document, adopted.join(","));
    lastFocus = focusId();
    emit("snapshot", {
      v: 1,
      url: document.URL,
      base: document.baseURI,
      title: document.title,
      dt: dt ? { name: dt.name, pub: dt.publicId, sys: dt.systemId } : null,
      vw: [window.innerWidth, window.innerHeight],
      scroll: [window.scrollX, window.scrollY],
      root,
      sheets: ctx.sheets,
      adopted,
      focus: lastFocus,
    });
    // The viewer starts without hover: tell it again where the pointer is.
    if (lastHover !== null) emit("hover", { id: lastHover });
  }

  // ---- mutations ----
  function flush() {
    if (!observer) return;
    const recs = observer.takeRecords();
    if (recs.length || reAdd.size) process(recs);
  }
  function attrKey(r) {
    if (r.attributeNamespace === NS_XLINK) return "xlink:" + r.attributeName;
    if (r.attributeNamespace === NS_XML) return "xml:" + r.attributeName;
    const node = r.attributeNamespace ? r.target.getAttributeNodeNS(r.attributeNamespace, r.attributeName) : null;
    return node ? node.name : r.attributeName;
  }
  function process(records) {
    const cand = new Set(reAdd); // nodes that may need an add (new, moved, re-serialized)
    reAdd.clear();
    const removed = new Set();
    const attrT = new Map(); // element -> Map(key -> [ns, local])
    const textT = new Set();
    let full = false;
    for (const r of records) {
      const t = r.target;
      if (r.type === "childList") {
        if (t === document) {
          // A new <html> element needs a new snapshot; a comment beside it is not sent.
          for (const n of [...r.addedNodes, ...r.removedNodes]) if (n.nodeType === 1) full = true;
          continue;
        }
        if (t.nodeType === 11) { if (t.host) cand.add(t.host); }
        if (sentCss.has(t)) cand.add(t); // send the style again: its "css" is stale now
        for (const n of r.removedNodes) if (ids.has(n)) removed.add(n);
        for (const n of r.addedNodes) cand.add(n);
      } else if (r.type === "attributes") {
        if (ours.has(t)) continue;
        let m = attrT.get(t);
        if (!m) attrT.set(t, (m = new Map()));
        m.set(attrKey(r), [r.attributeNamespace, r.attributeName]);
      } else if (r.type === "characterData") {
        textT.add(t);
        if (t.parentNode && sentCss.has(t.parentNode)) cand.add(t.parentNode);
      }
    }
    if (full || !document.documentElement || !ids.has(document.documentElement)) {
      snapshot();
      return;
    }
    // An element that became private: send it again, masked.
    for (const el of attrT.keys()) {
      if (ids.has(el) && !sentMasked.has(el) && selfPrivate(el)) cand.add(el);
    }
    // Roots of the adds: sendable nodes in the tree, lifted out of shadow roots to their host
    // (an add's parent is an element), minus those inside another root.
    const rootSet = new Set();
    for (let n of cand) {
      while (n && n.parentNode && n.parentNode.nodeType === 11) n = n.parentNode.host || null;
      if (n && !ours.has(n) && sendable(n) && inTree(n)) rootSet.add(n);
    }
    const covered = (n) => {
      for (let x = up(n); x; x = up(x)) if (rootSet.has(x)) return true;
      return false;
    };
    const addRoots = [];
    for (const n of rootSet) if (!covered(n)) addRoots.push(n);
    // rem: every sent node that left or moved; a moved node comes back below with its ids.
    const remSet = new Set(removed);
    for (const n of rootSet) if (ids.has(n)) remSet.add(n);
    const rem = [];
    for (const n of remSet) rem.push(idOf(n));

    const ctx = { sheets: [], full: false };
    const adds = [];
    const byParent = new Map();
    for (const n of addRoots) {
      const p = n.parentNode;
      if (!ids.has(p)) { snapshot(); return; } // should not happen: the parent was never sent
      let l = byParent.get(p);
      if (!l) byParent.set(p, (l = new Set()));
      l.add(n);
    }
    for (const [p, want] of byParent) {
      const priv = isPrivate(p);
      const pid = idOf(p);
      // Last child first: each add's "before" node already exists in the viewer
      // (an untouched sibling, or an add emitted just before).
      let b = null;
      for (let ch = p.lastChild; ch; ch = ch.previousSibling) {
        if (want.has(ch)) {
          adds.push({ p: pid, b, n: ser(ch, priv, ctx) });
          b = idOf(ch);
        } else if (!ours.has(ch) && sendable(ch) && ids.has(ch)) {
          b = idOf(ch);
        }
      }
    }
    const attr = [];
    for (const [el, names] of attrT) {
      if (!ids.has(el) || rootSet.has(el) || covered(el) || !inTree(el)) continue;
      const priv = isPrivate(el);
      const a = {};
      for (const [key, [ns, local]] of names) {
        const v = ns ? el.getAttributeNS(ns, local) : el.getAttribute(local);
        a[key] = v === null ? null : priv ? maskAttr(key, v) : v;
      }
      attr.push({ id: idOf(el), a });
    }
    const text = [];
    for (const t of textT) {
      if (!ids.has(t) || rootSet.has(t) || covered(t) || !inTree(t)) continue;
      text.push({ id: idOf(t), x: isPrivate(t.parentNode) ? maskTextNode(t) : t.data });
    }
    if (!rem.length && !adds.length && !attr.length && !text.length) return;
    const m = {};
    if (rem.length) m.rem = rem;
    if (adds.length) m.adds = adds;
    if (attr.length) m.attr = attr;
    if (text.length) m.text = text;
    // Over the per-event limit: consecutive events, in the same order (rem, adds, attr, text).
    let parts = [m];
    if (tooBig(m)) {
      parts = split(m);
      if (!parts) { snapshot(); return; } // one node alone is too big: a snapshot is cut into parts
    }
    // Constructed sheets adopted by new shadow roots: announce them before they are used.
    for (const s of ctx.sheets) emit("css", { op: "replace", sheet: s.sid, css: s.css });
    for (const part of parts) emit("mutation", part);
  }
  function split(m) {
    const enc = new TextEncoder();
    const room = MAX_EVENT - 1024;
    const out = [];
    let cur = {}, size = 0;
    for (const key of ["rem", "adds", "attr", "text"]) {
      for (const item of m[key] || []) {
        const n = enc.encode(JSON.stringify(item)).length + 8;
        if (n > room) return null;
        if (size && size + n > room) { out.push(cur); cur = {}; size = 0; }
        (cur[key] || (cur[key] = [])).push(item);
        size += n;
      }
    }
    if (size) out.push(cur);
    return out;
  }
  function tooBig(payload) {
    const j = JSON.stringify(payload);
    if (j.length * 3 <= MAX_EVENT) return false;
    return new TextEncoder().encode(j).length > MAX_EVENT;
  }

  // ---- CSSOM (called by the patched prototypes) ----
  // Where a sheet lives for the viewer: {node: id} or {sheet: sid}; null when it cannot be
  // named, or when it was just announced whole (the announcement includes the change).
  function sheetRef(sheet) {
    const owner = sheet.ownerNode;
    if (owner) {
      const id = idOf(owner);
      return id !== undefined && inTree(owner) ? { node: id } : null;
    }
    if (sheet.ownerRule || sheet.parentStyleSheet) return null; // @import: next snapshot
    const sid = sidFor(sheet);
    if (!viewerSheets.has(sid)) {
      const css = sheetText(sheet);
      if (css === null) return null;
      viewerSheets.add(sid);
      cssEvent({ op: "replace", sheet: sid, css });
      return null;
    }
    return { sheet: sid };
  }
  function cssEvent(p) {
    if (tooBig(p)) { snapshot(); return; }
    emit("css", p);
  }
  const css = {
    insert(sheet, index) {
      dirtySheets.add(sheet);
      const ref = sheetRef(sheet);
      if (!ref) return;
      let rule;
      try { rule = sheet.cssRules[index].cssText; } catch (e) { return; }
      cssEvent(Object.assign({ op: "insert" }, ref, { rule, index }));
    },
    delete(sheet, index) {
      dirtySheets.add(sheet);
      const ref = sheetRef(sheet);
      if (ref) cssEvent(Object.assign({ op: "delete" }, ref, { index }));
    },
    replace(sheet) {
      if (sheet.ownerNode || sheet.ownerRule) return;
      const sid = sidFor(sheet);
      const text = sheetText(sheet);
      if (text === null) return;
      viewerSheets.add(sid);
      cssEvent({ op: "replace", sheet: sid, css: text });
    },
    adopt(target) {
      let host;
      if (target === document) host = 0;
      else if (target instanceof ShadowRoot && target.host && target.host.shadowRoot === target) {
        host = idOf(target.host);
        if (host === undefined || !inTree(target.host)) return;
      } else return;
      const sids = [];
      for (const sh of target.adoptedStyleSheets) {
        const sid = sidFor(sh);
        if (!viewerSheets.has(sid)) {
          viewerSheets.add(sid);
          cssEvent({ op: "replace", sheet: sid, css: sheetText(sh) || "" });
        }
        sids.push(sid);
      }
      lastAdopt.set(target, sids.join(","));
      cssEvent({ op: "adopt", host, sheets: sids });
    },
  };
  // adoptedStyleSheets.push() does not call the setter: compare on the timer too.
  function pollAdopted() {
    const check = (t) => {
      const key = Array.from(t.adoptedStyleSheets || [], sidFor).join(",");
      if (lastAdopt.get(t) !== key) css.adopt(t);
    };
    check(document);
    for (const r of liveRoots()) if (r.host && inTree(r.host)) check(r);
  }
  function liveRoots() {
    const res = [];
    for (let i = roots.length - 1; i >= 0; i--) {
      const r = roots[i].deref();
      if (r) res.push(r); else roots.splice(i, 1);
    }
    return res;
  }

  // ---- inputs, scroll, pointer, focus, viewport ----
  function onInput(e) {
    fieldChanged(deepTarget(e));
  }
  // Fields set by script (el.value = ..., el.checked = ...): looked at once, after the task's
  // other changes, like a visitor's input.
  const setFields = new Set();
  function fieldSet(el) {
    if (!setFields.size) queueMicrotask(() => {
      const l = Array.from(setFields);
      setFields.clear();
      if (running) for (const f of l) safe(() => fieldChanged(f.localName === "option" ? f.closest("select") : f));
    });
    setFields.add(el);
  }
  function fieldChanged(el) {
    if (!el || el.nodeType !== 1 || el.namespaceURI !== NS_HTML) return;
    flush();
    const id = idOf(el);
    if (id === undefined || !inTree(el)) return;
    const priv = isPrivate(el);
    const tag = el.localName;
    if (tag === "input" && (el.type === "checkbox" || el.type === "radio")) {
      if (priv) return; // a private box's state is the private data
      // Checking a radio unchecks its group silently: send every one that changed.
      const group = el.type === "radio" && el.name ? radioGroup(el) : [el];
      for (const r of group) {
        const rid = idOf(r);
        if (rid === undefined || lastCk.get(r) === r.checked) continue;
        lastCk.set(r, r.checked);
        emit("input", { id: rid, ck: r.checked });
      }
    } else if (tag === "select" && el.multiple) {
      if (priv) return;
      const sel = selIndexes(el);
      const key = sel.join(",");
      if (lastVal.get(el) === key) return;
      lastVal.set(el, key);
      emit("input", { id, sel });
    } else if (tag === "input" || tag === "textarea" || tag === "select") {
      if (el.type === "file") return;
      const v = priv ? mask(el.value) : el.value;
      if (lastVal.get(el) === v) return;
      lastVal.set(el, v);
      const p = { id, v };
      if (p.v.length > MAX_EVENT / 4) p.v = p.v.slice(0, MAX_EVENT / 4);
      emit("input", p);
    }
  }
  function radioGroup(el) {
    const root = el.form || el.getRootNode();
    const res = [];
    for (const r of root.querySelectorAll("input[type=radio]")) {
      if (r.name === el.name && r.form === el.form) res.push(r);
    }
    return res.includes(el) ? res : res.concat([el]);
  }
  // First call runs now; later calls within `ms` are merged into one trailing call.
  function throttle(key, ms, fn) {
    const st = throttles.get(key);
    if (st) { st.pending = fn; return; }
    safe(fn);
    const s = { pending: null };
    const tick = () => {
      if (!running) { throttles.delete(key); return; }
      if (s.pending) {
        const f = s.pending;
        s.pending = null;
        safe(f);
        s.timer = setTimeout(tick, ms);
      } else throttles.delete(key);
    };
    s.timer = setTimeout(tick, ms);
    throttles.set(key, s);
  }
  function onScroll(e) {
    const t = e.target;
    if (t === document || t === document.scrollingElement || t === window) {
      throttle("win", SCROLL_MS, () => send("scroll", { id: 0, x: window.scrollX, y: window.scrollY }));
      return;
    }
    if (!t || t.nodeType !== 1 || ours.has(t) || (isField(t) && isPrivate(t))) return;
    throttle(t, SCROLL_MS, () => {
      const id = idOf(t);
      if (id !== undefined && inTree(t)) send("scroll", { id, x: t.scrollLeft, y: t.scrollTop });
    });
  }
  function onPointer(e) {
    const x = e.clientX, y = e.clientY;
    throttle("ptr", POINTER_MS, () => send("pointer", { x, y }));
    hoverTo(deepTarget(e));
  }
  function hoverTo(t) {
    const id = t ? nearestId(t) : null;
    if (id === lastHover) return;
    lastHover = id;
    send("hover", { id });
  }
  function onOut(e) {
    if (!e.relatedTarget) hoverTo(null); // the pointer left the window
  }
  function onClick(e) {
    send("click", { x: e.clientX, y: e.clientY, id: nearestId(deepTarget(e)) });
  }
  function onFocus() {
    // focusout then focusin: look once the focus has settled.
    setTimeout(() => safe(() => {
      if (!running) return;
      flush();
      const id = focusId();
      if (id === lastFocus) return;
      lastFocus = id;
      emit("focus", { id });
    }), 0);
  }
  function onResize() {
    throttle("vw", SCROLL_MS, () => send("viewport", { w: window.innerWidth, h: window.innerHeight }));
  }

  // ---- canvas ----
  function allCanvases() {
    const list = Array.from(document.getElementsByTagName("canvas"));
    for (const r of liveRoots()) list.push(...r.querySelectorAll("canvas"));
    return list;
  }
  function grabCanvases() {
    for (const cv of allCanvases()) {
      try { grabCanvas(cv); } catch (e) { /* tainted (SecurityError) or lost context: skip */ }
    }
  }
  const grabbing = new WeakSet();
  const scales = new WeakMap(); // canvas -> the scale its images last fitted at
  function shrink(cv, f) {
    const off = document.createElement("canvas");
    off.width = Math.max(1, Math.round(cv.width * f));
    off.height = Math.max(1, Math.round(cv.height * f));
    off.getContext("2d").drawImage(cv, 0, 0, off.width, off.height);
    return off;
  }
  // toBlob encodes off the main thread (toDataURL would stall the page every 500 ms).
  function grabCanvas(cv) {
    const id = idOf(cv);
    if (id === undefined || grabbing.has(cv) || !cv.width || !cv.height || !inTree(cv) || isPrivate(cv)) return;
    const last = canvasLast.get(cv);
    const now = performance.now();
    if (last && now - last.t < 450) return; // at most 2 images/s per canvas
    const mime = webpOk() ? "image/webp" : "image/png";
    const w = cv.width, h = cv.height;
    const gen = canvasLast; // a snapshot in between starts over
    // A canvas that was too big before starts at the scale that fitted, not at full size.
    let f = scales.get(cv) || 1;
    const src = f < 1 ? shrink(cv, f) : cv;
    grabbing.add(cv);
    encode(src, mime, 0.8).then(async (bytes) => {
      if (!running || !bytes || gen !== canvasLast) return;
      const hash = hashBytes(bytes);
      const prev = canvasLast.get(cv);
      if (prev ? prev.h === hash : hash === blankHash(src.width, src.height, mime)) return;
      canvasLast.set(cv, { h: hash, t: now });
      // Too big for one event: scale down into an offscreen canvas.
      for (let i = 0; bytes.length > CANVAS_MAX && i < 4; i++) {
        f *= Math.min(0.9, Math.sqrt(CANVAS_MAX / bytes.length) * 0.9);
        bytes = await encode(shrink(cv, f), mime, 0.7);
        if (!bytes) return;
        scales.set(cv, f);
      }
      if (bytes.length > CANVAS_MAX || !running) return;
      send("canvas", { id, d: bytes, mime: sniffMime(bytes), w, h });
    }).catch(() => { /* lost context, tainted: skip */ }).finally(() => grabbing.delete(cv));
  }

  function tick() {
    if (!running) return;
    ticks++;
    try {
      flush();
      pollAdopted();
      grabCanvases();
      if (ticks % 60 === 0) pruneIds();
    } catch (e) {
      console.warn("cobrowse: tick failed", e);
    }
  }

  // ---- life cycle ----
  // Our listeners never throw into the page's event dispatch (or its error tracker).
  const guard = (fn) => (e) => { try { fn(e); } catch (err) { console.warn("cobrowse:", err); } };
  const guarded = {
    input: guard(onInput), scroll: guard(onScroll), pointer: guard(onPointer), out: guard(onOut),
    click: guard(onClick), focus: guard(onFocus), resize: guard(onResize),
  };
  function start(opts) {
    if (running) return;
    running = true;
    activeRec = api;
    installPatches();
    ac = new AbortController();
    const o = { capture: true, passive: true, signal: ac.signal };
    document.addEventListener("input", guarded.input, o);
    document.addEventListener("change", guarded.input, o);
    document.addEventListener("scroll", guarded.scroll, o);
    document.addEventListener("pointermove", guarded.pointer, o);
    document.addEventListener("mouseout", guarded.out, o);
    document.addEventListener("click", guarded.click, o);
    document.addEventListener("focusin", guarded.focus, o);
    document.addEventListener("focusout", guarded.focus, o);
    window.addEventListener("resize", guarded.resize, o);
    observer = new (nativeMutationObserver())((recs) => {
      try { process(recs); } catch (e) { console.warn("cobrowse: mutation failed", e); }
    });
    observer.observe(document, MO_OPTS);
    observed = new WeakSet();
    roots.length = 0;
    if (opts && opts.nav) emit("nav", { url: document.URL, title: document.title });
    snapshot();
    timer = setInterval(tick, CANVAS_EVERY_MS);
  }
  function stop() {
    if (!running) return;
    running = false;
    if (activeRec === api) { activeRec = null; removePatches(); }
    if (observer) observer.disconnect();
    observer = null;
    if (ac) ac.abort();
    ac = null;
    clearInterval(timer);
    for (const s of throttles.values()) clearTimeout(s.timer);
    throttles.clear();
  }
  function shadowAttached(host, sr) {
    if (sr.mode !== "open" || !ids.has(host) || !inTree(host)) return;
    reAdd.add(host);
    queueMicrotask(() => { if (running) safe(flush); });
  }
  const api = { start, stop, snapshot, flush, css, shadowAttached, fieldSet, get running() { return running; } };
  return api;
}

// ---- prototype patches: installed only while recording; originals called as is ----
let patched = null;
// Setters of form state: a script setting them fires no input event.
const FIELD_PROPS = [
  [HTMLInputElement.prototype, "value"], [HTMLInputElement.prototype, "checked"],
  [HTMLTextAreaElement.prototype, "value"], [HTMLSelectElement.prototype, "value"],
  [HTMLSelectElement.prototype, "selectedIndex"], [HTMLOptionElement.prototype, "selected"],
];
const FIELD_ORIG = [];
function installPatches() {
  if (patched) return;
  const P = CSSStyleSheet.prototype;
  const w = {
    insertRule: function insertRule(rule, index) {
      const rec = activeRec;
      if (rec) safe(() => rec.flush());
      const r = ORIG.insertRule.apply(this, arguments);
      if (rec) safe(() => rec.css.insert(this, r));
      return r;
    },
    deleteRule: function deleteRule(index) {
      const rec = activeRec;
      if (rec) safe(() => rec.flush());
      const r = ORIG.deleteRule.apply(this, arguments);
      if (rec) safe(() => rec.css.delete(this, Number(index) >>> 0));
      return r;
    },
    replace: function replace(text) {
      const p = ORIG.replace.apply(this, arguments);
      const sheet = this;
      p.then(() => { const rec = activeRec; if (rec) safe(() => rec.css.replace(sheet)); }, () => {});
      return p;
    },
    replaceSync: function replaceSync(text) {
      const r = ORIG.replaceSync.apply(this, arguments);
      const rec = activeRec;
      if (rec) safe(() => rec.css.replace(this));
      return r;
    },
    attachShadow: function attachShadow(init) {
      const sr = ORIG.attachShadow.apply(this, arguments);
      const rec = activeRec;
      if (rec) safe(() => rec.shadowAttached(this, sr));
      return sr;
    },
  };
  P.insertRule = w.insertRule;
  P.deleteRule = w.deleteRule;
  P.replace = w.replace;
  P.replaceSync = w.replaceSync;
  Element.prototype.attachShadow = w.attachShadow;
  for (const [proto, prop] of FIELD_PROPS) {
    const desc = Object.getOwnPropertyDescriptor(proto, prop);
    if (!desc || !desc.set) continue;
    FIELD_ORIG.push([proto, prop, desc]);
    Object.defineProperty(proto, prop, Object.assign({}, desc, {
      set(v) {
        desc.set.call(this, v);
        const rec = activeRec;
        if (rec) safe(() => rec.fieldSet(this));
      },
    }));
  }
  for (const [proto, desc] of [[Document.prototype, ORIG.docAdopted], [ShadowRoot.prototype, ORIG.rootAdopted]]) {
    if (!desc || !desc.set) continue;
    Object.defineProperty(proto, "adoptedStyleSheets", Object.assign({}, desc, {
      set(v) {
        desc.set.call(this, v);
        const rec = activeRec;
        if (rec) safe(() => rec.css.adopt(this));
      },
    }));
  }
  patched = w;
}
function removePatches() {
  if (!patched) return;
  const P = CSSStyleSheet.prototype;
  // Put back only what is still ours: a page may have wrapped our wrapper since.
  for (const k of ["insertRule", "deleteRule", "replace", "replaceSync"]) if (P[k] === patched[k]) P[k] = ORIG[k];
  if (Element.prototype.attachShadow === patched.attachShadow) Element.prototype.attachShadow = ORIG.attachShadow;
  for (const [proto, prop, desc] of FIELD_ORIG.splice(0)) Object.defineProperty(proto, prop, desc);
  if (ORIG.docAdopted) Object.defineProperty(Document.prototype, "adoptedStyleSheets", ORIG.docAdopted);
  if (ORIG.rootAdopted) Object.defineProperty(ShadowRoot.prototype, "adoptedStyleSheets", ORIG.rootAdopted);
  patched = null;
}
function safe(f) {
  try { f(); } catch (e) { console.warn("cobrowse:", e); }
}

// ---- small helpers ----
function hashBytes(b) {
  // FNV-1a over the bytes, plus the length: enough to tell frames apart.
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) + ":" + b.length;
}
function encode(canvas, mime, quality) {
  return new Promise((resolve, reject) => {
    try {
      canvas.toBlob((blob) => {
        if (!blob) return resolve(null);
        blob.arrayBuffer().then((buf) => resolve(new Uint8Array(buf)), reject);
      }, mime, quality);
    } catch (e) {
      reject(e); // SecurityError: a tainted canvas
    }
  });
}
// What the encoder really produced (a browser without webp falls back to png).
function sniffMime(b) {
  return b[0] === 0x52 && b[1] === 0x49 && b[8] === 0x57 && b[9] === 0x45 ? "image/webp" : "image/png";
}
function dataBytes(url) {
  const bin = atob(url.slice(url.indexOf(",") + 1));
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}
let webp = null;
function webpOk() {
  if (webp === null) {
    const c = document.createElement("canvas");
    c.width = c.height = 1;
    webp = c.toDataURL("image/webp").startsWith("data:image/webp");
  }
  return webp;
}
// A never-drawn canvas (or WebGL without preserveDrawingBuffer) reads back blank: the
// viewer's canvas is blank already, so a blank first image is not sent.
const blanks = new Map();
function blankHash(w, h, mime) {
  const k = w + "x" + h + mime;
  let v = blanks.get(k);
  if (v === undefined) {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    v = hashBytes(dataBytes(c.toDataURL(mime, 0.8)));
    if (blanks.size > 32) blanks.clear();
    blanks.set(k, v);
  }
  return v;
}
function codedError(code, message) {
  const e = new Error(message || code);
  e.code = code;
  return e;
}

// ---- the overlay: agent pointer, highlights, click ripples, reconnecting badge ----
const HOST_STYLE =
  "all: initial !important; position: fixed !important; inset: 0 !important; " +
  "pointer-events: none !important; z-index: 2147483647 !important; display: block !important;";
function makeOverlay() {
  const host = document.createElement("cobrowse-overlay");
  ours.add(host);
  host.setAttribute("style", HOST_STYLE);
  const root = ORIG.attachShadow.call(host, { mode: "closed" });
  const style = document.createElement("style");
  style.textContent = `
    :host { all: initial; }
    .ptr { position: fixed; left: 0; top: 0; display: none; transition: transform 60ms linear; }
    .ptr svg { display: block; filter: drop-shadow(0 1px 1px rgba(0,0,0,.4)); }
    .ptr span { position: absolute; left: 16px; top: 18px; font: 12px/1.4 system-ui, sans-serif;
      background: #2563eb; color: #fff; padding: 1px 6px; border-radius: 4px; white-space: nowrap; }
    .hl { position: fixed; border: 2px solid #f59e0b; border-radius: 3px;
      box-shadow: 0 0 0 4px rgba(245,158,11,.25); box-sizing: border-box; }
    .rip { position: fixed; width: 24px; height: 24px; margin: -12px 0 0 -12px; border-radius: 50%;
      border: 2px solid #2563eb; animation: rip .6s ease-out forwards; }
    @keyframes rip { from { transform: scale(.3); opacity: 1; } to { transform: scale(2.2); opacity: 0; } }
    .badge { position: fixed; right: 12px; bottom: 12px; display: none; font: 12px/1.4 system-ui, sans-serif;
      background: rgba(17,24,39,.85); color: #fff; padding: 4px 10px; border-radius: 12px; }`;
  root.appendChild(style);
  const ptr = document.createElement("div");
  ptr.className = "ptr";
  ptr.innerHTML =
    '<svg width="18" height="24" viewBox="0 0 18 24"><path d="M1 1 L1 19 L6 14 L9.5 22 L12.5 20.5 L9 13 L16 13 Z" fill="#2563eb" stroke="#fff" stroke-width="1.5"/></svg><span></span>';
  ptr.querySelector("span").textContent = CB_CFG.agentName;
  root.appendChild(ptr);
  const badge = document.createElement("div");
  badge.className = "badge";
  badge.textContent = "Reconnecting\u2026";
  root.appendChild(badge);
  const hls = new Map(); // id -> box
  let hlTimer = null;
  let ptrHide = null;
  let ptrAt = null; // [x, y] while the agent's pointer shows
  let badgeOn = false;
  function place() {
    for (const [id, box] of hls) {
      const n = nodeOf(id);
      if (!n || !n.isConnected || !n.getBoundingClientRect) { box.style.display = "none"; continue; }
      const r = n.getBoundingClientRect();
      Object.assign(box.style, { display: "block", left: r.left - 3 + "px", top: r.top - 3 + "px", width: r.width + 6 + "px", height: r.height + 6 + "px" });
    }
  }
  function attach() {
    if (!host.isConnected) document.documentElement.appendChild(host);
  }
  return {
    host,
    attach,
    agentEvent(kind, p) {
      if (!p || typeof p !== "object") return;
      attach();
      if (kind === "pointer" && Number.isFinite(p.x) && Number.isFinite(p.y)) {
        ptr.style.display = "block";
        ptr.style.transform = `translate(${p.x}px, ${p.y}px)`;
        ptrAt = [p.x, p.y];
        clearTimeout(ptrHide);
        ptrHide = setTimeout(() => { ptr.style.display = "none"; ptrAt = null; }, 15000);
      } else if (kind === "click" && Number.isFinite(p.x) && Number.isFinite(p.y)) {
        const r = document.createElement("div");
        r.className = "rip";
        r.style.left = p.x + "px";
        r.style.top = p.y + "px";
        root.appendChild(r);
        setTimeout(() => r.remove(), 700);
      } else if (kind === "highlight" && Number.isInteger(p.id)) {
        const box = hls.get(p.id);
        if (p.on) {
          if (!box) {
            const b = document.createElement("div");
            b.className = "hl";
            root.appendChild(b);
            hls.set(p.id, b);
          }
          if (!hlTimer) hlTimer = setInterval(place, 100); // follows scroll and layout
          place();
        } else if (box) {
          box.remove();
          hls.delete(p.id);
          if (!hls.size) { clearInterval(hlTimer); hlTimer = null; }
        }
      }
    },
    agentLeft() {
      ptr.style.display = "none";
      ptrAt = null;
      for (const b of hls.values()) b.remove();
      hls.clear();
      clearInterval(hlTimer);
      hlTimer = null;
    },
    reconnecting(on) {
      attach();
      badge.style.display = on ? "block" : "none";
      badgeOn = on;
    },
    // For tests (the shadow root is closed): what the overlay shows, or null when nothing.
    state() {
      if (!ptrAt && !hls.size && !badgeOn) return null;
      return { pointer: ptrAt, highlights: Array.from(hls.keys()), reconnecting: badgeOn };
    },
    remove() {
      this.agentLeft();
      clearTimeout(ptrHide);
      host.remove();
    },
  };
}

// ---- consent prompt ----
let cancelConsent = null; // Cobrowse.end() while the prompt shows: a "no"
function askConsent() {
  return new Promise((resolve) => {
    const host = document.createElement("cobrowse-consent");
    ours.add(host);
    host.setAttribute("style",
      "all: initial !important; position: fixed !important; right: 16px !important; bottom: 16px !important; " +
      "z-index: 2147483647 !important; display: block !important; pointer-events: auto !important;");
    const root = ORIG.attachShadow.call(host, { mode: "closed" });
    root.innerHTML = `<style>
      .box { font: 14px/1.45 system-ui, sans-serif; color: #111827; background: #fff; width: 320px;
        border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.25); padding: 16px; box-sizing: border-box; }
      p { margin: 0 0 12px; }
      .row { display: flex; gap: 8px; justify-content: flex-end; }
      button { font: inherit; border-radius: 6px; padding: 6px 14px; cursor: pointer; border: 1px solid #d1d5db; background: #fff; color: #111827; }
      button.yes { background: #2563eb; border-color: #2563eb; color: #fff; }
      </style>
      <div class="box" role="dialog" aria-labelledby="t">
        <p id="t"></p><p class="small"></p>
        <div class="row"><button class="yes" type="button">Allow</button><button class="no" type="button">No thanks</button></div>
      </div>`;
    const [t, small] = root.querySelectorAll("p");
    t.textContent = `${CB_CFG.agentName} would like to see this page with you, to help you.`;
    small.textContent = "Passwords, card numbers and fields marked private stay hidden. You can stop at any time.";
    const done = (ok) => {
      cancelConsent = null;
      host.remove();
      resolve(ok);
    };
    cancelConsent = () => done(false);
    root.querySelector(".yes").addEventListener("click", () => done(true));
    root.querySelector(".no").addEventListener("click", () => done(false));
    root.addEventListener("keydown", (e) => { if (e.key === "Escape") done(false); });
    document.documentElement.appendChild(host);
    root.querySelector(".yes").focus();
  });
}

// ---- the session: Cobrowse API, wire glue, sessionStorage ----
const handlers = new Map();
let cbState = "idle";
let session = null; // {sid, token, gateways, code}
let wire = null;
let rec = null;
let overlay = null;
let starting = null;

function fire(name, arg) {
  for (const fn of handlers.get(name) || []) {
    try { fn(arg); } catch (e) { console.error(e); }
  }
}
function setState(s, detail) {
  if (cbState === s) return;
  cbState = s;
  if (overlay) overlay.reconnecting(s === "reconnecting");
  fire("state", Object.assign({ state: s }, detail || {}));
}
function readStore() {
  try {
    const v = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    return v && typeof v === "object" && v.sid && v.token ? v : null;
  } catch (e) {
    return null;
  }
}
function writeStore(obj) {
  if (!session) return;
  try {
    // The wire's own fields (rt, epoch, unacked, recv, a refreshed gateway list) plus ours.
    const v = Object.assign({ gateways: session.gateways }, obj || {}, { sid: session.sid, token: session.token, code: session.code });
    sessionStorage.setItem(STORE_KEY, JSON.stringify(v));
  } catch (e) { /* storage full or disabled: the session ends with the page */ }
}
function clearStore() {
  try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* disabled */ }
}

async function createSession() {
  if (!CB_CFG.base) throw codedError("unavailable", "cobrowse: cannot tell the router's URL (no script src)");
  if (!CB_CFG.siteKey) throw codedError("bad_site_key", "cobrowse: the script tag has no data-site-key");
  let r;
  try {
    r = await fetch(CB_CFG.base + "/v1/sessions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ site_key: CB_CFG.siteKey }),
      credentials: "omit",
    });
  } catch (e) {
    throw codedError("unavailable", "cobrowse: the router cannot be reached");
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.ok && body && typeof body.session_id === "string" && typeof body.visitor_token === "string" && Array.isArray(body.gateways)) {
    return { sid: body.session_id, token: body.visitor_token, gateways: body.gateways, code: body.short_code || null };
  }
  const code = body && body.error && body.error.code;
  const msg = (body && body.error && body.error.message) || `HTTP ${r.status}`;
  if (r.status === 401 || code === "bad_site_key") throw codedError("bad_site_key", msg);
  if (r.status === 429 || code === "rate_limited") {
    const e = codedError("rate_limited", msg);
    e.retryAfter = Number(r.headers.get("retry-after")) || null;
    throw e;
  }
  throw codedError("unavailable", msg);
}

// The session's gateway order again, when every known gateway failed (api.md, connect).
async function refreshGateways() {
  const sid = session && session.sid;
  if (!sid || !CB_CFG.base) return null;
  const r = await fetch(`${CB_CFG.base}/v1/sessions/${encodeURIComponent(sid)}/connect`, {
    method: "POST",
    headers: { authorization: "Bearer " + session.token },
    credentials: "omit",
  });
  if (r.status === 404 || r.status === 401) {
    // The session ended (or the token is not valid for it): stop trying.
    const w = wire;
    finish({ code: r.status === 404 ? "unknown_session" : "bad_token", reason: "the session is over" });
    if (w) { try { w.end("session gone"); } catch (e) { /* ending anyway */ } }
    return null;
  }
  if (!r.ok) return null;
  const body = await r.json();
  if (Array.isArray(body.gateways) && body.gateways.length) {
    session.gateways = body.gateways;
    return body.gateways;
  }
  return null;
}

// End the session through the API with the visitor's token (404: it had ended already).
async function endSession(s) {
  if (!CB_CFG.base || !s.sid || !s.token) return false;
  try {
    const r = await fetch(`${CB_CFG.base}/v1/sessions/${encodeURIComponent(s.sid)}`, {
      method: "DELETE",
      headers: { authorization: "Bearer " + s.token },
      credentials: "omit",
    });
    return r.ok || r.status === 404;
  } catch (e) {
    return false; // the router cannot be reached: the bye still closes this connection
  }
}

function whenReady(fn) {
  // A snapshot of a half-parsed page would stream the rest as mutations: wait for the DOM.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn, { once: true });
  else fn();
}

function begin(saved) {
  overlay = overlay || makeOverlay();
  overlay.attach();
  rec = makeRecorder((kind, payload) => {
    if (!wire) return;
    if (kind === "snapshot") wire.sendSnapshot(JSON.stringify(payload));
    else wire.send(kind, payload);
  });
  wire = new CobrowseWire({
    role: "visitor",
    sid: session.sid,
    token: session.token,
    gateways: session.gateways,
    routerBase: CB_CFG.base,
    state: saved || null,
    refreshGateways,
    onEvents(events) {
      for (const ev of events || []) if (overlay) overlay.agentEvent(ev.kind, ev.payload);
    },
    onControl(ctl) {
      if (!ctl) return;
      if (ctl.op === "snapshot") { if (rec && rec.running) rec.snapshot(); }
      else if (ctl.op === "joined") fire("agent-joined", { agentId: ctl.msg || null });
      else if (ctl.op === "left") {
        if (overlay) overlay.agentLeft();
        fire("agent-left", { agentId: ctl.msg || null });
      }
    },
    onEpoch(epoch, fresh) {
      // Unacked events were abandoned with the old epoch: the agents need a new snapshot,
      // unless one is still queued (not numbered yet, so it goes out in the new epoch).
      const queued = wire && Array.isArray(wire.pending) && wire.pending.some((e) => e[0] === "snapshot");
      if (fresh && !queued && rec && rec.running) rec.snapshot();
    },
    onState(s, detail) {
      if (s === "ended") finish(detail || {});
      else if (s === "connecting" || s === "live" || s === "reconnecting") setState(s, detail);
    },
    onPersist(obj) {
      if (cbState !== "ended") writeStore(obj);
    },
  });
  wire.start();
  whenReady(() => { if (rec && cbState !== "ended") rec.start({ nav: true }); });
}

// Fatal close codes that mean something went wrong (4004 ended and 4005 replaced do not).
const CLOSE_ERRORS = { 4000: "bad_frame", 4001: "unauthorized", 4002: "protocol", 4006: "unsupported_version" };
function finish(detail) {
  if (cbState === "ended") return;
  const bad = detail && CLOSE_ERRORS[detail.code];
  if (bad) {
    const e = codedError((detail.error && detail.error.code) || bad, (detail.error && detail.error.msg) || detail.reason || bad);
    e.closeCode = detail.code;
    fire("error", e);
  }
  clearStore();
  if (rec) rec.stop();
  rec = null;
  if (overlay) overlay.remove();
  overlay = null;
  wire = null;
  setState("ended", detail);
  fire("ended", detail || {});
}

window.addEventListener("pagehide", () => {
  if (wire && cbState !== "ended" && cbState !== "idle") {
    try { writeStore(wire.persistState()); } catch (e) { /* keep the last saved state */ }
  }
});

const Cobrowse = {
  start(opts) {
    if (session && wire && cbState !== "ended") return Promise.resolve({ sessionId: session.sid, code: session.code });
    if (starting) return starting;
    starting = (async () => {
      try {
        if (!(opts && opts.consented)) {
          setState("consent");
          if (!(await askConsent())) throw codedError("declined", "the visitor declined");
        }
        setState("connecting");
        session = await createSession();
        begin(null);
        return { sessionId: session.sid, code: session.code };
      } catch (e) {
        session = null;
        setState("idle");
        if (e.code !== "declined") fire("error", e);
        throw e;
      } finally {
        starting = null;
      }
    })();
    return starting;
  },
  getCode() {
    return session && cbState !== "ended" ? session.code : null;
  },
  // Ends the session for everyone (api.md, DELETE with the visitor's own token): agents
  // close with 4004, the code stops resolving, resume tokens are refused. Recording stops
  // at once; the bye follows the API's answer. Resolves true once the router confirmed.
  end() {
    if (cancelConsent) cancelConsent();
    const w = wire, s = session;
    if (session) finish({ code: "visitor", reason: "ended by the visitor" });
    clearStore();
    const ended = s ? endSession(s) : Promise.resolve(false);
    return ended.then((ok) => {
      if (w) { try { w.end("visitor ended the session"); } catch (e) { /* closing anyway */ } }
      return ok;
    });
  },
  on(name, fn) {
    if (typeof fn !== "function") return () => {};
    if (!handlers.has(name)) handlers.set(name, new Set());
    handlers.get(name).add(fn);
    return () => handlers.get(name).delete(fn);
  },
  off(name, fn) {
    const s = handlers.get(name);
    if (s) s.delete(fn);
  },
  state() {
    return cbState;
  },
  // Test hooks: the id a node has on the wire; what the overlay shows (null: nothing).
  _nodeId(node) {
    return (node && idOf(node)) ?? null;
  },
  _overlayState() {
    return overlay ? overlay.state() : null;
  },
  // Test hook: record with no network and no consent. emit(kind, payload) gets every event
  // that would go on the wire; the snapshot comes as its document object, not as parts.
  _capture(emit) {
    const ov = overlay || makeOverlay();
    ov.attach();
    const r = makeRecorder(emit);
    r.start({ nav: true });
    return {
      stop() {
        r.stop();
        if (ov !== overlay) ov.remove();
      },
      snapshot() { r.snapshot(); },
      flush() { r.flush(); },
      agent(kind, payload) { ov.agentEvent(kind, payload); },
      overlayState() { return ov.state(); },
    };
  },
};
// A second copy of the snippet on the page stays inert: one recorder per page.
// (A page's own placeholder named Cobrowse is replaced; only our snippet counts.)
const cbFirst = !(window.Cobrowse && typeof window.Cobrowse._capture === "function");
if (cbFirst) Object.defineProperty(window, "Cobrowse", { value: Object.freeze(Cobrowse), configurable: true });
else console.warn("cobrowse: the snippet is on this page twice; the second copy does nothing");

// A page of a running session (navigation or reload): continue without asking again.
(function resume() {
  if (!cbFirst) return;
  const saved = readStore();
  if (!saved) return;
  session = { sid: saved.sid, token: saved.token, gateways: saved.gateways || [], code: saved.code || null };
  setState("connecting");
  try {
    begin(saved);
  } catch (e) {
    console.warn("cobrowse: could not resume", e);
    session = null;
    clearStore();
    setState("idle");
  }
})();
})();
