/* viewer/build.js: WireNode (format.js) -> DOM. A snapshot replaces the replica's document
 * (a fresh one in the visitor's parsing mode), `build` creates a node and its subtree by DOM
 * calls only, every attribute through the sanitiser, and registers ids both ways.
 */

// Inside the replica only (adopted, so it is not a node of the visitor's tree). Zero
// specificity where the page's own rules should win; !important where they must not.
const VIEWER_CSS = `
cb-blocked { display: none !important; }
cb-blocked:is([data-tag="iframe"],[data-tag="frame"],[data-tag="object"],[data-tag="embed"],[data-tag="portal"],[data-tag="fencedframe"],[data-tag="applet"]) { display: inline-block !important; }
:where(cb-blocked) { width: 300px; height: 150px; box-sizing: border-box; border: 1px dashed #aaa;
  background: repeating-linear-gradient(45deg, #f4f4f4 0 10px, #e8e8e8 10px 20px); vertical-align: bottom; }
:where(.cb-focus-visible) { outline: auto 1px; outline: -webkit-focus-ring-color auto 1px; }
:where(input.cb-focus-visible, textarea.cb-focus-visible, select.cb-focus-visible) { outline-offset: 0; }
.cb-agent-hl { outline: 3px solid #2563eb !important; outline-offset: 2px !important; }
:where(canvas) { display: inline-block; background: no-repeat 0 0 / 100% 100%;
  width: attr(width px, 300px); height: attr(height px, 150px); }
canvas > * { display: none !important; }
`;

// Only where `value` is the live value: on checkboxes, hidden, buttons... it is the attribute.
const NO_LIVE_VALUE = new Set(["checkbox", "radio", "hidden", "submit", "reset", "button", "image", "file"]);

const utf8dec = new TextDecoder();

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

function register(rs, id, node) {
  if (typeof id === "number" || typeof id === "string") {
    const old = rs.ids.get(id);
    if (old && old !== node && old.isConnected && old.parentNode) {
      unregister(rs, old);
      old.parentNode.removeChild(old);
    }
    rs.ids.set(id, node);
    rs.rev.set(node, id);
  }
}

function unregister(rs, node) {
  const walk = (n) => {
    const id = rs.rev.get(n);
    if (id !== undefined && rs.ids.get(id) === n) rs.ids.delete(id);
    if (n.nodeType === 1) {
      rs.desiredScroll.delete(n);
      if (n.shadowRoot) for (const c of n.shadowRoot.childNodes) walk(c);
      const fd = frameContent(n);
      if (fd) for (const c of fd.childNodes) walk(c);
    }
    for (const c of n.childNodes) walk(c);
  };
  walk(node);
}

function build(rs, n, parent) {
  if (!n || typeof n !== "object") throw new Error("bad node");
  if (n.x !== undefined) {
    const t = rs.doc.createTextNode("");
    if (isStyle(parent)) rs.rawText.set(t, String(n.x));  // its CSS goes through the proxy first
    else t.data = String(n.x);
    register(rs, n.id, t);
    return t;
  }
  if (n.cm !== undefined) {
    const c = rs.doc.createComment(String(n.cm));
    register(rs, n.id, c);
    return c;
  }
  const tag = String(n.tag || "");
  const lower = tag.toLowerCase();
  let el;
  if (isMirroredFrame(n, lower)) {
    el = buildFrame(rs, n);
  } else if (blockedTag(n, lower)) {
    el = blockedElement(rs, n, lower);
  } else {
    try {
      const uri = nodeNsUri(n.ns);
      el = uri === NS_HTML ? rs.doc.createElement(lower) : rs.doc.createElementNS(uri, tag);
      // createElementNS reads "svg:script" as a prefix and the local name "script": an SVG
      // script that `blockedTag` never saw. The snippet sends local names; a page's own
      // "svg:script" (the HTML parser keeps the colon) cannot be made by DOM calls: refused.
      if (el.localName !== (uri === NS_HTML ? lower : tag)) throw new Error("qualified name");
    } catch (e) {
      el = rs.doc.createElement("cb-blocked");
      el.setAttribute("data-tag", "invalid");
      rs.stats.skipped++;
    }
    const attrs = n.a && typeof n.a === "object" ? n.a : {};
    const m = raw(rs, el);
    for (const k of Object.keys(attrs)) if (attrs[k] !== null && attrs[k] !== undefined) m.set(k, String(attrs[k]));
    for (const k of m.keys()) writeAttr(rs, el, k);
  }
  register(rs, n.id, el);
  if (el.localName === "canvas") canvasRule(rs, el, n.id);  // apply.js: sized before any image
  const kids = Array.isArray(n.c) ? n.c : [];
  for (const c of kids) {
    try { el.appendChild(build(rs, c, el)); } catch (e) { rs.stats.skipped++; }
  }
  if (isStyle(el)) {
    const st = styleOf(rs, el);
    if (typeof n.css === "string") { st.cssField = n.css; st.raw = n.css; }
    restyle(rs, el);
  }
  formState(rs, el, n);
  if (n.sh && typeof n.sh === "object" && el.localName !== "cb-blocked") {
    try {
      const root = el.attachShadow({mode: "open"});
      for (const c of Array.isArray(n.sh.c) ? n.sh.c : []) {
        try { root.appendChild(build(rs, c, null)); } catch (e) { rs.stats.skipped++; }
      }
      if (Array.isArray(n.sh.adopted)) adopt(rs, root, n.sh.adopted);
    } catch (e) {
      rs.stats.skipped++;
    }
  }
  if (Array.isArray(n.sc)) {
    rs.desiredScroll.set(el, [Number(n.sc[0]) || 0, Number(n.sc[1]) || 0]);
  }
  return el;
}

