"""``store.events``: append, read, subscribe — the event store's facade.

Like the key/value facade, it owns validation and encoding and hands the
backend plain records: an append becomes an :class:`~clawstate.backends.base.EventWrite`
in a :class:`~clawstate.backends.base.WriteUnit`, so it is group-committed,
atomic with any state writes of the same transaction, and covered by the same
crash guarantees as every other write.  Reads come back from the backend as
tuples and are decoded here in one loop (JSON via msgspec), with upcasters
applied on the way out.

Event data is stored as JSON text rather than through the value codec: events
are the audit trail, so they stay readable and queryable in place
(``json_extract`` on SQLite, ``jsonb`` on PostgreSQL) and travel unchanged to the
HTTP and CLI layers, which speak JSON; msgspec decodes JSON about as fast as
msgpack.  Snapshots, checkpoints and read models — state, not history — do go
through the codec (they are items in namespaces).
"""

from __future__ import annotations

import base64
import enum
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from .._validate import (
    INT64_MAX,
    check_collection,
    check_event_filter,
    check_event_json,
    check_flag,
    check_int,
    check_key,
    check_limit,
    check_position,
    shown,
)
from ..backends.base import (
    EXPECT_ANY,
    EXPECT_EXISTS,
    EventRecord,
    EventWrite,
    Outcome,
    StreamMeta,
    WriteUnit,
)
from ..config import DEFAULT_BACKEND
from ..config._common import MAX_TTL_SECONDS
from ..errors import InvalidRequest
from ..types import ANY, AppendResult, Event, ExpectedVersion, RecordedEvent, new_event_id
from ._common import PROJECTIONS_NS as PROJECTIONS_NS
from ._common import SNAPSHOTS_NS as SNAPSHOTS_NS
from ._common import SUBSCRIPTIONS_NS as SUBSCRIPTIONS_NS
from ._common import SYSTEM_NAMESPACES, EventFilter
from .aggregates import Repository
from .backend import EventLog, EventRow, event_log
from .projections import Projection, ProjectionRunner, ProjectionStatus, projection_status
from .snapshots import Snapshots
from .subscriptions import LEASE, Subscription, subscription_status
from .upcasting import Upcasters

if TYPE_CHECKING:
    from ._host import HostStore, HostTransaction
    from .aggregates import Aggregate

__all__ = [
    "DELETED",
    "MAX_TYPE_LENGTH",
    "SYSTEM_NAMESPACES",
    "EventFilter",
    "EventStore",
    "StreamInfo",
    "StreamMetadata",
    "StreamPage",
    "TxEvents",
]

#: The type of the tombstone ``delete_stream`` appends (``$``-types are clawstate's own).
DELETED = "$deleted"
#: Longest event type, in characters.
MAX_TYPE_LENGTH = 256
#: The largest ``schema_version``: PostgreSQL keeps it in an ``integer`` column (32-bit),
#: and every backend takes the same values.
MAX_SCHEMA_VERSION = (1 << 31) - 1
#: The largest ``expected_version``: the append writes ``expected + 1``, a 64-bit integer.
MAX_EXPECTED = INT64_MAX - 1

_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_EXPECTED = {"any": EXPECT_ANY, "no_stream": 0, "stream_exists": EXPECT_EXISTS}
_json_decode = msgspec.json.decode

A = TypeVar("A", bound="Aggregate")


class _Keep(enum.Enum):
    KEEP = "keep"


#: The default of ``set_stream_metadata``'s settings: an omitted setting keeps its value.
KEEP = _Keep.KEEP
_META_FIELDS = ("max_age", "max_count", "truncate_before")


class StreamMetadata(msgspec.Struct, frozen=True):
    """A stream's version (0: no events) and retention settings.

    ``deleted`` is True after :meth:`EventStore.delete_stream` until the stream
    gets new events (its versions continue after the tombstone's).
    """

    stream: str
    version: int
    max_age: float | None = None
    max_count: int | None = None
    truncate_before: int | None = None

    @property
    def deleted(self) -> bool:
        return self.version > 0 and (self.truncate_before or 0) > self.version


class StreamInfo(msgspec.Struct, frozen=True):
    """One stream in a :meth:`EventStore.streams` listing: its name, its version (the
    last event's, hidden ones and a deletion's tombstone counted) and the global
    position of its last event.  Whether it is deleted: :meth:`EventStore.stream_metadata`."""

    stream: str
    version: int
    last_position: int


