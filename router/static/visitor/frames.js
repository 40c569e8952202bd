/* visitor/frames.js: same-origin iframes, nested ones too, mirrored inside the frame's
 * WireNode (`doc`, format.js), with ids from the page's one counter; a frame we cannot
 * read (cross-origin, sandboxed without allow-same-origin) is sent with its laid-out size
 * (`fs`) only. Each mirrored document is watched like the top one: the recording's
 * MutationObserver observes it, and our listeners are on it (they end with the recording). */

const isFrameEl = (el) => el.nodeType === 1 && el.namespaceURI === NS_HTML &&
  (el.localName === "iframe" || el.localName === "frame");

/** The frame's document when this page may read it, else null (cross-origin throws or
 * gives null; a detached frame has none). */
function frameDoc(el) {
  try {
    const d = el.contentDocument;
    return d && d.nodeType === 9 ? d : null;
  } catch (e) {
    return null;
  }
}

/** A document's doctype as the wire has it (snapshot `dt`, frame `doc.dt`). */
function doctypeOf(d) {
  const dt = d.doctype;
  return dt ? { name: dt.name, pub: dt.publicId, sys: dt.systemId } : null;
}

/** serEl's part for a frame element: `doc` when readable, else `fs` [width, height]. */
function serFrame(st, el, o, priv, ctx) {
  const d = frameDoc(el);
  if (!d) {
    // offsetWidth/Height: the border box as laid out, before transforms (what the box takes).
    o.fs = [el.offsetWidth, el.offsetHeight];
    return;
  }
  frameOf.set(d, el);
  watchDoc(st, d);
  const de = d.documentElement;
  o.doc = { dt: doctypeOf(d), base: d.baseURI, c: de && !ours.has(de) ? [ser(st, de, priv, ctx)] : [] };
}

/** Observe a frame's document and listen on it, once per recording. */
function watchDoc(st, d) {
  if (st.docs.has(d)) return;
  st.docs.add(d);
  if (st.observer) st.observer.observe(d, MO_OPTS);
  if (st.ac) listenOn(st, d);
}

/** Our listeners on a document (the top one or a frame's): captured, passive, ended by st.ac. */
function listenOn(st, d) {
  const o = { capture: true, passive: true, signal: st.ac.signal };
  const g = st.guarded;
  for (const [type, fn] of [["input", g.input], ["change", g.input], ["scroll", g.scroll],
    ["pointermove", g.pointer], ["mouseout", g.out], ["click", g.click], ["focusin", g.focus],
    ["focusout", g.focus], ["load", g.load], ["pointerdown", g.press], ["pointerup", g.press],
    ["pointercancel", g.press], ["keydown", g.key], ["keyup", g.key]]) d.addEventListener(type, fn, o);
}

/** A frame loaded (or navigated): send it again, whole, as a mutation of the frame node. */
function onFrameLoad(st, e) {
  const t = e.target;
  if (!t || !isFrameEl(t) || !ids.has(t) || !inTree(t)) return;
  st.reAdd.add(t);
  flush(st);
}

/** The node an add must start from: out of shadow roots to their host and out of a
 * frame's document to its frame (an add's parent is an element). */
function addRootOf(n) {
  for (;;) {
    const p = n && n.parentNode;
    if (!p) return n;
    if (p.nodeType === 11) n = p.host || null;
    else if (p.nodeType === 9 && p !== document) n = frameOf.get(p) || null;
    else return n;
  }
}

/** Event coordinates in the top window's viewport (an event inside a frame has its own). */
function topXY(e) {
  let x = e.clientX, y = e.clientY;
  for (let d = e.view && e.view.document; d && d !== document; ) {
    const f = frameOf.get(d);
    if (!f) break;
    const r = f.getBoundingClientRect();
    x += r.left + f.clientLeft;
    y += r.top + f.clientTop;
    d = f.ownerDocument;
  }
  return [x, y];
}

/** The focused element, into open shadow roots and mirrored frames. */
function deepActive(d) {
  let a = d.activeElement;
  for (;;) {
    while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
    const fd = a && isFrameEl(a) ? frameDoc(a) : null;
    if (!fd || !fd.activeElement || fd.activeElement === fd.body || fd.activeElement === fd.documentElement) return a;
    a = fd.activeElement;
  }
}
