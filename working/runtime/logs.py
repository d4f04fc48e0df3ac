"""Logging to stdout, one line per event, as `[INFO] ...` text or one JSON object per line.

Every line goes through `render`, which masks it: records of any library (uvicorn's error log,
engineio, socketio, Reflex's console) and the access lines of access_log.py, so a credential
cannot reach the log by any path. Values are escaped, so that no client text can start a line
of its own, and cut at a fixed length; repeated warnings and errors are rate-limited, so that a
client repeating a bad request cannot fill the disk.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime

from .contract import contract
from .masking import mask_text

_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "ERROR"}

# uvicorn configures these itself unless told not to; we route them through the root handler.
# engineio and socketio add a stderr handler of their own to a logger whose level is unset.
_SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "alembic",
    "sqlalchemy",
    "engineio.server",
    "socketio.server",
)

_LIMITS = contract()["limits"]
_MAX_VALUE = _LIMITS["max_log_value_chars"]
_REPEATS = _LIMITS["log_repeats_per_minute"]
_WINDOW_S = 60.0
# Kinds are told apart by logger, level and the message's first characters (or its template).
_KIND_PREFIX = 24
# Whatever the kinds, at most this many warnings and errors a minute.
_ALL_KINDS = _REPEATS * 10

# Line breaks of every kind, and the other control characters (terminal escapes included).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\x1b": "\\e"}


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    if char in _ESCAPES:
        return _ESCAPES[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _cut(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value) - limit} more characters not logged)"


def escape(value: str) -> str:
    """Control characters as visible escapes: no client text can end a line or start one."""
    if value.isprintable():  # what nearly every line is, checked in C
        return value
    return _CONTROL.sub(_escape_char, value)


def render(
    fmt: str,
    level: str,
    logger: str,
    message: str,
    *,
    created: float | None = None,
    exception: str | None = None,
) -> str:
    """One log line in the process's format, masked: the shape every line of the log has.

    In JSON, the encoder escapes what could break the line; in text, `escape` does."""
    message = mask_text(_cut(message, _MAX_VALUE))
    if exception:
        exception = mask_text(_cut(exception.rstrip("\n"), 2 * _MAX_VALUE))
    if fmt == "json":
        when = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
        event = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": level.lower(),
            "logger": logger,
            "message": message,
        }
        if exception:
            event["exception"] = exception
        return json.dumps(event, ensure_ascii=False)
    line = f"[{level}] {escape(message)}"
    if exception:
        # One event, one line: a traceback is folded so log collectors keep it together.
        line += " | " + escape(exception.replace("\n", " \\n "))
    return line


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self._fmt_name = fmt

    def format(self, record: logging.LogRecord) -> str:
        return render(
            self._fmt_name,
            _LEVEL_NAMES.get(record.levelname, record.levelname),
            record.name,
            record.getMessage(),
            created=record.created,
            exception=self.formatException(record.exc_info) if record.exc_info else None,
        )


class _Stdout:
    """The one writer to stdout. Access lines may wait in `pending` for a batched write; any
    other record writes them first, so the log keeps the order in which things happened."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def defer(self, line: str) -> None:
        with self._lock:
            self._pending.append(line)

    def write(self, line: str = "") -> None:
        with self._lock:
            data = "".join(self._pending) + line
            self._pending.clear()
            if data:
                sys.stdout.write(data)
                sys.stdout.flush()


stdout = _Stdout()


class _RepeatLimit:
    """At most `_REPEATS` warnings or errors of one kind a minute; what was held back is
    counted and said in one line when its minute is over.

    The other libraries' lines also share `_ALL_KINDS` a minute: their kinds are unbounded (a
    message without arguments is its own kind, and may hold client text). This package's own
    templated lines are not in that budget: they are few, each is limited by its kind, and a
    flood of client-caused lines must never hide one that reports an outage."""

    def __init__(self) -> None:
        # kind -> [window start, lines in the window, lines held back]
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        self._lock = threading.Lock()

    def admit(self, record: logging.LogRecord) -> tuple[bool, list[str]]:
        """Whether to write `record`, and the summaries of windows that have ended."""
        if record.levelno < logging.WARNING:
            return True, []
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        if not record.args:
            template = template[:_KIND_PREFIX]
        kind = (record.name, record.levelno, template)
        now = time.monotonic()
        ours = bool(record.args) and (
            record.name == "working" or record.name.startswith("working.")
        )
        with self._lock:
            summaries = self._ended(now)
            admitted = self._count(kind, now, _REPEATS) and (
                ours or self._count(("*", 0, "*"), now, _ALL_KINDS)
            )
        return admitted, summaries

    def _count(self, kind: tuple[str, int, str], now: float, limit: int) -> bool:
        entry = self._kinds.setdefault(kind, [now, 0, 0])
        entry[1] += 1
        if entry[1] <= limit:
            return True
        entry[2] += 1
        return False

    def _ended(self, now: float) -> list[str]:
        summaries = []
        for kind, (start, _, held) in list(self._kinds.items()):
            if now - start < _WINDOW_S:
                continue
            del self._kinds[kind]
            if held:
                what = "warnings and errors" if kind[0] == "*" else f"like {kind[2]!r}"
                summaries.append(
                    f"{int(held)} more log lines {what} in the last {_WINDOW_S:g}s were not "
                    "written (rate limit)"
                )
        return summaries


class _Handler(logging.Handler):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self._fmt_name = fmt
        self._limit = _RepeatLimit()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            admitted, summaries = self._limit.admit(record)
            lines = [render(self._fmt_name, "WARN", "working.logs", s) + "\n" for s in summaries]
            if admitted:
                lines.append(self.format(record) + "\n")
            if lines:
                stdout.write("".join(lines))
        except Exception:
            self.handleError(record)


def configure(level: str = "info", fmt: str = "text") -> None:
    # The logging module's documented switches for what no line here uses: the caller's frame
    # (a stack walk per record), thread and process names. One access line per request makes
    # them a third of the cost of serving a cached page.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _Handler(fmt)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Set before their servers exist, so that they add no handler of their own; their info
    # lines (every packet) are noise at any level but debug.
    for name in ("engineio.server", "socketio.server"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # SQLAlchemy echoes statements and Alembic its plugin set-up at INFO: keep them to warnings
    # (working.db logs what the migrations did in one line).
    for chatty in ("sqlalchemy", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def route_reflex_console() -> None:
    """Reflex's console prints with rich, straight to stdout and stderr, past the formatter:
    while serving, its messages become records of the `reflex` logger like any other."""
    from reflex.utils import console as reexport
    from reflex_base.utils import console as original

    reflex = logging.getLogger("reflex")

    def at(level: int):  # type: ignore[no-untyped-def]
        def emit(msg: object, *args: object, **kwargs: object) -> None:
            # The text as the record's message, without arguments: the repeat limit tells
            # Reflex's messages apart by their first characters.
            reflex.log(level, str(msg))

        return emit

    for name, level in (
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("success", logging.INFO),
        ("log", logging.INFO),
        ("print", logging.INFO),
        ("_print_stderr", logging.INFO),
        ("warn", logging.WARNING),
        ("deprecate", logging.WARNING),
        ("error", logging.ERROR),
    ):
        # reflex.utils.console re-exports the functions: each module holds its own reference.
        for console in (original, reexport):
            setattr(console, name, at(level))


logger = logging.getLogger("working")
