/* viewer/view.js: the agent's view of the visitor's viewport. Fit (scaled to the stage) or
 * 100 % (unscaled; the stage scrolls), following the visitor's scroll or not (then the agent
 * scrolls the replica with the wheel or the keys on the glass), and a frame outlining what
 * the visitor sees, wherever that is relative to what the agent sees. The numbers come from
 * geometry.js (pure); this part puts them on the iframe, the overlay and the stage.
 */

const FRAME_COLOR = "#f59e0b";  // amber: apart from the visitor's red pointer and the agent's blue
const FRAME_LABELS = Object.freeze({
  here: "Visitor's view",
  above: "Visitor's view is above ↑",
  below: "Visitor's view is below ↓",
  left: "Visitor's view is to the left ←",
  right: "Visitor's view is to the right →",
});
const LINE_PX = 40;        // one arrow key or one wheel "line", as browsers scroll
const PAGE_FRACTION = 0.875;  // PageUp/PageDown keep an eighth of the view, as browsers do

/** The outline of the visitor's viewport and its label, in the overlay (never the replica). */
function mountFrame(rs) {
  const d = rs.edoc;
  rs.vpFrame = d.createElement("div");
  rs.vpFrame.className = "cb-viewport-frame";
  Object.assign(rs.vpFrame.style, {position: "absolute", boxSizing: "border-box", pointerEvents: "none",
    border: "2px solid " + FRAME_COLOR, left: "0", top: "0"});
  rs.vpLabel = d.createElement("div");
  rs.vpLabel.className = "cb-viewport-label";
  Object.assign(rs.vpLabel.style, {position: "absolute", pointerEvents: "none", background: FRAME_COLOR,
    color: "#111827", font: "600 11px/16px system-ui, sans-serif", padding: "0 6px", whiteSpace: "nowrap",
    display: "none"});
  rs.overlay.append(rs.vpFrame, rs.vpLabel);
  // The glass is where the agent's keys go: focusable, named, and it scrolls (below).
  rs.glass.className = "cb-glass";
  // The replica is not a tab stop: its links and fields would take the agent's keys (and a
  // typed key would change the replica, not the visitor's page).
  rs.iframe.tabIndex = -1;
  if (rs.interactive) {
    rs.glass.tabIndex = 0;
    rs.glass.setAttribute("role", "group");
    rs.glass.setAttribute("aria-label", "The visitor's page. Arrow keys, Page Up and Page Down scroll the view");
    rs.glass.addEventListener("wheel", (e) => onAgentWheel(rs, e), {passive: false});
    rs.glass.addEventListener("keydown", (e) => onAgentKey(rs, e));
  }
}

/** The replica window's scroll; the visitor's before the first snapshot (no offset). */
function replicaScrollOf(rs) {
  if (!rs.doc || !rs.win) return rs.winScroll;
  try { return [rs.win.scrollX, rs.win.scrollY]; } catch (e) { return rs.winScroll; }
}

function geometryOf(rs) {
  const host = rs.host;
  return viewGeometry({
    stage: host ? [host.clientWidth, host.clientHeight] : [0, 0],
    viewport: rs.viewport,
    fit: rs.fit,
    visitorScroll: rs.winScroll,
    replicaScroll: replicaScrollOf(rs),
  });
}

/** The visitor's viewport scaled (or not) in the stage, the overlay on top of it. */
function layout(rs) {
  const [vw, vh] = rs.viewport;
  const {iframe, host, overlay} = rs;
  iframe.style.width = vw + "px";
  iframe.style.height = vh + "px";
  if (host) {
    host.style.overflow = rs.fit ? "hidden" : "auto";  // before measuring: scrollbars take room
    if (rs.fit && (host.scrollLeft || host.scrollTop)) host.scrollTo(0, 0);  // where 100 % left it
  }
  const g = geometryOf(rs);
  rs.scale = g.scale;
  iframe.style.transform = g.scale === 1 ? "" : `scale(${g.scale})`;
  overlay.style.width = g.width + "px";
  overlay.style.height = g.height + "px";
  drawFrame(rs, g);
}

/** The frame where the visitor's viewport is; the label only when it is not the agent's own
 * view (not following, or the replica's page cannot scroll as far); the visitor's pointer
 * moved with it. */
function drawFrame(rs, g) {
  g = g || geometryOf(rs);
  rs.offset = g.offset;
  const f = g.frame;
  Object.assign(rs.vpFrame.style, {left: f.x + "px", top: f.y + "px", width: f.w + "px", height: f.h + "px"});
  const apart = Math.abs(g.offset[0]) >= 1 || Math.abs(g.offset[1]) >= 1;
  rs.vpLabel.style.display = apart ? "block" : "none";
  rs.vpLabel.textContent = FRAME_LABELS[g.where];
  // Kept inside the overlay, so "above"/"below" is readable at its edge.
  rs.vpLabel.style.left = Math.max(0, Math.min(f.x, g.width - 180)) + "px";
  rs.vpLabel.style.top = Math.max(0, Math.min(f.y, g.height - 16)) + "px";
  if (rs.visitorPointer && rs.dot.style.display !== "none") placePointer(rs, rs.visitorPointer);
  rs.onView({scale: g.scale, fit: rs.fit, follow: rs.follow, where: g.where, offset: g.offset.slice()});
  return g;
}

function setFit(rs, on) {
  rs.fit = !!on;
  layout(rs);
}

/** Following: the replica scrolls with the visitor. Not following: it stays where the
 * agent puts it, starting where it is now. */
function setFollow(rs, on) {
  rs.follow = !!on;
  if (!rs.follow) rs.agentScroll = replicaScrollOf(rs).slice();
  applyScroll(rs);
}

/** The agent scrolls the replica (not following) by replica CSS px. */
function scrollReplica(rs, dx, dy) {
  if (rs.follow || !rs.doc || rs.inert) return false;
  const [x, y] = replicaScrollOf(rs);
  try { rs.win.scrollTo({left: x + dx, top: y + dy, behavior: "instant"}); } catch (e) { return false; }
  rs.agentScroll = replicaScrollOf(rs).slice();
  drawFrame(rs);
  return true;
}

function onAgentWheel(rs, e) {
  if (rs.follow) return;  // the stage scrolls itself at 100 %; nothing moves in fit
  const unit = e.deltaMode === 1 ? LINE_PX : e.deltaMode === 2 ? rs.viewport[1] * PAGE_FRACTION : 1;
  // Divided by the scale: the page moves under the pointer as far as the wheel says.
  if (scrollReplica(rs, e.deltaX * unit / rs.scale, e.deltaY * unit / rs.scale)) e.preventDefault();
}

/** Arrow keys, Page Up/Down, Home/End and Space scroll the replica when not following,
 * and the stage at 100 % when following. */
function onAgentKey(rs, e) {
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const page = rs.viewport[1] * PAGE_FRACTION;
  const moves = {ArrowUp: [0, -LINE_PX], ArrowDown: [0, LINE_PX], ArrowLeft: [-LINE_PX, 0], ArrowRight: [LINE_PX, 0],
    PageUp: [0, -page], PageDown: [0, page], " ": [0, e.shiftKey ? -page : page], Home: [0, -1e7], End: [0, 1e7]};
  const m = moves[e.key];
  if (!m) return;
  if (!rs.follow) {
    if (scrollReplica(rs, m[0], m[1])) e.preventDefault();
  } else if (!rs.fit && rs.host) {
    rs.host.scrollBy({left: m[0], top: m[1], behavior: "instant"});
    e.preventDefault();
  }
}
