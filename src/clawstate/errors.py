"""The one error tree every part of clawstate raises.

Callers catch by meaning, never by driver::

    ClawStateError
    ├── VersionConflict            key, expected, actual  (optimistic concurrency failed)
    │   └── WrongExpectedVersion   stream, expected, actual (event streams)
    ├── InvalidRequest             field, limit           (bad key, value, query, TTL, size…)
    ├── Unauthorized               no, invalid or expired credentials
    ├── Forbidden                  credentials lack the scope
    ├── BackendUnavailable         the storage cannot be reached or is broken
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


class Unauthorized(ClawStateError):
    """Credentials are missing, invalid or expired."""

    http_status = 401


class Forbidden(ClawStateError):
    """The credentials are valid but lack the scope for this action."""

    http_status = 403


class BackendUnavailable(ClawStateError):
    """The storage backend cannot be reached or refused to work; retrying may help."""

    http_status = 503


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
