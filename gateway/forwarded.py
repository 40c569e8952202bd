"""The client's address behind trusted reverse proxies (X-Forwarded-For), for rate limits.

Shared by the router's HTTP API and the gateways' handshake admission: behind an Ingress
every TCP peer is a controller pod, so per-address limits must read the header, but only
as many hops from the right as there are proxies we trust; the rest a client can forge.
"""

from __future__ import annotations


def forwarded_client(forwarded_for: list[str], peer: str, trusted_hops: int) -> str:
    """The client address behind `trusted_hops` reverse proxies that each append the address
    they received from to X-Forwarded-For; the peer itself with no trusted proxy. A header
    shorter than the hops (a client talking to us directly) falls back to its first entry."""
    if trusted_hops <= 0:
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    if not hops:
        return peer
    return hops[-trusted_hops] if len(hops) >= trusted_hops else hops[0]
