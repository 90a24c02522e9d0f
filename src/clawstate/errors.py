"""The one error tree every part of clawstate raises.

Callers catch by meaning, never by driver::

    ClawStateError
    ├── VersionConflict            key, expected, actual  (optimistic concurrency failed)
    │   └── WrongExpectedVersion   stream, expected, actual (event streams)
    ├── FencingError               name, token, current   (a newer lease of that name exists)
    ├── LockTimeout                name, waited           (the lock stayed held past ``wait``)
    ├── InvalidTransition          machine, id, state, event (no such transition from there)
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
    "FencingError",
    "Forbidden",
    "IntegrityError",
    "InvalidRequest",
    "InvalidTransition",
    "LockTimeout",
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


class FencingError(ClawStateError):
    """A write fenced by a lease was refused: a newer lease of that name was granted.

    ``name`` is the lock, ``token`` the fencing token the write carried and
    ``current`` the newest token granted for that name (``None`` when no lease of
    that name was ever granted).  Checked by the storage inside the write's own
    transaction, so a holder paused past its lease cannot overwrite the work of the
    next holder.  Not a :class:`VersionConflict`: retrying the same write cannot
    succeed, so retry loops (``Namespace.update``) must not catch it.
    """

    http_status = 409

    def __init__(self, name: str, token: int, current: int | None) -> None:
        self.name = name
        self.token = token
        self.current = current
        why = (
            "no lease of that name was ever granted"
            if current is None
            else f"lease token {current} was granted since"
        )
        super().__init__(f"write fenced by lock {name!r} with token {token} refused: {why}")

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc.update(name=self.name, token=self.token, current=self.current)
        return doc


class LockTimeout(ClawStateError):
    """The lock ``name`` was still held by another owner after waiting ``waited`` seconds."""

    http_status = 409

    def __init__(self, name: str, waited: float) -> None:
        self.name = name
        self.waited = waited
        super().__init__(f"lock {name!r} is held by another owner; gave up after {waited:g} s")

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc.update(name=self.name, waited=self.waited)
        return doc


class InvalidTransition(ClawStateError):
    """Machine ``machine``'s instance ``id`` in state ``state`` has no transition for
    ``event`` (or its guard refused it, or the state is final); nothing was written."""

    http_status = 409

    def __init__(
        self, machine: str, id: str, state: str, event: str, *, reason: str | None = None
    ) -> None:
        self.machine = machine
        self.id = id
        self.state = state
        self.event = event
        self.reason = reason
        super().__init__(
            f"machine {machine!r} instance {id!r}: event {event!r} is not allowed in state "
            f"{state!r}" + (f" ({reason})" if reason else "")
        )

    def to_problem(self) -> dict[str, Any]:
        doc = super().to_problem()
        doc.update(machine=self.machine, id=self.id, state=self.state, event=self.event)
        if self.reason is not None:
            doc["reason"] = self.reason
        return doc


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
