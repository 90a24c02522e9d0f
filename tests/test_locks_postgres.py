"""The locks conformance suite on PostgreSQL (a fresh schema per store), sync and async."""

from __future__ import annotations

from _backends import pg, pg_async_store_factory, pg_store_factory, schemas
from clawstate.testing.conformance.locks import AsyncLocksConformance, LocksConformance

# fixtures, re-exported for pytest
__all__ = ["pg", "pg_async_store_factory", "pg_store_factory", "schemas"]


class TestPostgresLocks(LocksConformance):
    """Leases and fenced writes on PostgreSQL."""


class TestPostgresAsyncLocks(AsyncLocksConformance):
    """The awaitable face on PostgreSQL."""
