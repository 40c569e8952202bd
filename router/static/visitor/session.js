/* visitor/session.js: the Cobrowse API (start, end, on, state; docs/browser.md), the session
 * through the router's HTTP API, the wire glue (CobrowseWire from wire.js), and the session's
 * continuation across page loads in sessionStorage. Last of the visitor's parts: it defines
 * window.Cobrowse and resumes a running session at load. */

/** The page's one visit, shared by the Cobrowse API, the wire's callbacks and the resume. */
const visit = {
  state: "idle", // what Cobrowse.state() answers
  session: null, // {sid, token, gateways, code}
  wire: null, // the CobrowseWire while a session runs
  rec: null, // makeRecorder's API while a session runs
  overlay: null, // makeOverlay's while a session runs
  control: null, // makeControl's (control.js) while a session runs
  starting: null, // the promise of a Cobrowse.start() under way
  handlers: new Map(), // event name -> Set of callbacks (Cobrowse.on)
};

function fire(name, arg) {
  for (const fn of visit.handlers.get(name) || []) {
    try { fn(arg); } catch (e) { console.error(e); }
  }
}
function setState(s, detail) {
  if (visit.state === s) return;
  visit.state = s;
  if (visit.overlay) visit.overlay.reconnecting(s === "reconnecting");
  fire("state", Object.assign({ state: s }, detail || {}));
}
function readStore() {
  try {
    const v = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    return v && typeof v === "object" && v.sid && v.token ? v : null;
  } catch (e) {
    return null;
  }
}
function writeStore(obj) {
  if (!visit.session) return;
  try {
    // The wire's own fields (rt, epoch, unacked, recv, a refreshed gateway list) plus ours.
    const control = visit.control ? visit.control.holder() : null; // the grant outlives the page
    const v = Object.assign({ gateways: visit.session.gateways }, obj || {}, { sid: visit.session.sid, token: visit.session.token, code: visit.session.code, control });
    sessionStorage.setItem(STORE_KEY, JSON.stringify(v));
  } catch (e) { /* storage full or disabled: the session ends with the page */ }
}
function clearStore() {
  try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* disabled */ }
}

async function createSession() {
  if (!CB_CFG.base) throw codedError("unavailable", "cobrowse: cannot tell the router's URL (no script src)");
  if (!CB_CFG.siteKey) throw codedError("bad_site_key", "cobrowse: the script tag has no data-site-key");
  let r;
  try {
    r = await fetch(CB_CFG.base + "/v1/sessions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ site_key: CB_CFG.siteKey }),
      credentials: "omit",
    });
  } catch (e) {
    throw codedError("unavailable", "cobrowse: the router cannot be reached");
  }
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.ok && body && typeof body.session_id === "string" && typeof body.visitor_token === "string" && Array.isArray(body.gateways)) {
    return { sid: body.session_id, token: body.visitor_token, gateways: body.gateways, code: body.short_code || null };
  }
  const code = body && body.error && body.error.code;
  const msg = (body && body.error && body.error.message) || `HTTP ${r.status}`;
  if (r.status === 401 || code === "bad_site_key") throw codedError("bad_site_key", msg);
  if (r.status === 429 || code === "rate_limited") {
    const e = codedError("rate_limited", msg);
    e.retryAfter = Number(r.headers.get("retry-after")) || null;
    throw e;
  }
  throw codedError("unavailable", msg);
}

// The session's gateway order again, when every known gateway failed (api.md, connect).
async function refreshGateways() {
  const sid = visit.session && visit.session.sid;
  if (!sid || !CB_CFG.base) return null;
  const r = await fetch(`${CB_CFG.base}/v1/sessions/${encodeURIComponent(sid)}/connect`, {
    method: "POST",
    headers: { authorization: "Bearer " + visit.session.token },
    credentials: "omit",
  });
  if (r.status === 404 || r.status === 401) {
    // The session ended (or the token is not valid for it): stop trying.
    const w = visit.wire;
    finish({ code: r.status === 404 ? "unknown_session" : "bad_token", reason: "the session is over" });
    if (w) { try { w.end("session gone"); } catch (e) { /* ending anyway */ } }
    return null;
  }
  if (!r.ok) return null;
  const body = await r.json();
  if (Array.isArray(body.gateways) && body.gateways.length) {
    visit.session.gateways = body.gateways;
    return body.gateways;
  }
  return null;
}

