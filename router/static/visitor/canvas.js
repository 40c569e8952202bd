/* visitor/canvas.js: canvas frames as `canvas` events: at most 2 images a second per canvas,
 * only when the picture changed, scaled down until one fits CANVAS_MAX (120 KiB). */

function allCanvases(st) {
  const list = Array.from(document.getElementsByTagName("canvas"));
  for (const r of liveRoots(st)) list.push(...r.querySelectorAll("canvas"));
  return list;
}
function grabCanvases(st) {
  for (const cv of allCanvases(st)) {
    try { grabCanvas(st, cv); } catch (e) { /* tainted (SecurityError) or lost context: skip */ }
  }
}
function shrink(cv, f) {
  const off = document.createElement("canvas");
  off.width = Math.max(1, Math.round(cv.width * f));
  off.height = Math.max(1, Math.round(cv.height * f));
  off.getContext("2d").drawImage(cv, 0, 0, off.width, off.height);
  return off;
}
// toBlob encodes off the main thread (toDataURL would stall the page every 500 ms).
function grabCanvas(st, cv) {
  const id = idOf(cv);
  if (id === undefined || st.grabbing.has(cv) || !cv.width || !cv.height || !inTree(cv) || isPrivate(cv)) return;
  const last = st.canvasLast.get(cv);
  const now = performance.now();
  if (last && now - last.t < 450) return; // at most 2 images/s per canvas
  const mime = webpOk() ? "image/webp" : "image/png";
  const w = cv.width, h = cv.height;
  const gen = st.canvasLast; // a snapshot in between starts over
  // A canvas that was too big before starts at the scale that fitted, not at full size.
  let f = st.scales.get(cv) || 1;
  const src = f < 1 ? shrink(cv, f) : cv;
  st.grabbing.add(cv);
  encodeCanvas(src, mime, 0.8).then(async (bytes) => {
    if (!st.running || !bytes || gen !== st.canvasLast) return;
    const hash = hashBytes(bytes);
    const prev = st.canvasLast.get(cv);
    if (prev ? prev.h === hash : hash === blankHash(src.width, src.height, mime)) return;
    st.canvasLast.set(cv, { h: hash, t: now });
    // Too big for one event: scale down into an offscreen canvas.
    for (let i = 0; bytes.length > CANVAS_MAX && i < 4; i++) {
      f *= Math.min(0.9, Math.sqrt(CANVAS_MAX / bytes.length) * 0.9);
      bytes = await encodeCanvas(shrink(cv, f), mime, 0.7);
      if (!bytes) return;
      st.scales.set(cv, f);
    }
    if (bytes.length > CANVAS_MAX || !st.running) return;
    send(st, "canvas", { id, d: bytes, mime: sniffMime(bytes), w, h });
  }).catch(() => { /* lost context, tainted: skip */ }).finally(() => st.grabbing.delete(cv));
}

function hashBytes(b) {
  // FNV-1a over the bytes, plus the length: enough to tell frames apart.
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) + ":" + b.length;
}
function encodeCanvas(canvas, mime, quality) {
  return new Promise((resolve, reject) => {
    try {
      canvas.toBlob((blob) => {
        if (!blob) return resolve(null);
        blob.arrayBuffer().then((buf) => resolve(new Uint8Array(buf)), reject);
      }, mime, quality);
    } catch (e) {
      reject(e); // SecurityError: a tainted canvas
    }
  });
}
// What the encoder really produced (a browser without webp falls back to png).
function sniffMime(b) {
  return b[0] === 0x52 && b[1] === 0x49 && b[8] === 0x57 && b[9] === 0x45 ? "image/webp" : "image/png";
}
function dataBytes(url) {
  const bin = atob(url.slice(url.indexOf(",") + 1));
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}
let webp = null;
function webpOk() {
  if (webp === null) {
    const c = document.createElement("canvas");
    c.width = c.height = 1;
    webp = c.toDataURL("image/webp").startsWith("data:image/webp");
  }
  return webp;
}
// A never-drawn canvas (or WebGL without preserveDrawingBuffer) reads back blank: the
// viewer's canvas is blank already, so a blank first image is not sent.
const blanks = new Map();
function blankHash(w, h, mime) {
  const k = w + "x" + h + mime;
  let v = blanks.get(k);
  if (v === undefined) {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    v = hashBytes(dataBytes(c.toDataURL(mime, 0.8)));
    if (blanks.size > 32) blanks.clear();
    blanks.set(k, v);
  }
  return v;
}
