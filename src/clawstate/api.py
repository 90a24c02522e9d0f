"""The public contract as Protocols: write code once, run it embedded or remote.

``clawstate.open()`` gives an embedded :class:`~clawstate.Store` (SQLite, PostgreSQL,
Redis, memory) or, for an ``http(s)://`` URL, the HTTP client's
:class:`~clawstate.client.RemoteStore`.  The two are different classes with the same
methods (DESIGN.md: the client "is a transport under the one facade, not a second
API"), so application code should be typed against *what they share*, not against
either class.  These Protocols are that shared surface:

===========================  ==================================================
sync face                    awaitable face (``open_async``)
===========================  ==================================================
:class:`StoreAPI`            :class:`AsyncStoreAPI`
:class:`NamespaceAPI`        :class:`AsyncNamespaceAPI`
:class:`WatchAPI`            :class:`AsyncWatchAPI`
:class:`TransactionAPI`      :class:`AsyncTransactionAPI`
:class:`TxNamespaceAPI`      :class:`AsyncTxNamespaceAPI`
:class:`TxEventsAPI`         :class:`AsyncTxEventsAPI`
:class:`EventsAPI`           :class:`AsyncEventsAPI`
:class:`SubscriptionAPI`     :class:`AsyncSubscriptionAPI`
:class:`SnapshotsAPI`        :class:`AsyncSnapshotsAPI`
:class:`LocksAPI`            :class:`AsyncLocksAPI`
===========================  ==================================================

The two faces differ only by awaiting: what the sync face returns, the awaitable face
returns from a coroutine — except where the sync face is itself non-blocking
(``namespace()``, ``transaction()``, ``watch()``, ``subscribe()``, a transaction's
buffered writes, ``rollback()``).  A sync *property* that reads the store
(``Store.last_seq``, ``EventStore.last_position``) is a coroutine method on the
awaitable face.

What is deliberately left out: what only an embedded store can do (``backend``,
``backends``, ``flush``, ``rotate_keys``, a namespace's ``policy``: the server's
operator owns those), per-call options only one side has (``check(progress=…)``),
and ``snapshots.save_in(tx, …)``, whose ``tx`` must be a transaction of the *same*
store's class (a protocol taking any :class:`TransactionAPI` would promise more).

mypy checks, in :mod:`clawstate._api_check`, that ``Store``, ``AsyncStore``,
``RemoteStore`` and ``AsyncRemoteStore`` (and everything they hand out) satisfy these
Protocols, so a method added to one face and not the other fails ``mypy --strict``.
Nothing here runs at import time beyond defining the classes: the concrete types
named in annotations are imported for the type checker only.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeVar

from .types import (
    ANY,
    AppendResult,
    Change,
    CheckReport,
    Event,
    ExpectedVersion,
    Item,
    Lease,
    Page,
    RecordedEvent,
)

if TYPE_CHECKING:
    from .config import Config
    from .events.aggregates import Aggregate, Repository
    from .events.aio import AsyncProjectionRunner, AsyncRepository
    from .events.projections import Projection, ProjectionRunner, ProjectionStatus
    from .events.snapshots import Snapshot
    from .events.store import EventFilter, StreamMetadata, StreamPage, _Keep
    from .events.upcasting import Upcasters
    from .locks import AsyncLockContext, LockContext
    from .timers import TimerPage
    from .types import TimerInfo

__all__ = [
    "AsyncEventsAPI",
    "AsyncLocksAPI",
    "AsyncNamespaceAPI",
    "AsyncSnapshotsAPI",
    "AsyncStoreAPI",
    "AsyncSubscriptionAPI",
    "AsyncTransactionAPI",
    "AsyncTxEventsAPI",
    "AsyncTxNamespaceAPI",
    "AsyncWatchAPI",
    "EventsAPI",
    "LocksAPI",
    "NamespaceAPI",
    "SnapshotsAPI",
    "StoreAPI",
    "SubscriptionAPI",
    "TransactionAPI",
    "TxEventsAPI",
    "TxNamespaceAPI",
    "WatchAPI",
]

A = TypeVar("A", bound="Aggregate")


# -- key/value ------------------------------------------------------------------------


class WatchAPI(Iterator[Change], Protocol):
    """``namespace.watch()`` / ``store.watch()``: past changes, then new ones as they
    commit; iteration ends on ``timeout`` or :meth:`close` (from any thread)."""

    @property
    def last_seq(self) -> int:
        """The change-log sequence number handed out (or scanned past) last."""
        ...

    def poll(self) -> list[Change]:
        """Every change available now, without waiting."""
        ...

    def close(self) -> None: ...


class NamespaceAPI(Protocol):
    """A namespace (``store.namespace(name)``): keys, values, versions, TTLs."""

    @property
    def name(self) -> str: ...

    def get(self, key: str) -> Item | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]: ...

    def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page: ...

    def query(self, query: Any, *, explain: bool = False) -> Page: ...

    def count(self) -> int: ...

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> WatchAPI: ...

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        idempotency_key: str | None = None,
        keep_ttl: bool = False,
        fence: Any = None,
    ) -> Item: ...

    def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> list[Item]: ...

    def delete(
        self,
        key: str,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> bool: ...

    def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        ttl: float | None = None,
        retries: int = 10,
    ) -> Item: ...


class TxNamespaceAPI(Protocol):
    """A namespace inside a transaction: writes buffer until commit, reads see them."""

    @property
    def name(self) -> str: ...

    def get(self, key: str) -> Item | None: ...

    def get_many(self, keys: Iterable[str]) -> dict[str, Item]: ...

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
        fence: Any = None,
    ) -> None: ...

    def delete(self, key: str, *, if_version: int | None = None, fence: Any = None) -> None: ...


class TxEventsAPI(Protocol):
    """``tx.events``: appends committed atomically with the transaction's writes."""

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> None: ...

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = ...,
        max_count: int | Literal[_Keep.KEEP] | None = ...,
        truncate_before: int | Literal[_Keep.KEEP] | None = ...,
        expected_version: ExpectedVersion = ANY,
    ) -> None: ...


