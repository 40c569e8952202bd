"""`python -m proxy`: the asset proxy's command line.

Only `rewrite` works today: it runs the CSS rewriter on a local file or stdin, signing URLs
with the configured keys. The HTTP service (`serve`) and fetching are not built yet.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

from router.tokens import Keyring

from . import signing
from .config import ConfigError, ProxyConfig
from .rewrite import rewrite

EXIT_USAGE = 2


def _read(source: str, limit: int) -> str:
    if source == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(source, "rb") as f:
            data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"input is larger than COBROWSE_PROXY_MAX_CSS_BYTES ({limit} bytes)")
    return data.decode("utf-8-sig", errors="replace")


def _rewrite(args: argparse.Namespace) -> int:
    try:
        config = ProxyConfig.from_env()
    except ConfigError as err:
        print(f"error: bad configuration: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not args.session or len(args.session) > signing.MAX_SESSION_ID_LENGTH:
        print(
            f"error: --session must be 1 to {signing.MAX_SESSION_ID_LENGTH} characters",
            file=sys.stderr,
        )
        return EXIT_USAGE
    source = args.source
    if source.lower().startswith(("http://", "https://")):
        print(
            "error: fetching a stylesheet by URL arrives with the proxy service; "
            "save it to a file and pass the file (with --base URL) instead",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        css = _read(source, config.max_css_bytes)
    except OSError as err:
        print(f"error: cannot read {source!r}: {err.strerror or err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"error: {source!r}: {err}", file=sys.stderr)
        return 1

    keyring = config.keyring
    if keyring is None:
        keyring = Keyring((("ephemeral", secrets.token_bytes(32)),))
        print(
            "note: COBROWSE_PROXY_KEYS is not set; signing with a random ephemeral key, "
            "so the URLs below only illustrate and will not verify anywhere",
            file=sys.stderr,
        )
    expires = int(time.time()) + config.url_ttl

    def sign(url: str) -> str:
        return config.public_url + signing.sign(keyring, url, args.session, expires)

    base = args.base
    if base is None:
        base = "file:///stdin" if source == "-" else Path(source).resolve().as_uri()
        print(
            f"note: no --base given; relative URLs resolve against {base}, "
            "which the proxy would refuse to fetch",
            file=sys.stderr,
        )
    result = rewrite(css, base, sign)
    sys.stdout.write(result.css)
    if result.css and not result.css.endswith("\n"):
        sys.stdout.write("\n")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    print(
        "error: the proxy HTTP service is not built yet; only `python -m proxy rewrite` works",
        file=sys.stderr,
    )
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m proxy",
        description=(
            "The co-browsing asset proxy. Settings come from COBROWSE_PROXY_* environment "
            "variables (see docs/proxy.md)."
        ),
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    rw = sub.add_parser(
        "rewrite",
        help="rewrite a stylesheet (:hover to .cb-hover, url() to signed proxy URLs)",
        description=(
            "Rewrite a local CSS file (or stdin) as the proxy would: :hover rules gain a "
            ".cb-hover copy (or, under :not(), are rewritten in place), and every url() and "
            "@import is resolved against --base and replaced by a signed "
            "COBROWSE_PROXY_PUBLIC_URL/v1/asset?... URL. The CSS goes to stdout, notes to "
            "stderr. Without COBROWSE_PROXY_KEYS a random ephemeral key is used."
        ),
    )
    rw.add_argument(
        "source",
        metavar="FILE_OR_URL",
        help="CSS file, or '-' for stdin (http(s) URLs need the proxy service, not built yet)",
    )
    rw.add_argument(
        "--base",
        metavar="URL",
        default=None,
        help="URL the stylesheet was served from; relative url()s resolve against it "
        "(default: a file:// URL of the input)",
    )
    rw.add_argument(
        "--session",
        metavar="SID",
        default="cli",
        help="session id the URLs are signed for (default: 'cli')",
    )
    rw.set_defaults(func=_rewrite)
    srv = sub.add_parser(
        "serve",
        help="serve the proxy over HTTP (not built yet)",
        description="The proxy HTTP service is not built yet; this command exits with 2.",
    )
    srv.set_defaults(func=_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
