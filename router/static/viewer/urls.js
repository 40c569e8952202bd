/* viewer/urls.js: every URL the replica loads goes through the proxy under a signed URL
 * (G4). signUrl batches what a snapshot or a mutation batch needs into one request per
 * kind, caches answers until a minute before they expire; assetUrl decides what an
 * image-like URL becomes; srcset and url(...) in CSS text are signed the same way.
 */

const SIGN_BATCH = 200;  // URLs per /v1/sign request (the proxy takes at most 512)
const SIGN_BATCH_CHARS = 256 * 1024;  // and its body limit is 1 MiB
const SIGN_CACHE_MAX = 5000;  // a long session: forget the oldest 1000 beyond this

// Signed proxy URLs carry their expiry (`e=`, unix seconds): forget them a minute before.
function signedExpiry(u) {
  const m = /[?&]e=(\d+)/.exec(u);
  return m ? Number(m[1]) * 1000 - 60000 : Date.now() + 10 * 60000;
}

// HTML's "parse a srcset attribute", reduced to what we need: URL + descriptor text.
function parseSrcset(s) {
  const out = [];
  let i = 0;
  const n = s.length;
  const ws = (c) => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f";
  while (i < n) {
    while (i < n && (ws(s[i]) || s[i] === ",")) i++;
    if (i >= n) break;
    let j = i;
    while (j < n && !ws(s[j])) j++;
    let url = s.slice(i, j);
    i = j;
    let desc = "";
    if (url.endsWith(",")) {
      url = url.replace(/,+$/, "");
    } else {
      let depth = 0;
      let k = i;
      while (k < n) {
        const c = s[k];
        if (c === "(") depth++;
        else if (c === ")") depth = Math.max(0, depth - 1);
        else if (c === "," && depth === 0) break;
        k++;
      }
      desc = s.slice(i, k).trim();
      i = k + 1;
    }
    if (url) out.push({url, desc});
  }
  return out;
}

function signUrl(rs, url, kind) {
  const key = kind + "\n" + url;
  const hit = rs.signCache.get(key);
  if (hit && hit.until > Date.now()) return hit.p;
  if (rs.signCache.size > SIGN_CACHE_MAX) {  // Map keeps insertion order: the oldest go first
    let drop = 1000;
    for (const k of rs.signCache.keys()) { rs.signCache.delete(k); if (--drop <= 0) break; }
  }
  const entry = {until: Infinity, p: null};
  entry.p = new Promise((resolve) => rs.pendingSign[kind].push({url, resolve, entry, key}));
  rs.signCache.set(key, entry);
  if (!rs.signScheduled) {
    rs.signScheduled = true;
    queueMicrotask(() => flushSign(rs));  // one request for everything a snapshot or batch needs
  }
  return entry.p;
}

function flushSign(rs) {
  rs.signScheduled = false;
  for (const kind of ["stylesheet", "asset"]) {
    const all = rs.pendingSign[kind].splice(0);
    // Batches under the proxy's limits (count and body size).
    const batches = [];
    let cur = [];
    let chars = 0;
    for (const item of all) {
      if (cur.length && (cur.length >= SIGN_BATCH || chars + item.url.length > SIGN_BATCH_CHARS)) {
        batches.push(cur);
        cur = [];
        chars = 0;
      }
      cur.push(item);
      chars += item.url.length + 4;
    }
    if (cur.length) batches.push(cur);
    for (const batch of batches) {
      const failed = (b) => { rs.stats.signFailed++; rs.signCache.delete(b.key); b.resolve(null); };
      Promise.resolve().then(() => rs.sign(batch.map((b) => b.url), kind)).then((out) => {
        batch.forEach((b, j) => {
          const u = out && out[j];
          if (typeof u === "string" && /^https?:\/\//i.test(u.trim()) && !isScriptUrl(u)) {
            b.entry.until = signedExpiry(u);
            b.resolve(u.trim());
          } else {
            failed(b);
          }
        });
      }, () => { batch.forEach(failed); });
    }
  }
}

function resolveUrl(rs, v) {
  if (!rs.base) return null;
  try {
    const u = new URL(String(v).trim(), rs.base);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (e) {
    return null;
  }
}

// What an image-like URL becomes: a literal (data:image, fragment), a signed URL, or nothing.
function assetUrl(rs, v, kind) {
  const s = String(v).trim();
  if (!s || isScriptUrl(s)) return Promise.resolve(null);
  const k = urlKey(s);
  if (kind === "asset" && k.startsWith("data:image/")) return Promise.resolve(s);
  if (k.startsWith("data:") || k.startsWith("blob:")) return Promise.resolve(null);
  const abs = resolveUrl(rs, s);
  return abs ? signUrl(rs, abs, kind) : Promise.resolve(null);
}

function signSrcset(rs, v) {
  const cands = parseSrcset(String(v));
  return Promise.all(cands.map((c) => assetUrl(rs, c.url, "asset"))).then((urls) =>
    cands.map((c, i) => (urls[i] ? urls[i] + (c.desc ? " " + c.desc : "") : null)).filter(Boolean).join(", "));
}

function signCssUrls(rs, text) {
  const found = [];
  text.replace(URL_RE, (m, a, b, c) => { found.push(cssUrlOf(a, b, c)); return m; });
  return Promise.all(found.map((u) => (isFragment(u) ? Promise.resolve(null) : assetUrl(rs, u, "asset")))).then((signed) => {
    let i = 0;
    return text.replace(URL_RE, (m) => {
      const u = found[i];
      const s = signed[i++];
      if (isFragment(u)) return m;  // url(#clip): a reference inside the page
      return "url(" + cssString(s || "about:invalid") + ")";
    });
  });
}

function placeholderCssUrls(text) {
  return text.replace(URL_RE, (m, a, b, c) => (isFragment(cssUrlOf(a, b, c)) ? m : 'url("about:invalid")'));
}
