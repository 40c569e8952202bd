/* viewer/replay.js: the /replay page (router/static/replay.html). It plays a session's stored
 * visitor events into a replayer: the stream is the recording (docs/browser.md "Replay").
 *
 * `ReplayTimeline` is pure (events in, plans out, no DOM, no clock): where a seek to a time
 * must start (the latest snapshot at or before it) and how far it applies. `replayPage()`
 * is the thin shell: it signs in with the agent API key (sessionStorage, as /console),
 * reads the history pages, and drives play, pause, seek and speed.
 */

const REPLAY_KEY_ITEM = "cobrowse.console.key";  // the console's: one sign-in per tab
const REPLAY_MAX_EVENTS = 500000;  // a page load stops reading here (6 h at 20 events/s is 432 000)
const REPLAY_TICK_MS = 50;

/** A recording: events [{pos, epoch, seq, kind, ts, payload}] in stream order. */
class ReplayTimeline {
  constructor(events) {
    this.events = events;
    // ts is the visitor's clock: a running maximum keeps the search monotone if it stepped back.
    this.at = [];
    let t = -Infinity;
    for (const e of events) { t = Math.max(t, e.ts); this.at.push(t); }
    this.snapshots = [];  // indexes where a full snapshot starts (part 0)
    events.forEach((e, i) => {
      if (e.kind === "snapshot" && (!e.payload || e.payload.i === undefined || e.payload.i === 0)) this.snapshots.push(i);
    });
  }

  get start() { return this.events.length ? this.at[0] : 0; }
  get end() { return this.events.length ? this.at[this.at.length - 1] : 0; }

  /** The number of events at or before time `t` (they are events[0 .. n-1]). */
  countUntil(t) {
    let lo = 0, hi = this.at.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.at[mid] <= t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** How to show time `t` when `applied` events are shown: apply events[from .. to-1], after
   * a reset to a fresh replica when `reset` (a seek back, or a jump past a snapshot, starts
   * at the latest snapshot at or before `t`: the events before it cannot matter). */
  plan(applied, t) {
    const to = this.countUntil(t);
    let snap = -1;
    for (const i of this.snapshots) { if (i < to) snap = i; else break; }
    if (to < applied || (snap >= applied && snap > 0)) return {reset: true, from: Math.max(0, snap), to};
    return {reset: false, from: applied, to};
  }
}

function formatClock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0") + ":" + String(sec).padStart(2, "0");
  return h ? h + ":" + mm : mm;
}

async function replayFetch(url, key, options) {
  let r;
  try {
    r = await fetch(url, Object.assign({headers: {"Authorization": "Bearer " + key}, credentials: "omit",
      cache: "no-store", referrerPolicy: "no-referrer"}, options || {}));
  } catch (e) {
    throw Object.assign(new Error("the co-browsing service cannot be reached"), {code: "network"});
  }
  if (!r.ok) {
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    const err = new Error((data && data.error && data.error.message) || "HTTP " + r.status);
    err.code = (data && data.error && data.error.code) || "http_" + r.status;
    throw err;
  }
  return r;
}

