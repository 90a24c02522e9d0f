"""``events.streams()`` on the async face.  The sync contract is
:class:`clawstate.testing.events.streams.StreamListingConformance`, part of
``EventStoreConformance``, so it runs wherever that suite does (memory, SQLite,
PostgreSQL, and over HTTP)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import clawstate


@pytest.mark.anyio
async def test_the_async_event_store_lists_streams_too(
    async_store_factory: Callable[..., clawstate.AsyncStore],
) -> None:
    astore = async_store_factory()
    for name in ("b", "a", "c"):
        await astore.events.append(name, [clawstate.Event("E", {})])
    first = await astore.events.streams(limit=2)
    assert [s.stream for s in first.streams] == ["a", "b"] and first.cursor is not None
    rest = await astore.events.streams(limit=2, cursor=first.cursor)
    assert [s.stream for s in rest.streams] == ["c"] and rest.cursor is None
