/* viewer/state.js: the replica's state, one named object that every viewer part takes as
 * its first argument (`rs`) instead of sharing closure variables. `replayer()` creates one
 * per iframe; nothing else holds replica state.
 *
 * @typedef {Object} ReplicaState
 * @property {HTMLIFrameElement} iframe  the sandboxed frame the replica lives in
 * @property {Document} edoc     the embed page's document (the overlay lives there)
 * @property {?HTMLElement} host the iframe's parent: the overlay's container
 * @property {Function} sign     async (urls, kind) -> signed URLs or nulls (the proxy)
 * @property {Function} rewriteCss async (css, base) -> the proxy's rewritten CSS
 * @property {Function} onAgentEvent (kind, payload): the agent's pointer/click/highlight
 * @property {Function} onInfo   ({url, title}): the visitor's page changed
 * @property {Function} onView   ({scale, fit, follow, where, offset}): the view was laid out (view.js)
 * @property {boolean} interactive  the overlay takes the agent's pointer
 * @property {Map} ids           visitor id -> node
 * @property {WeakMap} rev       node -> visitor id
 * @property {WeakMap} rawAttrs  element -> Map(name -> the visitor's value)
 * @property {WeakMap} attrTokens element -> Map(name -> n): a newer value wins over an older async one
 * @property {WeakMap} styleState <style> -> sheet state (viewer/sheets.js)
 * @property {WeakMap} rawText   text node inside <style> -> the visitor's CSS text
 * @property {Map} sheets        constructed sheet id -> {sheet, state}
 * @property {WeakMap} adoptedBy Document/ShadowRoot -> the visitor's adopted sheets there
 * @property {Set<string>} linkAsked  "id\nhref" of <link>s asked for (css-need) this snapshot
 * @property {Map} linkParts     link id -> {n, parts, chars}: a fallback sheet arriving in parts
 * @property {Map} linkSheets    <link> -> {sheet, root, href, media}: its fallback sheet
 * @property {?MutationObserver} linkObserver  drops fallbacks of removed or changed links
 * @property {Map} desiredScroll element -> [x, y]
 * @property {{el: HTMLIFrameElement, doc: Object}[]} frames  mirrored frames to fill once connected (frames.js)
 * @property {Set<HTMLIFrameElement>} filled  mirrored frames filled (at most MAX_FRAMES connected)
 * @property {WeakMap} canvasSeq canvas -> number of the latest image
 * @property {Map} canvasRules   canvas id -> {rule, url}: its image as a background
 * @property {Map} signCache     kind \n url -> {p: Promise, until}
 * @property {{stylesheet: Array, asset: Array}} pendingSign  URLs waiting for the next batch
 * @property {boolean} signScheduled  a flush is queued
 * @property {number} gen        bumped by every snapshot: late async results are dropped
 * @property {?Document} doc     the replica's document (null before the first snapshot)
 * @property {?Window} win       the replica's window
 * @property {?string} base      the visitor's base URL (http/https only)
 * @property {?CSSStyleSheet} viewerSheet  the viewer's own adopted sheet (VIEWER_CSS)
 * @property {number[]} winScroll  the visitor's window scroll [x, y]
 * @property {number[]} viewport   the visitor's viewport [w, h]
 * @property {number} scale      replica pixels -> embed page pixels
 * @property {boolean} fit       scale to fit the stage; false: 100 %, the stage scrolls
 * @property {boolean} follow    the replica scrolls with the visitor
 * @property {number[]} agentScroll  where the agent scrolled the replica [x, y] when not following
 * @property {number[]} offset   the visitor's viewport minus the replica's, in replica px (geometry.js)
 * @property {?{x: number, y: number}} visitorPointer  the visitor's latest pointer
 * @property {?HTMLElement} vpFrame  the outline of the visitor's viewport (overlay)
 * @property {?HTMLElement} vpLabel  its label when apart from the agent's view
 * @property {Map<string, Element[]>} states  state class (STATE_CLASSES) -> the elements carrying it
 * @property {Set} highlighted   ids the agent highlighted
 * @property {boolean} highlightMode  a plain click highlights instead of clicking
 * @property {boolean} inert     the session ended: greyed out, the agent's pointer ignored
 * @property {?{n: number, parts: Uint8Array[]}} snapParts  a snapshot arriving in parts
 * @property {boolean} destroyed
 * @property {{url: ?string, title: ?string}} info
 * @property {Object<string, number>} stats  counters returned by stats()
 * @property {?Document} parseDoc  an inert document for parsing CSS
 * @property {boolean} relayoutPending  a scroll/highlight pass is queued for the next frame
 * @property {?HTMLElement} overlay  the layer above the iframe (pointer dot, ripples)
 * @property {?HTMLElement} glass    takes the agent's pointer over the replica
 * @property {?HTMLElement} dot      the visitor's pointer
 * @property {?ResizeObserver} resizeObs
 * @property {{lastSent: number, timer: *, latest: ?{x: number, y: number}}} pointer  the agent's pointer, throttled
 */

/** @returns {ReplicaState} */
function newReplicaState(iframe, opts) {
  return {
    iframe,
    edoc: iframe.ownerDocument,
    host: iframe.parentElement,
    sign: opts.sign || (async (urls) => urls.map(() => null)),
    rewriteCss: opts.rewriteCss || (async () => ""),
    onAgentEvent: opts.onAgentEvent || (() => {}),
    onInfo: opts.onInfo || (() => {}),
    onView: opts.onView || (() => {}),
    interactive: opts.interactive !== false,
    ids: new Map(),
    rev: new WeakMap(),
    rawAttrs: new WeakMap(),
    attrTokens: new WeakMap(),
    styleState: new WeakMap(),
    rawText: new WeakMap(),
    sheets: new Map(),
    adoptedBy: new WeakMap(),
    linkAsked: new Set(),
    linkParts: new Map(),
    linkSheets: new Map(),
    linkObserver: null,
    desiredScroll: new Map(),
    frames: [],
    filled: new Set(),
    canvasSeq: new WeakMap(),
    canvasRules: new Map(),
    signCache: new Map(),
    pendingSign: {stylesheet: [], asset: []},
    signScheduled: false,
    gen: 0,
    doc: null,
    win: null,
    base: null,
    viewerSheet: null,
    winScroll: [0, 0],
    viewport: [iframe.clientWidth || 1024, iframe.clientHeight || 768],
    scale: 1,
    fit: opts.fit !== false,
    follow: opts.follow !== false,
    agentScroll: [0, 0],
    offset: [0, 0],
    visitorPointer: null,
    vpFrame: null,
    vpLabel: null,
    states: new Map(),
    highlighted: new Set(),
    highlightMode: false,
    inert: false,
    snapParts: null,
    destroyed: false,
    info: {url: null, title: null},
    stats: {events: 0, skipped: 0, errors: 0, signFailed: 0, rewriteFailed: 0, snapshots: 0, unknown: 0,
      cssNeed: 0, cssUnavailable: 0, cssFallback: 0},
    parseDoc: null,
    relayoutPending: false,
    overlay: null,
    glass: null,
    dot: null,
    resizeObs: null,
    pointer: {lastSent: 0, timer: null, latest: null},
  };
}

/** An inert document of the embed page's, for parsing CSS the way the browser does. */
function parseDocOf(rs) {
  if (!rs.parseDoc) rs.parseDoc = rs.edoc.implementation.createHTMLDocument("");
  return rs.parseDoc;
}
