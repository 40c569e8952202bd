/* visitor/control.js: remote control with the visitor's consent (docs/browser.md "Remote
 * control"). An agent's `rc-request` shows a prompt naming the agent (a real dialog with two
 * buttons, keyboard first); "Allow" sends `rc-grant {aid}`, "Refuse" or Escape
 * `rc-revoke {aid}`. While granted a banner says who is in control, with a one-click "Stop".
 * Only the holder's `rc-click`, `rc-scroll`, `rc-text` and `rc-key` act, on the real page,
 * through the events a user's own input fires; never on a private element (privacy.js decides, as for
 * masking). The gateway refuses input without a grant too (gateway/remote_control.py): this
 * is the lock on the visitor's side, and it closes at once on "Stop". */

const RC_MAX_TEXT = 10000; // characters an rc-text may set: a long comment, not a file
const RC_REQUEST_QUIET_MS = 10000; // after a refusal, that agent's requests are ignored this long
const RC_MAX_SCROLL = 10000; // px one rc-scroll may move: a wheel turn is about 100
const RC_TEXT_TYPES = new Set(["", "text", "search", "email", "url", "tel", "number"]);
const RC_HOST_STYLE =
  "all: initial !important; position: fixed !important; left: 50% !important; top: 12px !important; " +
  "transform: translateX(-50%) !important; z-index: 2147483647 !important; display: block !important; " +
  "pointer-events: auto !important;";
const RC_CSS = `
  :host { all: initial; }
  .box { font: 14px/1.45 system-ui, sans-serif; color: #111827; background: #fff; width: 340px;
    border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.3); padding: 16px; box-sizing: border-box; }
  .box p { margin: 0 0 12px; }
  .row { display: flex; gap: 8px; justify-content: flex-end; }
  button { font: inherit; border-radius: 6px; padding: 6px 14px; cursor: pointer; border: 1px solid #6b7280;
    background: #fff; color: #111827; }
  button:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
  button.yes { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
  .banner { display: flex; align-items: center; gap: 12px; font: 14px/1.4 system-ui, sans-serif;
    background: #b91c1c; color: #fff; padding: 6px 8px 6px 14px; border-radius: 8px;
    box-shadow: 0 4px 16px rgba(0,0,0,.3); white-space: nowrap; }
  .banner button { background: #fff; color: #991b1b; border-color: #fff; font-weight: 600; }`;

/** The node an agent's input names, when it may act on it: ours and private ones never. */
function rcTarget(id) {
  if (id === 0) return document.scrollingElement || document.documentElement;
  const n = Number.isInteger(id) ? nodeOf(id) : null;
  if (!n || n.nodeType !== 1 || !n.isConnected || !inTree(n) || isPrivate(n)) return null;
  return n;
}

function rcClick(el, p) {
  const r = el.getBoundingClientRect();
  const ox = Number.isFinite(p.x) ? Math.min(Math.max(p.x, 0), r.width) : r.width / 2;
  const oy = Number.isFinite(p.y) ? Math.min(Math.max(p.y, 0), r.height) : r.height / 2;
  const at = { bubbles: true, cancelable: true, composed: true, view: window, clientX: r.left + ox, clientY: r.top + oy, button: 0 };
  const ptr = Object.assign({ pointerId: 1, isPrimary: true, pointerType: "mouse" }, at);
  el.dispatchEvent(new PointerEvent("pointerdown", Object.assign({ buttons: 1 }, ptr)));
  el.dispatchEvent(new MouseEvent("mousedown", Object.assign({ buttons: 1 }, at)));
  if (typeof el.focus === "function") el.focus({ preventScroll: true });
  el.dispatchEvent(new PointerEvent("pointerup", ptr));
  el.dispatchEvent(new MouseEvent("mouseup", at));
  el.dispatchEvent(new MouseEvent("click", at)); // its activation runs: a checkbox toggles, a submit submits
  return true;
}

