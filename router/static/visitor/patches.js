/* visitor/patches.js: prototype patches, installed only while recording (the recording state
 * in activeRec gets the calls); the originals are called as they are. CSSOM changes, shadow
 * roots and form state set by script fire no DOM event, so they are seen here. */

// CSSOM originals, captured at load before any patch: we parse with them without emitting
// events, and the overlay and the consent prompt attach their closed roots with them.
const ORIG = {
  insertRule: CSSStyleSheet.prototype.insertRule,
  deleteRule: CSSStyleSheet.prototype.deleteRule,
  replace: CSSStyleSheet.prototype.replace,
  replaceSync: CSSStyleSheet.prototype.replaceSync,
  attachShadow: Element.prototype.attachShadow,
  docAdopted: Object.getOwnPropertyDescriptor(Document.prototype, "adoptedStyleSheets"),
  rootAdopted: Object.getOwnPropertyDescriptor(ShadowRoot.prototype, "adoptedStyleSheets"),
};
/** @type {?RecorderState} the recording the patches report to (one per page). */
let activeRec = null;
let patched = null;
// Setters of form state: a script setting them fires no input event.
const FIELD_PROPS = [
  [HTMLInputElement.prototype, "value"], [HTMLInputElement.prototype, "checked"],
  [HTMLTextAreaElement.prototype, "value"], [HTMLSelectElement.prototype, "value"],
  [HTMLSelectElement.prototype, "selectedIndex"], [HTMLOptionElement.prototype, "selected"],
];
const FIELD_ORIG = [];
function installPatches() {
  if (patched) return;
  const P = CSSStyleSheet.prototype;
  const w = {
    insertRule: function insertRule(rule, index) {
      const st = activeRec;
      if (st) safe(() => flush(st));
      const r = ORIG.insertRule.apply(this, arguments);
      if (st) safe(() => cssInsert(st, this, r));
      return r;
    },
    deleteRule: function deleteRule(index) {
      const st = activeRec;
      if (st) safe(() => flush(st));
      const r = ORIG.deleteRule.apply(this, arguments);
      if (st) safe(() => cssDelete(st, this, Number(index) >>> 0));
      return r;
    },
    replace: function replace(text) {
      const p = ORIG.replace.apply(this, arguments);
      const sheet = this;
      p.then(() => { const st = activeRec; if (st) safe(() => cssReplace(st, sheet)); }, () => {});
      return p;
    },
    replaceSync: function replaceSync(text) {
      const r = ORIG.replaceSync.apply(this, arguments);
      const st = activeRec;
      if (st) safe(() => cssReplace(st, this));
      return r;
    },
    attachShadow: function attachShadow(init) {
      const sr = ORIG.attachShadow.apply(this, arguments);
      const st = activeRec;
      if (st) safe(() => shadowAttached(st, this, sr));
      return sr;
    },
  };
  P.insertRule = w.insertRule;
  P.deleteRule = w.deleteRule;
  P.replace = w.replace;
  P.replaceSync = w.replaceSync;
  Element.prototype.attachShadow = w.attachShadow;
  for (const [proto, prop] of FIELD_PROPS) {
    const desc = Object.getOwnPropertyDescriptor(proto, prop);
    if (!desc || !desc.set) continue;
    FIELD_ORIG.push([proto, prop, desc]);
    Object.defineProperty(proto, prop, Object.assign({}, desc, {
      set(v) {
        desc.set.call(this, v);
        const st = activeRec;
        if (st) safe(() => fieldSet(st, this));
      },
    }));
  }
  for (const [proto, desc] of [[Document.prototype, ORIG.docAdopted], [ShadowRoot.prototype, ORIG.rootAdopted]]) {
    if (!desc || !desc.set) continue;
    Object.defineProperty(proto, "adoptedStyleSheets", Object.assign({}, desc, {
      set(v) {
        desc.set.call(this, v);
        const st = activeRec;
        if (st) safe(() => cssAdopt(st, this));
      },
    }));
  }
  patched = w;
}
function removePatches() {
  if (!patched) return;
  const P = CSSStyleSheet.prototype;
  // Put back only what is still ours: a page may have wrapped our wrapper since.
  for (const k of ["insertRule", "deleteRule", "replace", "replaceSync"]) if (P[k] === patched[k]) P[k] = ORIG[k];
  if (Element.prototype.attachShadow === patched.attachShadow) Element.prototype.attachShadow = ORIG.attachShadow;
  for (const [proto, prop, desc] of FIELD_ORIG.splice(0)) Object.defineProperty(proto, prop, desc);
  if (ORIG.docAdopted) Object.defineProperty(Document.prototype, "adoptedStyleSheets", ORIG.docAdopted);
  if (ORIG.rootAdopted) Object.defineProperty(ShadowRoot.prototype, "adoptedStyleSheets", ORIG.rootAdopted);
  patched = null;
}
