/* visitor/ids.js: node ids (one counter per page load, kept across snapshots) and what counts
 * as the sent tree: connected, not ours, not inside a <script> or a closed shadow root. */

const ids = new WeakMap(); // node -> id
const byId = new Map(); // id -> WeakRef(node): agent highlights name nodes by id
let nextId = 1;
const idOf = (n) => ids.get(n);
/** The node's id, allocated on first sight: ids are never reused within a page load. */
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
/** Drops the ids of collected nodes from byId (the recorder calls it every 30 s). */
function pruneIds() {
  for (const [i, r] of byId) if (!r.deref()) byId.delete(i);
}

// Our own elements (overlay, consent prompt): never serialized, never observed.
const ours = new WeakSet();
// A mirrored same-origin frame's document -> its <iframe> (visitor/frames.js): the inner
// nodes are part of the sent tree, with ids from the same counter (one id space).
const frameOf = new WeakMap();

// Parent, crossing from a shadow root to its host and from a frame's document to its frame.
function up(n) {
  const p = n.parentNode;
  if (!p) return n.nodeType === 9 ? frameOf.get(n) || null : null;
  return p.nodeType === 11 ? p.host || null : p;
}
// Is n part of what we send (connected, not ours, not inside a <script>)?
function inTree(n) {
  if (!n || !n.isConnected) return false;
  for (let x = n; ; ) {
    if (ours.has(x)) return false;
    const p = x.parentNode;
    if (!p) return false;
    if (p === document) return x === document.documentElement;
    if (p.nodeType === 9) { // a frame's document: in the tree through its (sent) frame
      const f = frameOf.get(p);
      if (x !== p.documentElement || !f || frameDoc(f) !== p) return false; // navigated since
      x = f;
      continue;
    }
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