function rcScroll(el, p) {
  if (!Number.isFinite(p.dx) || !Number.isFinite(p.dy)) return false;
  const dx = Math.max(-RC_MAX_SCROLL, Math.min(RC_MAX_SCROLL, p.dx));
  const dy = Math.max(-RC_MAX_SCROLL, Math.min(RC_MAX_SCROLL, p.dy));
  if (el === document.scrollingElement || el === document.documentElement) window.scrollBy(dx, dy);
  else el.scrollBy(dx, dy);
  return true;
}

/** A text field's value as typing sets it: the value setter frameworks watch (the
 * prototype's, which React's own tracker does not shadow), then `input`, and `change` when
 * the agent finished (`done`: they left the field or pressed Enter). A select: `rcChoose`. */
function rcText(el, p) {
  if (el.localName === "select") return rcChoose(el, p);
  if (el.isContentEditable) return rcEditable(el, p);
  const input = el.localName === "input" && RC_TEXT_TYPES.has(rcType(el));
  if (!(input || el.localName === "textarea") || el.disabled || el.readOnly) return false;
  if (typeof p.value !== "string" || p.value.length > RC_MAX_TEXT) return false;
  if (document.activeElement !== el) el.focus({ preventScroll: true });
  const proto = input ? HTMLInputElement.prototype : HTMLTextAreaElement.prototype;
  Object.getOwnPropertyDescriptor(proto, "value").set.call(el, p.value);
  el.dispatchEvent(new InputEvent("input", { bubbles: true, composed: true, inputType: "insertReplacementText" }));
  if (p.done) el.dispatchEvent(new Event("change", { bubbles: true }));
  return true;
}

// The keys an agent may press, with what a page's older handlers read (keyCode, which).
const RC_KEYS = { Enter: { code: "Enter", keyCode: 13 }, Escape: { code: "Escape", keyCode: 27 } };
const RC_SUBMITTERS = new Set(["submit", "image"]); // input types that submit a form
// Input types of which a form with no submit button may hold only one for Enter to submit
// it (HTML's implicit submission: "fields that block implicit submission").
const RC_BLOCKING = new Set(["", "text", "search", "email", "url", "tel", "number", "password",
  "date", "month", "week", "time", "datetime-local"]);

function rcType(el) {
  return (el.getAttribute("type") || "").toLowerCase();
}

function rcSubmitter(el) {
  if (el.localName === "button") return rcType(el) === "submit" || rcType(el) === "";
  return el.localName === "input" && RC_SUBMITTERS.has(rcType(el));
}

/** What Enter does in a text field of a form, as a browser does it: its default button's
 * activation (a click, so the page's click handlers run and the button's name is sent), or,
 * with no submit button, a submit when the field is the only one that blocks implicit
 * submission. A disabled default button, or a private one, submits nothing. */
function rcImplicitSubmit(el) {
  const form = el.form;
  if (!form) return;
  const fields = Array.from(form.elements);
  const button = fields.find(rcSubmitter);
  if (button) {
    if (!button.disabled && !isPrivate(button)) button.click();
    return;
  }
  const blocking = fields.filter((f) => f.localName === "input" && RC_BLOCKING.has(rcType(f)));
  if (blocking.length === 1 && typeof form.requestSubmit === "function") form.requestSubmit();
}

/** A key press on the element: keydown, keypress (Enter) and keyup through the page's own
 * handlers, then, unless a handler cancelled the keydown or something already clicked or
 * submitted meanwhile, what the key does by default that an untrusted event does not:
 * Enter activates a button or link, or submits a text field's form (`rcImplicitSubmit`).
 * Escape has no default here; the page's handlers act on it. */