// End the session through the API with the visitor's token (404: it had ended already).
async function endSession(s) {
  if (!CB_CFG.base || !s.sid || !s.token) return false;
  try {
    const r = await fetch(`${CB_CFG.base}/v1/sessions/${encodeURIComponent(s.sid)}`, {
      method: "DELETE",
      headers: { authorization: "Bearer " + s.token },
      credentials: "omit",
    });
    return r.ok || r.status === 404;
  } catch (e) {
    return false; // the router cannot be reached: the bye still closes this connection
  }
}

function whenReady(fn) {
  // A snapshot of a half-parsed page would stream the rest as mutations: wait for the DOM.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn, { once: true });
  else fn();
}

// An agent's event: a `control` css-need goes to the recorder (the CSS fallback), remote
// control (`rc-*`) to control.js with the agent that sent it, the rest to the overlay.
function agentEvent(rec, ov, kind, p, src) {
  if (kind === "control") { if (rec && p && p.op === "css-need") rec.cssNeed(p); }
  else if (typeof kind === "string" && kind.startsWith("rc-")) { if (visit.control) visit.control.agentEvent(src, kind, p); }
  else if (ov) ov.agentEvent(kind, p);
}

function begin(saved) {
  visit.overlay = visit.overlay || makeOverlay();
  visit.overlay.attach();
  visit.control = makeControl(
    (kind, payload) => { if (visit.wire) visit.wire.send(kind, payload); },
    saved && typeof saved.control === "string" ? saved.control : null,
    () => { if (visit.wire) writeStore(visit.wire.persistState()); },
  );
  whenReady(() => { if (visit.control) visit.control.restore(); });
  visit.rec = makeRecorder((kind, payload) => {
    if (!visit.wire) return;
    if (kind === "snapshot") visit.wire.sendSnapshot(JSON.stringify(payload));
    else visit.wire.send(kind, payload);
  });
  visit.wire = new CobrowseWire({
    role: "visitor",
    sid: visit.session.sid,
    token: visit.session.token,
    gateways: visit.session.gateways,
    routerBase: CB_CFG.base,
    state: saved || null,
    refreshGateways,
    onEvents(events) {
      for (const ev of events || []) agentEvent(visit.rec, visit.overlay, ev.kind, ev.payload, ev.src);
    },
    onControl(ctl) {
      if (!ctl) return;
      if (ctl.op === "snapshot") { if (visit.rec && visit.rec.running) visit.rec.snapshot(); }
      else if (ctl.op === "joined") fire("agent-joined", { agentId: ctl.msg || null });
      else if (ctl.op === "left") {
        if (visit.overlay) visit.overlay.agentLeft();
        if (visit.control) visit.control.agentLeft(ctl.msg);
        fire("agent-left", { agentId: ctl.msg || null });
      }
    },
    onEpoch(epoch, fresh) {
      // Unacked events were abandoned with the old epoch: the agents need a new snapshot,
      // unless one is still queued (not numbered yet, so it goes out in the new epoch).
      const queued = visit.wire && Array.isArray(visit.wire.pending) && visit.wire.pending.some((e) => e[0] === "snapshot");
      if (fresh && !queued && visit.rec && visit.rec.running) visit.rec.snapshot();
    },
    onState(s, detail) {
      if (s === "ended") finish(detail || {});
      else if (s === "connecting" || s === "live" || s === "reconnecting") setState(s, detail);
    },
    onPersist(obj) {
      if (visit.state !== "ended") writeStore(obj);
    },
  });
  visit.wire.start();
  whenReady(() => { if (visit.rec && visit.state !== "ended") visit.rec.start({ nav: true }); });
}

// Fatal close codes that mean something went wrong (4004 ended and 4005 replaced do not).
const CLOSE_ERRORS = { 4000: "bad_frame", 4001: "unauthorized", 4002: "protocol", 4006: "unsupported_version", 4011: "session_full" };
function finish(detail) {
  if (visit.state === "ended") return;
  const bad = detail && CLOSE_ERRORS[detail.code];
  if (bad) {
    const e = codedError((detail.error && detail.error.code) || bad, (detail.error && detail.error.msg) || detail.reason || bad);
    e.closeCode = detail.code;
    fire("error", e);
  }
  clearStore();
  if (visit.rec) visit.rec.stop();
  visit.rec = null;
  if (visit.overlay) visit.overlay.remove();
  visit.overlay = null;
  if (visit.control) visit.control.remove();
  visit.control = null;
  visit.wire = null;
  setState("ended", detail);
  fire("ended", detail || {});
}

