"""AsyncStore: the same facade, awaitable.

One implementation, two faces: every coroutine here hands the corresponding
*sync* method to a thread pool and awaits its future.  Reads run on pool threads
with their own connections and never block the event loop.

Awaited single puts are group-committed before they reach the pool
(``batch_writes=True``, the default; see :mod:`clawstate._batch`): the plain puts
awaited during one event-loop iteration are written through ONE transaction, each
caller still getting its own Item or its own error.  Handed to the pool one by one
they would seldom meet in the backend's group committer, since the event loop holds
the GIL most of the time.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._awaitable import BUFFERED, Buffered
from ._batch import SharedCommitHook, WriteBatcher
from ._retry import update_item_async
from .cache import Miss
from .store import Namespace, Store, Transaction, TxNamespace, Watch
from .types import AppendResult, Change, CheckReport, Item, Page

if TYPE_CHECKING:
    from .events.aio import AsyncEventStore, AsyncTxEvents
    from .locks import AsyncLockContext, AsyncLocks
    from .machines.aio import AsyncMachine
    from .timers import AsyncTimers

__all__ = ["AsyncNamespace", "AsyncStore", "AsyncTransaction", "AsyncWatch"]

P = ParamSpec("P")
T = TypeVar("T")


class _Runner:
    """Runs sync callables on a private pool and awaits them."""

    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="clawstate")

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # Like asyncio.to_thread, run in a copy of the caller's context: context
        # variables (a request's trace span, the server's test clock) follow the call.
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class AsyncNamespace:
    """Awaitable twin of :class:`~clawstate.store.Namespace`."""

    def __init__(
        self, ns: Namespace, run: _Runner, batch: WriteBatcher | None = None, *, shared: bool = True
    ) -> None:
        self._ns = ns
        self._run = run
        #: the store's write batcher (None: every put goes to the pool on its own)
        self._batch = batch
        #: False for a handle with its own options: its puts never share a commit
        self._shared = shared
        self.name = ns.name

    @property
    def sync(self) -> Namespace:
        """The underlying sync Namespace (same data, same policy)."""
        return self._ns

    async def get(self, key: str) -> Item | None:
        cache = self._ns._cache
        if cache is not None:
            # An L1 hit is a few dict operations that never block: answer it on the
            # event loop instead of paying a thread hop (~50 µs) for it.
            hit = cache.peek(key)
            if not isinstance(hit, Miss):
                return hit
        return await self._run(self._ns.get, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        # Handed over as given: the facade checks the shape (list(keys) here would read
        # "abc" as keys a, b, c and turn None into a TypeError).
        return await self._run(self._ns.get_many, keys)

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
    ) -> Item:
        if self._batch is not None and fence is None:
            return await self._batch.put(
                self._ns,
                key,
                value,
                ttl=ttl,
                if_version=if_version,
                if_absent=if_absent,
                idempotency_key=idempotency_key,
                keep_ttl=keep_ttl,
                shareable=self._shared,
            )
        return await self._run(
            self._ns.put,
            key,
            value,
            ttl=ttl,
            if_version=if_version,
            if_absent=if_absent,
            idempotency_key=idempotency_key,
            keep_ttl=keep_ttl,
            fence=fence,
        )

    async def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> list[Item]:
        # As given: the facade checks the shape (a str, None, wrong-arity pairs).
        return await self._run(
            self._ns.put_many, items, ttl=ttl, idempotency_key=idempotency_key, fence=fence
        )

    async def delete(
        self,
        key: str,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> bool:
        return await self._run(
            self._ns.delete,
            key,
            if_version=if_version,
            idempotency_key=idempotency_key,
            fence=fence,
        )

    async def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        return await self._run(self._ns.scan, prefix, limit, cursor)

    async def query(self, query: Any, *, explain: bool = False) -> Page:
        return await self._run(self._ns.query, query, explain=explain)

    async def count(self) -> int:
        return await self._run(self._ns.count)

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        ttl: float | None = None,
        retries: int = 10,
    ) -> Item:
        """Awaitable :meth:`Namespace.update <clawstate.Namespace.update>`: read, apply
        ``fn`` (on the event loop; it may also return an awaitable), write with
        ``if_version`` / ``if_absent``, retried on conflict with ``asyncio.sleep``
        pauses (no thread is held while it waits)."""
        return await update_item_async(
            self,
            key,
            fn,
            default=default,
            ttl=ttl,
            retries=retries,
            max_key_bytes=self._ns._max_key,
            max_ttl=self._ns._max_ttl,
        )

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> AsyncWatch:
        return AsyncWatch(self._ns.watch(from_seq, prefix=prefix, timeout=timeout), self._run)


class AsyncTxNamespace:
    """A namespace inside an :class:`AsyncTransaction`; writes buffer until commit.

    ``put`` and ``delete`` buffer the write when they are *called* and return an
    already-complete awaitable (:data:`clawstate._awaitable.BUFFERED`): awaiting them
    is allowed and costs nothing, and forgetting the ``await`` loses nothing.  Reads
    see the transaction's own buffered writes (see :class:`~clawstate.TxNamespace`).
    """

    def __init__(self, tx_ns: TxNamespace, run: _Runner) -> None:
        self._tx_ns = tx_ns
        self._run = run
        self.name = tx_ns.name

    async def get(self, key: str) -> Item | None:
        return await self._run(self._tx_ns.get, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        return await self._run(self._tx_ns.get_many, keys)

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
    ) -> Buffered:
        self._tx_ns.put(
            key,
            value,
            ttl=ttl,
            if_version=if_version,
            if_absent=if_absent,
            keep_ttl=keep_ttl,
            fence=fence,
        )
        return BUFFERED

    def delete(self, key: str, *, if_version: int | None = None, fence: Any = None) -> Buffered:
        self._tx_ns.delete(key, if_version=if_version, fence=fence)
        return BUFFERED


class AsyncTransaction:
    """``async with astore.transaction() as tx:`` — commits when the block exits."""

    def __init__(self, tx: Transaction, run: _Runner) -> None:
        self._tx = tx
        self._run = run

    @property
    def result(self) -> list[Item | bool]:
        return self._tx.result

    @property
    def appended(self) -> list[AppendResult]:
        return self._tx.appended

    @property
    def events(self) -> AsyncTxEvents:
        """Appends committed with the transaction's writes (see ``Transaction.events``)."""
        from .events.aio import AsyncTxEvents

        return AsyncTxEvents(self._tx.events)

    def namespace(self, name: str) -> AsyncTxNamespace:
        return AsyncTxNamespace(self._tx.namespace(name), self._run)

    async def commit(self) -> list[Item | bool]:
        return await self._run(self._tx.commit)

    def rollback(self) -> None:
        self._tx.rollback()

    async def __aenter__(self) -> AsyncTransaction:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._tx._done:
            await self.commit()
        elif not self._tx._done:
            self.rollback()


