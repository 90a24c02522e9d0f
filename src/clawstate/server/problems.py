"""RFC 9457 problem+json answers: one shape for every error the server gives.

The store's errors already know their document (``ClawStateError.to_problem()``) and
status (``http_status``); this module renders them, maps Litestar's own HTTP errors
(unknown route, wrong method, a query parameter that is not an integer…) onto the same
names, and never lets an unexpected exception's message — which could quote a value —
reach the client or the log.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from .._wire import PROBLEM_JSON, NotFound, problem_doc
from ..errors import ClawStateError, InvalidRequest, RateLimited, Unauthorized

__all__ = [
    "UNAUTHORIZED_BODY",
    "HTTPProblem",
    "TooLarge",
    "problem_response",
    "render",
]

log = logging.getLogger("clawstate.server")
_encode = msgspec.json.Encoder().encode

#: Every 401 answers with exactly these bytes, whatever went wrong (missing, malformed,
#: unknown, wrong, expired or revoked token): the answer tells an attacker nothing.
UNAUTHORIZED_BODY = _encode(
    {
        "type": "urn:clawstate:error:Unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": "a valid bearer token is required",
    }
)
UNAUTHORIZED_HEADERS = {"www-authenticate": 'Bearer realm="clawstate"'}


class HTTPProblem(Exception):
    """A store error answered with another status than its default (412 for a failed
    ``If-Match``, 413 for a body over the limit) — the document keeps the error's name."""

    def __init__(self, error: ClawStateError, status: int, headers: dict[str, str] | None = None):
        super().__init__(str(error))
        self.error = error
        self.status = status
        self.headers = headers or {}


def TooLarge(what: str, size: int | None, limit: int) -> HTTPProblem:
    detail = (
        f"is {size} bytes; the limit is {limit}"
        if size is not None
        else (f"exceeds the limit of {limit} bytes")
    )
    return HTTPProblem(InvalidRequest(what, detail, limit=limit), 413)


def render(
    doc: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        _encode(doc), status_code=status, media_type=PROBLEM_JSON, headers=headers or None
    )


def problem_response(exc: BaseException) -> Response[bytes]:
    """The answer for any exception a handler raised."""
    if isinstance(exc, HTTPProblem):
        return render(problem_doc(exc.error, exc.status), exc.status, exc.headers)
    if isinstance(exc, Unauthorized):
        return Response(
            UNAUTHORIZED_BODY,
            status_code=401,
            media_type=PROBLEM_JSON,
            headers=UNAUTHORIZED_HEADERS,
        )
    if isinstance(exc, RateLimited):
        retry = max(1, int((exc.retry_after or 0) + 0.999))
        return render(problem_doc(exc), 429, {"retry-after": str(retry)})
    if isinstance(exc, ClawStateError):
        if exc.http_status >= 500:
            log.error("store error", extra={"error": type(exc).__name__})
        return render(problem_doc(exc), exc.http_status)
    if isinstance(exc, ValidationException):
        field = _field_of(exc)
        err = InvalidRequest(field, _detail_of(exc))
        return render(problem_doc(err), 400)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 404:
            return render(problem_doc(NotFound("no such route")), 404)
        if status == 405:
            doc = {
                "type": "urn:clawstate:error:MethodNotAllowed",
                "title": "MethodNotAllowed",
                "status": 405,
                "detail": "this route does not answer that method",
            }
            return render(doc, 405, dict(exc.headers or {}))
        if status == 413:
            return render(problem_doc(InvalidRequest("body", "is too large")), 413)
        if status == 401:
            return Response(
                UNAUTHORIZED_BODY,
                status_code=401,
                media_type=PROBLEM_JSON,
                headers=UNAUTHORIZED_HEADERS,
            )
        if 400 <= status < 500:
            return render(problem_doc(InvalidRequest("request", str(exc.detail))), status)
    # Anything else is a bug: log where, not what (the message could quote a value).
    frames = "".join(traceback.format_tb(exc.__traceback__)[-5:])
    log.error("unexpected error", extra={"error": type(exc).__name__, "where": frames})
    doc = {
        "type": "urn:clawstate:error:ClawStateError",
        "title": "ClawStateError",
        "status": 500,
        "detail": "internal server error",
    }
    return render(doc, 500)


def _field_of(exc: ValidationException) -> str:
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        key = extra[0].get("key")
        if isinstance(key, str) and key:
            return key
    return "request"


def _detail_of(exc: ValidationException) -> str:
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        msg = extra[0].get("message")
        if isinstance(msg, str):
            return msg
    return "is not valid"


def exception_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return problem_response(exc)
