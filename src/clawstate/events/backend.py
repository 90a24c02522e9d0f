"""The read side of the event store that a backend implements: :class:`EventLog`.

The write side is not here: appends travel in ``WriteUnit.events`` through the
backend's one write path (:func:`clawstate.backends._apply.apply_unit` over an
:class:`~clawstate.backends._apply.EventRowAccess`).  What a backend adds for
events is therefore (1) the ``EventRowAccess`` methods on its row-access object,
(2) these read methods, (3) schema, sweep and check for the event tables, and
(4) ``capabilities.events = True``.  :mod:`clawstate.events._sqlite` and
:mod:`clawstate.events._memory` are two implementations; :mod:`clawstate.events._postgres`
is the same recipe on PostgreSQL (``events``/``event_streams`` tables, a position
counter in the ``head`` row locked by the appending transaction, ``LISTEN/NOTIFY``
in ``wait_for_events``).

Rows cross this seam as plain tuples (:data:`EventRow`) in one fixed column
order: the facade decodes them into :class:`~clawstate.RecordedEvent` in one
tight loop, so reading the log builds one object per event, not two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..backends.base import StreamMeta
from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["EventLog", "EventRow", "event_log"]

#: ``(position, stream, version, id, type, schema_version, data, metadata, recorded_at)``;
#: ``data`` and ``metadata`` are JSON text (``metadata`` None when empty).
EventRow = tuple[int, str, int, str, str, int, str, "str | None", float]


@runtime_checkable
class EventLog(Protocol):
    """Event reads a backend with ``capabilities.events`` provides."""

    def read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int, now: float
    ) -> list[EventRow]:
        """The stream's *visible* events (not hidden by its metadata at ``now``):
        forwards from ``from_version`` (None: the first) in version order, or
        backwards from it (None: the last), at most ``limit``."""
        ...

    def read_all(
        self, after: int, limit: int, stream_prefix: str, types: tuple[str, ...]
    ) -> tuple[list[EventRow], int]:
        """Events with ``position > after`` whose stream starts with ``stream_prefix``
        and whose type is in ``types`` (empty: any), in position order, at most
        ``limit``; and the position scanned up to — a watermark: no event at or
        below it that matches is missing from this or an earlier page, so a reader
        may resume after it (this is how filtered readers move past other events)."""
        ...

    def last_position(self) -> int:
        """The newest committed position (0: none); every lower one is committed too."""
        ...

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Block until an event with ``position > after`` commits, or ``timeout``."""
        ...

    def stream_state(self, stream: str) -> tuple[int, StreamMeta | None]:
        """The stream's version (0: no events) and its metadata."""
        ...

    def event_stats(self) -> dict[str, Any]:
        """``first_position``, ``last_position``, ``events`` (rows stored) and
        ``streams_with_metadata``."""
        ...


def event_log(backend: Backend, backend_name: str = "default") -> EventLog:
    """``backend`` as an :class:`EventLog`, or the error saying why it has none."""
    caps = backend.capabilities
    if not getattr(caps, "events", False) or not isinstance(backend, EventLog):
        raise InvalidRequest(
            "events",
            f"the {backend.name} backend has no event store (backend {backend_name!r}); "
            "use a store whose default backend keeps events (sqlite://, postgresql:// or memory://)",
        )
    return backend
