"""The shipped conformance suites, run over every backend in ``conftest.BACKENDS``."""

from __future__ import annotations

from clawstate.testing.conformance import AsyncStoreConformance, StoreConformance


class TestStore(StoreConformance):
    """The sync facade over each backend (``store_factory`` comes from conftest)."""


class TestAsyncStore(AsyncStoreConformance):
    """The async facade over each backend (``async_store_factory`` comes from conftest)."""
