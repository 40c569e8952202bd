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
  const r = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + bearer},
    body: JSON.stringify(body || {}),
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
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

function embed(options) {
  options = options || {};
  const d = document;
  const frame = options.iframe || d.getElementById("cb-frame");
  const statusEl = options.status || d.getElementById("cb-status");
  const hlButton = options.highlightButton || d.getElementById("cb-highlight");
  const titleEl = d.getElementById("cb-title");
  const routerBase = options.router || location.origin;
  const params = parseFragment(options.hash !== undefined ? options.hash : location.hash);
  const current = {replayer: null, wire: null, state: "connecting", sid: null, proxy: null, error: null};
  CobrowseViewer.current = current;

  const post = (event, extra) => {
    if (window.parent && window.parent !== window) {
      try { window.parent.postMessage(Object.assign({type: "cobrowse", event}, extra || {}), "*"); } catch (e) { /* detached */ }
    }
  };
  const LABELS = {connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", ended: "Session ended", error: "Error"};
  const setStatus = (state, text) => {
    current.state = state;
    if (statusEl) {
      statusEl.textContent = text || LABELS[state] || state;
      statusEl.setAttribute("data-state", state);
    }
  };
  setStatus("connecting");

  const fail = (err) => {
    current.error = {code: err.code || "error", message: String(err.message || err)};
    setStatus("error", "Error: " + current.error.message);
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
        if (titleEl) titleEl.textContent = i.title || i.url || "";
        post("page", {url: i.url, title: i.title});
      },
    });
    current.replayer = rp;
    if (hlButton) {
      hlButton.addEventListener("click", () => {
        const on = !rp.highlightMode();
        rp.setHighlightMode(on);
        hlButton.setAttribute("aria-pressed", on ? "true" : "false");
      });
    }
    wire = new CobrowseWire({
      role: "agent",
      sid,
      token,
      gateways: gateways || [],
      refreshGateways: async () => (await connect()).gateways,
      onEvents(events) {
        for (const e of events) rp.apply(e.kind, e.payload);
      },
      onControl(ctl) { /* "reset": the snapshot that follows resets the replica anyway */ void ctl; },
      onState(s, detail) {
        const err = detail && detail.error;
        const why = s === "ended" && detail && detail.code && detail.code !== 1000 && detail.code !== 4004
          ? ` (${(err && err.msg) || "code " + detail.code})` : "";
        setStatus(s, why ? LABELS[s] + why : undefined);
        if (s === "live" || s === "ended" || s === "reconnecting") post(s, detail && detail.code ? {code: detail.code} : {});
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

const CobrowseViewer = {replayer, embed, parseFragment, current: null};
window.CobrowseViewer = CobrowseViewer;

if (typeof document !== "undefined" && document.documentElement && document.documentElement.hasAttribute("data-cobrowse-embed")) {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => embed());
  else embed();
}
