"""`python -m proxy`: the asset proxy's command line.

`rewrite` runs the CSS rewriter on a local file or stdin, signing URLs with the configured
keys; `serve` runs the HTTP service (proxy.service) until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from functools import partial
from pathlib import Path

import structlog
import trio

from gateway.settings import HttpTimeouts
from gateway.tokens import Keyring

from . import signing
from .address_policy import Refused
from .config import ConfigError, ProxyConfig
from .fetch import fetch
from .rewrite import rewrite

log = structlog.get_logger("proxy")

EXIT_USAGE = 2
PROG = "python -m proxy"


def _read(source: str, limit: int) -> str:
    if source == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(source, "rb") as f:
            data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"input is larger than COBROWSE_PROXY_MAX_CSS_BYTES ({limit} bytes)")
    return data.decode("utf-8-sig", errors="replace")


def _config() -> ProxyConfig | None:
    """The settings from the environment; None after saying every bad value on stderr."""
    try:
        return ProxyConfig.from_env()
    except ConfigError as err:
        sys.stderr.write(err.report(PROG))
        return None


def _rewrite(args: argparse.Namespace) -> int:
    config = _config()
    if config is None:
        return EXIT_USAGE
    if not args.session or len(args.session) > signing.MAX_SESSION_ID_LENGTH:
        print(
            f"error: --session must be 1 to {signing.MAX_SESSION_ID_LENGTH} characters",
            file=sys.stderr,
        )
        return EXIT_USAGE
    source = args.source
    fetched_from: str | None = None
    try:
        if source.lower().startswith(("http://", "https://")):
            # The same fetch as the service: address policy, limits, redirects re-checked.
            result = trio.run(
                partial(
                    fetch,
                    source,
                    allow=config.allow,
                    max_bytes=config.max_css_bytes,
                    timeout=config.timeout,
                    max_redirects=config.max_redirects,
                )
            )
            css = result.body.decode("utf-8-sig", errors="replace")
            fetched_from = result.url
        else:
            css = _read(source, config.max_css_bytes)
    except Refused as err:
        print(f"error: {source!r} refused: {err.code}: {err.message}", file=sys.stderr)
        return 1
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

    base = args.base or fetched_from
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


async def _serve_until_signal(app, host: str, port: int, timeouts: HttpTimeouts) -> None:
    import signal

    from hypercorn.trio import serve as hypercorn_serve

    from gateway.request_timeouts import BodyTimeout, hypercorn_config

    app = BodyTimeout(app, timeouts.body)
    hc = hypercorn_config(host, port, timeouts)
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

        async def watch() -> None:
            async for _signum in signals:
                stop.set()
                return

        async def serving(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
            await hypercorn_serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)

        async with trio.open_nursery() as n:
            n.start_soon(watch)
            urls = await n.start(serving)
            log.info("proxy_listening", urls=urls)
            await stop.wait()
            n.cancel_scope.deadline = trio.current_time() + 6
        log.info("proxy_stopped")


def _serve(args: argparse.Namespace) -> int:
    from gateway import logs

    from .service import create_app

    config = _config()
    if config is None:
        return EXIT_USAGE
    logs.configure("proxy", config.log)
    if not 0 <= args.port <= 65535:
        print("error: --port must be 0..65535", file=sys.stderr)
        return EXIT_USAGE
    if config.keyring is None:
        log.warning(
            "ephemeral_signing_key",
            note="COBROWSE_PROXY_KEYS is not set: only URLs signed by this process verify",
        )
    trio.run(_serve_until_signal, create_app(config), args.host, args.port, config.http)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
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
        help="CSS file, '-' for stdin, or an http(s) URL (fetched under the address policy)",
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
        help="serve the proxy over HTTP until SIGINT/SIGTERM",
        description=(
            "Serve GET /v1/stylesheet, GET /v1/asset, POST /v1/rewrite and GET /healthz "
            "with Hypercorn (trio) until SIGINT or SIGTERM."
        ),
    )
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8090, help="port to bind (default 8090)")
    srv.set_defaults(func=_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