class StreamPage(msgspec.Struct, frozen=True):
    """A page of :meth:`EventStore.streams`; ``cursor`` (None: the last page) resumes it."""

    streams: list[StreamInfo]
    cursor: str | None = None


def _stream_cursor(cursor: Any) -> str | None:
    """The stream name a ``streams(cursor=…)`` resumes after (the cursor is opaque)."""
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not cursor:
        raise InvalidRequest("cursor", "must be the cursor of a previous streams() page")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        return raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("cursor", "must be the cursor of a previous streams() page") from None


def expected_code(expected: Any) -> int:
    """The backend code of a public ``expected_version`` (:data:`~clawstate.ExpectedVersion`).

    A version is bounded like every other 64-bit number (:func:`check_int`): past it the
    driver would raise ``OverflowError`` instead of a refusal naming the field.  The
    bound is 2**63-2, because the append writes version ``expected + 1``.
    """
    if type(expected) is int:
        if 0 <= expected <= MAX_EXPECTED:
            return expected
    elif isinstance(expected, str):
        code = _EXPECTED.get(expected)
        if code is not None:
            return code
    raise InvalidRequest(
        "expected_version",
        f"must be a version (an integer from 0 to {MAX_EXPECTED}), clawstate.NO_STREAM, "
        f"STREAM_EXISTS or ANY; got {shown(expected)}",
        limit=MAX_EXPECTED,
    )


def _check_stream(stream: Any, max_bytes: int) -> None:
    check_key(stream, max_bytes, field="stream")


def _event_id(i: int, eid: Any) -> str:
    if type(eid) is str and _ID_RE.match(eid):
        return eid
    if isinstance(eid, uuid.UUID):
        return str(eid)
    if isinstance(eid, str):
        try:
            return str(uuid.UUID(eid))
        except ValueError:
            pass
    raise InvalidRequest(f"events[{i}].id", f"must be a UUID (str or uuid.UUID), got {eid!r}")


