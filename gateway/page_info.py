"""The page a session's visitor is on (its URL and title), as the agents' console lists it.

The visitor's snippet sends a `nav` event `{"url", "title"}` once per page load, before that
page's snapshot (docs/browser.md). The gateway keeps the latest `nav` of a visitor connection
and writes it into the session metadata together with the snapshot pointer, a write that
happens once per page load anyway: listing sessions with their pages costs no KV write of its
own. The payload is the visitor's word, so it is typed and bounded here (sans-I/O), and the
console shows it as text only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

MAX_URL = 2048  # the longest URL that every browser and common server accepts
MAX_TITLE = 300  # far beyond what a tab or a list row shows


class PageInfo(NamedTuple):
    url: str
    title: str

    @classmethod
    def from_stored(cls, raw: Any) -> PageInfo | None:
        """From the metadata's `[url, title]`; anything else is no page."""
        if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw):
            return cls(raw[0][:MAX_URL], raw[1][:MAX_TITLE])
        return None


def from_nav(payload: Any) -> PageInfo | None:
    """A `nav` payload's page, cut to the bounds; None when it has no string `url`."""
    if not isinstance(payload, dict):
        return None
    url = payload.get("url")
    title = payload.get("title")
    if not isinstance(url, str):
        return None
    return PageInfo(url[:MAX_URL], title[:MAX_TITLE] if isinstance(title, str) else "")


def latest_nav(events: Iterable[Any]) -> PageInfo | None:
    """The page of the last valid `nav` among a frame's events (`.kind`, `.payload`)."""
    found = None
    for ev in events:
        if ev.kind == "nav":
            found = from_nav(ev.payload) or found
    return found
