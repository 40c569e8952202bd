/* visitor/inputs.js: the visitor's own actions as events: field values (typed or set by
 * script), scroll, pointer, hover and active (primary button down, or a key held), click,
 * focus, the URL fragment's target and viewport size, throttled where they come in bursts. A private field's value goes out masked, and only when its mask changed. */

function onInput(st, e) {
  fieldChanged(st, deepTarget(e));
}
/** A field set by script (el.value = ..., el.checked = ...; patched setters): looked at once,
 * after the task's other changes, like a visitor's input. */
function fieldSet(st, el) {
  if (!st.setFields.size) queueMicrotask(() => {
    const l = Array.from(st.setFields);
    st.setFields.clear();
    if (st.running) for (const f of l) safe(() => fieldChanged(st, f.localName === "option" ? f.closest("select") : f));
  });
  st.setFields.add(el);
}
function fieldChanged(st, el) {
  if (!el || el.nodeType !== 1 || el.namespaceURI !== NS_HTML) return;
  flush(st);
  const id = idOf(el);
  if (id === undefined || !inTree(el)) return;
  const priv = isPrivate(el);
  const tag = el.localName;
  if (tag === "input" && (el.type === "checkbox" || el.type === "radio")) {
    if (priv) return; // a private box's state is the private data
    // Checking a radio unchecks its group silently: send every one that changed.
    const group = el.type === "radio" && el.name ? radioGroup(el) : [el];
    for (const r of group) {
      const rid = idOf(r);
      if (rid === undefined || st.lastCk.get(r) === r.checked) continue;
      st.lastCk.set(r, r.checked);
      emit(st, "input", { id: rid, ck: r.checked });
    }
  } else if (tag === "select" && el.multiple) {
    if (priv) return;
    const sel = selIndexes(el);
    const key = sel.join(",");
    if (st.lastVal.get(el) === key) return;
    st.lastVal.set(el, key);
    emit(st, "input", { id, sel });
  } else if (tag === "input" || tag === "textarea" || tag === "select") {
    if (el.type === "file") return;
    const v = priv ? mask(el.value) : el.value;
    if (st.lastVal.get(el) === v) return;
    st.lastVal.set(el, v);
    const p = { id, v };
    if (p.v.length > MAX_EVENT / 4) p.v = p.v.slice(0, MAX_EVENT / 4);
    emit(st, "input", p);
  }
}
function selIndexes(sel) {
  const r = [];
  for (const op of sel.options) if (op.selected) r.push(op.index);
  return r;
}
function radioGroup(el) {
  const root = el.form || el.getRootNode();
  const res = [];
  for (const r of root.querySelectorAll("input[type=radio]")) {
    if (r.name === el.name && r.form === el.form) res.push(r);
  }
  return res.includes(el) ? res : res.concat([el]);
}
// First call runs now; later calls within `ms` are merged into one trailing call.
function throttle(st, key, ms, fn) {
  const cur = st.throttles.get(key);
  if (cur) { cur.pending = fn; return; }
  safe(fn);
  const s = { pending: null };
  const tick = () => {
    if (!st.running) { st.throttles.delete(key); return; }
    if (s.pending) {
      const f = s.pending;
      s.pending = null;
      safe(f);
      s.timer = setTimeout(tick, ms);
    } else st.throttles.delete(key);
  };
  s.timer = setTimeout(tick, ms);
  st.throttles.set(key, s);
}
function onScroll(st, e) {
  rehoverSoon(st); // the content moved under a pointer that may not have
  let t = e.target;
  if (t && t.nodeType === 9 && t !== document) t = t.scrollingElement; // a mirrored frame's window
  if (t === document || t === document.scrollingElement || t === window) {
    throttle(st, "win", SCROLL_MS, () => send(st, "scroll", { id: 0, x: window.scrollX, y: window.scrollY }));
    return;
  }
  if (!t || t.nodeType !== 1 || ours.has(t) || (isField(t) && isPrivate(t))) return;
  throttle(st, t, SCROLL_MS, () => {
    const id = idOf(t);
    if (id !== undefined && inTree(t)) send(st, "scroll", { id, x: t.scrollLeft, y: t.scrollTop });
  });
}
function onPointer(st, e) {
  const [x, y] = topXY(e);
  st.lastPtr = [x, y];
  throttle(st, "ptr", POINTER_MS, () => send(st, "pointer", { x, y }));
  hoverTo(st, deepTarget(e));
}
/** The deepest element at a viewport point, through open shadow roots. */
function deepElementAt(x, y) {
  let el = document.elementFromPoint(x, y);
  while (el && el.shadowRoot) {
    const inner = el.shadowRoot.elementFromPoint(x, y);
    if (!inner || inner === el) break;
    el = inner;
  }
  return el;
}
/** After a DOM change or a scroll the element under a still pointer may be another one (a
 * table redrawn under the cursor, a list scrolled by the wheel or by script): look again on
 * the next frame, when layout is due anyway, once per frame. */