class EventStore:
    """The event store of a :class:`~clawstate.Store` (``store.events``).

    Streams are named sequences of events; every event also gets a global
    position, gap-free and in commit order across all streams.  It lives on the
    store's default backend; its snapshots, checkpoints and subscription state
    live there too, in the ``_snapshots``, ``_projections`` and ``_subscriptions``
    namespaces.
    """

    def __init__(self, store: HostStore, backend_name: str = DEFAULT_BACKEND) -> None:
        backend = store._backend_named(backend_name, "*")
        self._log: EventLog = event_log(backend, backend_name)
        self._backend = backend
        self.backend_name = backend_name
        self._store = store
        self._clock = store._clock
        limits = store.config.limits
        self._max_bytes = limits.max_value_bytes
        self._max_batch = limits.max_batch
        self._max_stream = limits.max_key_bytes
        #: upcasters applied to every event read through this store
        self.upcasters = Upcasters()
        self._snapshots: Snapshots | None = None

    def __repr__(self) -> str:
        return f"<EventStore on {self._backend.name}>"

    @property
    def store(self) -> HostStore:
        """The store this event store lives in (a :class:`~clawstate.Store`)."""
        return self._store

    # -- encoding --------------------------------------------------------------------

    def _records(self, events: Any) -> list[EventRecord]:
        if type(events) is not list:
            if isinstance(events, Event | str | bytes | dict) or not isinstance(events, Iterable):
                raise InvalidRequest(
                    "events", f"must be a list of clawstate.Event, got {type(events).__name__}"
                )
            events = list(events)
        if not events:
            raise InvalidRequest("events", "must not be empty")
        if len(events) > self._max_batch:
            raise InvalidRequest(
                "events",
                f"{len(events)} events; the limit is {self._max_batch} per append",
                limit=self._max_batch,
            )
        out: list[EventRecord] = []
        max_bytes = self._max_bytes
        for i, ev in enumerate(events):
            if type(ev) is not Event and not isinstance(ev, Event):
                raise InvalidRequest(
                    f"events[{i}]", f"must be a clawstate.Event, got {type(ev).__name__}"
                )
            t = ev.type
            if type(t) is not str or not t or len(t) > MAX_TYPE_LENGTH or t[0] == "$":
                raise InvalidRequest(
                    f"events[{i}].type",
                    f"must be a non-empty string of at most {MAX_TYPE_LENGTH} characters, not "
                    f"starting with '$' (reserved), got {t!r}",
                )
            if not t.isprintable():
                raise InvalidRequest(f"events[{i}].type", f"must be printable, got {t!r}")
            data = check_event_json(i, "data", ev.data)
            meta = None if ev.metadata is None else check_event_json(i, "metadata", ev.metadata)
            size = len(data) + (len(meta) if meta is not None else 0)
            if size > max_bytes:
                raise InvalidRequest(
                    f"events[{i}]",
                    f"is {size} bytes of JSON (data + metadata); the limit is {max_bytes}",
                    limit=max_bytes,
                )
            sv = ev.schema_version
            if type(sv) is not int or not 1 <= sv <= MAX_SCHEMA_VERSION:
                check_int(sv, f"events[{i}].schema_version", 1, MAX_SCHEMA_VERSION)
            out.append(
                EventRecord(
                    _event_id(i, ev.id),
                    t,
                    data.decode(),
                    None if meta is None or meta == b"{}" else meta.decode(),
                    sv,
                )
            )
        if len(out) > 1 and len({r.id for r in out}) != len(out):
            seen: set[str] = set()
            for i, r in enumerate(out):
                if r.id in seen:
                    raise InvalidRequest(f"events[{i}].id", f"{r.id} appears twice in the append")
                seen.add(r.id)
        return out

    def _event_write(self, stream: Any, events: Any, expected_version: Any) -> EventWrite:
        """The validated append."""
        _check_stream(stream, self._max_stream)
        code = expected_code(expected_version)
        return EventWrite(stream, code, self._records(events))

    def _write(self, writes: list[EventWrite]) -> list[Outcome]:
        return self._backend.write(WriteUnit([], self._clock(), events=writes))

    def _meta_write(
        self,
        stream: Any,
        max_age: Any,
        max_count: Any,
        truncate_before: Any,
        expected_version: Any,
    ) -> EventWrite:
        """The validated metadata change: given settings replace, ``KEEP`` ones are
        merged inside the write (``EventWrite.keep_meta``), ``None`` clears."""
        _check_stream(stream, self._max_stream)
        code = expected_code(expected_version)
        if (
            max_age is not None
            and max_age is not KEEP
            and (
                isinstance(max_age, bool)
                or not isinstance(max_age, int | float)
                or not 0 < max_age <= MAX_TTL_SECONDS  # also refuses NaN and infinity
            )
        ):
            raise InvalidRequest(
                "max_age",
                f"must be a number of seconds > 0 and <= {MAX_TTL_SECONDS} (10 years), "
                f"got {max_age!r}",
            )
        for field, value in (("max_count", max_count), ("truncate_before", truncate_before)):
            if value is not None and value is not KEEP:
                check_int(value, field, 1)
        given = (max_age, max_count, truncate_before)
        keep = tuple(f for f, v in zip(_META_FIELDS, given, strict=True) if v is KEEP)
        meta = StreamMeta(
            None if max_age is None or max_age is KEEP else float(max_age),
            None if max_count is KEEP else max_count,
            None if truncate_before is KEEP else truncate_before,
        )
        return EventWrite(stream, code, [], meta, keep_meta=keep)

    # -- writes ----------------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Append ``events`` to ``stream`` atomically if its version is ``expected_version``.

        Raises :class:`~clawstate.WrongExpectedVersion` (nothing written) when it is
        not — unless these are the same event ids appended before, in which case the
        first append's result is returned and nothing is written twice.
        """
        o = self._write([self._event_write(stream, events, expected_version)])[0]
        return AppendResult(o.version, o.seq)

    def append_many(
        self, appends: Iterable[tuple[str, Sequence[Event], ExpectedVersion]]
    ) -> list[AppendResult]:
        """Several appends, to one or more streams, committed atomically: if one
        expected version fails, nothing is written.  ``appends`` holds
        ``(stream, events, expected_version)`` triples."""
        check_collection(appends, "appends", "a list of (stream, events, expected_version)")
        writes: list[EventWrite] = []
        for i, item in enumerate(appends):
            if not isinstance(item, tuple) or len(item) != 3:
                raise InvalidRequest(
                    f"appends[{i}]", "must be a (stream, events, expected_version) tuple"
                )
            writes.append(self._event_write(*item))
            if len(writes) > self._max_batch:
                raise InvalidRequest(
                    "appends", f"more than {self._max_batch} appends", limit=self._max_batch
                )
        if not writes:
            return []
        return [AppendResult(o.version, o.seq) for o in self._write(writes)]

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = KEEP,
        max_count: int | Literal[_Keep.KEEP] | None = KEEP,
        truncate_before: int | Literal[_Keep.KEEP] | None = KEEP,
        expected_version: ExpectedVersion = ANY,
    ) -> StreamMetadata:
        """Change the stream's retention settings: the ones given are set, the ones
        omitted keep their values (setting ``truncate_before`` leaves ``max_count``
        alone), and ``None`` clears one.  The merge happens inside the write, so two
        callers setting different fields never undo each other.

        Events the settings exclude are hidden from stream reads at once and removed
        by the next sweep.  The global log (``read_all``, subscriptions) keeps
        showing events until the sweep removes them: it is the audit trail.  Returns
        the stream's metadata after the change."""
        write = self._meta_write(stream, max_age, max_count, truncate_before, expected_version)
        o = self._write([write])[0]
        meta = write.meta
        assert meta is not None
        if write.keep_meta:
            stored = self._log.stream_state(stream)[1]
            meta = stored if stored is not None else StreamMeta()
        return StreamMetadata(stream, o.version, meta.max_age, meta.max_count, meta.truncate_before)

    def delete_stream(
        self, stream: str, *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Soft-delete ``stream``: a ``$deleted`` tombstone is appended (visible in the
        global log, so subscribers and projections learn of it) and every event up
        to it is hidden from stream reads, then removed by the sweep.  Appending
        again revives the stream; its versions continue after the tombstone."""
        _check_stream(stream, self._max_stream)
        code = expected_code(expected_version)
        tombstone = EventRecord(new_event_id(), DELETED, "{}")
        o = self._write([EventWrite(stream, code, [tombstone], delete=True)])[0]
        return AppendResult(o.version, o.seq)

    # -- reads -----------------------------------------------------------------------

    def _decode(self, rows: list[EventRow]) -> list[RecordedEvent]:
        dec = _json_decode
        out = [
            RecordedEvent(
                r[1], r[2], r[0], r[4], dec(r[6]), dec(r[7]) if r[7] else {}, r[3], r[8], r[5]
            )
            for r in rows
        ]
        if self.upcasters:
            upcast = self.upcasters.upcast
            out = [upcast(e) for e in out]
        return out

    def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """The stream's visible events from ``from_version`` (default: the first;
        backwards: the last), at most ``limit`` (default: all).  An unknown stream
        reads as empty."""
        _check_stream(stream, self._max_stream)
        if from_version is not None:
            check_position(from_version, "from_version")
        if limit is not None:
            check_int(limit, "limit", 1)
        check_flag(backwards, "backwards")  # "no" is truthy
        now = self._clock()
        if limit is not None:
            return self._decode(
                self._log.read_stream(stream, from_version, bool(backwards), limit, now)
            )
        out: list[RecordedEvent] = []
        page = 10_000
        start = from_version
        while True:
            rows = self._log.read_stream(stream, start, bool(backwards), page, now)
            out += self._decode(rows)
            if len(rows) < page:
                return out
            start = rows[-1][2] - 1 if backwards else rows[-1][2] + 1

    def _read_rows(
        self, after: int, limit: int, flt: EventFilter | None
    ) -> tuple[list[RecordedEvent], int]:
        if flt is None:
            rows, end = self._log.read_all(after, limit, "", ())
        else:
            rows, end = self._log.read_all(after, limit, flt.stream_prefix, flt.types)
        return self._decode(rows), end

    def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        """Events after ``from_position`` (exclusive, like ``watch(from_seq)``: pass the
        last position you processed; 0 reads from the start) in global order, at
        most ``limit``, optionally filtered by stream prefix and event types."""
        after = check_position(from_position, "from_position")
        limit = check_limit(limit, self._store.config.limits.max_query_limit)
        check_event_filter(filter)
        return self._read_rows(after, limit, filter)[0]

    @property
    def last_position(self) -> int:
        """The newest committed global position (0: no events yet)."""
        return self._log.last_position()

    def streams(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> StreamPage:
        """Streams whose name starts with ``prefix``, in name order (UTF-8 bytes), at
        most ``limit`` per page; pass the page's ``cursor`` back for the next one.

        Every stream that holds an event is listed (retention always keeps a stream's
        last event), deleted ones too, at their tombstone's version."""
        if not isinstance(prefix, str):
            raise InvalidRequest("prefix", f"must be a string, got {type(prefix).__name__}")
        if prefix:
            _check_stream(prefix, self._max_stream)
        limit = check_limit(limit, self._store.config.limits.max_query_limit)
        after = _stream_cursor(cursor)
        rows = self._log.streams(prefix, after, limit)
        page = [StreamInfo(name, version, position) for name, version, position in rows]
        if len(rows) < limit:
            return StreamPage(page)
        return StreamPage(page, base64.urlsafe_b64encode(rows[-1][0].encode()).decode().rstrip("="))

    def stream_metadata(self, stream: str) -> StreamMetadata:
        """The stream's version and retention settings."""
        _check_stream(stream, self._max_stream)
        version, meta = self._log.stream_state(stream)
        if meta is None:
            return StreamMetadata(stream, version)
        return StreamMetadata(stream, version, meta.max_age, meta.max_count, meta.truncate_before)

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
        lease: float | None = None,
    ) -> Subscription:
        """Past events after ``from_position`` (``"end"``: only new ones), then new ones
        as they commit: see :class:`~clawstate.events.subscriptions.Subscription`.

        With ``name`` the subscription is durable: it resumes after its stored
        checkpoint (``from_position`` applies only the first time) and delivers
        at least once, to one consumer at a time: it holds the name for ``lease``
        seconds (default :data:`~clawstate.events.subscriptions.LEASE`), renewed
        while it runs, so a crashed consumer's name frees up when its lease ends."""
        return Subscription(
            self,
            from_position,
            filter=filter,
            name=name,
            timeout=timeout,
            batch=batch,
            checkpoint_every=checkpoint_every,
            lease=LEASE if lease is None else lease,
        )

    # -- snapshots, aggregates, projections ------------------------------------------------

    @property
    def snapshots(self) -> Snapshots:
        """Latest snapshot per stream (see :class:`~clawstate.events.snapshots.Snapshots`)."""
        if self._snapshots is None:
            self._snapshots = Snapshots(self)
        return self._snapshots

    def repository(self, cls: type[A], *, snapshot_every: int | None = None) -> Repository[A]:
        """Load and save ``cls`` aggregates (a :class:`~clawstate.events.Repository`)."""
        return Repository(self, cls, snapshot_every=snapshot_every)

    def projection_runner(
        self, projections: Iterable[Projection], *, batch: int = 500
    ) -> ProjectionRunner:
        """A runner for ``projections`` (a :class:`~clawstate.events.ProjectionRunner`)."""
        return ProjectionRunner(self, list(projections), batch=batch)

    def projection_status(self) -> list[ProjectionStatus]:
        """Every projection that has a checkpoint, with its lag."""
        return projection_status(self)

    def stats(self) -> dict[str, Any]:
        """The log's positions and size, and every projection's and durable
        subscription's position and lag (events and seconds)."""
        out: dict[str, Any] = {"backend": self.backend_name, **self._log.event_stats()}
        out["projections"] = {s.name: msgspec.structs.asdict(s) for s in projection_status(self)}
        out["subscriptions"] = subscription_status(self)
        return out


