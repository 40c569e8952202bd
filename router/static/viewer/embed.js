/* viewer/embed.js: the /embed page (router/static/embed.html). It reads the link's
 * fragment (#sid=…&token=… or #code=…&key=…), asks the router where to connect, connects
 * with `CobrowseWire` and feeds a replayer; its status element and postMessage events tell
 * the agent's product what is happening (docs/browser.md "Embedding the viewer").
 */

function parseFragment(hash) {
  const out = {};
  for (const part of String(hash || "").replace(/^#/, "").split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const k = eq < 0 ? part : part.slice(0, eq);
    const v = eq < 0 ? "" : part.slice(eq + 1);
    try { out[decodeURIComponent(k)] = decodeURIComponent(v); } catch (e) { /* ignore a bad pair */ }
  }
  return out;
}

async function postJson(url, bearer, body) {
  let r;
  try {
    r = await fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + bearer},
      body: JSON.stringify(body || {}),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch (e) {
    throw Object.assign(new Error("the co-browsing service cannot be reached"), {code: "network"});
  }
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error && data.error.message) || ("HTTP " + r.status));
    err.code = (data && data.error && data.error.code) || "http_" + r.status;
    err.status = r.status;
    throw err;
  }
  return data || {};
}

// What the agent reads in the frame area when there is no session to show, by the API's
// error code (docs/api.md) or the page's own (bad_link, network).
const ERROR_TEXT = Object.freeze({
  bad_link: "This link does not name a session. Open the session again from your console.",
  unknown_code: "No session has this code. It may be mistyped or expired, or the session has ended.",
  unknown_session: "This session was not found. It has ended or expired.",
  session_ended: "This session has ended.",
  bad_token: "This viewer link is no longer valid. Open the session again from your console.",
  bad_api_key: "No access: the API key was refused.",
  admin_only: "No access: this key may not open sessions.",
  rate_limited: "Too many attempts. Wait a minute, then reload this page.",
  no_gateways: "The co-browsing service is not available right now. Reload in a moment.",
  unavailable: "The co-browsing service is not available right now. Reload in a moment.",
  network: "The co-browsing service cannot be reached. Check the connection, then reload.",
});

// The same when the connection ended for good, by close code (docs/protocol.md).
function endedText(code, msg) {
  if (code === 4001) return "The session refused this viewer (its token expired or is not valid). Open the session again from your console.";
  if (code === 4005) return "The visitor opened the session somewhere else.";
  if (!code || code === 1000 || code === 4004) return "The session has ended.";
  return "The connection was closed (" + (msg || "code " + code) + ").";
}

/** Which page the visitor is on: the title, and the address below it (the whole of it on
 * hover). The session's visitor is its newest connection (docs/protocol.md "Takeover"), so
 * this is the tab the visitor is using now. */
function showPage(els, info) {
  const {titleEl, urlEl} = els;
  let where = "";
  try {
    const u = new URL(String(info.url));
    where = u.host + u.pathname + u.search;
  } catch (e) { where = info.url || ""; }
  if (titleEl) titleEl.textContent = info.title || where;
  if (urlEl) {
    urlEl.textContent = info.title ? where : "";
    urlEl.title = info.url || "";
  }
}

/** A toolbar toggle: aria-pressed says its state; a click flips it and tells `set`. */
function toggleButton(button, set) {
  if (!button) return;
  button.addEventListener("click", () => {
    if (button.disabled) return;
    const on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    set(on);
  });
}

// What changes in the frame area with the displayed state: a message where the replica
// would be an empty box, and the replica greyed out and inert once the session ended.
function showView(els, rp, state, text) {
  const {message, hlButton} = els;
  if (message) {
    message.hidden = !text;
    message.textContent = text || "";
  }
  if (state === "ended" || state === "error") {
    if (rp) rp.setInert(true);
    if (hlButton) {
      hlButton.disabled = true;
      hlButton.setAttribute("aria-pressed", "false");
    }
  }
}

