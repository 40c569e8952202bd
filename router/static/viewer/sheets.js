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
  if (!target) return;
  rs.adoptedBy.set(target, list);
  readopt(rs, target);
}

// A document's or shadow root's adopted sheets: the fallback sheets of its <link>s (in tree
// order, where the visitor's linked sheets are: before any constructed one), the visitor's
// adopted sheets, and on the document the viewer's own sheet last.
function readopt(rs, target) {
  const fallbacks = [];
  for (const [link, fb] of rs.linkSheets) if (fb.root === target && link.isConnected) fallbacks.push([link, fb.sheet]);
  fallbacks.sort((a, b) => (a[0].compareDocumentPosition(b[0]) & 4 ? -1 : 1));  // 4: FOLLOWING
  const own = target === rs.doc && rs.viewerSheet ? [rs.viewerSheet] : [];
  target.adoptedStyleSheets = fallbacks.map((f) => f[1]).concat(rs.adoptedBy.get(target) || [], own);
}

/** A `css` event: a constructed sheet adopted or replaced, a rule inserted or deleted, or a
 * part of a linked sheet's text from the visitor (the CSS fallback). */
function applyCss(rs, p) {
  if (p.op === "link") return applyLinkCss(rs, p);
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

// ---- the visitor-fetched CSS fallback (docs/browser.md) ----
// A <link rel=stylesheet> whose proxied sheet failed (the proxy may not or cannot fetch it:
// an intranet or loopback origin, a page behind a login) is asked for once per snapshot with
// a `control` css-need; the visitor answers with the sheet's text in `css` `link` parts,
// which is rewritten by the proxy like any CSS and adopted as a constructed sheet (a <link>
// href of data: or blob: is not allowed by the embed page's CSP, and a new <style> would
// change the mirrored DOM).
const CSS_NEED_MAX = 64;  // requests per snapshot: a page with more failing sheets is broken anyway

/** Per snapshot (the document is new): watch for <link> sheets that fail to load. */
function watchFailedSheets(rs) {
  if (rs.linkObserver) rs.linkObserver.disconnect();
  rs.linkObserver = null;
  rs.linkAsked = new Set();
  rs.linkParts = new Map();
  rs.linkSheets = new Map();
  rs.doc.addEventListener("error", (e) => askForSheet(rs, e.target), true);
}

/** Ask for `el`'s sheet: it failed to load (an `error` event) or was never signed, for
 * `unsigned` (the href then, which must still be the link's). */
function askForSheet(rs, el, unsigned) {
  if (!el || el.nodeType !== 1 || el.localName !== "link") return;
  const id = rs.rev.get(el);
  const href = raw(rs, el).get("href");
  if (id === undefined || !href || rs.linkSheets.has(el)) return;
  // (a mirrored frame's document cannot adopt the replica's constructed sheets)
  if (unsigned !== undefined && (unsigned !== href || !el.isConnected || el.ownerDocument !== rs.doc)) return;
  const key = id + "\n" + href;
  if (rs.linkAsked.has(key) || rs.linkAsked.size >= CSS_NEED_MAX) return;
  rs.linkAsked.add(key);
  rs.stats.cssNeed++;
  rs.onAgentEvent("control", {op: "css-need", node: id});
}

function httpUrl(v) {
  try {
    const u = new URL(String(v));
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (e) {
    return null;
  }
}

/** A `css` {op: "link", node, base, i, n, css} part: consecutive parts of one sheet's text,
 * bounded like the visitor's side (LINK_CSS_MAX); css null: the visitor cannot send it. */
function applyLinkCss(rs, p) {
  const id = p.node;
  const i = Number(p.i);
  const n = Number(p.n);
  if (!Number.isInteger(id)) { rs.stats.skipped++; return; }
  if (i === 0) rs.linkParts.set(id, {n, parts: [], chars: 0});
  const acc = rs.linkParts.get(id);
  const ok = acc && acc.n === n && acc.parts.length === i && n >= 1 && n <= Math.ceil(LINK_CSS_MAX / LINK_CSS_PART) + 1;
  if (!ok || (p.css !== null && typeof p.css !== "string") || (acc.chars += (p.css || "").length) > LINK_CSS_MAX) {
    rs.linkParts.delete(id);
    rs.stats.skipped++;
    return;
  }
  if (p.css === null) { rs.linkParts.delete(id); rs.stats.cssUnavailable++; return; }
  acc.parts.push(p.css);
  if (acc.parts.length < n) return;
  rs.linkParts.delete(id);
  const el = rs.ids.get(id);
  const base = httpUrl(p.base);
  if (!el || el.localName !== "link" || !base) { rs.stats.skipped++; return; }
  const text = acc.parts.join("");
  const g = rs.gen;
  Promise.resolve().then(() => rs.rewriteCss(text, base)).then((css) => {
    if (g !== rs.gen || rs.ids.get(id) !== el || !el.isConnected) return;
    if (typeof css !== "string") { rs.stats.rewriteFailed++; return; }
    useFallback(rs, el, css);
  }, () => { rs.stats.rewriteFailed++; });
}

function useFallback(rs, el, css) {
  let fb = rs.linkSheets.get(el);
  if (!fb) {
    fb = {sheet: new rs.win.CSSStyleSheet(), root: el.getRootNode(), href: null, media: null};
    rs.linkSheets.set(el, fb);
  }
  fb.href = raw(rs, el).get("href");
  fb.media = el.getAttribute("media") || "";
  fb.sheet.media.mediaText = fb.media;
  fb.sheet.replaceSync(css);  // a constructed sheet drops @import rules
  rs.stats.cssFallback++;
  readopt(rs, fb.root);
  if (!rs.linkObserver) {
    // A link removed, or given another href (which loads or fails on its own): its fallback goes.
    rs.linkObserver = new MutationObserver(() => dropStaleFallbacks(rs));
    rs.linkObserver.observe(rs.doc, {childList: true, subtree: true, attributes: true, attributeFilter: ["href", "media"]});
  }
  relayout(rs);
}

function dropStaleFallbacks(rs) {
  const roots = new Set();
  for (const [link, fb] of rs.linkSheets) {
    if (link.isConnected && link.getRootNode() === fb.root && raw(rs, link).get("href") === fb.href &&
        (link.getAttribute("media") || "") === fb.media) continue;
    rs.linkSheets.delete(link);
    roots.add(fb.root);
  }
  for (const r of roots) readopt(rs, r);
}