class TxEvents:
    """``tx.events``: appends buffered in a transaction, committed with its writes.

    After the commit, ``tx.appended`` holds one :class:`~clawstate.AppendResult` per
    append, in order.  If an expected version fails, the whole transaction —
    state writes included — is refused with :class:`~clawstate.WrongExpectedVersion`.
    """

    def __init__(self, tx: HostTransaction, events: EventStore) -> None:
        self._tx = tx
        self._events = events

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = KEEP,
        max_count: int | Literal[_Keep.KEEP] | None = KEEP,
        truncate_before: int | Literal[_Keep.KEEP] | None = KEEP,
        expected_version: ExpectedVersion = ANY,
    ) -> None:
        """Change the stream's retention settings when the transaction commits (merged
        as :meth:`EventStore.set_stream_metadata` does).  It takes its place in
        ``tx.appended`` like an append: its entry's ``position`` is 0."""
        events = self._events
        write = events._meta_write(stream, max_age, max_count, truncate_before, expected_version)
        meta = write.meta
        assert meta is not None
        settings = [meta.max_age, meta.max_count, meta.truncate_before]
        parts = ["meta", stream, write.expected, settings, list(write.keep_meta)]
        self._tx._add_events(write, parts, events._backend)

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> None:
        write = self._events._event_write(stream, events, expected_version)
        # The fingerprint of an idempotent transaction leaves the ids out: a retried
        # transaction rebuilds its Event objects, and with them new ids.
        parts = [
            "append",
            stream,
            write.expected,
            [(r.type, r.data, r.metadata) for r in write.events],
        ]
        self._tx._add_events(write, parts, self._events._backend)
