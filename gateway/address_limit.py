"""The per-address limit of new sessions (`--new-per-address`, default 120/minute), one count
per gateway however many worker processes it has.

A gateway of N workers (`--workers N`) shares one port, and the kernel spreads one address's
connections over the workers by the hash of its source port, so a count kept in each worker
would let an address through N times (240 handshakes a minute under `120/minute` with 2
workers). The supervisor therefore keeps the one count (`AddressLimit`) and answers its
workers over a Unix socket in the directory it already shares with them
(`AddressLimitServer`, `SharedAddressLimit`): one request line, one answer line, JSON. A
gateway started with `--workers 1` keeps the count in its own process.

A worker that cannot reach its supervisor within `ASK_TIMEOUT` counts in its own process
for that handshake (logged, and counted in `cobrowse_gateway_admission_total{lane=
"address_limit_local"}`): admission must not stall on the supervisor, and the limit then
holds at most N times over, as before.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import limits
import structlog
import trio
from limits.strategies import MovingWindowRateLimiter

from . import metrics
from .limits_storage import SweptMemoryStorage

log = structlog.get_logger("gateway.address_limit")

ASK_TIMEOUT = 0.25  # seconds a worker waits for its supervisor before counting locally
MAX_LINE = 1024  # an address (IPv6 with a zone at most ~60 characters) in JSON, with room
SOCKET_NAME = "address-limit.sock"


@dataclass(frozen=True)
class AddressVerdict:
    admit: bool
    retry_after: float = 0.0  # seconds until the address may try again (when refused)


class AddressLimit:
    """One moving-window count of new sessions per client address (the `limits` package)."""

    def __init__(self, limit: str) -> None:
        self.limit = limits.parse(limit)
        self._limiter = MovingWindowRateLimiter(SweptMemoryStorage())

    def hit(self, address: str) -> AddressVerdict:
        if self._limiter.hit(self.limit, "new", address):
            return AddressVerdict(True)
        stats = self._limiter.get_window_stats(self.limit, "new", address)
        return AddressVerdict(False, max(1.0, stats.reset_time - time.time()))


def encode_verdict(v: AddressVerdict) -> bytes:
    return json.dumps({"admit": v.admit, "retry_after": v.retry_after}).encode() + b"\n"


def decode_verdict(line: bytes) -> AddressVerdict:
    m = json.loads(line)
    if not isinstance(m, dict) or type(m.get("admit")) is not bool:
        raise ValueError(f"not a verdict: {line[:100]!r}")
    return AddressVerdict(m["admit"], float(m.get("retry_after", 0.0)))


def socket_path(shared_dir: str | Path) -> Path:
    return Path(shared_dir) / SOCKET_NAME


class _Lines:
    """Newline-delimited messages of at most MAX_LINE bytes from a trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def next(self) -> bytes | None:
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise ValueError("line too long")
            data = await self.stream.receive_some(4096)
            if not data:
                return None
            self.buf += data
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return line


class AddressLimitServer:
    """The supervisor's side: the one count, answered to every worker that asks."""

    def __init__(self, limit: str, path: Path) -> None:
        self.count = AddressLimit(limit)
        self.path = path

    async def serve(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        self.path.unlink(missing_ok=True)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        sock.listen(64)
        listener = trio.SocketListener(sock)
        async with listener:
            task_status.started()
            await trio.serve_listeners(self._answer, [listener])

    async def _answer(self, stream: trio.SocketStream) -> None:
        lines = _Lines(stream)
        async with stream:
            try:
                while (line := await lines.next()) is not None:
                    address = json.loads(line)
                    if not isinstance(address, str):
                        raise ValueError("not an address")
                    await stream.send_all(encode_verdict(self.count.hit(address)))
            except (ValueError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.warning("address_limit_bad_request", error=repr(exc))


class SharedAddressLimit:
    """A worker's side: asks the supervisor (one request at a time over one connection,
    opened on first use and again after a failure); counts locally when it cannot."""

    def __init__(self, limit: str, path: Path) -> None:
        self.path = path
        self.local = AddressLimit(limit)
        self._lock = trio.Lock()
        self._stream: trio.SocketStream | None = None
        self._lines: _Lines | None = None

    async def hit(self, address: str) -> AddressVerdict:
        async with self._lock:
            with trio.move_on_after(ASK_TIMEOUT):
                try:
                    return await self._ask(address)
                except (OSError, ValueError, trio.BrokenResourceError) as exc:
                    log.warning("address_limit_unreachable", error=repr(exc))
            await self._reset()
        metrics.ADMISSION.labels(lane="address_limit_local").inc()
        return self.local.hit(address)

    async def _ask(self, address: str) -> AddressVerdict:
        if self._stream is None:
            self._stream = await trio.open_unix_socket(str(self.path))
            self._lines = _Lines(self._stream)
        assert self._lines is not None
        await self._stream.send_all(json.dumps(address).encode() + b"\n")
        line = await self._lines.next()
        if line is None:
            raise ValueError("the supervisor closed the connection")
        return decode_verdict(line)

    async def _reset(self) -> None:
        stream, self._stream, self._lines = self._stream, None, None
        if stream is not None:
            await trio.aclose_forcefully(stream)


def for_process(limit: str, worker_index: int | None) -> LocalAddressLimit | SharedAddressLimit:
    """A worker asks its supervisor (the directory they share is in
    PROMETHEUS_MULTIPROC_DIR, as for metrics); a gateway of one process counts itself."""
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if worker_index is None or not shared:
        return LocalAddressLimit(limit)
    return SharedAddressLimit(limit, socket_path(shared))


class LocalAddressLimit:
    """A gateway of one process: the count is its own."""

    def __init__(self, limit: str) -> None:
        self.local = AddressLimit(limit)

    async def hit(self, address: str) -> AddressVerdict:
        return self.local.hit(address)
