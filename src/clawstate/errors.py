"""The one error tree every part of clawstate raises.

Callers catch by meaning, never by driver::

    ClawStateError
    ├── VersionConflict            key, expected, actual  (optimistic concurrency failed)
    │   └── WrongExpectedVersion   stream, expected, actual (event streams)
    ├── InvalidRequest             field, limit           (bad key, value, query, TTL, size…)
    │   └── LogTrimmed             requested, first_available (a follower fell behind retention)
    ├── Unauthorized               no, invalid or expired credentials
    ├── Forbidden                  credentials lack the scope
    ├── BackendUnavailable         the storage cannot be reached or is broken
    │   └── RateLimited            retry_after            (too many requests for a token)
    ├── IntegrityError             stored data failed an integrity or authentication check
    └── ConfigError                field                  (bad clawstate.toml / CLAWSTATE_*)

Backends translate their driver's exceptions into this tree at their edge, so
application code never imports ``sqlite3`` or ``psycopg`` to handle a failure.
Over HTTP each maps to an RFC 9457 problem document whose ``type`` ends in the
class name.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailable",
    "ClawStateError",
    "ConfigError",
    "Forbidden",
    "IntegrityError",
    "InvalidRequest",
    "LogTrimmed",
    "RateLimited",
    "Unauthorized",
    "VersionConflict",
    "WrongExpectedVersion",
]


class ClawStateError(Exception):
    """Base of every error clawstate raises on purpose."""

    #: HTTP status the server answers with for this error.
    http_status: int = 500

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 fields describing this error (type, title, status, detail)."""
        return {
            "type": f"urn:clawstate:error:{type(self).__name__}",
            "title": type(self).__name__,
            "status": self.http_status,
            "detail": str(self),
        }


class VersionConflict(ClawStateError):
    """A conditional write found another version than it expected.

    ``expected`` is what the caller asked for (a version number, or ``"absent"``
    for create-only writes); ``actual`` is the version found, ``None`` when the
    key does not exist.
    """

    http_status = 409

    def __init__(
        self,
        key: str,
        expected: int | str | None,
        actual: int | None,
        *,
        namespace: str | None = None,
        message: str | None = None,
    ) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        self.namespace = namespace
        where = f"{namespace}/{key}" if namespace else key
        super().__init__(
            message or f"version conflict on {where!r}: expected {expected!r}, found {actual!r}"
        )

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc.update(key=self.key, expected=self.expected, actual=self.actual)
        if self.namespace is not None:
            doc["namespace"] = self.namespace
        return doc


class WrongExpectedVersion(VersionConflict):
    """An event append found the stream at another version than expected."""

    def __init__(self, stream: str, expected: int | str | None, actual: int | None) -> None:
        self.stream = stream
        super().__init__(
            stream,
            expected,
            actual,
            message=f"stream {stream!r}: expected version {expected!r}, found {actual!r}",
        )


class InvalidRequest(ClawStateError):
    """The request is malformed or breaks a limit; nothing was changed.

    ``field`` names what was wrong (``key``, ``value``, ``ttl``, ``query.filter``…)
    and ``limit`` the bound it broke, when there is one.
    """

    http_status = 400

    def __init__(self, field: str, message: str, *, limit: Any = None) -> None:
        self.field = field
        self.limit = limit
        super().__init__(f"{field}: {message}")

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc["field"] = self.field
        if self.limit is not None:
            doc["limit"] = self.limit
        return doc


class LogTrimmed(InvalidRequest):
    """A follower's next position was trimmed from its log by retention.

    Raised by everything that follows a seq-ordered log (``watch``, event
    subscriptions) instead of silently skipping what it can no longer read:
    ``requested`` is the first position the follower needed, ``first_available``
    the oldest one the log still holds.  Resume from ``first_available - 1`` after
    rebuilding whatever the follower derives from the log.  A subclass of
    :class:`InvalidRequest` (``field`` names the position argument, ``limit`` is the
    lowest position one may resume after), because a resume from a trimmed
    position was refused as an ``InvalidRequest`` before this class existed;
    over HTTP it is ``410 Gone``.
    """

    http_status = 410

    def __init__(
        self,
        requested: int,
        first_available: int,
        *,
        field: str = "from_seq",
        log: str = "change log",
        retention: str = "changelog_retention",
    ) -> None:
        self.requested = requested
        self.first_available = first_available
        super().__init__(
            field,
            f"the {log} no longer holds position {requested}: it was trimmed by "
            f"{retention}, and the oldest position retained is {first_available}; "
            f"resume from {first_available - 1} after rebuilding what you derived from it",
            limit=first_available - 1,
        )

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc.update(requested=self.requested, first_available=self.first_available)
        return doc


class Unauthorized(ClawStateError):
    """Credentials are missing, invalid or expired."""

    http_status = 401


class Forbidden(ClawStateError):
    """The credentials are valid but lack the scope for this action."""

    http_status = 403


class BackendUnavailable(ClawStateError):
    """The storage backend cannot be reached or refused to work; retrying may help."""

    http_status = 503


class RateLimited(BackendUnavailable):
    """Too many requests for this token: ``retry_after`` seconds until one is allowed
    (``None`` when unknown).

    The one class for both sides: the server raises it (and answers ``429`` with a
    ``Retry-After`` header), and the HTTP client raises it when the server kept
    answering 429 after every retry.  A :class:`BackendUnavailable`, because, like an
    unreachable backend, it says "not now": retrying later may succeed.
    """

    http_status = 429

    def __init__(self, retry_after: float | None = None, detail: str | None = None) -> None:
        self.retry_after = retry_after
        if detail is None:
            detail = (
                "rate limit exceeded"
                if retry_after is None
                else f"rate limit exceeded; retry after {retry_after:.3g} s"
            )
        super().__init__(detail)

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc["retry_after"] = self.retry_after
        return doc


class IntegrityError(ClawStateError):
    """Stored bytes failed a check: a tampered ciphertext, a corrupt header, a missing key.

    Raised instead of ever returning wrong data.
    """

    http_status = 500


class ConfigError(ClawStateError):
    """The configuration (clawstate.toml, ``CLAWSTATE_*``, ``open()`` arguments) is invalid."""

    http_status = 500

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")