function rehoverSoon(st) {
  if (!st.lastPtr || st.rehoverPending || typeof requestAnimationFrame !== "function") return;
  st.rehoverPending = true;
  requestAnimationFrame(() => safe(() => {
    st.rehoverPending = false;
    if (st.running && st.lastPtr) hoverTo(st, deepElementAt(st.lastPtr[0], st.lastPtr[1]));
  }));
}
function hoverTo(st, t) {
  const id = t ? nearestId(t) : null;
  if (id === st.lastHover) return;
  st.lastHover = id;
  send(st, "hover", { id });
}
function onOut(st, e) {
  if (e.relatedTarget || e.view !== window) return;
  st.lastPtr = null; // the pointer left the window
  hoverTo(st, null);
}
/** :active follows the primary button: the element pressed (and, in the viewer, its
 * ancestors) until the button is released or the gesture is cancelled. */
function onPress(st, e) {
  if (e.type === "pointerdown" && e.button !== 0) return;
  st.ptrActive = e.type === "pointerdown" ? nearestId(deepTarget(e)) : null;
  sendActive(st);
}
/** Input types that Space presses like a button. */
const SPACE_PRESSED = new Set(["button", "submit", "reset", "image", "checkbox", "radio", "color", "file"]);
/** Keyboard :active: Space held on a focused button (or an input in SPACE_PRESSED) makes it
 * :active in Chromium and Firefox until the key goes up or the focus leaves, unless the page
 * cancels the keydown; Enter clicks with no :active state. The engine cannot be asked:
 * Chromium answers false to matches(":active") (and ":hover") even while its styles apply. */
function onKey(st, e) {
  if (e.key !== " ") return;
  const t = deepTarget(e);
  setTimeout(() => safe(() => { // after the page's own listeners: defaultPrevented is final
    if (!st.running) return;
    const pressable = t && t.nodeType === 1 && t.namespaceURI === NS_HTML && !t.disabled &&
      (t.localName === "button" || (t.localName === "input" && SPACE_PRESSED.has(t.type)));
    st.keyActive = e.type === "keydown" && pressable && !e.defaultPrevented ? nearestId(t) : null;
    sendActive(st);
  }), 0);
}
/** `act` of a `hover` event: the pointer's press first, else the keyboard's. */
function sendActive(st) {
  const id = st.ptrActive !== null ? st.ptrActive : st.keyActive;
  if (id === st.lastActive) return;
  st.lastActive = id;
  send(st, "hover", { id: st.lastHover, act: id });
}
/** The element the URL's fragment selects (`:target`), in the top document. */
function targetId() {
  let t = null;
  try { t = document.querySelector(":target"); } catch (e) { t = null; }
  return t && inTree(t) ? (idOf(t) ?? null) : null;
}
/** The fragment changed (a link to #x, location.hash, back and forward): the URL and the
 * element `:target` now selects go to the viewer as a `nav` with `tg`. */
function onHash(st) {
  flush(st); // ids for nodes added in this task, the target among them
  emit(st, "nav", { url: document.URL, title: document.title, tg: targetId() });
}
function onClick(st, e) {
  const [x, y] = topXY(e);
  send(st, "click", { x, y, id: nearestId(deepTarget(e)) });
}
function onFocus(st) {
  // focusout then focusin: look once the focus has settled.
  setTimeout(() => safe(() => {
    if (!st.running) return;
    flush(st);
    const id = focusId();
    if (st.keyActive !== null && id !== st.keyActive) { st.keyActive = null; sendActive(st); } // focus left a key-pressed button
    const fv = id !== null && focusVisible();
    if (id === st.lastFocus && fv === st.lastFv) return;
    st.lastFocus = id;
    st.lastFv = fv;
    emit(st, "focus", { id, fv });
  }), 0);
}
/** The focused element, through open shadow roots. */
/** Does the focused element match :focus-visible (the engine's own heuristic: keyboard focus,
 * text fields)? False where the engine does not know the selector. */
function focusVisible() {
  const a = deepActive(document);
  try { return !!a && a.matches(":focus-visible"); } catch (e) { return false; }
}
function onResize(st) {
  throttle(st, "vw", SCROLL_MS, () => send(st, "viewport", { w: window.innerWidth, h: window.innerHeight }));
}
