"""structlog set-up shared by every component: one line per event, one format per process.

`COBROWSE_LOG_FORMAT` picks JSON (production: one object a line for a log pipeline) or
key=value (development). Everything a process logs goes to stderr in that one format:
structlog events, and the standard library's loggers (Hypercorn's, trio-websocket's,
asyncio's) through a `ProcessorFormatter` on the root logger, and Python's own last-resort
reports (an uncaught exception, one raised in a `__del__`, one that ends a thread:
`install_hooks`), so no line of a process has a format of its own. Stdout stays free for a
command's answer (`router status`).
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
from types import TracebackType
from typing import Any

import structlog

from . import settings

# Loggers of libraries that say every connection at INFO: kept to warnings and worse.
CHATTY = ("hpack", "httpx", "httpcore")


def renderer(fmt: str) -> Any:
    """The last processor for `fmt` (`json` or `kv`)."""
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.processors.KeyValueRenderer(
        key_order=["timestamp", "level", "event"], drop_missing=True
    )


def plain_enums(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Enum values as their values: key=value would print a close code as
    `<CloseReason.GOING_AWAY: 1001>` and JSON cannot encode one at all."""
    for key, value in event.items():
        if isinstance(value, enum.Enum):
            event[key] = value.value
    return event


def processors(fmt: str) -> list:
    """The structlog pipeline for `fmt` (what `configure` installs; tests render with it)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        plain_enums,
        renderer(fmt),
    ]


def stdlib_formatter(fmt: str) -> logging.Formatter:
    """Renders a standard-library record as a structlog event in `fmt`: the logger's name in
    `logger`, its message in `event`."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer(fmt),
        ],
    )


def configure(
    component: str, log: settings.LogSettings | None = None, *, level: str | None = None
) -> None:
    """Set up structlog and the standard library's logging from `log` (the component's
    COBROWSE_LOG_* settings; read from the environment when not given); `level` overrides
    the level."""
    if log is None:
        log = settings.from_environ(settings.LogSettings)
    lvl = getattr(logging, (level or log.level).upper(), logging.INFO)
    structlog.configure(
        processors=processors(log.format),
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # One write() per line: a gateway's workers share one log file, and print()'s two
        # writes (the line, then its newline) interleaved two workers' lines there.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(stdlib_formatter(log.format))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(lvl)
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    logging.captureWarnings(True)
    structlog.contextvars.bind_contextvars(component=component)
    install_hooks(component)


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

# The events `install_hooks` logs: each is an exception nothing caught, so a bug.
LAST_RESORT_EVENTS = ("uncaught_exception", "unraisable_exception", "thread_exception")


def last_resort_lines(text: str) -> list[str]:
    """The lines of a process's log (either format) that are Python's last-resort reports."""
    return [
        line
        for line in text.splitlines()
        if any(f"event='{e}'" in line or f'"event": "{e}"' in line for e in LAST_RESORT_EVENTS)
    ]


def _exc_info(kind: type[BaseException], value: BaseException | None, tb) -> ExcInfo:
    return (kind, value if value is not None else kind(), tb)


def install_hooks(component: str) -> None:
    """Python's last-resort reports as events in the process's format: each is one line with
    its traceback in `exception`, where Python writes a bare multi-line traceback that a log
    pipeline reading one JSON object a line would split or drop, at the moment it matters.
    The component is bound here: a thread does not see the main thread's context."""
    log = structlog.get_logger("python").bind(component=component)

    def uncaught(kind: type[BaseException], value: BaseException, tb) -> None:
        """The process is about to end on this exception."""
        log.critical("uncaught_exception", exc_info=(kind, value, tb))

    def unraisable(u: Any) -> None:
        """Raised where nothing can catch it (a `__del__`, a generator closed when it is
        collected): Python would print "Exception ignored in: ..." and a traceback."""
        try:
            what = repr(u.object)
        except Exception:  # the object's own repr may be what is broken
            what = object.__repr__(u.object)
        log.error(
            "unraisable_exception",
            message=u.err_msg or "Exception ignored in",
            object=what,
            exc_info=_exc_info(u.exc_type, u.exc_value, u.exc_traceback),
        )

    def thread_ended(args: threading.ExceptHookArgs) -> None:
        """A thread (one of trio's workers, nats-py's asyncio loop) ended on an exception."""
        if args.exc_type is SystemExit:
            return  # as the default hook: a thread that exits on purpose
        log.error(
            "thread_exception",
            thread=args.thread.name if args.thread is not None else None,
            exc_info=_exc_info(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = uncaught
    sys.unraisablehook = unraisable
    threading.excepthook = thread_ended
