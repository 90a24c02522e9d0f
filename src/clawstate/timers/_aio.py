"""``AsyncStore.timers``: the sync timers run on the store's pool."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..types import TimerInfo
    from . import TimerPage, Timers

__all__ = ["AsyncTimers"]


class AsyncTimers:
    """``astore.timers``: :class:`Timers` awaitable — each call runs the sync code on
    the store's pool (no second implementation)."""

    def __init__(self, timers: Timers, run: Callable[..., Any]) -> None:
        self.sync = timers
        self._run = run

    async def schedule(
        self,
        name: str,
        *,
        handler: str,
        at: float | None = None,
        after: float | str | None = None,
        payload: Any = None,
    ) -> TimerInfo:
        """See :meth:`Timers.schedule` (inside a transaction, use the sync face)."""
        info: TimerInfo = await self._run(
            functools.partial(
                self.sync.schedule, name, handler=handler, at=at, after=after, payload=payload
            )
        )
        return info

    async def cancel(self, name: str) -> bool:
        done: bool = await self._run(self.sync.cancel, name)
        return done

    async def get(self, name: str) -> TimerInfo | None:
        info: TimerInfo | None = await self._run(self.sync.get, name)
        return info

    async def list(
        self, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> TimerPage:
        page: TimerPage = await self._run(self.sync.list, prefix, limit, cursor)
        return page

    async def fire_due(self, now: float | None = None, *, limit: int = 100) -> int:
        fired: int = await self._run(functools.partial(self.sync.fire_due, now, limit=limit))
        return fired
