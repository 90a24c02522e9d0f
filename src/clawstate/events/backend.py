"""The event store's view of a backend: :func:`event_log`.

The read protocol a backend implements, :class:`~clawstate.backends.base.EventLog`
(and its row type :data:`~clawstate.backends.base.EventRow`), lives in
:mod:`clawstate.backends.base`, beside :class:`~clawstate.backends.base.Backend`:
backends implement it, and a backend never imports this package (the layer above
the facade).  Each backend keeps its event-log code in its own package
(``backends/sqlite/events.py``, ``backends/postgres/events.py``,
``backends/memory/events.py``).  The names are re-exported here for the event
store's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backends.base import EventLog, EventRow, StreamRow
from ..errors import InvalidRequest

if TYPE_CHECKING:
    from ..backends.base import Backend

__all__ = ["EventLog", "EventRow", "StreamRow", "event_log"]


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
