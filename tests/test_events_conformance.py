"""The shipped event-store conformance suites, run over every backend in ``conftest.BACKENDS``
that keeps events (Redis refuses the event store; see test_events_backends.py)."""

from __future__ import annotations

from clawstate.testing.events import AsyncEventStoreConformance, EventStoreConformance


class TestEventStore(EventStoreConformance):
    """The sync event store over each backend (``store_factory`` comes from conftest)."""


class TestAsyncEventStore(AsyncEventStoreConformance):
    """The async event store over each backend (``async_store_factory`` from conftest)."""