function rcKey(el, p) {
  const k = typeof p.key === "string" && Object.prototype.hasOwnProperty.call(RC_KEYS, p.key) ? RC_KEYS[p.key] : null;
  if (!k || el.disabled) return false;
  if (document.activeElement !== el && typeof el.focus === "function") el.focus({ preventScroll: true });
  const init = { key: p.key, code: k.code, keyCode: k.keyCode, which: k.keyCode, bubbles: true, cancelable: true, composed: true, view: window };
  // Whether a click or a submit happened while the keys were dispatched: the page's own
  // handler, or the engine (WebKit submits a form on an untrusted keypress Enter), did
  // what Enter does, and doing it again would submit twice.
  let acted = false;
  const saw = () => { acted = true; };
  window.addEventListener("click", saw, true);
  window.addEventListener("submit", saw, true);
  let go;
  try {
    go = el.dispatchEvent(new KeyboardEvent("keydown", init));
    if (p.key === "Enter" && go) el.dispatchEvent(new KeyboardEvent("keypress", Object.assign({}, init, { charCode: 13 })));
    el.dispatchEvent(new KeyboardEvent("keyup", init));
  } finally {
    window.removeEventListener("click", saw, true);
    window.removeEventListener("submit", saw, true);
  }
  if (!go || acted || p.key !== "Enter" || !el.isConnected) return true;
  if (el.localName === "button" || (el.localName === "a" && el.hasAttribute("href")) ||
      (el.localName === "input" && (rcSubmitter(el) || rcType(el) === "button" || rcType(el) === "reset"))) {
    el.click();
  } else if (el.localName === "input" && RC_BLOCKING.has(rcType(el))) {
    rcImplicitSubmit(el);
  }
  return true;
}

/** The text of a `contenteditable` region (the editing host of `el`: a chat box, a
 * comment editor) replaced by `value` as the browser's own editing does it: all of it
 * selected, then `insertText`: the DOM changes as the browser's own editing changes it, and
 * `input` (`insertText`, trusted) comes from the browser (no `beforeinput`: execCommand
 * fires none). Formatting inside is replaced by plain text; with no
 * `execCommand`, the text is set and `input` fired. */
function rcEditable(el, p) {
  if (typeof p.value !== "string" || p.value.length > RC_MAX_TEXT) return false;
  let host = el;
  while (host.parentElement && host.parentElement.isContentEditable) host = host.parentElement;
  host.focus({ preventScroll: true });
  const sel = window.getSelection();
  if (sel) sel.selectAllChildren(host);
  let done = false;
  try {
    done = document.execCommand(p.value ? "insertText" : "delete", false, p.value);
  } catch (e) {
    done = false;
  }
  if (!done) {
    host.textContent = p.value;
    host.dispatchEvent(new InputEvent("input", { bubbles: true, composed: true, inputType: "insertReplacementText" }));
  }
  return true;
}

/** A single select's choice, as picking it sets it: the option whose value is `value`
 * (not a disabled one, nor one in a disabled group), then `input` and `change`. A synthetic
 * click cannot open a select's picker, so this is how an agent chooses. Multiple selects
 * are not supported. */
