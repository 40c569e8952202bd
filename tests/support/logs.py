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
