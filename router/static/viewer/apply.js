/* viewer/apply.js: the visitor's incremental events (docs/browser.md "Events") applied to
 * the replica: mutation, input, scroll, hover (and active), focus, nav (and :target), viewport,
 * canvas, css (sheets.js), and the visitor's pointer and clicks drawn on the overlay. `apply` is the dispatcher:
 * one bad event is counted and skipped, never thrown to the wire client.
 */

function apply(rs, kind, payload) {
  if (rs.destroyed) return;
  rs.stats.events++;
  try {
    if (kind === "snapshot") {
      if (payload && payload.d !== undefined && payload.n !== undefined) return snapshotPart(rs, payload);
      return applySnapshot(rs, payload);
    }
    if (kind === "nav") {
      const nav = payload && typeof payload === "object" ? payload : {};
      rs.info = {url: nav.url || null, title: nav.title || null};
      rs.onInfo(rs.info);
      if (rs.doc && "tg" in nav) setTarget(rs, nav.tg);  // a fragment change
      return;
    }
    if (!rs.doc) { rs.stats.skipped++; return; }  // nothing to change before the first snapshot
    if (!payload || typeof payload !== "object") { rs.stats.skipped++; return; }
    switch (kind) {
      case "mutation": return applyMutation(rs, payload);
      case "input": return applyInput(rs, payload);
      case "scroll": return applyScrollEvent(rs, payload);
      case "hover":
        setHover(rs, payload.id);
        if ("act" in payload) setActive(rs, payload.act);
        return;
      case "focus": return setFocus(rs, payload.id, !!payload.fv);
      case "viewport": return setViewport(rs, payload.w, payload.h);
      case "canvas": return applyCanvas(rs, payload);
      case "css": return applyCss(rs, payload);
      case "pointer": return showPointer(rs, payload);
      case "click": return ripple(rs, payload);
      default: rs.stats.unknown++;
    }
  } catch (e) {
    rs.stats.errors++;
    if (typeof console !== "undefined") console.warn("cobrowse viewer:", kind, e);
  }
}

function applyMutation(rs, m) {
  const touchedStyles = new Set();
  const noteParent = (p) => { if (isStyle(p)) touchedStyles.add(p); };
  for (const id of Array.isArray(m.rem) ? m.rem : []) {
    const node = rs.ids.get(id);
    if (!node) { rs.stats.skipped++; continue; }
    const p = node.parentNode;
    noteParent(p);
    unregister(rs, node);
    if (p) p.removeChild(node);
  }
  for (const add of Array.isArray(m.adds) ? m.adds : []) {
    try {
      const parent = add && (add.p === 0 ? rs.doc : rs.ids.get(add.p));
      if (!parent || !add.n) { rs.stats.skipped++; continue; }
      const before = add.b === null || add.b === undefined ? null : rs.ids.get(add.b);
      if (add.b !== null && add.b !== undefined && !before) { rs.stats.skipped++; continue; }
      const node = build(rs, add.n, parent);
      if (before && before.parentNode === parent) parent.insertBefore(node, before);
      else {
        if (before) rs.stats.skipped++;  // `b` is not a child of `p`: append rather than lose it
        parent.appendChild(node);
      }
      noteParent(parent);
    } catch (e) {
      rs.stats.skipped++;
    }
  }
  fillFrames(rs);
  for (const ch of Array.isArray(m.attr) ? m.attr : []) {
    const el = ch && rs.ids.get(ch.id);
    if (!el || el.nodeType !== 1 || !ch.a || typeof ch.a !== "object") { rs.stats.skipped++; continue; }
    if (el.localName === "cb-blocked") continue;  // blocked stays blocked, whatever it becomes
    for (const k of Object.keys(ch.a)) {
      const v = ch.a[k];
      if (v === null || v === undefined) raw(rs, el).delete(k);
      else raw(rs, el).set(k, String(v));
      try { writeAttr(rs, el, k); } catch (e) { rs.stats.skipped++; }
    }
  }
  for (const t of Array.isArray(m.text) ? m.text : []) {
    const node = t && rs.ids.get(t.id);
    if (!node || (node.nodeType !== 3 && node.nodeType !== 8)) { rs.stats.skipped++; continue; }
    if (node.nodeType === 3 && isStyle(node.parentNode)) {
      rs.rawText.set(node, String(t.x));
      touchedStyles.add(node.parentNode);
    } else {
      node.data = String(t.x);
    }
  }
  for (const st of touchedStyles) {
    styleOf(rs, st).cssField = null;
    restyle(rs, st);
  }
  relayout(rs);
}

