"""The event store, awaitable: ``astore.events`` — the same methods on the thread pool.

One implementation, two faces (as for namespaces): every coroutine here runs
the sync :class:`~clawstate.events.store.EventStore` method on the
AsyncStore's pool, so appends from many tasks are group-committed like appends
from many threads.  :class:`AsyncSubscription` awaits each ``next()`` of a sync
:class:`~clawstate.events.subscriptions.Subscription` on the pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..types import ANY, AppendResult, Event, ExpectedVersion, RecordedEvent
from .store import EventFilter, EventStore, StreamMetadata, TxEvents
from .subscriptions import Subscription

if TYPE_CHECKING:
    from ..aio import _Runner

__all__ = ["AsyncEventStore", "AsyncSubscription", "AsyncTxEvents"]


class AsyncSubscription(AsyncIterator[RecordedEvent]):
    """``async for event in astore.events.subscribe(...)``."""

    def __init__(self, sub: Subscription, run: _Runner) -> None:
        self._sub = sub
        self._run = run

    @property
    def position(self) -> int:
        return self._sub.position

    @property
    def sync(self) -> Subscription:
        return self._sub

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> RecordedEvent:
        event = await self._run(next, self._sub, None)
        if event is None:
            raise StopAsyncIteration
        return event

    async def commit(self) -> None:
        await self._run(self._sub.commit)

    async def close(self) -> None:
        self._sub._closed.set()
        await self._run(self._sub.close)

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncEventStore:
    """Awaitable twin of :class:`~clawstate.events.store.EventStore`."""

    def __init__(self, events: EventStore, run: _Runner) -> None:
        self._events = events
        self._run = run

    @property
    def sync(self) -> EventStore:
        return self._events

    @property
    def upcasters(self) -> Any:
        return self._events.upcasters

    async def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        # As given: the facade checks the shape (list("abc") would hide a str).
        return await self._run(
            self._events.append, stream, events, expected_version=expected_version
        )

    async def append_many(
        self, appends: Iterable[tuple[str, Sequence[Event], ExpectedVersion]]
    ) -> list[AppendResult]:
        return await self._run(self._events.append_many, appends)

    async def read(
        self,
        stream: str,
        from_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        return await self._run(
            self._events.read, stream, from_version, backwards=backwards, limit=limit
        )

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[RecordedEvent]:
        return await self._run(self._events.read_all, from_position, limit, filter)

    async def last_position(self) -> int:
        return await self._run(lambda: self._events.last_position)

    async def stream_metadata(self, stream: str) -> StreamMetadata:
        return await self._run(self._events.stream_metadata, stream)

    async def set_stream_metadata(self, stream: str, **settings: Any) -> StreamMetadata:
        return await self._run(self._events.set_stream_metadata, stream, **settings)

    async def delete_stream(
        self, stream: str, *, expected_version: ExpectedVersion = ANY
    ) -> AppendResult:
        return await self._run(
            self._events.delete_stream, stream, expected_version=expected_version
        )

    def subscribe(
        self,
        from_position: int | str = 0,
        *,
        filter: EventFilter | None = None,
        name: str | None = None,
        timeout: float | None = None,
        batch: int = 500,
        checkpoint_every: int = 100,
    ) -> AsyncSubscription:
        """Like the sync ``subscribe``; a durable one reads its checkpoint here, once."""
        sub = self._events.subscribe(
            from_position,
            filter=filter,
            name=name,
            timeout=timeout,
            batch=batch,
            checkpoint_every=checkpoint_every,
        )
        return AsyncSubscription(sub, self._run)

    async def stats(self) -> dict[str, Any]:
        return await self._run(self._events.stats)


class AsyncTxEvents:
    """``tx.events`` in an :class:`~clawstate.AsyncTransaction`; appends buffer until commit."""

    def __init__(self, tx_events: TxEvents) -> None:
        self._tx_events = tx_events

    async def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> None:
        self._tx_events.append(stream, events, expected_version=expected_version)
