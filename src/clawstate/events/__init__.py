"""The event store: streams, the global log, subscriptions, snapshots, aggregates, projections.

``store.events`` is an :class:`EventStore`.  The pieces:

* :mod:`.store` — append (optimistic concurrency, idempotent by event id,
  atomic across streams and with state writes), read, ``read_all``, stream
  metadata and soft delete;
* :mod:`.subscriptions` — catch-up-then-live subscriptions, sync and async,
  durable by name with checkpoints (at-least-once);
* :mod:`.upcasting` — ``(type, from_version) -> function`` upcasters, chained on read;
* :mod:`.snapshots` and :mod:`.aggregates` — latest snapshot per stream, the
  :class:`Aggregate` base class and its :class:`Repository`;
* :mod:`.projections` — CQRS read models whose checkpoint commits with their writes,
  with a failure policy for poison events (retry, then stop or park);
* :mod:`.backend` — the read protocol a backend implements (with ``_sqlite`` and
  ``_memory``).
"""

from __future__ import annotations

from .._retry import retry_on_conflict
from ..types import ANY, NO_STREAM, STREAM_EXISTS, AppendResult, Event, RecordedEvent
from .aggregates import Aggregate, Repository, applies
from .projections import (
    FailurePolicy,
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    ProjectionStopped,
    ReadModel,
    handles,
    projection_status,
    retry_projection,
    skip_projection,
)
from .snapshots import Snapshot, Snapshots
from .store import (
    DELETED,
    EventFilter,
    EventStore,
    StreamInfo,
    StreamMetadata,
    StreamPage,
    TxEvents,
)
from .subscriptions import Subscription
from .upcasting import Upcasters

__all__ = [
    "ANY",
    "DELETED",
    "NO_STREAM",
    "STREAM_EXISTS",
    "Aggregate",
    "AppendResult",
    "Event",
    "EventFilter",
    "EventStore",
    "FailurePolicy",
    "Projection",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionStopped",
    "ReadModel",
    "RecordedEvent",
    "Repository",
    "Snapshot",
    "Snapshots",
    "StreamInfo",
    "StreamMetadata",
    "StreamPage",
    "Subscription",
    "TxEvents",
    "Upcasters",
    "applies",
    "handles",
    "projection_status",
    "retry_on_conflict",
    "retry_projection",
    "skip_projection",
]