function replayPage(options) {
  options = options || {};
  const d = document;
  const $ = (id) => d.getElementById(id);
  const base = options.router || location.origin;
  const params = new URLSearchParams(String(options.hash !== undefined ? options.hash : location.hash).replace(/^#/, ""));
  const ui = {status: $("rp-status"), play: $("rp-play"), seek: $("rp-seek"), time: $("rp-time"),
    speed: $("rp-speed"), title: $("rp-title"), message: $("cb-message"), form: $("rp-signin"), key: $("rp-key")};
  const current = {state: "loading", timeline: null, t: 0, applied: 0, playing: false, speed: 1, replayer: null, error: null};
  CobrowseReplay.current = current;
  let timer = null, lastTick = 0, replicaOptions = null;
  const makeReplayer = () => {
    if (current.replayer) current.replayer.destroy();
    const frame = $("cb-frame");
    const doc = frame.contentDocument;  // blank until a snapshot rebuilds it (build.js)
    if (doc) while (doc.firstChild) doc.removeChild(doc.firstChild);
    current.replayer = replayer(frame, replicaOptions);
    current.applied = 0;
  };

  const say = (state, text, message) => {
    current.state = state;
    ui.status.textContent = text;
    ui.status.setAttribute("data-state", state);
    ui.message.hidden = !message;
    ui.message.textContent = message || "";
  };
  const showTime = () => {
    const tl = current.timeline;
    ui.seek.value = String(Math.round(current.t - tl.start));
    ui.time.textContent = formatClock(current.t - tl.start) + " / " + formatClock(tl.end - tl.start);
    ui.seek.setAttribute("aria-valuetext", ui.time.textContent);
  };
  const show = (t) => {
    const tl = current.timeline;
    current.t = Math.min(Math.max(t, tl.start), tl.end);
    const p = tl.plan(current.applied, current.t);
    // Back before the first snapshot: nothing was shown then, so start from a blank replica.
    if (p.reset && (p.from >= tl.events.length || tl.events[p.from].kind !== "snapshot")) makeReplayer();
    for (let i = p.from; i < p.to; i++) current.replayer.apply(tl.events[i].kind, tl.events[i].payload);
    current.applied = p.to;
    showTime();
  };
  const setPlaying = (on) => {
    current.playing = on;
    ui.play.textContent = on ? "Pause" : "Play";
    ui.play.setAttribute("aria-pressed", on ? "true" : "false");
    clearInterval(timer);
    timer = null;
    if (on) {
      if (current.t >= current.timeline.end) show(current.timeline.start);
      lastTick = performance.now();
      timer = setInterval(() => {
        const now = performance.now();
        show(current.t + (now - lastTick) * current.speed);
        lastTick = now;
        if (current.t >= current.timeline.end) setPlaying(false);
      }, REPLAY_TICK_MS);
    }
    say(on ? "playing" : "paused", on ? "Playing" : "Paused");
  };

  const load = async (key) => {
    const sid = params.get("sid");
    if (!sid) throw Object.assign(new Error("the link names no session (#sid=…)"), {code: "bad_link"});
    say("loading", "Loading the recording…", "Loading the recording…");
    const path = base + "/v1/sessions/" + encodeURIComponent(sid);
    const opened = await (await replayFetch(path + "/replay", key, {method: "POST"})).json();
    const proxy = opened.proxy ? String(opened.proxy).replace(/\/+$/, "") : null;
    const token = opened.agent_token;
    const events = [];
    for (let from = 1; from !== null && events.length < REPLAY_MAX_EVENTS;) {
      const r = await replayFetch(path + "/history?from=" + from, key);
      const page = MessagePack.decode(new Uint8Array(await r.arrayBuffer()));
      for (const e of page.events) events.push({pos: e[0], epoch: e[1], seq: e[2], kind: e[3], ts: e[4], payload: e[5]});
      from = page.next;
    }
    if (!events.length) throw Object.assign(new Error("nothing of this session is stored (it was purged or expired)"), {code: "empty"});
    const post = async (url, body) => (await replayFetch(url, token, {method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}, body: JSON.stringify(body)})).json();
    replicaOptions = {
      sign: async (urls, kind) => {
        if (!proxy) return urls.map(() => null);
        const r = await post(proxy + "/v1/sign", {urls, kind});
        return Array.isArray(r.urls) ? r.urls.map((u) => (typeof u === "string" ? new URL(u, proxy + "/").href : null)) : urls.map(() => null);
      },
      rewriteCss: async (css, baseUrl) => (proxy ? (await post(proxy + "/v1/rewrite", {css, base_url: baseUrl})).css || "" : ""),
      onInfo: (i) => { ui.title.textContent = i.title || i.url || ""; },
    };
    makeReplayer();
    const tl = current.timeline = new ReplayTimeline(events);
    ui.seek.max = String(Math.max(0, tl.end - tl.start));
    for (const c of [ui.play, ui.seek, ui.speed]) c.disabled = false;
    show(tl.snapshots.length ? tl.at[tl.snapshots[0]] : tl.start);
    say("paused", "Paused");
  };

  const fail = (err) => {
    current.error = {code: err.code || "error", message: String(err.message || err)};
    setPlaying(false);
    if (err.code === "bad_api_key") {
      try { sessionStorage.removeItem(REPLAY_KEY_ITEM); } catch (e) { /* storage off */ }
      ui.form.hidden = false;
    }
    say("error", "Error", err.code === "bad_api_key" ? "The API key was refused. Sign in again." : "The recording cannot be shown: " + current.error.message);
  };

  ui.play.addEventListener("click", () => setPlaying(!current.playing));
  ui.seek.addEventListener("input", () => show(current.timeline.start + Number(ui.seek.value)));
  ui.speed.addEventListener("change", () => { current.speed = Number(ui.speed.value) || 1; });
  for (const c of [ui.play, ui.seek, ui.speed]) c.disabled = true;
  const start = (key) => { ui.form.hidden = true; load(key).catch(fail); };
  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = ui.key.value.trim();
    if (!key) return;
    try { sessionStorage.setItem(REPLAY_KEY_ITEM, key); } catch (e) { /* storage off: this page only */ }
    ui.key.value = "";
    start(key);
  });
  let key = null;
  try { key = sessionStorage.getItem(REPLAY_KEY_ITEM); } catch (e) { key = null; }
  if (key) start(key);
  else { ui.form.hidden = false; say("signin", "Sign in", null); ui.key.focus(); }

  current.seek = (msFromStart) => show(current.timeline.start + msFromStart);
  current.play = () => setPlaying(true);
  current.pause = () => setPlaying(false);
  current.setSpeed = (s) => { current.speed = s; ui.speed.value = String(s); };
  return current;
}

const CobrowseReplay = {ReplayTimeline, replayPage, formatClock, current: null};
window.CobrowseReplay = CobrowseReplay;

if (typeof document !== "undefined" && document.documentElement && document.documentElement.hasAttribute("data-cobrowse-replay")) {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => replayPage());
  else replayPage();
}
