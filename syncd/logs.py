"""Structured logs: one event per line (logfmt or JSON), context bound once, secrets redacted by construction.

An event is a name plus key/value fields (``log_event(logger, "source.run.ok", duration_ms=12)``). The formatter
renders only the event name, the bound context (org, source, run) and the fields; a field whose key names a secret
(password, token, secret, authorization, private key, ...) is written as ``[redacted]`` whatever its value, and any
text that holds a secret syncd read or obtained, or looks like a credential (a syncd token, an HTTP ``Bearer``/``Basic``
or Okta ``SSWS`` value), is masked inside free text and tracebacks too, by :func:`syncd.common.redaction.redact`, the
same function every stored or printed error goes through. logfmt follows https://brandur.org/logfmt.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from syncd.common.redaction import REDACTED, redact

_SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|authorization|private_key|api_key|credential|cookie", re.I)
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("syncd_log_context", default={})  # noqa: B039
_RESERVED = ("ts", "level", "event", "logger")
_NEEDS_QUOTES = re.compile(r'[ "=\\]')
_process_fields: dict[str, Any] = {}


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_text(text: str) -> str:
    """Mask every known secret and anything shaped like a credential (the one redaction, common.redaction)."""
    return redact(text)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind fields (org, source, run) to every event logged by this thread or task until the block ends."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def push_context(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Bind fields as :func:`bound` does, until :func:`pop_context` is given the token (for a request whose start
    and end are two calls, such as a WSGI app's)."""
    return _context.set({**_context.get(), **fields})


def pop_context(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


def tag_process(**fields: Any) -> None:
    """Fields on every event this process logs, from any thread (each HTTP process of a pre-fork ``syncd serve``
    names its pid, so a request's lines say which process answered it)."""
    _process_fields.update(fields)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with key/value fields; the message is the event name, never a pre-formatted string."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"syncd_fields": fields})


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The key/value pairs of a record: bound context, then the event's fields, each secret key redacted."""
    merged: dict[str, Any] = {}
    merged.update(getattr(record, "syncd_context", {}) or {})
    merged.update(getattr(record, "syncd_fields", {}) or {})
    clean: dict[str, Any] = {}
    for key, value in merged.items():
        if key in _RESERVED:
            key = f"field_{key}"
        if is_secret_key(key):
            clean[key] = REDACTED
        elif isinstance(value, str):
            clean[key] = redact_text(value)
        else:
            clean[key] = value
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        clean["error"] = redact_text(f"{type(error).__name__}: {error}".splitlines()[0])
    return clean


class ContextFilter(logging.Filter):
    """Attach the bound context to each record when it is created (in the thread that logged it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.syncd_context = {**_process_fields, **_context.get()}
        return True


class _EventFormatter(logging.Formatter):
    def head(self, record: logging.LogRecord) -> dict[str, Any]:
        moment = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "ts": moment,
            "level": record.levelname.lower(),
            "event": redact_text(record.getMessage().splitlines()[0] if record.getMessage() else ""),
            "logger": record.name,
        }


class JsonFormatter(_EventFormatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({**self.head(record), **event_fields(record)}, default=str, ensure_ascii=False)


class LogfmtFormatter(_EventFormatter):
    """One logfmt line: ``key=value`` pairs, values quoted when they hold spaces, quotes or equals signs."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = {**self.head(record), **event_fields(record)}
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs.items())


def _logfmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if not isinstance(value, str):
        value = json.dumps(value, default=str, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    value = value.replace("\n", " ")
    if value == "" or _NEEDS_QUOTES.search(value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


def configure(fmt: str = "logfmt", level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record to stderr (journald under systemd) as one structured event per line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "peewee", "urllib3", "cheroot", "waitress"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
