/* console.js: the agents' console (/console, router/static/console.html; docs/browser.md
 * "The agents' console"). Sign in with the agent API key, watch the live sessions, join one
 * by code or by a click, watch it in the /embed viewer, and come back when it ends.
 *
 * Secrets: the API key lives in sessionStorage (this tab only, gone when it closes) and goes
 * to the router only in `Authorization` headers, never in a URL. The console resolves the
 * code itself (POST /v1/sessions/lookup) and opens `/embed#sid=…&token=…`: a fragment never
 * reaches a server, a log or a Referer, and a join token is good for one session only.
 *
 * The list is polled, not pushed: an EventSource cannot send an Authorization header, so
 * server-sent events would put the key in the URL. One GET every POLL_MS while the list is
 * on screen and the tab is visible; the router shares one read a second among all consoles.
 */
(function () {
  "use strict";

  const KEY_ITEM = "cobrowse.console.key";
  const POLL_MS = 2000;  // a new session shows within about 2 s; the router caches 1 s
  const BACKOFF_MS = [2000, 5000, 10000, 30000];  // after failed polls (503, network)
  const PAGE_SIZE = 200;  // the API's default limit; the rest are counted, not listed
  const d = document;
  const $ = (id) => d.getElementById(id);

  const state = {
    key: null,
    view: "signin",  // signin | list | session
    timer: null,
    failures: 0,
    polling: false,
    rows: new Map(),  // session id -> its <tr>
    session: null,  // {sid, code} while a session is open
  };
  // What tests and the curious may read: the view and the open session's id, not the key.
  window.CobrowseConsole = Object.freeze({
    get view() { return state.view; },
    get sid() { return state.session && state.session.sid; },
  });

  // ---- the router ----------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = {"Authorization": "Bearer " + state.key};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, {
        method, headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer",
      });
    } catch (e) {
      throw new ApiError(0, "network", "The co-browsing service cannot be reached.");
    }
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(r.status, err.code || "http_" + r.status, err.message || "HTTP " + r.status);
    }
    return data || {};
  }

  // What the agent reads, by the API's error code (docs/api.md).
  const ERRORS = {
    bad_api_key: "The API key was refused.",
    unknown_code: "No session has this code. It may be mistyped or expired, or the session has ended.",
    rate_limited: "Too many attempts. Wait a minute, then try again.",
    invalid_request: "That is not a session code: six digits.",
    no_gateways: "The co-browsing service is not available right now. Try again in a moment.",
    unavailable: "The co-browsing service is not available right now. Try again in a moment.",
    network: "The co-browsing service cannot be reached. Check the connection.",
  };
  const explain = (err) => ERRORS[err.code] || err.message;

  // ---- views ---------------------------------------------------------------------------

  function show(view) {
    state.view = view;
    $("cc-signin-view").hidden = view !== "signin";
    $("cc-list-view").hidden = view !== "list";
    $("cc-session-view").hidden = view !== "session";
    $("cc-signout").hidden = view === "signin";
  }

  function notice(text) {
    const el = $("cc-notice");
    el.textContent = text || "";
    el.hidden = !text;
  }

  function showList(message) {
    closeSession();
    show("list");
    notice(message);
    // Focus goes where the agent's next step is: the notice that says why they are back,
    // else the list's heading.
    (message ? $("cc-notice") : $("cc-list-title")).focus();
    schedule(0);
  }

  function signOut(message) {
    stopPolling();
    closeSession();
    state.key = null;
    try { sessionStorage.removeItem(KEY_ITEM); } catch (e) { /* storage off */ }
    for (const tr of state.rows.values()) tr.remove();
    state.rows.clear();
    show("signin");
    $("cc-signin-error").textContent = message || "";
    $("cc-key").value = "";
    $("cc-key").focus();
  }

  // ---- the live list -------------------------------------------------------------------

  function stopPolling() {
    clearTimeout(state.timer);
    state.timer = null;
  }

  function schedule(ms) {
    stopPolling();
    if (state.key && state.view === "list" && !d.hidden) state.timer = setTimeout(poll, ms);
  }

  async function poll() {
    state.timer = null;
    if (state.polling || !state.key || state.view !== "list") return;
    state.polling = true;
    const key = state.key;
    try {
      const data = await api("GET", "/v1/sessions?limit=" + PAGE_SIZE);
      if (state.key !== key) return;  // signed out (or in again) meanwhile
      state.failures = 0;
      render(data);
      schedule(POLL_MS);
    } catch (err) {
      if (state.key !== key) return;
      if (err.status === 401) {
        signOut(explain(err));
        return;
      }
      const wait = BACKOFF_MS[Math.min(state.failures, BACKOFF_MS.length - 1)];
      state.failures += 1;
      $("cc-updated").textContent = explain(err) + " Trying again in " + Math.round(wait / 1000) + " s.";
      schedule(wait);
    } finally {
      state.polling = false;
    }
  }

  function spacedCode(code) {
    return code && code.length === 6 ? code.slice(0, 3) + " " + code.slice(3) : code || "—";
  }

  function started(created) {
    const t = new Date(created * 1000);
    const el = d.createElement("time");
    el.dateTime = t.toISOString();
    el.textContent = t.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    el.title = t.toLocaleString();
    return el;
  }

  // One row per session, kept across polls (updated in place) so a focused Join button
  // keeps its focus while the list changes around it. Page title and URL are the
  // visitor's word: text only, never a link.
  function fill(tr, s) {
    const cells = tr.children;
    cells[0].textContent = spacedCode(s.code);
    const page = cells[1];
    page.replaceChildren();
    const title = d.createElement("span");
    title.className = "cc-title";
    title.textContent = s.title || (s.url ? "(no title)" : s.epoch ? "Loading the page…" : "Waiting for the visitor's page…");
    page.append(title);
    if (s.url) {
      const url = d.createElement("span");
      url.className = "cc-url";
      url.textContent = s.url;
      page.append(url);
    }
    cells[2].replaceChildren(started(s.created));
    const agent = cells[3];
    agent.className = "cc-agent";
    agent.dataset.in = String(s.agents > 0);
    agent.textContent = s.agents > 1 ? s.agents + " agents in" : s.agents === 1 ? "An agent is in" : "None yet";
    const button = cells[4].firstElementChild;
    button.disabled = !s.joinable;
    button.textContent = s.joinable ? "Join" : "Code expired";
    button.setAttribute("aria-label", s.joinable
      ? "Join session " + spacedCode(s.code) + (s.title ? ", " + s.title : "")
      : "Session " + spacedCode(s.code) + " can no longer be joined by code");
    tr.dataset.code = s.code || "";
    tr.dataset.joinable = String(!!s.joinable);
  }

  function newRow(s) {
    const tr = d.createElement("tr");
    tr.dataset.sid = s.session_id;
    tr.innerHTML = '<td class="cc-code"></td><td></td><td></td><td></td><td><button type="button"></button></td>';
    tr.querySelector("button").addEventListener("click", (e) => {
      e.stopPropagation();
      join(tr.dataset.code);
    });
    // A click anywhere on the row joins too (the button is the keyboard's way in).
    tr.addEventListener("click", () => {
      if (tr.dataset.joinable === "true") join(tr.dataset.code);
    });
    return tr;
  }

  function render(data) {
    const list = Array.isArray(data.sessions) ? data.sessions : [];
    const body = $("cc-sessions").tBodies[0];
    const seen = new Set();
    let before = body.firstElementChild;
    for (const s of list) {
      seen.add(s.session_id);
      let tr = state.rows.get(s.session_id);
      if (!tr) {
        tr = newRow(s);
        state.rows.set(s.session_id, tr);
      }
      fill(tr, s);
      if (tr !== before) body.insertBefore(tr, before);
      else before = before.nextElementSibling;
    }
    for (const [sid, tr] of state.rows) {
      if (!seen.has(sid)) {
        if (tr.contains(d.activeElement)) $("cc-list-title").focus();
        tr.remove();
        state.rows.delete(sid);
      }
    }
    const count = typeof data.count === "number" ? data.count : list.length;
    $("cc-empty").hidden = list.length > 0;
    $("cc-sessions").hidden = list.length === 0;
    const more = count > list.length ? " (the newest " + list.length + " shown)" : "";
    $("cc-updated").textContent = count + (count === 1 ? " live session" : " live sessions") + more +
      ", updated " + new Date().toLocaleTimeString();
  }

  // ---- a session -----------------------------------------------------------------------

  async function join(raw) {
    const code = String(raw || "").replace(/[\s-]/g, "");
    $("cc-join-error").textContent = "";
    if (!/^\d{6}$/.test(code)) {
      $("cc-join-error").textContent = ERRORS.invalid_request;
      $("cc-code").focus();
      return;
    }
    let found;
    try {
      found = await api("POST", "/v1/sessions/lookup", {code});
    } catch (err) {
      if (err.status === 401) return signOut(explain(err));
      $("cc-join-error").textContent = explain(err);
      $("cc-code").focus();
      return;
    }
    openSession(found.session_id, found.agent_token, code);
  }

  function openSession(sid, token, code) {
    stopPolling();
    closeSession();
    state.session = {sid, code};
    const frame = d.createElement("iframe");
    frame.id = "cc-embed";
    frame.title = "Session " + spacedCode(code) + ": the visitor's page";
    frame.referrerPolicy = "no-referrer";
    // A fragment: read by the embed page's script, never sent to a server or logged.
    frame.src = "/embed#sid=" + encodeURIComponent(sid) + "&token=" + encodeURIComponent(token);
    $("cc-viewer").append(frame);
    $("cc-session-label").textContent = "Session " + spacedCode(code);
    show("session");
    $("cc-back").focus();
  }

  // Removing the viewer's frame fires its pagehide, so it says bye: the visitor hears at
  // once that the agent left.
  function closeSession() {
    state.session = null;
    $("cc-viewer").replaceChildren();
  }

  // The embed page tells its parent what happens (docs/browser.md "Embedding the viewer").
  function onViewerMessage(e) {
    const frame = $("cc-embed");
    if (!frame || e.source !== frame.contentWindow || e.origin !== location.origin) return;
    const m = e.data;
    if (!m || m.type !== "cobrowse" || !state.session) return;
    const label = "Session " + spacedCode(state.session.code);
    if (m.event === "ended") showList(label + " has ended.");
    else if (m.event === "error") showList(label + " could not be shown: " + (m.message || m.code) + ".");
    else if (m.event === "page" && m.title) $("cc-session-label").textContent = label + ": " + m.title;
  }

  // ---- wiring --------------------------------------------------------------------------

  async function signIn(key) {
    state.key = key;
    try {
      const data = await api("GET", "/v1/sessions?limit=" + PAGE_SIZE);
      try { sessionStorage.setItem(KEY_ITEM, key); } catch (e) { /* storage off: this page only */ }
      show("list");
      render(data);
      $("cc-list-title").focus();
      schedule(POLL_MS);
    } catch (err) {
      state.key = null;
      show("signin");
      $("cc-signin-error").textContent = explain(err);
      $("cc-key").focus();
    }
  }

  function start() {
    $("cc-signin").addEventListener("submit", (e) => {
      e.preventDefault();
      const key = $("cc-key").value.trim();
      if (!key) {
        $("cc-signin-error").textContent = "Enter your agent API key.";
        $("cc-key").focus();
        return;
      }
      $("cc-signin-error").textContent = "";
      signIn(key);
    });
    $("cc-join").addEventListener("submit", (e) => {
      e.preventDefault();
      join($("cc-code").value);
    });
    $("cc-signout").addEventListener("click", () => signOut(""));
    $("cc-back").addEventListener("click", () => showList(""));
    window.addEventListener("message", onViewerMessage);
    d.addEventListener("visibilitychange", () => { if (!d.hidden) schedule(0); });
    let saved = null;
    try { saved = sessionStorage.getItem(KEY_ITEM); } catch (e) { saved = null; }
    if (saved) signIn(saved);
    else $("cc-key").focus();
  }

  if (d.readyState === "loading") d.addEventListener("DOMContentLoaded", start);
  else start();
})();
