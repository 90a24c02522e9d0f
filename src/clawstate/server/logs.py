"""Structured JSON logs with request ids, and nothing secret in them.

Every line is one JSON object (``ts``, ``level``, ``logger``, ``msg``, ``request_id``
and the record's ``extra`` fields).  The request id comes from the client's
``X-Request-Id`` (when it is a short printable token) or is generated, is echoed in
the response header, and rides a context variable so any log line written while
serving the request carries it — including lines from store code on pool threads
(``AsyncStore`` runs calls in a copy of the caller's context).

What never reaches a log: tokens and values.  The server logs route templates, not
raw paths; it never logs bodies, headers or query strings; and as a last line of
defence :class:`RedactFilter` masks anything shaped like a bearer token
(``cst_<id>_<secret>``) or an ``Authorization`` header in every message and field.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "RedactFilter", "configure_logging", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clawstate_request_id", default=None
)

_TOKEN_RE = re.compile(r"cst_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


def redact(text: str) -> str:
    return _BEARER_RE.sub(r"\1[redacted]", _TOKEN_RE.sub("cst_[redacted]", text))


class RedactFilter(logging.Filter):
    """Masks token-shaped strings in the message, its arguments and extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                record.__dict__[key] = redact(value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid is not None:
            doc["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["exc_type"] = record.exc_info[0].__name__
        return redact(json.dumps(doc, default=str, ensure_ascii=False))


def configure_logging(level: str = "info", stream: Any = None) -> None:
    """JSON lines on stderr for the server's loggers (and uvicorn's error logger)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    for name in ("clawstate", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    access.disabled = True  # raw paths and query strings: the server logs its own
    logging.Formatter.converter = time.gmtime
