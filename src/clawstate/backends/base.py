"""The Backend protocol: the one seam between the facade and a storage engine.

A backend stores *encoded* values (bytes produced by the codec) and their
metadata; it knows nothing of serializers, encryption, TTL arithmetic or
idempotency windows — the facade computes those and hands the backend plain
records.  What a backend must guarantee:

* ``write(unit)`` applies every write of the unit atomically, together with one
  change-log row per changed key, in ONE transaction; a failed version check
  fails the whole unit and changes nothing; concurrent units may be coalesced
  into one commit (group commit) but each unit succeeds or fails on its own.
* a unit carrying an idempotency key that was already applied (and has not
  expired) returns the outcomes recorded the first time and applies nothing.
* change-log sequence numbers are gap-free and visible in commit order, so a
  watcher reading ``changes(after_seq)`` never skips a change.
* expired items are invisible to every read as soon as ``expires_at <= now``,
  whether or not the sweep has purged them yet.
* a key's versions never repeat across its incarnations, so a version check can
  never succeed against another incarnation (ABA): a put over an expired row
  continues at its version + 1, and every removal (delete, sweep) raises its
  namespace's *version floor* to the removed version in the same transaction; a key
  created where no row is stored starts at that floor + 1 (see
  :mod:`clawstate.backends._apply`).  Every shipped backend also answers
  ``version_state(namespace, key) -> (stored row's version or None, floor)``, which
  the write-back cache predicts versions from (optional for other backends).

Backends whose ``capabilities.events`` is True also keep the event store: a
unit's ``events`` (:class:`EventWrite`) commit in the same transaction as its
``writes``, through the same path (see :mod:`clawstate.backends._apply` and
:mod:`clawstate.events.backend` for the read side).  The facade never hands
``events`` to a backend without the capability.

Every backend runs the conformance suite in :mod:`clawstate.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from ..types import Change

if TYPE_CHECKING:
    from ..query import Query

__all__ = [
    "EXPECT_ANY",
    "EXPECT_EXISTS",
    "OP_APPEND",
    "OP_DELETE",
    "OP_EXPIRE",
    "OP_NAMES",
    "OP_PUT",
    "OP_REWRAP",
    "Backend",
    "Capabilities",
    "EventRecord",
    "EventWrite",
    "Outcome",
    "StoredItem",
    "StreamMeta",
    "SweepResult",
    "Write",
    "WriteUnit",
]

#: Write kinds.  ``OP_REWRAP`` replaces the stored bytes of an unchanged item
#: (key rotation): no new version, no change-log row.
OP_PUT = 0
OP_DELETE = 1
OP_EXPIRE = 2
OP_REWRAP = 3
#: The op of an event append's :class:`Outcome` (never a change-log op): ``key`` is the
#: stream, ``version`` its version after the append, ``seq`` the global position of
#: its last event (0 when nothing was appended), ``applied`` False for an idempotent
#: replay that returned the first append's result.
OP_APPEND = 4
OP_NAMES: dict[int, str] = {OP_PUT: "put", OP_DELETE: "delete", OP_EXPIRE: "expire"}


class Write(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One key's write inside a unit.

    ``if_version`` demands the live item has that version; ``if_absent`` demands
    there is no live item.  For ``OP_REWRAP`` ``if_version`` and ``seq`` pin the
    exact stored row being re-encoded.  ``keep_ttl`` (a put) keeps the live item's
    ``expires_at`` instead of ``expires_at`` (which is then None); with no live item
    the put has no expiry.  It is decided inside the write's transaction, so no
    concurrent write can slip between reading the old expiry and keeping it.
    """

    namespace: str
    key: str
    op: int
    value: bytes | None = None
    expires_at: float | None = None
    if_version: int | None = None
    if_absent: bool = False
    log_value: bool = False
    seq: int | None = None
    keep_ttl: bool = False


#: ``EventWrite.expected`` codes; a value >= 0 demands exactly that version (0: no events).
EXPECT_ANY = -1
EXPECT_EXISTS = -2


