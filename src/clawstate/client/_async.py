"""The awaitable facade: :class:`AsyncRemoteStore`, the twin of :class:`RemoteStore`
as :class:`~clawstate.aio.AsyncStore` is of the embedded store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._awaitable import BUFFERED, Buffered
from .._retry import update_item_async
from .._validate import check_key_list
from ..config import Config
from ..locks import AsyncLockContext
from ..types import (
    AppendResult,
    CheckReport,
    Item,
    Page,
)
from ._calls import (
    _changes_call,
    _count_call,
    _delete_call,
    _get_call,
    _get_many_call,
    _NsSpec,
    _put_call,
    _put_many_call,
    _query_call,
    _scan_call,
    _simple,
    _TxBuffer,
)
from ._events import (
    AsyncRemoteEvents,
    AsyncRemoteTxEvents,
)
from ._locks import AsyncRemoteLocks
from ._machines import AsyncRemoteMachine
from ._machines import list_call as _machines_list_call
from ._sse import (
    AsyncRemoteWatch,
    _start_watch,
)
from ._sync import (
    RemoteStore,
)
from ._timers import AsyncRemoteTimers
from ._transport import (
    _AsyncTransport,
)

# -- the async facade ------------------------------------------------------------------


class AsyncRemoteNamespace:
    """Awaitable twin of :class:`RemoteNamespace`."""

    def __init__(self, store: AsyncRemoteStore, name: str) -> None:
        self._store = store
        self._t = store._t
        self.name = name
        self._spec = _NsSpec(name, store._limits)

    async def get(self, key: str) -> Item | None:
        return await self._t.call(_get_call(self._spec, key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        return await self._t.call(_get_many_call(self._spec, keys))

    async def scan(self, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        return await self._t.call(_scan_call(self._spec, prefix, limit, cursor))

    async def query(self, query: Any, *, explain: bool = False) -> Page:
        return await self._t.call(_query_call(self._spec, query, explain))

    async def count(self) -> int:
        return await self._t.call(_count_call(self._spec))

    def watch(
        self, from_seq: int | None = 0, *, prefix: str = "", timeout: float | None = None
    ) -> AsyncRemoteWatch:
        return self._store.watch(from_seq, namespace=self.name, prefix=prefix, timeout=timeout)

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
        return await self._t.call(
            _put_call(
                self._spec, key, value, ttl, if_version, if_absent, idempotency_key, keep_ttl, fence
            )
        )

    async def put_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> list[Item]:
        call = _put_many_call(self._spec, items, ttl, idempotency_key, fence)
        if not call.body["items"]:
            return []
        return await self._t.call(call)

    async def delete(
        self,
        key: str,
        *,
        if_version: int | None = None,
        idempotency_key: str | None = None,
        fence: Any = None,
    ) -> bool:
        return await self._t.call(_delete_call(self._spec, key, if_version, idempotency_key, fence))

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        ttl: float | None = None,
        retries: int = 10,
    ) -> Item:
        """Awaitable :meth:`RemoteNamespace.update` (``fn`` may be a coroutine
        function); pauses between retries are ``asyncio`` sleeps."""
        limits = self._spec.limits
        return await update_item_async(
            self,
            key,
            fn,
            default=default,
            ttl=ttl,
            retries=retries,
            max_key_bytes=limits.max_key_bytes,
            max_ttl=limits.max_ttl_seconds,
        )


class AsyncRemoteTxNamespace:
    """A namespace inside an :class:`AsyncRemoteTransaction`.  Writes are buffered when
    called — awaiting them is optional (they return :data:`~clawstate._awaitable.BUFFERED`),
    as in the embedded async transaction — so a write created but not awaited is still
    committed, never silently dropped."""

    def __init__(self, tx: AsyncRemoteTransaction, ns: AsyncRemoteNamespace) -> None:
        self._tx = tx
        self._ns = ns
        self.name = ns.name

    async def get(self, key: str) -> Item | None:
        """As :meth:`RemoteTxNamespace.get`: own buffered writes first."""
        committed = await self._ns.get(key)
        buf = self._tx._buf
        if not buf.touches(self.name, key):
            return committed
        now = self._tx._store._sync._now()
        return buf.overlay(self.name, key, committed, self._tx._started, now)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Item]:
        """As :meth:`RemoteTxNamespace.get_many`: own buffered writes first."""
        limits = self._ns._spec.limits
        keys = check_key_list(keys, limits.max_batch, limits.max_key_bytes)
        found = await self._ns.get_many(keys)
        buf, start, now = self._tx._buf, self._tx._started, self._tx._store._sync._now()
        out: dict[str, Item] = {}
        for key in keys:
            item = found.get(key)
            if buf.touches(self.name, key):
                item = buf.overlay(self.name, key, item, start, now)
            if item is not None:
                out[key] = item
        return out

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
        self._tx._buf.put(self.name, key, value, ttl, if_version, if_absent, keep_ttl, fence)
        return BUFFERED

    def delete(self, key: str, *, if_version: int | None = None, fence: Any = None) -> Buffered:
        self._tx._buf.delete(self.name, key, if_version, fence)
        return BUFFERED


class AsyncRemoteTransaction:
    """``async with astore.transaction() as tx:`` — one request when the block exits."""

    def __init__(self, store: AsyncRemoteStore, idempotency_key: str | None) -> None:
        self._store = store
        self._buf = _TxBuffer(store._limits, idempotency_key)
        self._started = store._sync._now()

    @property
    def result(self) -> list[Item | bool]:
        return self._buf.result

    @property
    def appended(self) -> list[AppendResult]:
        """One :class:`~clawstate.AppendResult` per ``tx.events.append``, after commit."""
        return self._buf.appended

    @property
    def events(self) -> AsyncRemoteTxEvents:
        """Appends committed atomically with this transaction's writes (the outbox)."""
        self._buf.check_open()
        return AsyncRemoteTxEvents(self._buf, self._store._limits)

    def namespace(self, name: str) -> AsyncRemoteTxNamespace:
        self._buf.check_open()
        return AsyncRemoteTxNamespace(self, self._store.namespace(name))

    async def commit(self) -> list[Item | bool]:
        call = self._buf.commit_call()
        if call is not None:
            self._buf.committed(await self._store._t.call(call))
        return self._buf.result

    def rollback(self) -> None:
        self._buf.rollback()

    async def __aenter__(self) -> AsyncRemoteTransaction:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._buf.done:
            await self.commit()
        elif not self._buf.done:
            self.rollback()