class TransactionAPI(Protocol):
    """``with store.transaction() as tx:`` — atomic across namespaces of one backend."""

    @property
    def result(self) -> list[Item | bool]:
        """After commit: an Item per put, a bool per delete, in order."""
        ...

    @property
    def appended(self) -> list[AppendResult]:
        """After commit: one AppendResult per ``tx.events`` append, in order."""
        ...

    @property
    def events(self) -> TxEventsAPI: ...

    def namespace(self, name: str) -> TxNamespaceAPI: ...

    def commit(self) -> list[Item | bool]: ...

    def rollback(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


# -- events ---------------------------------------------------------------------------


class SubscriptionAPI(Iterator[RecordedEvent], Protocol):
    """``events.subscribe()``: catch up, then follow live; ``name=`` makes it durable."""

    @property
    def position(self) -> int:
        """The global position processed so far (a durable one resumes after it)."""
        ...

    def poll(self) -> list[RecordedEvent]: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


class SnapshotsAPI(Protocol):
    """``events.snapshots``: the latest snapshot per stream."""

    def save(self, stream: str, version: int, state: Any, *, schema: int = 1) -> Snapshot: ...

    def load(self, stream: str) -> Snapshot | None: ...

    def delete(self, stream: str) -> bool: ...


class EventsAPI(Protocol):
    """``store.events``: streams, the global log, subscriptions, snapshots, projections."""

    @property
    def upcasters(self) -> Upcasters: ...

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult: ...

    def append_many(
        self, appends: Iterable[tuple[str, Sequence[Event], ExpectedVersion]]
    ) -> list[AppendResult]: ...

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = ...,
        max_count: int | Literal[_Keep.KEEP] | None = ...,
        truncate_before: int | Literal[_Keep.KEEP] | None = ...,
        expected_version: ExpectedVersion = ANY,
    ) -> StreamMetadata: ...

    def delete_stream(
        self, stream: str, *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult: ...

    def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]: ...

    def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]: ...

    @property
    def last_position(self) -> int: ...

    def stream_metadata(self, stream: str) -> StreamMetadata: ...

    def streams(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> StreamPage: ...

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
    ) -> SubscriptionAPI: ...

    def stats(self) -> dict[str, Any]: ...

    @property
    def snapshots(self) -> SnapshotsAPI: ...

    def repository(self, cls: type[A], *, snapshot_every: int | None = None) -> Repository[A]: ...

    def projection_runner(
        self, projections: Iterable[Projection], *, batch: int = 500
    ) -> ProjectionRunner: ...

    def projection_status(self) -> list[ProjectionStatus]: ...


