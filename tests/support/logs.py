"""The logs of a test's processes in the report of a failed test: CI keeps no test's files,
so a failure's only evidence is what pytest prints (a test's captured teardown output)."""

from __future__ import annotations

from router.launcher import LocalCluster

LOG_TAIL = 60  # lines of each process's log


def call_failed(request) -> bool:
    """Whether the test's own call failed (conftest keeps each phase's report on the item)."""
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


def print_tails(local: LocalCluster, lines: int = LOG_TAIL) -> None:
    """The last `lines` lines of the log of each process `local` started."""
    for name in local.pids():
        try:
            text = local.log_text(name)
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        print(f"---- {name}: last {lines} lines of its log ----\n{tail}")


# Python's last-resort reports (gateway/logs.py): an exception nothing caught.
LAST_RESORT = ("uncaught_exception", "unraisable_exception", "thread_exception")


def last_resort_reports(local: LocalCluster) -> list[str]:
    """Lines of any log in the cluster's run directory (gateways, router, proxy) where Python
    reported an exception nothing caught: each is a bug, whatever the test itself checked."""
    found = []
    for path in sorted(local.run_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if any(f"event='{e}'" in line or f'"event": "{e}"' in line for e in LAST_RESORT):
                found.append(f"{path.name}: {line[:2000]}")
    return found