class AsyncWatch(AsyncIterator[Change]):
    """Async iterator over a :class:`~clawstate.store.Watch`.

    Reads of the log run on the pool; waiting for the next change does not: it
    awaits the log's shared waiter (:meth:`clawstate._follow.Cursor.wait_async`),
    so an idle watch holds no pool thread and ``close()`` wakes it at once.
    """

    def __init__(self, watch: Watch, run: _Runner) -> None:
        self._watch = watch
        self._run = run

    @property
    def last_seq(self) -> int:
        return self._watch.last_seq

    @property
    def sync(self) -> Watch:
        return self._watch

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> Change:
        watch = self._watch
        buffer = watch._buffer
        cursor = watch.cursor
        loop = asyncio.get_running_loop()
        timeout = watch._timeout
        # One deadline per call, as for the sync watch.
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if buffer:
                return buffer.popleft()
            if cursor.closed:
                raise StopAsyncIteration
            if await self._run(watch._fill):
                continue
            if deadline is None:
                await cursor.wait_async()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StopAsyncIteration
            await cursor.wait_async(remaining)

    async def poll(self) -> list[Change]:
        """Every change available now, without waiting (:meth:`Watch.poll`, on the pool)."""
        return await self._run(self._watch.poll)

    def close(self) -> None:
        """Stop the watch (from any thread or task): a pending ``__anext__`` ends now."""
        self._watch.close()


