"""``store.events`` over HTTP: the sync and async faces of the same calls.

Everything the in-process :class:`~clawstate.events.EventStore` offers is here, with its
signatures, results and errors: appends (one stream, several atomically, inside a
transaction through ``tx.events``), reads, stream metadata, soft delete, the log's end
and statistics, subscriptions, snapshots, and the aggregate repository and projection
runner of :mod:`clawstate.events`, run in this process against the remote store.

The repository, the projection runner and the durable subscription are the in-process
classes themselves, not copies: they are written against the event store's small
source surface (``store`` with ``_system_namespace``, ``_clock`` and ``transaction``;
``_read_rows``, ``_log``, ``_decode``, ``_clock``, ``_max_stream``, ``snapshots``,
``last_position``), which :class:`RemoteEvents` provides over the routes.  So a
projection's checkpoint and a durable subscription's checkpoint and lease live on the
server, in the same ``_projections`` / ``_subscriptions`` namespaces as in-process
ones.  The log's ``wait_for_events`` is a long poll (``GET /v1/events?wait=``), which
the server parks on the log's notifier.  A subscription without a name follows the
server-sent event stream instead (:class:`RemoteSubscription`).

Upcasters registered on ``events.upcasters`` apply here, on the way out, as they do
in-process: the server hands the events over as stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, NoReturn, ParamSpec, Protocol, TypeVar

import msgspec

from .._awaitable import BUFFERED, Buffered
from .._validate import check_int, check_key
from ..config import Limits
from ..errors import BackendUnavailable, InvalidRequest
from ..events.backend import EventRow
from ..events.projections import Projection, ProjectionRunner, ProjectionStatus
from ..events.snapshots import Snapshot
from ..events.store import (
    KEEP,
    PROJECTIONS_NS,
    SUBSCRIPTIONS_NS,
    EventFilter,
    StreamMetadata,
    StreamPage,
    _Keep,
)
from ..events.subscriptions import Subscription
from ..events.upcasting import Upcasters
from ..types import ANY, AppendResult, Event, ExpectedVersion, Item, RecordedEvent
from ._calls import T, _Call, _TxBuffer
from ._event_calls import (
    _append_call,
    _append_many_call,
    _check_events,
    _check_snapshot,
    _delete_projection_call,
    _delete_snapshot_call,
    _delete_stream_call,
    _event_stats_call,
    _get_checkpoint_call,
    _load_snapshot_call,
    _page_call,
    _position_call,
    _projection_status_call,
    _read_call,
    _save_snapshot_call,
    _set_stream_meta_call,
    _start_position,
    _stream_meta_call,
    _streams_call,
    _sub_args,
    _SubSpec,
)
from ._sse import AsyncSubscriptionStream, SubscriptionStream

if TYPE_CHECKING:
    from ..events.aggregates import Aggregate, Repository
    from ..events.aio import AsyncProjectionRunner, AsyncRepository, AsyncSubscription
    from ._transport import _AsyncTransport, _Transport

    A = TypeVar("A", bound=Aggregate)

__all__ = [
    "AsyncRemoteEvents",
    "AsyncRemoteSnapshots",
    "AsyncRemoteSubscription",
    "AsyncRemoteTxEvents",
    "RemoteEvents",
    "RemoteSnapshots",
    "RemoteSubscription",
    "RemoteTxEvents",
]

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
P = ParamSpec("P")
R = TypeVar("R")


async def _in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a sync call of the remote face on a worker thread (the ``RunsSync`` the
    in-process async wrappers take)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _upcast(upcasters: Upcasters, events: list[RecordedEvent]) -> list[RecordedEvent]:
    if not upcasters:
        return events
    up = upcasters.upcast
    return [up(e) for e in events]


# -- what these faces read from their host ------------------------------------------------
#
# ``store.events`` and ``tx.events`` are built by the facades in ``_sync`` and ``_async``;
# they are typed here against the few members they read from their host, not the facade
# classes, so that the import runs one way: ``_sync``/``_async`` -> ``_events``.


class _CheckpointTx(Protocol):
    """The transaction a checkpoint write runs in (:class:`RemoteTransaction`)."""

    @property
    def result(self) -> list[Item | bool]: ...

    def _system_namespace(self, name: str) -> Any: ...

    def __enter__(self) -> _CheckpointTx: ...

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...


class _Host(Protocol):
    """What both faces read from their store: the server's limits, and whether it was
    closed (a read failing after that is BackendUnavailable)."""

    @property
    def _limits(self) -> Limits: ...

    @property
    def _closed(self) -> bool: ...


class _SyncHost(_Host, Protocol):
    """What the sync faces read from a :class:`RemoteStore`."""

    @property
    def _t(self) -> _Transport: ...

    @property
    def events(self) -> RemoteEvents: ...

    def transaction(self, *, idempotency_key: str | None = None) -> _CheckpointTx: ...


class _AsyncHost(_Host, Protocol):
    """What the async faces read from an :class:`AsyncRemoteStore`."""

    @property
    def _t(self) -> _AsyncTransport: ...

    @property
    def _sync(self) -> _SyncHost: ...


class _TxHost(Protocol):
    """What ``snapshots.save_in`` reads from a remote transaction (sync or async)."""

    @property
    def _buf(self) -> _TxBuffer: ...


# -- subscriptions ------------------------------------------------------------------------


class _SubscriptionFace:
    """What both faces of a subscription without a name share: where it stands, what
    it hands out (upcast on the way out), and the error a read gets once the store was
    closed under it.  The faces only read the stream, blocking or awaited."""

    durable = False

    def __init__(
        self,
        events: RemoteEvents | AsyncRemoteEvents,
        host: _Host,
        stream: SubscriptionStream | AsyncSubscriptionStream,
    ) -> None:
        self._events = events
        self._host = host
        self.name: str | None = None
        self._face_stream = stream

    @property
    def position(self) -> int:
        return self._face_stream.position

    def _out(self, event: RecordedEvent) -> RecordedEvent:
        up = self._events.upcasters
        return up.upcast(event) if up else event

    def _read_failed(self, exc: RuntimeError) -> NoReturn:
        """httpx's "the client has been closed": BackendUnavailable when the store was
        closed while subscribed, else the error as it is."""
        if self._host._closed:
            raise BackendUnavailable("the store was closed while subscribed") from exc
        raise exc


class RemoteSubscription(_SubscriptionFace, Iterator[RecordedEvent]):
    """``store.events.subscribe(...)`` without a name, over HTTP: catch up, then follow
    live over server-sent events, with :class:`clawstate.events.Subscription`'s
    contract (``position``: the last event handed out, or scanned past).  Upcasters
    registered on ``events.upcasters`` apply to what it hands out.

    A durable subscription (``name=``) is the in-process
    :class:`~clawstate.events.subscriptions.Subscription` itself, run here over the
    remote log: its checkpoint and lease live on the server."""

    def __init__(self, events: RemoteEvents, stream: SubscriptionStream) -> None:
        super().__init__(events, events.store, stream)
        self._stream = stream

    def __iter__(self) -> RemoteSubscription:
        return self

    def __enter__(self) -> RemoteSubscription:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __next__(self) -> RecordedEvent:
        try:
            event = next(self._stream)
        except RuntimeError as exc:
            self._read_failed(exc)
        return self._out(event)

    def poll(self) -> list[RecordedEvent]:
        """Every event available now, without waiting."""
        return _upcast(self._events.upcasters, self._stream.poll())

    def commit(self) -> None:
        """Nothing to save: only a durable subscription keeps a checkpoint."""

    def close(self) -> None:
        """Stop iterating (from any thread)."""
        self._stream.close()


class AsyncRemoteSubscription(_SubscriptionFace, AsyncIterator[RecordedEvent]):
    """Async twin of :class:`RemoteSubscription` (``async for event in sub``)."""

    def __init__(self, events: AsyncRemoteEvents, stream: AsyncSubscriptionStream) -> None:
        super().__init__(events, events._store, stream)
        self._stream = stream

    def __aiter__(self) -> AsyncRemoteSubscription:
        return self

    async def __aenter__(self) -> AsyncRemoteSubscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def __anext__(self) -> RecordedEvent:
        try:
            event = await self._stream.__anext__()
        except RuntimeError as exc:
            self._read_failed(exc)
        return self._out(event)

    async def poll(self) -> list[RecordedEvent]:
        return _upcast(self._events.upcasters, await self._stream.poll())

    async def commit(self) -> None:
        """Nothing to save: only a durable subscription keeps a checkpoint."""

    async def close(self) -> None:
        self._stream.close()


# -- snapshots ------------------------------------------------------------------------------


class RemoteSnapshots:
    """``store.events.snapshots`` over HTTP: the latest snapshot per stream."""

    def __init__(self, events: RemoteEvents) -> None:
        self._events = events

    def save(self, stream: str, version: int, state: Any, *, schema: int = 1) -> Snapshot:
        """Store ``state`` (JSON-compatible) as the stream's state after ``version``."""
        ev = self._events
        return ev._t.call(_save_snapshot_call(ev._limits, stream, version, state, schema))

    def save_in(
        self,
        tx: _TxHost,
        stream: str,
        version: int,
        state: Any,
        *,
        schema: int = 1,
    ) -> None:
        """Buffer the snapshot in ``tx``: it commits with the transaction's appends."""
        _check_snapshot(version, schema)
        tx._buf.snapshot(stream, {"version": version, "state": state, "schema": schema})

    def load(self, stream: str) -> Snapshot | None:
        """The latest snapshot of ``stream``, or None."""
        ev = self._events
        return ev._t.call(_load_snapshot_call(ev._limits, stream))

    def delete(self, stream: str) -> bool:
        ev = self._events
        return ev._t.call(_delete_snapshot_call(ev._limits, stream))


