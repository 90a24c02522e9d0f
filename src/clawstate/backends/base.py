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
``writes``, through the same path (see :mod:`clawstate.backends._apply`), and
they answer the reads of :class:`EventLog`.  The facade never hands ``events``
to a backend without the capability.  :class:`EventLog` lives here, beside
:class:`Backend`, rather than in :mod:`clawstate.events`: it is a seam the
*backends* implement, and a backend must never import the layer above the
facade (that was the ``backends ⇄ events`` import circle).  Each backend keeps
its event-log code in its own package (``backends/<name>/events.py``).

Every backend class is built the same way, by :mod:`clawstate._open`'s scheme
table: ``Cls.from_url(url, options)`` with the parsed URL (backend-specific
parameters such as PostgreSQL's ``?pool_max=`` travel in it, one value per URL,
so two backends of one store can differ) and one :class:`BackendOptions` (what
the store's configuration says to every backend).

Indexes: the facade calls ``ensure_index(namespace, fields)`` once per namespace
it opens whose policy lists ``indexes`` (``[namespaces.<name>]`` or
``[namespaces."*"]``).  A backend that can index creates what is missing and
returns the index names (issue 12: every backend indexes; which index serves a
filter is decided once, in :mod:`clawstate.query.indexable`).

Every backend runs the conformance suite in :mod:`clawstate.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from ..types import Change, QueryPlan

if TYPE_CHECKING:
    from ..config import Config, ParsedUrl
    from ..query import Query

__all__ = [
    "EXPECT_ANY",
    "EXPECT_EXISTS",
    "NO_DOCUMENT",
    "OP_APPEND",
    "OP_DELETE",
    "OP_EXPIRE",
    "OP_FENCE",
    "OP_NAMES",
    "OP_PUT",
    "OP_REWRAP",
    "Backend",
    "BackendClass",
    "BackendOptions",
    "Capabilities",
    "EventLog",
    "EventRecord",
    "EventRow",
    "EventWrite",
    "Outcome",
    "Progress",
    "QueryResult",
    "StoredItem",
    "StreamMeta",
    "StreamRow",
    "SweepResult",
    "Write",
    "WriteUnit",
    "compiled_plan",
    "visible_from",
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
#: A fencing check, written nowhere: the live row at ``(namespace, key)`` — a lock's
#: fence row, whose version is the newest fencing token granted for that lock — must
#: exist at exactly version ``if_version`` (the token the writer holds: a newer lease
#: has a higher version, and a token no lease was granted — a forged one — matches no
#: version), else the whole unit is refused with :class:`~clawstate.errors.FencingError`.
#: Checked in the unit's own transaction, so no newer lease can be granted between the
#: check and the writes it guards.  Its outcome has ``applied`` True and ``version`` the row's.
OP_FENCE = 5
OP_NAMES: dict[int, str] = {OP_PUT: "put", OP_DELETE: "delete", OP_EXPIRE: "expire"}


class _NoDocument:
    """The type of :data:`NO_DOCUMENT` (a sentinel: ``None`` is a JSON document)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DOCUMENT"

    def __reduce__(self) -> str:
        return "NO_DOCUMENT"


#: ``Write.doc`` when the write carries no plaintext document (see :class:`Write`).
NO_DOCUMENT: Any = _NoDocument()


class Write(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One key's write inside a unit.

    ``if_version`` demands the live item has that version; ``if_absent`` demands
    there is no live item.  For ``OP_REWRAP`` ``if_version`` and ``seq`` pin the
    exact stored row being re-encoded.  ``keep_ttl`` (a put) keeps the live item's
    ``expires_at`` instead of ``expires_at`` (which is then None); with no live item
    the put has no expiry.  It is decided inside the write's transaction, so no
    concurrent write can slip between reading the old expiry and keeping it.

    ``doc`` (a put) is the value ``value`` encodes, handed over by the codec
    (:meth:`clawstate.codec.Codec.encode_document`) so that a backend keeping a
    queryable copy (``capabilities.documents``: PostgreSQL's ``jsonb``) need not
    decode its own bytes again.  It is only ever set for a value stored as
    plaintext msgpack/JSON: the codec never hands out the document of an encrypted
    value, and a backend must still read the stored header and keep no copy of an
    encrypted value whatever ``doc`` says.  :data:`NO_DOCUMENT` otherwise — the
    backend then derives the copy from ``value`` as before.
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
    doc: Any = NO_DOCUMENT


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
    a metadata-only change), except the fields named in ``keep_meta``, which keep
    their stored values (a merge, decided inside the write so that two writers
    setting different fields cannot undo each other).  ``delete`` is a soft delete:
    ``events`` holds the tombstone, and afterwards ``truncate_before`` hides it and
    every earlier event.
    """

    stream: str
    expected: int
    events: list[EventRecord]
    meta: StreamMeta | None = None
    delete: bool = False
    keep_meta: tuple[str, ...] = ()


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
    #: keeps the event store (``WriteUnit.events`` and :class:`EventLog`)
    events: bool = False
    #: keeps a queryable copy of plaintext values and so wants ``Write.doc``
    documents: bool = False


class BackendOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What the store's configuration tells every backend it opens (one typed
    object for every ``from_url``).  What differs per backend URL (PostgreSQL's
    ``schema``/``pool_max``, Redis's ``prefix``…) stays in the URL.

    ``create=False`` opens only a store that exists and writes nothing otherwise:
    a missing store is a :class:`~clawstate.errors.ConfigError` "no store at …"
    (the CLI's read commands).  ``durability`` is the embedded file's sync mode
    (server stores are as durable as their server is configured).
    ``max_value_bytes`` bounds what the backend decodes (PostgreSQL decompresses
    values to build its ``jsonb`` copy).  ``max_batch`` bounds a group commit.
    """

    durability: str = "process"
    create: bool = True
    max_value_bytes: int = 16 * 1024 * 1024
    max_batch: int = 512

    @classmethod
    def from_config(cls, config: Config, *, create: bool = True) -> BackendOptions:
        """The options ``config`` gives its backends."""
        return cls(
            durability=config.durability,
            create=create,
            max_value_bytes=config.limits.max_value_bytes,
        )


#: Turns a stored item into its decoded value (the facade's codec), for backends
#: that evaluate queries in Python.
Decoder = Callable[[StoredItem], Any]

#: ``progress(done, total)``: how many rows a long maintenance step (an index backfill)
#: has done of how many; called from the thread doing the work.
Progress = Callable[[int, int], None]


def compiled_plan(
    backend: str, found: int, opaque: int, limit: int, index: str | None, detail: list[str]
) -> QueryPlan:
    """The plan of a page a SQL backend compiled: ``found`` rows came from the SQL
    (``limit + 1`` of them means it stopped early) and ``opaque`` encrypted rows, which
    SQL cannot filter, were read and filtered in Python on top — then the page is a
    scan; otherwise the index that served it (``index``), or plain SQL."""
    return QueryPlan(
        backend,
        "scan" if opaque else ("index" if index else "sql"),
        found + opaque,
        found > limit,
        index,
        detail,
    )


class QueryResult(msgspec.Struct, frozen=True, gc=False):
    """What :meth:`Backend.query` answers: one page of stored items, the next page's
    token (``None`` on the last page) and how the page was found (always built — its
    counters are cheap; the database's own plan text only when ``explain`` asked)."""

    items: list[StoredItem]
    token: str | None
    plan: QueryPlan


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
        self,
        namespace: str,
        query: Query,
        decode: Decoder,
        now: float,
        explain: bool = False,
        max_scan: int | None = None,
    ) -> QueryResult:
        """One page of the query's matches, the next page token and the plan.

        Rows arrive in the query's order; without a sort that is key order, and the
        read stops after ``limit + 1`` matches (:func:`clawstate.query.run_query`'s
        early exit).  ``explain`` adds the database's own plan lines to the plan
        (an extra round trip; off on the hot path).  ``max_scan`` (None: no bound)
        refuses, with :func:`clawstate.query.scan_refused`, a query that no index
        serves and that would read more than that many rows."""
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

    def ensure_index(
        self, namespace: str, fields: Sequence[str], progress: Progress | None = None
    ) -> list[str]:
        """Make queries filtering on ``fields`` (dotted paths) in ``namespace`` use an
        index; return the names of the indexes serving them, in ``fields`` order.
        Idempotent.  An index added to a namespace that holds data is backfilled
        while writes go on; ``progress(done, total)`` hears how far (rows), and a
        query is served by the index only once it is complete (until then, and after
        a kill during the backfill, the query reads without it and answers the same)."""
        ...

    def start_background(self) -> None:
        """Start the backend's own background work (SQLite: giving old rows their JSON
        copy and finishing interrupted index builds), once the facade has accepted the
        open: an open the facade refuses (a keyring that does not match the store)
        must change nothing.  Idempotent; a no-op where there is no such work."""
        ...

    def close(self) -> None: ...


class BackendClass(Protocol):
    """What :mod:`clawstate._open`'s scheme table holds: a backend class."""

    name: str

    @classmethod
    def from_url(cls, url: ParsedUrl, options: BackendOptions) -> Backend:
        """The backend ``url`` names, under ``options``."""
        ...


# -- the event store's read side -------------------------------------------------------

#: ``(position, stream, version, id, type, schema_version, data, metadata, recorded_at)``;
#: ``data`` and ``metadata`` are JSON text (``metadata`` None when empty).  Rows cross
#: the seam as plain tuples in this fixed order: the facade decodes them into
#: :class:`~clawstate.RecordedEvent` in one tight loop (one object per event, not two).
EventRow = tuple[int, str, int, str, str, int, str, "str | None", float]

#: ``(stream, version, position of its last event)``: one stream in a listing.
StreamRow = tuple[str, int, int]


@runtime_checkable
class EventLog(Protocol):
    """Event reads a backend with ``capabilities.events`` provides.

    The write side is not here: appends travel in ``WriteUnit.events`` through the
    backend's one write path (:func:`clawstate.backends._apply.apply_unit` over an
    :class:`~clawstate.backends._apply.EventRowAccess`).  What a backend adds for
    events is therefore (1) the ``EventRowAccess`` methods on its row-access object,
    (2) these read methods, (3) schema, sweep and check for the event tables, and
    (4) ``capabilities.events = True``; see ``backends/sqlite/events.py``,
    ``backends/postgres/events.py`` and ``backends/memory/events.py``.
    """

    def read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int, now: float
    ) -> list[EventRow]:
        """The stream's *visible* events (not hidden by its metadata at ``now``):
        forwards from ``from_version`` (None: the first) in version order, or
        backwards from it (None: the last), at most ``limit``."""
        ...

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[EventRow], int]:
        """Events with ``position > after`` whose stream starts with ``stream_prefix``
        and whose type is in ``types`` (empty: any), in position order, at most
        ``limit``; and the position scanned up to — a watermark: no event at or
        below it that matches is missing from this or an earlier page, so a reader
        may resume after it (this is how filtered readers move past other events)."""
        ...

    def last_position(self) -> int:
        """The newest committed position (0: none); every lower one is committed too."""
        ...

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Block until an event with ``position > after`` commits, or ``timeout``."""
        ...

    def stream_state(self, stream: str) -> tuple[int, StreamMeta | None]:
        """The stream's version (0: no events) and its metadata."""
        ...

    def streams(self, prefix: str, after: str | None, limit: int) -> list[StreamRow]:
        """Streams holding at least one stored event whose name starts with ``prefix``
        and sorts after ``after`` (UTF-8 byte order), in that order, at most ``limit``:
        ``(stream, version, position of its last event)``.  The sweep always keeps a
        stream's last event, so a stream once appended to stays listed (a deleted
        stream too, at its tombstone's version)."""
        ...

    def event_stats(self) -> dict[str, Any]:
        """``first_position``, ``last_position``, ``events`` (rows stored) and
        ``streams_with_metadata``."""
        ...


def visible_from(meta: StreamMeta | None, last: int, aged: int) -> int:
    """The lowest version ``meta`` leaves visible in a stream whose last version is
    ``last`` and whose newest event older than ``max_age`` has version ``aged``.

    Hiding is always a prefix of the stream — even by age, where it hides every
    version up to the newest too-old one (recording times of concurrent appends
    need not grow with versions) — so a stream never shows a hole.  Every event
    backend applies this one rule.
    """
    low = 1
    if meta is not None:
        if meta.truncate_before is not None:
            low = max(low, meta.truncate_before)
        if meta.max_count is not None:
            low = max(low, last - meta.max_count + 1)
        if meta.max_age is not None:
            low = max(low, aged + 1)
    return low