class AsyncRemoteStore:
    """Awaitable twin of :class:`RemoteStore`.  Build it with ``clawstate.open_async``.

    Construction (and ``watch()``, like ``AsyncStore.watch``) talk to the server
    synchronously once; everything else is awaited on one ``httpx.AsyncClient``.
    """

    def __init__(self, sync: RemoteStore) -> None:
        self._sync = sync
        self._limits = sync._limits
        self._t = _AsyncTransport(sync._settings)
        self.url = sync.url
        self._namespaces: dict[str, AsyncRemoteNamespace] = {}
        self._events: AsyncRemoteEvents | None = None
        self._closed = False

    @property
    def sync(self) -> RemoteStore:
        """A sync client on the same server and token (same data)."""
        return self._sync

    @property
    def config(self) -> Config:
        return self._sync.config

    def namespace(self, name: str, /, **options: Any) -> AsyncRemoteNamespace:
        """See :meth:`RemoteStore.namespace`: ``options`` are refused."""
        if not options and type(name) is str and name in self._namespaces:
            return self._namespaces[name]
        self._sync.namespace(name, **options)  # the same checks, synchronously
        ans = self._namespaces[name] = AsyncRemoteNamespace(self, name)
        return ans

    def transaction(self, *, idempotency_key: str | None = None) -> AsyncRemoteTransaction:
        return AsyncRemoteTransaction(self, idempotency_key)

    def machine(self, name: str, definition: Any = None) -> AsyncRemoteMachine:
        """The state machine ``name`` over HTTP, awaitable (see ``Store.machine``); the
        definition is stored on the first awaited call."""
        return AsyncRemoteMachine(self._t, name, definition)

    async def list_machines(self) -> list[str]:
        """The machines with a stored definition that this token may read."""
        return await self._t.call(_machines_list_call())

    @property
    def timers(self) -> AsyncRemoteTimers:
        """Durable timers over HTTP, awaitable (see ``Store.timers``; firing is the worker's)."""
        return AsyncRemoteTimers(self._t)

    @property
    def locks(self) -> AsyncRemoteLocks:
        """Leases with fencing tokens over HTTP, awaitable (see ``Store.locks``)."""
        return AsyncRemoteLocks(self._t)

    def lock(
        self,
        name: str,
        *,
        ttl: float | str = 30,
        wait: float | str | None = None,
        renew: bool = False,
        owner: str | None = None,
    ) -> AsyncLockContext:
        """``async with astore.lock(name, ...) as lease:`` over HTTP."""
        return AsyncLockContext(self.locks, name, ttl, wait, renew, owner)

    @property
    def events(self) -> AsyncRemoteEvents:
        """The event store over HTTP, awaitable (``astore.events``)."""
        if self._events is None:
            self._events = AsyncRemoteEvents(self)
        return self._events

    def watch(
        self,
        from_seq: int | None = 0,
        *,
        namespace: str | None = None,
        prefix: str = "",
        timeout: float | None = None,
        backend: str | None = None,
    ) -> AsyncRemoteWatch:
        spec = _start_watch(self._sync._t, from_seq, namespace, prefix, timeout, backend)
        return AsyncRemoteWatch(self._t, spec)

    async def last_seq(self) -> int:
        """The newest change-log seq of the default backend (``RemoteStore.last_seq``)."""
        call = _changes_call(None, None, "", None, 0, "default")
        return (await self._t.call(call)).last_seq

    async def namespaces(self) -> list[str]:
        return list((await self._t.call(_simple("GET", "/v1/namespaces")))["namespaces"])

    async def sweep(self) -> dict[str, int]:
        return dict(await self._t.call(_simple("POST", "/v1/admin/sweep")))

    async def stats(self) -> dict[str, Any]:
        return dict(await self._t.call(_simple("GET", "/v1/admin/stats")))

    async def check(self, *, deep: bool = False) -> CheckReport:
        doc = await self._t.call(
            _simple("GET", "/v1/admin/check", {"deep": "true" if deep else "false"})
        )
        return CheckReport(list(doc["problems"]), dict(doc["checked"]))

    async def close(self) -> None:
        self._closed = True
        await self._t.close()
        self._sync.close()

    async def __aenter__(self) -> AsyncRemoteStore:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
