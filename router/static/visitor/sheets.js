/* visitor/sheets.js: stylesheet capture. Sheet ids (sids) for constructed sheets, the CSS of a
 * <style> whose CSSOM was changed by script, and the `css` events the patched CSSOM methods
 * (visitor/patches.js) report through the recorder's state. */

const sheetIds = new WeakMap(); // constructed sheet -> sid
let nextSid = 1;
function sidFor(sheet) {
  let s = sheetIds.get(sheet);
  if (s === undefined) { s = nextSid++; sheetIds.set(sheet, s); }
  return s;
}
const dirtySheets = new WeakSet(); // changed through the CSSOM while we watched
function sheetText(sheet) {
  try { return Array.from(sheet.cssRules, (r) => r.cssText).join("\n"); } catch (e) { return null; }
}
// The CSS of a <style> when its CSSOM no longer matches its text (insertRule, CSS-in-JS), else null.
function styleCss(el) {
  const sheet = el.sheet;
  if (!sheet) return null;
  const now = sheetText(sheet);
  if (now === null) return null;
  if (dirtySheets.has(sheet)) return now;
  try {
    const fresh = new CSSStyleSheet();
    ORIG.replaceSync.call(fresh, el.textContent);
    // A constructed sheet drops @import rules: compare without them.
    const noImports = (sh) => Array.from(sh.cssRules).filter((r) => !(r instanceof CSSImportRule)).map((r) => r.cssText).join("\n");
    return noImports(fresh) === noImports(sheet) ? null : now;
  } catch (e) {
    return null;
  }
}

/** The sids of an adoptedStyleSheets list; a sheet the viewer does not know yet goes into
 * ctx.sheets (sent with the snapshot, or as a `css` replace before the mutation). */
function adoptedSids(st, list, ctx) {
  const sids = [];
  for (const sh of list || []) {
    const sid = sidFor(sh);
    if (!st.viewerSheets.has(sid)) {
      st.viewerSheets.add(sid);
      ctx.sheets.push({ sid, css: sheetText(sh) || "" });
    }
    sids.push(sid);
  }
  return sids;
}

// Where a sheet lives for the viewer: {node: id} or {sheet: sid}; null when it cannot be
// named, or when it was just announced whole (the announcement includes the change).
function sheetRef(st, sheet) {
  const owner = sheet.ownerNode;
  if (owner) {
    const id = idOf(owner);
    return id !== undefined && inTree(owner) ? { node: id } : null;
  }
  if (sheet.ownerRule || sheet.parentStyleSheet) return null; // @import: next snapshot
  const sid = sidFor(sheet);
  if (!st.viewerSheets.has(sid)) {
    const css = sheetText(sheet);
    if (css === null) return null;
    st.viewerSheets.add(sid);
    cssEvent(st, { op: "replace", sheet: sid, css });
    return null;
  }
  return { sheet: sid };
}
function cssEvent(st, p) {
  if (tooBig(p)) { snapshot(st); return; }
  emit(st, "css", p);
}

// ---- called by the patched prototypes while `st` records ----
function cssInsert(st, sheet, index) {
  dirtySheets.add(sheet);
  const ref = sheetRef(st, sheet);
  if (!ref) return;
  let rule;
  try { rule = sheet.cssRules[index].cssText; } catch (e) { return; }
  cssEvent(st, Object.assign({ op: "insert" }, ref, { rule, index }));
}
function cssDelete(st, sheet, index) {
  dirtySheets.add(sheet);
  const ref = sheetRef(st, sheet);
  if (ref) cssEvent(st, Object.assign({ op: "delete" }, ref, { index }));
}
function cssReplace(st, sheet) {
  if (sheet.ownerNode || sheet.ownerRule) return;
  const sid = sidFor(sheet);
  const text = sheetText(sheet);
  if (text === null) return;
  st.viewerSheets.add(sid);
  cssEvent(st, { op: "replace", sheet: sid, css: text });
}
function cssAdopt(st, target) {
  let host;
  if (target === document) host = 0;
  else if (target instanceof ShadowRoot && target.host && target.host.shadowRoot === target) {
    host = idOf(target.host);
    if (host === undefined || !inTree(target.host)) return;
  } else return;
  const sids = [];
  for (const sh of target.adoptedStyleSheets) {
    const sid = sidFor(sh);
    if (!st.viewerSheets.has(sid)) {
      st.viewerSheets.add(sid);
      cssEvent(st, { op: "replace", sheet: sid, css: sheetText(sh) || "" });
    }
    sids.push(sid);
  }
  st.lastAdopt.set(target, sids.join(","));
  cssEvent(st, { op: "adopt", host, sheets: sids });
}
// adoptedStyleSheets.push() does not call the setter: compare on the timer too.
function pollAdopted(st) {
  const check = (t) => {
    const key = Array.from(t.adoptedStyleSheets || [], sidFor).join(",");
    if (st.lastAdopt.get(t) !== key) cssAdopt(st, t);
  };
  check(document);
  for (const r of liveRoots(st)) if (r.host && inTree(r.host)) check(r);
}
