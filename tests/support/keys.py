"""Token keys and an admin key for one test run, and helpers to mint tokens and session ids."""

from __future__ import annotations

import dataclasses
import secrets
import time

from gateway import tokens
from router.launcher import DevKeys

KEYS = "test-1:" + secrets.token_urlsafe(32) + ",test-0:" + secrets.token_urlsafe(32)
KEYRING = tokens.Keyring.parse(KEYS)
ADMIN_KEY = "admin-" + secrets.token_urlsafe(16)
TEST_KEYS = dataclasses.replace(DevKeys.fresh(), token_keys=KEYS, admin_key=ADMIN_KEY)


def mint(sid: str, role: str, ttl: float = 3600, keyring: tokens.Keyring = KEYRING) -> str:
    return tokens.mint(keyring, sid=sid, role=role, now=time.time(), ttl=ttl)


def new_sid() -> str:
    return "s" + secrets.token_hex(8)
