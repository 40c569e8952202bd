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

// ---- the visitor-fetched CSS fallback (docs/browser.md) ----
/** How deep @import chains are followed; a browser stops only at a cycle, and 8 is more than
 * any real page nests (Bootstrap themes: 2). */
const IMPORT_DEPTH_MAX = 8;

/** A readable sheet's rules as text, each @import whose sheet may be read replaced by that
 * sheet's own text, inline, in place (the viewer's constructed sheet would drop the
 * @import, and the proxy may not fetch what it names either): its relative url()s made
 * absolute against its own URL, wrapped in the import's supports(), media and layer() so
 * it applies where the imported sheet would. An import the visitor may not read is left
 * out. Null when the sheet cannot be read or the text passes LINK_CSS_MAX (`acc.chars`
 * counts across the whole tree, so a sheet imported many times cannot blow it up). */
function inlinedText(sheet, acc, depth) {
  let rules;
  try { rules = sheet.cssRules; } catch (e) { return null; }
  const out = [];
  for (const r of rules) {
    let text = r.cssText;
    if (r.type === 3) { // CSSRule.IMPORT_RULE (instanceof fails for a frame's rules)
      const inner = r.styleSheet && depth < IMPORT_DEPTH_MAX ? inlinedText(r.styleSheet, acc, depth + 1) : null;
      if (inner === null) continue;
      text = importWrapped(r, absoluteCssUrls(inner, r.styleSheet.href || sheet.href || document.baseURI));
    }
    acc.chars += text.length + 1;
    if (acc.chars > LINK_CSS_MAX) return null;
    out.push(text);
  }
  return out.join("\n");
}
/** An imported sheet's text under its @import's conditions. */
function importWrapped(rule, text) {
  let t = text;
  if (typeof rule.layerName === "string") t = `@layer ${rule.layerName} {\n${t}\n}`; // "": anonymous
  const media = rule.media ? rule.media.mediaText : "";
  if (media && media !== "all") t = `@media ${media} {\n${t}\n}`;
  if (rule.supportsText) t = `@supports (${rule.supportsText}) {\n${t}\n}`;
  return t;
}
/** `text` with every relative url() resolved against `base` (fragments and data: stay). */
function absoluteCssUrls(text, base) {
  return text.replace(URL_RE, (m, a, b, c) => {
    const u = cssUrlOf(a, b, c).trim();
    if (!u || u.startsWith("#") || /^data:/i.test(u)) return m;
    try { return "url(" + cssString(new URL(u, base).href) + ")"; } catch (e) { return m; }
  });
}

/** The text of a <link rel=stylesheet> for the viewer, which could not load it through the
 * proxy: its rules when the CSSOM may be read, else the same-origin URL fetched with the
 * page's credentials (text/css only); null when neither works or it is too big. */
async function linkSheetText(link) {
  const fromRules = link.sheet ? inlinedText(link.sheet, { chars: 0 }, 0) : null;
  if (fromRules !== null) return fromRules;
  let url;
  try { url = new URL(link.href, document.baseURI); } catch (e) { return null; }
  if (url.origin !== location.origin) return null; // a cross-origin sheet we may not read
  const r = await fetch(url.href, { credentials: "same-origin", mode: "same-origin", cache: "force-cache" });
  const type = (r.headers.get("content-type") || "").split(";")[0].trim().toLowerCase();
  if (!r.ok || type !== "text/css") return null;
  if (Number(r.headers.get("content-length")) > LINK_CSS_MAX * 3) return null;
  const text = await r.text();
  return text.length > LINK_CSS_MAX ? null : text;
}

/** A `control` {op: "css-need", node} from the agent: the viewer could not load that <link>'s
 * sheet. Only a stylesheet link in the sent tree is answered, so an agent can make the page
 * fetch nothing but the sheets the page itself links; the answer is `css` {op: "link", node,
 * base, i, n, css} parts, or one part with css null when the sheet cannot be sent. */
async function answerCssNeed(st, p) {
  const link = Number.isInteger(p.node) ? nodeOf(p.node) : undefined;
  if (!link || link.nodeType !== 1 || link.localName !== "link" || !inTree(link)) return;
  if (!/(^|\s)stylesheet(\s|$)/i.test(link.getAttribute("rel") || "") || !link.href) return;
  let text = null;
  try { text = await linkSheetText(link); } catch (e) { text = null; }
  if (!st.running) return;
  if (text !== null && (text.length > LINK_CSS_MAX || st.linkCssSent + text.length > LINK_CSS_PAGE_MAX)) text = null;
  // A blob: sheet's relative url()s cannot resolve against it: the page's base URL stands in.
  const base = { op: "link", node: p.node, base: /^https?:/i.test(link.href) ? link.href : document.baseURI };
  if (text === null) { send(st, "css", Object.assign(base, { i: 0, n: 1, css: null })); return; }
  st.linkCssSent += text.length;
  const parts = [];
  for (let at = 0; at < text.length || !parts.length; ) {
    let end = Math.min(text.length, at + LINK_CSS_PART);
    const c = text.charCodeAt(end - 1);
    if (end < text.length && c >= 0xd800 && c <= 0xdbff) end--; // never split a surrogate pair
    parts.push(text.slice(at, end));
    at = end;
  }
  parts.forEach((css, i) => send(st, "css", Object.assign({}, base, { i, n: parts.length, css })));
}
