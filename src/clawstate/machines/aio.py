"""``AsyncStore.machine``: the awaitable twin of :class:`~clawstate.machines.Machine`.

It runs the sync handle's methods on the store's thread pool, never re-implementing
them.  Building the handle stores the definition (a write), so :meth:`AsyncStore.machine`
checks the definition at once (a bad one raises there) and defers the store round
trip to the first awaited call.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..types import Instance, Transition
from .definition import check_machine_name, parse_definition

if TYPE_CHECKING:
    from .._awaitable import RunsSync as Runner
    from ..store import Store
    from .machine import InstancePage, Machine

__all__ = ["AsyncMachine"]


class AsyncMachine:
    """Awaitable twin of :class:`~clawstate.machines.Machine` (same methods)."""

    def __init__(self, store: Store, run: Runner, name: str, definition: Any = None) -> None:
        self.name = check_machine_name(name)
        self._store = store
        self._run = run
        self._definition = None if definition is None else parse_definition(definition)
        self._handle: Machine | None = None
        self._lock = threading.Lock()

    def _sync(self) -> Machine:
        with self._lock:
            if self._handle is None:
                self._handle = self._store.machine(self.name, self._definition)
            return self._handle

    async def sync(self) -> Machine:
        """The underlying sync handle (built, and the definition stored, on first use)."""
        return await self._run(self._sync)

    async def create(self, id: str, data: Any = None) -> Instance:
        return await self._run(lambda: self._sync().create(id, data))

    async def fire(
        self, id: str, event: str, payload: Any = None, expected_version: int | None = None
    ) -> Instance:
        return await self._run(lambda: self._sync().fire(id, event, payload, expected_version))

    async def get(self, id: str) -> Instance | None:
        return await self._run(lambda: self._sync().get(id))

    async def history(self, id: str) -> list[Transition]:
        return await self._run(lambda: self._sync().history(id))

    async def query(
        self, state: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> InstancePage:
        return await self._run(lambda: self._sync().query(state, limit, cursor))

    async def counts(self) -> dict[str, int]:
        return await self._run(lambda: self._sync().counts())

    async def render(self, format: str = "mermaid", *, counts: bool = True) -> str:
        return await self._run(lambda: self._sync().render(format, counts=counts))

    async def rebuild(self, id: str) -> Instance | None:
        return await self._run(lambda: self._sync().rebuild(id))

    async def rebuild_all(self) -> int:
        return await self._run(lambda: self._sync().rebuild_all())
