/* visitor/overlay.js: what the agent shows in the visitor's page: their pointer (with their
 * name), highlights of nodes by id, click ripples, freehand strokes that fade, and a
 * "Reconnecting" badge. A closed shadow
 * root on an element of ours: never serialized, and the page's CSS cannot reach it. */

// Strokes (`draw`): each fades out over STROKE_MS. Bounded whatever an agent sends: points per
// stroke, strokes shown at once, and strokes taken per second (the viewer sends fewer).
const STROKE_MS = 3000;
const STROKE_MAX_POINTS = 512;
const STROKE_MAX_SHOWN = 32;
const STROKES_PER_S = 10;
const SVG_NS = "http://www.w3.org/2000/svg";

/** A `draw` payload's points as an SVG `points` string, or null when it is not a stroke. */
function strokePoints(p) {
  if (!Array.isArray(p.pts) || p.pts.length < 2) return null;
  const out = [];
  for (const pt of p.pts.slice(0, STROKE_MAX_POINTS)) {
    if (!Array.isArray(pt) || !Number.isFinite(pt[0]) || !Number.isFinite(pt[1])) return null;
    out.push(`${Math.round(pt[0])},${Math.round(pt[1])}`);
  }
  return out.join(" ");
}

const HOST_STYLE =
  "all: initial !important; position: fixed !important; inset: 0 !important; " +
  "pointer-events: none !important; z-index: 2147483647 !important; display: block !important;";