window.addEventListener("pagehide", () => {
  if (visit.wire && visit.state !== "ended" && visit.state !== "idle") {
    try { writeStore(visit.wire.persistState()); } catch (e) { /* keep the last saved state */ }
  }
});

const Cobrowse = {
  start(opts) {
    if (visit.session && visit.wire && visit.state !== "ended") return Promise.resolve({ sessionId: visit.session.sid, code: visit.session.code });
    if (visit.starting) return visit.starting;
    visit.starting = (async () => {
      try {
        if (!(opts && opts.consented)) {
          setState("consent");
          if (!(await askConsent())) throw codedError("declined", "the visitor declined");
        }
        setState("connecting");
        visit.session = await createSession();
        begin(null);
        return { sessionId: visit.session.sid, code: visit.session.code };
      } catch (e) {
        visit.session = null;
        setState("idle");
        if (e.code !== "declined") fire("error", e);
        throw e;
      } finally {
        visit.starting = null;
      }
    })();
    return visit.starting;
  },
  getCode() {
    return visit.session && visit.state !== "ended" ? visit.session.code : null;
  },
  // Ends the session for everyone (api.md, DELETE with the visitor's own token): agents
  // close with 4004, the code stops resolving, resume tokens are refused. Recording stops
  // at once; the bye follows the API's answer. Resolves true once the router confirmed.
  end() {
    if (cancelConsent) cancelConsent();
    const w = visit.wire, s = visit.session;
    if (visit.session) finish({ code: "visitor", reason: "ended by the visitor" });
    clearStore();
    const ended = s ? endSession(s) : Promise.resolve(false);
    return ended.then((ok) => {
      if (w) { try { w.end("visitor ended the session"); } catch (e) { /* closing anyway */ } }
      return ok;
    });
  },
  on(name, fn) {
    if (typeof fn !== "function") return () => {};
    if (!visit.handlers.has(name)) visit.handlers.set(name, new Set());
    visit.handlers.get(name).add(fn);
    return () => visit.handlers.get(name).delete(fn);
  },
  off(name, fn) {
    const s = visit.handlers.get(name);
    if (s) s.delete(fn);
  },
  state() {
    return visit.state;
  },
  // Test hooks: the id a node has on the wire; what the overlay shows (null: nothing).
  _nodeId(node) {
    return (node && idOf(node)) ?? null;
  },
  _overlayState() {
    return visit.overlay ? visit.overlay.state() : null;
  },
  // Test hook: remote control (control.js): the holder, the prompt, where "Stop" is.
  _controlState() {
    return visit.control ? visit.control.state() : null;
  },
  // Test hook: record with no network and no consent. emit(kind, payload) gets every event
  // that would go on the wire; the snapshot comes as its document object, not as parts.
  _capture(emit) {
    const ov = visit.overlay || makeOverlay();
    ov.attach();
    const r = makeRecorder(emit);
    r.start({ nav: true });
    return {
      stop() {
        r.stop();
        if (ov !== visit.overlay) ov.remove();
      },
      snapshot() { r.snapshot(); },
      flush() { r.flush(); },
      agent(kind, payload) { agentEvent(r, ov, kind, payload); },
      overlayState() { return ov.state(); },
    };
  },
};
// A second copy of the snippet on the page stays inert: one recorder per page.
// (A page's own placeholder named Cobrowse is replaced; only our snippet counts.)
const cbFirst = !(window.Cobrowse && typeof window.Cobrowse._capture === "function");
if (cbFirst) Object.defineProperty(window, "Cobrowse", { value: Object.freeze(Cobrowse), configurable: true });
else console.warn("cobrowse: the snippet is on this page twice; the second copy does nothing");

// A page of a running session (navigation or reload): continue without asking again.
(function resume() {
  if (!cbFirst) return;
  const saved = readStore();
  if (!saved) return;
  visit.session = { sid: saved.sid, token: saved.token, gateways: saved.gateways || [], code: saved.code || null };
  setState("connecting");
  try {
    begin(saved);
  } catch (e) {
    console.warn("cobrowse: could not resume", e);
    visit.session = null;
    clearStore();
    setState("idle");
  }
})();