function rcChoose(el, p) {
  if (el.disabled || el.multiple || typeof p.value !== "string") return false;
  const i = Array.from(el.options).findIndex((o) => o.value === p.value && !o.disabled &&
    !(o.parentNode && o.parentNode.localName === "optgroup" && o.parentNode.disabled));
  if (i < 0) return false;
  if (document.activeElement !== el) el.focus({ preventScroll: true });
  if (el.selectedIndex !== i) {
    Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "selectedIndex").set.call(el, i);
    el.dispatchEvent(new Event("input", { bubbles: true, composed: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }
  return true;
}

const RC_ACTS = { "rc-click": rcClick, "rc-scroll": rcScroll, "rc-text": rcText, "rc-key": rcKey };

/** The page's remote control. `send(kind, payload)` puts an event on the wire; `holder` is
 * the agent granted on an earlier page of this session (sessionStorage), `changed()` is
 * called when it changes, so the next page knows. */
function makeControl(send, holder, changed) {
  const st = { holder: holder || null, asking: null, quiet: new Map(), done: 0, ignored: 0 };
  const host = document.createElement("cobrowse-control");
  ours.add(host);
  host.setAttribute("style", RC_HOST_STYLE);
  const root = ORIG.attachShadow.call(host, { mode: "closed" });
  const style = document.createElement("style");
  style.textContent = RC_CSS;
  root.appendChild(style);
  let ui = null; // the prompt or the banner shown now

  function show(el) {
    if (ui) ui.remove();
    ui = el;
    if (el) root.appendChild(el);
    if (el && !host.isConnected) document.documentElement.appendChild(host);
    if (!el) host.remove();
  }
  function set(aid) {
    st.holder = aid;
    if (changed) safe(changed);
    show(aid ? banner() : null);
  }
  function banner() {
    const b = document.createElement("div");
    b.className = "banner";
    b.setAttribute("role", "status");
    const t = document.createElement("span");
    t.textContent = `${CB_CFG.agentName} is controlling this page`;
    const stop = document.createElement("button");
    stop.type = "button";
    stop.textContent = "Stop control";
    stop.addEventListener("click", () => api.revoke());
    b.append(t, stop);
    return b;
  }
  function prompt(aid) {
    const box = document.createElement("div");
    box.className = "box";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "true");
    box.setAttribute("aria-labelledby", "rc-t");
    box.setAttribute("aria-describedby", "rc-d");
    box.innerHTML = '<p id="rc-t"></p><p id="rc-d"></p><div class="row"><button class="yes" type="button">Allow control</button><button class="no" type="button">Refuse</button></div>';
    box.querySelector("#rc-t").textContent = `${CB_CFG.agentName} asks to control this page.`;
    box.querySelector("#rc-d").textContent =
      "They could click, scroll and type here for you. Passwords, card numbers and private fields stay out of their reach. You can stop at any time.";
    const [yes, no] = box.querySelectorAll("button");
    const answer = (ok) => {
      if (st.asking !== aid) return;
      st.asking = null;
      if (ok) {
        send("rc-grant", { aid });
        set(aid);
      } else {
        send("rc-revoke", { aid });
        st.quiet.set(aid, Date.now());
        show(st.holder ? banner() : null);
      }
    };
    yes.addEventListener("click", () => answer(true));
    no.addEventListener("click", () => answer(false));
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") answer(false);
      else if (e.key === "Tab") { // the focus stays in the dialog while it asks
        e.preventDefault();
        (root.activeElement === yes ? no : yes).focus();
      }
    });
    return box;
  }

  const api = {
    holder: () => st.holder,
    /** An agent's rc-* event; `src` is the agent that sent it. */
    agentEvent(src, kind, p) {
      if (kind === "rc-request") {
        if (!src || st.holder === src || st.asking) return;
        if (Date.now() - (st.quiet.get(src) || -Infinity) < RC_REQUEST_QUIET_MS) return;
        st.asking = src;
        show(prompt(src));
        root.querySelector("button.no").focus(); // the safe answer is the one Enter gives
        return;
      }
      const act = RC_ACTS[kind];
      if (!act) return;
      const el = st.holder && src === st.holder && p && typeof p === "object" ? rcTarget(p.id) : null;
      let ok = false;
      if (el) safe(() => { ok = act(el, p); });
      if (ok) st.done++;
      else st.ignored++;
    },
    agentLeft(aid) {
      if (st.asking === aid) { st.asking = null; show(st.holder ? banner() : null); }
      if (st.holder === aid) set(null); // the gateway ended the grant with the agent's bye
    },
    revoke() {
      const aid = st.holder;
      if (!aid) return;
      set(null); // closed here first: what is under way is ignored from now on
      send("rc-revoke", { aid });
    },
    restore() { if (st.holder) show(banner()); },
    // For tests (the shadow root is closed): the grant, the prompt and where "Stop" is.
    state() {
      const stop = st.holder && ui ? ui.querySelector("button") : null;
      const r = stop ? stop.getBoundingClientRect() : null;
      const focus = root.activeElement;
      return {
        holder: st.holder,
        asking: st.asking,
        dialog: st.asking ? { role: ui.getAttribute("role"), text: ui.textContent, focused: focus ? focus.textContent : null } : null,
        stop: r ? { x: r.left + r.width / 2, y: r.top + r.height / 2, text: stop.textContent } : null,
        done: st.done,
        ignored: st.ignored,
      };
    },
    remove() { show(null); },
  };
  return api;
}
