"""The event suite's fixtures, in one place so every area mixin sees the same ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clawstate import Store
from clawstate.testing.conformance import Clock, StoreFactory, assert_sound
from clawstate.testing.fakes import FakeClock


class EventStoreFixtures:
    """The fixtures every ``EventStoreConformance`` area shares.

    ``open_store`` (oracle-checked at teardown), ``clock`` (a FakeClock) and ``store``."""

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def open_store(self, store_factory: StoreFactory) -> Iterator[StoreFactory]:
        """``store_factory`` whose stores are checked with the oracle at teardown."""
        opened: list[Store] = []

        def factory(clock: Clock | None = None, **options: Any) -> Store:
            store = store_factory(clock=clock, **options)
            opened.append(store)
            return store

        yield factory
        for store in opened:
            assert_sound(store)

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, open_store: StoreFactory, clock: FakeClock) -> Store:
        return open_store(clock=clock)