function applyInput(rs, p) {
  const el = rs.ids.get(p.id);
  if (!el || el.nodeType !== 1) { rs.stats.skipped++; return; }
  if (p.v !== undefined && p.v !== null) setValue(el, p.v);
  if (p.ck !== undefined && "checked" in el) el.checked = !!p.ck;
  if (Array.isArray(p.sel) && el.options) {
    const sel = new Set(p.sel.map(Number));
    Array.from(el.options).forEach((o, i) => { o.selected = sel.has(i); });
  }
}

// Scroll positions are re-applied when stylesheets and images arrive and the page grows.
function applyScroll(rs) {
  if (!rs.doc) return;
  try {
    // scrollTo of the current position is a no-op, and cheaper than reading it back.
    const [x, y] = rs.follow ? rs.winScroll : rs.agentScroll;
    if (x || y || rs.win.scrollX || rs.win.scrollY) rs.win.scrollTo(x, y);
  } catch (e) { /* detached */ }
  for (const [el, [x, y]] of rs.desiredScroll) {
    if (el.scrollLeft !== x) el.scrollLeft = x;
    if (el.scrollTop !== y) el.scrollTop = y;
  }
  drawFrame(rs);  // the visitor's viewport frame moves with either scroll
}

/** Scroll and highlights again on the next frame (layout changed or will). */
function relayout(rs) {
  if (rs.relayoutPending) return;
  rs.relayoutPending = true;
  const run = () => { rs.relayoutPending = false; applyScroll(rs); paintHighlights(rs); };
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(run);
  else setTimeout(run, 16);
}

function applyScrollEvent(rs, p) {
  const x = Number(p.x) || 0;
  const y = Number(p.y) || 0;
  if (!p.id) {
    rs.winScroll = [x, y];
  } else {
    const el = rs.ids.get(p.id);
    if (!el || el.nodeType !== 1) { rs.stats.skipped++; return; }
    rs.desiredScroll.set(el, [x, y]);
  }
  applyScroll(rs);
}

/** A viewer class on or off; the class attribute goes when only the visitor had none. */
function classOn(rs, el, cls, on) {
  if (!el || el.nodeType !== 1) return;
  el.classList.toggle(cls, on);
  if (!el.classList.length && !raw(rs, el).has("class")) el.removeAttribute("class");
}

function parentOf(n) {
  if (n.parentNode && n.parentNode.nodeType === 11 && n.parentNode.host) return n.parentNode.host;
  return n.parentNode;
}

/** Moves a state class (STATE_CLASSES, format.js) off the elements that had it and onto
 * `el`, and onto its ancestors across shadow roots when `chain` (`:hover`, `:active` and
 * `:focus-within` match the ancestors too). */
function setState(rs, cls, el, chain) {
  for (const old of rs.states.get(cls) || []) classOn(rs, old, cls, false);
  const now = [];
  for (; el && el.nodeType === 1; el = chain ? parentOf(el) : null) {
    classOn(rs, el, cls, true);
    now.push(el);
  }
  rs.states.set(cls, now);
}

/** The element an event's id names (a text node's parent), null for null, or undefined
 * (counted as skipped) when the id is unknown. */
function stateTarget(rs, id) {
  if (id === null || id === undefined) return null;
  let el = rs.ids.get(id);
  if (el && el.nodeType !== 1) el = parentOf(el);
  if (!el || el.nodeType !== 1) { rs.stats.skipped++; return undefined; }
  return el;
}

function setHover(rs, id) {
  const el = stateTarget(rs, id);
  setState(rs, STATE_CLASSES.hover, el, true);
}

/** `fv`: the visitor's element also matches :focus-visible (keyboard focus, text fields). */
function setFocus(rs, id, fv) {
  const el = stateTarget(rs, id);
  setState(rs, STATE_CLASSES.focus, el, false);
  setState(rs, STATE_CLASSES["focus-visible"], fv ? el : null, false);
  setState(rs, STATE_CLASSES["focus-within"], el, true);
}

function setActive(rs, id) {
  setState(rs, STATE_CLASSES.active, stateTarget(rs, id), true);
}

/** `:target`: the element the visitor's URL fragment selects (the replica's own URL has
 * none, so the rewritten `.cb-target` is the only way it matches). */
function setTarget(rs, id) {
  setState(rs, STATE_CLASSES.target, stateTarget(rs, id), false);
}

function setViewport(rs, w, h) {
  w = Math.max(1, Math.min(20000, Number(w) || 0));
  h = Math.max(1, Math.min(20000, Number(h) || 0));
  rs.viewport = [w, h];
  layout(rs);
  relayout(rs);
}

