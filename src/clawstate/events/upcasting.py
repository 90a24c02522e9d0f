"""Upcasting: old event shapes are transformed on read, never rewritten in the log.

An upcaster is registered for ``(type, from_version)`` and turns ``data`` of
that schema version into the shape of ``from_version + 1`` (optionally under a
new type name).  On read, upcasters are chained until none matches, so an
event written at version 1 reaches the current version through every step in
between — the log keeps what really happened, and code only knows the newest
shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import msgspec

from ..errors import InvalidRequest
from ..types import RecordedEvent

__all__ = ["Upcaster", "Upcasters"]

#: ``data`` at ``from_version`` -> ``data`` at ``from_version + 1``.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: A chain longer than this is taken for a cycle (a renamed type upcast back).
MAX_CHAIN = 1000


class Upcasters:
    """The registry ``store.events.upcasters``; also usable as a decorator factory::

    @store.events.upcasters.register("OrderPlaced", 1)
    def v1_to_v2(data):
        return {**data, "currency": "EUR"}
    """

    def __init__(self) -> None:
        self._fns: dict[tuple[str, int], tuple[Upcaster, str | None]] = {}

    def __bool__(self) -> bool:
        return bool(self._fns)

    def __len__(self) -> int:
        return len(self._fns)

    @overload
    def register(
        self, type: str, from_version: int, fn: None = None, *, to_type: str | None = None
    ) -> Callable[[Upcaster], Upcaster]: ...

    @overload
    def register(
        self, type: str, from_version: int, fn: Upcaster, *, to_type: str | None = None
    ) -> Upcaster: ...

    def register(
        self,
        type: str,
        from_version: int,
        fn: Upcaster | None = None,
        *,
        to_type: str | None = None,
    ) -> Upcaster | Callable[[Upcaster], Upcaster]:
        """Register ``fn`` for events of ``type`` at schema ``from_version``; without
        ``fn``, return a decorator.  ``to_type`` renames the event as it is upcast."""
        if not isinstance(type, str) or not type:
            raise InvalidRequest("type", f"must be a non-empty string, got {type!r}")
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise InvalidRequest("from_version", f"must be an integer >= 1, got {from_version!r}")
        if fn is None:

            def decorate(f: Upcaster) -> Upcaster:
                self.register(type, from_version, f, to_type=to_type)
                return f

            return decorate
        key = (type, from_version)
        if key in self._fns:
            raise InvalidRequest(
                "from_version", f"an upcaster for {type!r} version {from_version} is registered"
            )
        self._fns[key] = (fn, to_type)
        return fn

    def latest_version(self, type: str, version: int = 1) -> int:
        """The schema version an event of ``type`` at ``version`` is upcast to."""
        steps = 0
        while (type, version) in self._fns and steps < MAX_CHAIN:
            type = self._fns[(type, version)][1] or type
            version += 1
            steps += 1
        return version

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        """``event`` brought to its newest shape (the same object when nothing applies)."""
        found = self._fns.get((event.type, event.schema_version))
        if found is None:
            return event
        type_, version, data = event.type, event.schema_version, event.data
        steps = 0
        while found is not None:
            fn, to_type = found
            data = fn(dict(data))
            if not isinstance(data, dict):
                raise TypeError(
                    f"upcaster for {type_!r} version {version} returned "
                    f"{data.__class__.__name__}, not a dict"
                )
            type_ = to_type or type_
            version += 1
            steps += 1
            if steps > MAX_CHAIN:
                raise RuntimeError(f"upcasters for {event.type!r} form a cycle")
            found = self._fns.get((type_, version))
        return msgspec.structs.replace(event, type=type_, schema_version=version, data=data)
