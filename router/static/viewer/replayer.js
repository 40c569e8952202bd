/* viewer/replayer.js: `CobrowseViewer.replayer(iframe, opts)` rebuilds the visitor's page
 * inside a sandboxed iframe (allow-same-origin, no allow-scripts) from snapshot and event
 * payloads, by DOM calls only (docs/browser.md). It creates the replica state (state.js),
 * the overlay above the iframe, and returns the public API; the work is in the parts:
 * urls.js, sheets.js, sanitiser.js, build.js, apply.js, actions.js, and view.js (layout,
 * scale, the visitor's viewport frame).
 */

// The embed page's layer above the iframe (never inside the visitor's document).
function mountOverlay(rs) {
  const {host, edoc, iframe} = rs;
  if (host && edoc.defaultView.getComputedStyle(host).position === "static") host.style.position = "relative";
  Object.assign(iframe.style, {position: "absolute", left: "0", top: "0", border: "0",
    transformOrigin: "0 0", background: "#fff"});
  rs.overlay = edoc.createElement("div");
  Object.assign(rs.overlay.style, {position: "absolute", left: "0", top: "0", pointerEvents: "none",
    overflow: "hidden", zIndex: "1"});
  rs.glass = edoc.createElement("div");  // takes the agent's pointer: the replica is not clickable
  Object.assign(rs.glass.style, {position: "absolute", inset: "0", pointerEvents: rs.interactive ? "auto" : "none",
    cursor: "default"});
  rs.dot = edoc.createElement("div");    // the visitor's pointer
  Object.assign(rs.dot.style, {position: "absolute", width: "14px", height: "14px", margin: "-7px 0 0 -7px",
    borderRadius: "50%", background: "rgba(230,60,30,.85)", border: "2px solid #fff",
    boxShadow: "0 0 3px rgba(0,0,0,.6)", display: "none", boxSizing: "border-box"});
  rs.overlay.append(rs.glass, rs.dot);
  mountFrame(rs);
  if (host) host.appendChild(rs.overlay);
  if (host && typeof ResizeObserver !== "undefined") {
    rs.resizeObs = new ResizeObserver(() => layout(rs));
    rs.resizeObs.observe(host);
  }
  layout(rs);
}

function destroyReplica(rs) {
  rs.destroyed = true;
  rs.gen++;
  if (rs.resizeObs) rs.resizeObs.disconnect();
  if (rs.linkObserver) rs.linkObserver.disconnect();
  clearTimeout(rs.pointer.timer);
  rs.overlay.remove();
  rs.ids.clear();
  rs.sheets.clear();
}

function replayer(iframe, opts) {
  const rs = newReplicaState(iframe, opts || {});
  mountOverlay(rs);
  listenForAgent(rs);
  mountControl(rs);
  return {
    applySnapshot: (s) => { try { applySnapshot(rs, s); } catch (e) { rs.stats.errors++; throw e; } },
    apply: (kind, payload) => apply(rs, kind, payload),
    nodeById: (id) => rs.ids.get(id) || null,
    idOf: (node) => rs.rev.get(node),
    stats: () => Object.assign({}, rs.stats),
    info: () => Object.assign({}, rs.info),
    viewport: () => rs.viewport.slice(),
    scale: () => rs.scale,
    setHighlightMode: (on) => setHighlightMode(rs, on),
    highlightMode: () => rs.highlightMode,
    highlight: (id, on) => toggleHighlight(rs, id, on !== false),
    setInert: (on) => {
      setInert(rs, on !== false);
      if (rs.inert) { setDrawMode(rs, false); setControlState(rs, "off"); rs.rc.onChange(rs.rc.state); }
    },
    // Remote control and drawing (control.js).
    requestControl: () => requestControl(rs),
    controlEvent: (kind, payload, aid) => controlEvent(rs, kind, payload, aid),
    controlState: () => rs.rc.state,
    onControl: (fn) => { rs.rc.onChange = fn; fn(rs.rc.state); },
    setDrawMode: (on) => setDrawMode(rs, on),
    drawMode: () => rs.rc.drawMode,
    inert: () => rs.inert,
    layout: () => layout(rs),
    setFit: (on) => setFit(rs, on !== false),
    fit: () => rs.fit,
    setFollow: (on) => setFollow(rs, on !== false),
    follow: () => rs.follow,
    scrollBy: (dx, dy) => scrollReplica(rs, dx, dy),
    view: () => { const g = geometryOf(rs); return {scale: g.scale, frame: g.frame, offset: g.offset, where: g.where}; },
    destroy: () => destroyReplica(rs),
    get document() { return rs.doc; },
  };
}
