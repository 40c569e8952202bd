/* visitor/recorder.js: one recording's shared state and its life cycle (start, stop, the
 * 500 ms tick). The other parts (snapshot, mutations, sheets, inputs, canvas, patches) are
 * functions of this state object; the wire (visitor/session.js) and Cobrowse._capture drive
 * a recording through makeRecorder's small API. */

/**
 * What one recording's parts share. Made by newRecorderState, handed to every part.
 * @typedef {Object} RecorderState
 * @property {function(string, Object): void} out  where events go (the wire, or _capture's emit)
 * @property {boolean} running
 * @property {?MutationObserver} observer
 * @property {?AbortController} ac      aborts our listeners at stop
 * @property {?number} timer            the tick's interval
 * @property {number} ticks
 * @property {WeakRef<ShadowRoot>[]} roots  open shadow roots we observe
 * @property {WeakSet<ShadowRoot>} observed
 * @property {Set<number>} viewerSheets  sids the viewer knows since the last snapshot
 * @property {WeakMap<Node, string>} lastAdopt  Document/ShadowRoot -> its adopted sids, "1,2"
 * @property {WeakMap<HTMLCanvasElement, {h: string, t: number}>} canvasLast  last frame sent
 * @property {WeakSet<HTMLCanvasElement>} grabbing  an encode is under way
 * @property {WeakMap<HTMLCanvasElement, number>} scales  the scale a canvas's frames last fitted at
 * @property {WeakMap<Element, string>} lastVal  field -> last value sent, masked when private: a
 *   keystroke that leaves a private field's mask as it was sends nothing, so the number of
 *   events does not count its characters
 * @property {WeakMap<Element, boolean>} lastCk  checkbox/radio -> last checked state sent
 * @property {WeakSet<Element>} sentMasked  elements sent masked (one that becomes private is sent again)
 * @property {WeakSet<Element>} sentCss  <style> sent with "css": a new text replaces its CSSOM
 * @property {Set<Element>} reAdd  hosts that got a shadow root, frames that loaded, after they were sent
 * @property {WeakSet<Document>} docs  mirrored frames' documents we observe and listen on
 * @property {Set<Element>} setFields  fields set by script, looked at in a microtask
 * @property {?number} lastHover
 * @property {?number[]} lastPtr  the pointer's last [clientX, clientY], null once it left the window
 * @property {boolean} rehoverPending  a look under the pointer is queued for the next frame
 * @property {?number} lastFocus
 * @property {boolean} lastFv  the focused element matched :focus-visible when last sent
 * @property {?number} lastActive  the `act` last sent (see sendActive)
 * @property {?number} ptrActive  the element pressed with the primary button
 * @property {?number} keyActive  the focused element, while it matches :active from a key held
 * @property {Map<*, {pending: ?Function, timer: number}>} throttles  by key (see throttle)
 * @property {Object<string, function(Event): void>} guarded  our listeners, never throwing
 * @property {number} linkCssSent  characters of linked sheets sent for the CSS fallback
 */

/** @returns {RecorderState} */
function newRecorderState(out) {
  const st = {
    out,
    running: false,
    observer: null,
    ac: null,
    timer: null,
    ticks: 0,
    roots: [],
    observed: new WeakSet(),
    viewerSheets: new Set(),
    lastAdopt: new WeakMap(),
    canvasLast: new WeakMap(),
    grabbing: new WeakSet(),
    scales: new WeakMap(),
    lastVal: new WeakMap(),
    lastCk: new WeakMap(),
    sentMasked: new WeakSet(),
    sentCss: new WeakSet(),
    reAdd: new Set(),
    docs: new WeakSet(),
    setFields: new Set(),
    lastHover: null,
    lastPtr: null,
    rehoverPending: false,
    lastFocus: null,
    lastFv: false,
    lastActive: null,
    ptrActive: null,
    keyActive: null,
    throttles: new Map(),
    guarded: null,
    linkCssSent: 0,
    nav: null,  // "url\ntitle" last sent in a nav
  };
  // Our listeners never throw into the page's event dispatch (or its error tracker).
  const guard = (fn) => (e) => { try { fn(st, e); } catch (err) { console.warn("cobrowse:", err); } };
  st.guarded = {
    input: guard(onInput), scroll: guard(onScroll), pointer: guard(onPointer), out: guard(onOut),
    click: guard(onClick), focus: guard(onFocus), resize: guard(onResize), load: guard(onFrameLoad),
    press: guard(onPress), key: guard(onKey), hash: guard(onHash),
  };
  return st;
}