class AsyncRemoteSnapshots:
    """Awaitable twin of :class:`RemoteSnapshots`."""

    def __init__(self, events: AsyncRemoteEvents) -> None:
        self._events = events

    async def save(self, stream: str, version: int, state: Any, *, schema: int = 1) -> Snapshot:
        ev = self._events
        return await ev._t.call(_save_snapshot_call(ev._limits, stream, version, state, schema))

    def save_in(
        self,
        tx: _TxHost,
        stream: str,
        version: int,
        state: Any,
        *,
        schema: int = 1,
    ) -> Buffered:
        _check_snapshot(version, schema)
        tx._buf.snapshot(stream, {"version": version, "state": state, "schema": schema})
        return BUFFERED

    async def load(self, stream: str) -> Snapshot | None:
        ev = self._events
        return await ev._t.call(_load_snapshot_call(ev._limits, stream))

    async def delete(self, stream: str) -> bool:
        ev = self._events
        return await ev._t.call(_delete_snapshot_call(ev._limits, stream))


# -- what the projection runner reads through -------------------------------------------------


class _RemoteLog:
    """The event log's read side as :class:`~clawstate.events.ProjectionRunner` uses it
    (``EventLog``'s ``wait_for_events``, ``read_all`` and ``last_position``), over HTTP."""

    def __init__(self, events: RemoteEvents) -> None:
        self._events = events

    def _call(self, call: _Call[T]) -> T:
        try:
            return self._events._t.call(call)
        except RuntimeError as exc:  # httpx: "the client has been closed"
            raise BackendUnavailable("the remote store is closed") from exc

    def last_position(self) -> int:
        return self._call(_position_call())

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Block until an event after ``after`` commits, or ``timeout``: one long poll,
        kept well inside the client's request timeout."""
        ev = self._events
        wait = min(float(timeout), max(0.0, ev._t.settings.timeout / 2))
        page = self._call(_page_call(ev._limits, after, 1, None, wait=wait))
        return bool(page.events) or page.end > after

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[EventRow], int]:
        ev = self._events
        flt = EventFilter(stream_prefix, types) if stream_prefix or types else None
        page = self._call(_page_call(ev._limits, after, min(limit, ev._max_page), flt))
        rows: list[EventRow] = [
            (
                e.position,
                e.stream,
                e.version,
                e.id,
                e.type,
                e.schema_version,
                _json_encode(e.data).decode(),
                _json_encode(e.metadata).decode() if e.metadata else None,
                e.recorded_at,
            )
            for e in page.events
        ]
        return rows, page.end


