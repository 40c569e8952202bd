/* visitor/mutations.js: MutationObserver records -> `mutation` events (rem, adds, attr, text;
 * format.js), each under the per-event limit, or a new snapshot when a change cannot be one. */

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

/** Sends the pending records now: any event naming a node calls this first (see send). */
function flush(st) {
  if (!st.observer) return;
  const recs = st.observer.takeRecords();
  if (recs.length || st.reAdd.size) processMutations(st, recs);
}
function attrKey(r) {
  if (r.attributeNamespace === NS_XLINK) return "xlink:" + r.attributeName;
  if (r.attributeNamespace === NS_XML) return "xml:" + r.attributeName;
  const node = r.attributeNamespace ? r.target.getAttributeNodeNS(r.attributeNamespace, r.attributeName) : null;
  return node ? node.name : r.attributeName;
}
function processMutations(st, records) {
  const cand = new Set(st.reAdd); // nodes that may need an add (new, moved, re-serialized)
  st.reAdd.clear();
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
      if (t.nodeType === 9) { // a mirrored frame's document got a new root: send the frame again
        const f = frameOf.get(t);
        if (f && frameDoc(f) === t) cand.add(f);
        continue;
      }
      if (t.nodeType === 11) { if (t.host) cand.add(t.host); }
      if (st.sentCss.has(t)) cand.add(t); // send the style again: its "css" is stale now
      for (const n of r.removedNodes) if (ids.has(n)) removed.add(n);
      for (const n of r.addedNodes) cand.add(n);
    } else if (r.type === "attributes") {
      if (ours.has(t)) continue;
      let m = attrT.get(t);
      if (!m) attrT.set(t, (m = new Map()));
      m.set(attrKey(r), [r.attributeNamespace, r.attributeName]);
    } else if (r.type === "characterData") {
      textT.add(t);
      if (t.parentNode && st.sentCss.has(t.parentNode)) cand.add(t.parentNode);
    }
  }
  if (full || !document.documentElement || !ids.has(document.documentElement)) {
    snapshot(st);
    return;
  }
  // An element that became private: send it again, masked.
  for (const el of attrT.keys()) {
    if (ids.has(el) && !st.sentMasked.has(el) && selfPrivate(el)) cand.add(el);
  }
  // Roots of the adds: sendable nodes in the tree, lifted out of shadow roots to their host
  // (an add's parent is an element), minus those inside another root.
  const rootSet = new Set();
  for (let n of cand) {
    n = addRootOf(n);
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
    if (!ids.has(p)) { snapshot(st); return; } // should not happen: the parent was never sent
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
        adds.push({ p: pid, b, n: ser(st, ch, priv, ctx) });
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
    parts = splitMutation(m);
    if (!parts) { snapshot(st); return; } // one node alone is too big: a snapshot is cut into parts
  }
  // Constructed sheets adopted by new shadow roots: announce them before they are used.
  for (const s of ctx.sheets) emit(st, "css", { op: "replace", sheet: s.sid, css: s.css });
  for (const part of parts) emit(st, "mutation", part);
  rehoverSoon(st);
}

/** A mutation cut into consecutive ones, each under MAX_EVENT less 1 KiB of room, in the
 * order rem, adds, attr, text; null when one item alone does not fit. */
function splitMutation(m) {
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
/** Is the payload's JSON over MAX_EVENT bytes of UTF-8? (Encodes only when it might be:
 * a character is at most 3 bytes.) */
function tooBig(payload) {
  const j = JSON.stringify(payload);
  if (j.length * 3 <= MAX_EVENT) return false;
  return new TextEncoder().encode(j).length > MAX_EVENT;
}

/** A sent host got an open shadow root (patched attachShadow): send the host again. */
function shadowAttached(st, host, sr) {
  if (sr.mode !== "open" || !ids.has(host) || !inTree(host)) return;
  st.reAdd.add(host);
  queueMicrotask(() => { if (st.running) safe(() => flush(st)); });
}
