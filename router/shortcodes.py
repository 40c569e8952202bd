"""Six-digit short codes a visitor reads out to an agent to join a session."""

from __future__ import annotations

import random
import re

_CODE = re.compile(r"[0-9]{6}")


def new_code(rng: random.SystemRandom | random.Random) -> str:
    """Uniform over 000000..999999; pass SystemRandom in production (codes are guessable
    by anyone who can predict the generator)."""
    return f"{rng.randrange(1_000_000):06d}"


def is_code(s: object) -> bool:
    """Exactly six ASCII digits: no whitespace, sign or Unicode digits that int() would take."""
    return isinstance(s, str) and s.isascii() and _CODE.fullmatch(s) is not None


def normalize_code(code: str) -> str:
    """What people type: '123 456' and '123-456' mean 123456."""
    return "".join(c for c in code if c not in " -\t")
