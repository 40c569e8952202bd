/* viewer/control.js: the agent's remote control and drawing (docs/browser.md "Remote
 * control", "Drawing"). `rc-request` asks; the visitor's `rc-grant`/`rc-revoke` naming this
 * agent open and close control. While granted, a plain click on the replica sends `rc-click`
 * (node id + offset in its box) instead of a ripple, the wheel sends `rc-scroll` (for the
 * box under it that can scroll that way, else the window), and a click
 * on a text field opens an editor over it whose typing goes out as `rc-text` (`done` on
 * Enter or when it loses focus; Enter in a one-line field also goes out as `rc-key`, so
 * the visitor's form submits as it would for the visitor's own Enter); on a select, a
 * chooser with its options, whose choice goes out as `rc-text`; on a `contenteditable`
 * region, a textarea with its text. Draw mode turns a drag into a freehand `draw` stroke, shown
 * here and on the visitor's overlay, fading after STROKE_FADE_MS. Its state is `rs.rc`.
 */

const STROKE_FADE_MS = 3000;
const DRAW_MAX_POINTS = 256; // points per stroke (the visitor takes at most 512)
const DRAW_MIN_GAP = 3; // visitor px between kept points: a slow drag is not 1000 points
const DRAWS_PER_S = 4; // strokes sent per second (the visitor shows at most 10)
const RC_TEXT_FIELDS = new Set(["", "text", "search", "email", "url", "tel", "number"]);
const SVG = "http://www.w3.org/2000/svg";

function mountControl(rs) {
  const edoc = rs.edoc;
  const layer = edoc.createElementNS(SVG, "svg");  // strokes, in visitor px scaled with the overlay
  Object.assign(layer.style, {position: "absolute", left: "0", top: "0", width: "100%", height: "100%",
    pointerEvents: "none", overflow: "visible"});
  rs.overlay.appendChild(layer);
  rs.rc = {state: "off", drawMode: false, stroke: null, drawTimes: [], layer, editor: null, onChange: () => {}};
  const g = rs.glass;
  g.addEventListener("pointerdown", (e) => drawStart(rs, e), true);
  g.addEventListener("pointermove", (e) => drawMove(rs, e), true);
  g.addEventListener("pointerup", (e) => drawEnd(rs, e), true);
  g.addEventListener("click", (e) => controlClick(rs, e), true);  // before actions.js' click
  g.addEventListener("wheel", (e) => controlWheel(rs, e), {capture: true, passive: false});
}

/** "off", "requested" or "granted"; `onChange(state)` tells the page. */
function setControlState(rs, state) {
  if (rs.rc.state === state) return;
  rs.rc.state = state;
  if (state !== "granted") closeEditor(rs, false);
  rs.rc.onChange(state);
}

function requestControl(rs) {
  if (rs.inert || rs.rc.state !== "off") return;
  setControlState(rs, "requested");
  rs.onAgentEvent("rc-request", {});
}

/** The visitor's rc-grant / rc-revoke (and the gateway's refusals): only ours count. */
function controlEvent(rs, kind, p, aid) {
  if (!p || typeof p !== "object" || p.aid !== aid || !aid) return;
  if (kind === "rc-grant") setControlState(rs, "granted");
  else if (kind === "rc-revoke") setControlState(rs, "off");
}

function setDrawMode(rs, on) {
  rs.rc.drawMode = !!on && !rs.inert;
  if (rs.rc.drawMode) setHighlightMode(rs, false);
  rs.glass.style.cursor = rs.rc.drawMode ? "crosshair" : "default";
}

function strokeLine(rs, pts) {
  const line = rs.edoc.createElementNS(SVG, "polyline");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#e11d48");
  line.setAttribute("stroke-width", String(4 * rs.scale));
  line.setAttribute("stroke-linecap", "round");
  line.setAttribute("points", pts.map(([x, y]) => `${x * rs.scale},${y * rs.scale}`).join(" "));
  rs.rc.layer.appendChild(line);
  return line;
}

function fade(line) {
  line.style.transition = `opacity ${STROKE_FADE_MS * 0.4}ms ease-in ${STROKE_FADE_MS * 0.6}ms`;
  requestAnimationFrame(() => { line.style.opacity = "0"; });
  setTimeout(() => line.remove(), STROKE_FADE_MS);
}