class AsyncStore:
    """Awaitable twin of :class:`~clawstate.store.Store`.  Build it with ``open_async``.

    ``batch_writes`` (default on) group-commits the plain puts awaited during one
    event-loop iteration (see :mod:`clawstate._batch`); ``batch_key``, read in each
    caller's context, keeps apart puts that must not share a transaction (equal
    readings share); ``on_shared_commit(committed, writes)`` is told of every shared
    commit, on a pool thread (the server counts them in its metrics).
    """

    def __init__(
        self,
        store: Store,
        *,
        max_workers: int = 32,
        batch_writes: bool = True,
        batch_key: Callable[[], Hashable] | None = None,
        on_shared_commit: SharedCommitHook | None = None,
    ) -> None:
        self._store = store
        self._run = _Runner(max_workers)
        self._batch: WriteBatcher | None = None
        if batch_writes:
            self._batch = WriteBatcher(
                store, self._run, batch_key=batch_key, on_shared_commit=on_shared_commit
            )
        self._namespaces: dict[str, AsyncNamespace] = {}
        self._events: AsyncEventStore | None = None
        self._locks: AsyncLocks | None = None
        self._timers: AsyncTimers | None = None

    @property
    def sync(self) -> Store:
        """The underlying sync Store (same data, same connections)."""
        return self._store

    @property
    def config(self) -> Any:
        return self._store.config

    def namespace(self, name: str, /, **options: Any) -> AsyncNamespace:
        if not options and name in self._namespaces:
            return self._namespaces[name]
        ans = AsyncNamespace(
            self._store.namespace(name, **options), self._run, self._batch, shared=not options
        )
        if not options:
            self._namespaces[name] = ans
        return ans

    def transaction(self, *, idempotency_key: str | None = None) -> AsyncTransaction:
        return AsyncTransaction(self._store.transaction(idempotency_key=idempotency_key), self._run)

    @property
    def events(self) -> AsyncEventStore:
        """The event store, awaitable (see ``Store.events``)."""
        if self._events is None:
            from .events.aio import AsyncEventStore

            self._events = AsyncEventStore(self._store.events, self._run)
        return self._events

    @property
    def locks(self) -> AsyncLocks:
        """Leases with fencing tokens, awaitable (see ``Store.locks``)."""
        if self._locks is None:
            from .locks import AsyncLocks

            self._locks = AsyncLocks(self._store.locks, self._run)
        return self._locks

    @property
    def timers(self) -> AsyncTimers:
        """Durable timers, awaitable (see ``Store.timers``; firing is the worker's)."""
        if self._timers is None:
            from .timers import AsyncTimers

            self._timers = AsyncTimers(self._store.timers, self._run)
        return self._timers

    def lock(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> AsyncLockContext:
        """``async with astore.lock(name, ...) as lease:`` (see ``Store.lock``)."""
        from .locks import AsyncLockContext

        return AsyncLockContext(self.locks, name, ttl, wait, renew, owner)

    def machine(self, name: str, definition: Any = None) -> AsyncMachine:
        """The state machine ``name``, awaitable (see ``Store.machine``): the
        definition is checked now, stored on the first awaited call."""
        from .machines.aio import AsyncMachine

        return AsyncMachine(self._store, self._run, name, definition)

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> AsyncWatch:
        return AsyncWatch(
            self._store.watch(
                from_seq, namespace=namespace, prefix=prefix, timeout=timeout, backend=backend
            ),
            self._run,
        )

    async def last_seq(self) -> int:
        """The newest change-log sequence number of the default backend
        (:attr:`Store.last_seq <clawstate.Store.last_seq>`, read on the pool)."""
        return await self._run(lambda: self._store.last_seq)

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on this store's thread pool, in a copy of the
        caller's context: for sync work against :attr:`sync` that has no awaitable
        twin here (the HTTP server's token checks, audit records, SSE reads)."""
        return await self._run(fn, *args, **kwargs)

    async def namespaces(self) -> list[str]:
        return await self._run(self._store.namespaces)

    async def sweep(self) -> dict[str, int]:
        return await self._run(self._store.sweep)

    async def stats(self) -> dict[str, Any]:
        return await self._run(self._store.stats)

    async def check(self, *, deep: bool = False) -> CheckReport:
        return await self._run(self._store.check, deep=deep)

    async def close(self) -> None:
        await self._run(self._store.close)
        self._run.shutdown()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