function embed(options) {
  options = options || {};
  const d = document;
  const frame = options.iframe || d.getElementById("cb-frame");
  const statusEl = options.status || d.getElementById("cb-status");
  const hlButton = options.highlightButton || d.getElementById("cb-highlight");
  const titleEl = d.getElementById("cb-title");
  const urlEl = d.getElementById("cb-url");
  const zoomEl = d.getElementById("cb-zoom");
  const fitButton = d.getElementById("cb-fit");
  const followButton = d.getElementById("cb-follow");
  const els = {hlButton, message: options.message || d.getElementById("cb-message")};
  const routerBase = options.router || location.origin;
  const params = parseFragment(options.hash !== undefined ? options.hash : location.hash);
  // `state`: the agent's own connection (connecting, live, reconnecting, ended) or error;
  // `view`: what the page shows (status.js), the status element's data-state.
  const current = {replayer: null, wire: null, state: "connecting", view: "connecting", sid: null, proxy: null, error: null};
  CobrowseViewer.current = current;
  const view = new ViewStatus(Date.now());
  let snapshotSeen = false;
  let endedNote = null;  // the status text and frame message once the session ended
  let timer = null;

  const post = (event, extra) => {
    if (window.parent && window.parent !== window) {
      try { window.parent.postMessage(Object.assign({type: "cobrowse", event}, extra || {}), "*"); } catch (e) { /* detached */ }
    }
  };

  // Show view.state(now); look again when time alone would change it (gone, idle).
  const refresh = () => {
    const now = Date.now();
    clearTimeout(timer);
    timer = null;
    const wait = view.nextChange(now);
    if (wait !== null) timer = setTimeout(refresh, wait + 20);
    const state = view.state(now);
    let label = VIEW_LABELS[state] || state;
    let message = null;
    if (state === "error") {
      label = "Error: " + current.error.message;
      message = ERROR_TEXT[current.error.code] || "The session cannot be shown: " + current.error.message;
    } else if (state === "ended") {
      label = endedNote.label;
      message = endedNote.message;
    } else if (!snapshotSeen) {  // no replica yet: say why instead of an empty box
      message = state === "live" || state === "visitor-idle" ? "Waiting for the visitor's page…" : label;
    }
    const was = current.view;
    current.view = state;
    if (statusEl) {
      statusEl.textContent = label;
      statusEl.setAttribute("data-state", state);
    }
    showView(els, current.replayer, state, message);
    // The connection's own messages (live, reconnecting, ended, error) are posted where
    // they happen; the visitor's are posted here, and "visitor-live" when one of them ends.
    if (state !== was) {
      if (state === "waiting" || state.startsWith("visitor-")) post(state);
      else if (state === "live" && (was === "waiting" || was.startsWith("visitor-"))) post("visitor-live");
    }
  };
  refresh();

  const fail = (err) => {
    current.error = {code: err.code || "error", message: String(err.message || err)};
    current.state = "error";
    view.fail();
    refresh();
    post("error", {code: current.error.code, message: current.error.message});
  };

  (async () => {
    let sid = params.sid;
    let token = params.token;
    let gateways = null;
    let proxy = null;
    if (params.code && params.key) {
      const r = await postJson(routerBase + "/v1/sessions/lookup", params.key, {code: params.code});
      sid = r.session_id;
      token = r.agent_token;
      gateways = r.gateways;
      proxy = r.proxy || null;
    }
    if (!sid || !token) throw Object.assign(new Error("the link has no session (#sid=…&token=… or #code=…&key=…)"), {code: "bad_link"});
    const connect = () => postJson(routerBase + "/v1/sessions/" + encodeURIComponent(sid) + "/connect", token, {});
    if (!gateways || !proxy) {
      const r = await connect();
      gateways = r.gateways || gateways;
      proxy = r.proxy || proxy;
    }
    proxy = proxy ? String(proxy).replace(/\/+$/, "") : null;
    current.sid = sid;
    current.proxy = proxy;

    const sign = async (urls, kind) => {
      if (!proxy) return urls.map(() => null);
      const r = await postJson(proxy + "/v1/sign", token, {urls, kind});
      if (!Array.isArray(r.urls)) return urls.map(() => null);
      return r.urls.map((u) => (typeof u === "string" ? new URL(u, proxy + "/").href : null));
    };
    // Without a proxy the page's CSS could only load from its origin: show it unstyled.
    const rewriteCss = async (css, baseUrl) => {
      if (!proxy) return "";
      const r = await postJson(proxy + "/v1/rewrite", token, {css, base_url: baseUrl});
      return typeof r.css === "string" ? r.css : "";
    };

    let wire = null;
    const rp = replayer(frame, {
      sign,
      rewriteCss,
      onAgentEvent: (kind, payload) => { if (wire) wire.send(kind, payload); },
      onInfo: (i) => {
        showPage({titleEl, urlEl}, i);
        post("page", {url: i.url, title: i.title});
      },
      onView: (v) => {
        const z = Math.round(v.scale * 100) + " %";
        if (zoomEl && zoomEl.textContent !== z) zoomEl.textContent = z;
      },
    });
    current.replayer = rp;
    toggleButton(fitButton, (on) => rp.setFit(on));
    toggleButton(followButton, (on) => rp.setFollow(on));
    toggleButton(hlButton, (on) => rp.setHighlightMode(on));
    controlButtons(rp, d.getElementById("cb-control"), d.getElementById("cb-draw"));
    wire = new CobrowseWire({
      role: "agent",
      sid,
      token,
      gateways: gateways || [],
      refreshGateways: async () => (await connect()).gateways,
      onEvents(events) {
        for (const e of events) {
          if (e.kind.startsWith("rc-")) rp.controlEvent(e.kind, e.payload, wire.aid);
          else rp.apply(e.kind, e.payload);
        }
        view.activity(Date.now());
        const first = !snapshotSeen && rp.document !== null;
        snapshotSeen = snapshotSeen || first;
        // A pending timer looks again anyway; only idle and the first replica show at once.
        if (first || current.view === "visitor-idle" || timer === null) refresh();
      },
      // "reset": the snapshot that follows resets the replica anyway.
      onControl(ctl) {
        if (ctl.op === "refused") {  // rc-* without a grant: the gateway says this agent holds none
          current.refused = (current.refused || 0) + 1;
          rp.controlEvent("rc-revoke", {aid: wire.aid}, wire.aid);
        }
        if (view.control(ctl, Date.now())) refresh();
      },
      onState(s, detail) {
        const err = detail && detail.error;
        const code = detail && detail.code;
        if (s === "ended") {
          const why = code && code !== 1000 && code !== 4004 ? ` (${(err && err.msg) || "code " + code})` : "";
          endedNote = {label: VIEW_LABELS.ended + why, message: endedText(code, err && err.msg)};
        }
        current.state = s;
        view.connection(s, Date.now());
        refresh();
        if (s === "live" || s === "ended" || s === "reconnecting") post(s, code ? {code} : {});
      },
    });
    current.wire = wire;
    wire.start();
    // Closing the viewer says bye, so the visitor hears "agent-left" at once; a dropped
    // connection is not reported (it may resume).
    window.addEventListener("pagehide", () => wire.end("agent closed the viewer"));
  })().catch(fail);
  return current;
}

const CobrowseViewer = {replayer, embed, parseFragment, viewGeometry, current: null};
window.CobrowseViewer = CobrowseViewer;

if (typeof document !== "undefined" && document.documentElement && document.documentElement.hasAttribute("data-cobrowse-embed")) {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => embed());
  else embed();
}
