"""Small pieces the awaitable faces (``aio.py``, ``events/aio.py``) share.

* :data:`BUFFERED` — what a write inside an async transaction returns.  The write is
  buffered *synchronously*, when the method is called, and the returned object is
  already complete, so ``await tx.namespace("a").put(...)`` and a forgotten
  ``await`` buffer the same write.  With a coroutine instead, a missing ``await``
  meant the write was never buffered and the transaction committed without it,
  with only a ``RuntimeWarning`` to tell.
* :class:`RunsSync` — the thread-pool runner each awaitable face hands its sync
  calls to, as a Protocol, so the event store's async face need not import the
  store's (which imports it: ``AsyncStore.events``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, ParamSpec, Protocol, TypeVar

__all__ = ["BUFFERED", "Buffered", "RunsSync"]

P = ParamSpec("P")
T = TypeVar("T")


class Buffered:
    """A transaction write that is already buffered: awaiting it returns None at once."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return
        yield  # a generator, so ``await`` accepts it; it never suspends

    def __repr__(self) -> str:
        return "<buffered in the transaction>"


#: The one :class:`Buffered` instance (it holds no state).
BUFFERED = Buffered()


class RunsSync(Protocol):
    """Runs a sync callable on a thread pool and awaits its result."""

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...
