"""gateway/logs.py: one format per process, for structlog events and the standard library's
records (Hypercorn's) alike; enum values (close codes) as plain numbers (issue 16)."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import structlog
from wsproto.frame_protocol import CloseReason

from gateway import logs


def render(fmt: str, event: str, **fields) -> str:
    """An event through the pipeline `configure` installs for `fmt`, as the line it prints."""
    out = {"event": event, **fields}
    for processor in logs.processors(fmt):
        out = processor(None, "info", out)
    return out


def test_kv_lines_show_close_codes_as_numbers_with_names():
    line = render("kv", "connection_closed", code=CloseReason.GOING_AWAY, reason_name="GOING_AWAY")
    assert line.startswith("timestamp='") and " level='info' event='connection_closed'" in line
    assert "code=1001 reason_name='GOING_AWAY'" in line


def test_json_lines_are_objects_with_the_same_keys():
    got = json.loads(render("json", "connection_closed", code=CloseReason.GOING_AWAY))
    assert got["code"] == 1001 and got["event"] == "connection_closed"
    assert {"timestamp", "level"} <= set(got)


@pytest.mark.parametrize("fmt", ["json", "kv"])
def test_standard_library_records_share_the_format(fmt):
    record = logging.LogRecord(
        "hypercorn.error", logging.INFO, __file__, 1, "Running on %s", ("http://x",), None
    )
    line = logs.stdlib_formatter(fmt).format(record)
    if fmt == "json":
        got = json.loads(line)
        assert (got["event"], got["logger"], got["level"]) == (
            "Running on http://x",
            "hypercorn.error",
            "info",
        )
    else:
        assert line.startswith("timestamp='")
        assert "event='Running on http://x'" in line and "logger='hypercorn.error'" in line


class Writes:
    """A stream that keeps each write() call apart."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return len(s)

    def flush(self) -> None:
        pass


def test_each_line_is_one_write(monkeypatch):
    """A gateway's workers share one log file: a line written in two calls (print's line,
    then its newline) interleaved with another worker's there."""
    stream = Writes()
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        logs.configure("gateway", level="info")
        structlog.get_logger("t").info("one_line", n=1)
        logging.getLogger("t.stdlib").warning("another line")
    finally:
        monkeypatch.undo()
        logs.configure("gateway", level="info")
    assert len(stream.calls) == 2, stream.calls
    assert all(c.endswith("\n") and c.count("\n") == 1 for c in stream.calls), stream.calls
    assert "event='one_line'" in stream.calls[0] or '"one_line"' in stream.calls[0]


LAST_RESORT = """
import gc, threading
from gateway import logs
logs.configure("gateway")

def fails():
    raise ValueError("in a thread")

t = threading.Thread(target=fails, name="worker-7")
t.start()
t.join()

class Finalized:
    def __del__(self):
        raise RuntimeError("in a finalizer")

Finalized()
gc.collect()
raise KeyError("uncaught at the top")
"""


@pytest.mark.parametrize("fmt", ["json", "kv"])
def test_pythons_last_resort_reports_are_lines_in_the_format(fmt):
    """A crash, an exception in a `__del__` and one that ends a thread: Python writes each as
    a bare multi-line traceback; here each is one event line with its traceback inside."""
    import os
    import subprocess

    env = {**os.environ, "COBROWSE_LOG_FORMAT": fmt, "COBROWSE_LOG_LEVEL": "info"}
    proc = subprocess.run(
        [sys.executable, "-c", LAST_RESORT], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1, proc.stderr  # an uncaught exception still fails the process
    lines = proc.stderr.splitlines()
    assert len(lines) == 3, proc.stderr
    if fmt == "json":
        got = [json.loads(line) for line in lines]
        assert [(g["event"], g["level"]) for g in got] == [
            ("thread_exception", "error"),
            ("unraisable_exception", "error"),
            ("uncaught_exception", "critical"),
        ]
        assert got[0]["thread"] == "worker-7" and "ValueError: in a thread" in got[0]["exception"]
        assert "RuntimeError: in a finalizer" in got[1]["exception"]
        assert "Finalized" in got[1]["object"] and got[1]["message"]
        assert "KeyError: 'uncaught at the top'" in got[2]["exception"]
        assert all(g["component"] == "gateway" for g in got)
        assert logs.last_resort_lines(proc.stderr + "\n" + render(fmt, "other")) == lines
    else:
        assert all(line.startswith("timestamp='") for line in lines), proc.stderr
        assert logs.last_resort_lines(proc.stderr) == lines
        for event, text in (
            ("thread_exception", "ValueError: in a thread"),
            ("unraisable_exception", "RuntimeError: in a finalizer"),
            ("uncaught_exception", "uncaught at the top"),
        ):
            assert any(f"event='{event}'" in line and text in line for line in lines), event
