"""Logging to stdout, one line per event, as `[INFO] ...` text or one JSON object per line.

Every line goes through `render`, which masks it: records of any library (uvicorn's error log
included) and the access lines of access_log.py, so a credential cannot reach the log by any path.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime

from .masking import mask_text

_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "ERROR"}

# uvicorn configures these itself unless told not to; we route them through the root handler.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "sqlalchemy")


def render(
    fmt: str,
    level: str,
    logger: str,
    message: str,
    *,
    created: float | None = None,
    exception: str | None = None,
) -> str:
    """One log line in the process's format, masked: the shape every line of the log has."""
    if fmt == "json":
        when = datetime.now(UTC) if created is None else datetime.fromtimestamp(created, UTC)
        event = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": level.lower(),
            "logger": logger,
            "message": mask_text(message),
        }
        if exception:
            event["exception"] = mask_text(exception)
        return json.dumps(event, ensure_ascii=False)
    line = f"[{level}] {message}" + (f" | {exception}" if exception else "")
    # One event, one line: a traceback is folded so log collectors keep it together.
    return mask_text(line).replace("\n", " \\n ")


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


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            stdout.write(self.format(record) + "\n")
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
    handler = _Handler()
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # SQLAlchemy echoes statements and Alembic its plugin set-up at INFO: keep them to warnings
    # (working.db logs what the migrations did in one line).
    for chatty in ("sqlalchemy", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


logger = logging.getLogger("working")
