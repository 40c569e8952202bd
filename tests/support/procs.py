"""Helpers for tests that start plain processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def started(cmd: list[str]) -> subprocess.Popen:
    """Popen, returned once the child's command line is readable.

    Popen returns when exec closed the child's close-on-exec pipe, a few microseconds before
    the kernel sets the new command line: read in that window /proc/<pid>/cmdline is empty
    (seen once in 300 tries), and a check of a process by its command line misses it."""
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 5
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, f"pid {proc.pid} never showed its command line"
        time.sleep(0.001)
    return proc