# -- locks ------------------------------------------------------------------------------


class LocksAPI(Protocol):
    """``store.locks``: leases with fencing tokens (see :mod:`clawstate.locks`)."""

    def acquire(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = 0,
        owner: str | None = None,
    ) -> Lease: ...

    def renew(self, lease: Lease, *, ttl: float | str | None = None) -> Lease: ...

    def release(self, lease: Lease) -> bool: ...

    def get(self, name: str) -> Lease | None: ...


# -- timers -----------------------------------------------------------------------------


class TimersAPI(Protocol):
    """``store.timers``: durable timers (see :mod:`clawstate.timers`); firing is the
    worker's, next to an embedded store."""

    def schedule(
        self,
        name: str,
        *,
        handler: str,
        at: float | None = None,
        after: float | str | None = None,
        payload: Any = None,
    ) -> TimerInfo: ...

    def cancel(self, name: str) -> bool: ...

    def get(self, name: str) -> TimerInfo | None: ...

    def list(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> TimerPage: ...


# -- the store ------------------------------------------------------------------------


class StoreAPI(Protocol):
    """A store: what :class:`~clawstate.Store` and the HTTP client's ``RemoteStore``
    share.  ``clawstate.open()`` returns this."""

    @property
    def config(self) -> Config:
        """The store's settings.  A remote store's holds its URL and the server's
        limits (``config.limits``: key, value and batch sizes); the rest is the
        server operator's and stays there."""
        ...

    def namespace(self, name: str, /, **options: Any) -> NamespaceAPI:
        """The namespace ``name``.  ``options`` (policy in code) are the embedded
        store's; a remote store refuses them (policy is the server operator's)."""
        ...

    def namespaces(self) -> list[str]: ...

    @property
    def events(self) -> EventsAPI: ...

    def transaction(self, *, idempotency_key: str | None = None) -> TransactionAPI: ...

    @property
    def locks(self) -> LocksAPI: ...

    @property
    def timers(self) -> TimersAPI: ...

    def lock(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> LockContext: ...

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> WatchAPI: ...

    @property
    def last_seq(self) -> int: ...

    def sweep(self) -> dict[str, int]: ...

    def stats(self) -> dict[str, Any]: ...

    def check(self, *, deep: bool = False) -> CheckReport: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


# -- the awaitable face -----------------------------------------------------------------


class AsyncWatchAPI(Protocol):
    """Awaitable :class:`WatchAPI` (``async for change in watch``)."""

    # Spelled out: on Python 3.11 a Protocol may not inherit collections.abc.AsyncIterator.
    def __aiter__(self) -> AsyncIterator[Change]: ...

    async def __anext__(self) -> Change: ...

    @property
    def last_seq(self) -> int: ...

    async def poll(self) -> list[Change]: ...

    def close(self) -> None: ...


class AsyncNamespaceAPI(Protocol):
    """Awaitable :class:`NamespaceAPI`.  ``update``'s ``fn`` may return an awaitable."""

    @property
    def name(self) -> str: ...

    async def get(self, key: str) -> Item | None: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]: ...

    async def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page: ...

    async def query(self, query: Any, *, explain: bool = False) -> Page: ...

    async def count(self) -> int: ...

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> AsyncWatchAPI: ...

    async def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        idempotency_key: str | None = None,
        keep_ttl: bool = False,
        fence: Any = None,
    ) -> Item: ...

    async def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> list[Item]: ...

    async def delete(
        self,
        key: str,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> bool: ...

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        ttl: float | None = None,
        retries: int = 10,
    ) -> Item: ...


class AsyncTxNamespaceAPI(Protocol):
    """A namespace inside an async transaction.  ``put``/``delete`` buffer the write
    when *called* (the returned awaitable is already complete), so a forgotten
    ``await`` loses nothing."""

    @property
    def name(self) -> str: ...

    async def get(self, key: str) -> Item | None: ...

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]: ...

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        keep_ttl: bool = False,
        fence: Any = None,
    ) -> Awaitable[None]: ...

    def delete(
        self, key: str, *, if_version: int | None = None, fence: Any = None
    ) -> Awaitable[None]: ...


class AsyncTxEventsAPI(Protocol):
    """``tx.events`` of an async transaction (buffered when called, as its writes)."""

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> Awaitable[None]: ...

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = ...,
        max_count: int | Literal[_Keep.KEEP] | None = ...,
        truncate_before: int | Literal[_Keep.KEEP] | None = ...,
        expected_version: ExpectedVersion = ANY,
    ) -> Awaitable[None]: ...


