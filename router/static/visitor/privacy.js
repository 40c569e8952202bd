/* visitor/privacy.js: what is private and what its mask is (G4, docs/browser.md "Privacy").
 * The serializer, the mutation writer and the input events all mask through these. */

// A private element keeps only the attributes that shape it (any other may carry its
// content: value, title, data-*, ...). Those are masked like the value; URLs (URL_VALUED_ATTRS, format.js)
// are emptied, so the viewer never asks for a made-up address.
const KEEP_ATTRS = new Set([
  "id", "class", "style", "type", "name", "role", "for", "tabindex", "hidden", "disabled",
  "readonly", "required", "multiple", "rows", "cols", "size", "maxlength", "minlength",
  "width", "height", "autocomplete", "inputmode", "dir", "lang", "slot", "part",
  "aria-hidden", "data-cobrowse-private", "colspan", "rowspan", "viewBox", "xmlns",
]);
function maskAttr(name, value) {
  if (KEEP_ATTRS.has(name)) return value;
  return URL_VALUED_ATTRS.has(name) ? "" : mask(value);
}

// Sticky: a field that was private once (a password shown as text) stays private.
const sticky = new WeakSet();
function selfPrivate(el) {
  if (el.nodeType !== 1) return false;
  if (sticky.has(el)) return true;
  let p = false;
  if (el.localName === "input" && ((el.getAttribute("type") || "").toLowerCase() === "password" || el.type === "password")) p = true;
  // cc-* (the contract), and passwords or one-time codes shown as text.
  else if (/(^|\s)(cc-|current-password|new-password|one-time-code)/i.test(el.getAttribute("autocomplete") || "")) p = true;
  else if (el.hasAttribute("data-cobrowse-private")) p = true;
  else if (CB_CFG.maskSelector) {
    try { p = el.matches(CB_CFG.maskSelector); } catch (e) { p = false; }
  }
  if (p) sticky.add(el);
  return p;
}
function isPrivate(n) {
  for (let x = n; x; x = up(x)) if (x.nodeType === 1 && selfPrivate(x)) return true;
  return false;
}
// A private value (a field's value, an attribute, a comment) becomes this one mask whatever
// its length: "*" per character would tell "mastercard" (10) from "visa" (4) among a select's
// choices, and a PIN from a card number. An empty value stays empty: the agent may see that a
// field is filled in, never what with nor how much (docs/browser.md).
const MASK = "********";
const mask = (s) => (String(s) === "" ? "" : MASK);
// Private text keeps its whitespace (as rrweb does), so it still wraps where the real
// text would and the agent's layout holds; every other character becomes "*".
const MAX_MASK_TEXT = 4096;
const maskText = (s) => String(s).slice(0, MAX_MASK_TEXT).replace(/\S/g, "*");
// Text that is a field's value or choice (an <option>'s label, a <textarea>'s first value) is
// masked as a value: its word shape would tell the choices (and a textarea's value) apart.
const VALUE_TEXT = new Set(["option", "textarea"]);
// A private field's scroll offset follows its real value (a long input scrolls to its end, a
// textarea by its lines): it is never sent, as the mask has its own length.
const FIELD_TAGS = new Set(["input", "textarea", "select"]);
const isField = (el) => el.namespaceURI === NS_HTML && FIELD_TAGS.has(el.localName);
function maskTextNode(t) {
  const p = t.parentNode;
  return p && p.namespaceURI === NS_HTML && VALUE_TEXT.has(p.localName) ? mask(t.data) : maskText(t.data);
}
