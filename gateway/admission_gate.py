"""Admission at the WebSocket handshake: the trio shell around gateway.admission.

A client names its session in the URL (`?sid=...`), and a resuming client adds its resume
token (`&rt=...`), because a handshake must be decided before any frame is read. A valid,
unexpired resume token for a session that is still live goes through the resume lane; any
other connection is a new session, limited per client address (the `limits` package) and by
the new-session bucket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import trio

from gateway import tokens
from gateway.admission import Admission, Decision, retry_after_header
from gateway.forwarded import forwarded_client

from . import metrics
from .address_limit import LocalAddressLimit, SharedAddressLimit
from .codec import SESSION_ID_RE, Close, ProtocolError
from .session_store import SessionMeta


@dataclass(frozen=True)
class AdmissionSettings:
    new_rate: float = 50.0  # new sessions per second per gateway process (worker)
    new_burst: float = 100.0
    resume_rate: float = 500.0  # resumes per second per process: the drain lane
    resume_burst: float = 2000.0
    new_per_address: str = "120/minute"  # new sessions per client address and gateway
    forwarded_hops: int = 0  # trusted reverse proxies in front (X-Forwarded-For hops)


def handshake_params(path: str) -> tuple[str | None, str | None]:
    q = parse_qs(urlsplit(path).query)
    sid = (q.get("sid") or [None])[0]
    rt = (q.get("rt") or [None])[0]
    if sid is not None and not SESSION_ID_RE.fullmatch(sid):
        sid = None
    if rt is not None and len(rt) > 2048:
        rt = None
    return sid, rt


def check_handshake_sid(url_sid: str | None, hello_sid: str) -> None:
    """A hello must be for the session its handshake URL named. The URL's `sid` chose the
    admission lane (a resume token is checked against it), so a hello for another session
    would ride a lane it was not admitted to, past the per-address limit of new sessions."""
    if url_sid is not None and url_sid != hello_sid:
        raise ProtocolError(
            "sid_mismatch", "hello names another session than the URL's sid", Close.PROTOCOL
        )


class AdmissionGate:
    def __init__(
        self,
        settings: AdmissionSettings,
        keyring: tokens.Keyring,
        load_meta: Callable[[str], Awaitable[SessionMeta | None]],
        per_address: LocalAddressLimit | SharedAddressLimit | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.load_meta = load_meta  # the session's metadata (SessionBucket.load)
        self.policy = Admission(
            new_rate=settings.new_rate,
            new_burst=settings.new_burst,
            resume_rate=settings.resume_rate,
            resume_burst=settings.resume_burst,
            now=time.monotonic(),
        )
        self.per_address = per_address or LocalAddressLimit(settings.new_per_address)

    async def _is_resume(self, sid: str | None, rt: str | None) -> bool:
        if sid is None or rt is None:
            return False
        try:
            tokens.verify(self.keyring, rt, sid=sid, role="resume", now=time.time())
        except tokens.TokenError:
            return False
        try:
            with trio.fail_after(2):
                meta = await self.load_meta(sid)
        except Exception:
            # KV unreachable (a leader election): the token is valid, so let the resume
            # through; the hello that follows checks the session again.
            return True
        return meta is not None and not meta.ended

    async def check(self, path: str, address: str, draining: bool) -> Decision:
        sid, rt = handshake_params(path)
        resume = False if draining else await self._is_resume(sid, rt)
        if not resume and not draining:
            verdict = await self.per_address.hit(address)
            if not verdict.admit:
                decision = Decision(
                    admit=False,
                    lane="rejected",
                    status=429,
                    retry_after=verdict.retry_after,
                    reason="too many new sessions from this address",
                )
                metrics.ADMISSION.labels(lane="address_limit").inc()
                return decision
        decision = self.policy.decide(resume=resume, now=time.monotonic(), draining=draining)
        metrics.ADMISSION.labels(lane=decision.lane).inc()
        return decision


def client_address(forwarded_for: list[str], peer: str, trusted_hops: int) -> str:
    """The visitor's address for the per-address limit, not the Ingress controller's:
    `forwarded_for` holds the values of the request's X-Forwarded-For headers."""
    if trusted_hops <= 0:
        return peer
    return forwarded_client(forwarded_for, peer, trusted_hops)


def wants_close_refusal(path: str) -> bool:
    return parse_qs(urlsplit(path).query).get("refusal") == ["close"]


def refusal_reason(decision: Decision) -> str:
    """`<code>: retry_after=<s>`: what a browser gets instead of the HTTP status it cannot read."""
    code = "draining" if decision.status == 503 else "rate_limited"
    return f"{code}: retry_after={retry_after_header(decision.retry_after)}"


def rejection(decision: Decision) -> tuple[int, list[tuple[str, str]], bytes]:
    code = "draining" if decision.status == 503 else "rate_limited"
    body = json.dumps({"error": {"code": code, "message": decision.reason}}).encode()
    headers = [
        ("Retry-After", retry_after_header(decision.retry_after)),
        ("Content-Type", "application/json"),
    ]
    return decision.status, headers, body