class EventRecord(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One new event as a backend stores it: validated, ``data``/``metadata`` JSON text."""

    id: str
    type: str
    data: str
    metadata: str | None = None
    schema_version: int = 1


class StreamMeta(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A stream's retention: events older than ``max_age`` seconds, beyond the newest
    ``max_count``, or below version ``truncate_before`` are hidden from stream reads
    at once and removed by the sweep (which always keeps a stream's last event, so
    versions are never reused)."""

    max_age: float | None = None
    max_count: int | None = None
    truncate_before: int | None = None


class EventWrite(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """An append of ``events`` to ``stream`` if its version matches ``expected``.

    ``meta`` replaces the stream's metadata once the check passed (with no events:
    a metadata-only change).  ``delete`` is a soft delete: ``events`` holds the
    tombstone, and afterwards ``truncate_before`` hides it and every earlier event.
    """

    stream: str
    expected: int
    events: list[EventRecord]
    meta: StreamMeta | None = None
    delete: bool = False


class WriteUnit(msgspec.Struct, gc=False):
    """What one caller asked to commit atomically: one put, a put_many, a transaction
    (and, on backends with an event store, event appends)."""

    writes: list[Write]
    now: float
    idempotency_key: str | None = None
    #: digest of the request; a retry with the same key but another request is refused
    fingerprint: bytes = b""
    #: when the idempotency record may be forgotten
    idempotency_expires_at: float | None = None
    #: event appends, committed with ``writes``; their outcomes follow the writes'
    events: list[EventWrite] = []


class Outcome(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What one write did.  ``applied`` is False for a delete of a missing key
    (or a rewrap that lost a race); ``seq`` is its change-log sequence number."""

    namespace: str
    key: str
    op: int
    applied: bool
    version: int
    seq: int
    created_at: float
    updated_at: float
    expires_at: float | None


class StoredItem(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A live item as the backend keeps it: encoded bytes plus metadata."""

    namespace: str
    key: str
    value: bytes
    version: int
    seq: int
    created_at: float
    updated_at: float
    expires_at: float | None


class SweepResult(msgspec.Struct, frozen=True):
    """What a sweep removed."""

    expired: int = 0
    idempotency_keys: int = 0
    changes: int = 0
    #: events removed because their stream's metadata hid them
    events: int = 0


class Capabilities(msgspec.Struct, frozen=True):
    """What a backend can do beyond the protocol's minimum."""

    #: durable across a killed process
    durable: bool = True
    #: several processes may share the data
    multi_process: bool = True
    #: query() runs inside the engine rather than by scanning in Python
    native_query: bool = False
    #: keeps the event store (``WriteUnit.events`` and :class:`clawstate.events.backend.EventLog`)
    events: bool = False


#: Turns a stored item into its decoded value (the facade's codec), for backends
#: that evaluate queries in Python.
Decoder = Callable[[StoredItem], Any]


@runtime_checkable
class Backend(Protocol):
    """The storage engine behind a Store.  See the module docstring for the contract."""

    name: str
    capabilities: Capabilities

    def write(self, unit: WriteUnit) -> list[Outcome]:
        """Commit ``unit`` atomically; raise VersionConflict (nothing applied) or
        InvalidRequest (idempotency key reused for another request)."""
        ...

    def get(self, namespace: str, key: str, now: float) -> StoredItem | None: ...

    def get_many(self, namespace: str, keys: Sequence[str], now: float) -> list[StoredItem]: ...

    def scan(
        self, namespace: str, prefix: str, after: str | None, limit: int, now: float
    ) -> list[StoredItem]:
        """Live items of ``namespace`` whose key starts with ``prefix`` and sorts
        after ``after``, in key order (UTF-8 byte order), at most ``limit``."""
        ...

    def query(
        self, namespace: str, query: Query, decode: Decoder, now: float
    ) -> tuple[list[StoredItem], str | None]:
        """One page of the query's matches and the next page token."""
        ...

    def count(self, namespace: str, now: float) -> int: ...

    def changes(self, after_seq: int, limit: int, namespace: str | None = None) -> list[Change]:
        """Change-log rows with ``seq > after_seq`` in seq order."""
        ...

    def last_seq(self) -> int:
        """The newest seq such that every change with a seq at or below it is committed
        and visible — a watermark: a watcher may skip to it without missing a change."""
        ...

    def first_seq(self) -> int:
        """The oldest retained change-log seq (``last_seq() + 1`` when empty)."""
        ...

    def wait_for_change(self, after_seq: int, timeout: float) -> bool:
        """Block until a change with ``seq > after_seq`` is committed or ``timeout``
        passes; True when there is one."""
        ...

    def sweep(self, now: float, changelog_before: float) -> SweepResult:
        """Purge expired items (logging ``expire`` changes), forgotten idempotency
        records, and change-log rows older than ``changelog_before``."""
        ...

    def namespaces(self) -> list[str]: ...

    def stats(self) -> dict[str, Any]: ...

    def check(self) -> tuple[list[str], dict[str, int]]:
        """Integrity problems found (empty when sound) and what was checked."""
        ...

    def iter_items(self, namespace: str) -> Iterator[StoredItem]:
        """Every stored item of ``namespace``, expired or not, in key order
        (for maintenance: key rotation, check, backup)."""
        ...

    def key_ids(self) -> set[str] | None:
        """The keyring key ids recorded as sealing values here, or None when the
        record was never completed (a store written by a clawstate that did not
        record them: the facade then surveys the values once).  The facade refuses
        to open a store whose keyring lacks one of them (docs/configuration.md)."""
        ...

    def record_key_ids(self, kids: Iterable[str]) -> None:
        """Durably add ``kids`` to the record and mark it complete; idempotent.
        Committed before it returns: the facade calls it *before* the first value
        sealed under a new key id is written."""
        ...

    def close(self) -> None: ...
