"""The event-store conformance suites: one body of tests every event-store backend passes.

Used exactly like :mod:`clawstate.testing.conformance`: where a ``store_factory``
fixture exists (``store_factory(clock=None, **options) -> Store``, fresh and
empty, closed at teardown), ::

    from clawstate.testing.events import EventStoreConformance

    class TestMyBackendEvents(EventStoreConformance):
        pass

runs every test here against it; :class:`AsyncEventStoreConformance` does the
same through ``async_store_factory``.  Every store a test opens is checked with
:meth:`Store.check` at teardown (the oracle also verifies the event tables:
versions without holes, positions in version order), and every refused request
is checked to have changed nothing: the global log's end, every stream's
events and every namespace are compared before and after.

Layout: a package of mixins, one per area, over the shared fixtures of
:class:`~.fixtures.EventStoreFixtures`; :class:`EventStoreConformance` composes
them.  A new area is a new module whose mixin joins the bases below.

- :mod:`.appends` — append and read back, expected versions, malformed input, atomicity;
- :mod:`.idempotency` — retries recognised by event ids and content;
- :mod:`.reads` — reads, stream metadata and soft delete, upcasting;
- :mod:`.aggregates` — snapshots and aggregates;
- :mod:`.projections` — projections and their runners;
- :mod:`.subscriptions` — subscriptions, durable and not;
- :mod:`.streams` — listing streams (``events.streams``);
- :mod:`.aio` — :class:`AsyncEventStoreConformance`;
- :mod:`.helpers` — the refusal snapshot and check, ``Cart``, ``OrderTotals``.

The package imports only ``clawstate`` and ``pytest``.
"""

from __future__ import annotations

from .aggregates import AggregateConformance
from .aio import AsyncEventStoreConformance
from .appends import AppendConformance
from .fixtures import EventStoreFixtures
from .helpers import (
    Cart,
    EventsSnapshot,
    OrderTotals,
    assert_events_refused,
    events_snapshot,
    read_model,
)
from .idempotency import EventIdempotencyConformance
from .projections import ProjectionConformance
from .reads import ReadConformance
from .streams import StreamListingConformance
from .subscriptions import SubscriptionConformance

__all__ = [
    "AggregateConformance",
    "AppendConformance",
    "AsyncEventStoreConformance",
    "Cart",
    "EventIdempotencyConformance",
    "EventStoreConformance",
    "EventStoreFixtures",
    "EventsSnapshot",
    "OrderTotals",
    "ProjectionConformance",
    "ReadConformance",
    "StreamListingConformance",
    "SubscriptionConformance",
    "assert_events_refused",
    "events_snapshot",
    "read_model",
]


class EventStoreConformance(
    EventStoreFixtures,
    AppendConformance,
    EventIdempotencyConformance,
    ReadConformance,
    AggregateConformance,
    ProjectionConformance,
    SubscriptionConformance,
    StreamListingConformance,
):
    """The event store's contract.  Subclass it where a ``store_factory`` fixture exists."""
