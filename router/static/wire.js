/* wire.js: the browser's client for wire protocol v1 (docs/protocol.md).
 *
 * Shared by the visitor's snippet and the agent's viewer. It keeps every unacked event
 * so that a reconnect, a drain notice or a page reload loses nothing; it numbers events
 * per epoch, drops duplicates by key on receipt, and backs off with full jitter, never
 * sooner than a refusal's Retry-After. `MessagePack` is the vendored @msgpack/msgpack.
 */

const WIRE_VERSION = 1;
const MAX_BATCH = 512;               // events per frame (gateway limit)
const MAX_FRAME_BYTES = 900 * 1024;  // stay under the gateway's 1 MiB frame limit
const SNAPSHOT_CHUNK = 120 * 1024;   // a part must fit the 128 KiB per-event limit
const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 15000;
// Close codes after which retrying cannot help (protocol.md, "Close codes").
const FATAL_CLOSE = new Set([4000, 4001, 4002, 4004, 4005, 4006, 4011]);
const REFUSED_CLOSE = 4009;          // handshake refused (429/503), told to a browser
const PERSIST_MS = 250;

const utf8 = new TextEncoder();

function b64encode(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function b64decode(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// Full jitter (AWS architecture blog): spreads a thundering herd of reconnects.
function jitterDelay(attempt, floorMs) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
  return Math.max(floorMs || 0, Math.random() * ceiling);
}

function eventBytes(ev) {
  const p = ev[3];
  if (p && p.d instanceof Uint8Array) return p.d.length + 64;
  return 256;  // small payloads: a rough figure is enough to cut frames
}

class CobrowseWire {
  constructor(opts) {
    this.role = opts.role;
    this.sid = opts.sid;
    this.token = opts.token;
    this.gateways = (opts.gateways || []).slice();
    this.onEvents = opts.onEvents || (() => {});
    this.onControl = opts.onControl || (() => {});
    this.onEpoch = opts.onEpoch || (() => {});
    this.onState = opts.onState || (() => {});
    this.onPersist = opts.onPersist || (() => {});
    this.refreshGateways = opts.refreshGateways || null;
    this.WebSocketImpl = opts.WebSocket || WebSocket;
    const st = opts.state || {};
    this.epoch = st.epoch || 0;      // visitor: our epoch; agent: 0
    this.rt = st.rt || null;
    this.aid = st.aid || null;
    this.lastSeq = st.lastSeq || 0;  // last seq given to an event of ours
    this.unacked = (st.unacked || []).map((e) => [e[0], e[1], e[2], MessagePack.decode(b64decode(e[3]))]);
    this.recv = st.recv || {};       // visitor: {aid: seq}; agent: uses lastKey
    this.lastKey = st.lastKey || null;  // agent: [epoch, seq] of the last visitor event delivered
    this.pending = [];               // events not yet numbered: [kind, ts, payload]
    this.ws = null;
    this.live = false;
    this.stopped = false;
    this.attempt = 0;
    this.urlIndex = 0;
    this.nextUrl = null;
    this.retryFloor = 0;
    this.reconnectDelay = null;
    this.timer = null;
    this.state = "idle";
    this.closeInfo = null;
    this.persistTimer = null;
    this.storedForm = new WeakMap();  // event -> its payload as base64 msgpack, for storage
    this.stats = {sent: 0, received: 0, reconnects: 0, dropped: 0};
  }

  start() {
    this.stopped = false;
    this._setState("connecting");
    this._connect();
  }

  send(kind, payload) {
    if (this.stopped) return;
    this.pending.push([kind, Date.now(), payload]);
    if (this.live) this._flush();
  }

  // A full snapshot: UTF-8 JSON cut into parts that each fit the per-event limit.
  sendSnapshot(jsonText) {
    const bytes = utf8.encode(jsonText);
    const n = Math.max(1, Math.ceil(bytes.length / SNAPSHOT_CHUNK));
    for (let i = 0; i < n; i++) {
      this.send("snapshot", {i: i, n: n, d: bytes.subarray(i * SNAPSHOT_CHUNK, (i + 1) * SNAPSHOT_CHUNK)});
    }
  }

  end(reason) {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.persistTimer);
    const ws = this.ws;
    if (ws && ws.readyState === 1) {
      try { ws.send(MessagePack.encode({t: "bye", reason: String(reason || "ended").slice(0, 256)})); } catch (e) { /* closing anyway */ }
      try { ws.close(1000, "bye"); } catch (e) { /* already closed */ }
    }
    this.live = false;
    this._setState("ended", {code: 1000, reason: reason || "ended"});
  }

  // What a page needs to continue this connection after a reload (sessionStorage).
  persistState() {
    const unacked = this.unacked.concat(this._numberPendingForStorage());
    return {
      epoch: this.epoch,
      rt: this.rt,
      aid: this.aid,
      lastSeq: this.lastSeq + this.pending.length,
      unacked: unacked.map((e) => [e[0], e[1], e[2], this._stored(e)]),
      recv: this.recv,
      lastKey: this.lastKey,
      gateways: this.gateways,
    };
  }

  // An unacked event is saved again on every save until it is acked: encode it once.
  _stored(ev) {
    let text = this.storedForm.get(ev);
    if (text === undefined) {
      text = b64encode(MessagePack.encode(ev[3]));
      this.storedForm.set(ev, text);
    }
    return text;
  }

  _numberPendingForStorage() {
    // Events queued but never numbered travel too: they get the seqs they would get next.
    return this.pending.map((p, i) => [this.lastSeq + 1 + i, p[0], p[1], p[2]]);
  }

  _setState(state, detail) {
    if (this.state === state) return;
    this.state = state;
    try { this.onState(state, detail || {}); } catch (e) { console.error("cobrowse: onState", e); }
  }

  _url() {
    let base = this.nextUrl;
    this.nextUrl = null;
    if (!base) {
      if (!this.gateways.length) return null;
      base = this.gateways[this.urlIndex % this.gateways.length];
    }
    const u = new URL(base);
    u.searchParams.set("sid", this.sid);
    if (this.rt) u.searchParams.set("rt", this.rt);
    u.searchParams.set("refusal", "close");  // browsers cannot read a refused handshake's status
    return u.toString();
  }

  _connect() {
    if (this.stopped) return;
    const url = this._url();
    if (!url) {
      this._retry("no gateway");
      return;
    }
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (e) {
      this.urlIndex++;
      this._retry("bad url");
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.closeInfo = null;
    this.reconnectDelay = null;
    ws.onopen = () => this._hello(ws);
    ws.onmessage = (m) => {
      if (ws !== this.ws) return;
      if (!(m.data instanceof ArrayBuffer)) return;  // the gateway sends binary frames only
      let frame;
      try {
        frame = MessagePack.decode(new Uint8Array(m.data));
      } catch (e) {
        console.warn("cobrowse: undecodable frame", e);
        return;
      }
      this._frame(frame);
    };
    ws.onclose = (c) => {
      if (ws !== this.ws) return;
      this._closed(c.code, c.reason || "");
    };
    ws.onerror = () => { /* onclose follows with the code */ };
  }

  _hello(ws) {
    const hello = {t: "hello", v: WIRE_VERSION, role: this.role, sid: this.sid, token: this.token};
    if (this.rt) {
      hello.resume = {
        rt: this.rt,
        epoch: this.role === "visitor" ? this.epoch : 0,
        recv: this.role === "visitor" ? this.recv : this.lastKey,
      };
    }
    ws.send(MessagePack.encode(hello));
  }

  _frame(f) {
    switch (f.t) {
      case "welcome": return this._welcome(f);
      case "ev": return this._events(f);
      case "ack": return this._ack(f.seq);
      case "ctl": return this._control(f);
      default: console.warn("cobrowse: unknown frame", f.t);
    }
  }

  _welcome(w) {
    const resumedOwn = this.role === "visitor"
      ? (this.epoch !== 0 && w.epoch === this.epoch)
      : (this.aid !== null && w.aid === this.aid);
    const hadRun = this.role === "visitor" ? this.epoch !== 0 : this.aid !== null;
    let fresh = false;
    if (resumedOwn) {
      // Stored events are acked by `durable`; the rest go again from durable + 1.
      this.unacked = this.unacked.filter((e) => e[0] > w.durable);
      if (this.unacked.length && this.unacked[0][0] !== w.durable + 1) {
        console.warn("cobrowse: resend does not start at durable + 1", w.durable, this.unacked[0][0]);
      }
    } else {
      // A new epoch (or agent id): unacked events of the old one can never be stored.
      fresh = hadRun;
      if (this.unacked.length) this.stats.dropped += this.unacked.length;
      this.unacked = [];
      this.lastSeq = 0;
    }
    if (this.role === "visitor") {
      this.epoch = w.epoch;
      if (w.delivered && typeof w.delivered === "object") {
        for (const aid of Object.keys(w.delivered)) this.recv[aid] = w.delivered[aid];
      }
    } else {
      this.aid = w.aid;
      if (Array.isArray(w.delivered)) this.lastKey = w.delivered;
      else if (!resumedOwn) this.lastKey = null;
    }
    this.rt = w.rt;
    this.gw = w.gw;
    this.live = true;
    this.attempt = 0;
    this.retryFloor = 0;
    this._setState("live", {gateway: w.gw});
    try { this.onEpoch(w.epoch, fresh); } catch (e) { console.error("cobrowse: onEpoch", e); }
    this._resend();
    this._flush();
    this._persist(true);  // the new resume token must survive a reload right away
  }

  _resend() {
    this._sendBatches(this.unacked);
  }

  _flush() {
    if (!this.live || !this.pending.length) return;
    const batch = [];
    for (const [kind, ts, payload] of this.pending) {
      const ev = [++this.lastSeq, kind, ts, payload];
      this.unacked.push(ev);
      batch.push(ev);
    }
    this.pending = [];
    this._sendBatches(batch);
  }

  _sendBatches(events) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 || !events.length) return;
    const e = this.role === "visitor" ? this.epoch : 0;
    let frame = [];
    let size = 0;
    const out = () => {
      if (!frame.length) return;
      ws.send(MessagePack.encode({t: "ev", e: e, ev: frame}));
      this.stats.sent += frame.length;
      frame = [];
      size = 0;
    };
    for (const ev of events) {
      const n = eventBytes(ev);
      if (frame.length >= MAX_BATCH || (frame.length && size + n > MAX_FRAME_BYTES)) out();
      frame.push(ev);
      size += n;
    }
    out();
  }

  _ack(seq) {
    let i = 0;
    while (i < this.unacked.length && this.unacked[i][0] <= seq) i++;
    if (i) this.unacked.splice(0, i);
    this._persist();
  }

  _events(f) {
    const fresh = [];
    for (const ev of f.ev || []) {
      const [seq, kind, ts, payload] = ev;
      if (this.role === "visitor") {
        const src = f.src;
        if ((this.recv[src] || 0) >= seq) continue;  // a duplicate from a reconnect
        this.recv[src] = seq;
        fresh.push({epoch: 0, seq, kind, ts, payload, src});
      } else {
        const key = [f.e, seq];
        const last = this.lastKey;
        if (last && (key[0] < last[0] || (key[0] === last[0] && key[1] <= last[1]))) continue;
        this.lastKey = key;
        fresh.push({epoch: f.e, seq, kind, ts, payload, src: null});
      }
    }
    this.stats.received += fresh.length;
    if (fresh.length) {
      try { this.onEvents(fresh); } catch (e) { console.error("cobrowse: onEvents", e); }
    }
  }

  _control(c) {
    if (c.op === "reconnect") {
      // A draining gateway: come back after delay_ms, to the hinted gateway if any.
      this.reconnectDelay = c.delay_ms || 0;
      if (c.hint && c.hint.length) this.nextUrl = c.hint[0];
      else this.urlIndex++;
      return;
    }
    if (c.op === "error") {
      this.closeInfo = {code: c.code, msg: c.msg};
      return;
    }
    if (c.op === "reset") this.lastKey = null;  // the snapshot that follows may have a lower key
    try { this.onControl(c); } catch (e) { console.error("cobrowse: onControl", e); }
  }

  // Saving encodes every unacked event: at most every PERSIST_MS under load (acks come
  // every 5 ms). The page's pagehide handler saves the final state itself.
  _persist(now) {
    if (!now) {
      if (!this.persistTimer) this.persistTimer = setTimeout(() => this._persist(true), PERSIST_MS);
      return;
    }
    clearTimeout(this.persistTimer);
    this.persistTimer = null;
    try { this.onPersist(this.persistState()); } catch (e) { /* storage full or blocked */ }
  }

  _closed(code, reason) {
    const wasLive = this.live;
    this.live = false;
    this.ws = null;
    if (this.stopped) return;
    if (FATAL_CLOSE.has(code)) {
      this.stopped = true;
      const detail = {code, reason, error: this.closeInfo};
      this._setState("ended", detail);
      return;
    }
    if (code === REFUSED_CLOSE) {
      const m = /retry_after=(\d+)/.exec(reason);
      this.retryFloor = m ? Number(m[1]) * 1000 : 1000;
      this.urlIndex++;
    } else if (this.reconnectDelay === null && !wasLive) {
      this.urlIndex++;  // could not connect here: try the next gateway in the session's order
    }
    this.stats.reconnects++;
    this._setState("reconnecting", {code, reason});
    if (this.reconnectDelay !== null) {
      const d = this.reconnectDelay;
      this.reconnectDelay = null;
      this.timer = setTimeout(() => this._connect(), d);
      return;
    }
    this._retry(reason);
  }

  async _retry(why) {
    if (this.stopped) return;
    const attempt = this.attempt++;
    // After a full round of the known gateways fails, ask the router for the current list.
    if (this.refreshGateways && this.gateways.length && attempt > 0 && attempt % (this.gateways.length + 1) === 0) {
      try {
        const fresh = await this.refreshGateways();
        if (fresh && fresh.length) { this.gateways = fresh; this.urlIndex = 0; }
      } catch (e) { /* keep the list we have */ }
    }
    const delay = jitterDelay(attempt, this.retryFloor);
    this.retryFloor = 0;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._connect(), delay);
  }
}
