/* visitor/snapshot.js: the serializer (DOM node -> WireNode, format.js) and the full snapshot.
 * Masks while it writes (visitor/privacy.js); records what it sent in the recorder's state,
 * so later inputs and mutations send only what changed. */

/** ctx: {sheets: [{sid, css}] the viewer must be told of, full: a full snapshot (scroll offsets)}. */
function ser(st, n, priv, ctx) {
  switch (n.nodeType) {
    case 1: return serEl(st, n, priv, ctx);
    case 3:
    case 4: return { id: idFor(n), x: priv ? maskTextNode(n) : n.data };
    case 8: return { id: idFor(n), cm: priv ? mask(n.data) : n.data };
    default: return null;
  }
}
function serChildren(st, parent, priv, ctx) {
  const c = [];
  for (let ch = parent.firstChild; ch; ch = ch.nextSibling) {
    if (ours.has(ch)) continue;
    const s = ser(st, ch, priv, ctx);
    if (s) c.push(s);
  }
  return c;
}
function serEl(st, el, priv, ctx) {
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
  if (priv) { o.m = true; st.sentMasked.add(el); }
  if (html) {
    if (tag === "input") {
      const t = el.type;
      if (t === "checkbox" || t === "radio") {
        st.lastCk.set(el, el.checked);
        if (el.checked && !priv) o.ck = true;
      } else if (t !== "file") {
        o.v = priv ? mask(el.value) : el.value;
        st.lastVal.set(el, o.v);
      }
    } else if (tag === "textarea") {
      o.v = priv ? mask(el.value) : el.value;
      st.lastVal.set(el, o.v);
    } else if (tag === "select") {
      o.v = priv ? mask(el.value) : el.value;
      st.lastVal.set(el, el.multiple ? selIndexes(el).join(",") : o.v);
    } else if (tag === "option") {
      if (el.selected && !priv) o.sl = true;
    } else if (tag === "canvas") {
      o.cv = true;
    } else if (tag === "style") {
      const css = styleCss(el);
      if (css !== null) { o.css = css; st.sentCss.add(el); } else st.sentCss.delete(el);
    }
  }
  // Reading scroll offsets forces layout: only in full snapshots (new nodes rarely scroll).
  if (ctx.full && el !== document.scrollingElement && !(priv && isField(el)) && (el.scrollLeft || el.scrollTop)) {
    o.sc = [el.scrollLeft, el.scrollTop];
  }
  // <script>: attributes only; its text is not needed and may hold secrets.
  o.c = html && tag === "script" ? [] : serChildren(st, el, priv, ctx);
  if (isFrameEl(el)) serFrame(st, el, o, priv, ctx);
  const sr = el.shadowRoot; // open roots only
  if (sr) {
    observeRoot(st, sr);
    o.sh = { c: serChildren(st, sr, priv, ctx), adopted: adoptedSids(st, sr.adoptedStyleSheets, ctx) };
    st.lastAdopt.set(sr, o.sh.adopted.join(","));
  }
  return o;
}
function focusId() {
  const a = deepActive(document);
  if (!a || a === document.body || a === document.documentElement) return null;
  return inTree(a) ? (idOf(a) ?? null) : null;
}

/** The whole page as one `snapshot` event; the viewer starts over from it. */
function snapshot(st) {
  if (st.observer) st.observer.takeRecords(); // the snapshot is the state after them
  st.reAdd.clear();
  st.viewerSheets = new Set();
  st.lastAdopt = new WeakMap();
  st.canvasLast = new WeakMap(); // the viewer starts with blank canvases
  const ctx = { sheets: [], full: true };
  const de = document.documentElement;
  const root = de ? ser(st, de, false, ctx) : null;
  const adopted = adoptedSids(st, document.adoptedStyleSheets, ctx);
  st.lastAdopt.set(document, adopted.join(","));
  st.lastFocus = focusId();
  st.lastFv = st.lastFocus !== null && focusVisible();
  emit(st, "snapshot", {
    v: 1,
    url: document.URL,
    base: document.baseURI,
    title: document.title,
    dt: doctypeOf(document),
    vw: [window.innerWidth, window.innerHeight],
    scroll: [window.scrollX, window.scrollY],
    root,
    sheets: ctx.sheets,
    adopted,
    focus: st.lastFocus,
    fv: st.lastFv,
    tg: targetId(),
  });
  // The viewer starts without hover: tell it again where the pointer is.
  if (st.lastHover !== null) emit(st, "hover", { id: st.lastHover });
}