function drawStart(rs, e) {
  if (!rs.rc.drawMode || rs.inert || e.button !== 0) return;
  e.stopImmediatePropagation();
  const p = toVisitor(rs, e);
  rs.rc.stroke = {pts: [[p.x, p.y]], line: null};
  rs.glass.setPointerCapture && rs.glass.setPointerCapture(e.pointerId);
}

function drawMove(rs, e) {
  const s = rs.rc.stroke;
  if (!s) return;
  e.stopImmediatePropagation();
  const p = toVisitor(rs, e);
  const [lx, ly] = s.pts[s.pts.length - 1];
  if (s.pts.length >= DRAW_MAX_POINTS || Math.hypot(p.x - lx, p.y - ly) < DRAW_MIN_GAP) return;
  s.pts.push([p.x, p.y]);
  if (s.line) s.line.remove();
  s.line = strokeLine(rs, s.pts);
}

function drawEnd(rs, e) {
  const s = rs.rc.stroke;
  if (!s) return;
  e.stopImmediatePropagation();
  rs.rc.stroke = null;
  if (s.pts.length < 2) { if (s.line) s.line.remove(); return; }
  const now = Date.now();
  const times = rs.rc.drawTimes;
  while (times.length && now - times[0] > 1000) times.shift();
  if (times.length >= DRAWS_PER_S) { s.line.remove(); return; }  // over the rate: not sent, not kept
  times.push(now);
  fade(s.line);
  rs.onAgentEvent("draw", {pts: s.pts});
}

