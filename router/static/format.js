/* format.js: the replica format, shared by the visitor's snippet (which writes it) and the
 * agent's viewer (which reads it). Both bundles include this file first, so a key, a
 * namespace or a limit is written once. docs/browser.md describes the same format.
 *
 * A serialised node (snapshot `html` tree, mutation `adds[].n`):
 * @typedef {Object} WireNode
 * @property {number} id       the visitor's id for the node (0 is the document)
 * @property {string} [tag]    element: its localName
 * @property {string} [ns]     element: "svg" or "math" (nodeNsKey); absent means HTML
 * @property {Object<string,string>} [a]  element: attributes by qualified name
 * @property {boolean} [m]     element: private (its text and values are masked)
 * @property {boolean} [ck]    input: checked
 * @property {string} [v]      input/textarea/select: the live value (masked if private)
 * @property {boolean} [sl]    option: selected
 * @property {boolean} [cv]    canvas: frames follow as `canvas` events
 * @property {string} [css]   style: the sheet's text as the CSSOM holds it
 * @property {number[]} [sc]   [scrollLeft, scrollTop] when not 0 (full snapshots only)
 * @property {WireNode[]} [c]  children
 * @property {{c: WireNode[], adopted: number[]}} [sh]  an open shadow root
 * @property {FrameDoc} [doc]  iframe/frame the snippet can read (same origin): its document
 * @property {number[]} [fs]   iframe/frame it cannot read (cross-origin): [width, height] of
 *   its border box as the visitor laid it out (offsetWidth/offsetHeight)
 * @property {string} [x]      text or CDATA: its data
 * @property {string} [cm]     comment: its data
 *
 * A mirrored frame's document (ids from the page's one counter: one id space per session):
 * @typedef {Object} FrameDoc
 * @property {?{name: string, pub: string, sys: string}} dt  its doctype (quirks mode)
 * @property {string} base     its base URL: its relative URLs resolve against it
 * @property {WireNode[]} c    its root element (empty while it has none)
 *
 * A `mutation` payload: {rem: [id], adds: [{p: parentId, b: beforeId|null, n: WireNode}],
 * attr: [{id, a: {name: value|null}}], text: [{id, x}]}.
 */

const NS_HTML = "http://www.w3.org/1999/xhtml";
const NS_SVG = "http://www.w3.org/2000/svg";
const NS_MATH = "http://www.w3.org/1998/Math/MathML";
const NS_XLINK = "http://www.w3.org/1999/xlink";
const NS_XML = "http://www.w3.org/XML/1998/namespace";
const NS_XMLNS = "http://www.w3.org/2000/xmlns/";

/** `ns` for an element in namespace `uri`: undefined for HTML (and anything else). */
function nodeNsKey(uri) {
  if (uri === NS_SVG) return "svg";
  if (uri === NS_MATH) return "math";
  return undefined;
}

/** The namespace an element's `ns` key names: HTML when absent or unknown. */
function nodeNsUri(key) {
  return key === "svg" ? NS_SVG : key === "math" ? NS_MATH : NS_HTML;
}

/** Attributes whose value is a URL, in any namespace. The viewer checks each for script URLs
 * and loads it only through a signed proxy URL; the snippet empties them on private elements
 * (a mask there would be fetched as a relative address). */
const URL_VALUED_ATTRS = new Set(["href", "src", "action", "formaction", "xlink:href", "poster",
  "background", "srcset", "data", "ping", "codebase", "cite", "longdesc", "lowsrc", "dynsrc",
  "manifest", "icon", "classid", "archive", "profile", "imagesrcset", "itemtype"]);

/** The class the viewer sets for each element-state pseudo-class the visitor's element
 * matches; the proxy's CSS rewriter (proxy/rewrite.py STATE_CLASSES) turns each
 * pseudo-class into the same class, since the replica's own pointer, focus and URL
 * fragment never reach the visitor's elements. */
const STATE_CLASSES = Object.freeze({hover: "cb-hover", focus: "cb-focus",
  "focus-visible": "cb-focus-visible", "focus-within": "cb-focus-within", active: "cb-active",
  target: "cb-target"});

// The gateway refuses an event payload over 128 KiB (protocol.md MAX_EVENT_BYTES) and closes
// the connection, so anything that could be larger is checked against MAX_EVENT; the 8 KiB
// of room covers the envelope and the msgpack framing.
const MAX_EVENT_BYTES = 128 * 1024;
const MAX_EVENT = MAX_EVENT_BYTES - 8 * 1024;

/** Event kinds a visitor sends, and the ones an agent sends back (docs/browser.md). The
 * visitor's element states ride on two of them: `hover` {id, act} (act, when present: the
 * element pressed with the primary button, null once released; a field rather than a kind,
 * as gateways close a connection that sends a kind they do not know) and `focus` {id, fv}
 * (fv: the focused element matches :focus-visible). */
const VISITOR_KINDS = Object.freeze(["snapshot", "nav", "mutation", "input", "scroll", "hover",
  "focus", "viewport", "canvas", "css", "pointer", "click"]);
const AGENT_KINDS = Object.freeze(["pointer", "click", "highlight", "control"]);

/** The visitor-fetched CSS fallback (docs/browser.md): a linked sheet's text goes in `css`
 * `link` parts of at most LINK_CSS_PART characters (UTF-8 is at most 3 bytes a character:
 * 96 KiB, under MAX_EVENT). A sheet over LINK_CSS_MAX characters is not sent (at most 3 MiB of
 * UTF-8, under the proxy's default 5 MiB rewrite limit; all of Bootstrap 5 is 230 KB), nor
 * anything once a recording has sent LINK_CSS_PAGE_MAX characters in all. */
const LINK_CSS_PART = 32 * 1024;
const LINK_CSS_MAX = 1024 * 1024;
const LINK_CSS_PAGE_MAX = 4 * 1024 * 1024;

/** A url(...) in CSS text, its address in group 1, 2 or 3 (double-, single- or unquoted): the
 * viewer signs each (viewer/urls.js), the snippet makes an imported sheet's ones absolute
 * (visitor/sheets.js). */
const URL_RE = /url\(\s*(?:"((?:[^"\\]|\\[\s\S])*)"|'((?:[^'\\]|\\[\s\S])*)'|([^)"'\s]*))\s*\)/gi;
function cssUnescape(s) {
  return s.replace(/\\([0-9a-fA-F]{1,6}\s?|[\s\S])/g, (m, g) => {
    if (/^[0-9a-fA-F]/.test(g)) {
      const cp = parseInt(g, 16);
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : "\ufffd";
    }
    return g === "\n" ? "" : g;
  });
}

function cssUrlOf(a, b, c) {
  return cssUnescape(a !== undefined ? a : b !== undefined ? b : c || "");
}

/** A CSS string token holding `u`. */
function cssString(u) {
  return '"' + String(u).replace(/["\\\n\r\f]/g, (c) => "\\" + c.charCodeAt(0).toString(16) + " ") + '"';
}
