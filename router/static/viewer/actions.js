/* viewer/actions.js: the agent's actions over the replica, back to the visitor: the pointer
 * (at most one `pointer` event per 50 ms), clicks (a blue ripple and a `click` event), and
 * highlights (highlight mode or a modifier+click toggles `cb-agent-hl` on the element under
 * the pointer and sends `highlight`). The replica itself is never clickable: the overlay's
 * glass takes the agent's pointer.
 */

const POINTER_INTERVAL_MS = 50;  // 20 pointer events/s is smooth and cheap on the wire

/** The agent's pointer in the replica's viewport (where elementFromPoint looks). */
function toReplica(rs, e) {
  const r = rs.overlay.getBoundingClientRect();
  return {x: (e.clientX - r.left) / rs.scale, y: (e.clientY - r.top) / rs.scale};
}

/** The same in the visitor's viewport, what the wire carries (geometry.js). */
function toVisitor(rs, e) {
  const p = replicaToVisitor(rs.offset, toReplica(rs, e));
  return {x: Math.round(p.x), y: Math.round(p.y)};
}

function sendPointer(rs) {
  const ptr = rs.pointer;
  ptr.timer = null;
  if (!ptr.latest) return;
  ptr.lastSent = Date.now();
  const p = ptr.latest;
  ptr.latest = null;
  rs.onAgentEvent("pointer", p);
}

function onAgentMove(rs, e) {
  if (rs.inert) return;
  const ptr = rs.pointer;
  ptr.latest = toVisitor(rs, e);
  const wait = POINTER_INTERVAL_MS - (Date.now() - ptr.lastSent);
  if (wait <= 0) sendPointer(rs);
  else if (!ptr.timer) ptr.timer = setTimeout(() => sendPointer(rs), wait);
}

function elementAt(rs, x, y) {
  if (!rs.doc) return null;
  let el = rs.doc.elementFromPoint(x, y);
  while (el && el.shadowRoot) {  // open shadow roots: the deepest element we built
    const inner = el.shadowRoot.elementFromPoint(x, y);
    if (!inner || inner === el) break;
    el = inner;
  }
  while (el && rs.rev.get(el) === undefined) el = parentOf(el);
  return el;
}

function onAgentClick(rs, e) {
  if (rs.inert) return;
  const p = toVisitor(rs, e);
  if (rs.highlightMode || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) {
    const at = toReplica(rs, e);
    const el = elementAt(rs, at.x, at.y);
    if (!el) return;
    const id = rs.rev.get(el);
    const on = !rs.highlighted.has(id);
    toggleHighlight(rs, id, on);
    rs.onAgentEvent("highlight", {id, on});
  } else {
    ripple(rs, p, "rgba(30,110,230,.9)");
    rs.onAgentEvent("click", p);
  }
}

function toggleHighlight(rs, id, on) {
  const el = rs.ids.get(id);
  if (on) rs.highlighted.add(id); else rs.highlighted.delete(id);
  if (el && el.nodeType === 1) classOn(rs, el, "cb-agent-hl", on);
}

/** Highlights survive the visitor's own class changes: put them back after each layout. */
function paintHighlights(rs) {
  for (const id of rs.highlighted) {
    const el = rs.ids.get(id);
    if (el && el.nodeType === 1 && !el.classList.contains("cb-agent-hl")) classOn(rs, el, "cb-agent-hl", true);
  }
}

function setHighlightMode(rs, on) {
  rs.highlightMode = !!on;
  rs.glass.style.cursor = on ? "crosshair" : "default";
}

/** Once the session ended: the replica greyed out, and nothing the agent does reaches it. */
function setInert(rs, on) {
  rs.inert = !!on;
  if (rs.inert) setHighlightMode(rs, false);
  clearTimeout(rs.pointer.timer);
  rs.pointer.timer = null;
  rs.pointer.latest = null;
  rs.glass.style.pointerEvents = rs.inert || !rs.interactive ? "none" : "auto";
  rs.iframe.style.pointerEvents = rs.inert ? "none" : "";
  rs.iframe.style.filter = rs.inert ? "grayscale(1)" : "";
  rs.iframe.style.opacity = rs.inert ? "0.5" : "";
  if (rs.inert) rs.dot.style.display = "none";
}

function listenForAgent(rs) {
  if (!rs.interactive) return;
  rs.glass.addEventListener("pointermove", (e) => onAgentMove(rs, e));
  rs.glass.addEventListener("click", (e) => onAgentClick(rs, e));
}