function controlClick(rs, e) {
  if (rs.rc.drawMode) { e.stopImmediatePropagation(); return; }  // a stroke's end, not a click
  if (rs.rc.state !== "granted" || rs.inert || rs.highlightMode || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
  e.stopImmediatePropagation();
  const p = toVisitor(rs, e);
  const el = elementAt(rs, p.x, p.y);
  if (!el) return;
  const r = el.getBoundingClientRect();
  const id = rs.rev.get(el);
  ripple(rs, p, "rgba(220,38,38,.9)");
  rs.onAgentEvent("rc-click", {id, x: Math.round(p.x - r.left), y: Math.round(p.y - r.top)});
  const text = (el.localName === "input" && RC_TEXT_FIELDS.has((el.getAttribute("type") || "").toLowerCase())) || el.localName === "textarea";
  if (text) openEditor(rs, id, r, el.value, el.localName === "textarea");
  else if (el.localName === "select" && !el.multiple && !el.disabled) openChooser(rs, el, id, r);
  else if (el.isContentEditable) {  // its editing host's text, edited as a textarea's
    let host = el;
    while (host.parentElement && host.parentElement.isContentEditable) host = host.parentElement;
    const hid = rs.rev.get(host);
    if (hid !== undefined) openEditor(rs, hid, host.getBoundingClientRect(), host.innerText, true);
  }
}

function controlWheel(rs, e) {
  if (rs.rc.state !== "granted" || rs.inert) return;
  e.preventDefault();
  e.stopImmediatePropagation();
  const dx = Math.round(e.deltaX), dy = Math.round(e.deltaY);
  const p = toVisitor(rs, e);
  rs.onAgentEvent("rc-scroll", {id: scrollerAt(rs, elementAt(rs, p.x, p.y), dx, dy), dx, dy});
}

/** The id of the innermost replica element under the wheel that can still scroll its way
 * (an `overflow: auto | scroll` box with room left in that direction), as a browser picks
 * the box a wheel scrolls; 0 (the window) when none can. */
function scrollerAt(rs, el, dx, dy) {
  for (let n = el; n && n.nodeType === 1; n = parentOf(n)) {
    if (n === rs.doc.documentElement || n === rs.doc.body) break;
    const id = rs.rev.get(n);
    if (id === undefined) continue;
    const cs = n.ownerDocument.defaultView.getComputedStyle(n);
    const can = (overflow, delta, pos, size, client) => /^(auto|scroll|overlay)$/.test(overflow) &&
      size > client && (delta > 0 ? pos + client < size - 1 : delta < 0 && pos > 0);
    if (can(cs.overflowY, dy, n.scrollTop, n.scrollHeight, n.clientHeight) ||
        can(cs.overflowX, dx, n.scrollLeft, n.scrollWidth, n.clientWidth)) return id;
  }
  return 0;
}

/** A field of the embed page (`#cb-rc-editor`) over the replica's field `r`. */
function editorOver(rs, tag, label, r) {
  closeEditor(rs, false);
  const ed = rs.edoc.createElement(tag);
  ed.id = "cb-rc-editor";
  ed.setAttribute("aria-label", label);
  Object.assign(ed.style, {position: "absolute", left: r.left * rs.scale + "px", top: r.top * rs.scale + "px",
    width: Math.max(r.width * rs.scale, 80) + "px", height: Math.max(r.height * rs.scale, 20) + "px",
    boxSizing: "border-box", pointerEvents: "auto", zIndex: "2", outline: "2px solid #dc2626", font: "inherit"});
  return ed;
}

/** A select of the embed page over the replica's select, with its options: a synthetic
 * click cannot open the visitor's picker, so the agent picks here and the choice goes out
 * as `rc-text` (done). */
function openChooser(rs, el, id, r) {
  const ed = editorOver(rs, "select", "Choose for the visitor", r);
  for (const o of el.options) {
    const c = rs.edoc.createElement("option");
    c.value = o.value;
    c.textContent = o.text;
    c.disabled = o.disabled || !!(o.parentNode && o.parentNode.localName === "optgroup" && o.parentNode.disabled);
    ed.appendChild(c);
  }
  ed.value = el.value;
  const send = (done) => { if (done) rs.onAgentEvent("rc-text", {id, value: ed.value, done: true}); };
  ed.addEventListener("change", () => closeEditor(rs, true));
  ed.addEventListener("keydown", (k) => { if (k.key === "Escape") closeEditor(rs, false); });
  ed.addEventListener("blur", () => closeEditor(rs, false));
  rs.rc.editor = {ed, send};
  rs.overlay.appendChild(ed);
  ed.focus();
}

/** An input of the embed page over the replica's field: what the agent types goes out. */
function openEditor(rs, id, r, value, multiline) {
  const ed = editorOver(rs, multiline ? "textarea" : "input", "Type into the visitor's field", r);
  ed.value = value;
  const send = (done) => rs.onAgentEvent("rc-text", done ? {id, value: ed.value, done: true} : {id, value: ed.value});
  ed.addEventListener("input", () => send(false));
  ed.addEventListener("keydown", (k) => {
    if (k.key === "Enter" && ed.localName === "input") {  // done, and Enter on the field: a form submits
      k.preventDefault();
      closeEditor(rs, true);
      rs.onAgentEvent("rc-key", {id, key: "Enter"});
    }
    else if (k.key === "Escape") closeEditor(rs, false);
  });
  ed.addEventListener("blur", () => closeEditor(rs, true));
  rs.rc.editor = {ed, send};
  rs.overlay.appendChild(ed);
  ed.focus();
}

function closeEditor(rs, done) {
  const cur = rs.rc && rs.rc.editor;
  if (!cur) return;
  rs.rc.editor = null;
  if (done) cur.send(true);
  cur.ed.remove();
}

/** The embed page's toolbar buttons (#cb-control, #cb-draw): labels, aria-pressed, clicks. */
function controlButtons(rp, controlBtn, drawBtn) {
  const label = {off: "Request control", requested: "Waiting for the visitor…", granted: "In control"};
  if (controlBtn) controlBtn.addEventListener("click", () => rp.requestControl());
  rp.onControl((state) => {  // also called once the session ended (inert): both off for good
    if (controlBtn) {
      controlBtn.textContent = label[state];
      controlBtn.disabled = state !== "off" || rp.inert();
      controlBtn.setAttribute("data-state", state);
    }
    if (drawBtn && rp.inert()) {
      drawBtn.disabled = true;
      drawBtn.setAttribute("aria-pressed", "false");
    }
  });
  if (drawBtn) {
    drawBtn.addEventListener("click", () => {
      rp.setDrawMode(!rp.drawMode());
      drawBtn.setAttribute("aria-pressed", rp.drawMode() ? "true" : "false");
    });
  }
}
