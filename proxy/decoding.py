"""Bounded Content-Encoding decoding of an origin's body, so a compression bomb cannot
blow up the proxy (issue 12, item 3).

Sans-I/O: `fetch` reads the raw (still encoded) bytes and feeds them here.

    decoder = BodyDecoder.for_header(response.headers.get("content-encoding"), max_bytes)
    for raw in chunks:
        body += decoder.feed(raw)   # raises Refused("too_large") past max_bytes

Why this is not left to httpx: its decoders inflate each received chunk in full before the
caller can look at the size, and gzip compresses zeros about 1000:1 per layer, so 797 bytes
of `Content-Encoding: gzip, gzip` became 384 MiB in one call. Here every `decompress` call
is given `max_length` = what is left of the limit plus one byte, so no step produces more
than the limit allows and the body is refused the moment it would pass it.

Only one coding is accepted, and only gzip (`x-gzip`) or deflate (`identity` is no coding):
the proxy asks for nothing else (`ACCEPT_ENCODING`), a legitimate origin never stacks
codings for a stylesheet or an image, and each extra layer multiplies the ratio by ~1000.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from proxy.address_policy import Refused

ACCEPT_ENCODING = "gzip, deflate"  # what fetch asks for; br/zstd are never decoded
_GZIP = "gzip"
_DEFLATE = "deflate"
_ALIASES = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": _DEFLATE}  # RFC 9110 8.4.1.3


def parse_codings(header: str | None) -> str | None:
    """The one coding of a Content-Encoding header (None for none/identity); refuses
    stacked codings and unknown ones with Refused("bad_encoding")."""
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > 1:
        raise Refused("bad_encoding", f"stacked content codings {header!r} refused")
    if not codings:
        return None
    if codings[0] not in _ALIASES:
        raise Refused("bad_encoding", f"content coding {codings[0]!r} refused")
    return _ALIASES[codings[0]]


@dataclass
class BodyDecoder:
    """Decodes one body under `max_bytes` of decoded output; `decoded` counts what it has
    produced so far (never more than `max_bytes` + 1)."""

    coding: str | None
    max_bytes: int
    decoded: int = 0
    _zlib: Any = field(default=None, repr=False)
    _head: bytearray | None = field(default=None, repr=False)  # deflate's first bytes

    @classmethod
    def for_header(cls, header: str | None, max_bytes: int) -> BodyDecoder:
        return cls(parse_codings(header), max_bytes)

    def __post_init__(self) -> None:
        if self.coding == _GZIP:
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self.coding == _DEFLATE:
            self._head = bytearray()  # zlib-wrapped or raw: told by the first 2 bytes

    def feed(self, raw: bytes) -> bytes:
        """The decoded bytes for the next raw chunk."""
        if self.coding is None:
            return self._count(raw)
        if self._head is not None:
            self._head += raw
            if len(self._head) < 2:
                return b""
            raw, self._head = bytes(self._head), None
            # RFC 9110 says zlib-wrapped, but some servers send raw deflate (httpx and
            # browsers accept both): a zlib header is CM=8 with a check sum divisible by 31.
            wrapped = raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            return self._inflate(raw)
        except zlib.error as err:
            raise Refused("bad_encoding", f"{self.coding} body does not decode: {err}") from None

    def finish(self) -> None:
        """The body ended: refuse a deflate body too short to hold anything."""
        if self._head:
            raise Refused("bad_encoding", "deflate body of one byte")

    def _inflate(self, raw: bytes) -> bytes:
        out = bytearray()
        data = raw
        while data:  # bounded: each pass either consumes input or refuses (below)
            # One byte more than is left: getting it means the body is over the limit.
            piece = self._zlib.decompress(data, self.max_bytes - self.decoded + 1)
            out += self._count(piece)
            data = self._zlib.unconsumed_tail
            if self._zlib.eof:
                break  # trailing bytes after the stream (unused_data) are ignored
        return bytes(out)

    def _count(self, piece: bytes) -> bytes:
        self.decoded += len(piece)
        if self.decoded > self.max_bytes:
            raise Refused("too_large", f"decoded body larger than {self.max_bytes} bytes")
        return piece