function setValue(el, v) {
  if (!("value" in el) || el.localName === "cb-blocked" || el.localName === "option") return;
  if (el.localName === "input" && NO_LIVE_VALUE.has(String(el.type).toLowerCase())) return;
  if (el.localName === "select" && el.multiple) return;  // its options' "sl" say it all
  el.value = String(v);
}

function formState(rs, el, n) {
  try {
    if (n.v !== undefined && n.v !== null) setValue(el, n.v);
    if (n.ck !== undefined && "checked" in el) el.checked = !!n.ck;
    if (n.sl !== undefined && "selected" in el) el.selected = !!n.sl;
  } catch (e) {
    rs.stats.skipped++;
  }
}

// ---- snapshot ----
function applySnapshot(rs, snap) {
  if (!snap || typeof snap !== "object") throw new Error("bad snapshot");
  rs.gen++;
  rs.stats.snapshots++;
  rs.ids.clear();
  rs.sheets.clear();
  rs.desiredScroll.clear();
  rs.frames = [];
  rs.filled.clear();
  rs.states = new Map();
  rs.highlighted.clear();
  rs.base = null;
  for (const cand of [snap.base, snap.url]) {
    try {
      const u = new URL(String(cand));
      if (u.protocol === "http:" || u.protocol === "https:") { rs.base = u.href; break; }
    } catch (e) { /* next */ }
  }
  rs.info = {url: snap.url || null, title: snap.title || null};
  rs.win = rs.iframe.contentWindow;
  let doc = rs.doc = rs.iframe.contentDocument;
  // A fresh document in the right parsing mode: the constant strings below are ours.
  doc.open();
  if (!wantsQuirks(snap.dt)) doc.write("<!DOCTYPE html>");
  doc.close();
  doc = rs.doc = rs.iframe.contentDocument;
  while (doc.firstChild) doc.removeChild(doc.firstChild);
  if (snap.dt && typeof snap.dt === "object") {  // "<!DOCTYPE >" has an empty name
    try {
      doc.appendChild(doc.implementation.createDocumentType(String(snap.dt.name), String(snap.dt.pub || ""), String(snap.dt.sys || "")));
    } catch (e) { rs.stats.skipped++; }
  }
  for (const entry of rs.canvasRules.values()) if (entry.url) URL.revokeObjectURL(entry.url);
  rs.canvasRules = new Map();
  rs.viewerSheet = new rs.win.CSSStyleSheet();
  rs.viewerSheet.replaceSync(VIEWER_CSS);
  for (const s of Array.isArray(snap.sheets) ? snap.sheets : []) {
    if (!s || typeof s !== "object") { rs.stats.skipped++; continue; }  // not a sheet: not the whole page lost
    const c = constructed(rs, s.sid);
    c.state.raw = String(s.css || "");
    scheduleSheet(rs, c.state);
  }
  adopt(rs, doc, Array.isArray(snap.adopted) ? snap.adopted : []);
  if (snap.root && typeof snap.root === "object") doc.appendChild(build(rs, snap.root, null));  // null: an empty document
  fillFrames(rs);
  listen(rs);
  if (Array.isArray(snap.vw)) setViewport(rs, snap.vw[0], snap.vw[1]);
  rs.winScroll = Array.isArray(snap.scroll) ? [Number(snap.scroll[0]) || 0, Number(snap.scroll[1]) || 0] : [0, 0];
  rs.agentScroll = rs.winScroll.slice();  // a new page opens where the visitor is, followed or not
  setFocus(rs, snap.focus === undefined ? null : snap.focus, !!snap.fv);
  setTarget(rs, snap.tg === undefined ? null : snap.tg);
  relayout(rs);  // scrolling needs a layout: let the next frame do it rather than force one now
  rs.onInfo(rs.info);
}

// Snapshot parts {i, n, d} are consecutive; part 0 starts a new one.
function snapshotPart(rs, p) {
  const i = Number(p.i);
  const n = Number(p.n);
  const d = p.d instanceof Uint8Array ? p.d : Array.isArray(p.d) ? Uint8Array.from(p.d)
    : typeof p.d === "string" ? new TextEncoder().encode(p.d) : null;
  if (!d || !(n >= 1)) { rs.stats.skipped++; return; }
  if (i === 0) rs.snapParts = {n, parts: []};
  const sp = rs.snapParts;
  if (!sp || sp.n !== n || sp.parts.length !== i) { rs.snapParts = null; rs.stats.skipped++; return; }
  sp.parts.push(d);
  if (sp.parts.length < n) return;
  rs.snapParts = null;
  const total = sp.parts.reduce((a, b) => a + b.length, 0);
  const all = new Uint8Array(total);
  let o = 0;
  for (const b of sp.parts) { all.set(b, o); o += b.length; }
  applySnapshot(rs, JSON.parse(utf8dec.decode(all)));
}

function cancel(e) { e.preventDefault(); }

// What would follow a link (kept inert, sanitiser.js inertLink) or submit a form: a click
// (also the one Enter or Space makes), a middle click, a drag (a link dropped elsewhere).
const CANCELLED_EVENTS = ["submit", "click", "auxclick", "dragstart"];

function listen(rs) {
  // document.open() dropped listeners on the old document: resources that change layout.
  rs.doc.addEventListener("load", () => relayout(rs), true);
  // The glass takes the agent's pointer and, without allow-forms, the sandbox blocks
  // submission; this holds even without a sandbox, or when a key or a click reaches a
  // replica link. (The Navigation API's navigate event is not fired in a frame without
  // scripts, so it cannot be the guard; the embed page's CSP frame-src is the last one.)
  for (const type of CANCELLED_EVENTS) rs.doc.addEventListener(type, cancel, true);
  watchFailedSheets(rs);
}
