/* viewer/sheets.js: the visitor's stylesheets as text, rewritten by the proxy before they
 * reach the replica. A <style> element or a constructed sheet has a sheet state: its raw
 * text, or the rule list once a CSSOM edit (`css` event) arrived; any change schedules one
 * rewrite per microtask, and only the newest answer is applied.
 */

function isStyle(el) {
  return el && el.nodeType === 1 && el.localName === "style" && (el.namespaceURI === NS_HTML || el.namespaceURI === NS_SVG);
}

function parseRules(rs, text) {
  const pdoc = parseDocOf(rs);
  const st = pdoc.createElement("style");
  st.textContent = text;
  pdoc.head.appendChild(st);
  let rules = null;
  try {
    rules = st.sheet ? Array.from(st.sheet.cssRules, (r) => r.cssText) : null;
  } catch (e) {
    rules = null;
  }
  st.remove();
  if (rules) return rules;
  const sh = new (rs.edoc.defaultView.CSSStyleSheet)();
  sh.replaceSync(text);
  return Array.from(sh.cssRules, (r) => r.cssText);
}

function newSheetState(target) {
  return {raw: "", model: null, n: 0, scheduled: false, target};
}

function scheduleSheet(rs, state) {
  if (state.scheduled) return;
  state.scheduled = true;
  const g = rs.gen;
  queueMicrotask(() => {
    state.scheduled = false;
    if (g !== rs.gen) return;
    const text = state.model ? state.model.join("\n") : state.raw;
    const n = ++state.n;
    const done = (css) => {
      if (g !== rs.gen || n !== state.n) return;  // a newer version is on its way
      try { state.target(css); } catch (e) { rs.stats.errors++; }
      relayout(rs);
    };
    if (!text.trim()) return done("");
    Promise.resolve().then(() => rs.rewriteCss(text, rs.base)).then((css) => {
      if (typeof css === "string") done(css);
      else rs.stats.rewriteFailed++;
    }, () => { rs.stats.rewriteFailed++; });
  });
}

function styleOf(rs, el) {
  let st = rs.styleState.get(el);
  if (!st) {
    st = newSheetState((css) => {
      // The rewritten CSS goes in the first text child; the others stay empty.
      let first = null;
      for (const c of el.childNodes) {
        if (c.nodeType === 3) {
          if (!first) first = c;
          else c.data = "";
        }
      }
      if (!first) {
        first = rs.doc.createTextNode("");
        el.appendChild(first);
      }
      first.data = css;
    });
    st.cssField = null;
    rs.styleState.set(el, st);
  }
  return st;
}

function restyle(rs, el) {
  const st = styleOf(rs, el);
  if (st.cssField === null) {
    let raw = "";
    for (const c of el.childNodes) if (c.nodeType === 3 && rs.rawText.has(c)) raw += rs.rawText.get(c);
    st.raw = raw;
  }
  st.model = null;  // the visitor's browser re-parses too: CSSOM edits are gone
  scheduleSheet(rs, st);
}

function sheetFor(rs, p) {
  if (p.sheet !== undefined && p.sheet !== null) {
    const s = rs.sheets.get(p.sheet);
    return s ? s.state : null;
  }
  const el = rs.ids.get(p.node);
  return isStyle(el) ? styleOf(rs, el) : null;
}

function constructed(rs, sid) {
  let s = rs.sheets.get(sid);
  if (!s) {
    const sheet = new rs.win.CSSStyleSheet();
    s = {sheet, state: newSheetState((css) => sheet.replaceSync(css))};
    rs.sheets.set(sid, s);
  }
  return s;
}

function adopt(rs, target, sids) {
  const list = [];
  for (const sid of sids || []) list.push(constructed(rs, sid).sheet);
  if (target === rs.doc) {
    rs.doc.adoptedStyleSheets = list.concat(rs.viewerSheet ? [rs.viewerSheet] : []);
  } else if (target) {
    target.adoptedStyleSheets = list;
  }
}

/** A `css` event: a constructed sheet adopted or replaced, a rule inserted or deleted. */
function applyCss(rs, p) {
  if (p.op === "adopt") {
    const hostEl = p.host ? rs.ids.get(p.host) : null;
    const target = !p.host ? rs.doc : (hostEl && hostEl.shadowRoot);
    if (!target) { rs.stats.skipped++; return; }
    adopt(rs, target, Array.isArray(p.sheets) ? p.sheets : []);
    return;
  }
  if (p.op === "replace") {
    const s = constructed(rs, p.sheet);
    s.state.raw = String(p.css || "");
    s.state.model = null;
    scheduleSheet(rs, s.state);
    return;
  }
  const st = sheetFor(rs, p);
  if (!st) { rs.stats.skipped++; return; }
  if (!st.model) st.model = st.raw.trim() ? parseRules(rs, st.raw) : [];
  const i = Math.max(0, Math.min(st.model.length, Number(p.index) || 0));
  if (p.op === "insert") st.model.splice(i, 0, String(p.rule || ""));
  else if (p.op === "delete") {
    if (i < st.model.length) st.model.splice(i, 1);
    else rs.stats.skipped++;
  } else { rs.stats.unknown++; return; }
  scheduleSheet(rs, st);
}