function emit(st, kind, payload) {
  try { st.out(kind, payload); } catch (e) { console.warn("cobrowse: emit failed", e); }
}
// Any event naming a node first flushes pending mutations, so the node exists for the viewer.
function send(st, kind, payload) {
  flush(st);
  emit(st, kind, payload);
}

function observeRoot(st, sr) {
  if (st.observed.has(sr)) return;
  st.observed.add(sr);
  st.roots.push(new WeakRef(sr));
  if (st.observer) st.observer.observe(sr, MO_OPTS);
  if (st.ac) {
    // scroll and change are not composed: they never reach the document's listeners.
    const o = { capture: true, passive: true, signal: st.ac.signal };
    sr.addEventListener("scroll", st.guarded.scroll, o);
    sr.addEventListener("change", st.guarded.input, o);
  }
}
function liveRoots(st) {
  const res = [];
  for (let i = st.roots.length - 1; i >= 0; i--) {
    const r = st.roots[i].deref();
    if (r) res.push(r); else st.roots.splice(i, 1);
  }
  return res;
}

/** `nav` {url, title}: on a page load (`always`), and from the tick when either changed
 * without one (history.pushState, a hash change, document.title), so the agent's toolbar
 * names the page the visitor is on in a single-page app too. */
function reportNav(st, always) {
  const now = document.URL + "\n" + document.title;
  if (!always && (st.nav === null || st.nav === now)) { st.nav = now; return; }
  st.nav = now;
  emit(st, "nav", { url: document.URL, title: document.title });
}

function tick(st) {
  if (!st.running) return;
  st.ticks++;
  try {
    flush(st);
    pollAdopted(st);
    reportNav(st, false);
    grabCanvases(st);
    if (st.ticks % 60 === 0) pruneIds();
  } catch (e) {
    console.warn("cobrowse: tick failed", e);
  }
}

function startRecorder(st, opts) {
  if (st.running) return;
  st.running = true;
  activeRec = st;
  installPatches();
  st.ac = new AbortController();
  listenOn(st, document);
  window.addEventListener("resize", st.guarded.resize, { capture: true, passive: true, signal: st.ac.signal });
  window.addEventListener("hashchange", st.guarded.hash, { passive: true, signal: st.ac.signal });
  st.observer = new (nativeMutationObserver())((recs) => {
    try { processMutations(st, recs); } catch (e) { console.warn("cobrowse: mutation failed", e); }
  });
  st.observer.observe(document, MO_OPTS);
  st.observed = new WeakSet();
  st.docs = new WeakSet();
  st.roots.length = 0;
  reportNav(st, !!(opts && opts.nav));
  snapshot(st);
  st.timer = setInterval(() => tick(st), CANVAS_EVERY_MS);
}
function stopRecorder(st) {
  if (!st.running) return;
  st.running = false;
  if (activeRec === st) { activeRec = null; removePatches(); }
  if (st.observer) st.observer.disconnect();
  st.observer = null;
  if (st.ac) st.ac.abort();
  st.ac = null;
  clearInterval(st.timer);
  for (const s of st.throttles.values()) clearTimeout(s.timer);
  st.throttles.clear();
}

/** A recording whose events go to out(kind, payload); the snapshot is its document object. */
function makeRecorder(out) {
  const st = newRecorderState(out);
  return {
    start: (opts) => startRecorder(st, opts),
    stop: () => stopRecorder(st),
    snapshot: () => snapshot(st),
    flush: () => flush(st),
    cssNeed: (p) => { if (st.running) answerCssNeed(st, p).catch((e) => console.warn("cobrowse: css fallback failed", e)); },
    get running() { return st.running; },
  };
}
