"""Processes and measurements for `python -m loadtest bench`.

`Child` runs a helper process that reports JSON lines on stdout; the rest read what the
kernel and the servers already know about a process tree: resident memory and CPU time
(psutil), time spent runnable but waiting for a core (/proc/<pid>/task/*/schedstat), a
gateway's Prometheus counters, and a nats-server's subscription count (its /connz page).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import psutil


class Child:
    """A process that reports JSON lines on stdout; stderr goes to a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._lines: queue.Queue[str | None] = queue.Queue()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
                env=env,
                text=True,
                start_new_session=True,
            )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float) -> dict:
        """The next JSON report, or an error naming the log to read."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no report within {timeout:g}s ({self.log_path})")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before reporting: "
                    f"{tail(self.log_path)}"
                )
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)

    def say(self, line: str = "go") -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 5.0) -> None:
        """Close stdin (children treat that as 'finish'), then SIGTERM, then SIGKILL, by pid."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            if self.wait(grace) is not None:
                return
        stop_pid(self.proc, grace)


def stop_pid(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tail(path: Path, n: int = 800) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def rss_tree(pid: int) -> int:
    """Resident memory of a process and all its descendants (a gateway's workers)."""
    p = psutil.Process(pid)
    total = p.memory_info().rss
    for c in p.children(recursive=True):
        try:
            total += c.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


GATEWAY_COUNTERS = {
    "cobrowse_gateway_events_in_total": "events_in",
    "cobrowse_gateway_events_out_total": "events_out",
    "cobrowse_gateway_frames_out_total": "frames_out",
    "cobrowse_gateway_gap_fills_total": "gap_fills",
    "cobrowse_gateway_reorder_waits_total": "reorder_waits",
    "cobrowse_gateway_js_publish_retries_total": "js_retries",
    "cobrowse_gateway_js_publish_seconds_sum": "js_publish_seconds_sum",
    "cobrowse_gateway_js_publish_seconds_count": "js_publish_count",
}


def scrape(port: int | None) -> dict[str, float]:
    """A few of the gateway's Prometheus counters, summed over labels; {} if unreachable."""
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = dict.fromkeys(GATEWAY_COUNTERS.values(), 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        key = GATEWAY_COUNTERS.get(head.split("{")[0])
        if key is not None:
            try:
                out[key] += float(value)
            except ValueError:
                pass
    return out


def nats_subscriptions(monitor_port: int) -> int | None:
    """Subscriptions held by all clients of the nats-server (its /connz monitoring page)."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{monitor_port}/connz?limit=10000", timeout=5
        ) as r:
            conns = json.loads(r.read()).get("connections", [])
    except (OSError, ValueError):
        return None
    return sum(int(c.get("subscriptions", 0)) for c in conns)


def cpu_tree(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for q in procs:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def runq_wait_tree(pid: int) -> float:
    """Seconds a process tree's threads spent runnable but waiting for a core (schedstat)."""
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        for task in Path(f"/proc/{q.pid}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return total / 1e9