#: the event store's checkpoint namespaces reachable over HTTP, and their routes
CHECKPOINT_ROUTES = {PROJECTIONS_NS: "projections", SUBSCRIPTIONS_NS: "subscriptions"}


class _RemoteCheckpoints:
    """A checkpoint namespace of the event store — ``_projections`` or
    ``_subscriptions`` — as the in-process projection runner and durable subscription
    use it (``get``, ``put``, ``delete``): reads over ``/v1/projections/{name}`` or
    ``/v1/subscriptions/{name}``, writes through ``POST /v1/transactions`` (a page's
    read-model writes and its checkpoint commit together there; a subscription's
    conditional checkpoint and lease are one-write transactions)."""

    def __init__(self, store: _SyncHost, name: str) -> None:
        self._store = store
        self._t = store._t
        self.name = name
        self._route = CHECKPOINT_ROUTES[name]

    def get(self, key: str) -> Item | None:
        return self._t.call(_get_checkpoint_call(self._route, key))

    def delete(self, key: str, *, if_version: int | None = None) -> bool:
        if self.name != PROJECTIONS_NS:
            raise InvalidRequest("namespace", f"{self.name!r} items are not deleted over HTTP")
        return self._t.call(_delete_projection_call(key, if_version))

    def put(
        self,
        key: str,
        value: Any,
        *,
        if_version: int | None = None,
        if_absent: bool = False,
    ) -> Item:
        """A checkpoint written alone (``retry_projection``, a subscription's save): a
        one-write transaction, as every checkpoint write over HTTP is."""
        with self._store.transaction() as tx:
            tx._system_namespace(self.name).put(
                key, value, if_version=if_version, if_absent=if_absent
            )
        item = tx.result[0]
        assert not isinstance(item, bool)
        return item