function makeOverlay() {
  const host = document.createElement("cobrowse-overlay");
  ours.add(host);
  host.setAttribute("style", HOST_STYLE);
  const root = ORIG.attachShadow.call(host, { mode: "closed" });
  const style = document.createElement("style");
  style.textContent = `
    :host { all: initial; }
    .ptr { position: fixed; left: 0; top: 0; display: none; transition: transform 60ms linear; }
    .ptr svg { display: block; filter: drop-shadow(0 1px 1px rgba(0,0,0,.4)); }
    .ptr span { position: absolute; left: 16px; top: 18px; font: 12px/1.4 system-ui, sans-serif;
      background: #2563eb; color: #fff; padding: 1px 6px; border-radius: 4px; white-space: nowrap; }
    .hl { position: fixed; border: 2px solid #f59e0b; border-radius: 3px;
      box-shadow: 0 0 0 4px rgba(245,158,11,.25); box-sizing: border-box; }
    .rip { position: fixed; width: 24px; height: 24px; margin: -12px 0 0 -12px; border-radius: 50%;
      border: 2px solid #2563eb; animation: rip .6s ease-out forwards; }
    @keyframes rip { from { transform: scale(.3); opacity: 1; } to { transform: scale(2.2); opacity: 0; } }
    svg.strokes { position: fixed; left: 0; top: 0; width: 100vw; height: 100vh; overflow: visible; }
    svg.strokes polyline { fill: none; stroke: #e11d48; stroke-width: 4; stroke-linecap: round; stroke-linejoin: round;
      animation: fade ${STROKE_MS}ms ease-in forwards; }
    @keyframes fade { 0%, 60% { opacity: .9; } 100% { opacity: 0; } }
    .badge { position: fixed; right: 12px; bottom: 12px; display: none; font: 12px/1.4 system-ui, sans-serif;
      background: rgba(17,24,39,.85); color: #fff; padding: 4px 10px; border-radius: 12px; }`;
  root.appendChild(style);
  const ptr = document.createElement("div");
  ptr.className = "ptr";
  ptr.innerHTML =
    '<svg width="18" height="24" viewBox="0 0 18 24"><path d="M1 1 L1 19 L6 14 L9.5 22 L12.5 20.5 L9 13 L16 13 Z" fill="#2563eb" stroke="#fff" stroke-width="1.5"/></svg><span></span>';
  ptr.querySelector("span").textContent = CB_CFG.agentName;
  root.appendChild(ptr);
  const badge = document.createElement("div");
  badge.className = "badge";
  badge.textContent = "Reconnecting\u2026";
  root.appendChild(badge);
  const strokes = document.createElementNS(SVG_NS, "svg");
  strokes.setAttribute("class", "strokes");
  root.appendChild(strokes);
  const strokeTimes = []; // when the strokes of the last second came
  const hls = new Map(); // id -> box
  let hlTimer = null;
  let ptrHide = null;
  let ptrAt = null; // [x, y] while the agent's pointer shows
  let badgeOn = false;
  function place() {
    for (const [id, box] of hls) {
      const n = nodeOf(id);
      if (!n || !n.isConnected || !n.getBoundingClientRect) { box.style.display = "none"; continue; }
      const r = n.getBoundingClientRect();
      Object.assign(box.style, { display: "block", left: r.left - 3 + "px", top: r.top - 3 + "px", width: r.width + 6 + "px", height: r.height + 6 + "px" });
    }
  }
  function attach() {
    if (!host.isConnected) document.documentElement.appendChild(host);
  }
  return {
    host,
    attach,
    agentEvent(kind, p) {
      if (!p || typeof p !== "object") return;
      attach();
      if (kind === "pointer" && Number.isFinite(p.x) && Number.isFinite(p.y)) {
        ptr.style.display = "block";
        ptr.style.transform = `translate(${p.x}px, ${p.y}px)`;
        ptrAt = [p.x, p.y];
        clearTimeout(ptrHide);
        ptrHide = setTimeout(() => { ptr.style.display = "none"; ptrAt = null; }, 15000);
      } else if (kind === "click" && Number.isFinite(p.x) && Number.isFinite(p.y)) {
        const r = document.createElement("div");
        r.className = "rip";
        r.style.left = p.x + "px";
        r.style.top = p.y + "px";
        root.appendChild(r);
        setTimeout(() => r.remove(), 700);
      } else if (kind === "draw") {
        const pts = strokePoints(p);
        const now = Date.now();
        while (strokeTimes.length && now - strokeTimes[0] > 1000) strokeTimes.shift();
        if (!pts || strokeTimes.length >= STROKES_PER_S) return;
        strokeTimes.push(now);
        while (strokes.childNodes.length >= STROKE_MAX_SHOWN) strokes.firstChild.remove();
        const line = document.createElementNS(SVG_NS, "polyline");
        line.setAttribute("points", pts);
        strokes.appendChild(line);
        setTimeout(() => line.remove(), STROKE_MS);
      } else if (kind === "highlight" && Number.isInteger(p.id)) {
        const box = hls.get(p.id);
        if (p.on) {
          if (!box) {
            const b = document.createElement("div");
            b.className = "hl";
            root.appendChild(b);
            hls.set(p.id, b);
          }
          if (!hlTimer) hlTimer = setInterval(place, 100); // follows scroll and layout
          place();
        } else if (box) {
          box.remove();
          hls.delete(p.id);
          if (!hls.size) { clearInterval(hlTimer); hlTimer = null; }
        }
      }
    },
    agentLeft() {
      ptr.style.display = "none";
      ptrAt = null;
      for (const b of hls.values()) b.remove();
      hls.clear();
      strokes.textContent = "";
      clearInterval(hlTimer);
      hlTimer = null;
    },
    reconnecting(on) {
      attach();
      badge.style.display = on ? "block" : "none";
      badgeOn = on;
    },
    // For tests (the shadow root is closed): what the overlay shows, or null when nothing.
    state() {
      const lines = Array.from(strokes.childNodes, (l) => l.getAttribute("points"));
      if (!ptrAt && !hls.size && !badgeOn && !lines.length) return null;
      return { pointer: ptrAt, highlights: Array.from(hls.keys()), reconnecting: badgeOn, strokes: lines };
    },
    remove() {
      this.agentLeft();
      clearTimeout(ptrHide);
      host.remove();
    },
  };
}
