"""`python -m loadtest run ...` (the load-test harness) or `python -m loadtest bench ...`."""

from __future__ import annotations

import sys

USAGE = """usage: python -m loadtest {run,bench} [options]

  run    simulated visitors and agents against a cluster, verified (docs/loadtest.md)
  bench  benchmarks (loadtest/bench/, docs/bench.md)

python -m loadtest run --help  lists the options of a run."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        from .cli import main as run_main

        return run_main(rest)
    if cmd == "bench":
        from .bench.suite import main as bench_main  # imported only when asked

        return bench_main(rest)
    print(f"unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