function applyCanvas(rs, p) {
  const el = rs.ids.get(p.id);
  if (!el || el.localName !== "canvas" || !(p.d instanceof Uint8Array)) { rs.stats.skipped++; return; }
  const mime = p.mime === "image/png" || p.mime === "image/webp" || p.mime === "image/jpeg" ? p.mime : "image/png";
  const n = (rs.canvasSeq.get(el) || 0) + 1;
  rs.canvasSeq.set(el, n);
  const g = rs.gen;
  const blob = new Blob([p.d], {type: mime});
  createImageBitmap(blob).then((bmp) => {
    if (g !== rs.gen || rs.canvasSeq.get(el) !== n) return;  // a newer image arrived first
    // Keep the visitor's own width/height attributes (layout); the image may be scaled down.
    const ctx = el.getContext("2d");
    if (ctx) {
      ctx.clearRect(0, 0, el.width, el.height);
      ctx.drawImage(bmp, 0, 0, el.width, el.height);
    }
    if (bmp.close) bmp.close();
    showCanvas(rs, el, p.id, blob);
  }, () => { rs.stats.skipped++; });
}

// The replica runs with scripting disabled, and a <canvas> in such a document renders as
// its fallback content, with no size and no bitmap. So the image is also shown as the
// element's background, by a zero-specificity rule in the viewer's own sheet: the page's
// CSS still decides the canvas's size and display where it says anything.
function showCanvas(rs, el, id, blob) {
  const entry = canvasRule(rs, el, id);
  if (!entry) return;
  const url = URL.createObjectURL(blob);
  entry.rule.style.setProperty("background-image", `url("${url}")`);
  if (entry.url) URL.revokeObjectURL(entry.url);
  entry.url = url;
}

// The canvas's size from its width/height, set when it is built (build.js) and with each
// image: VIEWER_CSS's `attr(width px)` is Chromium-only, and in Firefox and WebKit a canvas
// with no image yet (or none ever: a tainted one) collapsed to 0x0 and moved the page below
// (the corpus's canvas.html: 122 px tall for the visitor, 35 in a Firefox replica).
function canvasRule(rs, el, id) {
  if (!rs.viewerSheet || !Number.isInteger(id)) return null;
  el.setAttribute("data-cb-canvas", String(id));
  let entry = rs.canvasRules.get(id);
  if (!entry) {
    const i = rs.viewerSheet.cssRules.length;
    rs.viewerSheet.insertRule(`:where(canvas[data-cb-canvas="${id}"]) {}`, i);
    entry = {rule: rs.viewerSheet.cssRules[i], url: null};
    rs.canvasRules.set(id, entry);
  }
  entry.rule.style.setProperty("width", `${el.width}px`);
  entry.rule.style.setProperty("height", `${el.height}px`);
  return entry;
}

/** A point in the visitor's viewport to the overlay's pixels (through the replica's
 * viewport: they differ when the agent does not follow the visitor's scroll). */
function toOverlay(rs, x, y) {
  const p = visitorToReplica(rs.offset, {x: Number(x) || 0, y: Number(y) || 0});
  return [p.x * rs.scale, p.y * rs.scale];
}

function placePointer(rs, p) {
  const [x, y] = toOverlay(rs, p.x, p.y);
  rs.dot.style.left = x + "px";
  rs.dot.style.top = y + "px";
}

function showPointer(rs, p) {
  rs.visitorPointer = {x: Number(p.x) || 0, y: Number(p.y) || 0};
  placePointer(rs, rs.visitorPointer);
  rs.dot.style.display = "block";
}

/** A click drawn as a ring that grows and fades (the visitor's red, the agent's blue). */
function ripple(rs, p, color) {
  const [x, y] = toOverlay(rs, p.x, p.y);
  const r = rs.edoc.createElement("div");
  Object.assign(r.style, {position: "absolute", left: x + "px", top: y + "px", width: "30px", height: "30px",
    margin: "-15px 0 0 -15px", borderRadius: "50%", border: "3px solid " + (color || "rgba(230,60,30,.9)"),
    boxSizing: "border-box", pointerEvents: "none"});
  rs.overlay.appendChild(r);
  const done = () => r.remove();
  if (r.animate) {
    const a = r.animate([{transform: "scale(.3)", opacity: 1}, {transform: "scale(1.6)", opacity: 0}], {duration: 600, easing: "ease-out"});
    a.onfinish = done;
  }
  setTimeout(done, 700);
}