class AsyncTransactionAPI(Protocol):
    """``async with astore.transaction() as tx:`` — commits when the block exits."""

    @property
    def result(self) -> list[Item | bool]: ...

    @property
    def appended(self) -> list[AppendResult]: ...

    @property
    def events(self) -> AsyncTxEventsAPI: ...

    def namespace(self, name: str) -> AsyncTxNamespaceAPI: ...

    async def commit(self) -> list[Item | bool]: ...

    def rollback(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


class AsyncSubscriptionAPI(Protocol):
    """Awaitable :class:`SubscriptionAPI` (``async for event in sub``)."""

    def __aiter__(self) -> AsyncIterator[RecordedEvent]: ...

    async def __anext__(self) -> RecordedEvent: ...

    @property
    def position(self) -> int: ...

    async def poll(self) -> list[RecordedEvent]: ...

    async def commit(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


class AsyncSnapshotsAPI(Protocol):
    """Awaitable :class:`SnapshotsAPI`."""

    async def save(self, stream: str, version: int, state: Any, *, schema: int = 1) -> Snapshot: ...

    async def load(self, stream: str) -> Snapshot | None: ...

    async def delete(self, stream: str) -> bool: ...


class AsyncEventsAPI(Protocol):
    """Awaitable :class:`EventsAPI` (``astore.events``)."""

    @property
    def upcasters(self) -> Upcasters: ...

    async def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult: ...

    async def append_many(
        self, appends: Iterable[tuple[str, Sequence[Event], ExpectedVersion]]
    ) -> list[AppendResult]: ...

    async def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = ...,
        max_count: int | Literal[_Keep.KEEP] | None = ...,
        truncate_before: int | Literal[_Keep.KEEP] | None = ...,
        expected_version: ExpectedVersion = ANY,
    ) -> StreamMetadata: ...

    async def delete_stream(
        self, stream: str, *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult: ...

    async def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]: ...

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]: ...

    async def last_position(self) -> int: ...

    async def stream_metadata(self, stream: str) -> StreamMetadata: ...

    async def streams(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> StreamPage: ...

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
    ) -> AsyncSubscriptionAPI: ...

    async def stats(self) -> dict[str, Any]: ...

    @property
    def snapshots(self) -> AsyncSnapshotsAPI: ...

    def repository(
        self, cls: type[A], *, snapshot_every: int | None = None
    ) -> AsyncRepository[A]: ...

    def projection_runner(
        self, projections: Iterable[Projection], *, batch: int = 500
    ) -> AsyncProjectionRunner: ...

    async def projection_status(self) -> list[ProjectionStatus]: ...


class AsyncLocksAPI(Protocol):
    """Awaitable :class:`LocksAPI` (``astore.locks``)."""

    async def acquire(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = 0,
        owner: str | None = None,
    ) -> Lease: ...

    async def renew(self, lease: Lease, *, ttl: float | str | None = None) -> Lease: ...

    async def release(self, lease: Lease) -> bool: ...

    async def get(self, name: str) -> Lease | None: ...


class AsyncStoreAPI(Protocol):
    """Awaitable :class:`StoreAPI`: what :class:`~clawstate.AsyncStore` and the HTTP
    client's ``AsyncRemoteStore`` share.  ``clawstate.open_async()`` returns this."""

    @property
    def sync(self) -> StoreAPI:
        """The sync store underneath (same data)."""
        ...

    @property
    def config(self) -> Config:
        """See :attr:`StoreAPI.config`."""
        ...

    def namespace(self, name: str, /, **options: Any) -> AsyncNamespaceAPI: ...

    async def namespaces(self) -> list[str]: ...

    @property
    def events(self) -> AsyncEventsAPI: ...

    def transaction(self, *, idempotency_key: str | None = None) -> AsyncTransactionAPI: ...

    @property
    def locks(self) -> AsyncLocksAPI: ...

    def lock(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> AsyncLockContext: ...

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> AsyncWatchAPI: ...

    async def last_seq(self) -> int: ...

    async def sweep(self) -> dict[str, int]: ...

    async def stats(self) -> dict[str, Any]: ...

    async def check(self, *, deep: bool = False) -> CheckReport: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
