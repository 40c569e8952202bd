"""Rendezvous (highest random weight) hashing: which gateway a session meets on.

Every party computes the same order from the session id alone, so a visitor and its agents
meet on one gateway with no coordination; when a gateway leaves, only its own sessions
move, each to the next gateway in its own order, and the rest stay put.
"""

from __future__ import annotations

import hashlib


def weight(key: str, node: str) -> int:
    """64-bit, big-endian blake2b of key NUL node: stable across processes and versions."""
    digest = hashlib.blake2b(f"{key}\x00{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def order(key: str, nodes: list[str]) -> list[str]:
    """Nodes by weight, highest first (ties by name), each once: try them in this order."""
    return sorted(set(nodes), key=lambda node: (-weight(key, node), node))
