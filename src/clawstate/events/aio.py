"""The event store, awaitable: ``astore.events`` — the same methods on the thread pool.

One implementation, two faces (as for namespaces): every coroutine here runs
the sync :class:`~clawstate.events.store.EventStore` method on the
AsyncStore's pool, so appends from many tasks are group-committed like appends
from many threads.  :class:`AsyncSubscription` awaits each ``next()`` of a sync
:class:`~clawstate.events.subscriptions.Subscription` on the pool.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

from .._awaitable import BUFFERED, Buffered, RunsSync
from .._retry import retry_on_conflict_async
from ..errors import ClawStateError
from ..types import ANY, AppendResult, Event, ExpectedVersion, RecordedEvent
from .aggregates import Aggregate, Repository
from .projections import Projection, ProjectionRunner, ProjectionStatus, ProjectionStopped
from .snapshots import Snapshot, Snapshots
from .store import KEEP, EventFilter, EventStore, StreamMetadata, StreamPage, TxEvents, _Keep
from .subscriptions import Subscription

# The pool runner is typed by the RunsSync protocol, not by importing ``clawstate.aio``
# (which imports this module for ``AsyncStore.events``): no import loop.
_Runner = RunsSync

__all__ = [
    "AsyncEventStore",
    "AsyncProjectionRunner",
    "AsyncRepository",
    "AsyncSnapshots",
    "AsyncSubscription",
    "AsyncTxEvents",
]

A = TypeVar("A", bound=Aggregate)


class AsyncSubscription(AsyncIterator[RecordedEvent]):
    """``async for event in astore.events.subscribe(...)``.

    The same :class:`~clawstate.events.subscriptions.Subscription` steps as the sync
    face — its reads and checkpoints run on the pool — but it waits for new events
    on the event loop (:meth:`clawstate._follow.Cursor.wait_async`): an idle async
    subscription holds no pool thread, and :meth:`close` wakes it at once.
    """

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

    def _first(self) -> RecordedEvent | None:
        self._sub._came_back()
        return self._sub._ready()

    def _again(self) -> RecordedEvent | None:
        self._sub._renew_if_due()
        return self._sub._ready()

    async def __anext__(self) -> RecordedEvent:
        sub = self._sub
        timeout = sub._timeout
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        event = await self._run(self._first)
        while event is None:
            if sub.closed:
                raise StopAsyncIteration
            wait = sub._renew_in()
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise StopAsyncIteration
                wait = remaining if wait is None else min(wait, remaining)
            await sub.cursor.wait_async(wait)
            event = await self._run(self._again)
        return event

    async def poll(self) -> list[RecordedEvent]:
        """Every event available now, without waiting (:meth:`Subscription.poll`)."""
        return await self._run(self._sub.poll)

    async def commit(self) -> None:
        await self._run(self._sub.commit)

    async def close(self) -> None:
        """Stop (a pending ``__anext__`` returns at once), save and release the lease."""
        self._sub.cursor.close()  # wakes a waiting __anext__ now; the save goes to the pool
        await self._run(self._sub._close_durable)

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

    async def streams(
        self, prefix: str = "", *, limit: int = 100, cursor: str | None = None
    ) -> StreamPage:
        """See :meth:`EventStore.streams`."""
        return await self._run(self._events.streams, prefix, limit=limit, cursor=cursor)

    async def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = KEEP,
        max_count: int | Literal[_Keep.KEEP] | None = KEEP,
        truncate_before: int | Literal[_Keep.KEEP] | None = KEEP,
        expected_version: ExpectedVersion = ANY,
    ) -> StreamMetadata:
        """Merge the given settings into the stream's metadata (``None`` clears one);
        see :meth:`EventStore.set_stream_metadata`."""
        return await self._run(
            self._events.set_stream_metadata,
            stream,
            max_age=max_age,
            max_count=max_count,
            truncate_before=truncate_before,
            expected_version=expected_version,
        )

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

    # -- snapshots, aggregates, projections ------------------------------------------------

    @property
    def snapshots(self) -> AsyncSnapshots:
        """Latest snapshot per stream, awaitable (see ``EventStore.snapshots``)."""
        return AsyncSnapshots(self._events.snapshots, self._run)

    def repository(self, cls: type[A], *, snapshot_every: int | None = None) -> AsyncRepository[A]:
        """Load and save ``cls`` aggregates, awaitably (see ``EventStore.repository``)."""
        return AsyncRepository(
            self._events.repository(cls, snapshot_every=snapshot_every), self._run
        )

    def projection_runner(
        self, projections: Iterable[Projection], *, batch: int = 500
    ) -> AsyncProjectionRunner:
        """A runner for ``projections`` driven from the event loop."""
        return AsyncProjectionRunner(
            self._events.projection_runner(projections, batch=batch), self._run
        )

    async def projection_status(self) -> list[ProjectionStatus]:
        return await self._run(self._events.projection_status)


class AsyncSnapshots:
    """Awaitable twin of :class:`~clawstate.events.snapshots.Snapshots`."""

    def __init__(self, snapshots: Snapshots, run: _Runner) -> None:
        self._snapshots = snapshots
        self._run = run

    @property
    def sync(self) -> Snapshots:
        return self._snapshots

    async def save(self, stream: str, version: int, state: Any, *, schema: int = 1) -> Snapshot:
        return await self._run(self._snapshots.save, stream, version, state, schema=schema)

    def save_in(
        self, tx: Any, stream: str, version: int, state: Any, *, schema: int = 1
    ) -> Buffered:
        """Buffer the snapshot in an async transaction (or a sync one); it commits with it."""
        self._snapshots.save_in(getattr(tx, "_tx", tx), stream, version, state, schema=schema)
        return BUFFERED

    async def load(self, stream: str) -> Snapshot | None:
        return await self._run(self._snapshots.load, stream)

    async def delete(self, stream: str) -> bool:
        return await self._run(self._snapshots.delete, stream)


class AsyncRepository(Generic[A]):
    """Awaitable twin of :class:`~clawstate.events.Repository` (``astore.events.repository``).

    Loads and saves run on the pool; :meth:`update` applies the change on the event
    loop and pauses between conflict retries with ``asyncio.sleep``."""

    def __init__(self, repo: Repository[A], run: _Runner) -> None:
        self._repo = repo
        self._run = run
        self.cls = repo.cls

    @property
    def sync(self) -> Repository[A]:
        return self._repo

    async def get(self, id: str) -> A | None:
        return await self._run(self._repo.get, id)

    async def load(self, id: str) -> A:
        return await self._run(self._repo.load, id)

    async def save(self, agg: A) -> AppendResult | None:
        return await self._run(self._repo.save, agg)

    async def update(
        self, id: str, change: Callable[[A], object | Awaitable[object]], *, retries: int = 10
    ) -> A:
        """Load, ``change(aggregate)`` (a function or a coroutine function), save —
        retried on a version conflict; ``change`` must be safe to run again."""

        async def attempt() -> A:
            agg = await self.load(id)
            done = change(agg)
            if inspect.isawaitable(done):
                await done
            await self.save(agg)
            return agg

        return await retry_on_conflict_async(attempt, retries)


class AsyncProjectionRunner:
    """Awaitable twin of :class:`~clawstate.events.ProjectionRunner`.

    Each page runs on the pool (handlers are sync code that reads the store); between
    pages, retry pauses and idle waits are ``asyncio`` waits, so :meth:`run_forever` is
    a task that :meth:`stop` (or cancelling it) ends promptly."""

    def __init__(self, runner: ProjectionRunner, run: _Runner) -> None:
        self._runner = runner
        self._run = run
        self._stopped = asyncio.Event()

    @property
    def sync(self) -> ProjectionRunner:
        return self._runner

    @property
    def projections(self) -> list[Projection]:
        return self._runner.projections

    async def step(self, projection: Projection) -> int:
        return await self._run(self._runner.step, projection)

    async def run_until_idle(self, names: Iterable[str] | None = None) -> int:
        """Like :meth:`ProjectionRunner.run_until_idle`; retry pauses do not hold a
        thread.  Raises :class:`~clawstate.events.ProjectionStopped` likewise."""
        runner = self._runner
        chosen = runner.projections if names is None else [runner._projection(n) for n in names]
        total = 0
        stopped: list[Projection] = []
        for projection in chosen:
            while not self._stopped.is_set():
                n, outcome, delay = await self._run(runner._step, projection)
                total += n
                if outcome == "retry":
                    await self._pause(delay)
                elif outcome in ("stopped", "idle"):
                    if outcome == "stopped":
                        stopped.append(projection)
                    break
        if stopped:
            name = stopped[0].name
            error: ProjectionStopped = await self._run(runner._stopped_error, name)
            raise error from runner._handler_errors.get(name)
        return total

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            pass

    async def run_forever(self, *, idle_wait: float = 1.0) -> None:
        """Process events as they commit until :meth:`stop`; the policy applies as in
        :meth:`ProjectionRunner.run_forever` (errors outside handlers are retried).
        Each round runs on the pool; idle waits and retry pauses are short pool waits
        or ``asyncio`` waits, so :meth:`stop` is noticed within a quarter second."""
        runner = self._runner
        while not self._stopped.is_set():
            if await self._run(runner._round):
                continue
            after, wait = runner._idle_plan(idle_wait)
            if after is None:
                await self._pause(wait)
                continue
            try:
                await self._run(runner._events._log.wait_for_events, after, min(wait, 0.25))
            except ClawStateError:
                await self._pause(wait)  # the backend is down: the next round retries

    def stop(self) -> None:
        """End :meth:`run_forever` / :meth:`run_until_idle` (call from the loop's thread,
        or use ``loop.call_soon_threadsafe``)."""
        self._stopped.set()
        self._runner.stop()

    async def reset(self, name: str) -> int:
        return await self._run(self._runner.reset, name)

    async def rebuild(self, name: str) -> int:
        await self.reset(name)
        return await self.run_until_idle([name])

    async def retry(self, name: str) -> ProjectionStatus:
        return await self._run(self._runner.retry, name)

    async def skip(self, name: str) -> dict[str, Any]:
        return await self._run(self._runner.skip, name)

    async def status(self) -> list[ProjectionStatus]:
        return await self._run(self._runner.status)


class AsyncTxEvents:
    """``tx.events`` in an :class:`~clawstate.AsyncTransaction`; appends buffer until commit.

    Like the transaction's namespace writes, ``append`` and ``set_stream_metadata``
    buffer when called and return an already-complete awaitable: a forgotten
    ``await`` loses nothing."""

    def __init__(self, tx_events: TxEvents) -> None:
        self._tx_events = tx_events

    def append(
        self, stream: str, events: Sequence[Event], *, expected_version: ExpectedVersion = ANY
    ) -> Buffered:
        self._tx_events.append(stream, events, expected_version=expected_version)
        return BUFFERED

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | Literal[_Keep.KEEP] | None = KEEP,
        max_count: int | Literal[_Keep.KEEP] | None = KEEP,
        truncate_before: int | Literal[_Keep.KEEP] | None = KEEP,
        expected_version: ExpectedVersion = ANY,
    ) -> Buffered:
        self._tx_events.set_stream_metadata(
            stream,
            max_age=max_age,
            max_count=max_count,
            truncate_before=truncate_before,
            expected_version=expected_version,
        )
        return BUFFERED
