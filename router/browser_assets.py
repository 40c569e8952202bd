"""The browser's JavaScript, assembled from plain files at start-up (no build step).

`/cobrowse.js` and `/embed.js` are each one script: the vendored msgpack codec, the shared
wire client and the role's own file, wrapped in one function scope. The wrapper hides
`define`, `exports` and `module`, so a page's AMD or CommonJS loader never picks up the
vendored UMD bundle, and nothing but the role's global (`Cobrowse`, `CobrowseViewer`)
leaks into the page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
VENDOR_MSGPACK = STATIC / "vendor" / "msgpack.min.js"

VIEWER_PARTS = (
    "viewer/state.js",
    "viewer/urls.js",
    "viewer/sheets.js",
    "viewer/sanitiser.js",
    "viewer/frames.js",
    "viewer/build.js",
    "viewer/apply.js",
    "viewer/actions.js",
    "viewer/geometry.js",
    "viewer/view.js",
    "viewer/control.js",
    "viewer/replayer.js",
)
"""The replica's parts, in order: `replayer()` and everything it calls (docs/browser.md)."""

BUNDLES = {
    "cobrowse.js": (
        "format.js",
        "wire.js",
        "visitor/config.js",
        "visitor/ids.js",
        "visitor/privacy.js",
        "visitor/sheets.js",
        "visitor/frames.js",
        "visitor/snapshot.js",
        "visitor/mutations.js",
        "visitor/inputs.js",
        "visitor/canvas.js",
        "visitor/recorder.js",
        "visitor/patches.js",
        "visitor/overlay.js",
        "visitor/consent.js",
        "visitor/control.js",
        "visitor/session.js",
    ),
    "embed.js": ("format.js", "wire.js", *VIEWER_PARTS, "viewer/status.js", "viewer/embed.js"),
    # The replay page plays stored events into the same replayer; it needs no wire client.
    "replay.js": ("format.js", *VIEWER_PARTS, "viewer/replay.js"),
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    etag: str
    content_type: str


def _wrap(parts: list[tuple[str, str]]) -> str:
    vendor = VENDOR_MSGPACK.read_text()
    out = [
        "/* cobrowse: plain JavaScript, assembled by router/browser_assets.py */",
        "(function () {",
        "'use strict';",
        "var MessagePack = (function (define, exports, module) {",
        "  var holder = {};",
        "  (function () {",
        vendor,
        "  }).call(holder);",
        "  return holder.MessagePack;",
        "})(undefined, undefined, undefined);",
    ]
    for name, text in parts:
        out.append(f"/* ---- {name} ---- */")
        out.append(text)
    out.append("})();")
    return "\n".join(out) + "\n"


def assemble(name: str, replace: dict[str, str] | None = None, extra: str = "") -> str:
    """The text of bundle `name`, with the files named in `replace` swapped for the given
    text and `extra` appended inside the scope: tests stub the wire client or expose
    internals this way without repeating the bundle's file list."""
    replace = replace or {}
    parts = [(f, replace[f] if f in replace else (STATIC / f).read_text()) for f in BUNDLES[name]]
    if extra:
        parts.append(("extra", extra))
    return _wrap(parts)


@cache
def bundle(name: str) -> Asset:
    """The assembled script `name` ("cobrowse.js" or "embed.js"), built once per process."""
    body = assemble(name).encode()
    return Asset(
        body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', "text/javascript; charset=utf-8"
    )


TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


@cache
def page(name: str) -> Asset:
    """A static file from router/static (the embed page, the demo page and its CSS and JS),
    read once per process."""
    body = (STATIC / name).read_bytes()
    return Asset(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', TYPES[Path(name).suffix])
