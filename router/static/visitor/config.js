/* visitor/config.js: the snippet's settings (read from its own <script> tag), its limits and
 * two helpers every part uses. First of the visitor's parts; docs/browser.md lists them all.
 *
 * The parts share the bundle's function scope with format.js and wire.js (no modules, no
 * build step): a top-level name is written once across all of them, or the bundle does not
 * load. Everything private is masked before serialization (G4, visitor/privacy.js): the real
 * value of a private field never goes into any payload. */

// Captured at load time: document.currentScript is null once this script has run.
const CB_SCRIPT = document.currentScript;
const CB_CFG = (() => {
  const s = CB_SCRIPT;
  const attr = (n) => (s && s.getAttribute(n)) || null;
  let base = null;
  if (s && s.src) {
    try { base = new URL(".", s.src).href.replace(/\/$/, ""); } catch (e) { base = null; }
  }
  let maskSelector = attr("data-mask-selector");
  if (maskSelector) {
    try { document.createDocumentFragment().querySelector(maskSelector); } catch (e) {
      console.warn("cobrowse: data-mask-selector is not a valid selector; ignored");
      maskSelector = null;
    }
  }
  return {
    base,
    siteKey: attr("data-site-key"),
    agentName: attr("data-agent-name") || "a support agent",
    maskSelector,
  };
})();

const STORE_KEY = "cobrowse";
const CANVAS_MAX = 120 * 1024;
const CANVAS_EVERY_MS = 500;
const SCROLL_MS = 100;
const POINTER_MS = 50;
const MO_OPTS = { subtree: true, childList: true, attributes: true, characterData: true };

/** Runs f; an error is logged, never thrown into the page (its dispatch, its error tracker). */
function safe(f) {
  try { f(); } catch (e) { console.warn("cobrowse:", e); }
}

/** An Error with a `code` the Cobrowse API's callers can switch on (docs/browser.md). */
function codedError(code, message) {
  const e = new Error(message || code);
  e.code = code;
  return e;
}
