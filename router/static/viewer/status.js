/* viewer/status.js: what the agent's view says is happening, as a pure object: inputs are
 * the wire's connection states, the gateway's `visitor` control messages and "a visitor
 * event arrived", each with `now`; `state(now)` is the displayed state (docs/browser.md
 * "What the agent's view says"). No timers and no DOM here: embed.js asks `nextChange(now)`
 * when to look again. tests/browser/test_browser_status.py runs a table through it.
 */

// "away" (the visitor's connection dropped without bye) may come back within the gateway's
// resume window; after 30 s without "live" the agent is told the visitor is gone.
const VISITOR_GONE_MS = 30000;
// A live visitor that sent nothing (no mutation, pointer, scroll...) for a minute is idle.
const VISITOR_IDLE_MS = 60000;

const VIEW_LABELS = Object.freeze({
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  waiting: "Waiting for the visitor",
  "visitor-away": "Visitor reconnecting…",
  "visitor-gone": "Visitor gone",
  "visitor-left": "Visitor left",
  "visitor-idle": "Visitor idle",
  ended: "Session ended",
  error: "Error",
});

// The gateway's `{"t": "ctl", "op": "visitor", "msg": ...}` values (docs/protocol.md).
const PRESENCE = new Set(["live", "away", "left"]);

class ViewStatus {
  constructor(now) {
    this.conn = "connecting";  // the agent's own connection: CobrowseWire's state
    this.presence = null;      // the latest "visitor" message since the last welcome
    this.presenceAt = now;
    this.activityAt = now;     // the latest visitor event (or "live")
    this.failed = false;
  }

  /** The wire's state: connecting, live, reconnecting, ended. Every welcome ("live")
   * starts again from "waiting": the gateway tells the presence right after it. */
  connection(state, now) {
    if (state === "live" && this.conn !== "live") {
      this.presence = null;
      this.presenceAt = now;
    }
    this.conn = state;
  }

  /** A control message; true if it was a presence message (others are ignored). */
  control(ctl, now) {
    if (!ctl || ctl.op !== "visitor" || !PRESENCE.has(ctl.msg)) return false;
    this.presence = ctl.msg;
    this.presenceAt = now;
    if (ctl.msg === "live") this.activityAt = now;
    return true;
  }

  /** Visitor events arrived. */
  activity(now) {
    this.activityAt = now;
  }

  /** The page could not start (bad link, unknown code, refused key...). */
  fail() {
    this.failed = true;
  }

  /** The displayed state: the `data-state` of the status element. */
  state(now) {
    if (this.failed) return "error";
    if (this.conn !== "live") return this.conn;  // connecting, reconnecting, ended
    if (this.presence === null) return "waiting";
    if (this.presence === "left") return "visitor-left";
    if (this.presence === "away") return now - this.presenceAt >= VISITOR_GONE_MS ? "visitor-gone" : "visitor-away";
    return now - this.activityAt >= VISITOR_IDLE_MS ? "visitor-idle" : "live";
  }

  /** Milliseconds from `now` until state() changes by time alone, or null (never). */
  nextChange(now) {
    if (this.failed || this.conn !== "live") return null;
    let at = null;
    if (this.presence === "away") at = this.presenceAt + VISITOR_GONE_MS;
    else if (this.presence === "live") at = this.activityAt + VISITOR_IDLE_MS;
    return at !== null && at > now ? at - now : null;
  }
}