# -- the event store -----------------------------------------------------------------------


class RemoteEvents:
    """``store.events`` over HTTP, with :class:`clawstate.events.EventStore`'s
    signatures, results and errors.  One per :class:`RemoteStore`, so upcasters
    registered on it stay."""

    def __init__(self, store: _SyncHost) -> None:
        self.store = store
        self._t = store._t
        self._limits = store._limits
        self._max_stream = store._limits.max_key_bytes
        self._max_page = store._limits.max_query_limit
        self.upcasters = Upcasters()
        self._snapshots: RemoteSnapshots | None = None
        self._log = _RemoteLog(self)

    def __repr__(self) -> str:
        return f"<RemoteEvents {self._t.settings.url}>"

    def _clock(self) -> float:
        clock = self._t.settings.clock
        return clock() if clock is not None else time.time()

    # -- writes ----------------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return self._t.call(_append_call(self._limits, stream, events, expected_version))

    def append_many(
        self, appends: Iterable[tuple[str, Sequence[Event], ExpectedVersion]]
    ) -> list[AppendResult]:
        """Several appends, to one or more streams, committed atomically."""
        call = _append_many_call(self._limits, appends)
        return [] if call is None else self._t.call(call)

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = KEEP,
        max_count: int | Literal[_Keep.KEEP] | None = KEEP,
        truncate_before: int | Literal[_Keep.KEEP] | None = KEEP,
        expected_version: ExpectedVersion = ANY,
    ) -> StreamMetadata:
        """Change the stream's retention settings as ``EventStore.set_stream_metadata``
        does: the ones given are set, the omitted ones keep their values, ``None``
        clears one (only the settings given are sent)."""
        settings = {
            "max_age": max_age,
            "max_count": max_count,
            "truncate_before": truncate_before,
            "expected_version": expected_version,
        }
        return self._t.call(_set_stream_meta_call(self._limits, stream, settings))

    def delete_stream(
        self, stream: str, *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        """Soft-delete ``stream`` (a ``$deleted`` tombstone; see the in-process method)."""
        return self._t.call(_delete_stream_call(self._limits, stream, expected_version))

    # -- reads -----------------------------------------------------------------------

    def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        call = _read_call(self._limits, stream, from_version, backwards, limit)
        return _upcast(self.upcasters, self._t.call(call))

    def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        page = self._t.call(_page_call(self._limits, from_position, limit, filter))
        return _upcast(self.upcasters, page.events)

    def _read_rows(
        self, after: int, limit: int, flt: EventFilter | None
    ) -> tuple[list[RecordedEvent], int]:
        """A page after ``after`` and the position it scanned through (the runner's read)."""
        page = self._t.call(_page_call(self._limits, after, min(limit, self._max_page), flt))
        return _upcast(self.upcasters, page.events), page.end

    @property
    def last_position(self) -> int:
        """The newest committed global position (0: no events yet)."""
        return self._t.call(_position_call())

    def stream_metadata(self, stream: str) -> StreamMetadata:
        return self._t.call(_stream_meta_call(self._limits, stream))

    def streams(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> StreamPage:
        """Streams whose name starts with ``prefix``, in name order, a page at a time
        (``EventStore.streams``; needs ``events:*:read``)."""
        return self._t.call(_streams_call(self._limits, prefix, limit, cursor))

    def stats(self) -> dict[str, Any]:
        """The log's positions and size, every projection's and durable subscription's
        position and lag (the server's ``EventStore.stats``)."""
        return self._t.call(_event_stats_call())

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
    ) -> RemoteSubscription | Subscription:
        """Past events after ``from_position`` (``"end"``: only new ones), then new ones
        as they commit.

        Without ``name``: a :class:`RemoteSubscription` over server-sent events.  With
        ``name`` the subscription is durable, and it is the in-process
        :class:`~clawstate.events.subscriptions.Subscription`, reading this remote log
        (pages, and a long poll to wait): its checkpoint and its lease — one consumer
        per name — are the server's, in ``_subscriptions``, exactly as in-process."""
        if name is not None:
            from ..events.subscriptions import Subscription

            return Subscription(
                self,  # type: ignore[arg-type]  # the event store's source surface
                from_position,
                filter=filter,
                name=name,
                timeout=timeout,
                batch=min(batch, self._max_page) if isinstance(batch, int) else batch,
                checkpoint_every=checkpoint_every,
            )
        check_int(batch, "batch", 1)
        check_int(checkpoint_every, "checkpoint_every", 1)
        resolve = _sub_args(self._limits, from_position, filter, name, timeout)
        start = _start_position(self._t.call(resolve)) if resolve else int(from_position)
        spec = _SubSpec(start, filter, timeout, self._t.settings.heartbeat)
        return RemoteSubscription(self, SubscriptionStream(self._t, spec, self._limits))

    def _decode(self, rows: list[EventRow]) -> list[RecordedEvent]:
        """Rows of :class:`_RemoteLog` back into events, upcast (``EventStore._decode``'s
        twin, for the in-process follower a durable subscription runs on)."""
        dec = _json_decode
        out = [
            RecordedEvent(
                r[1], r[2], r[0], r[4], dec(r[6]), dec(r[7]) if r[7] else {}, r[3], r[8], r[5]
            )
            for r in rows
        ]
        return _upcast(self.upcasters, out)

    # -- snapshots, aggregates, projections ------------------------------------------------

    @property
    def snapshots(self) -> RemoteSnapshots:
        if self._snapshots is None:
            self._snapshots = RemoteSnapshots(self)
        return self._snapshots

    def repository(self, cls: type[A], *, snapshot_every: int | None = None) -> Repository[A]:
        """The in-process :class:`~clawstate.events.Repository`, over this store."""
        from ..events.aggregates import Repository

        return Repository(self, cls, snapshot_every=snapshot_every)  # type: ignore[arg-type]

    def projection_runner(
        self, projections: Iterable[Projection], *, batch: int = 500
    ) -> ProjectionRunner:
        """The in-process :class:`~clawstate.events.ProjectionRunner`, run here against
        the remote store: it reads the log over HTTP and commits each page's read-model
        writes with its checkpoint in one transaction on the server."""
        return ProjectionRunner(self, list(projections), batch=batch)  # type: ignore[arg-type]

    def projection_status(self) -> list[ProjectionStatus]:
        """Every projection that has a checkpoint on the server, with its lag."""
        return self._t.call(_projection_status_call())


class AsyncRemoteEvents:
    """Awaitable twin of :class:`RemoteEvents` (``AsyncEventStore``'s signatures)."""

    def __init__(self, store: _AsyncHost) -> None:
        self._store = store
        self._t = store._t
        self._sync_t = store._sync._t
        self._limits = store._limits
        self._snapshots: AsyncRemoteSnapshots | None = None

    @property
    def sync(self) -> RemoteEvents:
        """The sync event store on the same server (shares the upcasters)."""
        return self._store._sync.events

    @property
    def upcasters(self) -> Upcasters:
        return self.sync.upcasters

    async def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return await self._t.call(_append_call(self._limits, stream, events, expected_version))

    async def append_many(
        self, appends: Iterable[tuple[str, Sequence[Event], ExpectedVersion]]
    ) -> list[AppendResult]:
        call = _append_many_call(self._limits, appends)
        return [] if call is None else await self._t.call(call)

    async def set_stream_metadata(self, stream: str, **settings: Any) -> StreamMetadata:
        unknown = set(settings) - {"max_age", "max_count", "truncate_before", "expected_version"}
        if unknown:
            raise InvalidRequest(sorted(unknown)[0], "is not a stream setting")
        return await self._t.call(_set_stream_meta_call(self._limits, stream, settings))

    async def delete_stream(
        self, stream: str, *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return await self._t.call(_delete_stream_call(self._limits, stream, expected_version))

    async def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        call = _read_call(self._limits, stream, from_version, backwards, limit)
        return _upcast(self.upcasters, await self._t.call(call))

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        page = await self._t.call(_page_call(self._limits, from_position, limit, filter))
        return _upcast(self.upcasters, page.events)

    async def last_position(self) -> int:
        return await self._t.call(_position_call())

    async def stream_metadata(self, stream: str) -> StreamMetadata:
        return await self._t.call(_stream_meta_call(self._limits, stream))

    async def streams(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> StreamPage:
        return await self._t.call(_streams_call(self._limits, prefix, limit, cursor))

    async def stats(self) -> dict[str, Any]:
        return await self._t.call(_event_stats_call())

    async def projection_status(self) -> list[ProjectionStatus]:
        return await self._t.call(_projection_status_call())

    def repository(self, cls: type[A], *, snapshot_every: int | None = None) -> AsyncRepository[A]:
        """The in-process :class:`~clawstate.events.aio.AsyncRepository` over the sync
        remote face: loads and saves run on a worker thread, as they run on the pool
        in-process, so the event loop never waits on the network."""
        from ..events.aio import AsyncRepository

        return AsyncRepository(self.sync.repository(cls, snapshot_every=snapshot_every), _in_thread)

    def projection_runner(
        self, projections: Iterable[Projection], *, batch: int = 500
    ) -> AsyncProjectionRunner:
        """The in-process :class:`~clawstate.events.aio.AsyncProjectionRunner` over the
        sync remote runner (pages on a worker thread, pauses as ``asyncio`` waits)."""
        from ..events.aio import AsyncProjectionRunner

        return AsyncProjectionRunner(
            self.sync.projection_runner(projections, batch=batch), _in_thread
        )

    @property
    def snapshots(self) -> AsyncRemoteSnapshots:
        if self._snapshots is None:
            self._snapshots = AsyncRemoteSnapshots(self)
        return self._snapshots

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
    ) -> AsyncRemoteSubscription | AsyncSubscription:
        """Like ``AsyncEventStore.subscribe``: not awaited.  Without ``name``, server-sent
        events (``"end"`` resolved with one synchronous request, as
        ``AsyncRemoteStore.watch`` resolves its start); with ``name``, the in-process
        :class:`~clawstate.events.aio.AsyncSubscription` over the sync durable one,
        each ``next()`` on a worker thread."""
        if name is not None:
            from ..events.aio import AsyncSubscription

            durable = self.sync.subscribe(
                from_position,
                filter=filter,
                name=name,
                timeout=timeout,
                batch=batch,
                checkpoint_every=checkpoint_every,
            )
            assert isinstance(durable, Subscription)
            return AsyncSubscription(durable, _in_thread)
        check_int(batch, "batch", 1)
        check_int(checkpoint_every, "checkpoint_every", 1)
        resolve = _sub_args(self._limits, from_position, filter, name, timeout)
        start = _start_position(self._sync_t.call(resolve)) if resolve else int(from_position)
        spec = _SubSpec(start, filter, timeout, self._t.settings.heartbeat)
        stream = AsyncSubscriptionStream(self._t, spec, self._limits)
        return AsyncRemoteSubscription(self, stream)


# -- tx.events --------------------------------------------------------------------------------


def _tx_append(
    buf: _TxBuffer, limits: Limits, stream: Any, events: Any, expected_version: Any
) -> None:
    check_key(stream, limits.max_key_bytes, field="stream")
    checked = _check_events(events, expected_version)
    buf.append({"stream": stream, "events": checked, "expected_version": expected_version})


def _tx_meta(
    buf: _TxBuffer, limits: Limits, stream: Any, settings: dict[str, Any], expected: Any
) -> None:
    for key in settings:
        if key not in ("max_age", "max_count", "truncate_before"):
            raise InvalidRequest(key, "is not a stream setting")
    meta = _set_stream_meta_call(limits, stream, {**settings, "expected_version": expected}).body
    expected_version = meta.pop("expected_version", ANY)
    buf.append({"stream": stream, "metadata": meta, "expected_version": expected_version})


class RemoteTxEvents:
    """``tx.events`` of a :class:`RemoteTransaction`: appends buffered with its writes
    and sent in the same request, committed atomically on the server (all or nothing,
    :class:`~clawstate.WrongExpectedVersion` refusing the whole transaction)."""

    def __init__(self, buf: _TxBuffer, limits: Limits) -> None:
        self._buf = buf
        self._limits = limits

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> None:
        _tx_append(self._buf, self._limits, stream, events, expected_version)

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = KEEP,
        max_count: int | Literal[_Keep.KEEP] | None = KEEP,
        truncate_before: int | Literal[_Keep.KEEP] | None = KEEP,
        expected_version: ExpectedVersion = ANY,
    ) -> None:
        """Change the stream's settings when the transaction commits (merged as
        ``EventStore.set_stream_metadata`` does); its ``tx.appended`` entry has
        position 0."""
        settings = {"max_age": max_age, "max_count": max_count, "truncate_before": truncate_before}
        _tx_meta(self._buf, self._limits, stream, settings, expected_version)


class AsyncRemoteTxEvents:
    """``tx.events`` of an :class:`AsyncRemoteTransaction`: an append is buffered when
    called (awaiting it is optional, as in the embedded async transaction); nothing is
    sent until the transaction commits."""

    def __init__(self, buf: _TxBuffer, limits: Limits) -> None:
        self._buf = buf
        self._limits = limits

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> Buffered:
        _tx_append(self._buf, self._limits, stream, events, expected_version)
        return BUFFERED

    def set_stream_metadata(self, stream: str, **settings: Any) -> Buffered:
        """See :meth:`RemoteTxEvents.set_stream_metadata`."""
        expected = settings.pop("expected_version", ANY)
        _tx_meta(self._buf, self._limits, stream, settings, expected)
        return BUFFERED
