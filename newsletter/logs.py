"""Logging: one line per event, each carrying the id of the run it belongs to.

Two formats over the same records:

- ``human`` (the default, meant for a terminal and the journal)::

      2026-03-30 08:00:01 INFO  run=3f2a9c1d newsletter.scheduler: sending the papers
      of 2026-03-30 zone=Europe/Berlin

- ``json`` (``--log-format json``), one object per line for log shippers::

      {"ts": "2026-03-30T06:00:01.123Z", "level": "INFO", "logger": "newsletter.scheduler",
       "run_id": "3f2a9c1d", "message": "sending papers of 2026-03-30", "zone": "Europe/Berlin"}

Structured fields travel as ``logger.info("...", extra={"data": {"zone": "..."}})``.
A traceback never spans lines: the human format shows ``error=Type: message at file:line``,
the JSON format puts the whole traceback in an ``exc`` field.

The run id lives in a :class:`contextvars.ContextVar` (set with :func:`run_context`), the one
process-wide object here: it is how a job thread's id reaches every logger the run touches
(the send, the ledger, the backend) without passing it through each call.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import secrets
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO

from newsletter.redact import Redactor

LogFormat = Literal["human", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("human", "json")

DEFAULT_LOG_FORMAT: LogFormat = "human"
"""The format when none is asked for."""

DEFAULT_LEVEL = "INFO"
"""The level when none is asked for."""

LOGGERS = ("newsletter", "apscheduler", "waitress")
"""The loggers whose records get our handler (ours, and the scheduler's and the web
server's libraries)."""

RUN_ID_BYTES = 4
"""Random bytes in a run id (8 hex characters)."""

NO_RUN = "-"
"""The run id outside any run (daemon start-up, shutdown)."""

_RUN_ID: contextvars.ContextVar[str] = contextvars.ContextVar("newsletter_run_id", default=NO_RUN)


def new_run_id() -> str:
    """A fresh random run id."""
    return secrets.token_hex(RUN_ID_BYTES)


def current_run_id() -> str:
    """The run id of the current context, or ``"-"``."""
    return _RUN_ID.get()


@contextmanager
def run_context(run_id: str | None = None) -> Iterator[str]:
    """Tag every record logged inside the block with ``run_id`` (a new one by default)."""
    value = run_id or new_run_id()
    token = _RUN_ID.set(value)
    try:
        yield value
    finally:
        _RUN_ID.reset(token)


class RunIdFilter(logging.Filter):
    """Adds ``record.run_id`` (and ``record.data`` when missing)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = current_run_id()
        if not isinstance(getattr(record, "data", None), Mapping):
            record.data = {}
        return True


class RedactFilter(logging.Filter):
    """Replaces every spelling of the given secrets (plain, base64, URL-encoded...; see
    :mod:`newsletter.redact`) in a record's message and data with ``[redacted]``."""

    def __init__(self, values: Iterable[str] | Redactor) -> None:
        super().__init__()
        self.redact = values if isinstance(values, Redactor) else Redactor(values)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redact:
            return True
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        data = getattr(record, "data", None)
        if isinstance(data, Mapping):
            record.data = {k: self.redact(v) if isinstance(v, str) else v for k, v in data.items()}
        return True


class RedactingFormatter(logging.Formatter):
    """Another formatter's output with the secrets redacted: the last step before a line
    is written, so tracebacks and fields a filter cannot see are covered too."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self.inner = inner
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self.inner.format(record))


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _field(value: object) -> str:
    text = _one_line(str(value))
    return f'"{text}"' if (not text or " " in text or '"' in text) else text


class HumanFormatter(logging.Formatter):
    """``date time LEVEL run=ID logger: message key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        parts = [
            when,
            f"{record.levelname:<5}",
            f"run={getattr(record, 'run_id', NO_RUN)}",
            f"{record.name}: {_one_line(record.getMessage())}",
        ]
        data = getattr(record, "data", {})
        if isinstance(data, Mapping):
            parts.extend(f"{key}={_field(value)}" for key, value in data.items())
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            parts.append(f"error={_field(f'{type(exc).__name__}: {exc}{where}')}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, run_id, message, the data fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        out: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "run_id": getattr(record, "run_id", NO_RUN),
            "message": record.getMessage(),
        }
        data = getattr(record, "data", {})
        if isinstance(data, Mapping):
            for key, value in data.items():
                out.setdefault(str(key), value)
        if record.exc_info and record.exc_info[1] is not None:
            out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(out, ensure_ascii=False, default=str)


def make_handler(
    *,
    fmt: LogFormat = DEFAULT_LOG_FORMAT,
    stream: TextIO | None = None,
    secrets_: Iterable[str] = (),
) -> logging.Handler:
    """A stream handler with the run-id filter, secret redaction and the chosen format."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (known: {', '.join(LOG_FORMATS)})")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    redact = Redactor(secrets_)
    handler.addFilter(RunIdFilter())
    handler.addFilter(RedactFilter(redact))
    inner = JsonFormatter() if fmt == "json" else HumanFormatter()
    handler.setFormatter(RedactingFormatter(inner, redact) if redact else inner)
    handler.set_name("newsletter")
    return handler


def _library_level(level: str | int) -> int:
    """The scheduler library is chatty at INFO ("Running job..."): show its warnings only,
    unless we are debugging."""
    number = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number if number <= logging.DEBUG else max(number, logging.WARNING)


def setup_logging(
    *,
    fmt: LogFormat = DEFAULT_LOG_FORMAT,
    level: str | int = DEFAULT_LEVEL,
    stream: TextIO | None = None,
    secrets_: Iterable[str] = (),
) -> logging.Handler:
    """Send the ``newsletter`` and ``apscheduler`` loggers to one handler; returns it.

    Calling it again replaces the handler it installed before (and only that one).
    ``secrets_`` are values never to appear in a log line (passwords, API keys).
    """
    handler = make_handler(fmt=fmt, stream=stream, secrets_=secrets_)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "newsletter"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level if name == "newsletter" else _library_level(level))
        logger.propagate = False
    return handler
