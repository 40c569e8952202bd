"""Where Debian's Chromium is and how to start it on a closed network (bench and tests).

Playwright's own browser download does not work here, so both the browser bench and the
browser tests launch the system binary through `executable_path`, with flags that stop
Chromium's background fetches to Google's hosts (refused here, many at a time).
"""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """COBROWSE_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH; None if absent."""
    for cand in (
        os.environ.get("COBROWSE_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
    ):
        if cand and os.path.exists(cand):
            return cand
    return None
