"""Group commit for awaited writes: the puts of one event-loop iteration share a commit.

Why this exists: an asyncio program hands each awaited write to a thread pool.  With
the event loop holding the GIL most of the time, writes handed over one by one seldom
meet in the backend's own group committer (measured in the server: a mean batch of
1.2 writes at 64 connections), so each pays a thread hand-off and a commit of its own.
:class:`WriteBatcher` collects the puts awaited during one loop iteration and hands
them to the pool as ONE job:

* plain puts (no condition, no idempotency key, no ``keep_ttl``) of one backend are
  written through ONE facade transaction — what the backend's group commit does with
  concurrent writers — and each caller still gets its own :class:`Item`;
* a bad key or value is refused for its own caller only: ``TxNamespace.put`` checks it
  before it joins the shared transaction;
* if the shared commit fails as a whole (the backend broke), every write of it is
  retried alone, so each caller sees its own outcome;
* conditional and idempotent puts (and puts to a write-back or per-handle-options
  namespace) run one by one in that same job, each in its caller's context.

``AsyncStore`` owns one (``batch_writes=True``, the default); the HTTP server is an
``AsyncStore`` user like any other.  ``batch_key`` keeps apart the puts that must not
share a transaction: it is read in each caller's context, and only puts with equal
readings share one (the test server's per-request clock is the one user: a shared
commit runs in the context of its first put, so its timestamps are those of that clock).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Namespace, Store
    from .types import Item

__all__ = ["SharedCommitHook", "WriteBatcher"]

#: Called on a pool thread after each shared commit: ``(committed, writes)``;
#: ``committed`` is False when the commit failed as a whole and each of its ``writes``
#: was retried alone.
SharedCommitHook = Callable[[bool, int], None]


class _Pending:
    """One awaited write: what to call, in which context, and how it ended."""

    __slots__ = ("args", "context", "fn", "fut", "group", "kwargs", "ns", "outcome")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ns: Namespace | None,
        fut: asyncio.Future[Any],
        group: Hashable,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ns = ns  # set for a plain put that may share a commit
        self.context = contextvars.copy_context()
        self.fut = fut
        self.group = group
        self.outcome: tuple[bool, Any] | None = None


class WriteBatcher:
    """Collects the writes awaited during one event-loop iteration into one pool job.

    ``run`` hands a sync callable to the store's pool (``AsyncStore.run``)."""

    def __init__(
        self,
        store: Store,
        run: Callable[..., Awaitable[Any]],
        *,
        batch_key: Callable[[], Hashable] | None = None,
        on_shared_commit: SharedCommitHook | None = None,
    ) -> None:
        self._store = store
        self._run = run
        self._batch_key = batch_key
        self._on_shared_commit = on_shared_commit
        self._queue: list[_Pending] = []
        self._scheduled = False

    def put(
        self,
        ns: Namespace,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_version: int | None = None,
        if_absent: bool = False,
        idempotency_key: str | None = None,
        keep_ttl: bool = False,
        shareable: bool = True,
    ) -> asyncio.Future[Item]:
        """``ns.put(...)`` in the next batch; the future holds its Item or its error.

        ``shareable=False`` keeps the put out of shared commits (a namespace handle
        whose policy differs from the store's, which a transaction would not use)."""
        plain = (
            shareable
            and if_version is None
            and if_absent is False
            and idempotency_key is None
            and keep_ttl is False
            and ns.policy.cache != "write-back"  # acknowledged from its cache: no commit
        )
        kwargs: dict[str, Any] = {
            "ttl": ttl,
            "if_version": if_version,
            "if_absent": if_absent,
            "idempotency_key": idempotency_key,
        }
        if keep_ttl is not False:
            kwargs["keep_ttl"] = keep_ttl
        return self._add(ns.put, (key, value), kwargs, ns if plain else None)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """``fn(*args, **kwargs)`` in the next batch, alone, in the caller's context."""
        return self._add(fn, args, kwargs, None)

    def _add(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ns: Namespace | None,
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        group: Hashable = None
        if ns is not None:
            group = (ns.backend_name, None if self._batch_key is None else self._batch_key())
        pending = _Pending(fn, args, kwargs, ns, loop.create_future(), group)
        self._queue.append(pending)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return pending.fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        asyncio.get_running_loop().create_task(self._run_batch(batch))

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            await self._run(self._apply, batch)
        except BaseException as exc:  # the pool itself failed: fail every caller
            for p in batch:
                if p.outcome is None:
                    p.outcome = (False, exc)
        for p in batch:
            fut = p.fut
            if fut.done():  # the caller was cancelled: nobody to tell
                continue
            assert p.outcome is not None
            ok, value = p.outcome
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    # -- on a pool thread ------------------------------------------------------------------

    def _apply(self, batch: list[_Pending]) -> None:
        """Plain puts in shared transactions (per backend and batch key), the rest one
        by one, in arrival order within each kind."""
        groups: dict[Hashable, list[_Pending]] = {}
        for p in batch:
            if p.ns is not None:
                groups.setdefault(p.group, []).append(p)
            else:
                _apply_one(p)
        limit = self._store.config.limits.max_batch
        for pending in groups.values():
            for i in range(0, len(pending), limit):
                chunk = pending[i : i + limit]
                if len(chunk) == 1:
                    _apply_one(chunk[0])
                else:
                    # The first put's context (a copy: it may run again alone below),
                    # so a context-dependent clock reads as it would for that put.
                    chunk[0].context.copy().run(self._apply_shared, chunk)

    def _apply_shared(self, pending: list[_Pending]) -> None:
        tx = self._store.transaction()
        joined: list[_Pending] = []
        for p in pending:
            assert p.ns is not None
            key, value = p.args
            try:
                tx.namespace(p.ns.name).put(key, value, ttl=p.kwargs["ttl"])
            except Exception as exc:  # this caller's own bad input: refused alone
                p.outcome = (False, exc)
                continue
            joined.append(p)
        if not joined:
            tx.rollback()
            return
        try:
            results = tx.commit()
        except Exception:
            for p in joined:  # the shared commit failed as a whole: each on its own
                _apply_one(p)
            self._report(False, len(joined))
            return
        for p, item in zip(joined, results, strict=True):
            p.outcome = (True, item)
        self._report(True, len(joined))

    def _report(self, committed: bool, writes: int) -> None:
        hook = self._on_shared_commit
        if hook is not None:
            try:
                hook(committed, writes)
            except Exception:  # an observer's bug must not fail the writes it observes
                pass


def _apply_one(p: _Pending) -> None:
    try:
        p.outcome = (True, p.context.run(p.fn, *p.args, **p.kwargs))
    except Exception as exc:
        p.outcome = (False, exc)
