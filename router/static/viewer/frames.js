/* viewer/frames.js: the visitor's same-origin frames (a WireNode with `doc`, format.js)
 * become <iframe sandbox="allow-same-origin"> elements of the replica, with no `src`: their
 * document is the empty one the browser gives a new frame, which the viewer fills like the
 * replica's own (same build, same sanitiser, same signed URLs, nothing runs: no
 * allow-scripts here nor on the replica, whose flags a child inherits). A frame has a
 * document only once it is connected, so `build` queues it and `fillFrames` runs after
 * each insertion. A cross-origin frame stays a <cb-blocked> box at the visitor's size (`fs`).
 */

// The visitor's frame attributes that shape the box; any other (src, srcdoc, sandbox,
// allow, name, ...) is never set on a replica frame.
const FRAME_ATTRS = new Set(["id", "class", "style", "width", "height", "title", "hidden",
  "frameborder", "scrolling", "marginwidth", "marginheight", "align"]);

// Each frame is a browsing context in the agent's browser, and one 128 KiB event could
// name thousands (about 60 bytes each): past these the frame stays empty (counted as
// skipped). Real pages nest frames 2 or 3 deep and show a handful.
const MAX_FRAME_DEPTH = 8;
const MAX_FRAMES = 64;

/** A mirrored frame: an HTML <iframe> the visitor could read. */
function isMirroredFrame(n, lower) {
  return lower === "iframe" && !n.ns && !!n.doc && typeof n.doc === "object";
}

/** May `lname` be set on a replica frame? (writeHtmlAttr asks before anything else.) */
const frameAttrAllowed = (lname) => FRAME_ATTRS.has(lname);

function buildFrame(rs, n) {
  const el = rs.doc.createElement("iframe");
  el.setAttribute("sandbox", "allow-same-origin");
  const attrs = n.a && typeof n.a === "object" ? n.a : {};
  const m = raw(rs, el);
  for (const k of Object.keys(attrs)) {
    if (frameAttrAllowed(k.toLowerCase()) && attrs[k] !== null && attrs[k] !== undefined) m.set(k.toLowerCase(), String(attrs[k]));
  }
  for (const k of m.keys()) writeAttr(rs, el, k);
  rs.frames.push({el, doc: n.doc});
  return el;
}

/** The laid-out size of a frame the visitor could not read: `width:..px;height:..px;` or "". */
function frameSizeStyle(n) {
  if (!Array.isArray(n.fs)) return "";
  const [w, h] = n.fs.map(Number);
  return Number.isFinite(w) && Number.isFinite(h) && w >= 0 && h >= 0 && w <= 1e5 && h <= 1e5
    ? `width:${Math.round(w)}px;height:${Math.round(h)}px;` : "";
}

/** Fills every queued frame that is now connected (nested frames queue while their parent fills). */
function fillFrames(rs) {
  while (rs.frames.length) {
    const {el, doc} = rs.frames.shift();
    try { fillFrame(rs, el, doc); } catch (e) { rs.stats.skipped++; }
  }
}

function frameDepth(rs, el) {
  let depth = 0;
  for (let d = el.ownerDocument; d && d !== rs.doc; depth++) {
    const f = d.defaultView && d.defaultView.frameElement;
    d = f ? f.ownerDocument : null;
  }
  return depth;
}

function fillFrame(rs, el, d) {
  const fd = el.isConnected ? el.contentDocument : null;
  if (!fd) { rs.stats.skipped++; return; }
  if (rs.filled.size >= MAX_FRAMES) for (const f of rs.filled) if (!f.isConnected) rs.filled.delete(f);
  if (frameDepth(rs, el) >= MAX_FRAME_DEPTH || rs.filled.size >= MAX_FRAMES) { rs.stats.skipped++; return; }
  rs.filled.add(el);
  fd.open();  // a fresh document in the visitor's parsing mode: the constant strings are ours
  if (!wantsQuirks(d.dt)) fd.write("<!DOCTYPE html>");
  fd.close();
  const idoc = el.contentDocument;
  while (idoc.firstChild) idoc.removeChild(idoc.firstChild);
  if (d.dt && typeof d.dt === "object") {
    try {
      idoc.appendChild(idoc.implementation.createDocumentType(String(d.dt.name), String(d.dt.pub || ""), String(d.dt.sys || "")));
    } catch (e) { rs.stats.skipped++; }
  }
  // A constructed sheet is adopted only by a document of the window that made it.
  const sheet = new idoc.defaultView.CSSStyleSheet();
  sheet.replaceSync(VIEWER_CSS);
  idoc.adoptedStyleSheets = [sheet];
  idoc.addEventListener("load", () => relayout(rs), true);
  for (const type of CANCELLED_EVENTS) idoc.addEventListener(type, cancel, true);  // as build.js listen()
  // The frame's relative URLs resolve against its own address (signing reads rs.base now).
  const top = rs.base;
  rs.base = frameBase(d.base) || top;
  try {
    for (const c of Array.isArray(d.c) ? d.c : []) {
      try { idoc.appendChild(build(rs, c, null)); } catch (e) { rs.stats.skipped++; }
    }
  } finally {
    rs.base = top;
  }
}

function frameBase(v) {
  try {
    const u = new URL(String(v));
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (e) {
    return null;
  }
}

/** The replica frame's document, for walking (unregister), or null. */
function frameContent(n) {
  if (n.localName !== "iframe" || n.namespaceURI !== NS_HTML) return null;
  try { return n.contentDocument; } catch (e) { return null; }
}
